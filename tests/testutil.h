/* testutil.h — small helpers every suite may share (cgutil.h builds on
 * them): a scratch directory, reading and writing a whole file, counting
 * lines, the
 * build directory, and whether the suite runs under the sanitizers. */
#ifndef OPTC_TESTUTIL_H
#define OPTC_TESTUTIL_H
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh directory $TMPDIR/optc-TAG-XXXXXX (default /tmp) in dir; the
 * caller removes it with tu_rmrf. */
static inline void tu_tmpdir(char *dir, size_t n, const char *tag)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, n, "%s/optc-%s-XXXXXX", t && *t ? t : "/tmp", tag);
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
}

static inline void tu_rmrf(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* n zeroed elements of size bytes (at least one, so n == 0 is not NULL). */
static inline void *tu_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* The whole file, NUL-terminated (embedded NULs kept), for the caller to
 * free; NULL if unreadable. len, when given, receives its size. */
static inline char *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            b = realloc(b, cap);
            ck_assert_ptr_nonnull(b);
        }
    }
    fclose(f);
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

/* The whole file at path, which must be readable; its size in *n. */
static inline uint8_t *tu_read_bytes(const char *path, size_t *n)
{
    char *b = tu_slurp(path, n);
    ck_assert_msg(b != NULL, "cannot read %s: %s", path, strerror(errno));
    return (uint8_t *)b;
}

/* Write n bytes to path as a fresh file (rewriting by truncation would make
 * ext4 flush on close). */
static inline void tu_write_bytes(const char *path, const void *b, size_t n)
{
    unlink(path);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* Newlines in the file at path; 0 if it cannot be read. */
static inline int tu_count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, ch;
    while ((ch = getc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* The build directory (OPTC_BUILD, default build): optc and optc.flags. */
static inline const char *tu_build_dir(void)
{
    const char *b = getenv("OPTC_BUILD");
    return b && *b ? b : "build";
}

/* Whether OPTC_SANITIZED is set to something other than "" or "0". */
static inline int tu_sanitized(void)
{
    const char *s = getenv("OPTC_SANITIZED");
    return s && *s && strcmp(s, "0") != 0;
}
/* Whether the CPU has AVX2 and FMA (the runtime's vector kernels' floor). */
static inline int tu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif
