/* run_a3: see run_a3.h. */
#include "run_a3.h"

#include <errno.h>
#include <fcntl.h>
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

int run_a3_spawn(const char *const *argv, const char *err, int *go_fd)
{
    const char *bin = run_a3_bin();
    int p[2];
    if (!bin || pipe(p) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return close(p[0]), close(p[1]), -1;
    if (pid == 0) {
        close(p[1]);
        char c;
        while (read(p[0], &c, 1) > 0) {} /* until the parent closes its end */
        close(p[0]);
        int fd = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644), in = open("/dev/null", O_RDONLY);
        if (fd < 0 || in < 0) _exit(127);
        dup2(in, 0), dup2(fd, 1), dup2(fd, 2);
        int n = 0;
        while (argv[n]) n++;
        char **args = calloc((size_t)n + 2, sizeof *args);
        if (!args) _exit(127);
        args[0] = (char *)bin;
        for (int i = 0; i < n; i++) args[i + 1] = (char *)argv[i];
        execv(bin, args);
        _exit(127);
    }
    close(p[0]);
    *go_fd = p[1];
    return (int)pid;
}

void run_a3_go(int go_fd) { close(go_fd); }

int run_a3_wait(int pid)
{
    int st;
    while (waitpid((pid_t)pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int run_a3_wait_for_file(const char *path, double timeout_s, int pid)
{
    for (long i = 0; i < (long)(timeout_s * 1000); i++) {
        if (access(path, F_OK) == 0) return 1;
        if (waitpid((pid_t)pid, NULL, WNOHANG) == pid) return 0; /* exited (reaped: do not wait again) */
        usleep(1000);
    }
    return 0;
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
