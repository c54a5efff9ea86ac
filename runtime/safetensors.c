/* safetensors.c — checkpoints in the safetensors format
 * (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [..],
 *    "data_offsets": [begin, end]}, ...}
 * padded with spaces to a multiple of 8, then the tensor bytes (offsets
 * relative to the end of the header), little-endian.
 *
 * Writes are atomic (temporary file in the same directory, fsync, rename,
 * fsync of the directory) and always F32. Reads validate the whole header
 * with a small strict JSON parser, with the same rules as the reference
 * implementation (tensors must tile the data region exactly), so a file we
 * accept is one Python's safetensors accepts. F32, F64, F16 and BF16 tensors
 * are read as float (F64 rounded to nearest, the others exactly); integer
 * tensors (PyTorch's I64 num_batches_tracked, masks) are validated like the
 * rest, then skipped: absent to rt_st_shape/read/count/name, listed in one
 * note (rt_st_note). Any other dtype (F8, complex...) is refused.
 *
 * The JSON parser is hand-written rather than a library: the header's
 * grammar is tiny, the reference's exact rules (integer-only numbers, no
 * duplicate keys, no trailing bytes) are checked as it goes, and the
 * runtime stays dependency-free; a libFuzzer harness
 * (tests/fuzz/fuzz_readers.c) covers it. */
#include "rt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define ST_MAX_RANK 4
/* Skipped (integer) tensors may have a higher rank; their shape is only
 * checked against their bytes. */
#define ST_PARSE_RANK 8

typedef enum { ST_FLOAT, ST_INT } StKind;
typedef enum { ST_F32, ST_F64, ST_F16, ST_BF16, ST_OTHER } StFloat;

/* The dtypes of the safetensors format this reader knows. */
static const struct {
    const char *name;
    int size;
    StKind kind;
    StFloat flt;
} st_dtypes[] = {
    {"F32", 4, ST_FLOAT, ST_F32}, {"F64", 8, ST_FLOAT, ST_F64},
    {"F16", 2, ST_FLOAT, ST_F16}, {"BF16", 2, ST_FLOAT, ST_BF16},
    {"I64", 8, ST_INT, ST_OTHER}, {"I32", 4, ST_INT, ST_OTHER},
    {"I16", 2, ST_INT, ST_OTHER}, {"I8", 1, ST_INT, ST_OTHER},
    {"U64", 8, ST_INT, ST_OTHER}, {"U32", 4, ST_INT, ST_OTHER},
    {"U16", 2, ST_INT, ST_OTHER}, {"U8", 1, ST_INT, ST_OTHER},
    {"BOOL", 1, ST_INT, ST_OTHER},
};

typedef struct {
    char *name;
    int ndim;
    int dims[ST_PARSE_RANK];
    int dtype;              /* index into st_dtypes; -1 until seen */
    uint64_t begin, end;
} StTensor;

struct RtStFile {
    char *path;
    uint8_t *bytes;         /* the whole file */
    size_t size;
    const uint8_t *data;    /* bytes + 8 + N */
    size_t data_len;
    StTensor *t;            /* sorted by data offset */
    int nt, tcap;
    char **meta;            /* key, value, key, value ... */
    int nmeta, mcap;        /* pairs */
    char *note;             /* the integer tensors skipped, or NULL */
};

