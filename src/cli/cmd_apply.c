/* a3 apply MODEL --cache CACHE --plan PLAN -o OUTDIR: the A3 reduction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/apply.h"
#include "a3/cache.h"
#include "a3/plan.h"
#include "a3/sequential.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 apply MODEL_DIR --cache CACHE --plan PLAN.json -o OUT_DIR\n"
    "                [--dtype f32|f16|bf16] [--padded] [--max-shard-size SIZE]\n"
    "                [--force] [--ignore-fingerprint] [--sequential (--text FILE...\n"
    "                | --ids FILE) [--samples N] [--seqlen L] [--seed S]\n"
    "                [--allow-short]] [--one-shot]\n\n"
    "Compress a model with A3: for every layer, solve the QK, OV and MLP\n"
    "reductions the plan asks for from the calibration cache, and write the\n"
    "smaller model (safetensors + config.json with an \"a3\" section + the\n"
    "tokenizer). a3 eval/generate/info run it. Layers are solved one at a\n"
    "time and written as they are solved: memory is about two layers in\n"
    "float32, whatever the model's size.\n\n"
    "options:\n"
    "  --cache CACHE   calibration cache of this model (a3 calibrate)\n"
    "  --plan PLAN     rank plan (a3 plan, or the TUI); its methods are\n"
    "                  used (a3 plan's default MLP method is a3-refit\n"
    "                  when the cache has Ru: calibrate --mlp-full)\n"
    "  -o, --output DIR  output directory (appears atomically)\n"
    "  --dtype D       output dtype (default: the model's)\n"
    "  --padded        keep the original shapes, zero-padded, with no \"a3\"\n"
    "                  section: stock tooling loads it as a plain model with\n"
    "                  the same logits (no speed or size gain)\n"
    "  --max-shard-size SIZE\n"
    "                  weights up to SIZE are one model.safetensors; a bigger\n"
    "                  model is split into model-00001-of-0000N.safetensors...\n"
    "                  with model.safetensors.index.json, each shard at most\n"
    "                  SIZE of tensor data (default 5GB = 5 x 10^9 bytes;\n"
    "                  500MB, 1.5GiB = 1.5 x 2^30, or bytes)\n"
    "  --force         replace OUT_DIR if a3 apply wrote it (refused for any\n"
    "                  other directory)\n"
    "  --ignore-fingerprint  use a cache or plan made for another model\n"
    "                  fingerprint (the weights changed since calibration)\n"
    "  --threads N     threads (default: all cores)\n\n"
    "sequential reduction (beyond the paper, docs/SEQUENTIAL.md):\n"
    "  --sequential    reduce the layers in order, each solved on the inputs\n"
    "                  the already-reduced layers produce, so that it makes\n"
    "                  up for their errors; needs calibration tokens, drawn\n"
    "                  as 'a3 calibrate' draws them (same options and\n"
    "                  defaults). Records \"sequential\" in the a3 section.\n"
    "                  Costs about 4 calibration passes (where a group has\n"
    "                  at most 70 sets of RoPE pairs to choose from, e.g.\n"
    "                  any rank at head_dim <= 16: up to 71 more short ones\n"
    "                  on 16 windows to choose them); memory: 2 x N x L x\n"
    "                  d x 4 bytes of hidden states plus one layer (the\n"
    "                  estimate is printed first). A plan made with\n"
    "                  'a3 plan --sequential' (or the TUI's commit toggle)\n"
    "                  is applied sequentially on the tokens it records;\n"
    "                  --sequential with --text/--ids overrides them\n"
    "  --one-shot      ignore a plan's sequential setting: the paper's A3\n"
    "  --text FILE...  calibration text (use other text than for evaluation)\n"
    "  --ids FILE      pre-tokenized little-endian uint32 ids instead\n"
    "  --samples N     windows (default 128)\n"
    "  --seqlen L      tokens per window (default 2048, capped by context)\n"
    "  --seed S        window seed (default 0)\n"
    "  --allow-short   with too little text, use what there is\n\n"
    "exit codes: 0 ok, 1 bad input, 2 usage, 3 unsupported model,\n"
    "            4 plan/cache/model mismatch, 130 interrupted\n\n"
    "examples:\n"
    "  a3 apply model --cache model.cache --plan plan.json -o model-a3\n"
    "  a3 eval model-a3 --text eval.txt\n"
    "  a3 apply model --cache model.cache --plan plan.json -o out --padded \\\n"
    "      --max-shard-size 2GB\n"
    "  a3 apply model --cache model.cache --plan plan.json -o model-a3s \\\n"
    "      --sequential --text train.txt --samples 64 --seqlen 512\n";

typedef struct {
    const char *model, *cache, *plan, *out;
    a3_dtype dtype; /* A3_DT_COUNT: the model's */
    int padded, force, ignore_fp;
    uint64_t max_shard; /* 0: the library's default */
    long threads;
    int sequential, allow_short, n_texts, one_shot;
    const char *texts[64], *ids;
    long samples, seqlen, seed;
} apply_opts;

