/* view_prompt: a question on the bottom two rows over the view below it:
 * a line of text (Enter accepts, Esc cancels, Backspace, Ctrl-U clears)
 * or a choice answered with one key. */
#include <curses.h>
#include <string.h>

#include "draw.h"
#include "views.h"

/* Byte offset from which the last `w - 1` columns of buf fit (long paths
 * scroll left so the end stays visible). */
static size_t tail_from(const char *buf, size_t len, int w)
{
    size_t from = 0;
    while (len - from > (size_t)(w > 1 ? w - 1 : 0)) { /* bytes bound columns from above */
        from++;
        while (from < len && ((unsigned char)buf[from] & 0xC0) == 0x80) from++;
    }
    return from;
}

void view_prompt_draw(ui_state *s)
{
    const ui_prompt *p = &s->prompt;
    int yq = LINES - 2, yi = LINES - 1;
    ui_blank(yq, 0, COLS);
    ui_blank(yi, 0, COLS);
    attron(A_BOLD | ui_attr(s, UI_PAIR_OPT));
    ui_put(p->choices[0] ? yi : yq, 0, COLS, p->question);
    attroff(A_BOLD | ui_attr(s, UI_PAIR_OPT));
    if (p->choices[0]) {
        curs_set(0);
        return;
    }
    ui_put(yi, 0, 2, "> ");
    int x = 2 + ui_put(yi, 2, COLS - 3, p->buf + tail_from(p->buf, p->len, COLS - 3));
    move(yi, x < COLS ? x : COLS - 1);
    curs_set(1);
}

static int text_key(ui_state *s, int ch)
{
    switch (ch) {
    case '\n': case '\r': case KEY_ENTER: ui_prompt_submit(s); return 1;
    case 27: ui_prompt_cancel(s); return 1;
    case KEY_BACKSPACE: case 127: case 8: ui_prompt_backspace(s); return 1;
    case 21 /* Ctrl-U */: ui_prompt_clear(s); return 1;
    default: break;
    }
    if ((ch >= 32 && ch < 127) || (ch >= 128 && ch < 256)) { /* ASCII, or one byte of UTF-8 */
        char c = (char)ch;
        ui_prompt_insert(s, &c, 1);
        return 1;
    }
    return 0;
}

int view_prompt_key(ui_state *s, int ch)
{
    if (s->prompt.choices[0]) {
        ui_prompt_choose(s, ch);
        return 1;
    }
    return text_key(s, ch);
}
