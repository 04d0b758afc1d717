/* plan JSON writer. The text is built by hand, not with cJSON's printer,
 * because the layout is part of the format: fixed key order, 2-space
 * indentation, small objects and each layer on one line, so that plans
 * diff well in git and save -> load -> save is byte-identical. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/plan.h"
#include "internal.h"

typedef struct {
    char *b;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_grow(sbuf *s, size_t need)
{
    if (s->oom || s->n + need < s->cap) return;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap <= s->n + need) cap *= 2;
    char *b = realloc(s->b, cap);
    if (!b) {
        s->oom = 1;
        return;
    }
    s->b = b, s->cap = cap;
}

static void sb_printf(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) s->oom = 1;
    sb_grow(s, (size_t)(n < 0 ? 0 : n) + 1);
    if (s->oom) return;
    va_start(ap, fmt);
    vsnprintf(s->b + s->n, s->cap - s->n, fmt, ap);
    va_end(ap);
    s->n += (size_t)n;
}

/* A JSON string: quotes, backslashes and control bytes escaped; other
 * bytes (UTF-8) as they are. */
static void sb_str(sbuf *s, const char *v)
{
    sb_printf(s, "\"");
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        if (*c == '"' || *c == '\\') sb_printf(s, "\\%c", *c);
        else if (*c < 0x20) sb_printf(s, "\\u%04x", *c);
        else sb_printf(s, "%c", *c);
    }
    sb_printf(s, "\"");
}

/* Non-integer quantities: 6 significant digits, stable under reparsing. */
static void sb_num(sbuf *s, double v)
{
    if (isfinite(v)) sb_printf(s, "%.6g", v + 0.0);
    else sb_printf(s, "null");
}

static void sb_int_or_null(sbuf *s, int64_t v)
{
    if (v < 0) sb_printf(s, "null");
    else sb_printf(s, "%lld", (long long)v);
}

static void sb_kinds_num(sbuf *s, const double v[A3_COMP_COUNT])
{
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        sb_printf(s, "%s\"%s\": ", k ? ", " : "{", a3_comp_name((a3_comp)k));
        sb_num(s, v[k]);
    }
    sb_printf(s, "}");
}

static void put_model(sbuf *s, const a3_plan *p)
{
    const a3_plan_dims *m = &p->dims;
    sb_printf(s, "  \"model\": {\n    \"fingerprint\": ");
    sb_str(s, p->model_fingerprint);
    sb_printf(s, ",\n    \"architecture\": ");
    sb_str(s, p->architecture);
    sb_printf(s,
              ",\n    \"d\": %d,\n    \"n_layers\": %d,\n    \"n_heads\": %d,\n    \"n_kv_heads\": %d,\n"
              "    \"head_dim\": %d,\n    \"d_ff\": %d,\n    \"vocab\": ",
              m->d, m->n_layers, m->n_heads, m->n_kv_heads, m->head_dim, m->d_ff);
    sb_int_or_null(s, m->vocab ? m->vocab : -1);
    sb_printf(s, ",\n    \"tie_embeddings\": %s,\n    \"qkv_bias\": %s\n  },\n", m->tie_embeddings ? "true" : "false",
              m->qkv_bias ? "true" : "false");
}

