/* a3 plan: make a rank plan from a calibration cache under a budget, or
 * show one. A thin shell over include/a3/plan.h: options in, a plan file
 * and a summary out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/cache.h"
#include "a3/config.h"
#include "a3/plan.h"
#include "a3/pred.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 plan CACHE --budget KIND=P% [OPTIONS] -o PLAN\n"
    "       a3 plan CACHE --keep qk=F,ov=F,mlp=F [OPTIONS] -o PLAN\n"
    "       a3 plan --show PLAN [--cache CACHE] [--force]\n\n"
    "Choose how wide every QK group, OV group and MLP of every layer stays,\n"
    "from the loss curves of a calibration cache, and write the plan as JSON\n"
    "(for 'a3 apply', the TUI, and git). --show prints a plan's per-layer\n"
    "table and summary.\n\n"
    "budget (the share REMOVED, of the compressible part):\n"
    "  --budget params=P%   P% of the QK, OV and MLP weights (and q/k/v biases)\n"
    "  --budget kv=P%       P% of the KV-cache bytes per token (MLP stays whole)\n"
    "  --budget flops=P%    P% of the layers' FLOPs per token at --context\n"
    "  --budget P%          the same as params=P%\n"
    "  --keep qk=F,ov=F,mlp=F  no budget: uniform keep-fraction per kind\n\n"
    "options:\n"
    "  --strategy S         greedy (default with --budget): remove the units\n"
    "                       with the least predicted loss per cost saved; or\n"
    "                       uniform: one keep-fraction everywhere\n"
    "  --lock SPEC          keep at full width: L, L:qk, L:ov, L:mlp or a\n"
    "                       range A-B[:kind] of layers (repeatable)\n"
    "  --weights qk=W,ov=W,mlp=W   weight of each kind's relative loss (1)\n"
    "  --min-rank qk=R,ov=R,mlp=R  smallest widths (qk=2,ov=1,mlp=1)\n"
    "  --multiple M         widths are multiples of M (QK: of lcm(2, M));\n"
    "                       full width is always allowed (default 1)\n"
    "  --context T          context length for FLOPs per token (2048)\n"
    "  --dtype f16|bf16|f32 KV-cache element type (f16)\n"
    "  --method-qk NAME     a3 (default), weight-norm, greedy-exact\n"
    "  --method-ov NAME     a3 (default), a3-csum, svd\n"
    "  --method-mlp NAME    a3-refit (default when the cache has Ru, i.e.\n"
    "                       calibrate --mlp-full: lower NLL at every budget\n"
    "                       measured, docs/RESULTS.md), a3 (default without\n"
    "                       Ru), weight-norm\n"
    "  --model DIR          read vocab, tied embeddings and biases from DIR's\n"
    "                       config.json (for whole-model totals)\n"
    "  --force              accept a model or plan whose fingerprint differs\n"
    "  -o, --output PLAN    write the plan here (atomically)\n"
    "  --show PLAN          print PLAN; with --cache CACHE, check it against\n"
    "                       CACHE and show per-layer predicted losses\n"
    "  --pred FILE          exact curves and probe (default CACHE.pred when it\n"
    "                       exists: written by 'calibrate' and 'a3 probe')\n"
    "  --no-pred            ignore CACHE.pred: the cache's A3 curves and\n"
    "                       the plain functional losses\n\n"
    "sequential reduction (beyond the paper, docs/SEQUENTIAL.md):\n"
    "  --sequential         record in the plan that 'a3 apply' reduces the\n"
    "                       layers in order, each solved on the inputs the\n"
    "                       already-reduced layers produce; it needs\n"
    "                       calibration tokens, recorded with it:\n"
    "  --text FILE...       calibration text (not the evaluation text)\n"
    "  --ids FILE           pre-tokenized little-endian uint32 ids instead\n"
    "  --samples N, --seqlen L, --seed S\n"
    "                       windows drawn as 'a3 calibrate' draws them\n"
    "                       (default: calibrate's defaults, seed 0)\n\n"
    "Predicted loss: per layer and kind, the loss of the plan's method at its\n"
    "widths divided by the loss at width 0, in percent as in the TUI (0% =\n"
    "full width, 100% = removed; the plan file stores fractions),\n"
    "from CACHE.pred's exact curves; without them, or without --mlp-full,\n"
    "the MLP numbers are the diagonal ESTIMATE (said so in the output). The\n"
    "summary gives the mean over layers and the objective (sum over layers\n"
    "of weight x relative loss) that greedy minimises. When the probe has\n"
    "measured each component's NLL sensitivity ('a3 calibrate' runs it by\n"
    "default on small models; else 'a3 probe'), the objective weight of each\n"
    "layer and kind is weight x sensitivity, so greedy minimises the\n"
    "predicted NLL change, which is printed with the perplexity ratio.\n\n"
    "exit codes: 0 ok, 1 unreadable or malformed input, 2 usage or a budget\n"
    "            that cannot be met, 3 newer plan version, 4 fingerprint mismatch\n\n"
    "examples:\n"
    "  a3 plan llama-1b.cache --budget params=20% -o plan.json\n"
    "  a3 plan llama-1b.cache --budget kv=30% --lock 0 --multiple 8 -o kv.json\n"
    "  a3 plan --show plan.json --cache llama-1b.cache\n"
    "  a3 plan llama-1b.cache --budget params=40% --sequential \\\n"
    "      --text train.txt --samples 64 --seqlen 512 -o seq.json\n";

typedef struct {
    const char *cache, *out, *show, *model, *pred;
    int no_pred;
    const char *budget, *keep, *strategy, *weights, *min_rank, *dtype;
    const char *method[A3_COMP_COUNT];
    const char **locks;
    int n_locks;
    long multiple, context;
    int force;
    int sequential, n_texts;      /* --sequential and its tokens */
    const char *texts[A3_PLAN_SEQ_FILES], *ids;
    long samples, seqlen, seed;
} plan_opts;

