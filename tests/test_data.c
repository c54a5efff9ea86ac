/* test_data.c — IDX (plain and gzip), CIFAR readers on files written here,
 * their error messages on broken files, the data-set loader (normalisation,
 * limits, shape checks, real Fashion-MNIST), synthetic data, batches with
 * crop and flip, shuffling. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "rt.h"
#include "testutil.h"
#include "tmain.h"

static char tmpdir[256];

static void setup(void)
{
    tu_tmpdir(tmpdir, sizeof tmpdir, "test_data");
}

static void teardown(void)
{
    tu_rmrf(tmpdir);
}

static void tpath(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_gz(const char *path, const void *b, size_t n)
{
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, b, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An IDX image file of n images h x w, pixel (i, k) = (7*i + k) % 256. */
static uint8_t *idx_images(int n, int h, int w, size_t *len)
{
    size_t px = (size_t)n * h * w;
    uint8_t *b = malloc(16 + px);
    put32(b, 0x803);
    put32(b + 4, (uint32_t)n);
    put32(b + 8, (uint32_t)h);
    put32(b + 12, (uint32_t)w);
    for (size_t i = 0; i < px; i++)
        b[16 + i] = (uint8_t)((7 * (i / ((size_t)h * w)) + i % ((size_t)h * w)) % 256);
    *len = 16 + px;
    return b;
}

static uint8_t *idx_labels(int n, int classes, size_t *len)
{
    uint8_t *b = malloc(8 + (size_t)n);
    put32(b, 0x801);
    put32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++)
        b[8 + i] = (uint8_t)((i * 3) % classes);
    *len = 8 + (size_t)n;
    return b;
}

