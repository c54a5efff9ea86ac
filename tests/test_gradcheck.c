/* test_gradcheck.c — the gradcheck command on whole networks.
 *
 * - Every example network is built with $OPTC_BUILD/optc build and passes
 *   `NET gradcheck`: the Fashion-MNIST ResNet-20 family and the theory nets
 *   at batches 1 2 4 8 and seeds 1 2 3, the others (CIFAR, DenseNet-BC-100)
 *   at batch 2 seed 1, ResNet-20 CIFAR at batch 2 and seeds 1 2 3 on every
 *   tensor (it failed before branches were frozen: one relu input within
 *   1e-6 of its kink). Runs sample one coordinate and one random direction
 *   per tensor, on a few random tensors except where said; float vs double
 *   always covers every tensor. `make gradcheck-all` runs the whole matrix
 *   on every network.
 * - Planted bugs are caught at every seed: the hand net with a BN input
 *   gradient 1 % off, a sum coefficient's gradient dropped, a conv weight
 *   gradient missing an image (tests/plantnet.c, $OPTC_BUILD/plant/), and
 *   the same program without a bug passes.
 * Programs run as child processes, two at a time (the machine's cores);
 * each run's output is kept in a scratch directory and its closing line
 * parsed. Under the sanitizers (OPTC_SANITIZED) only the planted bugs and
 * the first point of the small networks run. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"
#include "tmain.h"

#define PAR 2            /* child processes at a time */
#define MAXJOBS 16

typedef struct {
    char cmd[1024];
    char out[512];
    int rc;              /* exit status; -1: did not exit normally */
} Job;

/* Run every job's command (sh -c, output to its out file), at most PAR at
 * a time, and record each exit status. */
static void run_jobs(Job *jobs, int n)
{
    pid_t pids[MAXJOBS];
    int next = 0, running = 0;
    ck_assert_int_le(n, MAXJOBS);
    fflush(NULL);
    while (next < n || running > 0) {
        if (next < n && running < PAR) {
            char full[1700];
            snprintf(full, sizeof full, "%s > '%s' 2>&1", jobs[next].cmd, jobs[next].out);
            pid_t pid = fork();
            ck_assert_int_ge(pid, 0);
            if (pid == 0) {
                execl("/bin/sh", "sh", "-c", full, (char *)NULL);
                _exit(127);
            }
            pids[next++] = pid;
            running++;
            continue;
        }
        int st = 0;
        pid_t pid = waitpid(-1, &st, 0);
        ck_assert_msg(pid > 0, "waitpid: %s", strerror(errno));
        for (int i = 0; i < next; i++)
            if (pids[i] == pid) {
                jobs[i].rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
                running--;
            }
    }
}

