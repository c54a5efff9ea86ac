/* test_driver.c — rt_main on the hand-built network of handnet.h:
 * gradcheck (passes, and fails on a deliberately wrong gradient), checkpoint
 * round trips and exact resumption, interruption by SIGINT/SIGTERM, NaN
 * loss, wrong checkpoints, unwritable output directories, usage errors.
 *
 * rt_main always runs in a forked child (hn_run), so exit codes and signals
 * are observed as a user sees them and CK_FORK=no works. The test process
 * only reads the files the children wrote. Training uses the synthetic data
 * set and one thread: bit-identity is promised per thread count. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handnet.h"
#include "testutil.h"
#include "tmain.h"

/* --- a network with a wrong gradient: conv2.weight's scaled by 1.01 --- */

static void bad_backward(RtModel *m, int B)
{
    hn_backward(m, B);
    for (int i = 0; i < 4608; i++)
        m->grads[HN_P_CONV2 + i] *= 1.01f;
}

static void bad_backward_d(RtModelD *m, int B)
{
    hn_backward_d(m, B);
    for (int i = 0; i < 4608; i++)
        m->grads[HN_P_CONV2 + i] *= 1.01;
}

static const RtNet badnet = HN_NET_INIT("handnet", hn_forward, bad_backward, hn_forward_d,
                                        bad_backward_d);
/* The same tensors under another network name. */
static const RtNet othernet = HN_NET_INIT("othernet", hn_forward, hn_backward, hn_forward_d,
                                          hn_backward_d);

/* --- helpers --------------------------------------------------------------- */

typedef struct {
    char dir[64];
    char path[8][256];
} Tmp;

static void tmp_make(Tmp *t)
{
    tu_tmpdir(t->dir, sizeof t->dir, "driver");
}

static const char *tmp_path(Tmp *t, int slot, const char *rel)
{
    char dir[sizeof t->dir];
    memcpy(dir, t->dir, sizeof dir);
    snprintf(t->path[slot], sizeof t->path[slot], "%s/%s", dir, rel);
    return t->path[slot];
}

static void tmp_remove(Tmp *t)
{
    tu_rmrf(t->dir);
}

/* Whether the file holds needle; with report, what it holds when not. */
static int file_has(const char *path, const char *needle, int report)
{
    char *s = tu_slurp(path, NULL);
    int ok = s && strstr(s, needle) != NULL;
    if (!ok && report)
        fprintf(stderr, "%s does not contain '%s'; it holds:\n%s\n", path, needle,
                s ? s : "(nothing)");
    free(s);
    return ok;
}

static int file_contains(const char *path, const char *needle)
{
    return file_has(path, needle, 1);
}

static int exists(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp)
        fclose(fp);
    return fp != NULL;
}

/* Train handnet on synthetic data: 256 images, batch 32 (8 steps/epoch). */
static int train(const char *out, const char *epochs, const char *schedule, const char *resume,
                 const char *errpath)
{
    const char *args[32] = {"handnet", "train", "--data", "synthetic", "--limit", "256",
                            "--test-limit", "64", "--batch", "32", "--threads", "1",
                            "--seed", "7", "--lr", "0.05", "--quiet", "--epochs", epochs,
                            "--schedule", schedule, "--out", out};
    int n = 23;
    if (resume) {
        args[n++] = "--resume";
        args[n++] = resume;
    }
    args[n] = NULL;
    return hn_run_io(&handnet, args, errpath);
}

/* Every tensor (parameters, buffers, momentum) of two checkpoints is
 * bit-identical; verbose names the ones that differ. */
static int same_state(const char *a, const char *b, int verbose)
{
    RtErr err;
    RtStFile *fa = rt_st_open(a, &err), *fb = rt_st_open(b, &err);
    ck_assert_msg(fa && fb, "%s", err.msg);
    float *x = malloc(HN_NPARAMS * sizeof *x), *y = malloc(HN_NPARAMS * sizeof *y);
    int same = 1;
    for (int i = 0; i < handnet.ntensors; i++) {
        const RtTensor *t = &handnet.tensors[i];
        for (int pass = 0; pass < (t->buffer ? 1 : 2); pass++) {
            char name[128];
            snprintf(name, sizeof name, "%s%s", pass ? "momentum." : "", t->name);
            ck_assert_int_eq(rt_st_read(fa, name, x, t->numel, &err), 0);
            ck_assert_int_eq(rt_st_read(fb, name, y, t->numel, &err), 0);
            if (memcmp(x, y, t->numel * sizeof *x) != 0) {
                if (verbose)
                    fprintf(stderr, "tensor %s differs between %s and %s\n", name, a, b);
                same = 0;
            }
        }
    }
    free(x);
    free(y);
    rt_st_close(fa);
    rt_st_close(fb);
    return same;
}

