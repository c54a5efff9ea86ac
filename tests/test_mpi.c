/* test_mpi.c — data-parallel training end to end: a small network built by
 * $OPTC_BUILD/optc (default build/) twice, plainly and with --mpi, trained
 * on synthetic data under `mpirun --oversubscribe -np N`:
 * - the plain runtime holds no MPI symbol, and a plain program that mpirun
 *   starts twice refuses to run;
 * - N = 2 and N = 3 (uneven slices) match one process to 1e-5 relative;
 * - two N = 2 runs are bit-identical;
 * - a run interrupted under N = 2 resumes under N = 1 and the reverse, and
 *   both end where one uninterrupted process ends;
 * - a rank killed by SIGKILL ends the job with an error, no hang;
 * - SIGINT to mpirun stops every rank after one checkpoint;
 * - ranks started with different flags are refused;
 * - a NaN loss stops every rank at the same step, with one error line.
 * And without MPI: the synchronised BN kernels, two threads standing in for
 * two ranks, against one call on the whole batch; optc build --mpi refused
 * by an optc that has no MPI runtime.
 * Every mpirun case is skipped (TEST_SKIP) when mpirun or the MPI runtime
 * is missing. Under the sanitizers the children run without leak checks
 * (Open MPI's own allocations would read as leaks). Every child runs under
 * timeout(1): a hang fails the case instead of the suite. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"
#include "testutil.h"
#include "tmain.h"

static const char mp_spec[] =
    "optimizer hb(beta = 0.5) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
    "network tiny {\n"
    "    input 1x8x8; classes 3; stem conv3x3(4);\n"
    "    grad = bn, relu, conv3x3;\n"
    "    stage hb steps 2 width 4;\n"
    "    head bn, relu, avgpool, linear;\n"
    "    train { augment crop(1), flip; }\n"
    "}\n";

/* The common flags: 256 images, batches of 32 (8 steps an epoch). */
#define MP_FLAGS "train --data synthetic --limit 256 --test-limit 64 --batch 32 --threads 1 " \
                 "--seed 7 --momentum 0.9 --quiet"

typedef struct {
    char dir[256];
    char plain[320], mpi[320];
} Mp;

/* NULL when the case can run (dir made, both programs built), else why it
 * cannot (the caller skips with it). */
