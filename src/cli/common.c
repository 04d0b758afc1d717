/* cli common helpers: errors, option values, progress lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "a3/cleanup.h"
#include "cli.h"

void cli_created_stamp(char *buf, size_t n)
{
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    char *end = NULL;
    long long epoch = sde && *sde ? strtoll(sde, &end, 10) : -1;
    time_t t = epoch >= 0 && end && !*end ? (time_t)epoch : time(NULL);
    struct tm tmv;
    /* an epoch past what a year fits (gmtime fails) is ignored like a
     * malformed one: the stamp is a date readers parse */
    if (!gmtime_r(&t, &tmv) || tmv.tm_year > 9999 - 1900) t = time(NULL), gmtime_r(&t, &tmv);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tmv);
}

int cli_fail(const char *cmd, const a3_err *err)
{
    /* The message is one line by contract; any control character in it
     * came from a file or an argument: escaped, so no input can rewrite
     * the terminal or add lines (library sites escape too, this is the
     * net for the rest). */
    char esc[2 * sizeof err->msg];
    fprintf(stderr, "a3 %s: %s\n", cmd, err->msg[0] ? a3_escape(err->msg, esc, sizeof esc) : "failed");
    /* After Ctrl-C whatever failed (a read cut short by the signal...)
     * failed because the user asked to stop. */
    if (a3_cleanup_interrupted()) return 130;
    return a3_err_exit_status(err->code ? err->code : -1);
}

int cli_opt_dtype(const char *cmd, const char *opt, const char *val, void *ctx)
{
    static const struct {
        const char *name;
        a3_dtype dt;
    } DT[] = {{"f32", A3_DT_F32}, {"f16", A3_DT_F16}, {"bf16", A3_DT_BF16}};
    for (size_t i = 0; i < sizeof DT / sizeof DT[0]; i++)
        if (!strcasecmp(val, DT[i].name)) return *(a3_dtype *)ctx = DT[i].dt, 0;
    return cli_usage(cmd, "%s: expected f32, f16 or bf16, got '%s'", opt, val);
}

int cli_opt_bytes(const char *cmd, const char *opt, const char *val, void *ctx)
{
    if (a3_parse_bytes(val, ctx) == 0) return 0;
    return cli_usage(cmd, "%s: expected a size like 8GB (8 x 10^9 bytes), 8GiB (8 x 2^30 bytes), 500MB or a byte "
                     "count, got '%s'", opt, val);
}

void cli_progress_init(cli_progress *p, const char *unit)
{
    memset(p, 0, sizeof *p);
    p->unit = unit;
    p->t0 = a3_now();
    p->tty = isatty(2);
}

static void fmt_secs(double s, char *buf, size_t n)
{
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

int cli_progress_cb(void *ctx, const char *stage, int64_t done, int64_t total)
{
    cli_progress *p = ctx;
    double now = a3_now();
    double min_gap = p->tty ? 0.1 : 5.0;
    if (done < total && p->active && now - p->last < min_gap) return 0;
    p->last = now;
    p->active = 1;
    double el = now - p->t0;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = (rate > 0 && total > done) ? (double)(total - done) / rate : 0;
    char e1[16], e2[16];
    fmt_secs(el, e1, sizeof e1);
    fmt_secs(eta, e2, sizeof e2);
    fprintf(stderr, "%s%-12.12s %lld/%lld  %.1f %s/s  elapsed %s  ETA %s%s",
            p->tty ? "\r" : "", stage, (long long)done, (long long)total, rate,
            p->unit, e1, e2, p->tty ? "\033[K" : "\n");
    fflush(stderr);
    return 0;
}

void cli_progress_end(cli_progress *p)
{
    if (p->tty && p->active) fputc('\n', stderr);
    p->active = 0;
}

/* Quiet for the first 0.2 s: a cache that opens at once prints nothing. */
int cli_progress_quiet_cb(void *ctx, const char *stage, int64_t done, int64_t total)
{
    cli_progress *p = ctx;
    return a3_now() - p->t0 < 0.2 ? 0 : cli_progress_cb(ctx, stage, done, total);
}

int cli_cache_open(const char *path, a3_cache **out, a3_err *err)
{
    cli_progress pr;
    cli_progress_init(&pr, "sections");
    int rc = a3_cache_open(path, cli_progress_quiet_cb, &pr, out, err);
    cli_progress_end(&pr);
    return rc;
}
