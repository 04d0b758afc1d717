/* a3 cache info CACHE: what a calibration cache holds, and how much of each
 * component's loss mass sits in its top-ranked units (a quick view of how
 * compressible each layer is, before any planning). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "a3/cache.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 cache SUBCOMMAND [ARGS]   (a3 cache SUBCOMMAND --help for each)\n\n"
    "Inspect calibration caches written by 'a3 calibrate'.\n\n"
    "subcommands:\n"
    "  info CACHE   metadata and a per-layer summary of the loss curves\n"
    "  merge SHARD... -o CACHE\n"
    "               combine shards of one calibration (calibrate --shard)\n"
    "  synth --like PRESET -o CACHE\n"
    "               a SYNTHETIC cache of a preset's shape (tests, benchmarks)\n\n"
    "examples:\n"
    "  a3 cache info llama-1b.cache\n"
    "  a3 cache merge shard-*.cache -o llama-1b.cache\n";

static const char *INFO_HELP =
    "usage: a3 cache info [--verify] CACHE\n\n"
    "Open CACHE, checking its structure (header, metadata, every section's\n"
    "size and place) and the loss curves (checksums, values), then print its\n"
    "metadata (model, fingerprint, calibration texts with their SHA-256,\n"
    "samples, sequence length, seed, tokens, tool, creation time) and, per\n"
    "layer, the share of each component's loss mass held by its top 25%, 50%\n"
    "and 75% of units (RoPE pairs for QK, singular values for OV, neurons for\n"
    "the MLP); the exact definition is printed under the table. The other\n"
    "sections (statistics, orders, scores: 99% of the bytes) are checked when\n"
    "something reads them (a3 apply: each layer before its use).\n\n"
    "  --verify  also read and check every other section now, layer by layer\n"
    "            (checksums and values; memory: one layer's sections)\n\n"
    "exit codes: 0 ok, 1 unreadable or corrupt cache, 2 usage,\n"
    "            3 cache written by a newer a3\n\n"
    "examples:\n"
    "  a3 cache info llama-1b.cache | less\n"
    "  a3 cache info --verify llama-1b.cache\n";

static const int PCTS[3] = {25, 50, 75};

/* k = ceil(p% of n) units: the top quarter of 2 pairs is 1 pair, not 0. */
static size_t top_k(size_t n, int pct) { return (n * (size_t)pct + 99) / 100; }

/* Mean over KV groups of 1 - loss(k)/loss(0); NAN when no group has loss.
 * The QK curve is exact but not monotone: loss(k) is the mean squared
 * score of the dropped pairs, and a score is a sum over pairs whose terms
 * can cancel, so the dropped pairs alone can score more than all of them
 * (loss(k) > loss(0); seen at -93.6% on a cache calibrated on one repeated
 * character). Such a group holds none of the loss in its top k: it counts
 * as 0, and *clamped says so, which keeps every share within [0, 1]. */
static double qk_share(const a3_cache *c, int l, int pct, int *clamped)
{
    size_t half = (size_t)c->head_dim / 2, k = top_k(half, pct);
    double sum = 0;
    int n = 0;
    for (int g = 0; g < c->n_kv_heads; g++) {
        const double *loss = c->layers[l].qk_loss + (size_t)g * (half + 1);
        if (!(loss[0] > 0)) continue;
        double s = 1 - loss[k] / loss[0];
        if (s < 0) s = 0, *clamped = 1;
        sum += s, n++;
    }
    return n ? sum / n : NAN;
}

/* Mean over KV groups of the top-k share of sum sigma^2. */
static double ov_share(const a3_cache *c, int l, int pct, int *clamped)
{
    (void)clamped; /* a ratio of sums of squares: always in [0, 1] */
    size_t hd = (size_t)c->head_dim, k = top_k(hd, pct);
    double sum = 0;
    int n = 0;
    for (int g = 0; g < c->n_kv_heads; g++) {
        const double *sv = c->layers[l].ov_sv + (size_t)g * hd;
        double top = 0, all = 0;
        for (size_t j = 0; j < hd; j++) {
            all += sv[j] * sv[j];
            if (j < k) top += sv[j] * sv[j];
        }
        if (all > 0) sum += top / all, n++;
    }
    return n ? sum / n : NAN;
}

