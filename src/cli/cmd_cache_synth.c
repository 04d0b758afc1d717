/* a3 cache synth --like PRESET -o CACHE: a synthetic calibration cache.
 *
 * The TUI's tests and benchmark need a cache of a real model's shape (a 7B
 * cache is ~350 MB and takes a GPU-day-sized model to calibrate), so this
 * writes one with made-up but realistic-looking curves: power-law spectra
 * whose exponent varies by layer (the first and last layers flatter, so
 * more sensitive, as in real models) and by KV group, seeded. The loss
 * curves are tail sums of positive scores, so they are monotone; the
 * statistics sections are diagonal and positive, enough for the format's
 * checks, but meaningless: the metadata says "synthetic": true and the
 * model fingerprint hashes only the preset and seed, so `a3 apply` refuses
 * the cache for any real model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/cache.h"
#include "a3/sha256.h"
#include "a3/synth.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 cache synth --like PRESET -o CACHE [--layers K] [--kv-heads K]\n"
    "                      [--seed S]\n\n"
    "Write a SYNTHETIC calibration cache with the dimensions of a preset\n"
    "(those of 'a3 synth'): made-up monotone loss curves (power-law spectra\n"
    "varying by layer and KV group), for testing and benchmarking the\n"
    "planner and the TUI at a real model's size. The metadata carries\n"
    "\"synthetic\": true and a made-up fingerprint, so no real model accepts it.\n\n"
    "presets: tiny, tiny-gqa, llama-1b, llama-7b, llama-13b, llama-70b\n"
    "options:\n"
    "  -o, --output CACHE  the cache to write\n"
    "  --layers K     keep only K layers\n"
    "  --kv-heads K   KV heads (GQA groups; must divide the preset's heads),\n"
    "                 e.g. --like llama-7b --kv-heads 8\n"
    "  --seed S       generator seed (default 1)\n\n"
    "The same options give the same bytes but for the \"created\" stamp,\n"
    "which SOURCE_DATE_EPOCH (seconds since 1970) fixes too.\n\n"
    "exit codes: 0 ok, 1 write failed, 2 usage\n\n"
    "example:\n"
    "  a3 cache synth --like llama-7b -o 7b.cache && a3 tui 7b.cache\n";

/* splitmix64: the same stream for a seed on every platform. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) { return ((double)(rng_next(s) >> 11) + 0.5) * 0x1p-53; }

static double rng_normal(uint64_t *s)
{
    double u = rng_unit(s), v = rng_unit(s);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

/* How much flatter (more sensitive) layer l's spectra are: 1 at the first
 * layer, ~0.6 at the last, near 0 in the middle. */
static double edge_of(int l, int n_layers) { return exp(-l / 2.0) + 0.6 * exp(-(n_layers - 1 - l) / 2.0); }

/* n descending power-law scores (k+1)^-alpha with 10% jitter, scaled. */
static void power_scores(double *v, int n, double alpha, double scale, uint64_t *s)
{
    for (int k = 0; k < n; k++) v[k] = scale * pow(k + 1, -alpha) * (0.9 + 0.2 * rng_unit(s));
    for (int k = 1; k < n; k++) /* the jitter may swap neighbours: keep descending */
        if (v[k] > v[k - 1]) v[k] = v[k - 1];
}

/* loss[k] = sum of the scores after the first k: the loss of keeping k. */
static void tail_sums(const double *score, int n, double *loss)
{
    loss[n] = 0;
    for (int k = n; k-- > 0;) loss[k] = loss[k + 1] + score[k];
}

static void shuffle(int32_t *perm, int n, uint64_t *s)
{
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(s) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

static void fill_attention(a3_cache *c, int l, double edge, uint64_t *s)
{
    a3_cache_layer *L = &c->layers[l];
    int hd = c->head_dim, half = hd / 2;
    double a_qk = clampd(1.1 - 0.5 * edge + 0.1 * rng_normal(s), 0.3, 2.0);
    double a_ov = clampd(0.6 - 0.3 * edge + 0.06 * rng_normal(s), 0.2, 1.5);
    for (int g = 0; g < c->n_kv_heads; g++) {
        double scale = exp(0.4 * rng_normal(s));
        double *qs = L->qk_score + (size_t)g * (size_t)half;
        power_scores(qs, half, clampd(a_qk + 0.1 * rng_normal(s), 0.2, 2.5), scale, s);
        tail_sums(qs, half, L->qk_loss + (size_t)g * (size_t)(half + 1));
        shuffle(L->qk_order + (size_t)g * (size_t)half, half, s);
        power_scores(L->ov_sv + (size_t)g * (size_t)hd, hd, clampd(a_ov + 0.1 * rng_normal(s), 0.2, 2.5), 10 * scale,
                     s);
    }
}

static void fill_mlp(a3_cache *c, int l, double edge, uint64_t *s)
{
    a3_cache_layer *L = &c->layers[l];
    double a = clampd(0.55 - 0.25 * edge + 0.05 * rng_normal(s), 0.15, 1.2);
    power_scores(L->mlp_score, c->d_ff, a, exp(0.3 * rng_normal(s)), s);
    tail_sums(L->mlp_score, c->d_ff, L->mlp_loss);
    shuffle(L->mlp_order, c->d_ff, s);
}

/* The statistics sections (Gram matrices, D, norms) are not read by the
 * planner: positive diagonals keep them valid without costing time. */
static void fill_stats(a3_cache *c, int l, uint64_t *s)
{
    static const a3_cache_section mats[] = {A3_SEC_GQ, A3_SEC_GK, A3_SEC_GV, A3_SEC_C, A3_SEC_WO_GRAM};
    static const a3_cache_section vecs[] = {A3_SEC_D, A3_SEC_DOWN_NORM};
    size_t hd = (size_t)c->head_dim, blk = hd * hd;
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        double *m = a3_cache_section_ptr(c, l, mats[i]);
        size_t n = a3_cache_section_len(c, mats[i]);
        for (size_t b = 0; m && b < n / blk; b++)
            for (size_t j = 0; j < hd; j++) m[b * blk + j * hd + j] = 0.5 + rng_unit(s);
    }
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        double *v = a3_cache_section_ptr(c, l, vecs[i]);
        size_t n = a3_cache_section_len(c, vecs[i]);
        for (size_t j = 0; v && j < n; j++) v[j] = 0.5 + rng_unit(s);
    }
}

