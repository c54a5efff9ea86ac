/* data.c — data sets: IDX (MNIST, Fashion-MNIST; plain or gzip), CIFAR-10/100
 * binary batches, a synthetic set; per-channel normalisation, mini-batches
 * with random crop and flip, seeded shuffling.
 *
 * Every reader loads the whole file into memory through zlib (which reads
 * plain files transparently), growing its buffer as bytes actually arrive:
 * a corrupt header can never make us allocate more than the file holds. */
#include "rt.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Largest file (uncompressed bytes) any reader accepts: CIFAR-10's whole
 * training set is 150 MB, MNIST's 47 MB. */
#define DATA_MAX_BYTES ((size_t)1 << 30)
/* Largest plausible image side and count in an IDX header. */
#define IDX_MAX_SIDE 4096u
#define IDX_MAX_COUNT 100000000u

#define CIFAR_PIXELS 3072
#define SYN_TRAIN 2048
#define SYN_TEST 512

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static void set_err(RtErr *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(RtErr *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

/* Read all of PATH (gunzipping when it starts with the gzip magic) into a
 * fresh buffer *buf of *len bytes. Errors name the file: missing,
 * unreadable, larger than DATA_MAX_BYTES, gzip stream or CRC errors. */
static int read_all(const char *path, uint8_t **buf, size_t *len, int *gzipped, RtErr *err)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        set_err(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        set_err(err, "%s: is a directory", path);
        close(fd);
        return -1;
    }
    uint8_t magic[2] = {0, 0};
    ssize_t got = pread(fd, magic, 2, 0);
    int is_gz = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    *gzipped = is_gz;
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        set_err(err, "%s: cannot open: %s", path, strerror(errno ? errno : ENOMEM));
        close(fd);
        return -1;
    }
    /* Plain files: the size is known; gzip: start at twice the compressed
     * size and double as needed. */
    size_t cap = (size_t)st.st_size * (is_gz ? 2 : 1) + 64;
    if (cap > DATA_MAX_BYTES + 1)
        cap = DATA_MAX_BYTES + 1;
    uint8_t *b = malloc(cap);
    if (!b) {
        set_err(err, "%s: out of memory", path);
        gzclose(gz);
        return -1;
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            if (cap > DATA_MAX_BYTES) {
                set_err(err, "%s: larger than %zu bytes, not a data file this runtime reads",
                        path, DATA_MAX_BYTES);
                goto fail;
            }
            size_t ncap = cap * 2 > DATA_MAX_BYTES + 1 ? DATA_MAX_BYTES + 1 : cap * 2;
            uint8_t *nb = realloc(b, ncap);
            if (!nb) {
                set_err(err, "%s: out of memory", path);
                goto fail;
            }
            b = nb;
            cap = ncap;
        }
        size_t want = cap - n;
        if (want > (1u << 30))
            want = 1u << 30;
        int r = gzread(gz, b + n, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(gz, &zerr);
            set_err(err, "%s: corrupt gzip stream (%s)", path,
                    zerr == Z_ERRNO ? strerror(errno) : m);
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    /* zlib reports a stream cut short at EOF only through gzerror. */
    int zerr = Z_OK;
    const char *m = gzerror(gz, &zerr);
    if (zerr != Z_OK) {
        set_err(err, "%s: %s gzip stream (%s)", path,
                zerr == Z_BUF_ERROR ? "truncated" : "corrupt", m);
        goto fail;
    }
    if (gzclose(gz) != Z_OK) {
        set_err(err, "%s: error closing the file", path);
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
fail:
    free(b);
    gzclose(gz);
    return -1;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Check an IDX header of ndims dims with the expected magic; *dims gets the
 * sizes and *payload the number of data bytes the header promises. */
static int idx_header(const char *path, const uint8_t *b, size_t len, uint32_t magic, int ndims,
                      uint32_t *dims, size_t *payload, RtErr *err)
{
    size_t hdr = 4 + 4 * (size_t)ndims;
    const char *what = ndims == 3 ? "IDX image file" : "IDX label file";
    if (len < 4) {
        set_err(err, "%s: truncated: %zu bytes, not even an IDX magic number", path, len);
        return -1;
    }
    uint32_t m = be32(b);
    if (m != magic) {
        set_err(err, "%s: wrong magic 0x%08x (expected 0x%08x for an %s)", path, m, magic, what);
        return -1;
    }
    if (len < hdr) {
        set_err(err, "%s: truncated header: %zu bytes, an %s header has %zu", path, len, what, hdr);
        return -1;
    }
    size_t total = 1;
    for (int i = 0; i < ndims; i++) {
        dims[i] = be32(b + 4 + 4 * i);
        uint32_t lim = i == 0 ? IDX_MAX_COUNT : IDX_MAX_SIDE;
        if (dims[i] == 0 || dims[i] > lim) {
            set_err(err, "%s: absurd dimension %u (dim %d; expected 1..%u)", path, dims[i], i, lim);
            return -1;
        }
        total *= dims[i];
        if (total > DATA_MAX_BYTES) {
            set_err(err, "%s: absurd dimensions: more than %zu bytes of data", path,
                    DATA_MAX_BYTES);
            return -1;
        }
    }
    if (len - hdr < total) {
        set_err(err, "%s: truncated: the header promises %zu data bytes, the file holds %zu",
                path, total, len - hdr);
        return -1;
    }
    if (len - hdr > total) {
        set_err(err, "%s: %zu bytes of trailing data after the %zu the header promises",
                path, len - hdr - total, total);
        return -1;
    }
    *payload = total;
    return 0;
}

int rt_idx_read_images(const char *path, float **x, int *n, int *h, int *w, RtErr *err)
{
    *x = NULL;
    uint8_t *b;
    size_t len, total;
    int gz;
    uint32_t d[3];
    if (read_all(path, &b, &len, &gz, err))
        return -1;
    if (idx_header(path, b, len, 0x00000803u, 3, d, &total, err)) {
        free(b);
        return -1;
    }
    float *out = malloc(total * sizeof *out);
    if (!out) {
        set_err(err, "%s: out of memory for %zu pixels", path, total);
        free(b);
        return -1;
    }
    const uint8_t *p = b + 16;
    for (size_t i = 0; i < total; i++)
        out[i] = (float)p[i] / 255.0f;
    free(b);
    *x = out;
    *n = (int)d[0];
    *h = (int)d[1];
    *w = (int)d[2];
    return 0;
}

int rt_idx_read_labels(const char *path, uint8_t **y, int *n, RtErr *err)
{
    *y = NULL;
    uint8_t *b;
    size_t len, total;
    int gz;
    uint32_t d[1];
    if (read_all(path, &b, &len, &gz, err))
        return -1;
    if (idx_header(path, b, len, 0x00000801u, 1, d, &total, err)) {
        free(b);
        return -1;
    }
    /* Shift the labels to the front of the buffer rather than copy. */
    memmove(b, b + 8, total);
    *y = b;
    *n = (int)d[0];
    return 0;
}

int rt_cifar_read(const char *path, int cifar100, float **x, uint8_t **y, int *n, RtErr *err)
{
    *x = NULL;
    *y = NULL;
    uint8_t *b;
    size_t len;
    int gz;
    if (read_all(path, &b, &len, &gz, err))
        return -1;
    size_t nlab = cifar100 ? 2 : 1, rec = nlab + CIFAR_PIXELS;
    const char *kind = cifar100 ? "CIFAR-100" : "CIFAR-10";
    if (len == 0 || len % rec != 0) {
        set_err(err, "%s: %zu bytes is not a whole number of %s records (%zu bytes each)%s",
                path, len, kind, rec, len > 0 && len < rec ? ": truncated" : "");
        free(b);
        return -1;
    }
    size_t cnt = len / rec;
    float *xs = malloc(cnt * CIFAR_PIXELS * sizeof *xs);
    uint8_t *ys = malloc(cnt);
    if (!xs || !ys) {
        set_err(err, "%s: out of memory", path);
        free(xs);
        free(ys);
        free(b);
        return -1;
    }
    int classes = cifar100 ? 100 : 10;
    for (size_t i = 0; i < cnt; i++) {
        const uint8_t *r = b + i * rec;
        uint8_t lab = r[nlab - 1];
        if (lab >= classes) {
            set_err(err, "%s: record %zu has label %d, %s has %d classes (wrong file type?)",
                    path, i, lab, kind, classes);
            free(xs);
            free(ys);
            free(b);
            return -1;
        }
        ys[i] = lab;
        for (int j = 0; j < CIFAR_PIXELS; j++)
            xs[i * CIFAR_PIXELS + (size_t)j] = (float)r[nlab + (size_t)j] / 255.0f;
    }
    free(b);
    *x = xs;
    *y = ys;
    *n = (int)cnt;
    return 0;
}

void rt_data_free(RtData *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

/* Keep the first `limit` images of d (0 = all). */
static void data_truncate(RtData *d, int limit)
{
    if (limit <= 0 || limit >= d->n)
        return;
    size_t per = (size_t)d->c * d->h * d->w;
    d->n = limit;
    float *nx = realloc(d->x, (size_t)limit * per * sizeof *nx);
    if (nx)
        d->x = nx;
    uint8_t *ny = realloc(d->y, (size_t)limit);
    if (ny)
        d->y = ny;
}

/* Path of an IDX file in dir: the .gz when present, else the plain name;
 * when neither exists, the .gz name (so the error names it). */
static void idx_path(char *out, size_t cap, const char *dir, const char *base)
{
    snprintf(out, cap, "%s/%s", dir, base);
    if (access(out, F_OK) == 0)
        return;
    snprintf(out, cap, "%s/%s.gz", dir, base);
}

/* One split (train or t10k) of an IDX data set. */
static int load_idx_split(RtData *d, const char *dir, const char *split, int classes, RtErr *err)
{
    char ipath[4096], lpath[4096], base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
    idx_path(ipath, sizeof ipath, dir, base);
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
    idx_path(lpath, sizeof lpath, dir, base);
    int n, h, w, nl;
    float *x;
    uint8_t *y;
    if (rt_idx_read_images(ipath, &x, &n, &h, &w, err))
        return -1;
    if (rt_idx_read_labels(lpath, &y, &nl, err)) {
        free(x);
        return -1;
    }
    if (nl != n) {
        set_err(err, "%s: %d labels for the %d images of %s", lpath, nl, n, ipath);
        free(x);
        free(y);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (y[i] >= classes) {
            set_err(err, "%s: label %d of image %d is not below %d", lpath, y[i], i, classes);
            free(x);
            free(y);
            return -1;
        }
    d->n = n;
    d->c = 1;
    d->h = h;
    d->w = w;
    d->classes = classes;
    d->x = x;
    d->y = y;
    return 0;
}

/* Concatenate CIFAR batch files into d. */
static int load_cifar_files(RtData *d, const char *dir, const char *const *names, int nfiles,
                            int cifar100, RtErr *err)
{
    float *xs[8] = {0};
    uint8_t *ys[8] = {0};
    int ns[8] = {0}, total = 0, rc = -1;
    char path[4096];
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rt_cifar_read(path, cifar100, &xs[i], &ys[i], &ns[i], err))
            goto out;
        total += ns[i];
    }
    d->x = malloc((size_t)total * CIFAR_PIXELS * sizeof *d->x);
    d->y = malloc((size_t)total);
    if (!d->x || !d->y) {
        set_err(err, "%s: out of memory", path);
        rt_data_free(d);
        goto out;
    }
    size_t at = 0;
    for (int i = 0; i < nfiles; i++) {
        memcpy(d->x + at * CIFAR_PIXELS, xs[i], (size_t)ns[i] * CIFAR_PIXELS * sizeof *d->x);
        memcpy(d->y + at, ys[i], (size_t)ns[i]);
        at += (size_t)ns[i];
    }
    d->n = total;
    d->c = 3;
    d->h = 32;
    d->w = 32;
    d->classes = cifar100 ? 100 : 10;
    rc = 0;
out:
    for (int i = 0; i < nfiles; i++) {
        free(xs[i]);
        free(ys[i]);
    }
    return rc;
}

/* A learnable synthetic set: each class has a smooth random template
 * (4x4-pixel blocks, so random crops keep it recognisable); an image is
 * its class template plus Gaussian noise, clipped to [0,1]. Templates,
 * training and test images come from three generators derived from the
 * seed, so the first N training images do not depend on the limit. */
static int load_synthetic(RtData *tr, RtData *te, int limit, int test_limit, int c, int h, int w,
                          int classes, uint64_t seed, RtErr *err)
{
    if (c <= 0 || h <= 0 || w <= 0 || classes <= 0 || classes > 256 ||
        (size_t)c * h * w > ((size_t)1 << 24)) {
        set_err(err, "synthetic: bad shape %dx%dx%d with %d classes", c, h, w, classes);
        return -1;
    }
    size_t per = (size_t)c * h * w;
    float *tmpl = malloc((size_t)classes * per * sizeof *tmpl);
    if (!tmpl) {
        set_err(err, "synthetic: out of memory");
        return -1;
    }
    RtRng r;
    rt_rng_seed(&r, seed ^ 0x5e7a7e3a11ULL);
    int bh = (h + 3) / 4, bw = (w + 3) / 4;
    for (int k = 0; k < classes; k++)
        for (int ch = 0; ch < c; ch++) {
            float blocks[64 * 64];
            int nb = bh * bw > 64 * 64 ? 64 * 64 : bh * bw;
            for (int i = 0; i < nb; i++)
                blocks[i] = (float)rt_rng_uniform(&r);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    int bi = (y / 4) * bw + x / 4;
                    tmpl[((size_t)k * c + ch) * h * w + (size_t)y * w + x] = blocks[bi % nb];
                }
        }
    RtData *sets[2] = {tr, te};
    int sizes[2] = {SYN_TRAIN, SYN_TEST};
    int lims[2] = {limit, test_limit};
    for (int s = 0; s < 2; s++) {
        RtData *d = sets[s];
        int n = lims[s] > 0 && lims[s] < sizes[s] ? lims[s] : sizes[s];
        d->x = malloc((size_t)n * per * sizeof *d->x);
        d->y = malloc((size_t)n);
        if (!d->x || !d->y) {
            set_err(err, "synthetic: out of memory");
            rt_data_free(tr);
            rt_data_free(te);
            free(tmpl);
            return -1;
        }
        d->n = n;
        d->c = c;
        d->h = h;
        d->w = w;
        d->classes = classes;
        rt_rng_seed(&r, seed ^ (s == 0 ? 0x7a1a5eedULL : 0x7e575eedULL));
        for (int i = 0; i < n; i++) {
            int k = (int)rt_rng_below(&r, (uint32_t)classes);
            d->y[i] = (uint8_t)k;
            const float *t = tmpl + (size_t)k * per;
            float *o = d->x + (size_t)i * per;
            for (size_t j = 0; j < per; j++) {
                float v = t[j] + 0.35f * (float)rt_rng_normal(&r);
                o[j] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
        }
    }
    free(tmpl);
    return 0;
}

/* Per-channel mean and std of the training set, in double, rounded to
 * float (what a checkpoint stores). A constant channel gets std 1. */
static int norm_compute(RtNorm *n, const RtData *tr, RtErr *err)
{
    if (tr->c > RT_NORM_MAX_C) {
        set_err(err, "%d input channels, the normalisation supports at most %d", tr->c,
                RT_NORM_MAX_C);
        return -1;
    }
    size_t hw = (size_t)tr->h * tr->w;
    n->c = tr->c;
    for (int ch = 0; ch < tr->c; ch++) {
        double s = 0.0, s2 = 0.0;
        for (int i = 0; i < tr->n; i++) {
            const float *p = tr->x + ((size_t)i * tr->c + ch) * hw;
            double a = 0.0, a2 = 0.0;
            for (size_t j = 0; j < hw; j++) {
                a += (double)p[j];
                a2 += (double)p[j] * (double)p[j];
            }
            s += a;
            s2 += a2;
        }
        double cnt = (double)tr->n * (double)hw;
        double mean = cnt > 0 ? s / cnt : 0.0, var = cnt > 0 ? s2 / cnt - mean * mean : 0.0;
        n->mean[ch] = (float)mean;
        n->std[ch] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    }
    return 0;
}

/* x = (x - mean) / std per channel, in float: the same operation the
 * emitted inference code and PyTorch's Normalize perform. */
static void norm_apply(const RtNorm *n, RtData *d)
{
    if (!d || !d->x)
        return;
    size_t hw = (size_t)d->h * d->w;
    for (int i = 0; i < d->n; i++)
        for (int ch = 0; ch < d->c; ch++) {
            float *p = d->x + ((size_t)i * d->c + ch) * hw;
            float m = n->mean[ch], s = n->std[ch];
            for (size_t j = 0; j < hw; j++)
                p[j] = (p[j] - m) / s;
        }
}

int rt_norm_format(const RtNorm *n, char *mean, char *std, size_t cap)
{
    size_t a = 0, b = 0;
    if (cap == 0)
        return -1;
    mean[0] = std[0] = 0;
    for (int ch = 0; ch < n->c; ch++) {
        int x = snprintf(mean + a, cap - a, "%s%.9g", ch ? "," : "", (double)n->mean[ch]);
        int y = snprintf(std + b, cap - b, "%s%.9g", ch ? "," : "", (double)n->std[ch]);
        if (x < 0 || y < 0 || (size_t)x >= cap - a || (size_t)y >= cap - b)
            return -1;
        a += (size_t)x;
        b += (size_t)y;
    }
    return 0;
}

/* c comma-separated finite floats from s into v; -1 with *why. */
static int parse_floats(float *v, int c, const char *s, const char *what, const char **why)
{
    const char *p = s;
    for (int i = 0; i < c; i++) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        int last = i == c - 1;
        if (end == p || errno || !isfinite((float)x) || *end != (last ? 0 : ',')) {
            *why = what;
            return -1;
        }
        v[i] = (float)x;
        p = end + (*end == ',');
    }
    return 0;
}

int rt_norm_parse(RtNorm *n, int c, const char *mean, const char *std, const char **why)
{
    const char *unused;
    if (!why)
        why = &unused;
    if (c <= 0 || c > RT_NORM_MAX_C) {
        *why = "unsupported number of channels";
        return -1;
    }
    if (!mean || !std) {
        *why = "input_mean or input_std is missing";
        return -1;
    }
    if (parse_floats(n->mean, c, mean, "input_mean is not one finite number per input channel",
                     why) ||
        parse_floats(n->std, c, std, "input_std is not one finite number per input channel",
                     why))
        return -1;
    for (int i = 0; i < c; i++)
        if (!(n->std[i] > 0.0f)) {
            *why = "input_std holds a value that is not positive";
            return -1;
        }
    n->c = c;
    return 0;
}

int rt_data_load(RtData *train, RtData *test, const char *spec, int limit, int test_limit,
                 int c, int h, int w, int classes, uint64_t seed, RtErr *err)
{
    RtNorm n = {0};
    return rt_data_load_norm(train, test, spec, limit, test_limit, c, h, w, classes, seed, &n,
                             err);
}

int rt_data_load_norm(RtData *train, RtData *test, const char *spec, int limit, int test_limit,
                      int c, int h, int w, int classes, uint64_t seed, RtNorm *norm, RtErr *err)
{
    RtData scratch;
    int want_train = train != NULL;
    if (!want_train) {
        if (!norm || norm->c <= 0) {
            set_err(err, "internal error: the test set alone needs a given normalisation");
            return -1;
        }
        train = &scratch;
    }
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (!spec)
        spec = "fashion-mnist";
    const char *colon = strchr(spec, ':');
    size_t klen = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *dir = colon ? colon + 1 : NULL;
    char kind[32];
    if (klen >= sizeof kind)
        klen = sizeof kind - 1;
    memcpy(kind, spec, klen);
    kind[klen] = 0;
    if (dir && !*dir) {
        set_err(err, "--data %s: empty directory after ':'", spec);
        return -1;
    }
    const char *shown = NULL; /* the file named in a shape mismatch */
    char shownbuf[4096];
    if (!strcmp(kind, "synthetic")) {
        if (dir) {
            set_err(err, "--data %s: synthetic takes no directory", spec);
            return -1;
        }
        if (load_synthetic(train, test, limit, test_limit, c, h, w, classes, seed, err))
            return -1;
    } else if (!strcmp(kind, "fashion-mnist") || !strcmp(kind, "mnist")) {
        if (!dir && !strcmp(kind, "mnist")) {
            set_err(err, "--data mnist needs a directory: mnist:DIR");
            return -1;
        }
        int dflt = !dir;
        if (!dir)
            dir = FASHION_DIR;
        if ((want_train && load_idx_split(train, dir, "train", 10, err)) ||
            load_idx_split(test, dir, "t10k", 10, err)) {
            rt_data_free(train);
            if (dflt && err && strstr(err->msg, strerror(ENOENT))) {
                size_t l = strlen(err->msg);
                snprintf(err->msg + l, sizeof err->msg - l,
                         " (install the Debian package dataset-fashion-mnist, or pass "
                         "--data fashion-mnist:DIR)");
            }
            return -1;
        }
        idx_path(shownbuf, sizeof shownbuf, dir,
                 want_train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte");
        shown = shownbuf;
    } else if (!strcmp(kind, "cifar10") || !strcmp(kind, "cifar100")) {
        int c100 = !strcmp(kind, "cifar100");
        if (!dir) {
            set_err(err, "--data %s needs a directory: %s:DIR", kind, kind);
            return -1;
        }
        static const char *const c10tr[] = {"data_batch_1.bin", "data_batch_2.bin",
                                            "data_batch_3.bin", "data_batch_4.bin",
                                            "data_batch_5.bin"};
        static const char *const c10te[] = {"test_batch.bin"};
        static const char *const c100tr[] = {"train.bin"};
        static const char *const c100te[] = {"test.bin"};
        if (want_train &&
            load_cifar_files(train, dir, c100 ? c100tr : c10tr, c100 ? 1 : 5, c100, err))
            return -1;
        if (load_cifar_files(test, dir, c100 ? c100te : c10te, 1, c100, err)) {
            rt_data_free(train);
            return -1;
        }
        snprintf(shownbuf, sizeof shownbuf, "%s/%s", dir,
                 want_train ? (c100 ? c100tr[0] : c10tr[0]) : (c100 ? c100te[0] : c10te[0]));
        shown = shownbuf;
    } else {
        set_err(err, "--data %s: unknown data set (expected fashion-mnist, fashion-mnist:DIR, "
                "mnist:DIR, cifar10:DIR, cifar100:DIR or synthetic)", spec);
        return -1;
    }
    if (!want_train)   /* the synthetic set makes both; the test set alone is wanted */
        rt_data_free(train);
    const RtData *ref = want_train ? train : test;
    if (shown && (ref->c != c || ref->h != h || ref->w != w || ref->classes != classes ||
                  (want_train && (test->h != train->h || test->w != train->w)))) {
        if (ref->c == c && ref->classes == classes && ref->h == h && ref->w == w)
            set_err(err, "%s: training images are %dx%d, test images %dx%d", shown, train->h,
                    train->w, test->h, test->w);
        else
            set_err(err, "%s: the network expects %dx%dx%d images in %d classes, %s is "
                    "%dx%dx%d in %d classes", shown, c, h, w, classes, kind, ref->c,
                    ref->h, ref->w, ref->classes);
        rt_data_free(train);
        rt_data_free(test);
        return -1;
    }
    data_truncate(train, limit);
    data_truncate(test, test_limit);
    RtNorm local = {0};
    if (!norm)
        norm = &local;
    if (norm->c > 0) {
        if (norm->c != ref->c) {
            set_err(err, "the input normalisation has %d channels, %s has %d", norm->c, spec,
                    ref->c);
            rt_data_free(train);
            rt_data_free(test);
            return -1;
        }
    } else if (norm_compute(norm, train, err)) {
        rt_data_free(train);
        rt_data_free(test);
        return -1;
    }
    norm_apply(norm, train);
    norm_apply(norm, test);
    return 0;
}

void rt_data_batch(float *out, uint8_t *labels, const RtData *d, const uint32_t *idx, int B,
                   int crop_pad, int flip, RtRng *rng)
{
    int C = d->c, H = d->h, W = d->w;
    size_t per = (size_t)C * H * W;
    for (int b = 0; b < B; b++) {
        const float *src = d->x + (size_t)idx[b] * per;
        float *dst = out + (size_t)b * per;
        labels[b] = d->y[idx[b]];
        int dy = 0, dx = 0, fl = 0;
        if (crop_pad > 0) {
            uint32_t span = 2u * (uint32_t)crop_pad + 1u;
            dy = (int)rt_rng_below(rng, span) - crop_pad;
            dx = (int)rt_rng_below(rng, span) - crop_pad;
        }
        if (flip)
            fl = (int)rt_rng_below(rng, 2);
        if (!dy && !dx && !fl) {
            memcpy(dst, src, per * sizeof *dst);
            continue;
        }
        /* out(y, x) = in(y + dy, xs + dx), xs mirrored when flipping; zero
         * outside the image (the padding). */
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < H; y++) {
                float *o = dst + ((size_t)ch * H + y) * W;
                int sy = y + dy;
                if (sy < 0 || sy >= H) {
                    memset(o, 0, (size_t)W * sizeof *o);
                    continue;
                }
                const float *row = src + ((size_t)ch * H + sy) * W;
                for (int x = 0; x < W; x++) {
                    int sx = (fl ? W - 1 - x : x) + dx;
                    o[x] = sx >= 0 && sx < W ? row[sx] : 0.0f;
                }
            }
    }
}

void rt_shuffle(uint32_t *idx, int n, RtRng *rng)
{
    for (int i = n - 1; i > 0; i--) {
        uint32_t j = rt_rng_below(rng, (uint32_t)i + 1u);
        uint32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