START_TEST(idx_plain_and_gzip)
{
    size_t li, ll;
    uint8_t *im = idx_images(5, 3, 4, &li), *lb = idx_labels(5, 10, &ll);
    char p[512];
    for (int gz = 0; gz < 2; gz++) {
        tpath(p, sizeof p, gz ? "im.gz" : "im");
        (gz ? write_gz : tu_write_bytes)(p, im, li);
        float *x;
        int n, h, w;
        RtErr err = {{0}};
        ck_assert_msg(rt_idx_read_images(p, &x, &n, &h, &w, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(n, 5);
        ck_assert_int_eq(h, 3);
        ck_assert_int_eq(w, 4);
        for (int i = 0; i < 60; i++)
            ck_assert(x[i] == (float)im[16 + i] / 255.0f);
        free(x);
        tpath(p, sizeof p, gz ? "lb.gz" : "lb");
        (gz ? write_gz : tu_write_bytes)(p, lb, ll);
        uint8_t *y;
        ck_assert_msg(rt_idx_read_labels(p, &y, &n, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(n, 5);
        for (int i = 0; i < 5; i++)
            ck_assert_int_eq(y[i], (i * 3) % 10);
        free(y);
    }
    free(im);
    free(lb);
}
END_TEST

/* Broken IDX files: how each is made and what the message must say. */
enum { MK_MISSING, MK_EMPTY, MK_SHORT_HDR, MK_SHORT_DATA, MK_MAGIC, MK_GARBAGE, MK_ABSURD,
       MK_ZERO_DIM, MK_TRAILING, MK_GZ_CORRUPT, MK_GZ_TRUNC, MK_GZ_CRC, MK_GZ_SHORT_DATA,
       MK_DIR };
static const struct { int kind; const char *expect; } bad_idx[] = {
    {MK_MISSING, "No such file"},
    {MK_EMPTY, "truncated"},
    {MK_SHORT_HDR, "truncated header"},
    {MK_SHORT_DATA, "truncated: the header promises 60 data bytes, the file holds 59"},
    {MK_MAGIC, "wrong magic 0x00000801"},
    {MK_GARBAGE, "wrong magic"},
    {MK_ABSURD, "absurd"},
    {MK_ZERO_DIM, "absurd dimension 0"},
    {MK_TRAILING, "trailing data"},
    {MK_GZ_CORRUPT, "gzip"},
    {MK_GZ_TRUNC, "truncated gzip stream"},
    {MK_GZ_CRC, "gzip"},
    {MK_GZ_SHORT_DATA, "truncated"},
    {MK_DIR, "directory"},
};

START_TEST(idx_bad_files)
{
    char p[512];
    tpath(p, sizeof p, "bad-images-idx3-ubyte");
    size_t li;
    uint8_t *im = idx_images(5, 3, 4, &li);
    switch (bad_idx[_i].kind) {
    case MK_MISSING: break;
    case MK_EMPTY: tu_write_bytes(p, im, 0); break;
    case MK_SHORT_HDR: tu_write_bytes(p, im, 9); break;
    case MK_SHORT_DATA: tu_write_bytes(p, im, li - 1); break;
    case MK_MAGIC: put32(im, 0x801); tu_write_bytes(p, im, li); break;
    case MK_GARBAGE: tu_write_bytes(p, (const uint8_t *)"hello, I am not an IDX file\n", 28); break;
    case MK_ABSURD:
        /* 100000 x 4096 x 4096 would be 1.6 TB: refused before any allocation. */
        put32(im + 4, 100000);
        put32(im + 8, 4096);
        put32(im + 12, 4096);
        tu_write_bytes(p, im, li);
        break;
    case MK_ZERO_DIM: put32(im + 8, 0); tu_write_bytes(p, im, li); break;
    case MK_TRAILING: {
        uint8_t *b = malloc(li + 3);
        memcpy(b, im, li);
        memset(b + li, 1, 3);
        tu_write_bytes(p, b, li + 3);
        free(b);
        break;
    }
    case MK_GZ_CORRUPT: case MK_GZ_TRUNC: case MK_GZ_CRC: {
        write_gz(p, im, li);
        size_t n;
        uint8_t *g = tu_read_bytes(p, &n);
        if (bad_idx[_i].kind == MK_GZ_CORRUPT)
            for (size_t k = 12; k < n - 8; k++)
                g[k] ^= 0x5a;
        if (bad_idx[_i].kind == MK_GZ_CRC)
            g[n - 8] ^= 0xff;   /* the CRC32 in the trailer */
        tu_write_bytes(p, g, bad_idx[_i].kind == MK_GZ_TRUNC ? n / 2 : n);
        free(g);
        break;
    }
    case MK_GZ_SHORT_DATA: write_gz(p, im, li - 5); break;
    case MK_DIR: ck_assert_int_eq(mkdir(p, 0700), 0); break;
    }
    free(im);
    float *x = (float *)p;  /* must be reset to NULL on failure */
    int n, h, w;
    RtErr err = {{0}};
    ck_assert_int_eq(rt_idx_read_images(p, &x, &n, &h, &w, &err), -1);
    ck_assert_ptr_null(x);
    ck_assert_msg(strstr(err.msg, p) != NULL, "message does not name the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, bad_idx[_i].expect) != NULL, "case %d: '%s' lacks '%s'", _i,
                  err.msg, bad_idx[_i].expect);
}
END_TEST

/* Random corruption of plain and gzip IDX files never crashes or leaks
 * (ASan in make check): a mutant is read consistently or rejected with a
 * message naming the file. */
START_TEST(idx_mutations)
{
    char p[512];
    tpath(p, sizeof p, "mut-images-idx3-ubyte");
    size_t li;
    uint8_t *im = idx_images(6, 5, 4, &li);
    write_gz(p, im, li);
    size_t gl;
    uint8_t *gz = tu_read_bytes(p, &gl);
    uint8_t *m = malloc(li > gl ? li : gl);
    RtRng r;
    rt_rng_seed(&r, 11);
    int rounds = tu_sanitized() ? 300 : 1000;
    for (int k = 0; k < rounds; k++) {
        int usegz = k % 2;
        const uint8_t *src = usegz ? gz : im;
        size_t n = usegz ? gl : li;
        memcpy(m, src, n);
        int flips = 1 + (int)rt_rng_below(&r, 3);
        for (int f = 0; f < flips; f++) {
            size_t at = rt_rng_below(&r, 4) ? rt_rng_below(&r, 24) : rt_rng_below(&r, (uint32_t)n);
            if (at >= n)
                at = n - 1;
            m[at] = (uint8_t)rt_rng_u64(&r);
        }
        size_t len = rt_rng_below(&r, 6) ? n : rt_rng_below(&r, (uint32_t)n);
        tu_write_bytes(p, m, len);
        float *x;
        int cn, h, w;
        RtErr err = {{0}};
        if (rt_idx_read_images(p, &x, &cn, &h, &w, &err) == 0) {
            ck_assert_int_gt(cn, 0);
            if (!usegz)
                ck_assert_uint_le((size_t)cn * h * w, len);
            float s = 0;
            for (size_t i = 0; i < (size_t)cn * h * w; i++)
                s += x[i];   /* touches every pixel: ASan checks the size */
            ck_assert(s >= 0.0f);
            free(x);
        } else {
            ck_assert_ptr_null(x);
            ck_assert_msg(strstr(err.msg, p) != NULL, "%s", err.msg);
        }
    }
    free(m);
    free(gz);
    free(im);
}
END_TEST

START_TEST(idx_labels_bad)
{
    char p[512];
    tpath(p, sizeof p, "labels");
    size_t li;
    uint8_t *im = idx_images(2, 2, 2, &li);
    tu_write_bytes(p, im, li);
    free(im);
    uint8_t *y;
    int n;
    RtErr err = {{0}};
    ck_assert_int_eq(rt_idx_read_labels(p, &y, &n, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "wrong magic 0x00000803"));
    ck_assert_ptr_nonnull(strstr(err.msg, p));
}
END_TEST

/* A CIFAR file of n records; label of record i = (5*i) % classes, pixel k
 * = (i + k) % 251; CIFAR-100 puts coarse label 99 - fine first. */
static void write_cifar(const char *path, int n, int c100, int off)
{
    size_t rec = (size_t)(c100 ? 2 : 1) + 3072;
    uint8_t *b = malloc(rec * (size_t)n);
    for (int i = 0; i < n; i++) {
        uint8_t *r = b + rec * (size_t)i;
        int lab = (5 * (i + off)) % (c100 ? 100 : 10);
        if (c100) {
            r[0] = (uint8_t)(lab / 5);
            r[1] = (uint8_t)lab;
        } else {
            r[0] = (uint8_t)lab;
        }
        for (int k = 0; k < 3072; k++)
            r[rec - 3072 + (size_t)k] = (uint8_t)((i + off + k) % 251);
    }
    tu_write_bytes(path, b, rec * (size_t)n);
    free(b);
}

START_TEST(cifar_read)
{
    char p[512];
    for (int c100 = 0; c100 < 2; c100++) {
        tpath(p, sizeof p, "c.bin");
        write_cifar(p, 7, c100, 0);
        float *x;
        uint8_t *y;
        int n;
        RtErr err = {{0}};
        ck_assert_msg(rt_cifar_read(p, c100, &x, &y, &n, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(n, 7);
        for (int i = 0; i < 7; i++) {
            ck_assert_int_eq(y[i], (5 * i) % (c100 ? 100 : 10));
            for (int k = 0; k < 3072; k += 97)
                ck_assert(x[i * 3072 + k] == (float)((i + k) % 251) / 255.0f);
        }
        free(x);
        free(y);
        /* Read with the other layout: the size is no longer a multiple. */
        ck_assert_int_eq(rt_cifar_read(p, !c100, &x, &y, &n, &err), -1);
        ck_assert_ptr_nonnull(strstr(err.msg, "not a whole number"));
        ck_assert_ptr_nonnull(strstr(err.msg, p));
    }
    /* Truncated, empty, missing, and a label out of range. */
    size_t len;
    tpath(p, sizeof p, "c.bin");
    write_cifar(p, 2, 0, 0);
    uint8_t *b = tu_read_bytes(p, &len);
    tu_write_bytes(p, b, len - 100);
    float *x;
    uint8_t *y;
    int n;
    RtErr err = {{0}};
    ck_assert_int_eq(rt_cifar_read(p, 0, &x, &y, &n, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a whole number of CIFAR-10 records"));
    tu_write_bytes(p, b, 0);
    ck_assert_int_eq(rt_cifar_read(p, 0, &x, &y, &n, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, p));
    b[3073] = 10;
    tu_write_bytes(p, b, len);
    ck_assert_int_eq(rt_cifar_read(p, 0, &x, &y, &n, &err), -1);
    ck_assert_msg(strstr(err.msg, "record 1 has label 10") != NULL, "%s", err.msg);
    free(b);
    tpath(p, sizeof p, "nope.bin");
    ck_assert_int_eq(rt_cifar_read(p, 0, &x, &y, &n, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
    ck_assert_ptr_null(x);
    ck_assert_ptr_null(y);
}
END_TEST

/* Per-channel mean and standard deviation of a data set. */
static void channel_stats(const RtData *d, int ch, double *mean, double *sd)
{
    size_t hw = (size_t)d->h * d->w;
    double s = 0, s2 = 0;
    for (int i = 0; i < d->n; i++)
        for (size_t j = 0; j < hw; j++) {
            double v = (double)d->x[((size_t)i * d->c + ch) * hw + j];
            s += v;
            s2 += v * v;
        }
    double cnt = (double)d->n * (double)hw;
    *mean = s / cnt;
    *sd = sqrt(s2 / cnt - *mean * *mean);
}

static void write_mnist_dir(int ntrain, int ntest, int gz)
{
    const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int k = 0; k < 4; k++) {
        size_t len;
        int n = k < 2 ? ntrain : ntest;
        uint8_t *b = k % 2 == 0 ? idx_images(n, 28, 28, &len) : idx_labels(n, 10, &len);
        char p[512], name[128];
        snprintf(name, sizeof name, "%s%s", names[k], gz ? ".gz" : "");
        tpath(p, sizeof p, name);
        (gz ? write_gz : tu_write_bytes)(p, b, len);
        free(b);
    }
}

START_TEST(load_mnist_dir)
{
    for (int gz = 0; gz < 2; gz++) {
        write_mnist_dir(30, 12, gz);
        char spec[512];
        snprintf(spec, sizeof spec, "%s:%s", gz ? "fashion-mnist" : "mnist", tmpdir);
        RtData tr, te;
        RtErr err = {{0}};
        ck_assert_msg(rt_data_load(&tr, &te, spec, 20, 0, 1, 28, 28, 10, 1, &err) == 0, "%s",
                      err.msg);
        ck_assert_int_eq(tr.n, 20);
        ck_assert_int_eq(te.n, 12);
        ck_assert_int_eq(tr.c, 1);
        ck_assert_int_eq(tr.classes, 10);
        double m, s;
        channel_stats(&tr, 0, &m, &s);
        ck_assert_double_eq_tol(m, 0.0, 1e-5);
        ck_assert_double_eq_tol(s, 1.0, 1e-4);
        ck_assert_int_eq(tr.y[4], 12 % 10);
        rt_data_free(&tr);
        rt_data_free(&te);
        /* The network's shape must match the data. */
        ck_assert_int_eq(rt_data_load(&tr, &te, spec, 0, 0, 3, 32, 32, 10, 1, &err), -1);
        ck_assert_msg(strstr(err.msg, "expects 3x32x32") && strstr(err.msg, "1x28x28") &&
                      strstr(err.msg, tmpdir), "%s", err.msg);
        ck_assert_ptr_null(tr.x);
        ck_assert_int_eq(rt_data_load(&tr, &te, spec, 0, 0, 1, 28, 28, 100, 1, &err), -1);
        ck_assert_ptr_nonnull(strstr(err.msg, "100 classes"));
        char p[512];
        snprintf(p, sizeof p, "rm -f %s/*", tmpdir);
        ck_assert_int_eq(system(p), 0);
    }
    /* Label count mismatch, a missing test file, and an unknown spec. */
    write_mnist_dir(30, 12, 0);
    char p[512], spec[512];
    tpath(p, sizeof p, "t10k-labels-idx1-ubyte");
    size_t len;
    uint8_t *b = idx_labels(11, 10, &len);
    tu_write_bytes(p, b, len);
    free(b);
    snprintf(spec, sizeof spec, "mnist:%s", tmpdir);
    RtData tr, te;
    RtErr err = {{0}};
    ck_assert_int_eq(rt_data_load(&tr, &te, spec, 0, 0, 1, 28, 28, 10, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "11 labels for the 12 images") && strstr(err.msg, p), "%s",
                  err.msg);
    unlink(p);
    ck_assert_int_eq(rt_data_load(&tr, &te, spec, 0, 0, 1, 28, 28, 10, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "t10k-labels-idx1-ubyte.gz: No such file"), "%s", err.msg);
    ck_assert_int_eq(rt_data_load(&tr, &te, "imagenet", 0, 0, 1, 28, 28, 10, 1, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown data set"));
    ck_assert_int_eq(rt_data_load(&tr, &te, "mnist", 0, 0, 1, 28, 28, 10, 1, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "mnist:DIR"));
}
END_TEST

START_TEST(load_cifar_dirs)
{
    char p[512], spec[512];
    for (int k = 1; k <= 5; k++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", tmpdir, k);
        write_cifar(p, 4, 0, 10 * k);
    }
    tpath(p, sizeof p, "test_batch.bin");
    write_cifar(p, 3, 0, 0);
    tpath(p, sizeof p, "train.bin");
    write_cifar(p, 6, 1, 0);
    tpath(p, sizeof p, "test.bin");
    write_cifar(p, 2, 1, 0);
    RtData tr, te;
    RtErr err = {{0}};
    snprintf(spec, sizeof spec, "cifar10:%s", tmpdir);
    ck_assert_msg(rt_data_load(&tr, &te, spec, 0, 0, 3, 32, 32, 10, 1, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(tr.n, 20);
    ck_assert_int_eq(te.n, 3);
    ck_assert_int_eq(tr.y[4], (5 * 20) % 10);   /* first record of batch 2 */
    ck_assert_int_eq(tr.y[5], (5 * 21) % 10);
    for (int ch = 0; ch < 3; ch++) {
        double m, s;
        channel_stats(&tr, ch, &m, &s);
        ck_assert_double_eq_tol(m, 0.0, 1e-5);
        ck_assert_double_eq_tol(s, 1.0, 1e-4);
    }
    rt_data_free(&tr);
    rt_data_free(&te);
    snprintf(spec, sizeof spec, "cifar100:%s", tmpdir);
    ck_assert_msg(rt_data_load(&tr, &te, spec, 0, 1, 3, 32, 32, 100, 1, &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(tr.n, 6);
    ck_assert_int_eq(te.n, 1);
    ck_assert_int_eq(tr.classes, 100);
    ck_assert_int_eq(tr.y[3], 15);
    rt_data_free(&tr);
    rt_data_free(&te);
    ck_assert_int_eq(rt_data_load(&tr, &te, spec, 0, 0, 1, 28, 28, 10, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "train.bin") && strstr(err.msg, "3x32x32"), "%s", err.msg);
    snprintf(p, sizeof p, "%s/data_batch_3.bin", tmpdir);
    unlink(p);
    snprintf(spec, sizeof spec, "cifar10:%s", tmpdir);
    ck_assert_int_eq(rt_data_load(&tr, &te, spec, 0, 0, 3, 32, 32, 10, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "No such file"), "%s", err.msg);
}
END_TEST

START_TEST(fashion_mnist_real)
{
    RtData tr, te;
    RtErr err = {{0}};
    ck_assert_msg(rt_data_load(&tr, &te, "fashion-mnist", 0, 0, 1, 28, 28, 10, 1, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(tr.n, 60000);
    ck_assert_int_eq(te.n, 10000);
    ck_assert_int_eq(tr.h, 28);
    ck_assert_int_eq(tr.w, 28);
    int count[10] = {0};
    for (int i = 0; i < tr.n; i++) {
        ck_assert_int_lt(tr.y[i], 10);
        count[tr.y[i]]++;
    }
    for (int k = 0; k < 10; k++)   /* Fashion-MNIST is balanced */
        ck_assert_int_eq(count[k], 6000);
    for (int i = 0; i < te.n; i++)
        ck_assert_int_lt(te.y[i], 10);
    double m, s;
    channel_stats(&tr, 0, &m, &s);
    ck_assert_double_eq_tol(m, 0.0, 1e-4);
    ck_assert_double_eq_tol(s, 1.0, 1e-3);
    channel_stats(&te, 0, &m, &s);   /* the test set uses the training statistics */
    ck_assert_double_eq_tol(m, 0.0, 0.05);
    ck_assert_double_eq_tol(s, 1.0, 0.05);
    rt_data_free(&tr);
    rt_data_free(&te);
}
END_TEST

START_TEST(synthetic)
{
    RtData a, at, b, bt, c, ct, l, lt;
    RtErr err = {{0}};
    ck_assert_int_eq(rt_data_load(&a, &at, "synthetic", 0, 0, 3, 12, 12, 5, 7, &err), 0);
    ck_assert_int_eq(rt_data_load(&b, &bt, "synthetic", 0, 0, 3, 12, 12, 5, 7, &err), 0);
    ck_assert_int_eq(rt_data_load(&c, &ct, "synthetic", 0, 0, 3, 12, 12, 5, 8, &err), 0);
    ck_assert_int_eq(rt_data_load(&l, &lt, "synthetic", 100, 50, 3, 12, 12, 5, 7, &err), 0);
    ck_assert_int_eq(a.n, 2048);
    ck_assert_int_eq(at.n, 512);
    ck_assert_int_eq(l.n, 100);
    ck_assert_int_eq(lt.n, 50);
    size_t per = 3 * 12 * 12;
    ck_assert_mem_eq(a.x, b.x, a.n * per * sizeof(float));
    ck_assert_mem_eq(a.y, b.y, (size_t)a.n);
    ck_assert_mem_eq(at.x, bt.x, at.n * per * sizeof(float));
    ck_assert_int_ne(memcmp(a.x, c.x, a.n * per * sizeof(float)), 0);
    ck_assert_mem_eq(a.y, l.y, 100);    /* a limit keeps the same first images */
    for (int ch = 0; ch < 3; ch++) {
        double m, s;
        channel_stats(&a, ch, &m, &s);
        ck_assert_double_eq_tol(m, 0.0, 1e-4);
        ck_assert_double_eq_tol(s, 1.0, 1e-3);
    }
    /* Learnable: nearest class mean reaches high test accuracy. */
    double *mean = calloc(5 * per, sizeof *mean);
    int cnt[5] = {0};
    for (int i = 0; i < a.n; i++) {
        cnt[a.y[i]]++;
        for (size_t j = 0; j < per; j++)
            mean[a.y[i] * per + j] += (double)a.x[i * per + j];
    }
    for (int k = 0; k < 5; k++) {
        ck_assert_int_gt(cnt[k], 300);
        for (size_t j = 0; j < per; j++)
            mean[k * per + j] /= cnt[k];
    }
    int right = 0;
    for (int i = 0; i < at.n; i++) {
        int best = 0;
        double bd = INFINITY;
        for (int k = 0; k < 5; k++) {
            double d = 0;
            for (size_t j = 0; j < per; j++) {
                double e = (double)at.x[i * per + j] - mean[k * per + j];
                d += e * e;
            }
            if (d < bd) {
                bd = d;
                best = k;
            }
        }
        right += best == at.y[i];
    }
    ck_assert_int_gt(right, at.n * 9 / 10);
    free(mean);
    RtData *all[] = {&a, &at, &b, &bt, &c, &ct, &l, &lt};
    for (int i = 0; i < 8; i++)
        rt_data_free(all[i]);
    ck_assert_int_eq(rt_data_load(&a, &at, "synthetic", 0, 0, 0, 12, 12, 5, 7, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "synthetic"));
}
END_TEST

/* A 2-image data set with distinct pixel values, for batch tests. */
static void small_set(RtData *d, int C, int H, int W)
{
    d->n = 2;
    d->c = C;
    d->h = H;
    d->w = W;
    d->classes = 10;
    size_t per = (size_t)C * H * W;
    d->x = malloc(2 * per * sizeof *d->x);
    d->y = malloc(2);
    for (size_t i = 0; i < 2 * per; i++)
        d->x[i] = (float)i + 1.0f;
    d->y[0] = 3;
    d->y[1] = 7;
}

START_TEST(batch_plain_and_flip)
{
    enum { C = 2, H = 3, W = 5, B = 64 };
    RtData d;
    small_set(&d, C, H, W);
    uint32_t idx[B];
    for (int b = 0; b < B; b++)
        idx[b] = (uint32_t)(b % 2 ? 0 : 1);
    float out[B * C * H * W], out2[B * C * H * W];
    uint8_t lab[B];
    RtRng r;
    rt_rng_seed(&r, 1);
    rt_data_batch(out, lab, &d, idx, B, 0, 0, &r);
    for (int b = 0; b < B; b++) {
        ck_assert_int_eq(lab[b], d.y[idx[b]]);
        ck_assert_mem_eq(out + b * C * H * W, d.x + idx[b] * C * H * W, sizeof(float) * C * H * W);
    }
    rt_rng_seed(&r, 2);
    rt_data_batch(out, lab, &d, idx, B, 0, 1, &r);
    rt_rng_seed(&r, 2);
    rt_data_batch(out2, lab, &d, idx, B, 0, 1, &r);
    ck_assert_mem_eq(out, out2, sizeof out);
    int flipped = 0;
    for (int b = 0; b < B; b++) {
        const float *src = d.x + idx[b] * C * H * W, *o = out + b * C * H * W;
        int same = !memcmp(o, src, sizeof(float) * C * H * W), mirror = 1;
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    mirror &= o[(ch * H + y) * W + x] == src[(ch * H + y) * W + W - 1 - x];
        ck_assert(same || mirror);
        ck_assert(!(same && mirror));
        flipped += mirror;
    }
    ck_assert_int_gt(flipped, B / 4);      /* p = 0.5: 64 draws, far from 16 and 48 */
    ck_assert_int_lt(flipped, 3 * B / 4);
    rt_data_free(&d);
}
END_TEST

START_TEST(batch_crop)
{
    enum { C = 1, H = 6, W = 6, B = 200, PAD = 2 };
    RtData d;
    small_set(&d, C, H, W);
    uint32_t idx[B];
    for (int b = 0; b < B; b++)
        idx[b] = 1;
    static float out[B * C * H * W], out2[B * C * H * W];
    uint8_t lab[B];
    RtRng r;
    rt_rng_seed(&r, 3);
    rt_data_batch(out, lab, &d, idx, B, PAD, 0, &r);
    rt_rng_seed(&r, 3);
    rt_data_batch(out2, lab, &d, idx, B, PAD, 0, &r);
    ck_assert_mem_eq(out, out2, sizeof out);
    int seen[2 * PAD + 1][2 * PAD + 1] = {{0}};
    const float *src = d.x + C * H * W;
    for (int b = 0; b < B; b++) {
        /* Find the shift that explains this output exactly. */
        int found = 0;
        for (int dy = -PAD; dy <= PAD && !found; dy++)
            for (int dx = -PAD; dx <= PAD && !found; dx++) {
                int ok = 1;
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        int sy = y + dy, sx = x + dx;
                        float want = sy >= 0 && sy < H && sx >= 0 && sx < W ? src[sy * W + sx] : 0;
                        ok &= out[b * H * W + y * W + x] == want;
                    }
                if (ok) {
                    found = 1;
                    seen[dy + PAD][dx + PAD]++;
                }
            }
        ck_assert(found);
    }
    for (int i = 0; i <= 2 * PAD; i++)   /* every offset in [-pad, pad] occurs */
        for (int j = 0; j <= 2 * PAD; j++)
            ck_assert_int_gt(seen[i][j], 0);
    rt_data_free(&d);
}
END_TEST

START_TEST(shuffle)
{
    enum { N = 1000 };
    uint32_t a[N], b[N];
    for (int i = 0; i < N; i++)
        a[i] = b[i] = (uint32_t)i;
    RtRng r, s;
    rt_rng_seed(&r, 9);
    rt_rng_seed(&s, 9);
    rt_shuffle(a, N, &r);
    rt_shuffle(b, N, &s);
    ck_assert_mem_eq(a, b, sizeof a);
    int fixed = 0, seen[N] = {0};
    for (int i = 0; i < N; i++) {
        ck_assert_uint_lt(a[i], N);
        ck_assert_int_eq(seen[a[i]]++, 0);
        fixed += a[i] == (uint32_t)i;
    }
    ck_assert_int_lt(fixed, 10);   /* expected 1 fixed point */
    rt_rng_seed(&s, 10);
    for (int i = 0; i < N; i++)
        b[i] = (uint32_t)i;
    rt_shuffle(b, N, &s);
    ck_assert_int_ne(memcmp(a, b, sizeof a), 0);
    rt_shuffle(b, 0, &s);
    rt_shuffle(b, 1, &s);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("readers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, idx_plain_and_gzip);
    tcase_add_loop_test(tc, idx_bad_files, 0, (int)(sizeof bad_idx / sizeof bad_idx[0]));
    tcase_add_test(tc, idx_labels_bad);
    tcase_add_test(tc, idx_mutations);
    tcase_add_test(tc, cifar_read);
    tcase_add_test(tc, load_mnist_dir);
    tcase_add_test(tc, load_cifar_dirs);
    tcase_add_test(tc, fashion_mnist_real);
    suite_add_tcase(s, tc);
    tc = tcase_create("sets");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, synthetic);
    tcase_add_test(tc, batch_plain_and_flip);
    tcase_add_test(tc, batch_crop);
    tcase_add_test(tc, shuffle);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(data_suite)