static double mlp_share(const a3_cache *c, int l, int pct, int *clamped)
{
    (void)clamped; /* the estimate adds non-negative scores: monotone */
    const double *loss = c->layers[l].mlp_loss;
    size_t k = top_k((size_t)c->d_ff, pct);
    return loss[0] > 0 ? 1 - loss[k] / loss[0] : NAN;
}

typedef double (*share_fn)(const a3_cache *c, int l, int pct, int *clamped);
static const share_fn SHARES[3] = {qk_share, ov_share, mlp_share};

/* A share, '*' after it when a group was counted as 0 (qk_share). */
static void print_cell(double v, int clamped)
{
    if (isnan(v)) printf("%7s", "-");
    else if (clamped) printf("%5.1f%%*", 100 * v);
    else printf("%6.1f%%", 100 * v);
}

/* One row: 9 cells from the layer (or, with l < 0, the mean over layers). */
static void print_row(const a3_cache *c, int l)
{
    if (l >= 0) printf("%5d", l);
    else printf("%5s", "mean");
    for (int comp = 0; comp < 3; comp++) {
        printf("%s", comp ? "  |" : "  ");
        for (int p = 0; p < 3; p++) {
            double v = 0;
            int n = 0, clamped = 0;
            for (int i = l >= 0 ? l : 0; i < (l >= 0 ? l + 1 : c->n_layers); i++) {
                double x = SHARES[comp](c, i, PCTS[p], &clamped);
                if (!isnan(x)) v += x, n++;
            }
            print_cell(n ? v / n : NAN, clamped);
        }
    }
    putchar('\n');
}

/* Whether any QK group of any layer has a cell counted as 0. */
static int any_clamped(const a3_cache *c)
{
    int clamped = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < 3; p++) qk_share(c, l, PCTS[p], &clamped);
    return clamped;
}

static void print_table(const a3_cache *c)
{
    printf("\nper layer: share of the loss mass held by the top 25/50/75%% of units\n");
    printf("%5s  %-21s  | %-21s  | %s\n", "", "    QK (RoPE pairs)", " OV (singular values)", "     MLP (neurons)");
    printf("layer");
    for (int comp = 0; comp < 3; comp++) printf("%s%7s%7s%7s", comp ? "  |" : "  ", "25%", "50%", "75%");
    putchar('\n');
    for (int l = 0; l < c->n_layers; l++) print_row(c, l);
    print_row(c, -1);
    printf("\nShare of each component's loss mass in its top p%% units, k = ceil(p*n):\n"
           "  QK   1 - loss(k pairs kept)/loss(0 kept) on the QK loss curve,\n"
           "       n = head_dim/2 RoPE pairs; mean over the layer's KV groups\n"
           "  OV   sum of the k largest sigma^2 / sum of all sigma^2,\n"
           "       n = head_dim singular values; mean over KV groups\n"
           "  MLP  1 - loss(k neurons kept)/loss(0 kept), n = d_ff, on the cache's\n"
           "       diagonal ESTIMATE sum D_n |W_down[n,:]|^2 (no cross terms; the\n"
           "       exact curves, with --mlp-full, are in CACHE.pred)\n"
           "High shares at 25%% mean the component compresses well. '-': no loss\n"
           "mass (all zero). The mean row averages the layers.\n");
    if (any_clamped(c))
        printf("*: in some KV groups keeping those pairs leaves a larger pre-RoPE score\n"
               "   error than keeping none (loss(k) > loss(0): the pairs' terms cancel\n"
               "   in the full score), so they hold none of the loss and count as 0.\n"
               "   Usual with thin statistics (few or repetitive calibration tokens).\n");
}

