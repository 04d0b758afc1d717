/* sha256: SHA-256 (FIPS 180-4), streaming and one-shot, for the model
 * fingerprint and the checksums of calibration texts recorded in caches.
 *
 *   a3_sha256_ctx s; a3_sha256_init(&s);
 *   a3_sha256_update(&s, buf, n);  ... as often as needed ...
 *   a3_sha256_final(&s, digest);   digest: 32 bytes
 * The context is plain data on the caller's stack; no global state. */
#ifndef A3_SHA256_H
#define A3_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "a3/util.h"

#define A3_SHA256_BYTES 32

typedef struct {
    uint32_t h[8];      /* chaining state */
    uint64_t n_bytes;   /* message bytes absorbed so far */
    uint8_t buf[64];    /* partial block */
    size_t buf_len;     /* bytes in buf, < 64 */
} a3_sha256_ctx;

void a3_sha256_init(a3_sha256_ctx *s);
void a3_sha256_update(a3_sha256_ctx *s, const void *data, size_t n);
/* Writes the 32-byte digest; the context must be re-initialised after. */
void a3_sha256_final(a3_sha256_ctx *s, uint8_t digest[A3_SHA256_BYTES]);

/* One-shot digest of n bytes. */
void a3_sha256(const void *data, size_t n, uint8_t digest[A3_SHA256_BYTES]);
/* Lower-case hex of a digest: 64 characters and a NUL. */
void a3_sha256_hex(const uint8_t digest[A3_SHA256_BYTES], char hex[65]);

/* Which block function runs: "sha-ni" (x86-64 SHA extensions, chosen at
 * run time when the CPU has them) or "portable". force_portable(1) makes
 * every later call use the portable one (tests compare the two). */
const char *a3_sha256_impl(void);
void a3_sha256_force_portable(int on);

/* Hex SHA-256 of a file's bytes, read in blocks (any size; constant memory).
 * A3_EIO naming the file when it cannot be opened or read. */
int a3_sha256_file(const char *path, char hex[65], a3_err *err);

#endif
