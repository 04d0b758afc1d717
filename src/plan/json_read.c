/* plan JSON reader: a plan file is checked completely (structure, every
 * key, every type, every range) before a plan is handed out, and each
 * problem is reported as "<file>: <json path>: <what>" on one line. The
 * structure is checked here; the values' ranges by plan_check, which uses
 * the same paths. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/plan.h"
#include "internal.h"

typedef struct {
    const char *name; /* file name for messages */
    a3_err *err;
} reader;

static int fail(const reader *r, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(const reader *r, const char *path, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* keys and values come from the file: escaped (a3_escape) */
    char esc[sizeof what];
    return a3_err_set(r->err, A3_EFORMAT, "%s: %s: %s", r->name, A3_ESC(path), a3_escape(what, esc, sizeof esc));
}

/* path.key (or key at the top level) into buf. */
static const char *join(char *buf, size_t n, const char *path, const char *key)
{
    snprintf(buf, n, "%s%s%s", path, *path ? "." : "", key);
    return buf;
}

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* obj is an object holding each of keys exactly once and nothing else. */
/* keys[0..n_req) are required, keys[n_req..n) optional (added in later
 * releases of the same format version). */
static int check_keys_opt(const reader *r, const cJSON *obj, const char *path, const char *const *keys, int n,
                          int n_req)
{
    char p[160];
    int seen[16] = {0};
    if (!cJSON_IsObject(obj)) return fail(r, *path ? path : "(top level)", "expected an object");
    for (const cJSON *c = obj->child; c; c = c->next) {
        int i = 0;
        while (i < n && strcmp(keys[i], c->string) != 0) i++;
        if (i == n) return fail(r, join(p, sizeof p, path, c->string), "unknown key");
        if (seen[i]++) return fail(r, join(p, sizeof p, path, c->string), "duplicate key");
    }
    for (int i = 0; i < n_req; i++)
        if (!seen[i]) return fail(r, join(p, sizeof p, path, keys[i]), "missing");
    return A3_OK;
}

static int check_keys(const reader *r, const cJSON *obj, const char *path, const char *const *keys, int n)
{
    return check_keys_opt(r, obj, path, keys, n, n);
}

/* An integral number in [lo, hi] at v (path names it). */
static int num_int(const reader *r, const cJSON *v, const char *path, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v)) return fail(r, path, "expected an integer");
    double x = v->valuedouble;
    if (x != floor(x)) return fail(r, path, "%g is not an integer", x);
    if (!(x >= lo && x <= hi)) return fail(r, path, "%.0f out of range [%.0f, %.0f]", x, lo, hi);
    *out = (int64_t)x;
    return A3_OK;
}

static int get_int(const reader *r, const cJSON *o, const char *path, const char *key, double lo, double hi, int *out)
{
    char p[160];
    int64_t v;
    int rc = num_int(r, get(o, key), join(p, sizeof p, path, key), lo, hi, &v);
    if (!rc) *out = (int)v;
    return rc;
}

static int get_num(const reader *r, const cJSON *o, const char *path, const char *key, double *out)
{
    char p[160];
    const cJSON *v = get(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(r, join(p, sizeof p, path, key), "expected a number");
    *out = v->valuedouble;
    return A3_OK;
}

static int get_bool(const reader *r, const cJSON *o, const char *path, const char *key, int *out)
{
    char p[160];
    const cJSON *v = get(o, key);
    if (!cJSON_IsBool(v)) return fail(r, join(p, sizeof p, path, key), "expected true or false");
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return A3_OK;
}

/* A string of at most cap-1 bytes, copied into out[cap]. */
static int get_str(const reader *r, const cJSON *o, const char *path, const char *key, char *out, size_t cap)
{
    char p[160];
    const cJSON *v = get(o, key);
    if (!cJSON_IsString(v)) return fail(r, join(p, sizeof p, path, key), "expected a string");
    if (strlen(v->valuestring) >= cap)
        return fail(r, join(p, sizeof p, path, key), "longer than %zu bytes", cap - 1);
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return A3_OK;
}

/* ---- sections ---------------------------------------------------------------- */

static int read_head(const reader *r, const cJSON *root)
{
    static const char *const keys[] = {"format", "version", "tool", "model", "cache", "methods",
                                       "budget", "context", "kv_dtype", "allocator", "summary", "layers",
                                       "sequential"};
    if (!cJSON_IsObject(root)) return fail(r, "(top level)", "expected a JSON object");
    const cJSON *f = get(root, "format");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, "a3-plan") != 0)
        return fail(r, "format", "expected \"a3-plan\" (not a plan file)");
    int64_t v;
    int rc = num_int(r, get(root, "version"), "version", 0, 1e9, &v);
    if (rc) return rc;
    if (v != A3_PLAN_VERSION)
        return a3_err_set(r->err, A3_EUNSUPPORTED, "%s: version: plan version %lld is not supported (this a3 reads "
                          "version %d)", r->name, (long long)v, A3_PLAN_VERSION);
    return check_keys_opt(r, root, "", keys, 13, 12); /* "sequential" is optional */
}