/* The value after "key=" in s, or -1 when absent. */
static double field(const char *s, const char *key)
{
    const char *p = s ? strstr(s, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : -1;
}

/* --- every example network ---------------------------------------------- */

typedef enum { PTS_MATRIX, PTS_ONE, PTS_SEEDS } Points;

typedef struct {
    const char *spec, *net;
    Points points;      /* MATRIX: batches 1 2 4 8 x seeds 1 2 3; ONE: batch 2 seed 1;
                           SEEDS: batch 2, seeds 1 2 3 */
    const char *args;
} GcNet;

#define FEW "--samples 1 --tensors 3"
static const GcNet nets[] = {
    {"resnet.opt", "resnet20_fmnist", PTS_MATRIX, FEW},
    {"heavy_ball.opt", "hb20_fmnist", PTS_MATRIX, FEW},
    {"lm.opt", "lm20_fmnist", PTS_MATRIX, FEW},
    {"momentum.opt", "momentum20_fmnist", PTS_MATRIX, FEW},
    {"nesterov.opt", "nesterov20_fmnist", PTS_MATRIX, FEW},
    {"theory.opt", "theory_gd_fmnist", PTS_MATRIX, "--samples 2"},
    {"theory.opt", "theory_hb_fmnist", PTS_MATRIX, "--samples 2"},
    {"theory.opt", "theory_gd_cifar", PTS_MATRIX, "--samples 2"},
    {"resnet.opt", "resnet20_cifar", PTS_SEEDS, "--samples 1"},
    {"densenet.opt", "densenet_bc100_fmnist", PTS_ONE, FEW},
    {"resnet.opt", "resnet56_cifar", PTS_ONE, FEW},
    {"resnet.opt", "resnet110_cifar", PTS_ONE, FEW},
    {"densenet.opt", "densenet_bc100_cifar", PTS_ONE, FEW},
    {"heavy_ball.opt", "hb20_cifar", PTS_ONE, FEW},
    {"lm.opt", "lm20_cifar", PTS_ONE, FEW},
    {"momentum.opt", "momentum20_cifar", PTS_ONE, FEW},
    {"nesterov.opt", "nesterov20_cifar", PTS_ONE, FEW},
};
#define NNETS ((int)(sizeof nets / sizeof nets[0]))

START_TEST(test_example_net)
{
    const GcNet *n = &nets[_i];
    int san = tu_sanitized();
    if (san && n->points != PTS_MATRIX)
        TEST_SKIP("gradcheck %s: under the sanitizers (too slow)", n->net);
    char dir[256], prog[600];
    tu_tmpdir(dir, sizeof dir, "gradcheck");
    snprintf(prog, sizeof prog, "%s/%s", dir, n->net);
    Job build = {.rc = -1};
    snprintf(build.cmd, sizeof build.cmd, "'%s/optc' build examples/%s -n %s -o '%s'",
             tu_build_dir(), n->spec, n->net, prog);
    snprintf(build.out, sizeof build.out, "%s/build.txt", dir);
    run_jobs(&build, 1);
    char *log = tu_slurp(build.out, NULL);
    ck_assert_msg(build.rc == 0, "%s failed: %s", build.cmd, log ? log : "");
    free(log);

    static const int batches[] = {1, 2, 4, 8};
    Job jobs[MAXJOBS];
    int nj = 0;
    for (int bi = 0; bi < 4; bi++)
        for (int seed = 1; seed <= 3; seed++) {
            if (n->points != PTS_MATRIX && batches[bi] != 2)
                continue;
            if ((n->points == PTS_ONE || san) && seed != 1)
                continue;
            if (san && batches[bi] != 2)
                continue;
            Job *j = &jobs[nj++];
            j->rc = -1;
            snprintf(j->cmd, sizeof j->cmd, "'%s' gradcheck --batch %d --seed %d --threads 1 %s",
                     prog, batches[bi], seed, n->args);
            snprintf(j->out, sizeof j->out, "%s/b%d.s%d.txt", dir, batches[bi], seed);
        }
    run_jobs(jobs, nj);
    double fd = 0, dirv = 0, fl = 0;
    int kinks = 0, failed = 0;
    for (int k = 0; k < nj; k++) {
        char *out = tu_slurp(jobs[k].out, NULL);
        ck_assert_ptr_nonnull(out);
        const char *close = strstr(out, "\ngradcheck: passed");
        const char *kl = strstr(out, "\ngradcheck: kinks: ");
        if (jobs[k].rc != 0 || !close || !kl) {
            fprintf(stderr, "%s:\n%s\n", jobs[k].cmd, out);
            failed++;
        } else {
            fd = fmax(fd, field(close, "fd_rel_err="));
            dirv = fmax(dirv, field(close, "dir_rel_err="));
            fl = fmax(fl, field(close, "float_rel_err="));
            kinks += atoi(kl + strlen("\ngradcheck: kinks: "));
        }
        free(out);
    }
    printf("gradcheck %-22s %2d runs: max fd_rel_err %.3e dir_rel_err %.3e "
           "float_rel_err %.3e; %d evaluations crossed a kink (frozen)\n",
           n->net, nj, fd, dirv, fl, kinks);
    tu_rmrf(dir);
    ck_assert_msg(failed == 0, "%s: %d of %d gradchecks failed (output above)", n->net, failed,
                  nj);
    /* the tolerances gradcheck applied, restated: a parse that found
     * nothing (-1) or a laxer binary fails here */
    ck_assert(fd >= 0 && fd <= 1e-6 && dirv >= 0 && dirv <= 1e-6);
    ck_assert(fl >= 0 && fl <= 1e-4);
}
END_TEST

/* --- planted bugs --------------------------------------------------------- */

/* handnet_0 has no bug and must pass; handnet_1..3 (tests/plantnet.c) must
 * fail at each of seeds 1 2 3, on the tensors the bug reaches. */
START_TEST(test_planted)
{
    int plant = _i;
    static const char *const culprit[] = {NULL, "\nbn1.weight ", "\nalpha ",
                                          "\nconv2.weight "};
    char dir[256];
    tu_tmpdir(dir, sizeof dir, "plant");
    Job jobs[3];
    for (int s = 0; s < 3; s++) {
        jobs[s].rc = -1;
        snprintf(jobs[s].cmd, sizeof jobs[s].cmd,
                 "'%s/plant/handnet_%d' gradcheck --batch 2 --seed %d --samples 2 --threads 1",
                 tu_build_dir(), plant, s + 1);
        snprintf(jobs[s].out, sizeof jobs[s].out, "%s/s%d.txt", dir, s + 1);
    }
    run_jobs(jobs, 3);
    for (int s = 0; s < 3; s++) {
        char *out = tu_slurp(jobs[s].out, NULL);
        ck_assert_ptr_nonnull(out);
        if (plant == 0) {
            ck_assert_msg(jobs[s].rc == 0 && strstr(out, "\ngradcheck: passed"),
                          "the unplanted hand net failed:\n%s", out);
        } else {
            ck_assert_msg(jobs[s].rc == 1 && strstr(out, "\ngradcheck: FAILED"),
                          "plant %d, seed %d not caught:\n%s", plant, s + 1, out);
            /* the culprit's row ends in "  FAIL" */
            const char *row = strstr(out, culprit[plant]);
            const char *fail = row ? strstr(row, "  FAIL\n") : NULL;
            ck_assert_msg(fail && fail < strchr(row + 1, '\n'),
                          "plant %d, seed %d: %s does not fail:\n%s", plant, s + 1,
                          culprit[plant] + 1, out);
        }
        free(out);
    }
    tu_rmrf(dir);
}
END_TEST

static Suite *gradcheck_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tp = tcase_create("planted");
    tcase_set_timeout(tp, 300);
    tcase_add_loop_test(tp, test_planted, 0, 4);
    suite_add_tcase(s, tp);
    TCase *tn = tcase_create("examples");
    tcase_set_timeout(tn, 900);   /* a loaded machine; the whole case takes ~3 min on 2 cores */
    tcase_add_loop_test(tn, test_example_net, 0, NNETS);
    suite_add_tcase(s, tn);
    return s;
}

TEST_MAIN(gradcheck_suite)
