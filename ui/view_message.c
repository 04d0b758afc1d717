/* view_message: the last status message in full (! opens it), word-wrapped
 * over the base view; the status line crops long ones and says so. Any
 * key closes it. */
#include <curses.h>

#include "draw.h"
#include "views.h"

void view_message_draw(ui_state *s)
{
    int y0 = UI_HEADER_ROWS, rows = LINES - 2 - y0 - 1;
    for (int y = y0; y < LINES - 1; y++) ui_blank(y, 0, COLS);
    attron(A_BOLD);
    ui_put(y0, 1, COLS - 2, s->last_error ? "Last message (an error):" : "Last message:");
    attroff(A_BOLD);
    int attr = s->last_error ? ui_attr(s, UI_PAIR_ERROR) : (int)A_NORMAL;
    attron(attr);
    ui_wrap(y0 + 2, 1, COLS - 2, rows - 1, s->last);
    attroff(attr);
    ui_rule(s, LINES - 2, 0, COLS);
    view_status_draw(s, "any key closes this message");
}

int view_message_key(ui_state *s, int ch)
{
    (void)ch;
    s->view = s->msg_back;
    return 1;
}
