/* json: see include/a3/json.h. */
#include "a3/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int a3_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p;
        int k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!k || (size_t)(e - p) < (size_t)k) return 0;
        uint32_t cp = k == 1 ? c : c & (0x7fu >> k);
        for (int i = 1; i < k; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        p += k;
    }
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorting the names makes a 100k-entry vocabulary O(n log n). */
const char *a3_json_duplicate_key(const cJSON *node)
{
    if (!node) return NULL;
    if (cJSON_IsObject(node)) {
        size_t n = 0;
        for (const cJSON *c = node->child; c; c = c->next) n++;
        const char **names = n > 1 ? malloc(n * sizeof *names) : NULL;
        const char *dup = NULL;
        if (names) {
            size_t i = 0;
            for (const cJSON *c = node->child; c; c = c->next) names[i++] = c->string ? c->string : "";
            qsort(names, n, sizeof *names, by_name);
            for (i = 1; i < n && !dup; i++)
                if (!strcmp(names[i - 1], names[i])) dup = names[i];
            free(names);
        }
        if (dup) return dup;
    }
    for (const cJSON *c = node->child; c; c = c->next) {
        const char *d = a3_json_duplicate_key(c);
        if (d) return d;
    }
    return NULL;
}

static void line_col(const char *text, size_t off, int *line, int *col)
{
    *line = 1, *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

int a3_json_parse(const char *path, const char *text, size_t len, cJSON **out, a3_err *err)
{
    *out = NULL;
    if (memchr(text, 0, len)) return a3_err_set(err, A3_EFORMAT, "%s: not JSON: contains a NUL byte", path);
    if (!a3_utf8_valid(text, len)) return a3_err_set(err, A3_EFORMAT, "%s: not valid UTF-8", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    while (root && end && end < text + len && strchr(" \t\r\n", *end)) end++;
    if (!root || end != text + len) {
        const char *at = root ? end : cJSON_GetErrorPtr();
        size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : len;
        int line, col;
        line_col(text, off, &line, &col);
        cJSON_Delete(root);
        return a3_err_set(err, A3_EFORMAT, "%s: not valid JSON (%s at line %d, column %d)", path,
                          root ? "data after the value" : "syntax error", line, col);
    }
    const char *dup = a3_json_duplicate_key(root);
    if (dup) {
        int rc = a3_err_set(err, A3_EFORMAT, "%s: key \"%s\" appears twice in one object (ambiguous)", path,
                            A3_ESC(dup));
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return A3_OK;
}
