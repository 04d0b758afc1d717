/* cli option parsing (see opt.h). */
#include "opt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "a3 %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'a3 %s --help')\n", cmd);
    return 2;
}

int cli_long(const char *val, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int cli_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out)
{
    if (!cli_long(val, lo, hi, out))
        return cli_usage(cmd, "%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, val);
    return 0;
}

int cli_double(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !(v >= lo && v <= hi))
        return cli_usage(cmd, "%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, val);
    *out = v;
    return 0;
}

int cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

/* "-" alone is an argument (standard input), not an option. */
static int is_option(const char *a) { return a[0] == '-' && a[1]; }

static const cli_opt *find(const cli_opt *t, const char *a)
{
    for (; t && t->name; t++)
        if (!strcmp(a, t->name) || (t->alt && !strcmp(a, t->alt))) return t;
    return NULL;
}

static int choice(const char *cmd, const cli_opt *o, const char *opt, const char *v)
{
    int n = 0;
    for (; o->choices[n]; n++)
        if (!strcmp(v, o->choices[n])) return *o->to.flag = n, 0;
    /* "expected a, b or c": the words of the table, so the message and
     * what is accepted cannot drift apart. */
    char list[256];
    size_t len = 0;
    list[0] = '\0';
    for (int i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ",
                                o->choices[i]);
    return cli_usage(cmd, "%s: expected %s, got '%s'", opt, list, v);
}

/* Append argv[*i + 1...] up to the next option to the list option o. */
static int list_take(const char *cmd, const cli_opt *o, const char *opt, int argc, char **argv, int *i)
{
    int added = 0;
    while (*i + 1 < argc && !is_option(argv[*i + 1])) {
        if (*o->count >= o->hi) return cli_usage(cmd, "%s: at most %ld values", opt, o->hi);
        o->to.list[(*o->count)++] = argv[++*i];
        added++;
    }
    return added ? 0 : cli_usage(cmd, "%s needs at least one value", opt);
}

/* An option with a value: argv[*i] names it, argv[*i + 1] is the value. */
static int take_value(const char *cmd, const cli_opt *o, int argc, char **argv, int *i)
{
    const char *opt = argv[*i];
    if (o->kind == CLI_KIND_LIST) return list_take(cmd, o, opt, argc, argv, i);
    if (*i + 1 >= argc) return cli_usage(cmd, "%s needs a value", opt);
    const char *v = argv[++*i];
    switch (o->kind) {
    case CLI_KIND_STR: *o->to.str = v; return 0;
    case CLI_KIND_INT: return cli_int(cmd, opt, v, o->lo, o->hi, o->to.l);
    case CLI_KIND_DOUBLE: return cli_double(cmd, opt, v, o->dlo, o->dhi, o->to.d);
    case CLI_KIND_CHOICE: return choice(cmd, o, opt, v);
    case CLI_KIND_FN: return o->fn(cmd, opt, v, o->to.ctx);
    default: return cli_usage(cmd, "%s: option table error", opt); /* FLAG and LIST never get here */
    }
}

/* Argument a into the first free positional slot. */
static int positional(const cli_spec *s, const char *a)
{
    int n_slots = 0;
    const char *last = NULL;
    for (const cli_opt *p = s->pos; p && p->name; p++, n_slots++) {
        if (p->kind == CLI_KIND_LIST) {
            if (*p->count >= p->hi) return cli_usage(s->cmd, "%s: at most %ld values", p->name, p->hi);
            p->to.list[(*p->count)++] = a;
            return 0;
        }
        if (!*p->to.str) return *p->to.str = a, 0;
        last = p->name;
    }
    if (n_slots == 1 && last) return cli_usage(s->cmd, "one %s expected, got '%s' too", last, a);
    return cli_usage(s->cmd, "unexpected argument '%s'", a);
}

int cli_parse(const cli_spec *s, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(s->help, stdout);
            return -1;
        }
        int rc;
        if (!is_option(a)) rc = positional(s, a);
        else {
            const cli_opt *o = find(s->opts, a);
            if (!o) return cli_usage(s->cmd, "unknown option '%s'", a);
            if (o->kind == CLI_KIND_FLAG) rc = (*o->to.flag = 1, 0);
            else rc = take_value(s->cmd, o, argc, argv, &i);
        }
        if (rc) return rc;
    }
    return 0;
}
