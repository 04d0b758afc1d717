/* cli: the command line as a whole, through the a3 binary ($A3_BIN): every
 * --help shows examples and fits 80 columns, the output option is spelled
 * -o/--output everywhere, `a3 help CMD` is CMD's help. */
#include <fcntl.h>
#include <sys/stat.h>

#include "helpers/run_a3.h"
#include "a3/tokenizer.h"
#include "test.h"

static char g_dir[64], g_out[128], g_err[128];

/* Every command and subcommand with a --help. */
static const char *const CMDS[] = {"info", "eval", "generate", "calibrate", "cache", "cache info", "cache merge",
                                   "cache synth", "plan", "probe", "tui", "apply", "export", "convert", "synth", "doctor",
                                   "tokenize"};
#define N_CMDS (sizeof CMDS / sizeof CMDS[0])

static int max_line(const char *s)
{
    int best = 0, cur = 0;
    for (; *s; s++) {
        cur = *s == '\n' ? 0 : cur + 1;
        if (cur > best) best = cur;
    }
    return best;
}

static void test_help_examples(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    for (size_t i = 0; i < N_CMDS; i++) {
        char args[128];
        snprintf(args, sizeof args, "%s --help", CMDS[i]);
        CHECKF(run_a3(args, g_out, g_err) == 0, "a3 %s exits non-zero", args);
        char *s = run_a3_slurp(g_out, NULL);
        CHECKF(s && strstr(s, "usage: a3 ") && strstr(s, "example"), "a3 %s: no usage line or examples", args);
        CHECKF(s && max_line(s) <= 80, "a3 %s: a line of %d columns", args, s ? max_line(s) : -1);
        free(s);
    }
}

/* Commands that write something take both -o and --output. Without their
 * other inputs they fail with a usage error that is NOT about the option. */
static void test_output_option(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    static const char *const writers[] = {"calibrate", "cache merge", "cache synth", "plan",    "probe",
                                          "apply",     "export",      "convert",     "synth",   "tokenize"};
    for (size_t i = 0; i < sizeof writers / sizeof writers[0]; i++) {
        for (int form = 0; form < 2; form++) {
            char args[256];
            snprintf(args, sizeof args, "%s %s %s/x", writers[i], form ? "--output" : "-o", g_dir);
            CHECKF(run_a3(args, g_out, g_err) == 2, "a3 %s: expected a usage error", args);
            CHECKF(!run_a3_file_has(g_err, "unknown option"), "a3 %s: output option not known", args);
        }
        char args[128];
        snprintf(args, sizeof args, "%s --help", writers[i]);
        CHECK(run_a3(args, g_out, g_err) == 0);
        CHECKF(run_a3_file_has(g_out, "-o, --output"), "a3 %s --help does not show '-o, --output'", writers[i]);
    }
}

static void test_help_command(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    /* "a3 help CMD" prints exactly what "a3 CMD --help" prints */
    for (size_t i = 0; i < N_CMDS; i++) {
        char args[128];
        snprintf(args, sizeof args, "%s --help", CMDS[i]);
        CHECK(run_a3(args, g_out, g_err) == 0);
        char *want = run_a3_slurp(g_out, NULL);
        snprintf(args, sizeof args, "help %s", CMDS[i]);
        CHECKF(run_a3(args, g_out, g_err) == 0, "a3 %s exits non-zero", args);
        char *got = run_a3_slurp(g_out, NULL);
        CHECKF(want && got && !strcmp(want, got), "a3 %s differs from a3 %s --help", args, CMDS[i]);
        free(want), free(got);
    }
    CHECK(run_a3("help plan", g_out, g_err) == 0);
    CHECK(run_a3_file_has(g_out, "usage: a3 plan"));
    CHECK(run_a3("help cache merge", g_out, g_err) == 0);
    CHECK(run_a3_file_has(g_out, "usage: a3 cache merge"));
    CHECK(run_a3("help", g_out, g_err) == 0);
    CHECK(run_a3_file_has(g_out, "usage: a3 COMMAND"));
    CHECK(run_a3("help frobnicate", g_out, g_err) == 2);
    CHECK(run_a3_file_has(g_err, "frobnicate"));
}

/* Every command refuses an option it does not know the same way: exit 2,
 * one line naming the option and pointing to the command's --help. */
static void test_unknown_option(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    for (size_t i = 0; i < N_CMDS; i++) {
        if (!strcmp(CMDS[i], "cache")) continue; /* takes a subcommand first */
        char args[128], want[160];
        snprintf(args, sizeof args, "%s --no-such-option", CMDS[i]);
        snprintf(want, sizeof want, "a3 %s: unknown option '--no-such-option' (see 'a3 %s --help')\n", CMDS[i],
                 CMDS[i]);
        CHECKF(run_a3(args, g_out, g_err) == 2, "a3 %s: expected exit 2", args);
        char *e = run_a3_slurp(g_err, NULL);
        CHECKF(e && !strcmp(e, want), "a3 %s: stderr '%s'", args, e ? e : "");
        free(e);
    }
}

