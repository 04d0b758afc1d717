/* a3 probe MODEL --cache CACHE --text FILE: the prediction sidecar
 * CACHE.pred (exact loss curves of every method, then the NLL probe). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "a3/cache.h"
#include "a3/calib.h"
#include "a3/cleanup.h"
#include "a3/pred.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 probe MODEL_DIR --cache CACHE (--text FILE... | --ids FILE)\n"
    "                [--samples N] [--seqlen L] [--seed S] [options]\n"
    "       a3 probe MODEL_DIR --cache CACHE --curves-only\n\n"
    "Write CACHE.pred, which 'a3 plan' and the TUI read next to CACHE:\n"
    " 1. the exact loss curve of every method at every width (QK a3,\n"
    "    weight-norm, greedy-exact; OV a3, a3-csum, svd as the error of the\n"
    "    heads' outputs; MLP a3, weight-norm and a3-refit from Ru; without\n"
    "    --mlp-full in the calibration the MLP curves are the diagonal\n"
    "    ESTIMATE and a3-refit has none). Cost: one pass over the weights,\n"
    "    2 d_ff^2 d + d_ff^3/3 flops per layer with Ru in double precision\n"
    "    (1.4e12 for a 7B layer: tens of CPU seconds, docs/PERFORMANCE.md).\n"
    " 2. the NLL probe: on N windows of L tokens of the text, every layer's\n"
    "    QK, OV and MLP is cut (A3 method) one at a time, to the width whose\n"
    "    relative loss is nearest --target and to width 0, and the change of\n"
    "    the mean NLL is recorded: 'a3 plan' interpolates it into the\n"
    "    predicted NLL (and perplexity) change of any plan, and greedy\n"
    "    ranks removals by it. Cost: about 3 (n_layers + 1) forward passes\n"
    "    over the N x L probe tokens. Saved after every layer: rerun the\n"
    "    same command to resume after an interruption. 'a3 calibrate' runs\n"
    "    it by default when that is at most 1e12 flops or a quarter of the\n"
    "    calibration (small models); for larger ones run it here.\n\n"
    "options:\n"
    "  --cache CACHE     the calibration cache of this model (required)\n"
    "  --text FILE...    probe text (UTF-8; use text the model was not\n"
    "                    evaluated on); or --ids FILE of uint32 ids\n"
    "  -o, --output FILE output (default CACHE.pred)\n"
    "  --samples N       probe windows (default 8)\n"
    "  --seqlen L        tokens per window (default 256, capped by context)\n"
    "  --seed S          window seed (default 1)\n"
    "  --target R        relative loss of the first cut (default 0.3; the\n"
    "                    second removes the component)\n"
    "  --curves-only     exact curves only, no probe (no text needed)\n"
    "  --threads N       threads (default: all cores)\n\n"
    "examples:\n"
    "  a3 calibrate M --text calib.txt --mlp-full -o m.cache\n"
    "  a3 probe M --cache m.cache --text probe.txt --samples 8 --seqlen 256\n"
    "  a3 plan m.cache --budget params=20% -o plan.json   # reads m.cache.pred\n\n"
    "exit codes: 0 ok, 1 bad input, 2 usage, 4 cache of another model,\n"
    "            130 interrupted (rerun to resume)\n";

typedef struct {
    const char *model, *cache, *out, *ids;
    const char *texts[64];
    int n_texts, curves_only;
    long samples, seqlen, seed, threads;
    double keep;
} probe_opts;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig, g_stop = 1; }
static int stop_cb(void *ctx, const char *stage, int64_t done, int64_t total)
{
    cli_progress_cb(ctx, stage, done, total);
    /* a3 probe's own handler, or a3 calibrate's (a3/cleanup.h) when the
     * probe runs at the end of a calibration */
    return g_stop || a3_cleanup_interrupted();
}

