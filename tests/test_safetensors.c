/* test_safetensors.c — checkpoint files: exact format, round trips of
 * tensors and metadata, determinism, every malformed header we could think
 * of rejected with a message naming the file, and atomic saves that leave
 * an existing file intact when writing fails. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"
#include "testutil.h"
#include "tmain.h"

static char tmpdir[256];

static void setup(void)
{
    tu_tmpdir(tmpdir, sizeof tmpdir, "test_st");
}

static void teardown(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", tmpdir, tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void tpath(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* Number of directory entries (besides . and ..): catches leftover
 * temporary files. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

START_TEST(exact_format)
{
    char p[512];
    tpath(p, sizeof p, "a.safetensors");
    float w[2] = {1.0f, -2.5f};
    RtStEntry t[1] = {{"w", 1, {2, 0, 0, 0}, w}};
    const char *meta[2] = {"k", "v"};
    RtErr err = {{0}};
    ck_assert_msg(rt_st_save(p, t, 1, meta, 1, &err) == 0, "%s", err.msg);
    size_t n;
    uint8_t *b = tu_read_bytes(p, &n);
    const char *want = "{\"__metadata__\":{\"k\":\"v\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}";
    size_t wl = strlen(want), hl = (wl + 7) / 8 * 8;
    ck_assert_uint_eq(n, 8 + hl + 8);
    for (int i = 0; i < 8; i++)
        ck_assert_uint_eq(b[i], (uint8_t)(hl >> (8 * i)));
    ck_assert_mem_eq(b + 8, want, wl);
    for (size_t i = wl; i < hl; i++)
        ck_assert_uint_eq(b[8 + i], ' ');
    /* Little-endian IEEE floats: 1.0 = 0x3f800000, -2.5 = 0xc0200000. */
    const uint8_t data[8] = {0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0};
    ck_assert_mem_eq(b + 8 + hl, data, 8);
    free(b);
    ck_assert_int_eq(dir_entries(tmpdir), 1);   /* no temporary file left */
}
END_TEST

