/* bench_calibmem MODEL_DIR [NWIN] [SEQLEN]: calibration's time and memory
 * in detail, for docs/PERFORMANCE.md (make bench-scale); bench_calib gives
 * the headline figures.
 *
 * Runs, on the same synthetic tokens: a calibration (cold: the first touch
 * of the model's mapping), a plain forward pass, and a second calibration
 * (warm). A sampler thread reads /proc/self/status every 2 ms during the
 * first calibration: the peak of VmRSS, of RssAnon (heap: what the
 * estimate `a3 calibrate` prints is about) and RssFile (pages of the
 * memory-mapped weight files, which the kernel can drop and re-read), and
 * VmHWM at the end. Prints the statistics overhead (best calibration over
 * forward time) and the peaks against a3_calib_memory_estimate. The last
 * line is machine-readable ("RESULT key=value ..."). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "a3/blas.h"
#include "a3/cache.h"
#include "a3/calib.h"
#include "a3/model.h"

typedef struct {
    atomic_int stop;
    long max_rss, max_anon, max_file, file_at_max_rss; /* kB */
} sampler;

/* The kB values of a few fields of /proc/self/status; -1 if absent. */
static void read_status(long *rss, long *anon, long *file, long *hwm)
{
    *rss = *anon = *file = *hwm = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        long v;
        if (sscanf(line, "VmRSS: %ld", &v) == 1) *rss = v;
        else if (sscanf(line, "RssAnon: %ld", &v) == 1) *anon = v;
        else if (sscanf(line, "RssFile: %ld", &v) == 1) *file = v;
        else if (sscanf(line, "VmHWM: %ld", &v) == 1) *hwm = v;
    }
    fclose(f);
}

static void *sample(void *arg)
{
    sampler *s = arg;
    struct timespec ts = {0, 2000000};
    while (!atomic_load(&s->stop)) {
        long rss, anon, file, hwm;
        read_status(&rss, &anon, &file, &hwm);
        if (rss > s->max_rss) s->max_rss = rss, s->file_at_max_rss = file;
        if (anon > s->max_anon) s->max_anon = anon;
        if (file > s->max_file) s->max_file = file;
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int calibrate(a3_model *m, const int32_t *tok, int nw, int L, double *secs, a3_err *err)
{
    const a3_config *c = a3_model_config(m);
    a3_cache *cache = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 0);
    if (!cache) return a3_err_set(err, A3_ENOMEM, "bench_calibmem: out of memory for the cache");
    a3_calib_opts o;
    memset(&o, 0, sizeof o);
    double t0 = a3_now();
    int rc = a3_calibrate(m, tok, nw, L, &o, cache, NULL, NULL, err);
    *secs = a3_now() - t0;
    a3_cache_free(cache);
    return rc;
}

int main(int argc, char **argv)
{
    a3_blas_startup(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: bench_calibmem MODEL_DIR [NWIN] [SEQLEN]\n");
        return 2;
    }
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(argv[1], &m, &err)) {
        fprintf(stderr, "bench_calibmem: %s\n", err.msg);
        return 1;
    }
    const a3_config *c = a3_model_config(m);
    int nw = argc > 2 ? atoi(argv[2]) : 16, L = argc > 3 ? atoi(argv[3]) : 256;
    if (L > c->max_seq) L = c->max_seq;
    if (nw < 1 || L < 1) {
        fprintf(stderr, "bench_calibmem: NWIN and SEQLEN must be positive\n");
        return 2;
    }
    size_t rows = (size_t)nw * L;
    int32_t *tok = a3_malloc_array(rows, sizeof *tok);
    float *hid = NULL;
    if (!tok) {
        fprintf(stderr, "bench_calibmem: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < rows; i++) tok[i] = (int32_t)((i * 7919 + 13) % (size_t)c->vocab);
    long rss0, anon0, file0, hwm0;
    read_status(&rss0, &anon0, &file0, &hwm0);
    sampler s = {.max_rss = rss0, .max_anon = anon0, .max_file = file0, .file_at_max_rss = file0};
    atomic_init(&s.stop, 0);
    pthread_t th;
    int sampling = pthread_create(&th, NULL, sample, &s) == 0;
    double tc1, tc2, tf;
    int rc = calibrate(m, tok, nw, L, &tc1, &err);
    if (sampling) {
        atomic_store(&s.stop, 1);
        pthread_join(th, NULL);
    }
    long rss, anon, file, hwm;
    read_status(&rss, &anon, &file, &hwm);
    if (rc) goto fail;
    if (!(hid = a3_malloc_array(rows, (size_t)c->d * sizeof(float)))) {
        a3_err_set(&err, A3_ENOMEM, "bench_calibmem: out of memory");
        goto fail;
    }
    double t0 = a3_now();
    if (a3_model_forward(m, tok, nw, L, hid, &err)) goto fail;
    tf = a3_now() - t0;
    if (calibrate(m, tok, nw, L, &tc2, &err)) goto fail;
    double tc = tc1 < tc2 ? tc1 : tc2, est = (double)a3_calib_memory_estimate(c, nw, L, 0) / 1048576.0;
    const char *kernel = a3_blas_kernel_name();
    printf("calibmem %-28.28s d=%-5d L=%-3d %d x %d tok: calibration %.2f s cold, %.2f s warm, forward %.2f s: "
           "overhead %.1f%%; peak RSS %.0f MiB (VmHWM %.0f) = heap %.0f + mapped weights %.0f MiB; estimate %.0f MiB "
           "(kernel %s, %d threads)\n",
           argv[1], c->d, c->n_layers, nw, L, tc1, tc2, tf, 100 * (tc / tf - 1), s.max_rss / 1024.0, hwm / 1024.0,
           (s.max_rss - s.file_at_max_rss) / 1024.0, s.file_at_max_rss / 1024.0, est, kernel, a3_blas_get_threads());
    printf("RESULT d=%d layers=%d windows=%d seqlen=%d calib_cold_s=%.4f calib_warm_s=%.4f forward_s=%.4f "
           "overhead=%.4f peak_rss_mib=%.1f hwm_mib=%.1f peak_anon_mib=%.1f anon_at_peak_mib=%.1f file_at_peak_mib=%.1f "
           "base_rss_mib=%.1f estimate_mib=%.1f kernel=%s threads=%d\n",
           c->d, c->n_layers, nw, L, tc1, tc2, tf, tc / tf - 1, s.max_rss / 1024.0, hwm / 1024.0, s.max_anon / 1024.0,
           (s.max_rss - s.file_at_max_rss) / 1024.0, s.file_at_max_rss / 1024.0, rss0 / 1024.0, est, kernel,
           a3_blas_get_threads());
    free(hid);
    free(tok);
    a3_model_free(m);
    return 0;
fail:
    fprintf(stderr, "bench_calibmem: %s\n", err.msg);
    free(hid);
    free(tok);
    a3_model_free(m);
    return 1;
}