static int read_dims(const reader *r, const cJSON *m, a3_plan_dims *d)
{
    static const char *const keys[] = {"fingerprint", "architecture", "d", "n_layers", "n_heads", "n_kv_heads",
                                       "head_dim", "d_ff", "vocab", "tie_embeddings", "qkv_bias"};
    int rc = check_keys(r, m, "model", keys, (int)(sizeof keys / sizeof keys[0]));
    const char *names[6] = {"d", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff"};
    int *dst[6] = {&d->d, &d->n_layers, &d->n_heads, &d->n_kv_heads, &d->head_dim, &d->d_ff};
    for (int i = 0; !rc && i < 6; i++) rc = get_int(r, m, "model", names[i], 1, 2147483647.0, dst[i]);
    if (rc) return rc;
    if (!cJSON_IsNull(get(m, "vocab")) && (rc = get_int(r, m, "model", "vocab", 1, A3_PLAN_MAX_VOCAB, &d->vocab)))
        return rc;
    if (!rc) rc = get_bool(r, m, "model", "tie_embeddings", &d->tie_embeddings);
    if (!rc) rc = get_bool(r, m, "model", "qkv_bias", &d->qkv_bias);
    if (!rc && plan_check_dims(d, r->name, r->err)) rc = r->err ? (r->err->code = A3_EFORMAT) : A3_EFORMAT;
    return rc;
}

static int read_ids(const reader *r, const cJSON *root, a3_plan *p)
{
    static const char *const ckeys[] = {"fingerprint"};
    const cJSON *m = get(root, "model"), *c = get(root, "cache");
    int rc = get_str(r, root, "", "tool", p->tool, sizeof p->tool);
    if (!rc) rc = get_str(r, m, "model", "fingerprint", p->model_fingerprint, sizeof p->model_fingerprint);
    if (!rc) rc = get_str(r, m, "model", "architecture", p->architecture, sizeof p->architecture);
    if (!rc) rc = check_keys(r, c, "cache", ckeys, 1);
    if (!rc) rc = get_str(r, c, "cache", "fingerprint", p->cache_fingerprint, sizeof p->cache_fingerprint);
    return rc;
}

/* A string naming a value of an enum; returns the value or -1 (reported). */
static int get_enum(const reader *r, const cJSON *o, const char *path, const char *key, int (*parse)(const char *),
                    const char *choices)
{
    char p[160];
    const cJSON *v = get(o, key);
    join(p, sizeof p, path, key);
    if (!cJSON_IsString(v)) return fail(r, p, "expected a string"), -1;
    int e = parse(v->valuestring);
    if (e < 0) fail(r, p, "unknown value \"%.40s\" (%s)", v->valuestring, choices);
    return e;
}

static int qk_method(const char *s) { return a3_plan_method_parse(A3_COMP_QK, s); }
static int ov_method(const char *s) { return a3_plan_method_parse(A3_COMP_OV, s); }
static int mlp_method(const char *s) { return a3_plan_method_parse(A3_COMP_MLP, s); }
static int kv_dtype(const char *s)
{
    a3_dtype dt;
    return a3_plan_kv_dtype_parse(s, &dt) ? -1 : (int)dt;
}

static int read_methods(const reader *r, const cJSON *root, a3_plan *p)
{
    static const char *const keys[] = {"qk", "ov", "mlp"};
    const cJSON *m = get(root, "methods");
    int q, o, f;
    if (check_keys(r, m, "methods", keys, 3)) return A3_EFORMAT;
    if ((q = get_enum(r, m, "methods", "qk", qk_method, "a3, weight-norm, greedy-exact")) < 0) return A3_EFORMAT;
    if ((o = get_enum(r, m, "methods", "ov", ov_method, "a3, a3-csum, svd")) < 0) return A3_EFORMAT;
    if ((f = get_enum(r, m, "methods", "mlp", mlp_method, "a3, weight-norm, a3-refit")) < 0) return A3_EFORMAT;
    p->qk_method = (a3_qk_method)q, p->ov_method = (a3_ov_method)o, p->mlp_method = (a3_mlp_method)f;
    return A3_OK;
}

static int read_budget(const reader *r, const cJSON *root, a3_plan *p)
{
    static const char *const keys[] = {"kind", "percent"};
    const cJSON *b = get(root, "budget");
    int k, dt;
    if (check_keys(r, b, "budget", keys, 2)) return A3_EFORMAT;
    if ((k = get_enum(r, b, "budget", "kind", a3_budget_parse, "none, params, kv, flops")) < 0) return A3_EFORMAT;
    p->budget = (a3_budget_kind)k;
    if (get_num(r, b, "budget", "percent", &p->budget_pct)) return A3_EFORMAT;
    if (get_int(r, root, "", "context", -2147483648.0, 2147483647.0, &p->context)) return A3_EFORMAT;
    if ((dt = get_enum(r, root, "", "kv_dtype", kv_dtype, "f16, bf16, f32")) < 0) return A3_EFORMAT;
    p->kv_dtype = (a3_dtype)dt;
    return A3_OK;
}

/* "sequential": absent or null for one-shot, else the calibration tokens:
 * text files or an ids file (exactly one kind), samples, seqlen, seed. */
static int read_seq(const reader *r, const cJSON *root, a3_plan *p)
{
    static const char *const keys[] = {"text", "ids", "samples", "seqlen", "seed"};
    const cJSON *q = get(root, "sequential"), *t, *ids;
    const char *texts[A3_PLAN_SEQ_FILES];
    int rc, n = 0, samples, seqlen;
    int64_t seed;
    memset(&p->seq, 0, sizeof p->seq);
    if (!q || cJSON_IsNull(q)) return A3_OK;
    if ((rc = check_keys(r, q, "sequential", keys, 5))) return rc;
    if (!cJSON_IsArray(t = get(q, "text"))) return fail(r, "sequential.text", "expected an array of file names");
    for (const cJSON *c = t->child; c; c = c->next) {
        if (n == A3_PLAN_SEQ_FILES) return fail(r, "sequential.text", "more than %d files", A3_PLAN_SEQ_FILES);
        if (!cJSON_IsString(c) || !c->valuestring[0]) return fail(r, "sequential.text", "expected file names");
        texts[n++] = c->valuestring;
    }
    ids = get(q, "ids");
    if (!cJSON_IsNull(ids) && (!cJSON_IsString(ids) || !ids->valuestring[0]))
        return fail(r, "sequential.ids", "expected a file name or null");
    if ((rc = get_int(r, q, "sequential", "samples", 0, 1 << 20, &samples))) return rc;
    if ((rc = get_int(r, q, "sequential", "seqlen", 0, 1 << 20, &seqlen))) return rc;
    if ((rc = num_int(r, get(q, "seed"), "sequential.seed", 0, 9007199254740991.0, &seed))) return rc;
    a3_err e = {0};
    if (a3_plan_seq_set(&p->seq, texts, n, cJSON_IsNull(ids) ? NULL : ids->valuestring, samples, seqlen, seed, &e))
        return fail(r, "sequential", "%s", e.msg);
    return A3_OK;
}

/* {"qk": x, "ov": x, "mlp": x} numbers or integers. */
static int read_kinds(const reader *r, const cJSON *o, const char *path, double *num, int *ints)
{
    static const char *const keys[] = {"qk", "ov", "mlp"};
    int rc = check_keys(r, o, path, keys, 3);
    for (int k = 0; !rc && k < A3_COMP_COUNT; k++)
        rc = num ? get_num(r, o, path, keys[k], &num[k])
                 : get_int(r, o, path, keys[k], -2147483648.0, 2147483647.0, &ints[k]);
    return rc;
}

static int read_locks(const reader *r, const cJSON *a, a3_plan *p)
{
    if (!cJSON_IsArray(a)) return fail(r, "allocator.locks", "expected an array");
    int i = 0;
    for (const cJSON *c = a->child; c; c = c->next, i++) {
        char path[48];
        a3_err e = {0};
        snprintf(path, sizeof path, "allocator.locks[%d]", i);
        if (!cJSON_IsString(c)) return fail(r, path, "expected a string");
        if (a3_plan_lock_parse(p, c->valuestring, &e)) return fail(r, path, "%s", e.msg);
    }
    return A3_OK;
}

static int read_alloc(const reader *r, const cJSON *root, a3_plan *p)
{
    static const char *const keys[] = {"strategy", "weights", "keep", "multiple", "min_rank", "locks"};
    const cJSON *a = get(root, "allocator");
    int s;
    if (check_keys(r, a, "allocator", keys, 6)) return A3_EFORMAT;
    if ((s = get_enum(r, a, "allocator", "strategy", a3_strategy_parse, "uniform, greedy, manual")) < 0)
        return A3_EFORMAT;
    p->alloc.strategy = (a3_strategy)s;
    int rc = read_kinds(r, get(a, "weights"), "allocator.weights", p->alloc.weight, NULL);
    if (!rc) rc = read_kinds(r, get(a, "keep"), "allocator.keep", p->alloc.keep, NULL);
    if (!rc) rc = get_int(r, a, "allocator", "multiple", -2147483648.0, 2147483647.0, &p->alloc.multiple);
    if (!rc) rc = read_kinds(r, get(a, "min_rank"), "allocator.min_rank", NULL, p->alloc.min_rank);
    if (!rc) rc = read_locks(r, get(a, "locks"), p);
    return rc;
}

/* An array of exactly n integers (range checks come later). */
static int read_ints(const reader *r, const cJSON *a, const char *path, const char *count_name, int n, int *out)
{
    if (!cJSON_IsArray(a)) return fail(r, path, "expected an array");
    int len = cJSON_GetArraySize(a), i = 0;
    if (len != n) return fail(r, path, "%d entries, but model.%s is %d", len, count_name, n);
    for (const cJSON *c = a->child; c; c = c->next, i++) {
        char p[64];
        int64_t v;
        snprintf(p, sizeof p, "%s[%d]", path, i);
        if (num_int(r, c, p, -2147483648.0, 2147483647.0, &v)) return A3_EFORMAT;
        out[i] = (int)v;
    }
    return A3_OK;
}

static int read_layer(const reader *r, const cJSON *o, int l, a3_plan *p)
{
    static const char *const keys[] = {"layer", "qk", "ov", "mlp"};
    char path[32], sub[48];
    int idx, nkv = p->dims.n_kv_heads;
    snprintf(path, sizeof path, "layers[%d]", l);
    if (check_keys(r, o, path, keys, 4) || get_int(r, o, path, "layer", 0, 2147483647.0, &idx)) return A3_EFORMAT;
    if (idx != l) return fail(r, join(sub, sizeof sub, path, "layer"), "%d, expected %d (layers in order)", idx, l);
    if (read_ints(r, get(o, "qk"), join(sub, sizeof sub, path, "qk"), "n_kv_heads", nkv, a3_plan_qk(p, l)) ||
        read_ints(r, get(o, "ov"), join(sub, sizeof sub, path, "ov"), "n_kv_heads", nkv, a3_plan_ov(p, l)))
        return A3_EFORMAT;
    return get_int(r, o, path, "mlp", -2147483648.0, 2147483647.0, &p->mlp[l]);
}

static int read_layers(const reader *r, const cJSON *root, a3_plan *p)
{
    const cJSON *a = get(root, "layers");
    if (!cJSON_IsArray(a)) return fail(r, "layers", "expected an array");
    int n = cJSON_GetArraySize(a), l = 0;
    if (n != p->dims.n_layers) return fail(r, "layers", "%d entries, but model.n_layers is %d", n, p->dims.n_layers);
    for (const cJSON *c = a->child; c; c = c->next, l++)
        if (read_layer(r, c, l, p)) return A3_EFORMAT;
    return A3_OK;
}

/* ---- summary ---------------------------------------------------------------------- */

/* A number, or null when null_ok (*out NAN). */
static int num_or_null(const reader *r, const cJSON *o, const char *path, const char *key, int null_ok, double *out)
{
    char p[160];
    const cJSON *v = get(o, key);
    if (null_ok && cJSON_IsNull(v)) {
        *out = NAN;
        return A3_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(r, join(p, sizeof p, path, key), null_ok ? "expected a number or null" : "expected a number");
    *out = v->valuedouble;
    return A3_OK;
}

/* An object of numbers (null allowed where nullable[i]); values to out. */
static int read_numbers(const reader *r, const cJSON *o, const char *path, const char *const *keys, int n,
                        const int *nullable, double *out)
{
    int rc = check_keys(r, o, path, keys, n);
    for (int i = 0; !rc && i < n; i++) rc = num_or_null(r, o, path, keys[i], nullable[i], &out[i]);
    return rc;
}

/* The stored costs, for the staleness check: params, kv and flops. */
static int read_summary_costs(const reader *r, const cJSON *s, double v[10])
{
    static const char *const pk[] = {"compressible", "compressible_full", "total", "total_full"};
    static const char *const kk[] = {"plan", "full"};
    static const char *const fk[] = {"layers", "layers_full", "total", "total_full"};
    static const char *const rk[] = {"params", "params_total", "kv", "flops"};
    static const int n4[] = {0, 0, 1, 1}, n2[] = {0, 0}, nr[] = {0, 1, 0, 0};
    double removed[4];
    int rc = read_numbers(r, get(s, "params"), "summary.params", pk, 4, n4, v);
    if (!rc) rc = read_numbers(r, get(s, "kv_bytes_per_token"), "summary.kv_bytes_per_token", kk, 2, n2, v + 4);
    if (!rc) rc = read_numbers(r, get(s, "flops_per_token"), "summary.flops_per_token", fk, 4, n4, v + 6);
    if (!rc) rc = read_numbers(r, get(s, "removed_percent"), "summary.removed_percent", rk, 4, nr, removed);
    return rc;
}

static int read_loss(const reader *r, const cJSON *s, a3_plan *p)
{
    static const char *const keys[] = {"aggregate", "qk", "ov", "mlp"};
    const cJSON *o = get(s, "relative_loss");
    int rc = check_keys(r, o, "summary.relative_loss", keys, 4);
    const cJSON *agg = get(o, "aggregate");
    if (!rc && (!cJSON_IsString(agg) || strcmp(agg->valuestring, "mean over layers") != 0))
        return fail(r, "summary.relative_loss.aggregate", "expected \"mean over layers\"");
    for (int k = 0; !rc && k < A3_COMP_COUNT; k++)
        rc = num_or_null(r, o, "summary.relative_loss", keys[k + 1], 1, &p->loss.rel[k]);
    if (!rc) rc = num_or_null(r, s, "summary", "objective", 1, &p->loss.objective);
    if (rc) return rc;
    p->loss_known = isfinite(p->loss.objective);
    for (int k = 0; k < A3_COMP_COUNT; k++) p->loss_known &= isfinite(p->loss.rel[k]) != 0;
    /* optional: "curves" ("exact" | "estimate" | null) and "predicted" */
    const cJSON *cv = get(s, "curves");
    if (cv && !cJSON_IsNull(cv)) {
        if (!cJSON_IsString(cv) || (strcmp(cv->valuestring, "exact") && strcmp(cv->valuestring, "estimate")))
            return fail(r, "summary.curves", "expected \"exact\", \"estimate\" or null");
        p->loss.exact = strcmp(cv->valuestring, "exact") == 0;
    }
    const cJSON *pr = get(s, "predicted");
    if (pr) {
        static const char *const pk[] = {"nll_change", "perplexity_ratio"};
        static const int nn[] = {1, 1};
        double v[2];
        if ((rc = read_numbers(r, pr, "summary.predicted", pk, 2, nn, v))) return rc;
        /* both printed with 6 significant digits: log(ratio) agrees with
         * nll_change to 1e-5 (1 + |nll_change|) */
        if (isfinite(v[0]) != isfinite(v[1]) ||
            (isfinite(v[0]) && !(v[1] > 0 && fabs(log(v[1]) - v[0]) <= 1e-5 * (1 + fabs(v[0])))))
            return fail(r, "summary.predicted.perplexity_ratio", "expected exp(nll_change)");
        p->loss.nll_known = isfinite(v[0]) != 0;
        p->loss.dnll = p->loss.nll_known ? v[0] : 0;
    }
    return A3_OK;
}

/* A stored cost agrees with the recomputed one (-1 / NAN: unknown). */
static int same(double stored, int64_t v) { return isnan(stored) ? v < 0 : v >= 0 && stored == (double)v; }

static int read_summary(const reader *r, const cJSON *root, a3_plan *p)
{
    static const char *const keys[] = {"params",       "kv_bytes_per_token", "flops_per_token", "removed_percent",
                                       "relative_loss", "objective",         "curves",          "predicted"};
    const cJSON *s = get(root, "summary");
    double v[10];
    int rc = check_keys_opt(r, s, "summary", keys, 8, 6);
    if (!rc) rc = read_summary_costs(r, s, v);
    if (!rc) rc = read_loss(r, s, p);
    if (rc) return rc;
    a3_cost_counts c, f;
    a3_plan_costs(p, &c);
    a3_plan_full_costs(p, &f);
    int ok = same(v[0], c.compressible) && same(v[1], f.compressible) && same(v[2], c.total) &&
             same(v[3], f.total) && same(v[4], c.kv_bytes) && same(v[5], f.kv_bytes) && same(v[6], c.flops) &&
             same(v[7], f.flops) && same(v[8], c.flops_total) && same(v[9], f.flops_total);
    if (!ok) {
        /* Ranks edited after planning: the costs are recomputed anyway,
         * but the stored losses no longer describe these ranks. */
        p->summary_stale = 1;
        p->loss_known = 0;
    }
    return A3_OK;
}

/* ---- entry points ------------------------------------------------------------------- */

/* Line and column of a byte offset, for JSON syntax errors. */
static void line_col(const char *text, size_t off, int *line, int *col)
{
    *line = 1, *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') ++*line, *col = 1;
        else ++*col;
    }
}

static cJSON *parse_json(const reader *r, const char *text, size_t len)
{
    if (memchr(text, '\0', len)) {
        fail(r, "(file)", "contains a NUL byte");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    while (root && end && end < text + len && strchr(" \t\r\n", *end)) end++;
    if (root && end == text + len) return root;
    const char *at = root ? end : cJSON_GetErrorPtr();
    size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : len;
    int line, col;
    line_col(text, off, &line, &col);
    fail(r, "(file)", "not valid JSON (%s at line %d, column %d)", root ? "trailing data" : "syntax error", line, col);
    cJSON_Delete(root);
    return NULL;
}

/* Everything after the dims, into p. */
static int read_body(const reader *r, const cJSON *root, a3_plan *p)
{
    int rc = read_ids(r, root, p);
    if (!rc) rc = read_methods(r, root, p);
    if (!rc) rc = read_budget(r, root, p);
    if (!rc) rc = read_alloc(r, root, p);
    if (!rc) rc = read_seq(r, root, p);
    if (!rc) rc = read_layers(r, root, p);
    if (!rc && plan_check(p, r->err)) rc = r->err ? (r->err->code = A3_EFORMAT) : A3_EFORMAT;
    if (!rc) rc = read_summary(r, root, p);
    return rc;
}

int a3_plan_parse(const char *name, const char *text, size_t len, a3_plan **out, a3_err *err)
{
    reader r = {name, err};
    a3_plan_dims dims = {0};
    a3_plan *p = NULL;
    *out = NULL;
    cJSON *root = parse_json(&r, text, len);
    if (!root) return A3_EFORMAT;
    int rc = read_head(&r, root);
    if (!rc) rc = read_dims(&r, get(root, "model"), &dims);
    if (!rc) rc = a3_plan_new(&dims, &p, err);
    if (!rc) {
        snprintf(p->source, sizeof p->source, "%s", name);
        rc = read_body(&r, root, p);
    }
    cJSON_Delete(root);
    if (rc) {
        a3_plan_free(p);
        return rc;
    }
    *out = p;
    return A3_OK;
}

int a3_plan_load(const char *path, a3_plan **out, a3_err *err)
{
    char *text;
    size_t len;
    *out = NULL;
    int rc = a3_read_file(path, A3_PLAN_FILE_MAX, &text, &len, err);
    if (rc) return rc;
    rc = a3_plan_parse(path, text, len, out, err);
    free(text);
    return rc;
}
