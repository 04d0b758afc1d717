/* files: see files.h. */
#include "files.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tf_write_bytes(const char *path, const void *buf, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    int ok = n == 0 || fwrite(buf, 1, n, fp) == n;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

int tf_count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d)) != NULL;) n += de->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

unsigned char *tf_read_bytes(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *b = malloc(cap + 1);
    while (b) {
        len += fread(b + len, 1, cap - len, fp);
        if (len < cap) break;
        unsigned char *g = realloc(b, 2 * cap + 1);
        if (!g) free(b);
        b = g, cap *= 2;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (!b || bad) return free(b), NULL;
    b[len] = 0;
    if (n) *n = len;
    return b;
}

void tf_put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

void tf_put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

uint32_t tf_get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t tf_get_le64(const unsigned char *p) { return tf_get_le32(p) | (uint64_t)tf_get_le32(p + 4) << 32; }

int tf_st_locate(const char *path, const char *name, size_t *offset, size_t *nbytes)
{
    size_t n;
    unsigned char *b = tf_read_bytes(path, &n);
    if (!b || n < 8) return free(b), -1;
    uint64_t hl = tf_get_le64(b);
    int rc = -1;
    cJSON *h = hl <= n - 8 ? cJSON_ParseWithLength((const char *)b + 8, (size_t)hl) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (cJSON_GetArraySize(off) == 2) {
        size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, e = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        *offset = 8 + (size_t)hl + a, *nbytes = e - a;
        rc = 0;
    }
    cJSON_Delete(h);
    free(b);
    return rc;
}

int tf_st_poke_f32(const char *path, const char *name, size_t i, float v)
{
    size_t off, nb;
    if (tf_st_locate(path, name, &off, &nb) || (i + 1) * 4 > nb) return -1;
    FILE *fp = fopen(path, "r+b");
    if (!fp) return -1;
    uint32_t u;
    memcpy(&u, &v, 4);
    unsigned char le[4];
    tf_put_le32(le, u);
    int ok = fseek(fp, (long)(off + 4 * i), SEEK_SET) == 0 && fwrite(le, 1, 4, fp) == 4;
    return fclose(fp) == 0 && ok ? 0 : -1;
}