static const char *meta_of(const char *path, const char *key, char *buf, size_t n)
{
    RtErr err;
    RtStFile *f = rt_st_open(path, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    const char *v = rt_st_meta(f, key);
    snprintf(buf, n, "%s", v ? v : "");
    rt_st_close(f);
    return buf;
}

/* --- gradcheck ----------------------------------------------------------------- */

START_TEST(gradcheck_passes)
{
    const char *args[] = {"handnet", "gradcheck", "--samples", "12", "--threads", "1", NULL};
    ck_assert_int_eq(hn_run(&handnet, args), 0);
}
END_TEST

START_TEST(gradcheck_catches_wrong_gradient)
{
    Tmp t;
    tmp_make(&t);
    const char *err = tmp_path(&t, 0, "err.txt");
    const char *args[] = {"handnet", "gradcheck", "--samples", "4", "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&badnet, args, err), 1);
    ck_assert(file_contains(err, "gradcheck: FAILED"));
    char *table = tu_slurp(err, NULL);
    /* exactly one row fails, conv2.weight's (rows end in "  FAIL") */
    const char *row = strstr(table, "\nconv2.weight ");
    ck_assert_ptr_nonnull(row);
    const char *fail = strstr(table, "  FAIL\n");
    ck_assert_ptr_nonnull(fail);
    ck_assert(fail > row && fail < strchr(row + 1, '\n'));
    ck_assert_ptr_null(strstr(fail + 1, "  FAIL\n"));
    ck_assert_ptr_nonnull(strstr(table, "\nconv1.weight "));
    free(table);
    ck_assert_int_eq(hn_run(&handnet, args), 0);
    tmp_remove(&t);
}
END_TEST

/* --- checkpoints and exact resumption ---------------------------------------------- */

START_TEST(resume_is_bit_identical)
{
    Tmp t;
    tmp_make(&t);
    const char *a = tmp_path(&t, 0, "a"), *b = tmp_path(&t, 1, "b");
    ck_assert_int_eq(train(a, "2", "constant", NULL, NULL), 0);
    ck_assert_int_eq(train(b, "1", "constant", NULL, NULL), 0);
    const char *alast = tmp_path(&t, 2, "a/last.safetensors");
    const char *blast = tmp_path(&t, 3, "b/last.safetensors");
    ck_assert(exists(tmp_path(&t, 4, "a/best.safetensors")));
    ck_assert(!same_state(alast, blast, 0));   /* one epoch apart */
    char v[64];
    ck_assert_str_eq(meta_of(blast, "epoch", v, sizeof v), "1");
    ck_assert_str_eq(meta_of(blast, "net", v, sizeof v), "handnet");
    /* 1 epoch + resume to 2 == 2 epochs straight */
    ck_assert_int_eq(train(b, "2", "constant", blast, NULL), 0);
    ck_assert(same_state(alast, blast, 1));
    ck_assert_str_eq(meta_of(blast, "epoch", v, sizeof v), "2");
    /* the logs continued: header + 2 epoch lines */
    const char *blog = tmp_path(&t, 5, "b/log.csv");
    ck_assert_int_eq(tu_count_lines(blog), 3);
    char *csv = tu_slurp(blog, NULL);
    ck_assert_ptr_nonnull(csv);
    ck_assert_ptr_nonnull(strstr(csv, "\n2,"));
    free(csv);
    ck_assert(file_contains(tmp_path(&t, 6, "b/summary.json"), "\"epochs\":2"));
    /* eval loads what train saved (parameters and BN statistics): the same
     * test accuracy as the run's last evaluation */
    const char *evout = tmp_path(&t, 7, "eval.txt");
    const char *ev[] = {"handnet", "eval", "--weights", alast, "--threads", "1",
                        "--test-limit", "64", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev, evout), 0);
    char *es = tu_slurp(evout, NULL), *ss = tu_slurp(tmp_path(&t, 6, "a/summary.json"), NULL);
    ck_assert(es && ss && strstr(es, "test_acc=") && strstr(ss, "\"test_acc\":"));
    double eacc = strtod(strstr(es, "test_acc=") + 9, NULL);
    double sacc = strtod(strstr(ss, "\"test_acc\":") + 11, NULL);
    ck_assert_double_eq_tol(eacc, sacc, 1e-4);
    free(es);
    free(ss);
    tmp_remove(&t);
}
END_TEST

/* A copy of checkpoint src at dst without the metadata keys named in drop
 * (NULL-terminated) and with key set to value when set is non-NULL: an
 * older or damaged checkpoint. old_bn: BN's .weight/.bias renamed to the
 * .gamma/.beta of optc before PyTorch's names. */
static void rewrite_ckpt(const char *src, const char *dst, const char *const *drop,
                         const char *set, const char *value, int old_bn)
{
    RtErr err;
    RtStFile *f = rt_st_open(src, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    int n = rt_st_count(f);
    RtStEntry *e = calloc((size_t)n, sizeof *e);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    char (*names)[96] = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        const char *nm = rt_st_name(f, i), *bn = strstr(nm, "bn");
        const char *dot = strrchr(nm, '.');
        snprintf(names[i], sizeof names[i], "%s", nm);
        if (old_bn && bn && dot && (strcmp(dot, ".weight") == 0 || strcmp(dot, ".bias") == 0))
            snprintf(names[i], sizeof names[i], "%.*s%s", (int)(dot - nm), nm,
                     dot[1] == 'w' ? ".gamma" : ".beta");
        e[i].name = names[i];
        ck_assert_int_eq(rt_st_shape(f, nm, &e[i].ndim, e[i].dims), 0);
        size_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++)
            numel *= (size_t)e[i].dims[d];
        bufs[i] = malloc(numel * sizeof(float) + 1);
        ck_assert_int_eq(rt_st_read(f, nm, bufs[i], numel, &err), 0);
        e[i].data = bufs[i];
    }
    static const char *const keys[] = {
        "format", "net", "optc_version", "epoch", "step", "global_step", "seed", "rng_augment",
        "rng_model", "best_test_acc", "epochs", "batch", "lr", "momentum", "weight_decay",
        "nesterov", "schedule", "warmup_epochs", "threads", "limit", "test_limit", "data",
        "data_limit", "input_mean", "input_std", "augment", "train_seconds", "step_seconds",
        "images", "partial_loss", "partial_correct", "partial_seen", "partial_seconds",
        "partial_step_seconds"};
    const char *meta[2 * 40];
    int nm = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        int skip = 0;
        for (int d = 0; drop && drop[d]; d++)
            skip |= strcmp(drop[d], keys[k]) == 0;
        const char *v = rt_st_meta(f, keys[k]);
        if (set && strcmp(set, keys[k]) == 0)
            v = value;
        if (skip || !v)
            continue;
        meta[2 * nm] = keys[k];
        meta[2 * nm + 1] = v;
        nm++;
    }
    ck_assert_msg(rt_st_save(dst, e, n, meta, nm, &err) == 0, "%s", err.msg);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(names);
    free(e);
    rt_st_close(f);
}