static const char *mp_setup(Mp *m)
{
    static char why[1024];
    char lib[512];
    snprintf(lib, sizeof lib, "%s/libort_mpi.a", tu_build_dir());
    if (system("command -v mpirun >/dev/null 2>&1") != 0)
        return "mpirun not found (Debian: openmpi-bin)";
    if (access(lib, R_OK) != 0) {
        snprintf(why, sizeof why, "%s missing (Debian: libopenmpi-dev, then make)", lib);
        return why;
    }
    /* mpirun refuses root without these; only this suite's children see them. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_btl", "self,vader", 1);   /* one machine: shared memory only */
    /* Sanitized programs still abort on any error, but Open MPI's own
     * allocations at exit are not this project's leaks. */
    if (tu_sanitized())
        setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1", 1);
    unsetenv("OPTC_TEST_INTERRUPT_AT");
    unsetenv("OPTC_TEST_KILL_RANK");
    tu_tmpdir(m->dir, sizeof m->dir, "mpi");
    char spec[300], cmd[2048];
    snprintf(spec, sizeof spec, "%s/tiny.opt", m->dir);
    FILE *f = fopen(spec, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert(fputs(mp_spec, f) >= 0 && fclose(f) == 0);
    snprintf(m->plain, sizeof m->plain, "%s/tiny", m->dir);
    snprintf(m->mpi, sizeof m->mpi, "%s/tiny_mpi", m->dir);
    snprintf(cmd, sizeof cmd, "%s/optc build %s -o %s && %s/optc build %s --mpi -o %s",
             tu_build_dir(), spec, m->plain, tu_build_dir(), spec, m->mpi);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    return NULL;
}

/* Run a shell command under a timeout of `limit` seconds, its output in
 * dir/log; the exit status (124 when it timed out). */
static int mp_sh(const Mp *m, int limit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int mp_sh(const Mp *m, int limit, const char *fmt, ...)
{
    char body[3000], cmd[3500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "timeout -k 5 %d sh -c '%s' >%s/log 2>&1", limit, body, m->dir);
    int st = system(cmd);
    ck_assert(st != -1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *mp_log(const Mp *m)
{
    char p[300];
    snprintf(p, sizeof p, "%s/log", m->dir);
    char *s = tu_slurp(p, NULL);
    return s ? s : strdup("(no output)");
}

#define MP_OK(m, rc) do {                                                     \
        int rc_ = (rc);                                                       \
        if (rc_ != 0) {                                                       \
            char *log_ = mp_log(m);                                           \
            ck_abort_msg("status %d:\n%s", rc_, log_);                        \
        }                                                                     \
    } while (0)

/* The largest relative difference (L2 norms, per tensor) between the
 * tensors of two checkpoints; *same is set when every byte is equal. */
static double mp_compare(const char *a, const char *b, int *same)
{
    RtErr err;
    RtStFile *fa = rt_st_open(a, &err), *fb = NULL;
    ck_assert_msg(fa != NULL, "%s", err.msg);
    fb = rt_st_open(b, &err);
    ck_assert_msg(fb != NULL, "%s", err.msg);
    ck_assert_int_eq(rt_st_count(fa), rt_st_count(fb));
    double worst = 0;
    *same = 1;
    for (int i = 0; i < rt_st_count(fa); i++) {
        const char *name = rt_st_name(fa, i);
        int nd, dims[4], ndb, dimsb[4];
        ck_assert_int_eq(rt_st_shape(fa, name, &nd, dims), 0);
        ck_assert_msg(rt_st_shape(fb, name, &ndb, dimsb) == 0, "%s lacks %s", b, name);
        size_t n = 1;
        for (int d = 0; d < nd; d++)
            n *= (size_t)dims[d];
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        ck_assert(x && y);
        ck_assert_msg(rt_st_read(fa, name, x, n, &err) == 0, "%s", err.msg);
        ck_assert_msg(rt_st_read(fb, name, y, n, &err) == 0, "%s", err.msg);
        double num = 0, den = 0;
        for (size_t k = 0; k < n; k++) {
            num += ((double)x[k] - (double)y[k]) * ((double)x[k] - (double)y[k]);
            den += (double)x[k] * (double)x[k];
        }
        double rel = sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
        if (rel > worst)
            worst = rel;
        if (memcmp(x, y, n * sizeof *x) != 0)
            *same = 0;
        free(x);
        free(y);
    }
    rt_st_close(fa);
    rt_st_close(fb);
    return worst;
}

static int mp_exists(const Mp *m, const char *rel)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", m->dir, rel);
    return access(p, F_OK) == 0;
}

static const char *mp_path(const Mp *m, char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", m->dir, rel);
    return buf;
}

/* --- cases ----------------------------------------------------------------- */

/* libort.a has no MPI symbol and libort_mpi.a calls MPI; a plain program
 * that mpirun starts twice refuses before training. */
START_TEST(plain_runtime_mpi_free)
{
    Mp m;
    const char *why = mp_setup(&m);
    if (why)
        TEST_SKIP("%s", why);
    ck_assert_int_eq(mp_sh(&m, 30, "nm %s/libort.a | grep -q MPI_", tu_build_dir()), 1);
    ck_assert_int_eq(mp_sh(&m, 30, "nm %s | grep -q MPI_", m.plain), 1);
    MP_OK(&m, mp_sh(&m, 30, "nm %s/libort_mpi.a | grep -q \" U MPI_Sendrecv\"",
                    tu_build_dir()));
    int rc = mp_sh(&m, 60, "mpirun --oversubscribe -np 2 %s " MP_FLAGS " --epochs 1 --out %s/p",
                   m.plain, m.dir);
    char *log = mp_log(&m);
    ck_assert_msg(rc != 0 && rc != 124 && strstr(log, "built without MPI: rebuild it with optc "
                  "build --mpi"), "status %d:\n%s", rc, log);
    ck_assert(!mp_exists(&m, "p/last.safetensors"));
    free(log);
    tu_rmrf(m.dir);
}
END_TEST

/* optc build --mpi with an optc.flags that has no MPI_LIBS line (make found
 * no Open MPI): a clear error, no program. Needs no MPI. */
START_TEST(build_without_mpi_refused)
{
    char dir[256], flags[320], cmd[2048], log[320];
    tu_tmpdir(dir, sizeof dir, "mpi");
    snprintf(flags, sizeof flags, "%s/optc.flags", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(cmd, sizeof cmd, "grep -v '^MPI_LIBS=' %s/optc.flags > %s", tu_build_dir(), flags);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "OPTC_FLAGS=%s %s/optc build examples/theory.opt -n "
             "theory_gd_fmnist --mpi -o %s/t >%s 2>&1", flags, tu_build_dir(), dir, log);
    int st = system(cmd);
    char *out = tu_slurp(log, NULL);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1 && out &&
                  strstr(out, "--mpi: this optc was built without MPI"), "%s", out ? out : "");
    char t[300];
    snprintf(t, sizeof t, "%s/t", dir);
    ck_assert(access(t, F_OK) != 0);
    free(out);
    tu_rmrf(dir);
}
END_TEST

/* One epoch under N = 2 and N = 3 (slices 11, 11, 10) ends at the weights,
 * BN statistics and momentum of one process, to 1e-5 relative. */
START_TEST(matches_one_process)
{
    Mp m;
    const char *why = mp_setup(&m);
    if (why)
        TEST_SKIP("%s", why);
    char a[400], b[400];
    MP_OK(&m, mp_sh(&m, 60, "%s " MP_FLAGS " --epochs 1 --out %s/one", m.plain, m.dir));
    for (int n = 2; n <= 3; n++) {
        MP_OK(&m, mp_sh(&m, 60, "mpirun --oversubscribe -np %d %s " MP_FLAGS
                        " --epochs 1 --out %s/n%d", n, m.mpi, m.dir, n));
        char rel[32];
        snprintf(rel, sizeof rel, "n%d/last.safetensors", n);
        int same;
        double d = mp_compare(mp_path(&m, a, sizeof a, "one/last.safetensors"),
                              mp_path(&m, b, sizeof b, rel), &same);
        printf("test_mpi: N = %d against one process: largest relative difference %.3g\n", n, d);
        ck_assert_msg(d <= 1e-5, "N = %d: relative difference %g", n, d);
    }
    /* The program built with --mpi, run alone, is one process too. */
    MP_OK(&m, mp_sh(&m, 60, "%s " MP_FLAGS " --epochs 1 --out %s/single", m.mpi, m.dir));
    int same;
    mp_compare(mp_path(&m, a, sizeof a, "one/last.safetensors"),
               mp_path(&m, b, sizeof b, "single/last.safetensors"), &same);
    ck_assert_msg(same, "the --mpi program alone differs from the plain one");
    tu_rmrf(m.dir);
}
END_TEST

START_TEST(bit_identical)
{
    Mp m;
    const char *why = mp_setup(&m);
    if (why)
        TEST_SKIP("%s", why);
    for (int r = 0; r < 2; r++)
        MP_OK(&m, mp_sh(&m, 60, "mpirun --oversubscribe -np 2 %s " MP_FLAGS
                        " --epochs 1 --out %s/r%d", m.mpi, m.dir, r));
    char a[400], b[400];
    int same;
    mp_compare(mp_path(&m, a, sizeof a, "r0/last.safetensors"),
               mp_path(&m, b, sizeof b, "r1/last.safetensors"), &same);
    ck_assert_msg(same, "two N = 2 runs differ");
    /* Only rank 0 wrote: one header and one row. */
    ck_assert_int_eq(tu_count_lines(mp_path(&m, a, sizeof a, "r0/log.csv")), 2);
    tu_rmrf(m.dir);
}
END_TEST

/* Interrupted at step 11 of 16 under N = 2, resumed by one process (and
 * the reverse): both end where one uninterrupted process ends. */
START_TEST(resume_other_n)
{
    Mp m;
    const char *why = mp_setup(&m);
    if (why)
        TEST_SKIP("%s", why);
    char a[400], b[400];
    MP_OK(&m, mp_sh(&m, 60, "%s " MP_FLAGS " --epochs 2 --out %s/ref", m.plain, m.dir));
    int rc = mp_sh(&m, 60, "OPTC_TEST_INTERRUPT_AT=10 mpirun --oversubscribe -np 2 -x "
                   "OPTC_TEST_INTERRUPT_AT %s " MP_FLAGS " --epochs 2 --out %s/x", m.mpi, m.dir);
    char *log = mp_log(&m);
    ck_assert_msg(rc != 0 && rc != 124 && mp_exists(&m, "x/interrupted.safetensors"),
                  "status %d:\n%s", rc, log);
    ck_assert_msg(strstr(log, "interrupted by SIGINT at epoch 2 step 3/8"), "%s", log);
    free(log);
    MP_OK(&m, mp_sh(&m, 60, "%s train --resume %s/x/interrupted.safetensors --quiet", m.plain,
                    m.dir));
    int same;
    double d = mp_compare(mp_path(&m, a, sizeof a, "ref/last.safetensors"),
                          mp_path(&m, b, sizeof b, "x/last.safetensors"), &same);
    ck_assert_msg(d <= 1e-5, "N = 2 then 1: relative difference %g", d);
    ck_assert(!mp_exists(&m, "x/interrupted.safetensors"));

    rc = mp_sh(&m, 60, "OPTC_TEST_INTERRUPT_AT=10 %s " MP_FLAGS " --epochs 2 --out %s/y",
               m.plain, m.dir);
    ck_assert_int_eq(rc, 130);
    MP_OK(&m, mp_sh(&m, 60, "mpirun --oversubscribe -np 2 %s train --resume "
                    "%s/y/interrupted.safetensors --quiet", m.mpi, m.dir));
    d = mp_compare(mp_path(&m, a, sizeof a, "ref/last.safetensors"),
                   mp_path(&m, b, sizeof b, "y/last.safetensors"), &same);
    ck_assert_msg(d <= 1e-5, "N = 1 then 2: relative difference %g", d);
    tu_rmrf(m.dir);
}
END_TEST

/* Rank 1 dies of SIGKILL after step 5: mpirun ends the job with a message
 * naming the dead rank, well within the timeout. */
START_TEST(killed_rank)
{
    Mp m;
    const char *why = mp_setup(&m);
    if (why)
        TEST_SKIP("%s", why);
    time_t t0 = time(NULL);
    int rc = mp_sh(&m, 60, "OPTC_TEST_INTERRUPT_AT=5 OPTC_TEST_KILL_RANK=1 mpirun "
                   "--oversubscribe -np 2 -x OPTC_TEST_INTERRUPT_AT -x OPTC_TEST_KILL_RANK %s "
                   MP_FLAGS " --epochs 1000 --out %s/k", m.mpi, m.dir);
    char *log = mp_log(&m);
    /* mpirun exits 137 itself (the rank's signal); timeout(1) would say 124. */
    ck_assert_msg(rc != 0 && rc != 124 && time(NULL) - t0 < 50, "status %d:\n%s", rc, log);
    ck_assert_msg(strstr(log, "rank 1") && strstr(log, "signal 9"), "%s", log);
    free(log);
    tu_rmrf(m.dir);
}
END_TEST

/* SIGINT to mpirun: Open MPI 4.1 sends the ranks SIGTERM about
 * odls_base_sigkill_timeout seconds later (default 1) and SIGKILL as long
 * again after that; 3 leaves a loaded machine time. Rank 0 writes
 * interrupted.safetensors after the step every rank agreed on, and the
 * run resumes from it. */
START_TEST(sigint_to_mpirun)
{
    Mp m;
    const char *why = mp_setup(&m);
    if (why)
        TEST_SKIP("%s", why);
    char out[400], csv[420], ck[440];
    mp_path(&m, out, sizeof out, "s");
    snprintf(csv, sizeof csv, "%s/log.csv", out);
    snprintf(ck, sizeof ck, "%s/interrupted.safetensors", out);
    /* mpirun in the background; SIGINT once an epoch is logged. */
    int rc = mp_sh(&m, 60, "mpirun --mca odls_base_sigkill_timeout 3 --oversubscribe -np 2 "
                   "%s " MP_FLAGS " --epochs 100000 --out %s & p=$!; "
                   "i=0; while [ $i -lt 400 ] && [ \"$(cat %s 2>/dev/null | wc -l)\" -lt 3 ]; do "
                   "sleep 0.1; i=$((i+1)); done; kill -INT $p; wait $p",
                   m.mpi, out, csv);
    char *log = mp_log(&m);
    ck_assert_msg(rc != 0 && rc != 124, "status %d:\n%s", rc, log);
    ck_assert_msg(access(ck, F_OK) == 0 && strstr(log, "interrupted by SIGTERM"),
                  "status %d:\n%s", rc, log);
    free(log);
    MP_OK(&m, mp_sh(&m, 60, "%s train --resume %s --epochs 4 --quiet", m.plain, ck));
    ck_assert(access(ck, F_OK) != 0);   /* a finished run removes it */
    tu_rmrf(m.dir);
}
END_TEST

/* A NaN loss at step 3 is the whole batch's: every rank stops there, rank 0
 * alone says so, and the job exits 1 without a checkpoint. */
START_TEST(nan_stops_every_rank)
{
    Mp m;
    const char *why = mp_setup(&m);
    if (why)
        TEST_SKIP("%s", why);
    int rc = mp_sh(&m, 60, "OPTC_TEST_NAN_AT=3 mpirun --oversubscribe -np 2 -x OPTC_TEST_NAN_AT "
                   "%s " MP_FLAGS " --epochs 1 --out %s/nan", m.mpi, m.dir);
    char *log = mp_log(&m);
    const char *msg = "error: loss is NaN at epoch 1 step 3; last good checkpoint: none";
    const char *first = strstr(log, msg);
    ck_assert_msg(rc == 1 && first && !strstr(first + 1, msg), "status %d:\n%s", rc, log);
    ck_assert(!mp_exists(&m, "nan/last.safetensors"));
    free(log);
    tu_rmrf(m.dir);
}
END_TEST

/* Rank 1 asks for another learning rate: refused at start, by name. */
START_TEST(mismatch_refused)
{
    Mp m;
    const char *why = mp_setup(&m);
    if (why)
        TEST_SKIP("%s", why);
    int rc = mp_sh(&m, 60, "mpirun --oversubscribe -np 1 %s " MP_FLAGS " --epochs 1 --out "
                   "%s/mm : -np 1 %s " MP_FLAGS " --epochs 1 --out %s/mm --lr 0.2",
                   m.mpi, m.dir, m.mpi, m.dir);
    char *log = mp_log(&m);
    ck_assert_msg(rc != 0 && rc != 124 && strstr(log, "ranks disagree") &&
                  strstr(log, "rank 1 differs from rank 0"), "status %d:\n%s", rc, log);
    ck_assert(!mp_exists(&m, "mm/last.safetensors"));
    free(log);
    tu_rmrf(m.dir);
}
END_TEST

/* --- synchronised BN without MPI --------------------------------------------
 * Two threads play two ranks: each runs the BN kernels on its slice of the
 * batch with a ctx->sync whose sum meets the other thread at a barrier and
 * adds both buffers in rank order. */

typedef struct {
    pthread_barrier_t bar;
    double *slot[2];
} BnShared;

typedef struct {
    RtSync base;            /* first: the kernels hand back &base */
    BnShared *sh;
    int rank;
} BnRank;

static void bn_fake_sum(RtSync *s, double *buf, size_t n)
{
    BnRank *r = (BnRank *)(void *)s;
    r->sh->slot[r->rank] = buf;
    pthread_barrier_wait(&r->sh->bar);
    double *sum = malloc(n * sizeof *sum);
    for (size_t i = 0; sum && i < n; i++)
        sum[i] = r->sh->slot[0][i] + r->sh->slot[1][i];
    pthread_barrier_wait(&r->sh->bar);   /* both have read both buffers */
    if (sum)
        memcpy(buf, sum, n * sizeof *buf);
    free(sum);
}

enum { BN_B = 7, BN_C = 3, BN_HW = 5, BN_CX = BN_C + 2 };

typedef struct {
    BnRank sync;
    int off, nb, fused;     /* fused: the BN+ReLU kernels instead of the BN pair; 2: their
                             * strided forms on a prefix of BN_CX channels */
    const double *in, *dout, *gamma, *beta;
    double out[BN_B * BN_C * BN_HW], din[BN_B * BN_C * BN_HW];
    double mean[BN_C], rstd[BN_C], rm[BN_C], rv[BN_C], dg[BN_C], db[BN_C];
    double inx[BN_B * BN_CX * BN_HW], dinx[BN_B * BN_CX * BN_HW];  /* fused == 2 */
} BnJob;

static void *bn_rank_main(void *arg)
{
    BnJob *j = arg;
    RtCtx ctx = {0};
    ctx.threads = 1;
    ctx.sync = &j->sync.base;
    size_t o = (size_t)j->off * BN_C * BN_HW, xs = (size_t)BN_CX * BN_HW;
    if (j->fused == 2) {    /* the slice's images as prefixes of wider ones; -9 past them */
        for (size_t i = 0; i < (size_t)j->nb * xs; i++)
            j->inx[i] = j->dinx[i] = -9;
        for (int b = 0; b < j->nb; b++)
            memcpy(j->inx + b * xs, j->in + o + (size_t)b * BN_C * BN_HW,
                   sizeof(double) * BN_C * BN_HW);
        rt_bn_relu_forward_train_strided_d(&ctx, j->out, j->mean, j->rstd, j->rm, j->rv,
                                           j->inx, j->gamma, j->beta, j->nb, BN_C, BN_HW, 0.1,
                                           1e-5, 0, xs);
        rt_bn_relu_backward_strided_d(&ctx, j->dinx, 0, j->dg, j->db, j->dout + o, j->out,
                                      j->inx, j->mean, j->rstd, j->gamma, j->beta, j->nb, BN_C,
                                      BN_HW, 0, xs);
        for (int b = 0; b < j->nb; b++) {
            memcpy(j->din + (size_t)b * BN_C * BN_HW, j->dinx + b * xs,
                   sizeof(double) * BN_C * BN_HW);
            for (size_t i = (size_t)BN_C * BN_HW; i < xs; i++)
                if (j->dinx[b * xs + i] != -9)
                    j->din[0] = NAN;    /* wrote past the prefix: fails the comparison */
        }
        return NULL;
    }
    if (j->fused) {
        rt_bn_relu_forward_train_d(&ctx, j->out, j->mean, j->rstd, j->rm, j->rv, j->in + o,
                                   j->gamma, j->beta, j->nb, BN_C, BN_HW, 0.1, 1e-5, 0);
        rt_bn_relu_backward_d(&ctx, j->din, 0, j->dg, j->db, j->dout + o, j->out, j->in + o,
                              j->mean, j->rstd, j->gamma, j->beta, j->nb, BN_C, BN_HW, 0);
        return NULL;
    }
    rt_bn_forward_train_d(&ctx, j->out, j->mean, j->rstd, j->rm, j->rv, j->in + o, j->gamma,
                          j->beta, j->nb, BN_C, BN_HW, 0.1, 1e-5);
    rt_bn_backward_d(&ctx, j->din, 0, j->dg, j->db, j->dout + o, j->in + o, j->mean, j->rstd,
                     j->gamma, j->nb, BN_C, BN_HW);
    return NULL;
}

static void sync_bn_check(int fused)
{
    enum { N = BN_B * BN_C * BN_HW };
    static double in[N], dout[N], out[N], din[N];
    double gamma[BN_C], beta[BN_C], mean[BN_C], rstd[BN_C], rm[BN_C], rv[BN_C];
    double dg[BN_C] = {0}, db[BN_C] = {0};
    RtRng rng;
    rt_rng_seed(&rng, 11);
    for (int i = 0; i < N; i++) {
        in[i] = 3.0 + 2.0 * rt_rng_normal(&rng);     /* a mean well away from 0 */
        dout[i] = rt_rng_normal(&rng);
    }
    for (int c = 0; c < BN_C; c++) {
        gamma[c] = 1.0 + 0.3 * rt_rng_normal(&rng);
        beta[c] = 0.2 * rt_rng_normal(&rng);
        rm[c] = 0.5;
        rv[c] = 2.0;
    }
    RtCtx one = {0};
    one.threads = 1;
    if (fused) {
        rt_bn_relu_forward_train_d(&one, out, mean, rstd, rm, rv, in, gamma, beta, BN_B, BN_C,
                                   BN_HW, 0.1, 1e-5, 0);
        rt_bn_relu_backward_d(&one, din, 0, dg, db, dout, out, in, mean, rstd, gamma, beta,
                              BN_B, BN_C, BN_HW, 0);
    } else {
        rt_bn_forward_train_d(&one, out, mean, rstd, rm, rv, in, gamma, beta, BN_B, BN_C,
                              BN_HW, 0.1, 1e-5);
        rt_bn_backward_d(&one, din, 0, dg, db, dout, in, mean, rstd, gamma, BN_B, BN_C, BN_HW);
    }

    BnShared sh;
    ck_assert_int_eq(pthread_barrier_init(&sh.bar, NULL, 2), 0);
    static BnJob job[2];
    memset(job, 0, sizeof job);
    int nbs[2] = {4, 3};                /* uneven slices, as rt_mpi_slice cuts 7 over 2 */
    for (int r = 0; r < 2; r++) {
        job[r].sync.base.sum = bn_fake_sum;
        if (r == 0) {   /* rank 0 with the driver's workspace, rank 1 allocating */
            static double work[2 * BN_C + 1];
            job[r].sync.base.work = work;
            job[r].sync.base.work_len = 2 * BN_C + 1;
        }
        job[r].sync.sh = &sh;
        job[r].sync.rank = r;
        job[r].off = r ? nbs[0] : 0;
        job[r].nb = nbs[r];
        job[r].fused = fused;
        job[r].in = in;
        job[r].dout = dout;
        job[r].gamma = gamma;
        job[r].beta = beta;
        for (int c = 0; c < BN_C; c++) {
            job[r].rm[c] = 0.5;
            job[r].rv[c] = 2.0;
        }
    }
    pthread_t th[2];
    for (int r = 0; r < 2; r++)
        ck_assert_int_eq(pthread_create(&th[r], NULL, bn_rank_main, &job[r]), 0);
    for (int r = 0; r < 2; r++)
        ck_assert_int_eq(pthread_join(th[r], NULL), 0);
    pthread_barrier_destroy(&sh.bar);

    const double tol = 1e-12;
    for (int r = 0; r < 2; r++) {
        size_t o = (size_t)job[r].off * BN_C * BN_HW, n = (size_t)job[r].nb * BN_C * BN_HW;
        for (size_t i = 0; i < n; i++) {
            ck_assert_double_eq_tol(job[r].out[i], out[o + i], tol);
            ck_assert_double_eq_tol(job[r].din[i], din[o + i], tol);
        }
        for (int c = 0; c < BN_C; c++) {
            ck_assert_double_eq_tol(job[r].mean[c], mean[c], tol);
            ck_assert_double_eq_tol(job[r].rstd[c], rstd[c], tol);
            ck_assert_double_eq_tol(job[r].rm[c], rm[c], tol);
            ck_assert_double_eq_tol(job[r].rv[c], rv[c], tol);   /* unbiased, global count */
        }
    }
    for (int c = 0; c < BN_C; c++) {   /* parameter gradients: each rank its own share */
        ck_assert_double_eq_tol(job[0].dg[c] + job[1].dg[c], dg[c], tol);
        ck_assert_double_eq_tol(job[0].db[c] + job[1].db[c], db[c], tol);
        ck_assert(fabs(job[0].db[c] - db[c]) > 1e-6);   /* not the whole batch's */
    }
}

START_TEST(sync_bn_two_threads)
{
    sync_bn_check(0);
}
END_TEST

/* The fused BN+ReLU under ctx->sync: relu's mask applied inside the
 * synchronised BN backward. */
START_TEST(sync_bn_relu_two_threads)
{
    sync_bn_check(1);
    sync_bn_check(2);   /* the strided forms: a dense stage's state read in place */
}
END_TEST

static Suite *mpi_suite(void)
{
    Suite *s = suite_create("mpi");
    TCase *tk = tcase_create("no_mpi");
    tcase_add_test(tk, sync_bn_two_threads);
    tcase_add_test(tk, sync_bn_relu_two_threads);
    tcase_add_test(tk, build_without_mpi_refused);
    suite_add_tcase(s, tk);
    TCase *tc = tcase_create("mpirun");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, plain_runtime_mpi_free);
    tcase_add_test(tc, matches_one_process);
    tcase_add_test(tc, bit_identical);
    tcase_add_test(tc, resume_other_n);
    tcase_add_test(tc, killed_rank);
    tcase_add_test(tc, sigint_to_mpirun);
    tcase_add_test(tc, mismatch_refused);
    tcase_add_test(tc, nan_stops_every_rank);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(mpi_suite)
