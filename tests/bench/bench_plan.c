/* bench_plan [REPEATS]: time the plan allocators on a synthetic cache of
 * LLaMA-2-7B shape with GQA (32 layers, 32 query heads, 8 KV groups,
 * head_dim 128, d 4096, d_ff 11008), built in memory with random monotone
 * loss curves. Prints, per budget kind and strategy, the best of REPEATS
 * runs of a3_plan_allocate (target: well under 100 ms), and the time to
 * make the full plan from the cache (dominated by the cache fingerprint). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/plan.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1p-53; }

/* Decreasing curve over n + 1 points (not convex: random steps). */
static void fill_loss(double *loss, size_t n, uint64_t *s)
{
    loss[n] = 0;
    for (size_t k = n; k-- > 0;) {
        double u = rng_unit(s);
        loss[k] = loss[k + 1] + u * u * u + 1e-4 * (double)(n - k);
    }
}

static a3_cache *make_7b(void)
{
    const int L = 32, H = 32, KV = 8, HD = 128, D = 4096, FF = 11008;
    a3_cache *c = a3_cache_new(D, L, H, KV, HD, FF, 0);
    if (!c) return NULL;
    uint64_t s = 7;
    for (int l = 0; l < L; l++) {
        a3_cache_layer *y = &c->layers[l];
        for (int g = 0; g < KV; g++) {
            fill_loss(y->qk_loss + (size_t)g * (HD / 2 + 1), HD / 2, &s);
            double v = 10;
            for (int j = 0; j < HD; j++) y->ov_sv[(size_t)g * HD + (size_t)j] = (v *= 0.9 + 0.1 * rng_unit(&s));
        }
        fill_loss(y->mlp_loss, FF, &s);
    }
    memset(c->fingerprint, 'a', 64);
    c->meta_json = strdup("{\"format\":\"a3-cache\",\"version\":1,\"model\":{\"architecture\":\"LlamaForCausalLM\","
                          "\"vocab\":32000}}");
    if (!c->meta_json) {
        a3_cache_free(c);
        return NULL;
    }
    return c;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) reps = 1;
    a3_cache *c = make_7b();
    a3_plan *p = NULL;
    a3_err err = {0};
    double t0 = a3_now();
    if (!c || a3_plan_from_cache(c, &p, &err)) {
        fprintf(stderr, "bench_plan: %s\n", c ? err.msg : "out of memory");
        return 1;
    }
    printf("plan     7B-shaped cache (32 layers, 32 heads, 8 KV groups): full plan from cache %.1f ms\n",
           1e3 * (a3_now() - t0));
    static const char *budgets[] = {"params=20%", "kv=30%", "flops=25%"};
    for (int b = 0; b < 3; b++)
        for (int st = 0; st < 2; st++) {
            double best = 1e9;
            if (a3_plan_budget_parse(budgets[b], &p->budget, &p->budget_pct, &err)) return 1;
            p->alloc.strategy = st ? A3_STRATEGY_GREEDY : A3_STRATEGY_UNIFORM;
            for (int r = 0; r < reps; r++) {
                t0 = a3_now();
                if (a3_plan_allocate(p, c, &err)) {
                    fprintf(stderr, "bench_plan: %s\n", err.msg);
                    return 1;
                }
                double dt = a3_now() - t0;
                best = dt < best ? dt : best;
            }
            printf("plan     allocate %-10s %-7s %7.1f ms (best of %d), objective %.4f\n", budgets[b],
                   st ? "greedy" : "uniform", 1e3 * best, reps, p->loss.objective);
        }
    a3_plan_free(p);
    a3_cache_free(c);
    return 0;
}
