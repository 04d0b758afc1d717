/* run_a3: see run_a3.h. */
#include "run_a3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *run_a3_bin(void)
{
    const char *bin = getenv("A3_BIN");
    return bin && access(bin, X_OK) == 0 ? bin : NULL;
}

int run_a3(const char *args, const char *out, const char *err)
{
    const char *bin = run_a3_bin();
    if (!bin) return -1;
    size_t n = strlen(bin) + strlen(args) + (out ? strlen(out) : 9) + (err ? strlen(err) : 9) + 32;
    char *cmd = malloc(n);
    if (!cmd) return -1;
    snprintf(cmd, n, "'%s' %s >'%s' 2>'%s'", bin, args, out ? out : "/dev/null", err ? err : "/dev/null");
    int st = system(cmd);
    free(cmd);
    if (st == -1) return -1;
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *run_a3_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        size_t k = fread(b + n, 1, cap - n, f);
        n += k;
        if (n < cap) break;
        char *g = realloc(b, 2 * cap + 1);
        if (!g) free(b);
        b = g, cap *= 2;
    }
    fclose(f);
    if (!b) return NULL;
    b[n] = '\0';
    if (len) *len = n;
    return b;
}

int run_a3_file_has(const char *path, const char *needle)
{
    char *s = run_a3_slurp(path, NULL);
    int has = s && strstr(s, needle) != NULL;
    free(s);
    return has;
}
