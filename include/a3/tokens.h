/* tokens: the token stream a calibration reads: text files, each encoded
 * with the model directory's tokenizer (BOS-led) and concatenated, or a
 * pre-tokenized ids file (little-endian uint32), checked against the
 * vocabulary. Shared by calibrate, probe and sequential apply (CLI and
 * TUI), so that they draw their windows from the same tokens. */
#ifndef A3_TOKENS_H
#define A3_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "a3/util.h"

/* *ids (caller frees) and *n from texts[0..n_texts) or, when ids_path is
 * set, from that file. sha (n_texts entries, or NULL): each text file's
 * SHA-256 in hex. Errors name the file. */
int a3_tokens_read(const char *model_dir, int vocab, const char *const *texts, int n_texts, const char *ids_path,
                   int32_t **ids, size_t *n, char (*sha)[65], a3_err *err);

#endif