/* Text from a pipe is read to the end and the cache records the SHA-256 of
 * what was read (it used to read st_size = 0 bytes: "text too short"). */
static void test_text_from_pipe(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    if (access("samples/sample-model/config.json", R_OK) != 0) SKIP("samples/sample-model not found");
    char args[600], sum[128] = "";
    FILE *p = popen("sha256sum < samples/calib.txt", "r");
    CHECK(p && fgets(sum, sizeof sum, p));
    if (p) pclose(p);
    sum[64] = 0;
    char fifo[128], feed[400];
    snprintf(fifo, sizeof fifo, "%s/fifo", g_dir);
    CHECK(mkfifo(fifo, 0644) == 0);
    snprintf(feed, sizeof feed, "cat samples/eval.txt > '%s' &", fifo);
    CHECK(system(feed) == 0);
    snprintf(args, sizeof args, "eval samples/sample-model --text '%s' --max-seqs 2", fifo);
    CHECK(run_a3(args, g_out, g_err) == 0 && run_a3_file_has(g_out, "perplexity"));
    snprintf(feed, sizeof feed, "cat samples/calib.txt > '%s' &", fifo);
    CHECK(system(feed) == 0);
    snprintf(args, sizeof args, "calibrate samples/sample-model --text '%s' --samples 2 --seqlen 32 -o %s/p.cache", fifo,
             g_dir);
    CHECK(run_a3(args, g_out, g_err) == 0);
    /* 64 tokens for head_dim 16: 4 per head dimension, below the 16 stated */
    CHECKF(run_a3_file_has(g_err, "thin statistics: 64 tokens"), "no warning for thin statistics");
    snprintf(args, sizeof args, "cache info %s/p.cache", g_dir);
    CHECK(run_a3(args, g_out, g_err) == 0);
    CHECKF(strlen(sum) == 64 && run_a3_file_has(g_out, sum), "cache does not record sha256 %s", sum);
    /* a --seqlen beyond the context is clamped, and said so */
    CHECK(run_a3("eval samples/sample-model --text samples/eval.txt --max-seqs 1 --seqlen 1000000", g_out, g_err) == 0);
    CHECK(run_a3_file_has(g_err, "beyond the model's context"));
    /* a writer still blocked (a run that failed before opening the FIFO)
     * is released: it opens, then dies of SIGPIPE */
    int fd = open(fifo, O_RDONLY | O_NONBLOCK);
    if (fd >= 0) close(fd);
}

/* A plan key and a config value holding ESC sequences and a newline:
 * the error is one line, the ESC shown as \x1b, never sent raw. */
static void test_untrusted_text_escaped(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    char plan[160], args[400];
    snprintf(plan, sizeof plan, "%s/evil.json", g_dir);
    FILE *f = fopen(plan, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("{\"format\":\"a3-plan\",\"version\":1,\"\\u001b]0;owned\\u0007\\u001b[2J\\nx\":1}\n", f);
    fclose(f);
    snprintf(args, sizeof args, "plan --show %s", plan);
    CHECK(run_a3(args, g_out, g_err) == 1);
    size_t n;
    char *e = run_a3_slurp(g_err, &n);
    CHECKF(e && !strchr(e, 0x1b) && !strchr(e, 0x07) && strchr(e, '\n') == e + n - 1 && strstr(e, "\\x1b]0;owned"),
           "stderr: %s", e ? e : "");
    free(e);
}

/* An ids file with an id the model has no row for: exit 1 (bad input
 * file), the message names the ids file and the position, for every
 * command that reads --ids; a tokenizer larger than the model's vocabulary
 * is refused where it is loaded (a3_tok_check_vocab). */
static void test_ids_outside_vocab(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    if (access("samples/sample-model/config.json", R_OK) != 0) SKIP("samples/sample-model not found");
    char ids[160], args[600];
    snprintf(ids, sizeof ids, "%s/bad.ids", g_dir);
    FILE *f = fopen(ids, "wb");
    CHECK(f != NULL);
    if (!f) return;
    /* little-endian uint32: 1 5 6 7 512 8 -- 512 is one past the sample's 512-token vocabulary */
    static const unsigned char b[] = {1, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 0, 2, 0, 0, 8, 0, 0, 0};
    CHECK(fwrite(b, 1, sizeof b, f) == sizeof b);
    fclose(f);
    const char *cmds[] = {"eval samples/sample-model --ids '%s'",
                          "calibrate samples/sample-model --ids '%s' --samples 1 --seqlen 4 --allow-short -o %s/x.cache"};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, cmds[i], ids, g_dir);
        CHECKF(run_a3(args, g_out, g_err) == 1, "a3 %s: expected exit 1", args);
        CHECKF(run_a3_file_has(g_err, ids) && run_a3_file_has(g_err, "token id 512 at position 4") &&
                   run_a3_file_has(g_err, "outside the model's vocabulary (512)"),
               "a3 %s: message does not name the file and the id", args);
    }
    a3_tokenizer *t = NULL;
    a3_err e = {0};
    CHECK(a3_tok_load_dir("samples/sample-model", &t, &e) == 0);
    if (!t) return;
    CHECK(a3_tok_check_vocab(t, "samples/sample-model", 512, &e) == 0);
    CHECK(a3_tok_check_vocab(t, "samples/sample-model", 511, &e) == A3_EMISMATCH && strstr(e.msg, "more than the model's vocab_size 511"));
    a3_tok_free(t);
}

