/* files: byte-level helpers the tests share to build and break files on
 * purpose: whole-file read/write, little-endian fields, and where a tensor's
 * bytes sit inside a safetensors file. */
#ifndef A3_TEST_FILES_H
#define A3_TEST_FILES_H

#include <stddef.h>
#include <stdint.h>

/* Write n bytes to path (truncating). 0, or -1 on any I/O failure. */
int tf_write_bytes(const char *path, const void *buf, size_t n);
/* The whole file (caller frees; NUL-terminated past n), or NULL. */
unsigned char *tf_read_bytes(const char *path, size_t *n);

/* Entries of dir not starting with '.' (0 when it cannot be opened). */
int tf_count_files(const char *dir);

void tf_put_le32(unsigned char *p, uint32_t v);
void tf_put_le64(unsigned char *p, uint64_t v);
uint32_t tf_get_le32(const unsigned char *p);
uint64_t tf_get_le64(const unsigned char *p);

/* Byte offset in the file of tensor `name`'s data, and its length, from
 * the safetensors header of path. 0, or -1 when absent or unreadable. */
int tf_st_locate(const char *path, const char *name, size_t *offset, size_t *nbytes);

/* Overwrite float32 element i of tensor `name` (an F32 tensor) in path. */
int tf_st_poke_f32(const char *path, const char *name, size_t i, float v);

#endif
