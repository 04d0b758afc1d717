/* pool: persistent workers for a3_pool_run (see include/a3/pool.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "a3/pool.h"

/* Before sleeping on the condition variable, a worker that just finished
 * (and the caller waiting for the workers) polls for up to SPIN_NS:
 * decoding makes a pool call every few hundred microseconds, and waking a
 * sleeping thread costs tens of microseconds in a virtual machine.
 * a3 generate -n 32 at 2 threads, medians of 8 interleaved runs,
 * sleeping at once against polling first: llama-1b shape 16.6 -> 17.6
 * and 17.9 -> 19.0 tokens/s (two comparisons), llama-7b 9.6 -> 10.0;
 * prefill (llama-7b, 512 tokens, 3 runs) 110.8 against 108.9, within its
 * noise. A worker therefore keeps its core busy for up to SPIN_NS after
 * each call; pausing between polls leaves a hyperthread sibling most of
 * the core meanwhile. */
#define SPIN_NS 100000L

/* The polling limit in ns: SPIN_NS unless a3_pool_set_spin_us chose
 * another (A3_POOL_SPIN_US through the CLI; 0 sleeps at once). */
static atomic_long spin_ns = SPIN_NS;

int a3_pool_set_spin_us(long us)
{
    if (us < 0 || us > A3_POOL_SPIN_MAX_US) return -1;
    atomic_store_explicit(&spin_ns, us * 1000L, memory_order_relaxed);
    return 0;
}

long a3_pool_spin_us(void) { return atomic_load_explicit(&spin_ns, memory_order_relaxed) / 1000L; }

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause(); /* yield the core's resources to a hyperthread sibling */
#endif
}

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* A poll: 0 when polling is off, else 1 with its deadline in *end. */
static int poll_start(long *end)
{
    long lim = atomic_load_explicit(&spin_ns, memory_order_relaxed);
    if (lim <= 0) return 0;
    *end = now_ns() + lim;
    return 1;
}

/* Between two looks at the polled value (the i-th): 0 once past the
 * deadline (the clock is read every 16th time: it costs more than a look). */
static int poll_on(int i, long end)
{
    relax();
    return i % 16 != 0 || now_ns() <= end;
}

/* Poll while *v == val (a worker waiting for the next call), or while
 * *v > 0 (the caller waiting for the workers), up to the limit. */
static void spin_uint(atomic_uint *v, unsigned val)
{
    long end;
    if (!poll_start(&end)) return;
    for (int i = 1; atomic_load_explicit(v, memory_order_relaxed) == val; i++)
        if (!poll_on(i, end)) return;
}

static void spin_pos(atomic_int *v)
{
    long end;
    if (!poll_start(&end)) return;
    for (int i = 1; atomic_load_explicit(v, memory_order_relaxed) > 0; i++)
        if (!poll_on(i, end)) return;
}

typedef struct {
    int idx;         /* the share this worker runs is idx + 1 */
    unsigned seen;   /* generation last looked at */
} worker_arg;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
/* Held by the one caller that owns the workers during a call. */
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;
static worker_arg args[A3_POOL_MAX];
static int nworkers;
static atomic_uint gen;  /* incremented per call, under mu (read without it to spin) */
static atomic_int pending; /* shares not yet finished by workers (changed under mu) */
static a3_pool_fn job_fn;
static void *job_ctx;
static int job_n;

static void *worker(void *p)
{
    worker_arg *a = p;
    pthread_mutex_lock(&mu);
    for (;;) {
        if (gen == a->seen) {
            pthread_mutex_unlock(&mu);
            spin_uint(&gen, a->seen);
            pthread_mutex_lock(&mu);
        }
        while (gen == a->seen) pthread_cond_wait(&go, &mu);
        a->seen = gen;
        if (a->idx + 1 < job_n) {
            a3_pool_fn fn = job_fn;
            void *ctx = job_ctx;
            int n = job_n;
            pthread_mutex_unlock(&mu);
            fn(ctx, a->idx + 1, n);
            pthread_mutex_lock(&mu);
            if (--pending == 0) pthread_cond_signal(&done);
        }
    }
    return NULL;
}

/* Called with mu held: make sure `want` workers exist; returns how many do. */
static int grow(int want)
{
    while (nworkers < want) {
        pthread_t th;
        pthread_attr_t at;
        args[nworkers].idx = nworkers;
        args[nworkers].seen = gen;
        if (pthread_attr_init(&at) != 0) break;
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &at, worker, &args[nworkers]);
        pthread_attr_destroy(&at);
        if (rc != 0) break;
        nworkers++;
    }
    return nworkers;
}

void a3_pool_run(int n, a3_pool_fn fn, void *ctx)
{
    if (n > A3_POOL_MAX) n = A3_POOL_MAX;
    if (n <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    if (pthread_mutex_trylock(&busy) != 0) { /* nested or concurrent: run here */
        for (int t = 0; t < n; t++) fn(ctx, t, n);
        return;
    }
    pthread_mutex_lock(&mu);
    int have = grow(n - 1);
    int par = have + 1 < n ? have + 1 : n; /* shares that go to workers: 1..par-1 */
    job_fn = fn, job_ctx = ctx, job_n = n;
    pending = par - 1;
    /* Workers with idx + 1 >= par would not exist; shares par..n-1 run here. */
    gen++;
    pthread_cond_broadcast(&go);
    pthread_mutex_unlock(&mu);
    fn(ctx, 0, n);
    for (int t = par; t < n; t++) fn(ctx, t, n);
    spin_pos(&pending);
    pthread_mutex_lock(&mu);
    while (pending > 0) pthread_cond_wait(&done, &mu);
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&busy);
}

void a3_pool_split(long total, int t, int n, long align, long *lo, long *hi)
{
    if (n < 1) n = 1;
    if (align < 1) align = 1;
    long blocks = (total + align - 1) / align;
    long b0 = blocks * t / n, b1 = blocks * (t + 1) / n;
    *lo = b0 * align < total ? b0 * align : total;
    *hi = b1 * align < total ? b1 * align : total;
}

int a3_chunks_init(a3_chunks *c, int n, const long *count)
{
    int fits = n <= A3_CHUNKS_MAX;
    c->n = n < 1 || !fits ? 1 : n;
    c->first[0] = c->first[1] = 0; /* one empty range: n < 1 (count unread), or too many */
    for (int i = 0; fits && i < n; i++) c->first[i + 1] = c->first[i] + (count[i] > 0 ? count[i] : 0);
    atomic_init(&c->next, 0);
    return fits ? 0 : -1;
}

void a3_chunks_rewind(a3_chunks *c) { atomic_store_explicit(&c->next, 0, memory_order_relaxed); }

long a3_chunks_total(const a3_chunks *c) { return c->first[c->n]; }

int a3_chunks_next(a3_chunks *c, int *range, long *index)
{
    /* relaxed: the counter only divides the work; a3_pool_run's own
     * hand-off orders the data the shares read and write */
    long k = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
    if (k >= c->first[c->n]) return 0;
    int i = 0;
    while (k >= c->first[i + 1]) i++; /* at most A3_CHUNKS_MAX steps */
    *range = i;
    *index = k - c->first[i];
    return 1;
}
