/* cli option parser (src/cli/opt.c, compiled in: the CLI is not part of
 * liba3): every kind of option, positional slots, range errors, missing
 * values, unknown options, help. Messages are compared whole, as a user
 * sees them on stderr. */
#include <fcntl.h>

#include "../src/cli/opt.c"
#include "test.h"

static char g_err[4096], g_out[4096];

/* Run cli_parse on a NULL-terminated argument list (argv[0] "t" added),
 * capturing stdout and stderr into g_out and g_err. */
static int parse_v(const cli_spec *s, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "t";
    while (*args && argc < 63) argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    FILE *fo = tmpfile(), *fe = tmpfile();
    if (!fo || !fe) return fprintf(stderr, "tmpfile failed\n"), -99;
    fflush(stdout), fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1), dup2(fileno(fe), 2);
    int rc = cli_parse(s, argc, argv);
    fflush(stdout), fflush(stderr);
    dup2(so, 1), dup2(se, 2);
    close(so), close(se);
    size_t n;
    rewind(fo), n = fread(g_out, 1, sizeof g_out - 1, fo), g_out[n] = 0;
    rewind(fe), n = fread(g_err, 1, sizeof g_err - 1, fe), g_err[n] = 0;
    fclose(fo), fclose(fe);
    return rc;
}
#define PARSE(spec, ...) parse_v(spec, (const char *const[]){__VA_ARGS__, NULL})
#define PARSE0(spec) parse_v(spec, (const char *const[]){NULL})

/* One command's worth of targets, reset before each parse. */
typedef struct {
    const char *model, *text, *out, *files[3], *rest[4];
    int force, proto, n_files, n_rest, fn_calls;
    long seqlen;
    double temp;
    const char *fn_opt, *fn_val;
} targets;

static targets T;

static int fn_record(const char *cmd, const char *opt, const char *val, void *ctx)
{
    targets *t = ctx;
    t->fn_calls++, t->fn_opt = opt, t->fn_val = val;
    return strcmp(val, "bad") ? 0 : cli_usage(cmd, "%s: not '%s'", opt, val);
}

static const char HELP[] = "usage: a3 t MODEL [options]\n\nexample:\n  a3 t m\n";

static const cli_opt OPTS[] = {CLI_STR("--text", &T.text),
                               CLI_OUTPUT(&T.out),
                               CLI_FLAG("--force", &T.force),
                               CLI_INT("--seqlen", &T.seqlen, 2, 100),
                               CLI_DOUBLE("--temp", &T.temp, 0, 1.5),
                               CLI_CHOICE("--protocol", &T.proto, "stream", "paragraphs", "chat"),
                               CLI_LIST("--files", T.files, &T.n_files),
                               CLI_FN("--fn", fn_record, &T),
                               {0}};
static const cli_opt POS1[] = {CLI_STR("MODEL", &T.model), {0}};
static const cli_spec SPEC = {"t", HELP, OPTS, POS1};

static void reset(void)
{
    memset(&T, 0, sizeof T);
    T.seqlen = 7, T.temp = 0.25;
}

/* "a3 t: MSG (see 'a3 t --help')\n" exactly, and exit status 2. */
static int usage_is(int rc, const char *msg)
{
    char want[512];
    snprintf(want, sizeof want, "a3 t: %s (see 'a3 t --help')\n", msg);
    if (rc == 2 && !strcmp(g_err, want) && !g_out[0]) return 1;
    fprintf(stderr, "  rc %d, stderr: %s  want: %s", rc, g_err, want);
    return 0;
}

static void test_every_kind(void)
{
    reset();
    int rc = PARSE(&SPEC, "m", "--text", "a.txt", "-o", "o1", "--force", "--seqlen", "100", "--temp", "1.5",
                   "--protocol", "chat", "--files", "f1", "f2", "--fn", "v");
    CHECK(rc == 0 && !g_err[0] && !g_out[0]);
    CHECK(T.model && !strcmp(T.model, "m"));
    CHECK(T.text && !strcmp(T.text, "a.txt"));
    CHECK(T.out && !strcmp(T.out, "o1"));
    CHECK(T.force == 1 && T.seqlen == 100 && T.temp == 1.5 && T.proto == 2);
    CHECK(T.n_files == 2 && !strcmp(T.files[0], "f1") && !strcmp(T.files[1], "f2"));
    CHECK(T.fn_calls == 1 && !strcmp(T.fn_opt, "--fn") && !strcmp(T.fn_val, "v"));
    /* untouched targets keep their defaults */
    reset();
    CHECK(PARSE(&SPEC, "m") == 0 && T.seqlen == 7 && T.temp == 0.25 && !T.force && !T.out && T.proto == 0);
    /* both spellings of the output; the last of a repeated value wins */
    reset();
    CHECK(PARSE(&SPEC, "--output", "o2", "--seqlen", "3", "--seqlen", "2") == 0);
    CHECK(T.out && !strcmp(T.out, "o2") && T.seqlen == 2);
    CHECK(PARSE(&SPEC, "--protocol", "stream") == 0 && T.proto == 0);
    /* the lower bounds are inclusive too */
    CHECK(PARSE(&SPEC, "--temp", "0", "--seqlen", "2") == 0 && T.temp == 0 && T.seqlen == 2);
}

