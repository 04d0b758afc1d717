/* view_help: every key, in one or two columns under the header; any key
 * closes it. */
#include <curses.h>
#include <stdio.h>

#include "draw.h"
#include "views.h"

typedef struct {
    const char *keys, *what;
} help_line;

static const help_line HELP_KEYS[] = {
    {"arrows hjkl", "move"},
    {"PgUp PgDn", "page up / down"},
    {"Home End g G", "first / last row"},
    {":", "go to a layer"},
    {"S", "sort: layer/loss/cost"},
    {"Enter d", "cell detail / back"},
    {"Tab S-Tab", "KV group (detail)"},
    {"Esc", "back to the overview"},
    {"+ -", "+/- one multiple"},
    {"] [", "+/- ~1/16 full width"},
    {"0-9", "type a width (or N%)"},
    {"a", "allocate: greedy"},
    {"u", "allocate: uniform"},
    {"b", "budget: % removed"},
    {"x", "context for FLOPs"},
    {"m", "multiple (--multiple)"},
    {"L", "lock: pin this width"},
    {"z", "undo"},
    {"y Ctrl-R", "redo"},
    {"s", "save the plan (JSON)"},
    {"o", "open a plan"},
    {"v", "compare to saved plan"},
    {"c", "commit: apply + eval"},
    {"!", "last message in full"},
    {"?", "this help"},
    {"q Ctrl-C", "quit, asks if unsaved"},
};
#define N_HELP (int)(sizeof HELP_KEYS / sizeof HELP_KEYS[0])

void view_help_draw(ui_state *s)
{
    int y0 = UI_HEADER_ROWS, rows = LINES - 2 - y0 - 1;
    int cols = N_HELP <= rows ? 1 : 2, per = (N_HELP + cols - 1) / cols, cw = (COLS - 2) / cols;
    for (int y = y0; y < LINES - 1; y++) ui_blank(y, 0, COLS);
    attron(A_BOLD);
    ui_putf(y0, 1, COLS - 2, "Keys  (shade: predicted loss, %% of the loss at width 0; %s budget-optimal)",
            ui_glyph_opt(s));
    attroff(A_BOLD);
    for (int i = 0; i < N_HELP; i++) {
        int c = i / per, r = i % per, x = 1 + c * cw;
        if (r >= rows) continue; /* cropped: only below the minimum size */
        attron(ui_attr(s, UI_PAIR_CUR) | A_BOLD);
        ui_putf(y0 + 1 + r, x, 13, "%-13s", HELP_KEYS[i].keys);
        attroff(ui_attr(s, UI_PAIR_CUR) | A_BOLD);
        ui_put(y0 + 1 + r, x + 13, cw - 14, HELP_KEYS[i].what);
    }
    ui_rule(s, LINES - 2, 0, COLS);
    view_status_draw(s, "any key closes this help");
}

int view_help_key(ui_state *s, int ch)
{
    s->view = s->base;
    return 1;
}