static void print_text(const char *label, const char *v) { printf("%-13s%s\n", label, v && *v ? v : "-"); }

/* Absent integers (-1) print as "-". */
static void print_int(const char *label, int64_t v)
{
    if (v < 0) print_text(label, "-");
    else printf("%-13s%lld\n", label, (long long)v);
}

static void print_meta(const char *path, const a3_cache *c, const a3_cache_meta *m)
{
    struct stat st;
    print_text("cache", path);
    if (stat(path, &st) == 0)
        printf("%-13s%lld bytes (%.1f MiB)\n", "size", (long long)st.st_size, (double)st.st_size / 1048576.0);
    printf("%-13s%s%s%s%s\n", "model", *m->model_path ? m->model_path : "-", *m->architecture ? " (" : "",
           m->architecture, *m->architecture ? ")" : "");
    print_text("fingerprint", c->fingerprint);
    printf("%-13sd %d, %d layers, %d heads, %d KV heads, head_dim %d, d_ff %d\n", "dims", c->d, c->n_layers,
           c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff);
    if (m->n_texts == 0) print_text("texts", "-");
    for (int i = 0; i < m->n_texts; i++) {
        print_text(i ? "" : "texts", m->texts[i].path);
        print_text("  sha256", m->texts[i].sha256);
    }
    print_int("samples", m->samples);
    print_int("seqlen", m->seqlen);
    print_int("seed", m->seed);
    print_int("tokens", c->n_tokens);
    print_text("mlp_full", c->mlp_full ? "yes (Ru: exact MLP curves in CACHE.pred, a3-refit available)"
                                        : "no (MLP curves are the diagonal estimate)");
    print_text("tool", m->tool);
    print_text("created", m->created);
}

/* --verify: every section read and checked, one layer at a time. */
static int verify_all(const a3_cache *c, a3_err *err)
{
    cli_progress pr;
    cli_progress_init(&pr, "layers");
    int rc = A3_OK;
    for (int l = 0; rc == A3_OK && l < c->n_layers; l++) {
        rc = a3_cache_need(c, l, err);
        a3_cache_release(c, l);
        cli_progress_quiet_cb(&pr, "verify", l + 1, c->n_layers);
    }
    cli_progress_end(&pr);
    return rc;
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int verify = 0;
    const cli_opt opts[] = {CLI_FLAG("--verify", &verify), {0}};
    const cli_opt pos[] = {CLI_STR("CACHE", &path), {0}};
    int rc = cli_parse(&(cli_spec){"cache info", INFO_HELP, opts, pos}, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!path) return cli_usage("cache info", "missing CACHE");
    a3_err err = {0};
    a3_cache *c = NULL;
    a3_cache_meta m;
    if (cli_cache_open(path, &c, &err)) return cli_fail("cache info", &err);
    if (verify && verify_all(c, &err)) {
        a3_cache_free(c);
        return cli_fail("cache info", &err);
    }
    if (a3_cache_meta_parse(c, &m, &err)) {
        a3_cache_free(c);
        return cli_fail("cache info", &err);
    }
    print_meta(path, c, &m);
    print_table(c);
    a3_cache_meta_clear(&m);
    a3_cache_free(c);
    return fflush(stdout) == 0 ? 0 : 1;
}

int a3_cmd_cache(int argc, char **argv)
{
    if (argc < 2) return cli_usage("cache", "missing subcommand");
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        fputs(HELP, stdout);
        return 0;
    }
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "merge") == 0) return a3_cmd_cache_merge(argc - 1, argv + 1);
    if (strcmp(argv[1], "synth") == 0) return a3_cmd_cache_synth(argc - 1, argv + 1);
    return cli_usage("cache", "unknown subcommand '%s'", argv[1]);
}