/* ---- option parsing ----------------------------------------------------------- */

/* "qk=1,ov=0.5": values for the kinds named (others untouched). */
static int parse_kinds(const char *opt, const char *val, double lo, double hi, int integer, double out[A3_COMP_COUNT])
{
    char buf[256];
    if (strlen(val) >= sizeof buf) return cli_usage("plan", "%s: value too long", opt);
    snprintf(buf, sizeof buf, "%s", val);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        int k = -1;
        if (eq) *eq = '\0'; /* tok is now the kind's name */
        for (int i = 0; eq && i < A3_COMP_COUNT; i++)
            if (strcmp(tok, a3_comp_name((a3_comp)i)) == 0) k = i;
        if (eq) *eq = '=';
        if (k < 0) return cli_usage("plan", "%s: expected qk=X,ov=X,mlp=X, got '%s'", opt, tok);
        long iv;
        int rc = integer ? cli_int("plan", opt, eq + 1, (long)lo, (long)hi, &iv)
                         : cli_double("plan", opt, eq + 1, lo, hi, &out[k]);
        if (rc) return rc;
        if (integer) out[k] = (double)iv;
    }
    return 0;
}

/* --lock, repeatable: every value kept, in order. */
static int take_lock(const char *cmd, const char *opt, const char *v, void *ctx)
{
    plan_opts *o = ctx;
    const char **l = realloc(o->locks, (size_t)(o->n_locks + 1) * sizeof *l);
    if (!l) return cli_usage(cmd, "out of memory");
    o->locks = l;
    o->locks[o->n_locks++] = v;
    return 0;
}

