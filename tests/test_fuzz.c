/* Hostile files against every loader, without libFuzzer (tests/fuzz/,
 * `make fuzz` runs the same targets under libFuzzer for as long as one
 * likes):
 *   - valid files of every format (the repository's own, ones the a3
 *     binary writes, and a prediction sidecar of the pred target's own
 *     tiny calibrated model) are accepted by their target;
 *   - the committed inputs in tests/fuzz/corpus/<target>/ (what libFuzzer
 *     found, kept after the fix) are refused, or accepted when named ok-*;
 *   - 1000 deterministic mutants of each valid file (bit flips,
 *     truncations, interesting values, cut and repeated ranges) run through
 *     the target: each must be accepted or refused, never crash, and the
 *     targets' invariants must hold (under `make sanitize` too).
 * A3_FUZZ_MUTANTS sets the mutants per valid file (default 1000).
 * A3_FUZZ_SEEDS=DIR: write the valid files to DIR/<target>/ instead of
 * testing (libFuzzer's starting corpus, scripts/fuzz.sh). */
#define _GNU_SOURCE /* memmem, mkdtemp in the targets */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>

#include "fuzz/targets.c"
#include "helpers/run_a3.h"
#include "test.h"

typedef struct {
    const char *target;
    char path[4200];
} seed;

#define MAX_SEEDS 40
static seed seeds[MAX_SEEDS];
static int n_seeds;
static char tmp[64];

/* Call fn(target, path, name) for each file of tests/fuzz/corpus/<target>/
 * (names starting with '.' skipped); the number of files. */
static int walk_corpus(void (*fn)(const fz_target *t, const char *path, const char *name))
{
    int files = 0;
    for (int k = 0; k < fz_n_targets; k++) {
        char d[256];
        snprintf(d, sizeof d, "tests/fuzz/corpus/%s", fz_targets[k].name);
        DIR *dp = opendir(d);
        struct dirent *e;
        while (dp && (e = readdir(dp)))
            if (e->d_name[0] != '.') {
                char p[600];
                snprintf(p, sizeof p, "%s/%s", d, e->d_name);
                fn(&fz_targets[k], p, e->d_name);
                files++;
            }
        if (dp) closedir(dp);
    }
    return files;
}

static void add_seed(const char *target, const char *path)
{
    if (n_seeds < MAX_SEEDS && access(path, R_OK) == 0) {
        seeds[n_seeds].target = target;
        snprintf(seeds[n_seeds].path, sizeof seeds[n_seeds].path, "%s", path);
        n_seeds++;
    }
}

static void add_ok_seed(const fz_target *t, const char *path, const char *name)
{
    if (strncmp(name, "ok-", 3) == 0) add_seed(t->name, path);
}

/* Valid files: the repository's, and a model, a cache and a plan the a3
 * binary writes (skipped with a message when $A3_BIN is not set). */
static void collect_seeds(void)
{
    add_seed("safetensors", "tests/data/tiny-llama3/model.safetensors");
    add_seed("safetensors", "tests/data/tiny-qwen2/model.safetensors");
    add_seed("config", "samples/sample-model/config.json");
    add_seed("config", "tests/data/tiny-llama3/config.json");
    add_seed("config", "tests/data/tiny-qwen2/config.json");
    add_seed("tokenizer_json", "samples/sample-model/tokenizer.json");
    add_seed("encode", "tests/peers/torture.txt");
    /* the committed valid inputs (ok-*: small files of layouts the
     * repository has no other file of) */
    walk_corpus(add_ok_seed);
    char p[4200];
    if (!test_tmpdir(tmp, sizeof tmp)) {
        tmp[0] = '\0';
        fprintf(stderr, "  note: no temporary directory: no pred, model, cache or plan seeds\n");
        return;
    }
    /* not beside c.cache below: a3 plan would read it as that cache's; the
     * file name seeds its mutants */
    snprintf(p, sizeof p, "%s/fixture.pred", tmp);
    if (fz_pred_seed(p) == 0) add_seed("pred", p);
    const char *sh = test_shared_data();
    if (sh) {
        snprintf(p, sizeof p, "%s/models/stories260K/tok512.bin", sh);
        add_seed("tokenizer_bin", p);
        snprintf(p, sizeof p, "%s/models/stories260K/stories260K.bin", sh);
        add_seed("llama2c", p);
    } else {
        fprintf(stderr, "  note: ../shared/data absent: no llama2.c seeds (tokenizer_bin, llama2c)\n");
    }
    if (!run_a3_bin()) return;
    setenv("SOURCE_DATE_EPOCH", "0", 1); /* the same cache bytes, so the same mutants, every run */
    char args[600];
    snprintf(args, sizeof args, "synth --like tiny --layers 1 -o %s/m", tmp);
    if (run_a3(args, NULL, NULL) == 0) {
        snprintf(p, sizeof p, "%s/m/model.safetensors", tmp);
        add_seed("model", p);
        add_seed("safetensors", p);
    }
    snprintf(args, sizeof args, "cache synth --like tiny-gqa --layers 2 -o %s/c.cache", tmp);
    if (run_a3(args, NULL, NULL) == 0) {
        snprintf(p, sizeof p, "%s/c.cache", tmp);
        add_seed("cache", p);
        snprintf(args, sizeof args, "plan %s/c.cache --budget params=20%% --lock 0:qk -o %s/plan.json", tmp, tmp);
        if (run_a3(args, NULL, NULL) == 0) {
            snprintf(p, sizeof p, "%s/plan.json", tmp);
            add_seed("plan", p);
        }
    }
}

