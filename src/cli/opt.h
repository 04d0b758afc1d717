/* cli option parsing: one table-driven loop for every `a3 COMMAND`.
 *
 * A command describes its options and positional arguments in tables of
 * cli_opt and calls cli_parse once:
 *
 *     const cli_opt opts[] = {CLI_STR("--text", &o->text), CLI_OUTPUT(&o->out),
 *                             CLI_INT("--seqlen", &o->seqlen, 2, 1 << 20),
 *                             CLI_FLAG("--force", &o->force), {0}};
 *     const cli_opt pos[] = {CLI_STR("MODEL_DIR", &o->model), {0}};
 *     int rc = cli_parse(&(cli_spec){"eval", HELP, opts, pos}, argc, argv);
 *
 * The rules, the same for every command:
 *   - argv[0] is the command's name and is skipped;
 *   - -h or --help prints the help text to stdout; cli_parse returns -1
 *     (the command then exits 0);
 *   - an argument starting with '-' (but not "-" alone, which names
 *     standard input) is an option and must be in the table, else
 *     "unknown option 'X'"; a value is the next argument, whatever it looks
 *     like ("--prompt -x"); "--name=value" is not a spelling;
 *   - integers and numbers are range-checked ("--seqlen: expected an
 *     integer in [2, 1048576], got 'x'"); choices name the accepted words;
 *   - a list option (--text FILE...) takes every following argument up to
 *     the next option, and may be repeated;
 *   - other arguments fill the positional slots in order: a string slot
 *     is free while its target is NULL (so "--cache X" and a positional
 *     CACHE share one target), a list slot takes the rest;
 *   - options are applied in order: the last of a repeated string or
 *     number wins; the first error stops parsing.
 * Errors print "a3 CMD: message (see 'a3 CMD --help')" on stderr and
 * cli_parse returns 2, the usage exit status. What is required, and which
 * options exclude each other, the command checks after cli_parse. */
#ifndef A3_CLI_OPT_H
#define A3_CLI_OPT_H

#include <stddef.h>

typedef enum {
    CLI_KIND_FLAG,   /* no value; *to.flag = 1 */
    CLI_KIND_STR,    /* *to.str = value (borrowed from argv) */
    CLI_KIND_INT,    /* *to.l = integer in [lo, hi] */
    CLI_KIND_DOUBLE, /* *to.d = number in [dlo, dhi] */
    CLI_KIND_CHOICE, /* *to.flag = index of the value in choices */
    CLI_KIND_LIST,   /* to.list[(*count)++] = value, at most hi of them */
    CLI_KIND_FN,     /* fn(cmd, option, value, to.ctx) */
} cli_kind;

/* A custom option value: 0, or an exit status after printing the error
 * (cli_usage). opt is the option as typed. */
typedef int (*cli_opt_fn)(const char *cmd, const char *opt, const char *val, void *ctx);

typedef struct {
    const char *name; /* "--seqlen", "-n"; a positional's metavariable */
    const char *alt;  /* a second spelling ("-o" for "--output"), or NULL */
    cli_kind kind;
    union {
        int *flag;
        const char **str;
        const char **list;
        long *l;
        double *d;
        void *ctx;
    } to;
    int *count; /* LIST: values stored so far */
    long lo, hi; /* INT: range; LIST: capacity of to.list */
    double dlo, dhi;
    const char *const *choices; /* CHOICE: NULL-terminated */
    cli_opt_fn fn;
} cli_opt;

/* Table rows; the pointer types are checked by the compiler. */
#define CLI_FLAG(n, p) {.name = (n), .kind = CLI_KIND_FLAG, .to.flag = (p)}
#define CLI_STR(n, p) {.name = (n), .kind = CLI_KIND_STR, .to.str = (p)}
#define CLI_OUTPUT(p) {.name = "--output", .alt = "-o", .kind = CLI_KIND_STR, .to.str = (p)}
#define CLI_INT(n, p, min, max) {.name = (n), .kind = CLI_KIND_INT, .to.l = (p), .lo = (min), .hi = (max)}
#define CLI_DOUBLE(n, p, min, max) {.name = (n), .kind = CLI_KIND_DOUBLE, .to.d = (p), .dlo = (min), .dhi = (max)}
#define CLI_CHOICE(n, p, ...) \
    {.name = (n), .kind = CLI_KIND_CHOICE, .to.flag = (p), .choices = (const char *const[]){__VA_ARGS__, NULL}}
/* arr is an array (not a pointer): its length is the capacity. */
#define CLI_LIST(n, arr, cnt) \
    {.name = (n), .kind = CLI_KIND_LIST, .to.list = (arr), .count = (cnt), .hi = (long)(sizeof(arr) / sizeof *(arr))}
#define CLI_LIST_CAP(n, ptr, cnt, cap) \
    {.name = (n), .kind = CLI_KIND_LIST, .to.list = (ptr), .count = (cnt), .hi = (cap)}
#define CLI_FN(n, f, c) {.name = (n), .kind = CLI_KIND_FN, .to.ctx = (c), .fn = (f)}

typedef struct {
    const char *cmd;     /* "eval", "cache merge": the prefix of messages */
    const char *help;    /* printed for -h/--help */
    const cli_opt *opts; /* ended by a row with name NULL */
    const cli_opt *pos;  /* STR or LIST slots, ended by name NULL; or NULL */
} cli_spec;

/* Parse argv[1..argc-1] into the tables' targets (targets not named on
 * the command line keep their values: set defaults before). Returns 0,
 * -1 after printing the help, or 2 after printing a usage error. */
int cli_parse(const cli_spec *spec, int argc, char **argv);

/* True if arg is -h or --help. */
int cli_is_help(const char *arg);
/* Print "a3 <cmd>: <msg> (see 'a3 <cmd> --help')" to stderr; returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when val is a whole decimal integer in [lo, hi] (stored in *out),
 * else 0 with *out unchanged. */
int cli_long(const char *val, long lo, long hi, long *out);
/* An integer in [lo, hi] / a number in [lo, hi] (finite): 0, or a usage
 * error naming opt and the range (returns 2). */
int cli_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out);
int cli_double(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out);

#endif