static void put_settings(sbuf *s, const a3_plan *p)
{
    sb_printf(s, "  \"cache\": {\"fingerprint\": ");
    sb_str(s, p->cache_fingerprint);
    sb_printf(s, "},\n  \"methods\": {\"qk\": \"%s\", \"ov\": \"%s\", \"mlp\": \"%s\"},\n",
              a3_plan_method_name(A3_COMP_QK, (int)p->qk_method), a3_plan_method_name(A3_COMP_OV, (int)p->ov_method),
              a3_plan_method_name(A3_COMP_MLP, (int)p->mlp_method));
    sb_printf(s, "  \"budget\": {\"kind\": \"%s\", \"percent\": ", a3_budget_name(p->budget));
    sb_num(s, p->budget_pct);
    sb_printf(s, "},\n  \"context\": %d,\n  \"kv_dtype\": \"%s\",\n", p->context, a3_plan_kv_dtype_name(p->kv_dtype));
    if (!p->seq.on) return; /* one-shot: no key, as plans before it */
    sb_printf(s, "  \"sequential\": {\"text\": [");
    for (int i = 0; i < p->seq.n_texts; i++) sb_printf(s, "%s", i ? ", " : ""), sb_str(s, p->seq.texts[i]);
    sb_printf(s, "], \"ids\": ");
    if (p->seq.ids[0]) sb_str(s, p->seq.ids);
    else sb_printf(s, "null");
    sb_printf(s, ", \"samples\": %d, \"seqlen\": %d, \"seed\": %lld},\n", p->seq.samples, p->seq.seqlen,
              (long long)p->seq.seed);
}

/* Locks as ranges of consecutive layers with the same bits: "0-3" for
 * whole layers, "5:qk" for one component. */
static void put_locks(sbuf *s, const a3_plan *p)
{
    int first = 1, n = p->dims.n_layers;
    sb_printf(s, "[");
    for (int a = 0; a < n;) {
        int b = a;
        while (b + 1 < n && p->lock[b + 1] == p->lock[a]) b++;
        for (int k = 0; p->lock[a] && k < A3_COMP_COUNT; k++) {
            int whole = p->lock[a] == A3_LOCK_ALL;
            if (!whole && !(p->lock[a] & (1u << k))) continue;
            sb_printf(s, "%s\"%d", first ? "" : ", ", a);
            if (b > a) sb_printf(s, "-%d", b);
            if (whole) sb_printf(s, "\"");
            else sb_printf(s, ":%s\"", a3_comp_name((a3_comp)k));
            first = 0;
            if (whole) break;
        }
        a = b + 1;
    }
    sb_printf(s, "]");
}

static void put_alloc(sbuf *s, const a3_plan *p)
{
    const a3_plan_alloc *a = &p->alloc;
    sb_printf(s, "  \"allocator\": {\n    \"strategy\": \"%s\",\n    \"weights\": ", a3_strategy_name(a->strategy));
    sb_kinds_num(s, a->weight);
    sb_printf(s, ",\n    \"keep\": ");
    sb_kinds_num(s, a->keep);
    sb_printf(s, ",\n    \"multiple\": %d,\n    \"min_rank\": {\"qk\": %d, \"ov\": %d, \"mlp\": %d},\n    \"locks\": ",
              a->multiple, a->min_rank[A3_COMP_QK], a->min_rank[A3_COMP_OV], a->min_rank[A3_COMP_MLP]);
    put_locks(s, p);
    sb_printf(s, "\n  },\n");
}

/* Percent removed, or null when either side is unknown. */
static void sb_removed(sbuf *s, int64_t v, int64_t full)
{
    if (v < 0 || full <= 0) sb_printf(s, "null");
    else sb_num(s, 100.0 * (double)(full - v) / (double)full);
}

static void put_costs(sbuf *s, const a3_cost_counts *c, const a3_cost_counts *f)
{
    sb_printf(s, "    \"params\": {\"compressible\": %lld, \"compressible_full\": %lld, \"total\": ",
              (long long)c->compressible, (long long)f->compressible);
    sb_int_or_null(s, c->total);
    sb_printf(s, ", \"total_full\": ");
    sb_int_or_null(s, f->total);
    sb_printf(s, "},\n    \"kv_bytes_per_token\": {\"plan\": %lld, \"full\": %lld},\n", (long long)c->kv_bytes,
              (long long)f->kv_bytes);
    sb_printf(s, "    \"flops_per_token\": {\"layers\": %lld, \"layers_full\": %lld, \"total\": ", (long long)c->flops,
              (long long)f->flops);
    sb_int_or_null(s, c->flops_total);
    sb_printf(s, ", \"total_full\": ");
    sb_int_or_null(s, f->flops_total);
    sb_printf(s, "},\n    \"removed_percent\": {\"params\": ");
    sb_removed(s, c->compressible, f->compressible);
    sb_printf(s, ", \"params_total\": ");
    sb_removed(s, c->total, f->total);
    sb_printf(s, ", \"kv\": ");
    sb_removed(s, c->kv_bytes, f->kv_bytes);
    sb_printf(s, ", \"flops\": ");
    sb_removed(s, c->flops, f->flops);
    sb_printf(s, "},\n");
}

