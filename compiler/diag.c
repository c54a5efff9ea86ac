/* diag.c — gcc-style diagnostics with the source line and a caret span. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "diag.h"

void diag_init(Diag *d, Arena *a, FILE *out, const char *file, const char *src, size_t len)
{
    memset(d, 0, sizeof *d);
    d->out = out;
    d->file = file;
    d->src = src;
    d->len = len;
    d->arena = a;
}

static void build_lines(Diag *d)
{
    int n = 1;
    for (size_t i = 0; i < d->len; i++)
        n += d->src[i] == '\n';
    d->lines = arena_alloc(d->arena, sizeof(int) * (size_t)n);
    d->lines[0] = 0;
    int j = 1;
    for (size_t i = 0; i < d->len; i++)
        if (d->src[i] == '\n')
            d->lines[j++] = (int)i + 1;
    d->nlines = n;
}

/* Line index (0-based) holding byte offset off, by binary search. */
static int line_of(const Diag *d, int off)
{
    int lo = 0, hi = d->nlines - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->lines[mid] <= off)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static void show(Diag *d, Span sp, const char *kind, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void show(Diag *d, Span sp, const char *kind, const char *fmt, va_list ap)
{
    if (!d->out)
        return;
    if (!d->lines)
        build_lines(d);
    int len = (int)d->len;
    int beg = sp.beg < 0 ? 0 : sp.beg > len ? len : sp.beg;
    int end = sp.end < beg ? beg : sp.end > len ? len : sp.end;
    int li = line_of(d, beg);
    int ls = d->lines[li];
    int le = ls;
    while (le < len && d->src[le] != '\n')
        le++;
    while (le > ls && d->src[le - 1] == '\r')   /* CRLF files */
        le--;
    fprintf(d->out, "%s:%d:%d: %s: ", d->file, li + 1, beg - ls + 1, kind);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    /* The line itself (a 200-byte window of long lines around the column),
     * unprintable bytes shown as '?'. */
    int ws = beg - ls > 150 ? beg - 80 : ls;
    int show_end = le - ws > 200 ? ws + 200 : le;
    fputc(' ', d->out);
    for (int i = ws; i < show_end; i++) {
        unsigned char c = (unsigned char)d->src[i];
        fputc(c == '\t' || (c >= 32 && c < 127) ? c : '?', d->out);
    }
    fputc('\n', d->out);
    fputc(' ', d->out);
    for (int i = ws; i < beg; i++)
        fputc(d->src[i] == '\t' ? '\t' : ' ', d->out);
    fputc('^', d->out);
    int stop = end < show_end ? end : show_end;
    for (int i = beg + 1; i < stop; i++)
        fputc('~', d->out);
    fputc('\n', d->out);
}

static void count(Diag *d)
{
    d->nerrors++;
    if (d->nerrors >= DIAG_MAX_ERRORS && !d->stop) {
        d->stop = true;
        if (d->out)
            fprintf(d->out, "%s: note: too many errors, stopping\n", d->file);
    }
}

void diag_error(Diag *d, Span sp, const char *fmt, ...)
{
    if (d->stop)
        return;
    va_list ap;
    va_start(ap, fmt);
    show(d, sp, "error", fmt, ap);
    va_end(ap);
    count(d);
}

void diag_fatal(Diag *d, Span sp, const char *fmt, ...)
{
    if (d->stop)
        return;
    va_list ap;
    va_start(ap, fmt);
    show(d, sp, "error", fmt, ap);
    va_end(ap);
    count(d);
    d->stop = true;
}

void diag_note(Diag *d, Span sp, const char *fmt, ...)
{
    if (d->stop)
        return;
    va_list ap;
    va_start(ap, fmt);
    show(d, sp, "note", fmt, ap);
    va_end(ap);
}

void diag_error_noloc(Diag *d, const char *where, const char *fmt, ...)
{
    if (d->stop)
        return;
    if (d->out) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(d->out, "%s: error: ", where ? where : d->file);
        vfprintf(d->out, fmt, ap);
        fputc('\n', d->out);
        va_end(ap);
    }
    count(d);
}