static int parse(int argc, char **argv, probe_opts *o)
{
    o->samples = 8, o->seqlen = 256, o->seed = 1, o->keep = 0.3;
    const cli_opt opts[] = {CLI_STR("--cache", &o->cache),
                            CLI_LIST("--text", o->texts, &o->n_texts),
                            CLI_STR("--ids", &o->ids),
                            CLI_OUTPUT(&o->out),
                            CLI_INT("--samples", &o->samples, 1, 1 << 16),
                            CLI_INT("--seqlen", &o->seqlen, 2, 1 << 20),
                            CLI_INT("--seed", &o->seed, 0, 1L << 62),
                            CLI_DOUBLE("--target", &o->keep, 0.01, 0.99),
                            CLI_FLAG("--curves-only", &o->curves_only),
                            CLI_INT("--threads", &o->threads, 1, 256),
                            {0}};
    const cli_opt pos[] = {CLI_STR("MODEL_DIR", &o->model), {0}};
    int rc = cli_parse(&(cli_spec){"probe", HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (!o->model || !o->cache) return cli_usage("probe", "MODEL_DIR and --cache CACHE are required");
    if (!o->curves_only && !o->n_texts == !o->ids)
        return cli_usage("probe", "give --text FILE... or --ids FILE (or --curves-only)");
    return 0;
}

int cli_pred_run(a3_model *m, const a3_cache *c, const char *out, const int32_t *win, int nw, int L, double keep,
                 a3_err *err)
{
    a3_pred *p = NULL;
    /* Reuse the curves (and a partial probe) of an existing sidecar made
     * from this very cache; anything else is recomputed. */
    int have = access(out, F_OK) == 0;
    int rc = have ? a3_pred_load(out, c, &p, err) : A3_OK;
    if (!have || rc != A3_OK) {
        a3_pred_free(p), p = NULL;
        if (rc != A3_OK) fprintf(stderr, "a3 probe: recomputing %s (%s)\n", out, err->msg);
        memset(err, 0, sizeof *err);
        cli_progress pr;
        cli_progress_init(&pr, "layers");
        rc = a3_pred_new(c, &p, err);
        if (!rc) rc = a3_pred_curves(m, c, p, stop_cb, &pr, err);
        cli_progress_end(&pr);
        if (!rc) rc = a3_pred_save(p, out, err);
        if (!rc) fprintf(stderr, "a3 probe: exact curves (%s MLP) in %s (%.1f s)\n",
                         p->mlp_exact ? "exact" : "estimated", out, a3_now() - pr.t0);
    }
    if (!rc && win) {
        if (p->layers_done > 0 && p->layers_done < p->n_layers)
            fprintf(stderr, "a3 probe: resuming after layer %d of %d\n", p->layers_done, p->n_layers);
        cli_progress pr;
        cli_progress_init(&pr, "runs");
        a3_probe_opts po = {.target = keep, .save_path = out};
        rc = a3_probe(m, c, p, win, nw, L, &po, stop_cb, &pr, err);
        cli_progress_end(&pr);
        if (!rc)
            fprintf(stderr, "a3 probe: NLL sensitivities of %d layers on %lld tokens (base NLL %.4f) in %s (%.1f s)\n",
                    p->n_layers, (long long)p->probe_tokens, p->base_nll, out, a3_now() - pr.t0);
        else if (rc == A3_ECANCELED)
            fprintf(stderr, "a3 probe: interrupted; %d layers kept in %s (rerun to resume)\n", p->layers_done, out);
    }
    a3_pred_free(p);
    return rc;
}

static int run(const probe_opts *o, a3_model *m, a3_err *err)
{
    a3_cache *c = NULL;
    char *out = o->out ? NULL : a3_pred_path(o->cache);
    int32_t *ids = NULL, *win = NULL;
    size_t n = 0;
    int nw = 0, L = 0, seqlen = (int)o->seqlen;
    const a3_config *k = a3_model_config(m);
    if (seqlen > k->max_seq) seqlen = k->max_seq;
    int rc = !o->out && !out ? a3_err_set(err, A3_ENOMEM, "out of memory") : a3_cache_load(o->cache, &c, err);
    char fp[65];
    if (!rc) rc = a3_model_fingerprint(o->model, fp, err);
    if (!rc && strcmp(fp, c->fingerprint))
        rc = a3_err_set(err, A3_EMISMATCH, "%s: calibrated on another model than %s", o->cache, o->model);
    if (!rc && !o->curves_only) rc = cli_tokenize(o->model, a3_model_config(m)->vocab, o->texts, o->n_texts, o->ids, &ids, &n, NULL, err);
    if (!rc && !o->curves_only)
        rc = a3_calib_windows(ids, n, (int)o->samples, seqlen, (uint64_t)o->seed, 1, &win, &nw, &L, err);
    if (!rc) rc = cli_pred_run(m, c, o->out ? o->out : out, win, nw, L, o->keep, err);
    free(ids), free(win), free(out);
    a3_cache_free(c);
    return rc;
}

int a3_cmd_probe(int argc, char **argv)
{
    probe_opts o;
    memset(&o, 0, sizeof o);
    int prc = parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(o.model, &m, &err)) return cli_fail("probe", &err);
    a3_model_set_threads(m, (int)o.threads);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = run(&o, m, &err);
    a3_model_free(m);
    return rc ? cli_fail("probe", &err) : 0;
}