/* 0 when the checkpoint at path holds a tensor name, else -1. */
static int st_has(const char *path, const char *name)
{
    RtErr err;
    RtStFile *f = rt_st_open(path, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    int nd, dims[4], rc = rt_st_shape(f, name, &nd, dims);
    rt_st_close(f);
    return rc;
}

/* "key=NUMBER" in the file at path. */
static double num_after(const char *path, const char *key)
{
    char *s = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(s);
    const char *p = strstr(s, key);
    ck_assert_msg(p != NULL, "%s lacks %s:\n%s", path, key, s);
    double v = strtod(p + strlen(key), NULL);
    free(s);
    return v;
}

/* The input normalisation travels in the checkpoint: eval and resume use
 * it whatever --limit they are given (and say so), an older checkpoint
 * without it is recomputed from the data with a note, a damaged one is
 * refused. */
START_TEST(normalisation_in_checkpoint)
{
    Tmp t;
    tmp_make(&t);
    const char *a = tmp_path(&t, 0, "a"), *err = tmp_path(&t, 1, "err.txt");
    const char *args[] = {"handnet", "train", "--data", "synthetic", "--limit", "200",
                          "--test-limit", "64", "--batch", "32", "--threads", "1", "--seed", "3",
                          "--epochs", "1", "--quiet", "--out", a, NULL};
    ck_assert_int_eq(hn_run(&handnet, args), 0);
    const char *last = tmp_path(&t, 2, "a/last.safetensors");
    char v[256];
    ck_assert_str_eq(meta_of(last, "data", v, sizeof v), "synthetic");
    ck_assert_str_eq(meta_of(last, "data_limit", v, sizeof v), "200");
    RtNorm norm;
    const char *why = NULL;
    char mean[64], sd[64];
    meta_of(last, "input_mean", mean, sizeof mean);
    meta_of(last, "input_std", sd, sizeof sd);
    ck_assert_msg(rt_norm_parse(&norm, 1, mean, sd, &why) == 0, "%s / %s: %s", mean, sd, why);
    /* the synthetic images lie in [0, 1] */
    ck_assert(norm.mean[0] > 0.1f && norm.mean[0] < 0.9f);
    ck_assert(norm.std[0] > 0.05f && norm.std[0] < 0.6f);
    double sloss = num_after(tmp_path(&t, 3, "a/summary.json"), "\"test_loss\":");

    /* eval at another limit: the stored statistics, said in one note */
    const char *ev[] = {"handnet", "eval", "--weights", last, "--limit", "100",
                        "--test-limit", "64", "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev, err), 0);
    ck_assert(file_contains(err, "note: "));
    ck_assert(file_contains(err, "evaluation normalises its inputs with the checkpoint's "
                                 "statistics (computed on --data synthetic --limit 200), not on "
                                 "--data synthetic --limit 100"));
    ck_assert_double_eq_tol(num_after(err, "test_loss="), sloss, 1e-4);
    /* at the same data and limit: silent */
    const char *ev2[] = {"handnet", "eval", "--weights", last, "--test-limit", "64",
                         "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev2, err), 0);
    char *out = tu_slurp(err, NULL);
    ck_assert_ptr_null(strstr(out, "note:"));
    free(out);
    ck_assert_double_eq_tol(num_after(err, "test_loss="), sloss, 1e-4);

    /* an older checkpoint: recomputed from its data and limit, with a note */
    const char *old = tmp_path(&t, 4, "old.safetensors");
    const char *const drop[] = {"input_mean", "input_std", "data_limit", NULL};
    rewrite_ckpt(last, old, drop, NULL, NULL, 0);
    const char *ev3[] = {"handnet", "eval", "--weights", old, "--test-limit", "64",
                         "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev3, err), 0);
    ck_assert(file_contains(err, "has no input_mean/input_std (an older checkpoint): the input "
                                 "normalisation is recomputed from --data synthetic --limit 200"));
    ck_assert_double_eq_tol(num_after(err, "test_loss="), sloss, 1e-4);

    /* a file with data_limit but no limit (not written by ./net train): the
     * default --limit is data_limit, so no note */
    const char *nolim = tmp_path(&t, 7, "nolimit.safetensors");
    const char *const droplim[] = {"limit", NULL};
    rewrite_ckpt(last, nolim, droplim, NULL, NULL, 0);
    const char *ev6[] = {"handnet", "eval", "--weights", nolim, "--test-limit", "64",
                         "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev6, err), 0);
    out = tu_slurp(err, NULL);
    ck_assert_msg(strstr(out, "note:") == NULL, "%s", out);
    free(out);

    /* damaged statistics are refused */
    const char *bad = tmp_path(&t, 5, "bad.safetensors");
    rewrite_ckpt(last, bad, NULL, "input_std", "0", 0);
    const char *ev4[] = {"handnet", "eval", "--weights", bad, "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev4, err), 1);
    ck_assert(file_contains(err, bad));
    ck_assert(file_contains(err, "input_std holds a value that is not positive"));
    rewrite_ckpt(last, bad, NULL, "input_mean", "0.5,0.5", 0);
    ck_assert_int_eq(hn_run_io(&handnet, ev4, err), 1);
    ck_assert(file_contains(err, "input_mean is not one finite number per input channel"));

    /* BN parameters under their old names load, with one note */
    const char *oldbn = tmp_path(&t, 6, "oldbn.safetensors");
    rewrite_ckpt(last, oldbn, NULL, NULL, NULL, 1);
    ck_assert_int_eq(st_has(oldbn, "bn1.gamma"), 0);
    ck_assert_int_eq(st_has(oldbn, "momentum.bn2.beta"), 0);
    ck_assert_int_eq(st_has(oldbn, "bn1.weight"), -1);
    const char *ev5[] = {"handnet", "eval", "--weights", oldbn, "--test-limit", "64",
                         "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev5, err), 0);
    ck_assert(file_contains(err, "BN parameters under their old names .gamma/.beta read as "
                                 ".weight/.bias"));
    ck_assert_double_eq_tol(num_after(err, "test_loss="), sloss, 1e-4);
    const char *res0[] = {"handnet", "train", "--resume", oldbn, "--epochs", "1", "--quiet",
                          NULL};
    ck_assert_int_eq(hn_run_io(&handnet, res0, err), 0);

    /* resume at another limit keeps the checkpoint's statistics */
    const char *res[] = {"handnet", "train", "--resume", last, "--limit", "256", "--epochs", "2",
                         "--quiet", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, res, err), 0);
    ck_assert(file_contains(err, "training normalises its inputs with the checkpoint's "
                                 "statistics (computed on --data synthetic --limit 200), not on "
                                 "--data synthetic --limit 256"));
    char mean2[64], sd2[64];
    ck_assert_str_eq(meta_of(last, "input_mean", mean2, sizeof mean2), mean);
    ck_assert_str_eq(meta_of(last, "input_std", sd2, sizeof sd2), sd);
    ck_assert_str_eq(meta_of(last, "epoch", v, sizeof v), "2");
    tmp_remove(&t);
}
END_TEST

static void interrupt_case(const char *sig, int want)
{
    Tmp t;
    tmp_make(&t);
    const char *a = tmp_path(&t, 0, "a"), *b = tmp_path(&t, 1, "b");
    const char *err = tmp_path(&t, 2, "err.txt");
    ck_assert_int_eq(train(a, "3", "cosine", NULL, NULL), 0);
    /* interrupted mid-epoch 2 (steps 1..8 are epoch 1) */
    setenv("OPTC_TEST_INTERRUPT_AT", "11", 1);
    setenv("OPTC_TEST_INTERRUPT_SIGNAL", sig, 1);
    int rc = train(b, "3", "cosine", NULL, err);
    unsetenv("OPTC_TEST_INTERRUPT_AT");
    unsetenv("OPTC_TEST_INTERRUPT_SIGNAL");
    ck_assert_int_eq(rc, want);
    const char *ick = tmp_path(&t, 3, "b/interrupted.safetensors");
    ck_assert(exists(ick));
    ck_assert(file_contains(err, "train --resume"));
    ck_assert(file_contains(err, ick));
    char v[64];
    ck_assert_str_eq(meta_of(ick, "epoch", v, sizeof v), "1");
    ck_assert_str_eq(meta_of(ick, "step", v, sizeof v), "3");
    /* resume with no other flag: everything comes from the checkpoint */
    const char *res[] = {"handnet", "train", "--resume", ick, "--quiet", NULL};
    ck_assert_int_eq(hn_run(&handnet, res), 0);
    ck_assert(same_state(tmp_path(&t, 4, "a/last.safetensors"),
                         tmp_path(&t, 5, "b/last.safetensors"), 1));
    tmp_remove(&t);
}

START_TEST(sigint_checkpoint_and_resume)
{
    interrupt_case("INT", 130);
}
END_TEST

START_TEST(sigterm_checkpoint_and_resume)
{
    interrupt_case("TERM", 143);
}
END_TEST

/* --- faults ---------------------------------------------------------------------- */

START_TEST(nan_loss_stops)
{
    Tmp t;
    tmp_make(&t);
    const char *a = tmp_path(&t, 0, "a"), *err = tmp_path(&t, 1, "err.txt");
    const char *last = tmp_path(&t, 2, "a/last.safetensors");
    setenv("OPTC_TEST_NAN_AT", "10", 1);
    int rc = train(a, "3", "constant", NULL, err);
    unsetenv("OPTC_TEST_NAN_AT");
    ck_assert_int_eq(rc, 1);
    char want[400];
    snprintf(want, sizeof want, "error: loss is NaN at epoch 2 step 2; last good checkpoint: %s",
             last);
    ck_assert(file_contains(err, want));
    char v[64];
    ck_assert_str_eq(meta_of(last, "epoch", v, sizeof v), "1");   /* not overwritten */
    ck_assert(!exists(tmp_path(&t, 3, "a/summary.json")));
    /* a real divergence: an absurd learning rate */
    const char *b = tmp_path(&t, 4, "b"), *err2 = tmp_path(&t, 5, "err2.txt");
    const char *args[] = {"handnet", "train", "--data", "synthetic", "--limit", "256",
                          "--test-limit", "64", "--batch", "32", "--threads", "1", "--lr",
                          "1e30", "--epochs", "2", "--quiet", "--out", b, NULL};
    ck_assert_int_eq(hn_run_io(&handnet, args, err2), 1);
    ck_assert(file_contains(err2, "error: loss is"));
    ck_assert(file_contains(err2, "last good checkpoint: "));
    tmp_remove(&t);
}
END_TEST

/* --- strict JSON: RFC 8259, no NaN, Infinity or other extensions --------------- */

typedef struct { const char *p; } Js;

static void js_ws(Js *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

static int js_value(Js *j, int depth);

static int js_string(Js *j)
{
    if (*j->p++ != '"')
        return -1;
    for (;;) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"')
            return 0;
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            c = (unsigned char)*j->p++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++, j->p++)
                    if (!strchr("0123456789abcdefABCDEF", *j->p) || !*j->p)
                        return -1;
            } else if (!c || !strchr("\"\\/bfnrt", c)) {
                return -1;
            }
        }
    }
}

static int js_digits(Js *j)
{
    if (*j->p < '0' || *j->p > '9')
        return -1;
    while (*j->p >= '0' && *j->p <= '9')
        j->p++;
    return 0;
}

static int js_number(Js *j)
{
    if (*j->p == '-')
        j->p++;
    if (*j->p == '0')
        j->p++;
    else if (js_digits(j))
        return -1;
    if (*j->p == '.') {
        j->p++;
        if (js_digits(j))
            return -1;
    }
    if (*j->p == 'e' || *j->p == 'E') {
        j->p++;
        if (*j->p == '+' || *j->p == '-')
            j->p++;
        if (js_digits(j))
            return -1;
    }
    return 0;
}

static int js_value(Js *j, int depth)
{
    if (depth > 64)
        return -1;
    js_ws(j);
    char c = *j->p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        js_ws(j);
        if (*j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                js_ws(j);
                if (js_string(j))
                    return -1;
                js_ws(j);
                if (*j->p++ != ':')
                    return -1;
            }
            if (js_value(j, depth + 1))
                return -1;
            js_ws(j);
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            return *j->p++ == close ? 0 : -1;
        }
    }
    if (c == '"')
        return js_string(j);
    if (c == '-' || (c >= '0' && c <= '9'))
        return js_number(j);
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++)
        if (strncmp(j->p, words[i], strlen(words[i])) == 0) {
            j->p += strlen(words[i]);
            return 0;
        }
    return -1;
}