/* Returns 0 to go on, -1 after --help, or an exit status. */
static int parse(int argc, char **argv, plan_opts *o)
{
    memset(o, 0, sizeof *o);
    o->multiple = 1, o->context = 2048;
    const cli_opt opts[] = {CLI_STR("--budget", &o->budget),
                            CLI_STR("--keep", &o->keep),
                            CLI_STR("--strategy", &o->strategy),
                            CLI_STR("--weights", &o->weights),
                            CLI_STR("--min-rank", &o->min_rank),
                            CLI_STR("--dtype", &o->dtype),
                            CLI_STR("--method-qk", &o->method[A3_COMP_QK]),
                            CLI_STR("--method-ov", &o->method[A3_COMP_OV]),
                            CLI_STR("--method-mlp", &o->method[A3_COMP_MLP]),
                            CLI_STR("--model", &o->model),
                            CLI_STR("--show", &o->show),
                            CLI_STR("--cache", &o->cache),
                            CLI_OUTPUT(&o->out),
                            CLI_STR("--pred", &o->pred),
                            CLI_FLAG("--force", &o->force),
                            CLI_FLAG("--no-pred", &o->no_pred),
                            CLI_FN("--lock", take_lock, o),
                            CLI_INT("--multiple", &o->multiple, 1, A3_PLAN_MAX_MULTIPLE),
                            CLI_INT("--context", &o->context, 1, A3_PLAN_MAX_CONTEXT),
                            CLI_FLAG("--sequential", &o->sequential),
                            CLI_LIST("--text", o->texts, &o->n_texts),
                            CLI_STR("--ids", &o->ids),
                            CLI_INT("--samples", &o->samples, 1, 1 << 20),
                            CLI_INT("--seqlen", &o->seqlen, 2, 1 << 20),
                            /* below 2^53: the plan stores it as a JSON number */
                            CLI_INT("--seed", &o->seed, 0, (1L << 53) - 1),
                            {0}};
    const cli_opt pos[] = {CLI_STR("CACHE", &o->cache), {0}};
    int rc = cli_parse(&(cli_spec){"plan", HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (o->show && (o->out || o->budget || o->keep)) return cli_usage("plan", "--show takes no -o, --budget or --keep");
    if (o->show) return 0;
    if (!o->cache) return cli_usage("plan", "missing CACHE");
    if (!o->out) return cli_usage("plan", "missing -o PLAN");
    if (!o->budget == !o->keep) return cli_usage("plan", "give exactly one of --budget and --keep");
    int calib = o->n_texts || o->ids || o->samples || o->seqlen || o->seed;
    if (!o->sequential && calib) return cli_usage("plan", "--text, --ids, --samples, --seqlen and --seed go with --sequential");
    if (o->sequential && !o->n_texts == !o->ids) return cli_usage("plan", "--sequential needs --text FILE... or --ids FILE");
    return 0;
}

/* ---- printing -------------------------------------------------------------------- */

/* 1234567 -> "1,234,567" */
static const char *fmt_count(char *buf, size_t n, int64_t v)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)(v < 0 ? -v : v));
    size_t len = strlen(raw), j = 0;
    if (v < 0 && j + 1 < n) buf[j++] = '-';
    for (size_t i = 0; i < len && j + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = raw[i];
    }
    buf[j] = '\0';
    return buf;
}

/* Two lines: "LABEL  value of full UNIT" and the removes/keeps line. */
static void print_change(const char *label, int64_t v, int64_t full, const char *unit, const char *what)
{
    char a[40], b[40], line[160];
    printf("%-14s%s of %s %s\n", label, fmt_count(a, sizeof a, v), fmt_count(b, sizeof b, full), unit);
    printf("%-14s%s\n", "", a3_plan_fmt_change(line, sizeof line, v, full, what));
}

static void print_costs(const a3_plan *p)
{
    a3_cost_counts c, f;
    char unit[64];
    a3_plan_costs(p, &c);
    a3_plan_full_costs(p, &f);
    print_change("parameters", c.compressible, f.compressible, "compressible", "compressible parameters");
    if (c.total >= 0) print_change("", c.total, f.total, "in the whole model", "whole-model parameters");
    else printf("%-14s%s\n", "", "whole model: unknown (no vocab; make the plan with --model DIR)");
    snprintf(unit, sizeof unit, "bytes per token (%s)", a3_plan_kv_dtype_name(p->kv_dtype));
    print_change("KV cache", c.kv_bytes, f.kv_bytes, unit, "KV-cache bytes per token");
    snprintf(unit, sizeof unit, "in the layers at context %d", p->context);
    print_change("FLOPs/token", c.flops, f.flops, unit, "the layers' FLOPs per token");
    if (c.flops_total >= 0) print_change("", c.flops_total, f.flops_total, "with the lm_head", "all FLOPs per token");
}

