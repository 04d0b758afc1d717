/* json: strict parsing of the JSON files a3 reads (config.json,
 * tokenizer.json, plans), on top of cJSON, which on its own accepts
 * garbage after the value and keeps the first of duplicated keys (where
 * Hugging Face's Python loaders keep the last: the two would read different
 * models). Refused, with "<path>: <what>" errors: a NUL byte, bytes that are
 * not UTF-8, a syntax error (reported with its line and column), anything
 * but whitespace after the value, and an object holding a key twice. */
#ifndef A3_JSON_H
#define A3_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "a3/util.h"

/* Parse text[0..len) from path. On success *out is the root (caller
 * cJSON_Delete's it); on failure *out is NULL and err says why. */
int a3_json_parse(const char *path, const char *text, size_t len, cJSON **out, a3_err *err);

/* The first key found twice in one object of root (depth-first), or NULL. */
const char *a3_json_duplicate_key(const cJSON *root);

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int a3_utf8_valid(const char *s, size_t n);

#endif