static int run_file(const fz_target *t, const char *path, int *rc)
{
    size_t n = 0;
    unsigned char *b = tf_read_bytes(path, &n);
    if (!b) return -1;
    *rc = t->fn(b, n);
    free(b);
    return 0;
}

static void test_valid_files(void)
{
    if (!run_a3_bin()) fprintf(stderr, "  note: A3_BIN not set: no model, cache or plan seeds\n");
    int per[sizeof fz_targets / sizeof *fz_targets] = {0};
    for (int i = 0; i < n_seeds; i++) {
        const fz_target *t = fz_find(seeds[i].target);
        int rc = -1;
        CHECKF(t, "no target %s", seeds[i].target);
        if (!t) continue;
        CHECKF(run_file(t, seeds[i].path, &rc) == 0, "cannot read %s", seeds[i].path);
        CHECKF(rc == A3_OK, "%s refused by target %s (%d)", seeds[i].path, seeds[i].target, rc);
        per[t - fz_targets]++;
    }
    /* every target has a valid file when the binary and ../shared are here */
    for (int k = 0; k < fz_n_targets; k++)
        if (!per[k] && run_a3_bin() && test_shared_data()) CHECKF(0, "no valid file for target %s", fz_targets[k].name);
}

/* A committed input is refused by its target, or accepted if named ok-*. */
static void check_committed(const fz_target *t, const char *path, const char *name)
{
    int rc = -1;
    CHECKF(run_file(t, path, &rc) == 0, "cannot read %s", path);
    int want_ok = strncmp(name, "ok-", 3) == 0;
    CHECKF((rc == A3_OK) == want_ok, "%s: %s (rc %d)", path, want_ok ? "refused" : "accepted", rc);
}

static void test_corpus(void)
{
    CHECKF(walk_corpus(check_committed) > 0, "no committed inputs under tests/fuzz/corpus");
}

/* ---- deterministic mutants ------------------------------------------------------ */

static uint64_t rng; /* xorshift64 state, never 0 */

