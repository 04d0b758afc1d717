/* a3 calibrate MODEL --text FILE... -o CACHE: the calibration pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/cache.h"
#include "a3/cleanup.h"
#include "a3/calib.h"
#include "a3/pred.h"
#include "a3/tokenizer.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 calibrate MODEL_DIR (--text FILE... | --ids FILE) -o CACHE\n"
    "                    [--samples N] [--seqlen L] [--seed S] [options]\n\n"
    "Run the model over calibration text one layer at a time and store the\n"
    "per-head statistics and loss curves that A3 needs in CACHE. The text is\n"
    "tokenized (each file as one stream starting with BOS) and N windows of\n"
    "L tokens are drawn at random offsets, reproducibly from the seed.\n\n"
    "options:\n"
    "  --text FILE...    calibration text files (UTF-8)\n"
    "  --ids FILE        pre-tokenized little-endian uint32 ids instead\n"
    "  -o, --output CACHE  output cache file (written atomically)\n"
    "  --samples N       windows (default 128)\n"
    "  --seqlen L        tokens per window (default 2048, capped by context)\n"
    "  --seed S          window seed (default 0)\n"
    "  --allow-short     with too little text, use what there is\n"
    "  --mlp-full        also gather the full MLP autocorrelation Ru (d_ff^2\n"
    "                    per layer): exact MLP loss curves and the a3-refit\n"
    "                    method; without it the MLP curves are the diagonal\n"
    "                    ESTIMATE sum D_n |W_down[n,:]|^2 (no cross terms)\n"
    "  --probe           then measure every component's NLL sensitivity on\n"
    "                    the first --probe-samples windows (default 8): see\n"
    "                    'a3 probe --help'; costs ~3 (layers + 1) forward\n"
    "                    passes over them. Default: on when affordable (see\n"
    "                    below); --probe forces it\n"
    "  --no-probe        never run the probe (run 'a3 probe' later)\n"
    "  --max-memory SIZE refuse to start above SIZE (16GB = 16 x 10^9 bytes,\n"
    "                    15GiB = 15 x 2^30, or bytes; default 90% of the\n"
    "                    available memory)\n"
    "  --resume          continue an interrupted run from CACHE.ckpt\n"
    "  --shard K/N       process only the K-th of N equal parts of the windows\n"
    "                    (merge the N caches with 'a3 cache merge')\n"
    "  --threads N       threads (default: all cores)\n\n"
    "Besides CACHE it writes CACHE.pred: the exact loss curve of every\n"
    "method and the probe's NLL sensitivities, which 'a3 plan' and the TUI\n"
    "read (not for --shard: run 'a3 probe' after merging). The probe runs by\n"
    "default when its estimated cost is at most 1e12 flops or a quarter of\n"
    "the calibration's own (small models; not 7B-sized ones, where it would\n"
    "cost several calibrations): one stderr line says whether it runs, why,\n"
    "and the 'a3 probe' command that runs it later.\n"
    "Peak memory is about N x L x d x 4 bytes of hidden states plus one\n"
    "layer in float32; the estimate is printed before starting.\n"
    "Fewer than 16 tokens per head dimension (or fewer distinct tokens than\n"
    "head_dim) get a warning: such statistics make unreliable loss curves.\n"
    "Ctrl-C stops at the next chunk of tokens, keeping finished layers in\n"
    "CACHE.ckpt for --resume (a second Ctrl-C quits at once). A resumed run\n"
    "writes the same bytes as an uninterrupted one on the same OpenBLAS kernel,\n"
    "with any --threads (it keeps the first run's \"created\" stamp;\n"
    "SOURCE_DATE_EPOCH sets it). Another kernel moves sums by about 1e-9: the\n"
    "cache records the kernel(s), a resume on another one warns, and\n"
    "OPENBLAS_CORETYPE=NAME selects the checkpoint's where the CPU has it.\n"
    "exit codes: 0 ok, 1 bad input, 2 usage, 3 unsupported model,\n"
    "            130 interrupted (rerun with --resume)\n\n"
    "examples:\n"
    "  a3 calibrate llama-1b --text wiki.train.txt -o llama-1b.cache\n"
    "  a3 calibrate llama-1b --text a.txt b.txt --samples 32 --seqlen 512 \\\n"
    "      -o small.cache\n"
    "  a3 calibrate llama-1b --text wiki.train.txt -o llama-1b.cache --resume\n"
    "  a3 calibrate samples/sample-model --text samples/calib.txt --samples 32 \\\n"
    "      --seqlen 256 --allow-short -o s.cache     # curves and probe\n"
    "  a3 calibrate llama-1b --text wiki.train.txt --no-probe -o llama-1b.cache\n";

typedef struct {
    const char *model, *out, *ids;
    const char *texts[64];
    char sha[64][65];         /* of each text as read */
    const char *sha_p[64];
    int n_texts;
    long samples, seqlen, seed, threads;
    int allow_short, mlp_full, resume, probe, no_probe;
    long probe_samples;
    long shard_k, shard_n;
    uint64_t max_memory; /* bytes; 0: 90% of what is available */
} calib_opts;