/* Environment settings the CLI reads: a misspelt value is a usage error
 * naming the variable (not silently the default); a good one is what
 * a3 doctor then reports. */
static void test_env_settings(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    static const char *const bad[][2] = {{"A3_POOL_SPIN_US", "abc"},     {"A3_POOL_SPIN_US", "-1"},
                                         {"A3_POOL_SPIN_US", "2000000"}, {"A3_POOL_SPIN_US", "5us"},
                                         {"A3_MATVEC_PREFETCH", "l3"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv(bad[i][0], bad[i][1], 1);
        CHECKF(run_a3("doctor", g_out, g_err) == 2 && run_a3_file_has(g_err, bad[i][0]),
               "%s=%s: expected a usage error naming it", bad[i][0], bad[i][1]);
        unsetenv(bad[i][0]);
    }
    setenv("A3_POOL_SPIN_US", "0", 1);
    CHECK(run_a3("doctor", g_out, g_err) == 0 && run_a3_file_has(g_out, "workers sleep at once"));
    setenv("A3_POOL_SPIN_US", "250", 1);
    CHECK(run_a3("doctor", g_out, g_err) == 0 && run_a3_file_has(g_out, "250 us before a worker sleeps"));
    unsetenv("A3_POOL_SPIN_US");
    CHECK(run_a3("doctor", g_out, g_err) == 0 && run_a3_file_has(g_out, "100 us before a worker sleeps"));
}

/* SOURCE_DATE_EPOCH fixes the "created" stamp of what cache synth writes
 * (as it does calibrate's, tests/test_signals.c): two runs a second apart
 * give the same bytes; without it the stamp is now. A malformed value is
 * ignored (now), not read as 0. */
static void test_created_stamp(void)
{
    if (!run_a3_bin()) SKIP("A3_BIN not set (run via make check)");
    char a[160], b[160], args[400];
    snprintf(a, sizeof a, "%s/s1.cache", g_dir);
    snprintf(b, sizeof b, "%s/s2.cache", g_dir);
    setenv("SOURCE_DATE_EPOCH", "86400", 1);
    snprintf(args, sizeof args, "cache synth --like tiny -o %s", a);
    CHECK(run_a3(args, NULL, NULL) == 0);
    usleep(1100 * 1000);
    snprintf(args, sizeof args, "cache synth --like tiny -o %s", b);
    CHECK(run_a3(args, NULL, NULL) == 0);
    size_t na = 0, nb = 0;
    char *x = run_a3_slurp(a, &na), *y = run_a3_slurp(b, &nb);
    CHECK(x && y && na == nb && memcmp(x, y, na) == 0);
    /* the metadata JSON starts at byte 24, after the magic's NUL */
    CHECK(x && na > 24 && strstr(x + 24, "\"created\":\"1970-01-02T00:00:00Z\""));
    free(x), free(y);
    setenv("SOURCE_DATE_EPOCH", "1e9", 1);
    CHECK(run_a3(args, NULL, NULL) == 0);
    x = run_a3_slurp(b, &nb);
    CHECK(x && nb > 24 && strstr(x + 24, "\"created\":\"20"));
    free(x);
    unsetenv("SOURCE_DATE_EPOCH");
}

int main(void)
{
    if (!test_tmpdir(g_dir, sizeof g_dir)) return fprintf(stderr, "mkdtemp failed\n"), 1;
    snprintf(g_out, sizeof g_out, "%s/out", g_dir);
    snprintf(g_err, sizeof g_err, "%s/err", g_dir);
    RUN(test_help_examples);
    RUN(test_output_option);
    RUN(test_help_command);
    RUN(test_unknown_option);
    RUN(test_text_from_pipe);
    RUN(test_untrusted_text_escaped);
    RUN(test_ids_outside_vocab);
    RUN(test_env_settings);
    RUN(test_created_stamp);
    test_rm_rf(g_dir);
    return test_summary("cli");
}