static uint64_t fnv1a(uint64_t h, const char *str)
{
    for (; *str; str++) h = (h ^ (unsigned char)*str) * 0x100000001b3ull;
    return h;
}
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* One mutant of src (n bytes) into *out (malloc'd), its length returned. */
static size_t mutate(const unsigned char *src, size_t n, unsigned char **out)
{
    static const uint64_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, 0x7fffffff, 0x80000000u, 0xffffffffu,
                                           0x7fffffffffffffffull, UINT64_MAX, 1ull << 40};
    static const char *const tokens[] = {"-1", "1e308", "NaN", "null", "9999999999", "\"\"", "[]", "{}", "0", "\"\\u0000\""};
    size_t cap = n + 64;
    unsigned char *b = malloc(cap);
    if (!b) return 0;
    memcpy(b, src, n);
    size_t len = n;
    int op = (int)(next() % 7);
    size_t at = n ? (size_t)(next() % n) : 0;
    switch (op) {
    case 0: /* flip a bit */
        if (len) b[at] ^= (unsigned char)(1u << (next() % 8));
        break;
    case 1: /* truncate */
        len = at;
        break;
    case 2: { /* an interesting 1, 4 or 8-byte value */
        uint64_t v = interesting[next() % (sizeof interesting / sizeof *interesting)];
        size_t w = (size_t[]){1, 4, 8}[next() % 3];
        for (size_t i = 0; i < w && at + i < len; i++) b[at + i] = (unsigned char)(v >> (8 * i));
        break;
    }
    case 3: { /* cut a range */
        size_t k = 1 + next() % 32;
        if (at + k > len) k = len - at;
        memmove(b + at, b + at + k, len - at - k);
        len -= k;
        break;
    }
    case 4: { /* repeat a range */
        size_t k = 1 + next() % 32;
        if (at + k > len) k = len - at;
        memmove(b + at + k, b + at, len - at);
        len += k;
        break;
    }
    case 5: { /* a number of a text format replaced by an odd token */
        size_t i = at;
        while (i < len && !(b[i] >= '0' && b[i] <= '9')) i++;
        if (i < len) {
            size_t j = i;
            while (j < len && ((b[j] >= '0' && b[j] <= '9') || b[j] == '.')) j++;
            const char *tk = tokens[next() % (sizeof tokens / sizeof *tokens)];
            size_t tl = strlen(tk);
            if (len - (j - i) + tl <= cap) {
                memmove(b + i + tl, b + j, len - j);
                memcpy(b + i, tk, tl);
                len = len - (j - i) + tl;
            }
        }
        break;
    }
    default: /* a random byte */
        if (len) b[at] = (unsigned char)next();
        break;
    }
    *out = b;
    return len;
}

static void test_mutants(void)
{
    const char *env = getenv("A3_FUZZ_MUTANTS");
    int per = env ? atoi(env) : 1000;
    long total = 0, accepted = 0;
    for (int i = 0; i < n_seeds; i++) {
        const fz_target *t = fz_find(seeds[i].target);
        size_t n = 0;
        unsigned char *src = tf_read_bytes(seeds[i].path, &n);
        CHECK(t && src);
        if (!t || !src) continue;
        /* big files (a llama2.c checkpoint) get fewer mutants: each one is a
         * whole write and load */
        int m = n > (1u << 20) ? per / 10 : per;
        /* the same mutants on every machine, whatever order the files come
         * in: the generator restarts from the target and file name */
        const char *base = strrchr(seeds[i].path, '/');
        rng = fnv1a(fnv1a(0xcbf29ce484222325ull, seeds[i].target), base ? base + 1 : seeds[i].path) | 1;
        for (int k = 0; k < m; k++) {
            unsigned char *b = NULL;
            size_t len = mutate(src, n, &b);
            if (!b) continue;
            accepted += t->fn(b, len) == A3_OK;
            total++;
            free(b);
        }
        free(src);
    }
    fprintf(stderr, "  note: %ld mutants of %d valid files, %ld accepted, the rest refused, none crashed\n", total,
            n_seeds, accepted);
    CHECK(total > 0);
}

/* Copy every valid file into dir/<target>/seed-<i>; 0 or 1. */
static int write_seeds(const char *dir)
{
    for (int i = 0; i < n_seeds; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, seeds[i].target);
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return perror(p), 1;
        size_t n = 0;
        unsigned char *b = tf_read_bytes(seeds[i].path, &n);
        snprintf(p, sizeof p, "%s/%s/seed-%d", dir, seeds[i].target, i);
        int bad = !b || tf_write_bytes(p, b, n) != 0;
        free(b);
        if (bad) return fprintf(stderr, "%s: cannot copy %s\n", p, seeds[i].path), 1;
    }
    return 0;
}

static void cleanup(void)
{
    fz_cleanup();
    if (tmp[0]) test_rm_rf(tmp);
}

int main(void)
{
    collect_seeds();
    const char *to = getenv("A3_FUZZ_SEEDS");
    if (to && *to) {
        int rc = write_seeds(to);
        cleanup();
        return rc;
    }
    RUN(test_valid_files);
    RUN(test_corpus);
    RUN(test_mutants);
    cleanup();
    return test_summary("fuzz");
}
