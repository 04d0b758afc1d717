/* tui: `a3 tui CACHE [--plan PLAN.json] [--model DIR]`, the interactive
 * rank planner: terminal setup and teardown, signals, the dispatcher (which
 * view draws and which gets a key; the only place that handles resize) and
 * the main loop. The views are in view_*.c, the model they show in
 * state*.c.
 *
 * The terminal is restored on every way out: cleanup() (endwin) runs after
 * the loop, on errors, and from atexit() as a last resort. Signals only set
 * a flag; the loop sees it within UI_TICK_MS (getch times out) and leaves
 * through the same cleanup. */
#include <curses.h>
#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/cli/cli.h"
#include "draw.h"
#include "views.h"

/* The one global: a signal handler can only talk to the loop through a
 * volatile sig_atomic_t with static storage (C11 7.14.1.1), and calling
 * endwin() inside the handler would not be async-signal-safe. */
static volatile sig_atomic_t g_signal;

static void on_signal(int sig) { g_signal = sig; }

int ui_signal_pending(void) { return g_signal != 0; }

static const char *HELP =
    "usage: a3 tui CACHE [--plan PLAN.json] [--model MODEL_DIR]\n\n"
    "Interactive rank planner. Open a calibration cache (a3 calibrate), see\n"
    "where the model is sensitive (every layer a row, QK / OV / MLP columns\n"
    "shaded by predicted loss), shape a mixed-rank plan under a budget of\n"
    "parameters, KV cache or FLOPs with the totals updating on every key,\n"
    "save it as JSON (a3 apply --plan reads it), or commit it: apply it to\n"
    "the model and compare perplexity. Press ? inside for every key.\n\n"
    "options:\n"
    "  --plan PLAN.json   start from this plan (else full width)\n"
    "  --model DIR        the model the cache was calibrated on: needed to\n"
    "                     commit (apply, perplexity); adds whole-model totals\n\n"
    "environment: NO_COLOR disables colours (loss shades become ASCII);\n"
    "A3_TUI_ASCII=1 draws without Unicode; the size must be 72x20 or more;\n"
    "TERM must name a terminal that can position the cursor (not dumb).\n\n"
    "exit codes: 0 ok, 1 bad cache or plan, 2 usage, 4 plan/model mismatch,\n"
    "            130 interrupted\n\n"
    "examples:\n"
    "  a3 tui llama-1b.cache --model llama-1b\n"
    "  a3 tui llama-1b.cache --plan plan.json --model llama-1b\n";

/* ---- dispatcher ------------------------------------------------------------ */

static int too_small(void) { return COLS < UI_MIN_COLS || LINES < UI_MIN_ROWS; }

/* Word-wrapped to the terminal, so it reads whole down to ~30x6 (and
 * at 40x12, the smallest size tested). */
static void draw_too_small(const ui_state *s)
{
    char t[256];
    snprintf(t, sizeof t, "a3 tui needs at least %dx%d; this terminal is %dx%d. Enlarge it, or press q to quit%s.",
             UI_MIN_COLS, UI_MIN_ROWS, COLS, LINES, ui_dirty(s) ? " (the plan has unsaved changes)" : "");
    int rows = (ui_cols(t) + COLS - 1) / (COLS > 1 ? COLS - 1 : 1) + 1, y = (LINES - rows) / 2;
    ui_wrap(y > 0 ? y : 0, 0, COLS, LINES, t);
}

void ui_draw(ui_state *s)
{
    curs_set(0); /* a text prompt shows it again */
    erase();
    if (too_small()) {
        draw_too_small(s);
        refresh();
        return;
    }
    view_header_draw(s);
    ui_view under = s->view == UI_VIEW_PROMPT ? s->prompt.back : s->view;
    switch (under) {
    case UI_VIEW_DETAIL: view_detail_draw(s); break;
    case UI_VIEW_COMPARE: view_compare_draw(s); break;
    case UI_VIEW_HELP: view_help_draw(s); break;
    case UI_VIEW_MESSAGE: view_message_draw(s); break;
    case UI_VIEW_COMMIT: view_commit_draw(s); break;
    default: view_overview_draw(s); break;
    }
    if (s->view == UI_VIEW_PROMPT) view_prompt_draw(s);
    refresh();
}

