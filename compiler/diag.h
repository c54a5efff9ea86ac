/* diag.h — user diagnostics in gcc's format (file:line:col: error: msg,
 * the source line, ^~~~ under the span) and the internal-bug macro. */
#ifndef OPTC_DIAG_H
#define OPTC_DIAG_H

#include <stdbool.h>
#include <stdio.h>
#include "frontend.h"

/* A half-open byte range [beg, end) of the source. */
typedef struct { int beg, end; } Span;

#define DIAG_MAX_ERRORS 50

typedef struct {
    FILE *out;
    const char *file;
    const char *src;
    size_t len;
    int *lines;      /* start offset of each line, built on first use */
    int nlines;
    Arena *arena;
    int nerrors;
    bool stop;       /* too many errors or a fatal one: stop reporting */
} Diag;

void diag_init(Diag *d, Arena *a, FILE *out, const char *file, const char *src, size_t len);
/* An error at span sp; counts towards nerrors; silent once d->stop is set. */
void diag_error(Diag *d, Span sp, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A note attached to the previous error (not counted). */
void diag_note(Diag *d, Span sp, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* An error with no place in the file (command line, I/O). */
void diag_error_noloc(Diag *d, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Stop after this error: later diagnostics are dropped. */
void diag_fatal(Diag *d, Span sp, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* An internal bug (never a user error): names optc's own source place. */
#define DIAG_BUG(...)                                                        \
    do {                                                                     \
        fprintf(stderr, "optc: internal error at %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                                        \
        fputc('\n', stderr);                                                 \
        abort();                                                             \
    } while (0)

#endif