/* One strict JSON document in text[0..n), nothing else but white space. */
static int json_strict(const char *text, size_t n)
{
    char *s = malloc(n + 1);
    memcpy(s, text, n);
    s[n] = 0;
    Js j = {s};
    int ok = js_value(&j, 0) == 0;
    js_ws(&j);
    ok = ok && *j.p == 0 && strlen(s) == n;
    free(s);
    return ok;
}

/* Every JSON file a run writes in dir parses strictly: summary.json, each
 * line of log.jsonl, and the JSON header of each checkpoint. Returns the
 * number of documents checked. */
static int run_json_strict(const char *dir)
{
    static const char *const files[] = {"summary.json", "log.jsonl", "last.safetensors",
                                        "best.safetensors", "interrupted.safetensors"};
    int docs = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        size_t len;
        char *s = tu_slurp(path, &len);
        if (!s)
            continue;
        if (strstr(files[i], ".safetensors")) {
            ck_assert_uint_ge(len, 8);
            uint64_t hl = 0;
            for (int k = 7; k >= 0; k--)
                hl = hl << 8 | (uint8_t)s[k];
            ck_assert_uint_le(hl, len - 8);
            ck_assert_msg(json_strict(s + 8, (size_t)hl), "%s: header is not strict JSON", path);
            docs++;
        } else if (strstr(files[i], ".jsonl")) {
            for (char *line = s, *nl; *line; line = nl + 1) {
                nl = strchr(line, '\n');
                ck_assert_msg(nl != NULL, "%s: last line unterminated", path);
                ck_assert_msg(json_strict(line, (size_t)(nl - line)),
                              "%s: not strict JSON: %.*s", path, (int)(nl - line), line);
                docs++;
            }
        } else {
            ck_assert_msg(json_strict(s, len), "%s: not strict JSON: %s", path, s);
            docs++;
        }
        free(s);
    }
    return docs;
}

