/* test_infer.c — optc emit --inference, end to end.
 *
 * Each network of the table is built with $OPTC_BUILD/optc build, trained
 * briefly (--limit 256, one epoch), evaluated with `./net eval --logits`,
 * emitted as standalone inference code and compiled with
 * `-std=c99 -pedantic -Wall -Wextra -Werror -Wdouble-promotion`; a harness
 * runs NET_predict on the same raw test images (pixels in [0, 1]): every
 * predicted class must equal eval's and every logit be within 1e-4. The
 * object files must reference no allocator, BLAS or OpenMP symbol. With
 * random weights, the files must compile with arm-none-eabi-gcc for a
 * Cortex-M4 (skipped, and said so, where that compiler is absent).
 * Fashion-MNIST networks use the Debian data set; 3x32x32 networks a small
 * CIFAR-format set this test writes.
 *
 * The suite runs a subset on 200 test images; OPTC_INFER_ALL=1 (make
 * infer-check) runs every example network on the whole test set
 * (OPTC_INFER_IMAGES=N: the first N) and prints sizes and latencies. The checkpoint's input_mean/input_std are used and
 * checked against the normalisation computed here as the data loader does
 * (a checkpoint without them gets it through --norm). Run from the project
 * root. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgutil.h"
#include "cli.h"
#include "rt.h"
#include "testutil.h"
#include "tmain.h"

#define FASHION "/usr/share/datasets/fashion-mnist"
#define OPS_SPEC "tests/infer/ops.opt"
#define LIMIT 256           /* training images */
#define SUITE_TEST 200      /* test images in the suite */
#define TOL 1e-4

static int all_mode(void)
{
    const char *s = getenv("OPTC_INFER_ALL");
    return s && *s && strcmp(s, "0") != 0;
}

/* Run cmd (printf-style) and fail the test, with its output, unless it exits 0. */
static char *must(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *must(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int rc = run(cmd, &out);
    ck_assert_msg(rc == 0, "%s: status %d\n%s", cmd, rc, tail(out));
    return out;
}

static int have(const char *tool)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s", tool);
    return run(cmd, NULL) == 0;
}