/* Metadata as `a3 calibrate` writes it, plus "synthetic": true and the
 * vocabulary (so the planner shows whole-model totals). */
static char *synth_meta(const a3_cache *c, const char *like, const a3_synth_spec *sp, long seed)
{
    char created[32], *out = malloc(2048);
    if (!out) return NULL;
    cli_created_stamp(created, sizeof created);
    snprintf(out, 2048,
             "{\"format\":\"a3-cache\",\"version\":%d,\"tool\":\"a3 %s\",\"created\":\"%s\",\"synthetic\":true,"
             "\"model\":{\"path\":\"synthetic:%s\",\"fingerprint\":\"%s\",\"architecture\":\"LlamaForCausalLM\","
             "\"d\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,\"d_ff\":%d,"
             "\"rope_layout\":\"half\",\"vocab\":%d,\"tie_embeddings\":%s},"
             "\"calibration\":{\"texts\":[],\"samples\":0,\"seqlen\":0,\"seed\":%ld,\"n_tokens\":%lld,"
             "\"mlp_full\":false}}",
             A3_CACHE_VERSION, A3_VERSION, created, like, c->fingerprint, c->d, c->n_layers, c->n_heads,
             c->n_kv_heads, c->head_dim, c->d_ff, sp->vocab, sp->tie_embeddings ? "true" : "false", seed,
             (long long)c->n_tokens);
    return out;
}

/* A fingerprint no real model has: SHA-256 of "a3-synthetic-cache:<preset
 * with its overrides>:<seed>". */
static void synth_fingerprint(const a3_synth_spec *sp, const char *like, long seed, char hex[65])
{
    char buf[160];
    uint8_t d[A3_SHA256_BYTES];
    int n = snprintf(buf, sizeof buf, "a3-synthetic-cache:%s:%d:%d:%ld", like, sp->n_layers, sp->n_kv_heads, seed);
    a3_sha256(buf, (size_t)n, d);
    a3_sha256_hex(d, hex);
}

static int synth_write(const char *like, const a3_synth_spec *sp, long seed, const char *out, a3_err *err)
{
    a3_cache *c = a3_cache_new(sp->d, sp->n_layers, sp->n_heads, sp->n_kv_heads, sp->head_dim, sp->d_ff, 0);
    if (!c) return a3_err_set(err, A3_ENOMEM, "%s: out of memory for a %s-shaped cache", out, like);
    uint64_t s = (uint64_t)seed * 0x2545f4914f6cdd1dull + 17;
    c->n_tokens = 65536;
    synth_fingerprint(sp, like, seed, c->fingerprint);
    for (int l = 0; l < c->n_layers; l++) {
        double edge = edge_of(l, c->n_layers);
        fill_attention(c, l, edge, &s);
        fill_mlp(c, l, edge, &s);
        fill_stats(c, l, &s);
    }
    int rc = (c->meta_json = synth_meta(c, like, sp, seed)) ? a3_cache_save(c, out, err)
                                                            : a3_err_set(err, A3_ENOMEM, "%s: out of memory", out);
    a3_cache_free(c);
    return rc;
}

typedef struct {
    const char *like, *out;
    long layers, kv_heads, seed;
} synth_opts;

static int parse(int argc, char **argv, synth_opts *o)
{
    const cli_opt opts[] = {CLI_STR("--like", &o->like),
                            CLI_OUTPUT(&o->out),
                            CLI_INT("--layers", &o->layers, 1, A3_CACHE_MAX_COUNT),
                            CLI_INT("--kv-heads", &o->kv_heads, 1, A3_CACHE_MAX_COUNT),
                            CLI_INT("--seed", &o->seed, 0, 1L << 40),
                            {0}};
    int rc = cli_parse(&(cli_spec){"cache synth", HELP, opts, NULL}, argc, argv);
    if (rc) return rc;
    if (!o->like || !o->out) return cli_usage("cache synth", "--like and -o are required");
    return 0;
}

int a3_cmd_cache_synth(int argc, char **argv)
{
    synth_opts o = {.seed = 1};
    int prc = parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    a3_err err = {0};
    a3_synth_spec sp;
    if (a3_synth_preset(o.like, &sp, &err)) return cli_usage("cache synth", "%s", err.msg);
    if (o.layers) sp.n_layers = (int)o.layers;
    if (o.kv_heads) {
        if (sp.n_heads % o.kv_heads)
            return cli_usage("cache synth", "--kv-heads %ld does not divide the %d heads of %s", o.kv_heads,
                             sp.n_heads, o.like);
        sp.n_kv_heads = (int)o.kv_heads;
    }
    if (synth_write(o.like, &sp, o.seed, o.out, &err)) return cli_fail("cache synth", &err);
    printf("wrote %s: SYNTHETIC %s-shaped cache, %d layers, d %d, %d/%d heads, head_dim %d, d_ff %d\n", o.out,
           o.like, sp.n_layers, sp.d, sp.n_heads, sp.n_kv_heads, sp.head_dim, sp.d_ff);
    return 0;
}