static void set_err(RtErr *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(RtErr *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int utf8_valid(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len((const uint8_t *)s + i, n - i);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */

typedef struct {
    char *b;
    size_t len, cap;
    int oom;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *nb = realloc(b->b, nc);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->b = nb;
        b->cap = nc;
    }
    memcpy(b->b + b->len, s, n);
    b->len += n;
    b->b[b->len] = 0;
}

static void buf_str(Buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* A JSON string literal: quotes, backslashes and control characters
 * escaped, other bytes (valid UTF-8, checked by the caller) verbatim. */
static void buf_json_string(Buf *b, const char *s)
{
    buf_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        switch (c) {
        case '"': buf_put(b, "\\\"", 2); break;
        case '\\': buf_put(b, "\\\\", 2); break;
        case '\b': buf_put(b, "\\b", 2); break;
        case '\f': buf_put(b, "\\f", 2); break;
        case '\n': buf_put(b, "\\n", 2); break;
        case '\r': buf_put(b, "\\r", 2); break;
        case '\t': buf_put(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                buf_put(b, esc, 6);
            } else {
                buf_put(b, p, 1);
            }
        }
    }
    buf_put(b, "\"", 1);
}

static size_t entry_numel(const RtStEntry *e)
{
    size_t n = 1;
    for (int d = 0; d < e->ndim; d++)
        n *= (size_t)e->dims[d];
    return n;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reject what would make a file Python cannot read: duplicate names, the
 * reserved key, invalid UTF-8, bad shapes. */
static int check_entries(const char *path, const RtStEntry *t, int n, const char *const *meta,
                         int nmeta, RtErr *err)
{
    if (n < 0 || nmeta < 0) {
        set_err(err, "%s: negative tensor or metadata count", path);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const RtStEntry *e = &t[i];
        if (!e->name || !*e->name || !utf8_valid(e->name) || !strcmp(e->name, "__metadata__")) {
            set_err(err, "%s: tensor %d has an invalid name", path, i);
            return -1;
        }
        if (e->ndim < 0 || e->ndim > ST_MAX_RANK) {
            set_err(err, "%s: tensor '%s' has rank %d (0..%d supported)", path, e->name, e->ndim,
                    ST_MAX_RANK);
            return -1;
        }
        for (int d = 0; d < e->ndim; d++)
            if (e->dims[d] < 0) {
                set_err(err, "%s: tensor '%s' has a negative dimension", path, e->name);
                return -1;
            }
        if (!e->data && entry_numel(e) > 0) {
            set_err(err, "%s: tensor '%s' has no data", path, e->name);
            return -1;
        }
    }
    for (int i = 0; i < nmeta; i++) {
        const char *k = meta[2 * i], *v = meta[2 * i + 1];
        if (!k || !v || !utf8_valid(k) || !utf8_valid(v)) {
            set_err(err, "%s: metadata entry %d is not a pair of UTF-8 strings", path, i);
            return -1;
        }
    }
    /* Duplicates, by sorting copies of the name pointers. */
    int m = n > nmeta ? n : nmeta;
    const char **names = malloc((size_t)(m > 0 ? m : 1) * sizeof *names);
    if (!names) {
        set_err(err, "%s: out of memory", path);
        return -1;
    }
    for (int pass = 0; pass < 2; pass++) {
        int cnt = pass == 0 ? n : nmeta;
        for (int i = 0; i < cnt; i++)
            names[i] = pass == 0 ? t[i].name : meta[2 * i];
        qsort(names, (size_t)cnt, sizeof *names, cmp_cstr);
        for (int i = 1; i < cnt; i++)
            if (!strcmp(names[i - 1], names[i])) {
                set_err(err, "%s: duplicate %s '%s'", path, pass == 0 ? "tensor" : "metadata key",
                        names[i]);
                free(names);
                return -1;
            }
    }
    free(names);
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Tensor data as little-endian bytes, in chunks. */
static int write_floats(int fd, const float *x, size_t n)
{
    uint8_t chunk[1 << 15];
    const size_t per = sizeof chunk / 4;
    for (size_t i = 0; i < n; i += per) {
        size_t m = n - i < per ? n - i : per;
        for (size_t j = 0; j < m; j++) {
            uint32_t u;
            memcpy(&u, &x[i + j], 4);
            chunk[4 * j] = (uint8_t)u;
            chunk[4 * j + 1] = (uint8_t)(u >> 8);
            chunk[4 * j + 2] = (uint8_t)(u >> 16);
            chunk[4 * j + 3] = (uint8_t)(u >> 24);
        }
        if (write_all(fd, chunk, 4 * m))
            return -1;
    }
    return 0;
}

/* fsync the directory holding path, so the rename itself is durable. */
static int fsync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    /* Some file systems cannot fsync a directory; that is not a failure. */
    if (rc != 0 && (errno == EINVAL || errno == ENOTSUP))
        rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int rt_st_save(const char *path, const RtStEntry *t, int n, const char *const *meta, int nmeta,
               RtErr *err)
{
    if (check_entries(path, t, n, meta, nmeta, err))
        return -1;
    Buf h = {0};
    buf_str(&h, "{");
    if (nmeta > 0) {
        buf_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i)
                buf_str(&h, ",");
            buf_json_string(&h, meta[2 * i]);
            buf_str(&h, ":");
            buf_json_string(&h, meta[2 * i + 1]);
        }
        buf_str(&h, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        char num[64];
        if (i || nmeta > 0)
            buf_str(&h, ",");
        buf_json_string(&h, t[i].name);
        buf_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) {
            snprintf(num, sizeof num, "%s%d", d ? "," : "", t[i].dims[d]);
            buf_str(&h, num);
        }
        uint64_t end = off + 4 * (uint64_t)entry_numel(&t[i]);
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)end);
        buf_str(&h, num);
        off = end;
    }
    buf_str(&h, "}");
    while (h.len % 8)
        buf_str(&h, " ");
    if (h.oom) {
        free(h.b);
        set_err(err, "%s: out of memory", path);
        return -1;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(h.b);
        set_err(err, "%s: %s", path, strerror(e));
        return -1;
    }
    int ok = write_all(fd, len8, 8) == 0 && write_all(fd, h.b, h.len) == 0;
    for (int i = 0; ok && i < n; i++)
        ok = write_floats(fd, t[i].data, entry_numel(&t[i])) == 0;
    ok = ok && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    free(h.b);
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        set_err(err, "%s: %s", path, strerror(e));
        return -1;
    }
    if (fsync_dir(path) != 0) {
        set_err(err, "%s: %s (syncing its directory)", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading: a strict parser for exactly the header's grammar                */

typedef struct {
    const char *s, *p, *end;
    const char *path;
    RtErr *err;
} Js;

static int js_fail(Js *j, const char *what)
{
    set_err(j->err, "%s: bad safetensors header at byte %zu: %s", j->path,
            (size_t)(j->p - j->s), what);
    return -1;
}

static void js_ws(Js *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int js_expect(Js *j, char c)
{
    js_ws(j);
    if (j->p >= j->end || *j->p != c) {
        char m[48];
        snprintf(m, sizeof m, "expected '%c'", c);
        return js_fail(j, m);
    }
    j->p++;
    return 0;
}

/* Next non-space character is c (consumed) ? 1 : 0. */
static int js_accept(Js *j, char c)
{
    js_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

static int hex4(const char *p, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* A string literal, unescaped into a fresh NUL-terminated buffer. The
 * header was checked to be valid UTF-8 beforehand. */
static int js_string(Js *j, char **out)
{
    *out = NULL;
    js_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return js_fail(j, "expected a string");
    j->p++;
    /* Unescaping never grows the text. */
    const char *q = j->p;
    while (q < j->end && *q != '"')
        q += *q == '\\' && q + 1 < j->end ? 2 : 1;
    char *s = malloc((size_t)(q - j->p) + 1);
    if (!s)
        return js_fail(j, "out of memory");
    size_t n = 0;
    for (;;) {
        if (j->p >= j->end) {
            free(s);
            return js_fail(j, "unterminated string");
        }
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c < 0x20) {
            free(s);
            return js_fail(j, "control character in a string");
        }
        if (c != '\\') {
            s[n++] = (char)c;
            j->p++;
            continue;
        }
        if (j->p + 1 >= j->end) {
            free(s);
            return js_fail(j, "unterminated string");
        }
        char e = j->p[1];
        j->p += 2;
        const char *simple = "\"\\/bfnrt", *mapped = "\"\\/\b\f\n\r\t";
        const char *hit = e ? strchr(simple, e) : NULL;
        if (hit) {
            s[n++] = mapped[hit - simple];
            continue;
        }
        if (e != 'u') {
            j->p -= 2;
            free(s);
            return js_fail(j, "bad escape in a string");
        }
        uint32_t cp, lo;
        if (j->end - j->p < 4 || hex4(j->p, &cp)) {
            free(s);
            return js_fail(j, "bad \\u escape");
        }
        j->p += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (j->end - j->p < 10 || j->p[0] != '\\' || j->p[1] != 'u' ||
                hex4(j->p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                free(s);
                return js_fail(j, "unpaired surrogate in a \\u escape");
            }
            j->p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            free(s);
            return js_fail(j, "unpaired surrogate in a \\u escape");
        }
        if (cp == 0) {
            free(s);
            return js_fail(j, "NUL character in a string");
        }
        /* \uXXXX (6 bytes, or 12 for a pair) always takes more room
         * than its UTF-8 (at most 3, or 4 bytes). */
        if (cp < 0x80) {
            s[n++] = (char)cp;
        } else if (cp < 0x800) {
            s[n++] = (char)(0xc0 | cp >> 6);
            s[n++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            s[n++] = (char)(0xe0 | cp >> 12);
            s[n++] = (char)(0x80 | (cp >> 6 & 0x3f));
            s[n++] = (char)(0x80 | (cp & 0x3f));
        } else {
            s[n++] = (char)(0xf0 | cp >> 18);
            s[n++] = (char)(0x80 | (cp >> 12 & 0x3f));
            s[n++] = (char)(0x80 | (cp >> 6 & 0x3f));
            s[n++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    s[n] = 0;
    *out = s;
    return 0;
}

/* A non-negative integer without sign, fraction, exponent or leading
 * zeros, fitting in 64 bits. */
static int js_uint(Js *j, uint64_t *v)
{
    js_ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return js_fail(j, "expected a non-negative integer");
    if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
        return js_fail(j, "leading zero in a number");
    uint64_t x = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return js_fail(j, "number too large");
        x = x * 10 + d;
        j->p++;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return js_fail(j, "expected an integer");
    *v = x;
    return 0;
}

static void st_free_contents(RtStFile *f)
{
    for (int i = 0; i < f->nt; i++)
        free(f->t[i].name);
    for (int i = 0; i < 2 * f->nmeta; i++)
        free(f->meta[i]);
    free(f->t);
    free(f->meta);
    free(f->note);
    free(f->bytes);
    free(f->path);
}

void rt_st_close(RtStFile *f)
{
    if (!f)
        return;
    st_free_contents(f);
    free(f);
}

/* "__metadata__": {"k": "v", ...} */
static int parse_meta(Js *j, RtStFile *f)
{
    if (f->meta)
        return js_fail(j, "duplicate __metadata__");
    f->mcap = 4;
    f->meta = malloc(2 * (size_t)f->mcap * sizeof *f->meta);
    if (!f->meta)
        return js_fail(j, "out of memory");
    if (js_expect(j, '{'))
        return -1;
    if (js_accept(j, '}'))
        return 0;
    do {
        char *k, *v;
        if (js_string(j, &k))
            return -1;
        if (js_expect(j, ':') || js_string(j, &v)) {
            free(k);
            return -1;
        }
        for (int i = 0; i < f->nmeta; i++)
            if (!strcmp(f->meta[2 * i], k)) {
                free(k);
                free(v);
                return js_fail(j, "duplicate metadata key");
            }
        if (f->nmeta == f->mcap) {
            char **nm = realloc(f->meta, 4 * (size_t)f->mcap * sizeof *nm);
            if (!nm) {
                free(k);
                free(v);
                return js_fail(j, "out of memory");
            }
            f->meta = nm;
            f->mcap *= 2;
        }
        f->meta[2 * f->nmeta] = k;
        f->meta[2 * f->nmeta + 1] = v;
        f->nmeta++;
    } while (js_accept(j, ','));
    return js_expect(j, '}');
}

/* {"dtype": "F32", "shape": [..], "data_offsets": [b, e]} in any order,
 * each key exactly once. */
static int parse_tensor(Js *j, StTensor *t)
{
    int seen_dtype = 0, seen_shape = 0, seen_off = 0;
    if (js_expect(j, '{'))
        return -1;
    do {
        char *key;
        if (js_string(j, &key))
            return -1;
        int which = !strcmp(key, "dtype") ? 1 : !strcmp(key, "shape") ? 2
                  : !strcmp(key, "data_offsets") ? 3 : 0;
        free(key);
        if (js_expect(j, ':'))
            return -1;
        if (which == 0)
            return js_fail(j, "unknown key in a tensor entry (expected dtype, shape, data_offsets)");
        if ((which == 1 && seen_dtype++) || (which == 2 && seen_shape++) ||
            (which == 3 && seen_off++))
            return js_fail(j, "duplicate key in a tensor entry");
        if (which == 1) {
            char *dt;
            const char *at = j->p;
            if (js_string(j, &dt))
                return -1;
            t->dtype = -1;
            for (size_t k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
                if (!strcmp(dt, st_dtypes[k].name))
                    t->dtype = (int)k;
            free(dt);
            if (t->dtype < 0) {
                j->p = at;
                return js_fail(j, "unsupported dtype (optc reads F32, F64, F16 and BF16 tensors "
                               "and skips integer ones)");
            }
        } else if (which == 2) {
            if (js_expect(j, '['))
                return -1;
            t->ndim = 0;
            if (!js_accept(j, ']')) {
                do {
                    uint64_t d;
                    if (js_uint(j, &d))
                        return -1;
                    if (t->ndim == ST_PARSE_RANK)
                        return js_fail(j, "tensor rank above 8 is not supported");
                    if (d > INT_MAX)
                        return js_fail(j, "dimension too large");
                    t->dims[t->ndim++] = (int)d;
                } while (js_accept(j, ','));
                if (js_expect(j, ']'))
                    return -1;
            }
        } else {
            if (js_expect(j, '[') || js_uint(j, &t->begin) || js_expect(j, ',') ||
                js_uint(j, &t->end) || js_expect(j, ']'))
                return -1;
            if (t->end < t->begin)
                return js_fail(j, "data_offsets end before they begin");
        }
    } while (js_accept(j, ','));
    if (js_expect(j, '}'))
        return -1;
    if (!seen_dtype || !seen_shape || !seen_off)
        return js_fail(j, "tensor entry lacks dtype, shape or data_offsets");
    if (st_dtypes[t->dtype].kind == ST_FLOAT && t->ndim > ST_MAX_RANK)
        return js_fail(j, "tensor rank above 4 is not supported");
    /* Bytes must match dtype x shape. */
    uint64_t bytes = (uint64_t)st_dtypes[t->dtype].size;
    for (int d = 0; d < t->ndim; d++) {
        if (t->dims[d] && bytes > UINT64_MAX / (uint64_t)t->dims[d])
            return js_fail(j, "shape too large");
        bytes *= (uint64_t)t->dims[d];
    }
    if (t->end - t->begin != bytes)
        return js_fail(j, "data_offsets do not match dtype x shape");
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const StTensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_tname(const void *a, const void *b)
{
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static int parse_header(Js *j, RtStFile *f)
{
    for (size_t i = 0; i < (size_t)(j->end - j->s);) {
        size_t l = utf8_len((const uint8_t *)j->s + i, (size_t)(j->end - j->s) - i);
        if (!l) {
            j->p = j->s + i;
            return js_fail(j, "invalid UTF-8");
        }
        i += l;
    }
    if (j->s == j->end || *j->s != '{')
        return js_fail(j, "the header must start with '{'");
    j->p++;
    if (!js_accept(j, '}')) {
        do {
            char *key;
            if (js_string(j, &key))
                return -1;
            if (js_expect(j, ':')) {
                free(key);
                return -1;
            }
            if (!strcmp(key, "__metadata__")) {
                free(key);
                if (parse_meta(j, f))
                    return -1;
                continue;
            }
            if (f->nt == f->tcap) {
                int nc = f->tcap ? 2 * f->tcap : 16;
                StTensor *nt = realloc(f->t, (size_t)nc * sizeof *nt);
                if (!nt) {
                    free(key);
                    return js_fail(j, "out of memory");
                }
                f->t = nt;
                f->tcap = nc;
            }
            StTensor *t = &f->t[f->nt++];
            memset(t, 0, sizeof *t);
            t->name = key;
            if (parse_tensor(j, t))
                return -1;
        } while (js_accept(j, ','));
        if (js_expect(j, '}'))
            return -1;
    }
    js_ws(j);
    if (j->p != j->end)
        return js_fail(j, "trailing characters after the header object");
    return 0;
}

/* Names unique; tensors tile [0, data_len) exactly, as the reference
 * implementation requires. */
static int check_layout(RtStFile *f, RtErr *err)
{
    if (f->nt > 0) {
        const StTensor **byname = malloc((size_t)f->nt * sizeof *byname);
        if (!byname) {
            set_err(err, "%s: out of memory", f->path);
            return -1;
        }
        for (int i = 0; i < f->nt; i++)
            byname[i] = &f->t[i];
        qsort(byname, (size_t)f->nt, sizeof *byname, cmp_tname);
        for (int i = 1; i < f->nt; i++)
            if (!strcmp(byname[i - 1]->name, byname[i]->name)) {
                set_err(err, "%s: bad safetensors header: duplicate tensor '%s'", f->path,
                        byname[i]->name);
                free(byname);
                return -1;
            }
        free(byname);
    }
    if (f->nt > 1)
        qsort(f->t, (size_t)f->nt, sizeof *f->t, cmp_offset);
    uint64_t at = 0;
    for (int i = 0; i < f->nt; i++) {
        const StTensor *t = &f->t[i];
        if (t->begin != at) {
            set_err(err, "%s: bad safetensors header: tensor '%s' starts at byte %llu of the "
                    "data, expected %llu (%s)", f->path, t->name, (unsigned long long)t->begin,
                    (unsigned long long)at, t->begin < at ? "overlap" : "gap");
            return -1;
        }
        at = t->end;
        if (at > f->data_len) {
            set_err(err, "%s: tensor '%s' ends at byte %llu of the data, the file holds %zu "
                    "(truncated?)", f->path, t->name, (unsigned long long)at, f->data_len);
            return -1;
        }
    }
    if (at != f->data_len) {
        set_err(err, "%s: %llu bytes of data after the last tensor", f->path,
                (unsigned long long)(f->data_len - at));
        return -1;
    }
    return 0;
}

/* Drop the integer tensors (their layout was checked) and describe them in
 * f->note: the count, then names and dtypes up to about 300 characters. */
static int skip_integers(RtStFile *f, RtErr *err)
{
    int kept = 0, skipped = 0, cut = 0;
    Buf b = {0};
    for (int i = 0; i < f->nt; i++) {
        StTensor *t = &f->t[i];
        if (st_dtypes[t->dtype].kind == ST_FLOAT) {
            f->t[kept++] = *t;
            continue;
        }
        if (skipped == 0 || b.len < 300) {
            buf_str(&b, skipped ? ", " : "");
            buf_str(&b, t->name);
            buf_str(&b, " (");
            buf_str(&b, st_dtypes[t->dtype].name);
            buf_str(&b, ")");
        } else if (!cut) {
            buf_str(&b, ", ...");
            cut = 1;
        }
        skipped++;
        free(t->name);
    }
    f->nt = kept;
    if (skipped == 0)
        return 0;
    char head[128];
    snprintf(head, sizeof head, "skipped %d integer tensor%s optc does not use: ", skipped,
             skipped == 1 ? "" : "s");
    size_t n = strlen(f->path) + 2 + strlen(head) + (b.b ? b.len : 0) + 1;
    f->note = b.oom ? NULL : malloc(n);
    if (!f->note) {
        free(b.b);
        set_err(err, "%s: out of memory", f->path);
        return -1;
    }
    snprintf(f->note, n, "%s: %s%s", f->path, head, b.b);
    free(b.b);
    return 0;
}

RtStFile *rt_st_open(const char *path, RtErr *err)
{
    RtStFile *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        set_err(err, "%s: out of memory", path);
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        set_err(err, "%s: %s", path, strerror(errno));
        goto fail_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, "%s: not a regular file", path);
        goto fail_fd;
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        set_err(err, "%s: truncated: %zu bytes, a safetensors file starts with an 8-byte header "
                "length", path, f->size);
        goto fail_fd;
    }
    f->bytes = malloc(f->size);
    if (!f->bytes) {
        set_err(err, "%s: out of memory for %zu bytes", path, f->size);
        goto fail_fd;
    }
    for (size_t got = 0; got < f->size;) {
        ssize_t r = read(fd, f->bytes + got, f->size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            set_err(err, "%s: %s", path, r < 0 ? strerror(errno) : "file shrank while reading");
            goto fail_fd;
        }
        got += (size_t)r;
    }
    close(fd);
    fd = -1;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | f->bytes[i];
    if (hl > ST_MAX_HEADER) {
        set_err(err, "%s: header length %llu is absurd (limit %llu bytes): not a safetensors "
                "file?", path, (unsigned long long)hl, (unsigned long long)ST_MAX_HEADER);
        goto fail;
    }
    if (hl > f->size - 8) {
        set_err(err, "%s: truncated: the header length says %llu bytes, the file has %zu after "
                "the length", path, (unsigned long long)hl, f->size - 8);
        goto fail;
    }
    if (hl < 2) {
        set_err(err, "%s: header length %llu is too small for a JSON object", path,
                (unsigned long long)hl);
        goto fail;
    }
    Js j = {(const char *)f->bytes + 8, (const char *)f->bytes + 8,
            (const char *)f->bytes + 8 + hl, path, err};
    if (parse_header(&j, f))
        goto fail;
    f->data = f->bytes + 8 + hl;
    f->data_len = f->size - 8 - (size_t)hl;
    if (check_layout(f, err) || skip_integers(f, err))
        goto fail;
    return f;
fail_fd:
    if (fd >= 0)
        close(fd);
fail:
    rt_st_close(f);
    return NULL;
}

static const StTensor *find(const RtStFile *f, const char *name)
{
    for (int i = 0; i < f->nt; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

int rt_st_shape(const RtStFile *f, const char *name, int *ndim, int dims[4])
{
    const StTensor *t = find(f, name);
    if (!t)
        return -1;
    *ndim = t->ndim;
    for (int d = 0; d < 4; d++)
        dims[d] = d < t->ndim ? t->dims[d] : 0;
    return 0;
}

int rt_st_read(RtStFile *f, const char *name, float *dst, size_t numel, RtErr *err)
{
    const StTensor *t = find(f, name);
    if (!t) {
        set_err(err, "%s: no tensor '%s'", f->path, name);
        return -1;
    }
    int size = st_dtypes[t->dtype].size;
    size_t have = (size_t)((t->end - t->begin) / (uint64_t)size);
    if (have != numel) {
        set_err(err, "%s: tensor '%s' has %zu elements, expected %zu", f->path, name, have,
                numel);
        return -1;
    }
    const uint8_t *p = f->data + t->begin;
    switch (st_dtypes[t->dtype].flt) {
    case ST_F32:
        for (size_t i = 0; i < numel; i++, p += 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                         (uint32_t)p[3] << 24;
            memcpy(&dst[i], &u, 4);
        }
        break;
    case ST_F64:
        for (size_t i = 0; i < numel; i++, p += 8) {
            uint64_t u = 0;
            for (int k = 7; k >= 0; k--)
                u = u << 8 | p[k];
            double d;
            memcpy(&d, &u, 8);
            dst[i] = (float)d;   /* round to nearest; beyond FLT_MAX: inf */
        }
        break;
    case ST_F16:
        for (size_t i = 0; i < numel; i++, p += 2)
            dst[i] = rt_st_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    case ST_BF16:
        for (size_t i = 0; i < numel; i++, p += 2)
            dst[i] = rt_st_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    case ST_OTHER:
        set_err(err, "%s: tensor '%s' is not a float tensor", f->path, name);
        return -1;
    }
    return 0;
}

float rt_st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = h >> 10 & 0x1f, m = h & 0x3ff, u;
    if (e == 0) {
        /* zero and subnormals: m * 2^-24, a normal float, exact */
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    if (e == 31)
        u = sign | 0x7f800000u | m << 13;            /* inf, NaN (payload kept) */
    else
        u = sign | (e - 15 + 127) << 23 | m << 13;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

float rt_st_bf16_to_f32(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

const char *rt_st_note(const RtStFile *f)
{
    return f->note;
}

const char *rt_st_meta(const RtStFile *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[2 * i], key))
            return f->meta[2 * i + 1];
    return NULL;
}

int rt_st_count(const RtStFile *f)
{
    return f->nt;
}

const char *rt_st_name(const RtStFile *f, int i)
{
    return i >= 0 && i < f->nt ? f->t[i].name : NULL;
}
