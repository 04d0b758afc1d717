/* cli: the `a3 COMMAND` shells. One file per command, each a thin layer of
 * argument parsing and printing over the library. Commands return the
 * process exit status (see README "Exit codes"). */
#ifndef A3_CLI_H
#define A3_CLI_H

#include <stdint.h>

#include "a3/cache.h"
#include "a3/util.h"
#include "opt.h"

int a3_cmd_convert(int argc, char **argv);
int a3_cmd_info(int argc, char **argv);
int a3_cmd_eval(int argc, char **argv);
int a3_cmd_generate(int argc, char **argv);
int a3_cmd_doctor(int argc, char **argv);
int a3_cmd_synth(int argc, char **argv);
int a3_cmd_calibrate(int argc, char **argv);
int a3_cmd_apply(int argc, char **argv);
int a3_cmd_cache_merge(int argc, char **argv);
int a3_cmd_cache_synth(int argc, char **argv);
int a3_cmd_tui(int argc, char **argv);
int a3_cmd_cache(int argc, char **argv);
int a3_cmd_plan(int argc, char **argv);
int a3_cmd_export(int argc, char **argv);
int a3_cmd_probe(int argc, char **argv);
int a3_cmd_tokenize(int argc, char **argv);

/* The prediction sidecar at out for cache c of model m: curves (reused
 * from an existing sidecar of the same cache), then, when win is not NULL,
 * the NLL probe over its nw x L tokens (resumed if out holds a partial
 * probe of the same windows). Progress on stderr; Ctrl-C stops cleanly. */
#include "a3/cache.h"
#include "a3/model.h"
int cli_pred_run(a3_model *m, const a3_cache *c, const char *out, const int32_t *win, int nw, int L, double keep,
                 a3_err *err);

/* Token stream of text files (each tokenized with model's tokenizer, BOS
 * first, concatenated) or of an ids file (ids_path non-NULL). With sha
 * non-NULL, sha[i] gets the hex SHA-256 of text i as read (a pipe or
 * /dev/stdin cannot be read a second time to hash it). Every id is checked
 * against vocab, and the tokenizer's size too (errors name the file). */
int cli_tokenize(const char *model, int vocab, const char *const *texts, int n_texts, const char *ids_path,
                 int32_t **ids, size_t *n, char (*sha)[65], a3_err *err);

/* The "created" stamp of a file a3 writes: now in UTC as
 * 2026-01-31T12:00:00Z, or SOURCE_DATE_EPOCH (reproducible-builds.org)
 * when set to a non-negative integer before year 10000, so two runs
 * compare byte for byte. buf holds at least 21 bytes. */
void cli_created_stamp(char *buf, size_t n);

/* Print "a3 <cmd>: <msg>" to stderr and return the exit status for err. */
int cli_fail(const char *cmd, const a3_err *err);
/* cli_opt_fn for --dtype: f32, f16 or bf16 (any case) into the a3_dtype
 * at ctx. */
int cli_opt_dtype(const char *cmd, const char *opt, const char *val, void *ctx);
/* cli_opt_fn for a byte count (--max-memory, --max-shard-size) into the
 * uint64_t at ctx, by a3_parse_bytes: 8GB = 8 x 10^9 bytes, 8GiB = 8 x
 * 2^30, a bare number is bytes -- one convention for every size option. A
 * bare "8G" is refused (it could mean either), naming both spellings. */
int cli_opt_bytes(const char *cmd, const char *opt, const char *val, void *ctx);

/* Progress line on stderr: "stage  done/total  rate unit/s  elapsed  ETA".
 * Redrawn in place at most 10 times a second when stderr is a terminal,
 * printed every few seconds otherwise. Use as an a3_progress_fn with a
 * cli_progress as ctx. */
typedef struct {
    const char *unit;  /* "tok", "layers", ... */
    double t0, last;
    int tty;
    int active;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *unit);
int cli_progress_cb(void *ctx, const char *stage, int64_t done, int64_t total);
void cli_progress_end(cli_progress *p);
/* cli_progress_cb, silent for the first 0.2 s: work that ends at once
 * prints nothing. */
int cli_progress_quiet_cb(void *ctx, const char *stage, int64_t done, int64_t total);

/* a3_cache_open (curves now, matrices when a solver needs them) with a
 * progress line on stderr once opening has taken longer than 0.2 s. */
int cli_cache_open(const char *path, a3_cache **out, a3_err *err);

#endif
