/* test_train.c — the hand-assembled network of handnet.h trained through
 * rt_main on 2,000 real Fashion-MNIST images must exceed 80 % accuracy on
 * 1,000 test images. rt_main runs in a forked child so that the test process
 * never starts OpenMP threads itself (fork after OpenMP is unsafe). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static Suite *train_suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("fashion-mnist");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, trains_fashion_mnist);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(train_suite)