int ui_key(ui_state *s, int ch)
{
    if (ch == 12) { /* Ctrl-L: repaint everything */
        clearok(curscr, TRUE);
        return 1;
    }
    if (too_small()) {
        if (ch == 'q') ui_request_quit(s);
        return ch == 'q';
    }
    switch (s->view) {
    case UI_VIEW_OVERVIEW: return view_overview_key(s, ch);
    case UI_VIEW_DETAIL: return view_detail_key(s, ch);
    case UI_VIEW_COMPARE: return view_compare_key(s, ch);
    case UI_VIEW_HELP: return view_help_key(s, ch);
    case UI_VIEW_MESSAGE: return view_message_key(s, ch);
    case UI_VIEW_PROMPT: return view_prompt_key(s, ch);
    case UI_VIEW_COMMIT: return view_commit_key(s, ch);
    default: return 0;
    }
}

void ui_term_setup(ui_state *s)
{
    const char *ascii = getenv("A3_TUI_ASCII");
    s->utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0 && !(ascii && *ascii && strcmp(ascii, "0"));
    ui_colors_init(s);
    s->progress = view_commit_progress;
    s->progress_ctx = s;
}

/* ---- terminal lifetime --------------------------------------------------------- */

/* Idempotent: safe from atexit after a normal teardown. */
static void cleanup(void)
{
    if (stdscr && !isendwin()) endwin();
}

typedef struct {
    struct sigaction old[3];
} saved_signals;

static const int SIGNALS[3] = {SIGINT, SIGTERM, SIGHUP};

/* No SA_RESTART: a signal interrupts getch, so the loop notices at once. */
static void signals_install(saved_signals *sv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++) sigaction(SIGNALS[i], &sa, &sv->old[i]);
}

static void signals_restore(const saved_signals *sv)
{
    for (int i = 0; i < 3; i++) sigaction(SIGNALS[i], &sv->old[i], NULL);
}

/* NULL, with why, if the terminal cannot be drawn on: newterm fails for an
 * unknown TERM, and succeeds for TERM=dumb, which cannot move the cursor
 * (the screen would stay blank). */
static SCREEN *term_open(const char **why)
{
    SCREEN *scr = newterm(NULL, stdout, stdin); /* unlike initscr, returns NULL instead of exiting */
    *why = "unknown terminal type";
    if (!scr) return NULL;
    const char *cup = tigetstr("cup");
    if (!cup || cup == (const char *)-1) {
        endwin();
        delscreen(scr);
        *why = "this terminal cannot position the cursor";
        return NULL;
    }
    atexit(cleanup); /* last resort; the normal paths call cleanup themselves */
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    set_escdelay(25); /* Esc is a key here, not only a prefix: answer it quickly */
    timeout(UI_TICK_MS);
    curs_set(0);
    return scr;
}

/* A signal: SIGINT asks like q (a second one, or a clean plan, quits);
 * SIGTERM and SIGHUP quit at once. */
static void on_flag(ui_state *s)
{
    int sig = g_signal;
    g_signal = 0;
    if (sig != SIGINT || !ui_dirty(s) || (s->view == UI_VIEW_PROMPT && s->prompt.kind == UI_ASK_QUIT)) {
        s->view = UI_VIEW_QUIT;
        s->exit_status = 128 + sig;
        return;
    }
    ui_request_quit(s);
}

static void loop(ui_state *s)
{
    while (s->view != UI_VIEW_QUIT) {
        if (g_signal) {
            on_flag(s);
            continue;
        }
        ui_draw(s);
        int ch = getch();
        if (ch == ERR || ch == KEY_RESIZE) continue; /* timeout, signal, or resize: redraw at the new size */
        ui_key(s, ch);
    }
}

/* ---- entry ------------------------------------------------------------------------ */