static void print_locks(const a3_plan *p)
{
    int any = 0;
    printf("%-14s", "locks");
    for (int l = 0; l < p->dims.n_layers; l++)
        for (int k = 0; p->lock[l] && k < A3_COMP_COUNT; k++) {
            if (p->lock[l] == A3_LOCK_ALL) {
                printf("%s%d", any++ ? ", " : "", l);
                break;
            }
            if (p->lock[l] & (1u << k)) printf("%s%d:%s", any++ ? ", " : "", l, a3_comp_name((a3_comp)k));
        }
    printf("%s\n", any ? "" : "none");
}

static void print_header(const char *path, const a3_plan *p)
{
    const a3_plan_alloc *a = &p->alloc;
    printf("%-14s%s\n", "plan", path);
    printf("%-14s%s (fingerprint %.16s...)\n", "model", p->architecture[0] ? p->architecture : "?",
           p->model_fingerprint[0] ? p->model_fingerprint : "unknown");
    if (p->budget == A3_BUDGET_NONE) printf("%-14s%s, no budget\n", "allocator", a3_strategy_name(a->strategy));
    else printf("%-14s%s, budget %s=%g%% removed\n", "allocator", a3_strategy_name(a->strategy),
                a3_budget_name(p->budget), p->budget_pct);
    printf("%-14sweights qk %g, ov %g, mlp %g; multiple %d; min qk %d, ov %d, mlp %d\n", "", a->weight[0],
           a->weight[1], a->weight[2], a->multiple, a->min_rank[0], a->min_rank[1], a->min_rank[2]);
    printf("%-14sqk %s, ov %s, mlp %s\n", "methods", a3_plan_method_name(A3_COMP_QK, (int)p->qk_method),
           a3_plan_method_name(A3_COMP_OV, (int)p->ov_method), a3_plan_method_name(A3_COMP_MLP, (int)p->mlp_method));
    print_locks(p);
    if (!p->seq.on) {
        printf("%-14sone-shot (the paper's A3)\n", "reduction");
        return;
    }
    printf("%-14ssequential, on ", "reduction");
    for (int i = 0; i < p->seq.n_texts; i++) printf("%s%s", i ? ", " : "", p->seq.texts[i]);
    char ns[16] = "default", nl[16] = "default";
    if (p->seq.samples) snprintf(ns, sizeof ns, "%d", p->seq.samples);
    if (p->seq.seqlen) snprintf(nl, sizeof nl, "%d", p->seq.seqlen);
    printf("%s (samples %s, seqlen %s, seed %lld)\n", p->seq.ids, ns, nl, (long long)p->seq.seed);
}

static void print_loss(const a3_plan *p)
{
    if (!p->loss_known) {
        printf("%-14sunknown (%s; use --cache CACHE)\n", "rel. loss",
               p->summary_stale ? "ranks edited after planning" : "not planned on a cache");
        return;
    }
    printf("%-14sQK %.2f%%  OV %.2f%%  MLP %.2f%% (mean over layers)\n", "rel. loss", 100 * p->loss.rel[0],
           100 * p->loss.rel[1], 100 * p->loss.rel[2]);
    if (!p->loss.exact)
        printf("%-14sestimate: MLP curves are the diagonal estimate (exact ones need\n%-14s'calibrate --mlp-full' "
               "and its CACHE.pred)\n", "", "");
    printf("%-14s%.4f (sum over layers of weight x relative loss)\n", "objective", p->loss.objective);
    if (p->loss.nll_known)
        printf("%-14s%+.4f nats per token (perplexity x%.4f), from the probe\n", "pred. NLL", p->loss.dnll,
               exp(p->loss.dnll));
    else printf("%-14sunknown (run 'a3 probe MODEL --cache CACHE')\n", "pred. NLL");
}

/* min, max and kept share (percent) of one kind's widths in layer l. */
static void kind_stats(const a3_plan *p, int l, a3_comp k, int *mn, int *mx, double *kept)
{
    const int *w = k == A3_COMP_QK ? a3_plan_qk(p, l) : a3_plan_ov(p, l);
    int64_t sum = 0;
    *mn = w[0], *mx = w[0];
    for (int g = 0; g < p->dims.n_kv_heads; g++) {
        sum += w[g];
        *mn = w[g] < *mn ? w[g] : *mn;
        *mx = w[g] > *mx ? w[g] : *mx;
    }
    *kept = 100.0 * (double)sum / ((double)p->dims.n_kv_heads * p->dims.head_dim);
}