/* A value is the next argument whatever it looks like. */
static void test_values_that_look_like_options(void)
{
    reset();
    CHECK(PARSE(&SPEC, "--text", "--force", "-o", "-", "--fn", "-h") == 0);
    CHECK(T.text && !strcmp(T.text, "--force") && !T.force);
    CHECK(T.out && !strcmp(T.out, "-"));
    CHECK(T.fn_val && !strcmp(T.fn_val, "-h") && !g_out[0]);
    /* negative numbers as values */
    CHECK(usage_is(PARSE(&SPEC, "--seqlen", "-5"), "--seqlen: expected an integer in [2, 100], got '-5'"));
}

static void test_range_errors(void)
{
    static const struct {
        const char *opt, *val, *msg;
    } C[] = {
        {"--seqlen", "1", "--seqlen: expected an integer in [2, 100], got '1'"},
        {"--seqlen", "101", "--seqlen: expected an integer in [2, 100], got '101'"},
        {"--seqlen", "x", "--seqlen: expected an integer in [2, 100], got 'x'"},
        {"--seqlen", "5x", "--seqlen: expected an integer in [2, 100], got '5x'"},
        {"--seqlen", "", "--seqlen: expected an integer in [2, 100], got ''"},
        {"--seqlen", "2.5", "--seqlen: expected an integer in [2, 100], got '2.5'"},
        {"--seqlen", "99999999999999999999", "--seqlen: expected an integer in [2, 100], got '99999999999999999999'"},
        {"--temp", "1.6", "--temp: expected a number in [0, 1.5], got '1.6'"},
        {"--temp", "-0.1", "--temp: expected a number in [0, 1.5], got '-0.1'"},
        {"--temp", "nan", "--temp: expected a number in [0, 1.5], got 'nan'"},
        {"--temp", "inf", "--temp: expected a number in [0, 1.5], got 'inf'"},
        {"--temp", "1e999", "--temp: expected a number in [0, 1.5], got '1e999'"},
        {"--temp", "0.5s", "--temp: expected a number in [0, 1.5], got '0.5s'"},
        {"--protocol", "Stream", "--protocol: expected stream, paragraphs or chat, got 'Stream'"},
        {"--protocol", "", "--protocol: expected stream, paragraphs or chat, got ''"},
        {"--fn", "bad", "--fn: not 'bad'"},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        reset();
        CHECKF(usage_is(PARSE(&SPEC, "m", C[i].opt, C[i].val), C[i].msg), "%s %s", C[i].opt, C[i].val);
    }
    /* a failed value leaves the target as it was */
    reset();
    CHECK(PARSE(&SPEC, "--seqlen", "1000") == 2 && T.seqlen == 7);
    CHECK(PARSE(&SPEC, "--temp", "9") == 2 && T.temp == 0.25);
    /* the first error stops parsing */
    reset();
    CHECK(usage_is(PARSE(&SPEC, "--seqlen", "0", "--bogus", "--force"),
                   "--seqlen: expected an integer in [2, 100], got '0'"));
    CHECK(!T.force);
}

static void test_missing_values(void)
{
    static const char *const V[] = {"--text", "-o", "--output", "--seqlen", "--temp", "--protocol", "--fn"};
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        reset();
        char msg[64];
        snprintf(msg, sizeof msg, "%s needs a value", V[i]);
        CHECKF(usage_is(PARSE(&SPEC, "m", V[i]), msg), "%s", V[i]);
    }
    reset();
    CHECK(usage_is(PARSE(&SPEC, "--files"), "--files needs at least one value"));
    CHECK(usage_is(PARSE(&SPEC, "--files", "--force"), "--files needs at least one value"));
    CHECK(T.n_files == 0);
}

/* A list takes arguments up to the next option ("-" is an argument),
 * may be repeated, and refuses more than its capacity. */
static void test_lists(void)
{
    reset();
    CHECK(PARSE(&SPEC, "--files", "a", "--force", "--files", "-", "m") == 0);
    CHECK(T.n_files == 3 && !strcmp(T.files[0], "a") && !strcmp(T.files[1], "-") && !strcmp(T.files[2], "m"));
    CHECK(T.force && !T.model); /* "m" went to the list, not the slot */
    reset();
    CHECK(usage_is(PARSE(&SPEC, "--files", "a", "b", "c", "d"), "--files: at most 3 values"));
    reset();
    CHECK(usage_is(PARSE(&SPEC, "--files", "a", "b", "--files", "c", "d"), "--files: at most 3 values"));
}