static int parse(int argc, char **argv, apply_opts *o)
{
    const cli_opt opts[] = {CLI_STR("--cache", &o->cache),
                            CLI_STR("--plan", &o->plan),
                            CLI_OUTPUT(&o->out),
                            CLI_FN("--dtype", cli_opt_dtype, &o->dtype),
                            CLI_FLAG("--padded", &o->padded),
                            CLI_FN("--max-shard-size", cli_opt_bytes, &o->max_shard),
                            CLI_FLAG("--force", &o->force),
                            CLI_FLAG("--ignore-fingerprint", &o->ignore_fp),
                            CLI_INT("--threads", &o->threads, 1, 256),
                            CLI_FLAG("--sequential", &o->sequential),
                            CLI_FLAG("--one-shot", &o->one_shot),
                            CLI_LIST("--text", o->texts, &o->n_texts),
                            CLI_STR("--ids", &o->ids),
                            CLI_INT("--samples", &o->samples, 1, 1 << 20),
                            CLI_INT("--seqlen", &o->seqlen, 2, 1 << 20),
                            /* below 2^53: a plan stores it as a JSON number */
                            CLI_INT("--seed", &o->seed, 0, (1L << 53) - 1),
                            CLI_FLAG("--allow-short", &o->allow_short),
                            {0}};
    const cli_opt pos[] = {CLI_STR("MODEL_DIR", &o->model), {0}};
    int rc = cli_parse(&(cli_spec){"apply", HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (!o->model || !o->cache || !o->plan || !o->out)
        return cli_usage("apply", "MODEL_DIR, --cache, --plan and -o are required");
    int calib = o->n_texts || o->ids || o->samples || o->seqlen || o->seed || o->allow_short;
    if (!o->sequential && calib)
        return cli_usage("apply", "--text, --ids, --samples, --seqlen, --seed and --allow-short go with --sequential");
    if (o->sequential && !o->n_texts == !o->ids) return cli_usage("apply", "--sequential needs --text FILE... or --ids FILE");
    if (o->sequential && o->padded) return cli_usage("apply", "--sequential writes the reduced model; --padded is not supported with it");
    if (o->sequential && o->one_shot) return cli_usage("apply", "--sequential and --one-shot exclude each other");
    return 0;
}

/* The solver on the tokens q names, with the memory estimate printed. */
static int seq_setup(const apply_opts *o, const a3_plan_seq *q, a3_model *m, const a3_plan *p, const a3_cache *c,
                     cli_progress *pr, a3_seq **out, a3_err *err)
{
    a3_seq_opts so = a3_seq_opts_default();
    so.progress = cli_progress_cb, so.ctx = pr;
    int rc = a3_seq_from_plan(m, p, c, q, o->allow_short, &so, out, err);
    if (rc == A3_OK) {
        int nw, L;
        a3_seq_tokens(*out, &nw, &L);
        fprintf(stderr, "apply: sequential over %d windows x %d tokens = %lld tokens; memory estimate %.2f GiB\n", nw, L,
                (long long)nw * L, (double)a3_seq_memory_estimate(a3_model_config(m), nw, L, 0,
                                                                  p->mlp_method == A3_MLP_METHOD_A3_REFIT) / 1073741824.0);
    }
    return rc;
}

static int run(const apply_opts *o, a3_model *m, a3_cache *c, a3_plan *p, a3_err *err)
{
    char fp[65];
    int rc = a3_model_fingerprint(o->model, fp, err);
    if (rc == A3_OK && strcmp(fp, c->fingerprint) && !o->ignore_fp)
        rc = a3_err_set(err, A3_EMISMATCH, "%s: made for another model (fingerprint %.12s..., the model's is %.12s...); --ignore-fingerprint to use it anyway",
                        o->cache, c->fingerprint, fp);
    if (rc == A3_OK) rc = a3_plan_validate(p, c, o->ignore_fp, err);
    a3_apply_opts ao = {.padded = o->padded, .force = o->force, .max_shard_bytes = o->max_shard, .dtype = o->dtype};
    /* Sequential when asked here (these tokens) or by the plan (its
     * tokens), unless --one-shot. */
    a3_plan_seq q = p->seq;
    if (o->one_shot) q.on = 0;
    if (rc == A3_OK && o->sequential)
        rc = a3_plan_seq_set(&q, o->texts, o->n_texts, o->ids, (int)o->samples, (int)o->seqlen, o->seed, err);
    if (rc == A3_OK && q.on && o->padded)
        return a3_err_set(err, A3_EINVAL, "%s: the plan is sequential, which writes the reduced model: --padded is not supported with it (--one-shot to ignore it)", o->plan);
    /* One progress line: tokens through the layers when sequential (the
     * solver reports them), else layers written. */
    cli_progress pr;
    cli_progress_init(&pr, q.on ? "tok" : "layers");
    a3_seq *seq = NULL;
    if (rc == A3_OK && q.on) rc = seq_setup(o, &q, m, p, c, &pr, &seq, err);
    a3_apply_report rep;
    if (seq) ao.solver = a3_seq_solver(seq);
    else ao.progress = cli_progress_cb, ao.ctx = &pr;
    if (rc == A3_OK) rc = a3_apply(m, c, p, &ao, o->out, &rep, err);
    cli_progress_end(&pr);
    a3_seq_free(seq);
    if (rc) return rc;
    a3_cost_counts pc, full;
    a3_plan_costs(p, &pc);
    a3_plan_full_costs(p, &full);
    char line[160];
    fprintf(stderr, "apply: wrote %s%s%s in %.1f s\n", o->out, o->padded ? " (padded)" : "",
            q.on ? " (sequential)" : "", a3_now() - pr.t0);
    printf("%s\n", a3_plan_fmt_change(line, sizeof line, pc.compressible, full.compressible, "compressible parameters"));
    printf("%s\n", a3_plan_fmt_change(line, sizeof line, pc.kv_bytes, full.kv_bytes, "KV-cache bytes per token"));
    if (rep.n_damped)
        fprintf(stderr, "apply: %d OV groups needed Cholesky damping (largest eps %.0e)\n", rep.n_damped, rep.max_damping);
    return A3_OK;
}

int a3_cmd_apply(int argc, char **argv)
{
    apply_opts o = {.dtype = A3_DT_COUNT};
    int prc = parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    a3_err err = {0};
    a3_model *m = NULL;
    a3_cache *c = NULL;
    a3_plan *p = NULL;
    int rc = a3_model_open(o.model, &m, &err);
    if (rc == A3_OK) a3_model_set_threads(m, (int)o.threads);
    if (rc == A3_OK) rc = cli_cache_open(o.cache, &c, &err);
    if (rc == A3_OK) rc = a3_plan_load(o.plan, &p, &err);
    if (rc == A3_OK) rc = run(&o, m, c, p, &err);
    a3_plan_free(p);
    a3_cache_free(c);
    a3_model_free(m);
    return rc ? cli_fail("apply", &err) : 0;
}