/* 78 columns: layer | QK min max kept | OV min max kept | MLP | losses. */
static void print_table(const a3_plan *p, const double *rel)
{
    printf("\n%5s %-17s  %-17s  %-14s %s\n", "", "    QK rank", "    OV rank", "  MLP width",
           rel ? "predicted rel. loss" : "");
    printf("%5s %5s%5s%7s %5s%5s%7s %7s%7s", "layer", "min", "max", "kept", "min", "max", "kept", "width", "kept");
    if (rel) printf(" %7s%7s%7s", "QK", "OV", "MLP");
    printf("\n");
    for (int l = 0; l < p->dims.n_layers; l++) {
        int q0, q1, o0, o1;
        double qk, ok;
        kind_stats(p, l, A3_COMP_QK, &q0, &q1, &qk);
        kind_stats(p, l, A3_COMP_OV, &o0, &o1, &ok);
        printf("%4d%c %5d%5d%6.1f%% %5d%5d%6.1f%% %7d%6.1f%%", l, p->lock[l] ? '*' : ' ', q0, q1, qk, o0, o1, ok,
               p->mlp[l], 100.0 * p->mlp[l] / p->dims.d_ff);
        if (rel) printf(" %6.2f%%%6.2f%%%6.2f%%", 100 * rel[3 * l], 100 * rel[3 * l + 1], 100 * rel[3 * l + 2]);
        printf("\n");
    }
    printf("kept: share of the full width (mean over KV groups); * locked\n\n");
}

/* ---- the two modes ------------------------------------------------------------------ */