static int parse(int argc, char **argv, ui_options *o)
{
    const cli_opt opts[] = {CLI_STR("--plan", &o->plan), CLI_STR("--model", &o->model), {0}};
    const cli_opt pos[] = {CLI_STR("CACHE", &o->cache), {0}};
    int rc = cli_parse(&(cli_spec){"tui", HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    return o->cache ? 0 : cli_usage("tui", "missing CACHE");
}

/* Before the first frame (curses is not up yet): from 0.2 s after the
 * start until ui_state_init returns, a plain line on the terminal (stdout,
 * the TUI's screen; stderr stays for errors) saying what is being loaded,
 * so the screen is never blank for long. A thread redraws it every 0.1 s,
 * so it shows whichever step is slow (the cache, its .pred, the plan, the
 * model), not only the steps that report progress; they report through
 * loading_progress. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double t0;
    int finished, shown;
    const char *stage;
    int64_t done, total;
} loading;

static int loading_progress(void *ctx, const char *stage, int64_t done, int64_t total)
{
    loading *L = ctx;
    pthread_mutex_lock(&L->mu);
    L->stage = stage, L->done = done, L->total = total;
    pthread_mutex_unlock(&L->mu);
    return 0;
}

static void loading_draw(loading *L)
{
    double el = a3_now() - L->t0;
    if (L->total > 0)
        fprintf(stdout, "\rloading the cache: %lld/%lld sections (%.0f%%), %.1f s\033[K", (long long)L->done,
                (long long)L->total, 100.0 * (double)L->done / (double)L->total, el);
    else fprintf(stdout, "\rloading %s, %.1f s\033[K", L->stage, el);
    fflush(stdout);
    L->shown = 1;
}

static void *loading_main(void *arg)
{
    loading *L = arg;
    pthread_mutex_lock(&L->mu);
    for (double wake = L->t0 + 0.2; !L->finished;) {
        if (a3_now() >= wake) {
            loading_draw(L);
            wake = a3_now() + 0.1;
        }
        struct timespec ts = {(time_t)wake, (long)((wake - floor(wake)) * 1e9)};
        pthread_cond_timedwait(&L->cv, &L->mu, &ts); /* CLOCK_MONOTONIC, as a3_now */
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* Start the thread; 0 if it could not start (then no line, nothing else
 * changes). */
static int loading_start(loading *L, double t0)
{
    pthread_condattr_t ca;
    *L = (loading){.t0 = t0, .stage = "the cache"};
    if (pthread_mutex_init(&L->mu, NULL)) return 0;
    int ok = !pthread_condattr_init(&ca) && !pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) &&
             !pthread_cond_init(&L->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!ok) pthread_mutex_destroy(&L->mu);
    return ok;
}

static void loading_stop(loading *L, pthread_t th)
{
    pthread_mutex_lock(&L->mu);
    L->finished = 1;
    pthread_cond_signal(&L->cv);
    pthread_mutex_unlock(&L->mu);
    pthread_join(th, NULL);
    if (L->shown) fputs("\r\033[K", stdout), fflush(stdout);
    pthread_cond_destroy(&L->cv);
    pthread_mutex_destroy(&L->mu);
}

int a3_cmd_tui(int argc, char **argv)
{
    ui_options o = {0};
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    /* The user's locale for UTF-8 output, but C numbers: plan JSON and
     * typed widths must use '.' whatever LC_NUMERIC says. */
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "a3 tui: needs a terminal (for scripts: a3 plan)\n");
        return 2;
    }
    setlocale(LC_ALL, "");
    setlocale(LC_NUMERIC, "C");
    ui_state s;
    a3_err err = {0};
    loading ld;
    pthread_t th;
    int threaded = loading_start(&ld, a3_now());
    if (threaded && pthread_create(&th, NULL, loading_main, &ld)) {
        pthread_cond_destroy(&ld.cv), pthread_mutex_destroy(&ld.mu);
        threaded = 0;
    }
    if (threaded) o.load_progress = loading_progress, o.load_ctx = &ld;
    int init_rc = ui_state_init(&s, &o, &err);
    if (threaded) loading_stop(&ld, th);
    if (init_rc) { /* before curses: errors print plainly */
        fprintf(stderr, "a3 tui: %s\n", err.msg);
        return a3_err_exit_status(err.code);
    }
    const char *why;
    SCREEN *scr = term_open(&why);
    if (!scr) {
        fprintf(stderr, "a3 tui: cannot draw on this terminal (TERM=%s: %s); use one such as xterm-256color, "
                        "or a3 plan for scripts\n", getenv("TERM") ? getenv("TERM") : "unset", why);
        ui_state_free(&s);
        return 1;
    }
    saved_signals sv;
    signals_install(&sv);
    ui_term_setup(&s);
    loop(&s);
    cleanup();
    delscreen(scr);
    signals_restore(&sv);
    ui_state_free(&s);
    return s.exit_status;
}