static void test_positionals(void)
{
    reset();
    CHECK(PARSE(&SPEC, "--force", "m") == 0 && T.model && !strcmp(T.model, "m"));
    reset();
    CHECK(usage_is(PARSE(&SPEC, "m", "n"), "one MODEL expected, got 'n' too"));
    /* "-" alone is an argument (standard input) */
    reset();
    CHECK(PARSE(&SPEC, "-") == 0 && T.model && !strcmp(T.model, "-"));
    /* a slot whose target an option filled is taken */
    reset();
    T.model = "from-option";
    CHECK(usage_is(PARSE(&SPEC, "m"), "one MODEL expected, got 'm' too"));
    /* no slots at all */
    const cli_spec none = {"t", HELP, OPTS, NULL};
    reset();
    CHECK(usage_is(PARSE(&none, "m"), "unexpected argument 'm'"));
    CHECK(PARSE0(&none) == 0);
    /* two slots, then a list taking the rest */
    const cli_opt pos[] = {CLI_STR("MODEL", &T.model), CLI_STR("TEXT", &T.text),
                           CLI_LIST("REST", T.rest, &T.n_rest), {0}};
    const cli_spec many = {"t", HELP, OPTS, pos};
    reset();
    CHECK(PARSE(&many, "a", "--force", "b", "c", "d") == 0);
    CHECK(!strcmp(T.model, "a") && !strcmp(T.text, "b") && T.n_rest == 2 && !strcmp(T.rest[1], "d"));
    reset();
    CHECK(usage_is(PARSE(&many, "a", "b", "1", "2", "3", "4", "5"), "REST: at most 4 values"));
    const cli_opt two[] = {CLI_STR("MODEL", &T.model), CLI_STR("TEXT", &T.text), {0}};
    const cli_spec two_spec = {"t", HELP, OPTS, two};
    reset();
    CHECK(usage_is(PARSE(&two_spec, "a", "b", "c"), "unexpected argument 'c'"));
}

static void test_unknown_options(void)
{
    static const char *const U[] = {"--bogus", "-x", "--seqlen=5", "--Force", "---force", "--"};
    for (size_t i = 0; i < sizeof U / sizeof U[0]; i++) {
        reset();
        char msg[64];
        snprintf(msg, sizeof msg, "unknown option '%s'", U[i]);
        CHECKF(usage_is(PARSE(&SPEC, "m", U[i]), msg), "%s", U[i]);
    }
    /* options of no table at all */
    const cli_spec bare = {"t", HELP, NULL, NULL};
    CHECK(usage_is(PARSE(&bare, "-o", "x"), "unknown option '-o'"));
}

/* -h/--help prints the help to stdout and stops, wherever it is; an error
 * before it wins (arguments are read in order). */
static void test_help(void)
{
    static const char *const H[] = {"-h", "--help"};
    for (int i = 0; i < 2; i++) {
        reset();
        CHECK(PARSE(&SPEC, H[i]) == -1 && !strcmp(g_out, HELP) && !g_err[0]);
        CHECK(PARSE(&SPEC, "m", "n", "--force") == 2); /* sanity: this is an error... */
        reset();
        CHECK(PARSE(&SPEC, "m", H[i], "n", "--bogus") == -1 && !strcmp(g_out, HELP) && !g_err[0]);
        CHECK(usage_is(PARSE(&SPEC, "--bogus", H[i]), "unknown option '--bogus'"));
    }
    const cli_spec bare = {"t", HELP, NULL, NULL};
    CHECK(PARSE(&bare, "--help") == -1 && !strcmp(g_out, HELP));
}

/* The number helpers on their own, as commands use them for parts of a
 * value (plan's --weights qk=1,ov=2). */
static void test_number_helpers(void)
{
    long l = 5;
    double d = 5;
    fflush(stderr);
    int se = dup(2), null = open("/dev/null", O_WRONLY);
    CHECK(se >= 0 && null >= 0 && dup2(null, 2) == 2);
    CHECK(cli_int("t", "--n", "-3", -3, 3, &l) == 0 && l == -3);
    CHECK(cli_int("t", "--n", "4", -3, 3, &l) == 2 && l == -3);
    CHECK(cli_int("t", "--n", "0x10", 0, 100, &l) == 2);
    CHECK(cli_double("t", "--d", "1e-3", 0, 1, &d) == 0 && d == 1e-3);
    int bad_nan = cli_double("t", "--d", "-nan", -1, 1, &d);
    fflush(stderr);
    dup2(se, 2), close(se), close(null);
    CHECK(bad_nan == 2 && d == 1e-3);
}

int main(void)
{
    RUN(test_every_kind);
    RUN(test_values_that_look_like_options);
    RUN(test_range_errors);
    RUN(test_missing_values);
    RUN(test_lists);
    RUN(test_positionals);
    RUN(test_unknown_options);
    RUN(test_help);
    RUN(test_number_helpers);
    return test_summary("cli_opt");
}