static void put_summary(sbuf *s, const a3_plan *p)
{
    a3_cost_counts c, f;
    a3_plan_costs(p, &c);
    a3_plan_full_costs(p, &f);
    sb_printf(s, "  \"summary\": {\n");
    put_costs(s, &c, &f);
    sb_printf(s, "    \"relative_loss\": {\"aggregate\": \"mean over layers\"");
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        sb_printf(s, ", \"%s\": ", a3_comp_name((a3_comp)k));
        sb_num(s, p->loss_known ? p->loss.rel[k] : NAN);
    }
    sb_printf(s, "},\n    \"objective\": ");
    sb_num(s, p->loss_known ? p->loss.objective : NAN);
    sb_printf(s, ",\n    \"curves\": %s", !p->loss_known ? "null" : p->loss.exact ? "\"exact\"" : "\"estimate\"");
    int nll = p->loss_known && p->loss.nll_known;
    sb_printf(s, ",\n    \"predicted\": {\"nll_change\": ");
    sb_num(s, nll ? p->loss.dnll : NAN);
    sb_printf(s, ", \"perplexity_ratio\": ");
    sb_num(s, nll ? exp(p->loss.dnll) : NAN);
    sb_printf(s, "}\n  },\n");
}

static void sb_ints(sbuf *s, const int *v, int n)
{
    sb_printf(s, "[");
    for (int i = 0; i < n; i++) sb_printf(s, i ? ", %d" : "%d", v[i]);
    sb_printf(s, "]");
}

static void put_layers(sbuf *s, const a3_plan *p)
{
    sb_printf(s, "  \"layers\": [\n");
    for (int l = 0; l < p->dims.n_layers; l++) {
        sb_printf(s, "    {\"layer\": %d, \"qk\": ", l);
        sb_ints(s, a3_plan_qk(p, l), p->dims.n_kv_heads);
        sb_printf(s, ", \"ov\": ");
        sb_ints(s, a3_plan_ov(p, l), p->dims.n_kv_heads);
        sb_printf(s, ", \"mlp\": %d}%s\n", p->mlp[l], l + 1 < p->dims.n_layers ? "," : "");
    }
    sb_printf(s, "  ]\n");
}

int a3_plan_to_json(const a3_plan *p, char **out, size_t *len, a3_err *err)
{
    *out = NULL;
    int rc = plan_check(p, err);
    if (rc) return rc;
    sbuf s = {0};
    sb_printf(&s, "{\n  \"format\": \"a3-plan\",\n  \"version\": %d,\n  \"tool\": ", A3_PLAN_VERSION);
    sb_str(&s, p->tool);
    sb_printf(&s, ",\n");
    put_model(&s, p);
    put_settings(&s, p);
    put_alloc(&s, p);
    put_summary(&s, p);
    put_layers(&s, p);
    sb_printf(&s, "}\n");
    if (s.oom) {
        free(s.b);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory writing the plan", p->source);
    }
    *out = s.b;
    if (len) *len = s.n;
    return A3_OK;
}

int a3_plan_save(const a3_plan *p, const char *path, a3_err *err)
{
    char *text;
    size_t n;
    int rc = a3_plan_to_json(p, &text, &n, err);
    if (rc) return rc;
    rc = a3_write_file_atomic(path, text, n, err);
    free(text);
    return rc;
}
