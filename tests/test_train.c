/* test_train.c — the hand-assembled network of handnet.h trained through
 * rt_main on 2,000 real Fashion-MNIST images must exceed 80 % accuracy on
 * 1,000 test images. rt_main runs in a forked child so that the test process
 * never starts OpenMP threads itself (fork after OpenMP is unsafe). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handnet.h"
#include "testutil.h"
#include "tmain.h"

static double json_num(const char *s, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

START_TEST(trains_fashion_mnist)
{
    char dir[4096], out[4200], path[4300];
    tu_tmpdir(dir, sizeof dir, "train");
    snprintf(out, sizeof out, "%s/run", dir);
    /* Fewer epochs under the sanitizers keep the run short there; the
     * accuracy bar is checked in the plain build. */
    int san = tu_sanitized();
    const char *args[] = {"handnet", "train", "--limit", "2000", "--test-limit", "1000",
                    "--epochs", san ? "1" : "6", "--threads", "1", "--seed", "1",
                    "--out", out, "--quiet", NULL};
    ck_assert_int_eq(hn_run(&handnet, args), 0);
    snprintf(path, sizeof path, "%s/summary.json", out);
    char *s = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(s);
    double acc = json_num(s, "test_acc");
    if (!san)
        ck_assert_msg(acc > 0.80, "test accuracy %.4f <= 0.80; summary: %s", acc, s);
    else
        ck_assert_msg(acc > 0.5, "test accuracy %.4f <= 0.5 after one epoch; summary: %s", acc, s);
    ck_assert_int_eq((int)json_num(s, "params"), HN_NPARAMS);
    free(s);
    /* one CSV line per epoch after the header */
    snprintf(path, sizeof path, "%s/log.csv", out);
    s = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(s);
    const char *header =
        "epoch,lr,train_loss,train_acc,test_loss,test_acc,images_per_s,seconds\n";
    ck_assert(strncmp(s, header, strlen(header)) == 0);
    free(s);
    ck_assert_int_eq(tu_count_lines(path), san ? 2 : 7);
    tu_rmrf(dir);
}
END_TEST

#ifndef __SANITIZE_ADDRESS__
/* Allocation calls made by optc's own code: the runtime is linked into this
 * executable, while libc, libgomp and OpenBLAS are shared libraries, so a
 * call whose return address lies in this executable's text is ours (libgomp
 * allocates a team per one-thread region, which is not the runtime's
 * doing). Under AddressSanitizer malloc is its own and the test is skipped. */
extern char __executable_start[], etext[];
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
static long own_allocs;

static void count_alloc(const void *ra)
{
    if ((const char *)ra >= __executable_start && (const char *)ra < etext)
        own_allocs++;
}

void *malloc(size_t n)
{
    count_alloc(__builtin_return_address(0));
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    count_alloc(__builtin_return_address(0));
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    count_alloc(__builtin_return_address(0));
    return __libc_realloc(p, n);
}

/* rt_main(args) in a child; the runtime's allocation calls, or -1. */
static long allocs_of_run(const char *const *args)
{
    int argc = 0, fd[2];
    while (args[argc])
        argc++;
    if (pipe(fd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        if (!freopen("/dev/null", "w", stdout))
            _exit(98);
        char *argv[32];
        for (int i = 0; i < argc && i < 31; i++)
            argv[i] = (char *)(uintptr_t)args[i];
        argv[argc < 31 ? argc : 31] = NULL;
        own_allocs = 0;
        int rc = rt_main(&handnet, argc, argv);
        long n = rc == 0 ? own_allocs : -1;
        _exit(write(fd[1], &n, sizeof n) == (ssize_t)sizeof n ? rc : 97);
    }
    close(fd[1]);
    long n = -1;
    if (read(fd[0], &n, sizeof n) != (ssize_t)sizeof n)
        n = -1;
    close(fd[0]);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return n;
}
#endif

/* A training step allocates nothing (DESIGN section 3): one epoch of 4 steps
 * and one of 8 (same test set, same checkpoints) make as many allocation
 * calls, on 1 and on 2 threads. */
START_TEST(train_step_allocates_nothing)
{
#ifdef __SANITIZE_ADDRESS__
    TEST_SKIP("under AddressSanitizer malloc cannot be counted by interposition");
#else
    char dir[2048], out[2100];
    tu_tmpdir(dir, sizeof dir, "trainalloc");
    snprintf(out, sizeof out, "%s/run", dir);
    const char *threads[2] = {"1", "2"};
    for (int t = 0; t < 2; t++) {
        long n[2];
        for (int k = 0; k < 2; k++) {
            const char *args[] = {"handnet", "train", "--limit", k ? "512" : "256",
                                  "--test-limit", "100", "--batch", "64", "--epochs", "1",
                                  "--threads", threads[t], "--seed", "1", "--out", out,
                                  "--quiet", NULL};
            n[k] = allocs_of_run(args);
            ck_assert_msg(n[k] >= 0, "training run failed (threads %s)", threads[t]);
            tu_rmrf(out);
        }
        ck_assert_msg(n[0] > 0, "no allocation counted at all: the counter is not working");
        ck_assert_msg(n[1] == n[0], "threads %s: %ld allocation calls for 4 steps, %ld for 8",
                      threads[t], n[0], n[1]);
    }
    tu_rmrf(dir);
#endif
}
END_TEST

static Suite *train_suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("fashion-mnist");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, trains_fashion_mnist);
    suite_add_tcase(s, tc);
    tc = tcase_create("allocations");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, train_step_allocates_nothing);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(train_suite)