static int show(const plan_opts *o)
{
    a3_err err = {0};
    a3_plan *p = NULL;
    a3_cache *c = NULL;
    double *rel = NULL;
    int rc = a3_plan_load(o->show, &p, &err);
    if (!rc && o->cache) rc = cli_cache_open(o->cache, &c, &err);
    if (!rc && c) rc = a3_plan_validate(p, c, o->force, &err);
    if (!rc && c && !(rel = malloc((size_t)p->dims.n_layers * A3_COMP_COUNT * sizeof *rel)))
        rc = a3_err_set(&err, A3_ENOMEM, "out of memory");
    a3_pred *pr = NULL;
    if (!rc && c && !o->no_pred)
        rc = o->pred ? a3_pred_load(o->pred, c, &pr, &err) : a3_pred_load_for(o->cache, c, &pr, &err);
    if (!rc && c && !(rc = a3_plan_predict_with(p, c, pr, rel, &p->loss, &err))) p->loss_known = 1;
    a3_pred_free(pr);
    if (!rc) {
        print_header(o->show, p);
        print_table(p, rel);
        print_costs(p);
        print_loss(p);
        if (c && p->cache_fingerprint[0]) {
            char fp[65];
            a3_plan_cache_fingerprint(c, fp);
            if (strcmp(fp, p->cache_fingerprint) != 0)
                printf("note: planned on another calibration cache; losses above are from %s\n", o->cache);
        }
    }
    free(rel);
    a3_cache_free(c);
    a3_plan_free(p);
    if (rc) return cli_fail("plan", &err);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* --model DIR: vocab, tying and biases from its config, same model only. */
static int take_model(const plan_opts *o, const a3_cache *c, a3_plan *p, a3_err *err)
{
    a3_config cfg;
    char fp[65];
    int rc = a3_model_fingerprint(o->model, fp, err);
    if (!rc && !o->force && strcmp(fp, c->fingerprint) != 0)
        return a3_err_set(err, A3_EMISMATCH, "%s: model fingerprint differs from the cache's (--force to accept)",
                          o->model);
    if (rc || (rc = a3_config_load(o->model, &cfg, err))) return rc;
    rc = a3_plan_set_config(p, &cfg, err);
    a3_config_free(&cfg);
    return rc;
}

/* Methods, strategy and the numeric options into p; usage errors as exit
 * statuses. */
static int apply_opts(const plan_opts *o, a3_plan *p)
{
    int m[A3_COMP_COUNT] = {(int)p->qk_method, (int)p->ov_method, (int)p->mlp_method}; /* the defaults */
    for (int k = 0; k < A3_COMP_COUNT; k++)
        if (o->method[k] && (m[k] = a3_plan_method_parse((a3_comp)k, o->method[k])) < 0)
            return cli_usage("plan", "--method-%s: unknown method '%s'", a3_comp_name((a3_comp)k), o->method[k]);
    p->qk_method = (a3_qk_method)m[0], p->ov_method = (a3_ov_method)m[1], p->mlp_method = (a3_mlp_method)m[2];
    int s = o->strategy ? a3_strategy_parse(o->strategy) : o->budget ? A3_STRATEGY_GREEDY : A3_STRATEGY_UNIFORM;
    if (s < 0 || s == A3_STRATEGY_MANUAL) return cli_usage("plan", "--strategy: expected greedy or uniform");
    p->alloc.strategy = (a3_strategy)s;
    if (o->dtype && a3_plan_kv_dtype_parse(o->dtype, &p->kv_dtype))
        return cli_usage("plan", "--dtype: expected f16, bf16 or f32, got '%s'", o->dtype);
    p->alloc.multiple = (int)o->multiple, p->context = (int)o->context;
    double mins[A3_COMP_COUNT];
    for (int k = 0; k < A3_COMP_COUNT; k++) mins[k] = p->alloc.min_rank[k];
    int rc = o->weights ? parse_kinds("--weights", o->weights, 0, 1e6, 0, p->alloc.weight) : 0;
    if (!rc && o->keep) rc = parse_kinds("--keep", o->keep, 0, 1, 0, p->alloc.keep);
    if (!rc && o->min_rank) rc = parse_kinds("--min-rank", o->min_rank, 0, A3_CACHE_MAX_DIM, 1, mins);
    for (int k = 0; k < A3_COMP_COUNT; k++) p->alloc.min_rank[k] = (int)mins[k];
    return rc;
}

/* Budget and locks (usage errors), then allocate and save. */
static int make_plan(const plan_opts *o, const a3_cache *c, const a3_pred *pr, a3_plan *p, a3_err *err)
{
    if (o->budget && a3_plan_budget_parse(o->budget, &p->budget, &p->budget_pct, err))
        return cli_usage("plan", "--budget: %s", err->msg);
    for (int i = 0; i < o->n_locks; i++)
        if (a3_plan_lock_parse(p, o->locks[i], err)) return cli_usage("plan", "--lock: %s", err->msg);
    int rc = apply_opts(o, p);
    if (rc) return rc;
    if (o->sequential && a3_plan_seq_set(&p->seq, o->texts, o->n_texts, o->ids, (int)o->samples, (int)o->seqlen,
                                         o->seed, err))
        return cli_usage("plan", "--sequential: %s", err->msg);
    if ((rc = a3_plan_allocate_with(p, c, pr, err)) || (rc = a3_plan_save(p, o->out, err))) return cli_fail("plan", err);
    print_header(o->out, p);
    print_costs(p);
    print_loss(p);
    printf("wrote %s (see 'a3 plan --show %s')\n", o->out, o->out);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int make(const plan_opts *o)
{
    a3_err err = {0};
    a3_cache *c = NULL;
    a3_plan *p = NULL;
    a3_pred *pr = NULL;
    int rc = cli_cache_open(o->cache, &c, &err);
    if (!rc) rc = a3_plan_from_cache(c, &p, &err);
    if (!rc) a3_plan_default_methods(p, c);
    if (!rc && o->model) rc = take_model(o, c, p, &err);
    if (!rc && !o->no_pred)
        rc = o->pred ? a3_pred_load(o->pred, c, &pr, &err) : a3_pred_load_for(o->cache, c, &pr, &err);
    int status = rc ? cli_fail("plan", &err) : make_plan(o, c, pr, p, &err);
    a3_pred_free(pr);
    a3_plan_free(p);
    a3_cache_free(c);
    return status;
}

int a3_cmd_plan(int argc, char **argv)
{
    plan_opts o;
    int rc = parse(argc, argv, &o);
    if (rc == 0) rc = o.show ? show(&o) : make(&o);
    free(o.locks);
    return rc < 0 ? 0 : rc;
}