START_TEST(json_checker_is_strict)
{
    static const char *const good[] = {"{}", "[]", "{\"a\":[1,-2.5e-3,0,true,null,\"x\\u00e9\"]}",
                                       " 0 ", "-0.0E+1"};
    static const char *const bad[] = {"{\"a\":nan}", "{\"a\":-nan}", "{\"a\":NaN}",
                                      "{\"a\":inf}", "{\"a\":Infinity}", "[01]", "[1.]",
                                      "{\"a\":1,}", "[1] x", "{'a':1}", "", "[.5]", "[+1]"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(json_strict(good[i], strlen(good[i])), "rejected %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!json_strict(bad[i], strlen(bad[i])), "accepted %s", bad[i]);
}
END_TEST

/* A NaN test loss stops the run like a NaN training loss: exit 1, the
 * epoch and the last good checkpoint named, that checkpoint kept, nothing
 * of the bad epoch logged; every JSON file stays strict JSON. */
START_TEST(nan_test_loss_stops)
{
    Tmp t;
    tmp_make(&t);
    const char *a = tmp_path(&t, 0, "a"), *err = tmp_path(&t, 1, "err.txt");
    const char *last = tmp_path(&t, 2, "a/last.safetensors");
    setenv("OPTC_TEST_NAN_TEST_AT", "2", 1);
    int rc = train(a, "3", "constant", NULL, err);
    unsetenv("OPTC_TEST_NAN_TEST_AT");
    ck_assert_int_eq(rc, 1);
    char want[600];
    snprintf(want, sizeof want,
             "error: test loss is NaN at the end of epoch 2 (step 8); last good checkpoint: %s",
             last);
    ck_assert(file_contains(err, want));
    char v[64];
    ck_assert_str_eq(meta_of(last, "epoch", v, sizeof v), "1");
    ck_assert(!exists(tmp_path(&t, 3, "a/summary.json")));
    ck_assert_int_eq(tu_count_lines(tmp_path(&t, 4, "a/log.jsonl")), 1);
    ck_assert_int_eq(run_json_strict(a), 3);   /* log line, last, best */

    /* The real thing: a resume at lr 1e30 with one step per epoch blows
     * the weights up in a step whose own loss was still finite (epoch 2
     * may survive it: BN rescales; epoch 3 does not). */
    const char *res[] = {"handnet", "train", "--resume", last, "--lr", "1e30", "--limit", "32",
                         "--epochs", "3", "--quiet", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, res, err), 1);
    ck_assert(file_contains(err, "error: test loss is "));
    snprintf(want, sizeof want, "last good checkpoint: %s", last);
    ck_assert(file_contains(err, want));
    ck_assert(!exists(tmp_path(&t, 3, "a/summary.json")));
    ck_assert_int_ge(run_json_strict(a), 3);
    char *log = tu_slurp(tmp_path(&t, 4, "a/log.jsonl"), NULL);
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_null(strstr(log, "nan"));
    ck_assert_ptr_null(strstr(log, "inf"));
    free(log);

    /* A finished run: summary.json, the log and the checkpoints all strict. */
    const char *b = tmp_path(&t, 5, "b");
    ck_assert_int_eq(train(b, "2", "constant", NULL, NULL), 0);
    ck_assert_int_eq(run_json_strict(b), 5);   /* summary, 2 log lines, last, best */
    tmp_remove(&t);
}
END_TEST

START_TEST(wrong_checkpoint_is_refused)
{
    Tmp t;
    tmp_make(&t);
    const char *a = tmp_path(&t, 0, "a"), *err = tmp_path(&t, 1, "err.txt");
    ck_assert_int_eq(train(a, "1", "constant", NULL, NULL), 0);
    const char *last = tmp_path(&t, 2, "a/last.safetensors");
    /* another network's checkpoint */
    const char *ev[] = {"othernet", "eval", "--weights", last, "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&othernet, ev, err), 1);
    ck_assert(file_contains(err, last));
    ck_assert(file_contains(err, "'handnet'"));
    const char *tr[] = {"othernet", "train", "--resume", last, "--quiet", NULL};
    ck_assert_int_eq(hn_run_io(&othernet, tr, err), 1);
    ck_assert(file_contains(err, "'othernet'"));
    /* a file without most of the tensors, and one with a wrong shape */
    static float data[16 * 1 * 5 * 5];
    RtStEntry e = {"conv1.weight", 4, {16, 1, 3, 3}, data};
    RtErr rerr;
    const char *part = tmp_path(&t, 3, "partial.safetensors");
    ck_assert_int_eq(rt_st_save(part, &e, 1, NULL, 0, &rerr), 0);
    const char *ev2[] = {"handnet", "eval", "--weights", part, "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev2, err), 1);
    ck_assert(file_contains(err, part));
    ck_assert(file_contains(err, "'bn1.weight' is missing"));
    const char *shape = tmp_path(&t, 4, "shape.safetensors");
    e.dims[2] = e.dims[3] = 5;
    ck_assert_int_eq(rt_st_save(shape, &e, 1, NULL, 0, &rerr), 0);
    const char *ev3[] = {"handnet", "eval", "--weights", shape, "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev3, err), 1);
    ck_assert(file_contains(err, shape));
    ck_assert(file_contains(err, "'conv1.weight' has shape [16x1x5x5]"));
    /* not a checkpoint at all */
    const char *ev4[] = {"handnet", "eval", "--weights", tmp_path(&t, 5, "none.safetensors"),
                         NULL};
    ck_assert_int_eq(hn_run_io(&handnet, ev4, err), 1);
    ck_assert(file_contains(err, "none.safetensors"));
    tmp_remove(&t);
}
END_TEST

START_TEST(unwritable_out_dir)
{
    Tmp t;
    tmp_make(&t);
    /* a path under a regular file cannot become a directory, even for root */
    const char *file = tmp_path(&t, 0, "file"), *err = tmp_path(&t, 1, "err.txt");
    FILE *fp = fopen(file, "w");
    ck_assert_ptr_nonnull(fp);
    fclose(fp);
    const char *out = tmp_path(&t, 2, "file/run");
    ck_assert_int_eq(train(out, "1", "constant", NULL, err), 1);
    ck_assert(file_contains(err, out));
    ck_assert(file_contains(err, "output directory"));
    tmp_remove(&t);
}
END_TEST

/* Run rt_main(net, args) in a child whose files may not grow past limit
 * bytes (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG, the way a
 * full disk fails them with ENOSPC). Its stderr comes back through a pipe,
 * which the limit does not touch, into buf. Returns the exit status. */
static int run_fsize(const char *const *args, rlim_t limit, char *buf, size_t n)
{
    int argc = 0;
    while (args[argc])
        argc++;
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit rl = {limit, limit};
        signal(SIGXFSZ, SIG_IGN);
        if (dup2(fd[1], 2) < 0 || dup2(fd[1], 1) < 0 || setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(98);
        close(fd[0]);
        close(fd[1]);
        char **argv = calloc((size_t)argc + 1, sizeof *argv);
        for (int i = 0; argv && i < argc; i++)
            argv[i] = strdup(args[i]);
        int rc = argv ? rt_main(&handnet, argc, argv) : 99;
        for (int i = 0; argv && i < argc; i++)
            free(argv[i]);
        free(argv);
        exit(rc);   /* LeakSanitizer checks the child too */
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while ((r = read(fd[0], buf + got, n - 1 - got)) > 0 || (r < 0 && errno == EINTR))
        got += r > 0 ? (size_t)r : 0;
    buf[got] = 0;
    close(fd[0]);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st), "the child died of signal %d", WTERMSIG(st));
    return WEXITSTATUS(st);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Whether dir holds a file whose name contains ".tmp" (a checkpoint or
 * summary that was never renamed into place). */
static int has_tmp_file(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q '[.]tmp'", dir);
    return system(cmd) == 0;
}

/* Log writes on a full disk: one error naming the log, exit 1, the logs cut
 * back to whole lines and the good checkpoint byte-identical. A fresh run
 * whose log.csv header does not fit stops before training; a resumed run
 * whose next log.csv row does not fit stops before any checkpoint; one whose
 * log.jsonl row does not fit likewise. */
START_TEST(full_disk_logs)
{
    Tmp t;
    tmp_make(&t);
    char msg[8192], want[512];
    const char *a = tmp_path(&t, 0, "a");
    const char *csv = tmp_path(&t, 1, "a/log.csv"), *jsonl = tmp_path(&t, 2, "a/log.jsonl");
    const char *last = tmp_path(&t, 3, "a/last.safetensors");
    const char *fresh[] = {"handnet", "train", "--data", "synthetic", "--limit", "256",
                           "--test-limit", "64", "--batch", "32", "--threads", "1", "--seed",
                           "7", "--quiet", "--epochs", "1", "--out", a, NULL};
    /* The header is 71 bytes. */
    ck_assert_int_eq(run_fsize(fresh, 40, msg, sizeof msg), 1);
    snprintf(want, sizeof want, "error: %s: %s\n", csv, strerror(EFBIG));
    ck_assert_msg(strcmp(msg, want) == 0, "got:\n%s\nwant:\n%s", msg, want);
    ck_assert_int_eq(file_size(csv), 0);
    ck_assert(!exists(last));

    /* One good epoch, then resume for a second under a limit. */
    ck_assert_int_eq(train(a, "1", "constant", NULL, NULL), 0);
    long cksz = file_size(last), csvsz = file_size(csv), jsonlsz = file_size(jsonl);
    size_t ckn = 0;
    char *ck = tu_slurp(last, &ckn), *csv0 = tu_slurp(csv, NULL);
    char *jsonl0 = tu_slurp(jsonl, NULL), *sum0 = tu_slurp(tmp_path(&t, 4, "a/summary.json"), NULL);
    ck_assert(ck && csv0 && jsonl0 && (long)ckn == cksz && cksz > 1000 && csvsz > 71 &&
              jsonlsz > csvsz - 71);
    const char *resume[] = {"handnet", "train", "--resume", last, "--epochs", "2", "--quiet",
                            NULL};
    for (int which = 0; which < 2; which++) {
        /* which 0: log.csv's next row (~60 bytes) gets 10 of them, a short
         * write; which 1: that row fits (20 bytes to spare), log.jsonl's
         * does not. */
        long row = csvsz - 71;      /* the header's 71 bytes, then one row */
        rlim_t lim = which == 0 ? (rlim_t)csvsz + 10 : (rlim_t)(csvsz + row + 20);
        /* log.jsonl holds one row; the next, about as long, cannot fit. */
        ck_assert((long)lim < 2 * jsonlsz - 20);
        ck_assert_int_eq(run_fsize(resume, lim, msg, sizeof msg), 1);
        snprintf(want, sizeof want, "error: %s: %s\n", which == 0 ? csv : jsonl,
                 strerror(EFBIG));
        ck_assert_msg(strcmp(msg, want) == 0, "got:\n%s\nwant:\n%s", msg, want);
        ck_assert_int_eq(file_size(last), cksz);
        size_t nown = 0;
        char *now = tu_slurp(last, &nown), *csv1 = tu_slurp(csv, NULL);
        char *jsonl1 = tu_slurp(jsonl, NULL);
        ck_assert(now && nown == ckn && memcmp(now, ck, ckn) == 0);
        ck_assert_int_eq(file_size(jsonl), jsonlsz);     /* never a half line */
        ck_assert_str_eq(jsonl1, jsonl0);
        if (which == 0) {
            ck_assert_int_eq(file_size(csv), csvsz);
            ck_assert_str_eq(csv1, csv0);
        } else {
            ck_assert_int_gt(file_size(csv), csvsz);     /* its row went in whole */
        }
        free(now);
        free(csv1);
        free(jsonl1);
        ck_assert(!has_tmp_file(a));
        char *sum1 = tu_slurp(tmp_path(&t, 4, "a/summary.json"), NULL);
        ck_assert(sum0 && sum1 && strcmp(sum0, sum1) == 0);     /* still epoch 1's */
        free(sum1);
    }
    free(ck);
    free(csv0);
    free(jsonl0);
    free(sum0);
    tmp_remove(&t);
}
END_TEST

static size_t huge_acts(int B)
{
    (void)B;
    return (size_t)1 << 50;   /* 4 PiB of floats: more than any machine */
}

START_TEST(huge_model_refused)
{
    Tmp t;
    tmp_make(&t);
    const char *err = tmp_path(&t, 0, "err.txt");
    RtNet huge = handnet;
    huge.act_elems = huge_acts;
    const char *args[] = {"handnet", "bench", "--batch", "2", "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&huge, args, err), 1);
    ck_assert(file_contains(err, "GiB at batch 2, more than this machine's"));
    tmp_remove(&t);
}
END_TEST

/* --- the command line ------------------------------------------------------------ */

START_TEST(usage_errors)
{
    Tmp t;
    tmp_make(&t);
    const char *err = tmp_path(&t, 0, "err.txt");
    const char *a1[] = {"handnet", "train", "--epochz", "3", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a1, err), 2);
    ck_assert(file_contains(err, "--epochz"));
    const char *a2[] = {"handnet", "train", "--epochs", "3x", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a2, err), 2);
    ck_assert(file_contains(err, "--epochs"));
    const char *a3[] = {"handnet", "train", "--lr", "-1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a3, err), 2);
    ck_assert(file_contains(err, "--lr"));
    const char *a4[] = {"handnet", "bench", "--batch", "99999999999", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a4, err), 2);
    ck_assert(file_contains(err, "--batch"));
    const char *a5[] = {"handnet", "frobnicate", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a5, err), 2);
    const char *a6[] = {"handnet", "eval", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a6, err), 2);
    ck_assert(file_contains(err, "--weights"));
    const char *a7[] = {"handnet", "train", "--schedule", "linear", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a7, err), 2);
    const char *cmds[] = {"train", "eval", "info", "gradcheck", "bench"};
    for (int i = 0; i < 5; i++) {
        const char *h[] = {"handnet", cmds[i], "--help", NULL};
        ck_assert_int_eq(hn_run(&handnet, h), 0);
    }
    const char *h[] = {"handnet", "--help", NULL};
    ck_assert_int_eq(hn_run(&handnet, h), 0);
    const char *info[] = {"handnet", "info", "--json", NULL};
    ck_assert_int_eq(hn_run(&handnet, info), 0);
    const char *bench[] = {"handnet", "bench", "--batch", "4", "--iters", "2", "--warmup", "1",
                           "--threads", "1", NULL};
    ck_assert_int_eq(hn_run(&handnet, bench), 0);
    tmp_remove(&t);
}
END_TEST