static void write_floats(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(x, sizeof *x, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static float *read_floats(const char *path, size_t n)
{
    size_t len = 0;
    char *b = tu_slurp(path, &len);
    ck_assert_msg(b != NULL, "cannot read %s", path);
    ck_assert_msg(len == n * sizeof(float), "%s: %zu bytes, expected %zu", path, len,
                  n * sizeof(float));
    float *x = malloc(n * sizeof *x + 1);
    ck_assert_ptr_nonnull(x);
    memcpy(x, b, n * sizeof *x);
    free(b);
    return x;
}

/* --- data ------------------------------------------------------------------ */

/* Raw images in [0, 1]: the training set's first `limit` and the test
 * set's first ntest, C x H x W each. */
typedef struct {
    int c, hw, ntrain, ntest;
    float *train, *test;
    char spec[600];         /* --data */
} Data;

static void data_fashion(Data *d, int ntest)
{
    RtErr err;
    int n, h, w;
    float *x;
    ck_assert_msg(rt_idx_read_images(FASHION "/train-images-idx3-ubyte.gz", &x, &n, &h, &w,
                                     &err) == 0, "%s", err.msg);
    d->c = 1;
    d->hw = h * w;
    d->ntrain = LIMIT;
    d->train = x;
    ck_assert_msg(rt_idx_read_images(FASHION "/t10k-images-idx3-ubyte.gz", &x, &n, &h, &w,
                                     &err) == 0, "%s", err.msg);
    d->ntest = ntest > 0 && ntest < n ? ntest : n;
    d->test = x;
    snprintf(d->spec, sizeof d->spec, "fashion-mnist");
}

/* A CIFAR-10-format set in dir: 5 x 64 training and 400 test records of
 * class-dependent colour blocks plus noise. */
static void data_cifar(Data *d, const char *dir, int ntest)
{
    const int per = 3 * 32 * 32, ntr = 64;
    d->c = 3;
    d->hw = 32 * 32;
    d->ntrain = LIMIT < 5 * ntr ? LIMIT : 5 * ntr;    /* what --limit keeps */
    d->ntest = ntest > 0 && ntest < 400 ? ntest : 400;
    d->train = malloc((size_t)5 * ntr * per * sizeof(float));
    d->test = malloc((size_t)400 * per * sizeof(float));
    ck_assert(d->train && d->test);
    RtRng r;
    rt_rng_seed(&r, 42);
    unsigned char rec[1 + 3 * 32 * 32];
    for (int file = 0; file < 6; file++) {
        char path[700];
        if (file < 5)
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, file + 1);
        else
            snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        int cnt = file < 5 ? ntr : 400;
        for (int i = 0; i < cnt; i++) {
            int k = (int)rt_rng_below(&r, 10);
            rec[0] = (unsigned char)k;
            for (int j = 0; j < per; j++) {
                int ch = j / 1024, y = (j % 1024) / 32, x = j % 32;
                double base = ((y / 8 + x / 8 + ch + k) % 4) * 60.0 + 20.0 * k / 10.0;
                double v = base + 40.0 * rt_rng_normal(&r);
                rec[1 + j] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
            ck_assert_uint_eq(fwrite(rec, sizeof rec, 1, f), 1);
            float *dst = file < 5 ? d->train + ((size_t)file * ntr + i) * per
                                  : d->test + (size_t)i * per;
            for (int j = 0; j < per; j++)
                dst[j] = (float)rec[1 + j] / 255.0f;
        }
        ck_assert_int_eq(fclose(f), 0);
    }
    snprintf(d->spec, sizeof d->spec, "cifar10:%s", dir);
}

/* The normalisation the data loader computes from the training images, as
 * --norm text: per channel, mean and std over every pixel in double. */
static void data_norm(const Data *d, char *out, size_t cap, double *mean, double *sd)
{
    char ms[512] = "", ss[512] = "";
    for (int ch = 0; ch < d->c; ch++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < d->ntrain; i++) {
            const float *p = d->train + ((size_t)i * d->c + ch) * d->hw;
            double a = 0, a2 = 0;
            for (int j = 0; j < d->hw; j++) {
                a += (double)p[j];
                a2 += (double)p[j] * (double)p[j];
            }
            s += a;
            s2 += a2;
        }
        double cnt = (double)d->ntrain * d->hw, m = s / cnt, var = s2 / cnt - m * m;
        mean[ch] = m;
        sd[ch] = var > 1e-12 ? sqrt(var) : 1.0;
        snprintf(ms + strlen(ms), sizeof ms - strlen(ms), "%s%.9g", ch ? "," : "", m);
        snprintf(ss + strlen(ss), sizeof ss - strlen(ss), "%s%.9g", ch ? "," : "", sd[ch]);
    }
    snprintf(out, cap, "%s:%s", ms, ss);
}

/* --- compiling the emitted files ------------------------------------------------ */

static const char strict[] = "-std=c99 -pedantic -Wall -Wextra -Werror -Wdouble-promotion "
                             "-Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wcast-qual "
                             "-Wvla -Wundef";

/* No allocator, BLAS, OpenMP or threads in the objects. */
static void check_symbols(const char *objs)
{
    char *syms = must("nm %s", objs);
    static const char *const banned[] = { " malloc", " calloc", " realloc", " free",
                                          "cblas", "openblas", "omp_", "GOMP", "pthread" };
    for (size_t i = 0; i < sizeof banned / sizeof *banned; i++)
        ck_assert_msg(strstr(syms, banned[i]) == NULL, "%s references '%s':\n%s", objs,
                      banned[i] + (banned[i][0] == ' '), tail(syms));
    free(syms);
}

/* Compile NET.c and NET_weights.c for a Cortex-M4; text/data/bss into *sz
 * (size's Berkeley columns, summed). Returns 0, or -1 when the cross
 * compiler is absent (a skip). */
static int arm_build(const char *inf, const char *net, long sz[3])
{
    if (!have("arm-none-eabi-gcc") || !have("arm-none-eabi-size"))
        return -1;
    free(must("cd %s && arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard "
              "-mfpu=fpv4-sp-d16 -O2 %s -c %s.c -o arm_%s.o && arm-none-eabi-gcc "
              "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 %s -c "
              "%s_weights.c -o arm_%s_weights.o", inf, strict, net, net, strict, net, net));
    char objs[1400];
    snprintf(objs, sizeof objs, "%s/arm_%s.o %s/arm_%s_weights.o", inf, net, inf, net);
    check_symbols(objs);
    char *out = must("arm-none-eabi-size %s", objs);
    sz[0] = sz[1] = sz[2] = 0;
    /* "   text    data     bss     dec     hex filename" then one line per object */
    for (char *line = strchr(out, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        long t, dt, b;
        if (sscanf(line + 1, "%ld %ld %ld", &t, &dt, &b) == 3) {
            sz[0] += t;
            sz[1] += dt;
            sz[2] += b;
        }
    }
    free(out);
    return 0;
}

/* --- the networks -------------------------------------------------------------- */

typedef struct {
    const char *spec, *net;
    int cifar;          /* 3x32x32 on the CIFAR-format set */
    int suite;          /* in the suite's subset (else only with OPTC_INFER_ALL) */
} Case;

static const Case cases[] = {
    { "examples/resnet.opt", "resnet20_fmnist", 0, 1 },
    { "examples/lm.opt", "lm20_fmnist", 0, 1 },
    { "examples/momentum.opt", "momentum20_fmnist", 0, 1 },
    { "examples/theory.opt", "theory_hb_fmnist", 0, 1 },
    { OPS_SPEC, "ops_fmnist", 0, 1 },
    { OPS_SPEC, "ops_cifar", 1, 1 },
    { OPS_SPEC, "ops_acts", 0, 1 },
    { OPS_SPEC, "ops_exact_elu", 0, 1 },
    { "examples/heavy_ball.opt", "hb20_fmnist", 0, 0 },
    { "examples/nesterov.opt", "nesterov20_fmnist", 0, 0 },
    { "examples/theory.opt", "theory_gd_fmnist", 0, 0 },
    { "examples/densenet.opt", "densenet_bc100_fmnist", 0, 0 },
    { "examples/resnet.opt", "resnet20_cifar", 1, 0 },
    { "examples/heavy_ball.opt", "hb20_cifar", 1, 0 },
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* The cases a run takes: the suite's subset (the table's first rows), or
 * every one with OPTC_INFER_ALL. */
static int ncases(void)
{
    int n = 0;
    while (n < NCASES && (cases[n].suite || all_mode()))
        n++;
    return n;
}

static int argmax(const float *v, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        if (v[j] > v[b])
            b = j;
    return b;
}

static double field(const char *s, const char *key)
{
    const char *p = s ? strstr(s, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : -1;
}

START_TEST(matches_eval)
{
    const Case *c = &cases[_i];
    int all = all_mode();
    if (tu_sanitized() && strcmp(c->net, "ops_fmnist") != 0)
        TEST_SKIP("%s: not under the sanitizers (ops_fmnist runs there)", c->net);
    if (!c->cifar && access(FASHION "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
        TEST_SKIP("%s: no Fashion-MNIST in " FASHION " (make deps)", c->net);
    char dir[512], inf[600];
    tu_tmpdir(dir, sizeof dir, "infer");
    snprintf(inf, sizeof inf, "%s/inf", dir);
    const char *B = tu_build_dir();
    Data d = { 0 };
    /* OPTC_INFER_IMAGES=N: the first N test images (default: 200 in the
     * suite, all of them with OPTC_INFER_ALL). */
    const char *ni = getenv("OPTC_INFER_IMAGES");
    int ntest = ni && *ni ? atoi(ni) : all ? 0 : SUITE_TEST;
    if (c->cifar)
        data_cifar(&d, dir, ntest);
    else
        data_fashion(&d, ntest);
    char norm[1200];
    double mean[3], sd[3];
    data_norm(&d, norm, sizeof norm, mean, sd);

    /* Build, train briefly, evaluate with the logits written out. */
    free(must("%s/optc build %s -n %s -o %s/net", B, c->spec, c->net, dir));
    free(must("%s/net train --data '%s' --limit %d --epochs 1 --batch 32 --threads 1 --seed 1 "
              "--test-limit %d --out %s/run --quiet", dir, d.spec, LIMIT, d.ntest, dir));
    char *ev = must("%s/net eval --weights %s/run/last.safetensors --data '%s' --threads 1 "
                    "--test-limit %d --logits %s/ref.f32", dir, dir, d.spec, d.ntest, dir);
    free(ev);
    /* eval's CPU time per image, at batch 1 and at its default batch: the
     * children's user + system time of a run without --logits. */
    double eval_ms[2];
    for (int k = 0; k < 2; k++) {
        int n = d.ntest < 500 ? d.ntest : 500;
        struct rusage r0, r1;
        getrusage(RUSAGE_CHILDREN, &r0);
        free(must("%s/net eval --weights %s/run/last.safetensors --data '%s' --threads 1 "
                  "--test-limit %d%s", dir, dir, d.spec, n, k ? "" : " --batch 1"));
        getrusage(RUSAGE_CHILDREN, &r1);
        double s = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                   (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                   1e-6 * (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec +
                                   r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
        eval_ms[k] = 1e3 * s / n;
    }

    /* The checkpoint's own normalisation when it has one (and it must be
     * the loader's), else --norm. */
    char ck[700], normarg[1300] = "";
    snprintf(ck, sizeof ck, "%s/run/last.safetensors", dir);
    RtErr err;
    RtStFile *f = rt_st_open(ck, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    const char *ms = rt_st_meta(f, "input_mean"), *ss = rt_st_meta(f, "input_std");
    if (ms && ss) {
        char *p = (char *)(uintptr_t)ms, *q = (char *)(uintptr_t)ss;
        for (int ch = 0; ch < d.c; ch++) {
            double m = strtod(p, &p), s = strtod(q, &q);
            ck_assert_msg(fabs(m - mean[ch]) < 1e-6 && fabs(s - sd[ch]) < 1e-6,
                          "%s: stored normalisation %s / %s, the loader's %s", ck, ms, ss, norm);
            p += *p == ',';
            q += *q == ',';
        }
    } else {
        snprintf(normarg, sizeof normarg, "--norm %s", norm);
    }
    rt_st_close(f);
    free(must("%s/optc emit %s -n %s --inference --weights %s %s -o %s", B, c->spec, c->net, ck,
              normarg, inf));

    /* Strict C99, then the harness on the same raw images. */
    size_t img = (size_t)d.c * d.hw;
    char upper[64];
    snprintf(upper, sizeof upper, "%s", c->net);
    for (char *u = upper; *u; u++)
        if (*u >= 'a' && *u <= 'z')
            *u = (char)(*u - 'a' + 'A');
    free(must("cd %s && cc %s -O2 -c %s.c && cc %s -O2 -c %s_weights.c", inf, strict, c->net,
              strict, c->net));
    char objs[1400];
    snprintf(objs, sizeof objs, "%s/%s.o %s/%s_weights.o", inf, c->net, inf, c->net);
    check_symbols(objs);
    /* The harness runs the code built as a deployment would: -O3 for this CPU. */
    free(must("cd %s && cc %s -O3 -march=native -c %s.c -o fast_%s.o", inf, strict, c->net,
              c->net));
    free(must("cc -std=c99 -O2 -Wall -Werror -DNET_H='\"%s/%s.h\"' -DPREDICT=%s_predict "
              "-DIMG=%s_INPUT_C*%s_INPUT_H*%s_INPUT_W -DCLASSES=%s_CLASSES "
              "tests/infer/harness.c %s/fast_%s.o %s/%s_weights.o -lm -o %s/harness", inf,
              c->net, c->net, upper, upper, upper, upper, inf, c->net, inf, c->net, dir));
    char px[700];
    snprintf(px, sizeof px, "%s/pixels.f32", dir);
    write_floats(px, d.test, (size_t)d.ntest * img);
    char *hout = must("%s/harness %s %s/mine.f32 %d", dir, px, dir, d.ntest);
    double ms_img = field(hout, "ms_per_image=");
    free(hout);

    char path[700];
    snprintf(path, sizeof path, "%s/ref.f32", dir);
    float *ref = read_floats(path, (size_t)d.ntest * 10);
    snprintf(path, sizeof path, "%s/mine.f32", dir);
    float *mine = read_floats(path, (size_t)d.ntest * 10);
    double worst = 0, big = 0;
    int differ = 0;
    for (int i = 0; i < d.ntest; i++) {
        differ += argmax(ref + i * 10, 10) != argmax(mine + i * 10, 10);
        for (int k = 0; k < 10; k++) {
            double e = fabs((double)ref[i * 10 + k] - (double)mine[i * 10 + k]);
            ck_assert_msg(isfinite(e), "%s: image %d logit %d not finite", c->net, i, k);
            if (e > worst)
                worst = e;
            if (fabs((double)ref[i * 10 + k]) > big)
                big = fabs((double)ref[i * 10 + k]);
        }
    }
    printf("test_infer: %s: %d images, max |logit - eval's| %.3g (max |logit| %.3g), %d "
           "classes differ; CPU ms/image: predict %.3f (-O3 -march=native), eval %.3f at "
           "batch 1, %.3f at its batch (1 thread, whole run)\n", c->net, d.ntest, worst, big,
           differ, ms_img, eval_ms[0], eval_ms[1]);
    fflush(stdout);
    ck_assert_msg(differ == 0, "%s: %d of %d predicted classes differ from eval's", c->net,
                  differ, d.ntest);
    ck_assert_msg(worst <= TOL, "%s: logits differ from eval's by %g > %g", c->net, worst, TOL);
    free(ref);
    free(mine);
    free(d.train);
    free(d.test);
    if (getenv("OPTC_TEST_KEEP") && *getenv("OPTC_TEST_KEEP"))
        printf("test_infer: kept %s\n", dir);
    else
        tu_rmrf(dir);
}
END_TEST

/* --- without training: the files, the folding and the errors -------------------- */

/* A checkpoint of g with small random values (running variances positive),
 * with the normalisation metadata when meta is set. */
static void random_ckpt(const IrGraph *g, const char *path, int meta)
{
    RtStEntry *t = calloc((size_t)g->nparams, sizeof *t);
    ck_assert_ptr_nonnull(t);
    RtRng r;
    rt_rng_seed(&r, 3);
    for (int i = 0; i < g->nparams; i++) {
        const IrParam *p = &g->params[i];
        float *x = malloc(p->numel * sizeof *x);
        ck_assert_ptr_nonnull(x);
        for (size_t j = 0; j < p->numel; j++)
            x[j] = p->kind == PK_BN_VAR ? 0.5f + (float)rt_rng_uniform(&r)
                                        : (float)(0.2 * rt_rng_normal(&r));
        t[i] = (RtStEntry){ p->name, p->ndim, { p->dims[0], p->dims[1], p->dims[2], p->dims[3] },
                            x };
    }
    char ms[256] = "", ss[256] = "";
    for (int c = 0; c < g->input.c; c++) {
        strcat(ms, c ? ",0.25" : "0.25");
        strcat(ss, c ? ",0.5" : "0.5");
    }
    const char *kv[] = { "net", g->name, "input_mean", ms, "input_std", ss };
    RtErr err;
    ck_assert_msg(rt_st_save(path, t, g->nparams, kv, meta ? 3 : 1, &err) == 0, "%s", err.msg);
    for (int i = 0; i < g->nparams; i++)
        free((void *)(uintptr_t)t[i].data);
    free(t);
}

static IrGraph *load(Arena *a, const char *spec, const char *net)
{
    int nerr = 0;
    Spec *s = fe_load(a, spec, NULL, 0, stderr, &nerr);
    ck_assert_ptr_nonnull(s);
    IrGraph *g = fe_unroll(a, s, net, stderr, &nerr);
    ck_assert_ptr_nonnull(g);
    return g;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* emit_infer on a request; its diagnostics into *msg. */
static int emit(const EmitInferRequest *rq, char **msg)
{
    char tmpl[] = "/tmp/optc-infer-diag-XXXXXX";
    int fd = mkstemp(tmpl);
    ck_assert_int_ge(fd, 0);
    FILE *diag = fdopen(fd, "w+");
    ck_assert_ptr_nonnull(diag);
    int rc = emit_infer(rq, diag);
    fclose(diag);
    *msg = tu_slurp(tmpl, NULL);
    remove(tmpl);
    return rc;
}

START_TEST(files_and_folding)
{
    char dir[512], ck[600], out[600], path[700];
    tu_tmpdir(dir, sizeof dir, "inferf");
    snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    Arena *a = arena_new();
    IrGraph *g = load(a, "examples/resnet.opt", "resnet20_fmnist");
    random_ckpt(g, ck, 1);
    EmitInferRequest rq = { .g = g, .weights = ck, .dir = out, .command = "test",
                            .spec_path = "examples/resnet.opt" };
    char *msg;
    ck_assert_msg(emit(&rq, &msg) == 0, "%s", msg);
    free(msg);

    snprintf(path, sizeof path, "%s/resnet20_fmnist.h", out);
    char *h = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_nonnull(strstr(h, "#define RESNET20_FMNIST_INPUT_C 1\n"));
    ck_assert_ptr_nonnull(strstr(h, "#define RESNET20_FMNIST_INPUT_H 28\n"));
    ck_assert_ptr_nonnull(strstr(h, "#define RESNET20_FMNIST_INPUT_W 28\n"));
    ck_assert_ptr_nonnull(strstr(h, "#define RESNET20_FMNIST_CLASSES 10\n"));
    ck_assert_ptr_nonnull(strstr(h, "void resnet20_fmnist_predict(const float *pixels, "
                                    "float *logits);"));
    free(h);
    snprintf(path, sizeof path, "%s/resnet20_fmnist.c", out);
    char *code = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(code);
    /* 19 convs; the 9 BNs right after a block's first conv are folded into
     * it, the other 10 (after a sum, and the head's) stay affine maps. */
    ck_assert_int_eq(count(code, "    conv2d("), 19);
    ck_assert_int_eq(count(code, "bn folded"), 9);
    ck_assert_int_eq(count(code, "    affine("), 10);
    ck_assert_int_eq(count(code, "static float act["), 1);
    ck_assert_ptr_null(strstr(code, "malloc"));
    ck_assert_ptr_null(strstr(code, "double"));
    /* the normalisation of the metadata */
    ck_assert_ptr_nonnull(strstr(code, "input_mean[1] = { 0.25f }"));
    ck_assert_ptr_nonnull(strstr(code, "input_std[1] = { 0.5f }"));
    free(code);
    snprintf(path, sizeof path, "%s/resnet20_fmnist_weights.c", out);
    char *w = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(strstr(w, "const float resnet20_fmnist_stem_conv0_weight[144] = {"));
    ck_assert_ptr_nonnull(strstr(w, "const float resnet20_fmnist_head_linear_bias[10] = {"));
    free(w);

    /* The momentum network's one-input sums (-0.2 * grad) fold into their conv. */
    IrGraph *gm = load(a, "examples/momentum.opt", "momentum20_fmnist");
    random_ckpt(gm, ck, 1);
    rq.g = gm;
    ck_assert_msg(emit(&rq, &msg) == 0, "%s", msg);
    free(msg);
    snprintf(path, sizeof path, "%s/momentum20_fmnist.c", out);
    code = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(code);
    ck_assert_int_eq(count(code, "bn folded"), 9);
    /* v1 = -(1 - g) * conv1 at each stage's first step */
    ck_assert_int_eq(count(code, "pad 1, times -"), 3);
    free(code);

    /* The theory block's one U, shared by its 10 steps, is one array. */
    IrGraph *gt = load(a, "examples/theory.opt", "theory_hb_fmnist");
    random_ckpt(gt, ck, 1);
    rq.g = gt;
    ck_assert_msg(emit(&rq, &msg) == 0, "%s", msg);
    free(msg);
    snprintf(path, sizeof path, "%s/theory_hb_fmnist_weights.c", out);
    w = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(count(w, "\nconst float "), 3);    /* U, linear weight and bias */
    free(w);
    snprintf(path, sizeof path, "%s/theory_hb_fmnist.c", out);
    code = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(code);
    ck_assert_int_eq(count(code, "    exact("), 10);
    free(code);
    arena_free(a);
    tu_rmrf(dir);
}
END_TEST

START_TEST(errors)
{
    char dir[512], ck[600], out[600];
    tu_tmpdir(dir, sizeof dir, "infere");
    snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    Arena *a = arena_new();
    IrGraph *g = load(a, OPS_SPEC, "ops_fmnist");
    random_ckpt(g, ck, 0);
    EmitInferRequest rq = { .g = g, .weights = ck, .dir = out };
    char *msg;
    /* No normalisation in the checkpoint: an error naming the file, the way out. */
    ck_assert_int_eq(emit(&rq, &msg), -1);
    ck_assert_msg(strstr(msg, ck) && strstr(msg, "retrain") && strstr(msg, "--norm"), "%s",
                  msg);
    free(msg);
    ck_assert_int_ne(access(out, F_OK), 0);     /* nothing written */
    /* --norm: one mean and one positive std per channel. */
    rq.norm = "0.1,0.2:0.3";
    ck_assert_int_eq(emit(&rq, &msg), -1);
    ck_assert_ptr_nonnull(strstr(msg, "--norm"));
    free(msg);
    rq.norm = "0.1:0";
    ck_assert_int_eq(emit(&rq, &msg), -1);
    free(msg);
    rq.norm = "0.1:0.3";
    ck_assert_msg(emit(&rq, &msg) == 0, "%s", msg);
    free(msg);
    /* A checkpoint of another network. */
    IrGraph *g2 = load(a, OPS_SPEC, "ops_cifar");
    rq.g = g2;
    rq.norm = "0,0,0:1,1,1";
    ck_assert_int_eq(emit(&rq, &msg), -1);
    ck_assert_msg(strstr(msg, ck) && strstr(msg, "ops_fmnist"), "%s", msg);
    free(msg);
    /* The command line: usage errors exit 2. */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "%s/optc emit %s -n ops_fmnist --inference -o %s", tu_build_dir(),
             OPS_SPEC, out);
    ck_assert_int_eq(run(cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "%s/optc emit %s -n ops_fmnist --inference --weights %s",
             tu_build_dir(), OPS_SPEC, ck);
    ck_assert_int_eq(run(cmd, NULL), 2);
    arena_free(a);
    tu_rmrf(dir);
}
END_TEST

/* Every network of the table with random weights: the files build for a
 * Cortex-M4 with the strict warnings and reference no allocator; prints
 * their sizes. */
START_TEST(cortex_m4)
{
    const Case *c = &cases[_i];
    if (!have("arm-none-eabi-gcc") || !have("arm-none-eabi-size"))
        TEST_SKIP("%s: no arm-none-eabi-gcc (Debian gcc-arm-none-eabi, make deps)", c->net);
    if (tu_sanitized())
        TEST_SKIP("%s: not under the sanitizers (nothing here is instrumented)", c->net);
    char dir[512], ck[600], inf[600];
    tu_tmpdir(dir, sizeof dir, "inferm");
    snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
    snprintf(inf, sizeof inf, "%s/inf", dir);
    Arena *a = arena_new();
    IrGraph *g = load(a, c->spec, c->net);
    random_ckpt(g, ck, 1);
    EmitInferRequest rq = { .g = g, .weights = ck, .dir = inf };
    char *msg;
    ck_assert_msg(emit(&rq, &msg) == 0, "%s", msg);
    free(msg);
    long sz[3];
    ck_assert_int_eq(arm_build(inf, c->net, sz), 0);
    printf("test_infer: %s: cortex-m4 text %ld data %ld bss %ld bytes\n", c->net, sz[0],
           sz[1], sz[2]);
    fflush(stdout);
    arena_free(a);
    tu_rmrf(dir);
}
END_TEST

static Suite *infer_suite(void)
{
    Suite *s = suite_create("infer");
    TCase *tc = tcase_create("files");
    tcase_add_test(tc, files_and_folding);
    tcase_add_test(tc, errors);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("arm");
    tcase_add_loop_test(tc, cortex_m4, 0, ncases());
    tcase_set_timeout(tc, all_mode() ? 3600 : 300);
    suite_add_tcase(s, tc);
    tc = tcase_create("eval");
    tcase_add_loop_test(tc, matches_eval, 0, ncases());
    tcase_set_timeout(tc, all_mode() ? 3600 : 300);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(infer_suite)
