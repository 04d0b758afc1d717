/* bench_tui CACHE [KEYS]: how long the planner takes to handle a keystroke
 * (update the plan and its costs, then redraw the whole screen into a
 * virtual 120x40 terminal: ncurses on /dev/null) and to auto-allocate,
 * on a cache of a real model's shape, e.g. the synthetic 7B one:
 *   a3 cache synth --like llama-7b --kv-heads 8 -o 7b.a3c
 *   build/bench/bench_tui 7b.a3c
 * Targets: under 5 ms a keystroke, under 100 ms an auto-allocation.
 *
 * The bench links only liba3.a, so it compiles the UI's sources in (they
 * have no other dependencies). */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../ui/draw.c"
#include "../../ui/state.c"
#include "../../ui/state_commit.c"
#include "../../ui/state_io.c"
#include "../../ui/tui.c"
#include "../../ui/view_commit.c"
#include "../../ui/view_compare.c"
#include "../../ui/view_detail.c"
#include "../../ui/view_header.c"
#include "../../ui/view_help.c"
#include "../../ui/view_message.c"
#include "../../ui/view_overview.c"
#include "../../ui/view_prompt.c"

/* Edits and moves, so that most keys change the plan (the costly case). */
static const int KEYS[] = {'-', 'j', '-', 'l', '[', 'k', '+', 'l', ']', 'h', '-', 'h', 'j', '+'};
#define N_KEYS (int)(sizeof KEYS / sizeof KEYS[0])

typedef struct {
    double mean_ms, max_ms;
} timing;

static timing time_keys(ui_state *s, int n)
{
    timing t = {0, 0};
    for (int i = 0; i < n; i++) {
        double t0 = a3_now();
        ui_key(s, KEYS[i % N_KEYS]);
        ui_draw(s);
        double ms = 1e3 * (a3_now() - t0);
        t.mean_ms += ms / n;
        if (ms > t.max_ms) t.max_ms = ms;
    }
    return t;
}

static timing time_allocate(ui_state *s, int n)
{
    timing t = {0, 0};
    for (int i = 0; i < n; i++) {
        double t0 = a3_now();
        ui_key(s, 'a');
        ui_draw(s);
        double ms = 1e3 * (a3_now() - t0);
        t.mean_ms += ms / n;
        if (ms > t.max_ms) t.max_ms = ms;
        ui_key(s, '-'); /* make the next allocation start from a different plan */
    }
    return t;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_tui CACHE [KEYS]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    ui_state s;
    ui_options o = {.cache = argv[1]};
    a3_err err = {0};
    setlocale(LC_ALL, "C.UTF-8"); /* the multibyte path: the slower one */
    setlocale(LC_NUMERIC, "C");
    if (ui_state_init(&s, &o, &err)) {
        fprintf(stderr, "bench_tui: %s\n", err.msg);
        return 1;
    }
    FILE *out = fopen("/dev/null", "w"), *in = fopen("/dev/null", "r");
    SCREEN *scr = out && in ? newterm("xterm-256color", out, in) : NULL;
    if (!scr) {
        fprintf(stderr, "bench_tui: cannot open a virtual terminal (terminfo xterm-256color)\n");
        return 1;
    }
    resizeterm(40, 120);
    ui_term_setup(&s);
    timing ov = time_keys(&s, n);
    ui_key(&s, '\n'); /* the detail view: curves, spectrum, groups */
    timing dv = time_keys(&s, n);
    ui_set_budget_text(&s, "params=20");
    timing al = time_allocate(&s, 10);
    const a3_plan_dims *d = &s.plan->dims;
    printf("tui      overview keystroke %.3f ms (max %.3f), detail keystroke %.3f ms (max %.3f), %d keys each\n",
           ov.mean_ms, ov.max_ms, dv.mean_ms, dv.max_ms, n);
    printf("tui keystroke %.2f ms, auto-allocate %.1f ms (7B-shaped: %d layers, %d heads, %d KV groups)\n",
           ov.mean_ms > dv.mean_ms ? ov.mean_ms : dv.mean_ms, al.mean_ms, d->n_layers, d->n_heads, d->n_kv_heads);
    endwin();
    delscreen(scr);
    fclose(out);
    fclose(in);
    ui_state_free(&s);
    return 0;
}