START_TEST(round_trip)
{
    char p[512], q[512];
    tpath(p, sizeof p, "r.safetensors");
    tpath(q, sizeof q, "r2.safetensors");
    float a[24], bb[5], sc[1] = {NAN};
    for (int i = 0; i < 24; i++)
        a[i] = (float)i * 0.37f - 3.0f;
    a[0] = -0.0f;
    a[1] = INFINITY;
    a[2] = 1e-40f;   /* subnormal */
    for (int i = 0; i < 5; i++)
        bb[i] = (float)(i * i);
    RtStEntry t[4] = {
        {"conv1.weight", 4, {2, 3, 2, 2}, a},
        {"fc.bias", 1, {5}, bb},
        {"state.scalar", 0, {0}, sc},
        {"empty", 2, {3, 0}, NULL},
    };
    RtErr err = {{0}};
    ck_assert_msg(rt_st_save(p, t, 4, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(rt_st_save(q, t, 4, NULL, 0, &err) == 0, "%s", err.msg);
    size_t n1, n2;
    uint8_t *f1 = tu_read_bytes(p, &n1), *f2 = tu_read_bytes(q, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(f1, f2, n1);   /* saving is deterministic */
    free(f1);
    free(f2);
    RtStFile *f = rt_st_open(p, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(rt_st_count(f), 4);
    ck_assert_ptr_null(rt_st_meta(f, "anything"));
    ck_assert_ptr_null(rt_st_name(f, 4));
    /* Names come in data-offset order: the save order (the empty tensor
     * sits at the end with zero length). */
    ck_assert_str_eq(rt_st_name(f, 0), "conv1.weight");
    ck_assert_str_eq(rt_st_name(f, 1), "fc.bias");
    ck_assert_str_eq(rt_st_name(f, 2), "state.scalar");
    ck_assert_str_eq(rt_st_name(f, 3), "empty");
    int nd, dims[4];
    ck_assert_int_eq(rt_st_shape(f, "conv1.weight", &nd, dims), 0);
    ck_assert_int_eq(nd, 4);
    ck_assert_int_eq(dims[0], 2);
    ck_assert_int_eq(dims[1], 3);
    ck_assert_int_eq(dims[3], 2);
    ck_assert_int_eq(rt_st_shape(f, "state.scalar", &nd, dims), 0);
    ck_assert_int_eq(nd, 0);
    ck_assert_int_eq(rt_st_shape(f, "nope", &nd, dims), -1);
    float ra[24], rb[5], rs[1];
    ck_assert_int_eq(rt_st_read(f, "conv1.weight", ra, 24, &err), 0);
    ck_assert_int_eq(rt_st_read(f, "fc.bias", rb, 5, &err), 0);
    ck_assert_int_eq(rt_st_read(f, "state.scalar", rs, 1, &err), 0);
    ck_assert_int_eq(rt_st_read(f, "empty", rs, 0, &err), 0);
    ck_assert_mem_eq(ra, a, sizeof a);   /* bit-identical, -0, inf, subnormal included */
    ck_assert_mem_eq(rb, bb, sizeof bb);
    ck_assert(isnan(rs[0]));
    /* Absent tensors and wrong sizes. */
    ck_assert_int_eq(rt_st_read(f, "fc.weight", ra, 5, &err), -1);
    ck_assert_msg(strstr(err.msg, "no tensor 'fc.weight'") && strstr(err.msg, p), "%s", err.msg);
    ck_assert_int_eq(rt_st_read(f, "fc.bias", ra, 6, &err), -1);
    ck_assert_msg(strstr(err.msg, "has 5 elements, expected 6"), "%s", err.msg);
    rt_st_close(f);
    /* No tensors at all is a valid file too. */
    ck_assert_int_eq(rt_st_save(q, NULL, 0, NULL, 0, &err), 0);
    f = rt_st_open(q, &err);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(rt_st_count(f), 0);
    rt_st_close(f);
}
END_TEST

START_TEST(metadata_escapes)
{
    char p[512];
    tpath(p, sizeof p, "m.safetensors");
    float x[1] = {1};
    RtStEntry t[2] = {{"we\"ird\\name\n", 1, {1}, x}, {"caf\xc3\xa9 \xf0\x9f\x98\x80", 1, {1}, x}};
    const char *meta[] = {
        "epoch", "12",
        "quote\"d", "back\\slash \"and\" quotes",
        "ctl", "tab\there\x01\x1f end\r\n",
        "utf8", "\xe2\x82\xac \xf0\x9f\x98\x80",
        "empty", "",
    };
    RtErr err = {{0}};
    ck_assert_msg(rt_st_save(p, t, 2, meta, 5, &err) == 0, "%s", err.msg);
    RtStFile *f = rt_st_open(p, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    for (int i = 0; i < 5; i++) {
        const char *v = rt_st_meta(f, meta[2 * i]);
        ck_assert_ptr_nonnull(v);
        ck_assert_str_eq(v, meta[2 * i + 1]);
    }
    ck_assert_str_eq(rt_st_name(f, 0), t[0].name);
    ck_assert_str_eq(rt_st_name(f, 1), t[1].name);
    rt_st_close(f);
}
END_TEST

START_TEST(save_rejects)
{
    char p[512];
    tpath(p, sizeof p, "bad.safetensors");
    float x[2] = {0};
    RtErr err = {{0}};
    RtStEntry dup[2] = {{"a", 1, {1}, x}, {"a", 1, {1}, x}};
    ck_assert_int_eq(rt_st_save(p, dup, 2, NULL, 0, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "duplicate tensor 'a'"));
    RtStEntry res[1] = {{"__metadata__", 1, {1}, x}};
    ck_assert_int_eq(rt_st_save(p, res, 1, NULL, 0, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "invalid name"));
    RtStEntry utf[1] = {{"bad\xff", 1, {1}, x}};
    ck_assert_int_eq(rt_st_save(p, utf, 1, NULL, 0, &err), -1);
    RtStEntry rank[1] = {{"r", 5, {1, 1, 1, 1}, x}};
    ck_assert_int_eq(rt_st_save(p, rank, 1, NULL, 0, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "rank 5"));
    const char *meta[4] = {"k", "1", "k", "2"};
    ck_assert_int_eq(rt_st_save(p, NULL, 0, meta, 2, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "duplicate metadata key 'k'"));
    ck_assert_int_eq(dir_entries(tmpdir), 0);   /* nothing written */
}
END_TEST

/* Malformed files: header text, bytes of data after it, expected message.
 * A NULL header means the raw bytes in `raw` (length rawlen) form the file. */
static const struct {
    const char *header;
    int data;
    const char *expect;
} bad_hdr[] = {
    {"[]", 0, "must start with '{'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "expected '}'"},
    {"{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unsupported dtype"},
    {"{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unsupported dtype"},
    {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "do not match"},
    {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "do not match"},
    {"{\"a\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, "do not match"},
    {"{\"a\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap"},
    {"{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 2, "after the last tensor"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
     "rank above 8"},
    {"{\"a\":{\"shape\":[1],\"dtype\":\"F16\",\"data_offsets\":[0,2]},"
     "\"a\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[2,3]}}", 3, "duplicate tensor 'a'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "do not match"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "truncated"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "overlap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "gap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "after the last tensor"},
    {"{}", 4, "after the last tensor"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate tensor 'a'"},
    {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "duplicate key"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, "lacks"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown key"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "expected an integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, "expected an integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "leading zero"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 4,
     "too large"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 4, "end before"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "rank above 4"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,4]}}", 4,
     "shape too large"},
    {"{\"a\\q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "bad escape"},
    {"{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "surrogate"},
    {"{\"a\\u00\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "bad \\u escape"},
    {"{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL"},
    {"{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid UTF-8"},
    {"{\"a\xc0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid UTF-8"},
    {"{\"a\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "control character"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "trailing characters"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "expected a string"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "expected a string"},
    {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate metadata key"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "expected '}'"},
    {"{\"a\":[1,2]}", 0, "expected '{'"},
    {"{\"a\" {}}", 0, "expected ':'"},
    {"{\"unterminated", 0, "unterminated string"},
    {"{", 0, "too small"},
};

START_TEST(malformed_header)
{
    char p[512];
    tpath(p, sizeof p, "bad.safetensors");
    const char *h = bad_hdr[_i].header;
    size_t hl = strlen(h);
    size_t n = 8 + hl + (size_t)bad_hdr[_i].data;
    uint8_t *b = calloc(n, 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, h, hl);
    tu_write_bytes(p, b, n);
    free(b);
    RtErr err = {{0}};
    RtStFile *f = rt_st_open(p, &err);
    ck_assert_msg(f == NULL, "case %d accepted", _i);
    ck_assert_msg(strstr(err.msg, p) != NULL, "message does not name the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, bad_hdr[_i].expect) != NULL, "case %d: '%s' lacks '%s'", _i,
                  err.msg, bad_hdr[_i].expect);
}
END_TEST

/* Broken at the byte level: short files, absurd or overlong header lengths,
 * a missing file, a directory. */
START_TEST(malformed_file)
{
    char p[512];
    tpath(p, sizeof p, "f.safetensors");
    RtErr err = {{0}};
    tu_write_bytes(p, "\x02\0\0", 3);
    ck_assert_ptr_null(rt_st_open(p, &err));
    ck_assert_msg(strstr(err.msg, "truncated") && strstr(err.msg, p), "%s", err.msg);
    uint8_t b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    tu_write_bytes(p, b, 10);
    ck_assert_ptr_null(rt_st_open(p, &err));
    ck_assert_msg(strstr(err.msg, "absurd"), "%s", err.msg);
    uint8_t c[10] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    tu_write_bytes(p, c, 10);
    ck_assert_ptr_null(rt_st_open(p, &err));
    ck_assert_msg(strstr(err.msg, "truncated: the header length says 100"), "%s", err.msg);
    tu_write_bytes(p, "", 0);
    ck_assert_ptr_null(rt_st_open(p, &err));
    ck_assert_msg(strstr(err.msg, "truncated"), "%s", err.msg);
    /* NUL padding instead of spaces. */
    const char hdr[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\0\0";
    uint8_t nul[8 + sizeof hdr - 1 + 4] = {sizeof hdr - 1};
    memcpy(nul + 8, hdr, sizeof hdr - 1);
    tu_write_bytes(p, nul, sizeof nul);
    ck_assert_ptr_null(rt_st_open(p, &err));
    ck_assert_msg(strstr(err.msg, "trailing characters"), "%s", err.msg);
    tpath(p, sizeof p, "missing.safetensors");
    ck_assert_ptr_null(rt_st_open(p, &err));
    ck_assert_msg(strstr(err.msg, "No such file") && strstr(err.msg, p), "%s", err.msg);
    ck_assert_ptr_null(rt_st_open(tmpdir, &err));
    ck_assert_msg(strstr(err.msg, "not a regular file"), "%s", err.msg);
    /* A good file cut short anywhere is rejected. */
    tpath(p, sizeof p, "cut.safetensors");
    float x[6] = {1, 2, 3, 4, 5, 6};
    RtStEntry t[2] = {{"x", 1, {4}, x}, {"y", 1, {2}, x + 4}};
    ck_assert_int_eq(rt_st_save(p, t, 2, NULL, 0, &err), 0);
    size_t n;
    uint8_t *whole = tu_read_bytes(p, &n);
    for (size_t cut = 0; cut < n; cut++) {
        tu_write_bytes(p, whole, cut);
        RtStFile *f = rt_st_open(p, &err);
        ck_assert_msg(f == NULL, "accepted a file cut at %zu of %zu", cut, n);
        ck_assert_ptr_nonnull(strstr(err.msg, p));
    }
    free(whole);
}
END_TEST

/* A raw safetensors file from tensors given as (name, dtype, shape text,
 * little-endian bytes): what PyTorch's writer makes. */
typedef struct {
    const char *name, *dtype, *shape;
    const void *bytes;
    size_t n;
} RawT;

static void write_raw(const char *path, const RawT *t, int n, const char *meta)
{
    char hdr[16384];
    size_t hl = 0, off = 0;
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "{%s%s", meta ? meta : "", meta ? "," : "");
    for (int i = 0; i < n; i++) {
        hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl,
                               "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                               i ? "," : "", t[i].name, t[i].dtype, t[i].shape, off, off + t[i].n);
        off += t[i].n;
    }
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "}");
    while (hl % 8)
        hdr[hl++] = ' ';
    ck_assert_uint_lt(hl, sizeof hdr);
    uint8_t *b = malloc(8 + hl + off + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    size_t at = 8 + hl;
    for (int i = 0; i < n; i++) {
        memcpy(b + at, t[i].bytes, t[i].n);
        at += t[i].n;
    }
    tu_write_bytes(path, b, at);
    free(b);
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* F64, F16 and BF16 tensors are converted to float (F64 rounded to
 * nearest, ties to even; the half formats exactly, subnormals, infinities
 * and NaN included); integer tensors (PyTorch's I64 num_batches_tracked, a
 * BOOL mask, U8) are skipped and named in one note; F32 stays bit-exact. */
START_TEST(dtypes_converted)
{
    char p[512];
    tpath(p, sizeof p, "torch.safetensors");
    /* F16: +0, -0, min subnormal, max subnormal, min normal, 1, max, inf,
     * -inf, NaN, -2.5 */
    static const uint16_t h[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00,
                                 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0xc100};
    const float hwant[] = {0.0f, -0.0f, 0x1p-24f, 0x3ffp-24f, 0x1p-14f, 1.0f, 65504.0f,
                           INFINITY, -INFINITY, NAN, -2.5f};
    /* BF16: +0, -0, smallest subnormal, 1, -2, max, inf, -inf, NaN, pi-ish */
    static const uint16_t bf[] = {0x0000, 0x8000, 0x0001, 0x3f80, 0xc000, 0x7f7f,
                                  0x7f80, 0xff80, 0x7fc0, 0x4049};
    /* F64: 1/3, a tie (1 + 2^-24: to even, 1), just above the tie (up),
     * the smallest float subnormal, below half of it (0), beyond FLT_MAX
     * (inf), -inf, NaN, -0 */
    const double d[] = {1.0 / 3.0, 1.0 + 0x1p-24, 1.0 + 0x1p-24 + 0x1p-52, 0x1p-149,
                        0x1p-151, 1e300, -INFINITY, NAN, -0.0};
    const float dwant[] = {(float)(1.0 / 3.0), 1.0f, 1.0f + 0x1p-23f, 0x1p-149f, 0.0f,
                           INFINITY, -INFINITY, NAN, -0.0f};
    ck_assert_uint_eq(fbits(dwant[0]), 0x3eaaaaabu);
    uint8_t hb[sizeof h], bb[sizeof bf], db[sizeof d];
    for (size_t i = 0; i < sizeof h / 2; i++) {
        hb[2 * i] = (uint8_t)h[i];
        hb[2 * i + 1] = (uint8_t)(h[i] >> 8);
    }
    for (size_t i = 0; i < sizeof bf / 2; i++) {
        bb[2 * i] = (uint8_t)bf[i];
        bb[2 * i + 1] = (uint8_t)(bf[i] >> 8);
    }
    for (size_t i = 0; i < sizeof d / 8; i++) {
        uint64_t u;
        memcpy(&u, &d[i], 8);
        for (int k = 0; k < 8; k++)
            db[8 * i + (size_t)k] = (uint8_t)(u >> (8 * k));
    }
    const float f32[2] = {1.5f, -3.25f};
    uint8_t fb[8];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++)
            fb[4 * i + k] = (uint8_t)(fbits(f32[i]) >> (8 * k));
    const uint8_t i64[8] = {7, 0, 0, 0, 0, 0, 0, 0}, mask[3] = {1, 0, 1}, u8[2] = {9, 9};
    const RawT t[] = {
        {"bn1.num_batches_tracked", "I64", "", i64, 8},
        {"half", "F16", "11", hb, sizeof hb},
        {"mask", "BOOL", "3", mask, 3},
        {"brain", "BF16", "2,5", bb, sizeof bb},
        {"dbl", "F64", "9", db, sizeof db},
        {"bytes", "U8", "1,1,1,1,1,2", u8, 2},
        {"f", "F32", "2", fb, 8},
    };
    write_raw(p, t, 7, "\"__metadata__\":{\"format\":\"pt\"}");
    RtErr err = {{0}};
    RtStFile *f = rt_st_open(p, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(rt_st_count(f), 4);
    ck_assert_str_eq(rt_st_meta(f, "format"), "pt");
    const char *note = rt_st_note(f);
    ck_assert_ptr_nonnull(note);
    ck_assert_msg(strstr(note, p) && strstr(note, "skipped 3 integer tensors optc does not use: "
                                                "bn1.num_batches_tracked (I64), mask (BOOL), "
                                                "bytes (U8)"), "%s", note);
    int nd, dims[4];
    ck_assert_int_eq(rt_st_shape(f, "bn1.num_batches_tracked", &nd, dims), -1);
    ck_assert_int_eq(rt_st_read(f, "mask", (float[3]){0}, 3, &err), -1);
    ck_assert_int_eq(rt_st_shape(f, "brain", &nd, dims), 0);
    ck_assert_int_eq(nd, 2);
    ck_assert_int_eq(dims[1], 5);
    float out[16];
    ck_assert_int_eq(rt_st_read(f, "half", out, 11, &err), 0);
    for (int i = 0; i < 11; i++)
        if (isnan(hwant[i]))
            ck_assert_msg(isnan(out[i]), "half %d", i);
        else
            ck_assert_msg(fbits(out[i]) == fbits(hwant[i]), "half %d: %a, want %a", i,
                          (double)out[i], (double)hwant[i]);
    ck_assert_int_eq(rt_st_read(f, "brain", out, 10, &err), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_msg(fbits(out[i]) == (uint32_t)bf[i] << 16, "bf16 %d: %08x", i, fbits(out[i]));
    ck_assert(out[2] > 0.0f && out[2] < 1e-38f);   /* a float subnormal */
    ck_assert(isnan(out[8]));
    ck_assert_int_eq(rt_st_read(f, "dbl", out, 9, &err), 0);
    for (int i = 0; i < 9; i++)
        if (isnan(dwant[i]))
            ck_assert_msg(isnan(out[i]), "f64 %d", i);
        else
            ck_assert_msg(fbits(out[i]) == fbits(dwant[i]), "f64 %d: %a, want %a", i,
                          (double)out[i], (double)dwant[i]);
    ck_assert_int_eq(rt_st_read(f, "dbl", out, 8, &err), -1);
    ck_assert_msg(strstr(err.msg, "has 9 elements, expected 8"), "%s", err.msg);
    ck_assert_int_eq(rt_st_read(f, "f", out, 2, &err), 0);
    ck_assert(out[0] == 1.5f && out[1] == -3.25f);
    rt_st_close(f);
    /* every half value converts to the float it denotes */
    for (uint32_t u = 0; u < 0x10000; u++) {
        uint16_t x = (uint16_t)u;
        int e = x >> 10 & 0x1f, m = x & 0x3ff;
        float v = rt_st_f16_to_f32(x);
        if (e == 31) {
            ck_assert(m ? isnan(v) : isinf(v));
            continue;
        }
        double want = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (x & 0x8000)
            want = -want;
        ck_assert_msg((double)v == want && !signbit(v) == !signbit(want), "f16 %04x", u);
    }
    /* a file of F32 tensors only has no note */
    RtStEntry e[1] = {{"x", 1, {2}, f32}};
    ck_assert_int_eq(rt_st_save(p, e, 1, NULL, 0, &err), 0);
    f = rt_st_open(p, &err);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_null(rt_st_note(f));
    rt_st_close(f);
}
END_TEST

/* One note however many integer tensors there are: the count, then names
 * up to about 300 characters. */
START_TEST(many_skipped_one_note)
{
    char p[512];
    tpath(p, sizeof p, "many.safetensors");
    RawT t[60];
    char names[60][48];
    static const uint8_t z[8];
    for (int i = 0; i < 60; i++) {
        snprintf(names[i], sizeof names[i], "layer%d.bn.num_batches_tracked", i);
        t[i] = (RawT){names[i], "I64", "", z, 8};
    }
    write_raw(p, t, 60, NULL);
    RtErr err = {{0}};
    RtStFile *f = rt_st_open(p, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(rt_st_count(f), 0);
    const char *note = rt_st_note(f);
    ck_assert_ptr_nonnull(note);
    ck_assert_ptr_null(strchr(note, '\n'));
    ck_assert_msg(strstr(note, "skipped 60 integer tensors") && strstr(note, ", ...") &&
                  strlen(note) < 300 + 200 + strlen(p), "%s", note);
    rt_st_close(f);
}
END_TEST

/* A failed save leaves the previous file untouched and no temporary. */
static void assert_intact(const char *p, const uint8_t *old, size_t oldn, int entries)
{
    size_t n;
    uint8_t *now = tu_read_bytes(p, &n);
    ck_assert_uint_eq(n, oldn);
    ck_assert_mem_eq(now, old, n);
    free(now);
    ck_assert_int_eq(dir_entries(tmpdir), entries);
}

START_TEST(atomic_save)
{
    char p[512], tmp[600];
    tpath(p, sizeof p, "ckpt.safetensors");
    float v1[4] = {1, 2, 3, 4}, v2[4] = {5, 6, 7, 8};
    RtStEntry t1[1] = {{"w", 1, {4}, v1}}, t2[1] = {{"w", 1, {4}, v2}};
    RtErr err = {{0}};
    ck_assert_int_eq(rt_st_save(p, t1, 1, NULL, 0, &err), 0);
    size_t oldn;
    uint8_t *old = tu_read_bytes(p, &oldn);

    /* The temporary cannot be created (a directory is in its way). */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    ck_assert_int_eq(mkdir(tmp, 0700), 0);
    ck_assert_int_eq(rt_st_save(p, t2, 1, NULL, 0, &err), -1);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "Is a directory"), "%s", err.msg);
    ck_assert_int_eq(rmdir(tmp), 0);
    assert_intact(p, old, oldn, 1);

    /* A short write (the file-size limit stands in for a full disk): the
     * temporary is removed, the old file stays. */
    struct rlimit saved, small;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    small = saved;
    small.rlim_cur = 4096;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    float *big = calloc(100000, sizeof *big);
    RtStEntry tb[1] = {{"w", 1, {100000}, big}};
    int rc = rt_st_save(p, tb, 1, NULL, 0, &err);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, oldsig);
    free(big);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "File too large"), "%s", err.msg);
    assert_intact(p, old, oldn, 1);

    /* A directory that does not exist. */
    char q[600];
    snprintf(q, sizeof q, "%s/no/such/dir/x.safetensors", tmpdir);
    ck_assert_int_eq(rt_st_save(q, t2, 1, NULL, 0, &err), -1);
    ck_assert_msg(strstr(err.msg, q) && strstr(err.msg, "No such file"), "%s", err.msg);

    /* An unwritable directory (root writes anyway, so only when not root). */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(tmpdir, 0500), 0);
        ck_assert_int_eq(rt_st_save(p, t2, 1, NULL, 0, &err), -1);
        ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "Permission denied"), "%s", err.msg);
        ck_assert_int_eq(chmod(tmpdir, 0700), 0);
        assert_intact(p, old, oldn, 1);
    }

    /* And a save that works replaces the file whole. */
    ck_assert_int_eq(rt_st_save(p, t2, 1, NULL, 0, &err), 0);
    RtStFile *f = rt_st_open(p, &err);
    ck_assert_ptr_nonnull(f);
    float r[4];
    ck_assert_int_eq(rt_st_read(f, "w", r, 4, &err), 0);
    ck_assert_mem_eq(r, v2, sizeof r);
    rt_st_close(f);
    ck_assert_int_eq(dir_entries(tmpdir), 1);
    free(old);
}
END_TEST

/* Random corruption of a valid file never crashes (run under ASan in
 * make check): each mutant is either rejected with a message naming the
 * file, or accepted with every tensor readable at its stated size. */
START_TEST(mutations)
{
    char p[512];
    tpath(p, sizeof p, "mut.safetensors");
    float x[12];
    for (int i = 0; i < 12; i++)
        x[i] = (float)i;
    RtStEntry t[3] = {{"a", 2, {2, 3}, x}, {"b\"q", 1, {4}, x + 6}, {"c", 0, {0}, x + 10}};
    const char *meta[2] = {"k\\", "v\n"};
    RtErr err = {{0}};
    ck_assert_int_eq(rt_st_save(p, t, 3, meta, 1, &err), 0);
    size_t n;
    uint8_t *good = tu_read_bytes(p, &n), *m = malloc(n);
    RtRng r;
    rt_rng_seed(&r, 77);
    int rounds = tu_sanitized() ? 800 : 3000, accepted = 0;
    for (int k = 0; k < rounds; k++) {
        memcpy(m, good, n);
        int flips = 1 + (int)rt_rng_below(&r, 3);
        for (int f = 0; f < flips; f++) {
            size_t at = rt_rng_below(&r, (uint32_t)n);
            /* Mostly the header, where the parser lives. */
            if (rt_rng_below(&r, 4))
                at = 8 + rt_rng_below(&r, (uint32_t)(n - 8 - 40));
            m[at] = rt_rng_below(&r, 2) ? (uint8_t)rt_rng_below(&r, 256)
                                       : (uint8_t)"{}[]\",:0123456789 \\u"[rt_rng_below(&r, 20)];
        }
        size_t len = rt_rng_below(&r, 8) ? n : rt_rng_below(&r, (uint32_t)n);
        tu_write_bytes(p, m, len);
        RtStFile *f = rt_st_open(p, &err);
        if (!f) {
            ck_assert_ptr_nonnull(strstr(err.msg, p));
            continue;
        }
        accepted++;
        for (int i = 0; i < rt_st_count(f); i++) {
            int nd, dims[4];
            const char *nm = rt_st_name(f, i);
            ck_assert_int_eq(rt_st_shape(f, nm, &nd, dims), 0);
            size_t numel = 1;
            for (int d = 0; d < nd; d++)
                numel *= (size_t)dims[d];
            float *buf = malloc(numel * sizeof *buf + 1);
            ck_assert_int_eq(rt_st_read(f, nm, buf, numel, &err), 0);
            free(buf);
        }
        rt_st_close(f);
    }
    /* Some mutants only change data bytes or padding: those are valid. */
    ck_assert_int_gt(accepted, 0);
    free(good);
    free(m);
}
END_TEST

static Suite *st_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("format");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, exact_format);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, metadata_escapes);
    tcase_add_test(tc, save_rejects);
    tcase_add_loop_test(tc, malformed_header, 0, (int)(sizeof bad_hdr / sizeof bad_hdr[0]));
    tcase_add_test(tc, malformed_file);
    tcase_add_test(tc, dtypes_converted);
    tcase_add_test(tc, many_skipped_one_note);
    tcase_add_test(tc, atomic_save);
    tcase_add_test(tc, mutations);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(st_suite)
