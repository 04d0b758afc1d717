/* crc32: the standard CRC-32 (IEEE 802.3 / zlib / PNG: reflected, polynomial
 * 0xEDB88320, initial value and final xor 0xFFFFFFFF), used for the
 * checksums inside calibration caches. a3_crc32("123456789") = 0xCBF43926.
 * Pure functions; no global mutable state. */
#ifndef A3_CRC32_H
#define A3_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 of n bytes. */
uint32_t a3_crc32(const void *data, size_t n);

/* Streaming form, as zlib's crc32(): start with crc = 0 and feed the data
 * in pieces; a3_crc32_update(a3_crc32_update(0, a, na), b, nb) equals the
 * CRC of a followed by b. */
uint32_t a3_crc32_update(uint32_t crc, const void *data, size_t n);

#endif
