/* sha256: FIPS 180-4 SHA-256. Plain portable C: message words are read
 * big-endian byte by byte, so the result does not depend on the host. On
 * x86-64 CPUs with the SHA extensions the blocks go through them instead
 * (about 8x faster: the cache fingerprint hashes every loss curve, 19 MB at
 * 70B, on each plan and TUI start); both paths give the same digest, which
 * the tests check against an independent sha256sum. */
#include "a3/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define A3_SHA_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t *blk)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)blk[4 * t] << 24 | (uint32_t)blk[4 * t + 1] << 16 | (uint32_t)blk[4 * t + 2] << 8 |
               (uint32_t)blk[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

#ifdef A3_SHA_X86
/* n 64-byte blocks with the SHA-NI instructions. The state lives as two
 * vectors ABEF and CDGH (the instructions' layout); each iteration of the
 * loop is 4 rounds; message words are scheduled 4 at a time in a ring of
 * 4 vectors, W_i (words 4i..4i+3) from msg1(W_{i-4}, W_{i-3}) +
 * W[4i-7..4i-4] and msg2 with W_{i-1}. */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_shani(uint32_t h[8], const uint8_t *p, size_t n)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1); /* CDAB */
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B); /* EFGH */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                                        /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                                             /* CDGH */
    for (; n > 0; n--, p += 64) {
        __m128i abef = s0, cdgh = s1, w[4];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i < 4) w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
            else
                w[i & 3] = _mm_sha256msg2_epu32(
                    _mm_add_epi32(w[i & 3], _mm_alignr_epi8(w[(i - 1) & 3], w[(i - 2) & 3], 4)), w[(i - 1) & 3]);
            /* W_{i-2} is not needed any more: its slot starts W_{i+2} */
            if (i >= 2 && i <= 13) w[(i - 2) & 3] = _mm_sha256msg1_epu32(w[(i - 2) & 3], w[(i - 1) & 3]);
            __m128i m = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *)&K[4 * i]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, m);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m, 0x0E));
        }
        s0 = _mm_add_epi32(s0, abef);
        s1 = _mm_add_epi32(s1, cdgh);
    }
    t = _mm_shuffle_epi32(s0, 0x1B);  /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1); /* DCHG */
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, s1, 0xF0)); /* DCBA */
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(s1, t, 8));    /* HGFE */
}

static int cpu_has_shani(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1)) return 0;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)); /* CPUID.7.0:EBX.SHA */
}
#endif

/* -1: not decided yet; decided once (the CPU does not change), a benign
 * race at worst decides twice. */
static int shani_state = -1;
static int forced_portable;

static int use_shani(void)
{
#ifdef A3_SHA_X86
    if (forced_portable) return 0;
    if (shani_state < 0) shani_state = cpu_has_shani();
    return shani_state;
#else
    return 0;
#endif
}

const char *a3_sha256_impl(void) { return use_shani() ? "sha-ni" : "portable"; }
void a3_sha256_force_portable(int on) { forced_portable = on != 0; }

/* n whole blocks. */
static void compress_blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
#ifdef A3_SHA_X86
    if (use_shani()) {
        compress_shani(h, p, n);
        return;
    }
#endif
    for (; n > 0; n--, p += 64) compress(h, p);
}

void a3_sha256_init(a3_sha256_ctx *s)
{
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, H0, sizeof H0);
    s->n_bytes = 0;
    s->buf_len = 0;
}

void a3_sha256_update(a3_sha256_ctx *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->n_bytes += n;
    if (s->buf_len) { /* top up the partial block first */
        size_t take = 64 - s->buf_len < n ? 64 - s->buf_len : n;
        memcpy(s->buf + s->buf_len, p, take);
        s->buf_len += take, p += take, n -= take;
        if (s->buf_len < 64) return;
        compress_blocks(s->h, s->buf, 1);
        s->buf_len = 0;
    }
    compress_blocks(s->h, p, n / 64);
    p += n / 64 * 64, n %= 64;
    memcpy(s->buf, p, n);
    s->buf_len = n;
}

void a3_sha256_final(a3_sha256_ctx *s, uint8_t digest[A3_SHA256_BYTES])
{
    uint64_t bits = s->n_bytes * 8;
    /* Padding: 0x80, zeros up to 56 mod 64, then the bit length big-endian. */
    s->buf[s->buf_len++] = 0x80;
    if (s->buf_len > 56) {
        memset(s->buf + s->buf_len, 0, 64 - s->buf_len);
        compress_blocks(s->h, s->buf, 1);
        s->buf_len = 0;
    }
    memset(s->buf + s->buf_len, 0, 56 - s->buf_len);
    for (int i = 0; i < 8; i++) s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    compress_blocks(s->h, s->buf, 1);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
    memset(s, 0, sizeof *s);
}

void a3_sha256(const void *data, size_t n, uint8_t digest[A3_SHA256_BYTES])
{
    a3_sha256_ctx s;
    a3_sha256_init(&s);
    a3_sha256_update(&s, data, n);
    a3_sha256_final(&s, digest);
}

void a3_sha256_hex(const uint8_t digest[A3_SHA256_BYTES], char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < A3_SHA256_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

int a3_sha256_file(const char *path, char hex[65], a3_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return a3_err_set(err, A3_EIO, "%s: cannot open: %s", path, strerror(errno));
    a3_sha256_ctx s;
    a3_sha256_init(&s);
    uint8_t buf[1 << 15]; /* on the stack: no allocation to fail */
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, fp)) > 0) a3_sha256_update(&s, buf, got);
    int bad = ferror(fp);
    int e = errno;
    fclose(fp);
    if (bad) return a3_err_set(err, A3_EIO, "%s: read failed: %s", path, strerror(e));
    uint8_t d[A3_SHA256_BYTES];
    a3_sha256_final(&s, d);
    a3_sha256_hex(d, hex);
    return A3_OK;
}