/* Count the comma-separated numbers after key= up to the next blank or
 * newline; -1 when key= is missing or a field is not a positive number. */
static int count_list(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    if (!p)
        return -1;
    p += strlen(key);
    int n = 0;
    for (;;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0))
            return -1;
        n++;
        if (*end != ',')
            return n;
        p = end + 1;
    }
}

/* bench --steps: one line with every timed step in order, as many training
 * steps as --iters and inference forwards as --infer-iters (which defaults
 * to --iters); without --steps no such line. */
START_TEST(bench_steps)
{
    Tmp t;
    tmp_make(&t);
    const char *out = tmp_path(&t, 0, "out.txt");
    const char *a1[] = {"handnet", "bench", "--batch", "4", "--iters", "3", "--infer-iters", "5",
                        "--warmup", "1", "--threads", "1", "--steps", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a1, out), 0);
    char *s = tu_slurp(out, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(strstr(s, "steps: train_ms="));
    ck_assert_int_eq(count_list(s, "train_ms="), 3);
    ck_assert_int_eq(count_list(s, "infer_ms="), 5);
    ck_assert_ptr_nonnull(strstr(s, "bench: net=handnet"));
    free(s);
    const char *a2[] = {"handnet", "bench", "--batch", "4", "--iters", "2", "--warmup", "0",
                        "--threads", "1", "--steps", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a2, out), 0);
    s = tu_slurp(out, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(count_list(s, "train_ms="), 2);
    ck_assert_int_eq(count_list(s, "infer_ms="), 2);
    free(s);
    const char *a3[] = {"handnet", "bench", "--batch", "4", "--iters", "2", "--warmup", "0",
                        "--threads", "1", NULL};
    ck_assert_int_eq(hn_run_io(&handnet, a3, out), 0);
    ck_assert(!file_has(out, "steps:", 0));
    ck_assert(file_contains(out, "bench: net=handnet"));
    tmp_remove(&t);
}
END_TEST

static Suite *driver_suite(void)
{
    Suite *s = suite_create("driver");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, gradcheck_passes);
    tcase_add_test(tc, gradcheck_catches_wrong_gradient);
    suite_add_tcase(s, tc);
    tc = tcase_create("checkpoints");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, resume_is_bit_identical);
    tcase_add_test(tc, sigint_checkpoint_and_resume);
    tcase_add_test(tc, sigterm_checkpoint_and_resume);
    tcase_add_test(tc, normalisation_in_checkpoint);
    suite_add_tcase(s, tc);
    tc = tcase_create("faults");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, nan_loss_stops);
    tcase_add_test(tc, json_checker_is_strict);
    tcase_add_test(tc, nan_test_loss_stops);
    tcase_add_test(tc, wrong_checkpoint_is_refused);
    tcase_add_test(tc, unwritable_out_dir);
    tcase_add_test(tc, huge_model_refused);
    tcase_add_test(tc, full_disk_logs);
    tcase_add_test(tc, usage_errors);
    tcase_add_test(tc, bench_steps);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(driver_suite)
