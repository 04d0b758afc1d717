/* views: one file per view (view_*.c), each exporting _draw and _key
 * (ncdu's layout). Views draw from the state every frame, laying out from
 * LINES/COLS as they are now, and map keys to state.h calls; only the
 * dispatcher (tui.c) handles resize and chooses which view gets a key. A
 * _key function returns 1 if it used the key. */
#ifndef A3_UI_VIEWS_H
#define A3_UI_VIEWS_H

#include "state.h"

/* the dispatcher (tui.c) */
void ui_draw(ui_state *s);      /* the whole screen, then refresh */
int ui_key(ui_state *s, int ch); /* route one key; 1 if used */
int ui_signal_pending(void);     /* SIGINT/SIGTERM/SIGHUP arrived */
/* Set up curses-side state (locale, colours, progress callback). */
void ui_term_setup(ui_state *s);

/* header: rows 0 .. UI_HEADER_ROWS - 1 of every view */
void view_header_draw(ui_state *s);

void view_overview_draw(ui_state *s);
int view_overview_key(ui_state *s, int ch);

void view_detail_draw(ui_state *s);
int view_detail_key(ui_state *s, int ch);

void view_compare_draw(ui_state *s);
int view_compare_key(ui_state *s, int ch);

void view_message_draw(ui_state *s);
int view_message_key(ui_state *s, int ch);

void view_help_draw(ui_state *s);
int view_help_key(ui_state *s, int ch);

void view_prompt_draw(ui_state *s);
int view_prompt_key(ui_state *s, int ch);

void view_commit_draw(ui_state *s);
int view_commit_key(ui_state *s, int ch);
/* a3_progress_fn for apply and perplexity: redraws at most 10 times a
 * second and polls the keyboard for a cancel (Esc, x or c). */
int view_commit_progress(void *ctx, const char *stage, int64_t done, int64_t total);

/* status line (last row): the message, or key hints; shared by views */
void view_status_draw(ui_state *s, const char *hints);

#endif