static int opt_shard(const char *cmd, const char *opt, const char *v, void *ctx)
{
    calib_opts *o = ctx;
    char *slash;
    o->shard_k = strtol(v, &slash, 10);
    o->shard_n = *slash == '/' ? strtol(slash + 1, NULL, 10) : 0;
    if (o->shard_n < 1 || o->shard_k < 1 || o->shard_k > o->shard_n || o->shard_n > 1 << 20)
        return cli_usage(cmd, "%s: expected K/N with 1 <= K <= N, got '%s'", opt, v);
    return 0;
}

static int parse(int argc, char **argv, calib_opts *o)
{
    const cli_opt opts[] = {CLI_LIST("--text", o->texts, &o->n_texts),
                            CLI_STR("--ids", &o->ids),
                            CLI_OUTPUT(&o->out),
                            CLI_INT("--samples", &o->samples, 1, 1 << 20),
                            CLI_INT("--seqlen", &o->seqlen, 2, 1 << 20),
                            CLI_INT("--seed", &o->seed, 0, 1L << 62),
                            CLI_FLAG("--allow-short", &o->allow_short),
                            CLI_FLAG("--mlp-full", &o->mlp_full),
                            CLI_FLAG("--probe", &o->probe),
                            CLI_FLAG("--no-probe", &o->no_probe),
                            CLI_INT("--probe-samples", &o->probe_samples, 1, 1 << 16),
                            CLI_FN("--max-memory", cli_opt_bytes, &o->max_memory),
                            CLI_FLAG("--resume", &o->resume),
                            CLI_FN("--shard", opt_shard, o),
                            CLI_INT("--threads", &o->threads, 1, 256),
                            {0}};
    const cli_opt pos[] = {CLI_STR("MODEL_DIR", &o->model), {0}};
    int rc = cli_parse(&(cli_spec){"calibrate", HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (!o->model || !o->out) return cli_usage("calibrate", "MODEL_DIR and -o CACHE are required");
    if (!o->n_texts == !o->ids) return cli_usage("calibrate", "give --text FILE... or --ids FILE");
    if (o->probe && o->no_probe) return cli_usage("calibrate", "--probe and --no-probe exclude each other");
    return 0;
}

static double available_memory(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024.0;
}

static int calib_cb(void *ctx, const char *stage, int64_t done, int64_t total)
{
    /* The first SIGINT/SIGTERM sets the flag (a3/cleanup.h): the pass stops
     * at the next chunk of rows and keeps its finished layers. */
    if (a3_cleanup_interrupted()) return 1;
    cli_progress_cb(ctx, stage, done, total);
    return 0;
}

/* Below THIN_PER_DIM tokens per head dimension, or with fewer distinct
 * tokens than head_dim, the per-head statistics (head_dim x head_dim) are
 * close to singular and the loss curves say almost nothing: a plan made
 * from them predicts ~0 loss for cuts that ruin the model. */
#define THIN_PER_DIM 16
static void warn_thin(const int32_t *win, size_t n, const a3_config *k)
{
    unsigned char *seen = calloc((size_t)k->vocab, 1);
    size_t distinct = 0;
    for (size_t i = 0; seen && i < n; i++)
        if (win[i] >= 0 && win[i] < k->vocab && !seen[win[i]]++) distinct++;
    int counted = seen != NULL;
    free(seen);
    if (n >= (size_t)THIN_PER_DIM * (size_t)k->head_dim && (!counted || distinct >= (size_t)k->head_dim)) return;
    fprintf(stderr,
            "calibrate: warning: thin statistics: %zu tokens (%zu distinct) for head_dim %d; below %d tokens per\n"
            "  head dimension or %d distinct tokens the loss curves are unreliable (use more, varied text)\n",
            n, distinct, k->head_dim, THIN_PER_DIM, k->head_dim);
}

/* The command that runs the probe later on the same text (a3 probe draws
 * its own windows, from seed 1; the calibration's probe took the first of
 * the calibration windows). */
static void probe_command(const calib_opts *o, int pn, int L)
{
    fprintf(stderr, "a3 probe %s --cache %s", o->model, o->out);
    if (o->ids) fprintf(stderr, " --ids %s", o->ids);
    else {
        fprintf(stderr, " --text");
        for (int i = 0; i < o->n_texts; i++) fprintf(stderr, " %s", o->texts[i]);
    }
    fprintf(stderr, " --samples %d --seqlen %d\n", pn, L);
}

/* Whether the probe runs (--probe, --no-probe, else the rule of
 * a3_probe_by_default), said in one stderr line. */
static int probe_decide(const calib_opts *o, const a3_config *k, int64_t calib_tokens, int pn, int L)
{
    double pf = a3_probe_cost_flops(k, (int64_t)pn * L, L), cf = a3_calib_cost_flops(k, calib_tokens, L, o->mlp_full);
    int yes = o->probe || (!o->no_probe && a3_probe_by_default(pf, cf));
    char why[160];
    if (o->probe || o->no_probe) snprintf(why, sizeof why, "%s", o->probe ? "--probe" : "--no-probe");
    else
        snprintf(why, sizeof why, "about %.2g flops, %.2fx the calibration's %.2g; on by default up to %.0g flops "
                 "or %.2fx", pf, cf > 0 ? pf / cf : 0.0, cf, A3_PROBE_AUTO_FLOPS, A3_PROBE_AUTO_SHARE);
    if (yes) {
        fprintf(stderr, "calibrate: NLL probe on %d x %d tokens: runs (%s)%s\n", pn, L, why,
                o->probe ? "" : "; --no-probe skips it");
        return 1;
    }
    fprintf(stderr, "calibrate: NLL probe: not run (%s); run it later with (or calibrate with --probe):\n  ", why);
    probe_command(o, pn, L);
    return 0;
}

static int run(calib_opts *o, a3_model *m, a3_err *err)
{
    const a3_config *k = a3_model_config(m);
    int32_t *ids = NULL, *win = NULL;
    size_t n;
    int nw, L, seqlen = (int)(o->seqlen ? o->seqlen : 2048), cap = o->seqlen ? k->max_seq : a3_config_max_seqlen(k);
    if (seqlen > cap) seqlen = cap;
    if (a3_config_check_seqlen(k, a3_model_dir(m), seqlen, err)) return A3_EUNSUPPORTED; /* before tokenizing */
    for (int i = 0; i < o->n_texts; i++) o->sha_p[i] = o->sha[i];
    int rc = cli_tokenize(o->model, k->vocab, o->texts, o->n_texts, o->ids, &ids, &n, o->sha, err);
    if (rc == A3_OK) rc = a3_calib_windows(ids, n, (int)(o->samples ? o->samples : 128), seqlen, (uint64_t)o->seed,
                                           o->allow_short, &win, &nw, &L, err);
    free(ids);
    if (rc) return rc;
    if (o->shard_n > 0) { /* windows [K-1, K) * nw / N of the full draw */
        int lo = (int)((o->shard_k - 1) * nw / o->shard_n), hi = (int)(o->shard_k * nw / o->shard_n);
        if (hi <= lo) {
            free(win);
            return a3_err_set(err, A3_EINVAL, "--shard %ld/%ld: no windows in this shard (only %d in all)", o->shard_k, o->shard_n, nw);
        }
        memmove(win, win + (size_t)lo * L, (size_t)(hi - lo) * L * sizeof *win);
        nw = hi - lo;
    }
    warn_thin(win, (size_t)nw * L, k);
    double est = (double)a3_calib_memory_estimate(k, nw, L, o->mlp_full), lim = o->max_memory ? (double)o->max_memory : 0.9 * available_memory();
    fprintf(stderr, "calibrate: %d windows x %d tokens = %lld tokens; peak memory estimate %.2f GiB\n", nw, L,
            (long long)nw * L, est / 1073741824.0);
    if (o->mlp_full)
        fprintf(stderr, "calibrate: warning: --mlp-full stores %.2f GiB of MLP autocorrelation in the cache\n",
                (double)k->n_layers * k->d_ff * k->d_ff * 8 / 1073741824.0);
    if (lim > 0 && est > lim) {
        free(win);
        return a3_err_set(err, A3_EINVAL, "needs about %.2f GiB, more than the %.2f GiB limit (lower --samples/--seqlen or raise --max-memory)",
                          est / 1073741824.0, lim / 1073741824.0);
    }
    a3_cache *c = a3_cache_new(k->d, k->n_layers, k->n_heads, k->n_kv_heads, k->head_dim, k->d_ff, o->mlp_full);
    size_t ol = strlen(o->out);
    char *ckdir = malloc(ol + 6); /* "<CACHE>.ckpt" */
    if (!c || !ckdir) rc = a3_err_set(err, A3_ENOMEM, "out of memory");
    else {
        memcpy(ckdir, o->out, ol);
        memcpy(ckdir + ol, ".ckpt", 6);
        rc = a3_model_fingerprint(o->model, c->fingerprint, err);
    }
    a3_calib_opts co = {.mlp_full = o->mlp_full, .checkpoint_dir = ckdir, .resume = o->resume};
    cli_created_stamp(co.created, sizeof co.created);
    cli_progress pr;
    cli_progress_init(&pr, "tok");
    if (rc == A3_OK) rc = a3_calibrate(m, win, nw, L, &co, c, calib_cb, &pr, err);
    cli_progress_end(&pr);
    const char *plus = strchr(co.kernel, '+');
    if (plus)
        fprintf(stderr, "calibrate: warning: the checkpoint's layers were computed with OpenBLAS kernel %.*s, "
                        "this run's with %s: the cache matches an uninterrupted run on neither (sums differ "
                        "by about 1e-9 relative); OPENBLAS_CORETYPE=%.*s resumes on the checkpoint's kernel "
                        "where the CPU has it\n",
                (int)(plus - co.kernel), co.kernel, strrchr(co.kernel, '+') + 1, (int)(plus - co.kernel), co.kernel);
    const char *const *texts = o->ids ? &o->ids : o->texts;
    a3_calib_meta meta = {.model_path = o->model, .config = k, .fingerprint = c ? c->fingerprint : "",
                          .texts = texts, .text_sha256 = o->ids ? NULL : o->sha_p, .n_texts = o->ids ? 1 : o->n_texts, .n_windows = nw, .seqlen = L,
                          .seed = o->seed, .n_tokens = c ? c->n_tokens : 0, .mlp_full = o->mlp_full,
                          .created = co.created, .blas_kernel = co.kernel, .shard_index = (int)o->shard_k, .shard_count = (int)o->shard_n};
    if (rc == A3_OK && !(c->meta_json = a3_calib_meta_json(&meta, err))) rc = err->code ? err->code : A3_ENOMEM;
    if (rc == A3_OK) rc = a3_cache_save(c, o->out, err);
    if (rc == A3_OK) a3_calib_checkpoint_remove(ckdir, k->n_layers);
    /* After a failure (interrupt, full disk...) a checkpoint with finished
     * layers is worth a --resume; one without is removed. */
    int kept = rc && ckdir ? a3_calib_checkpoint_layers(ckdir) : -1;
    if (kept > 0)
        fprintf(stderr, "calibrate: %s; %d finished layer%s kept in %s (rerun with --resume)\n",
                rc == A3_ECANCELED ? "interrupted" : "failed", kept, kept > 1 ? "s" : "", ckdir);
    else if (kept == 0) a3_calib_checkpoint_remove(ckdir, k->n_layers);
    if (rc == A3_OK)
        fprintf(stderr, "calibrate: wrote %s (%lld tokens, %.1f s)\n", o->out, (long long)c->n_tokens, a3_now() - pr.t0);
    if (rc == A3_OK && !o->shard_n) { /* CACHE.pred: exact curves, and the probe when decided so */
        char *pp = a3_pred_path(o->out);
        int pn = (int)(o->probe_samples ? o->probe_samples : 8);
        pn = pn < nw ? pn : nw;
        int probe = probe_decide(o, k, (int64_t)nw * L, pn, L);
        rc = pp ? cli_pred_run(m, c, pp, probe ? win : NULL, pn, L, 0.3, err)
                : a3_err_set(err, A3_ENOMEM, "out of memory");
        if (rc == A3_ECANCELED)
            fprintf(stderr, "calibrate: %s is complete; the probe was interrupted: resume it with\n  ", o->out),
                probe_command(o, pn, L);
        free(pp);
    }
    a3_cache_free(c);
    free(ckdir), free(win);
    return rc;
}

int a3_cmd_calibrate(int argc, char **argv)
{
    calib_opts o = {0};
    int prc = parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(o.model, &m, &err)) return cli_fail("calibrate", &err);
    a3_model_set_threads(m, (int)o.threads);
    a3_cleanup_install("\ncalibrate: stopping after the current chunk (again to quit at once)\n");
    int rc = run(&o, m, &err);
    a3_model_free(m);
    return rc ? cli_fail("calibrate", &err) : 0;
}
