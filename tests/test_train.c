/* test_train.c — the hand-assembled network of handnet.h trained through
 * rt_main on 2,000 real Fashion-MNIST images must exceed 80 % accuracy on
 * 1,000 test images. rt_main runs in a forked child so that the test process
 * never starts OpenMP threads itself (fork after OpenMP is unsafe). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handnet.h"
#include "tmain.h"

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

static double json_num(const char *s, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

START_TEST(trains_fashion_mnist)
{
    char dir[] = "/tmp/optc-train-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char out[128], path[256];
    snprintf(out, sizeof out, "%s/run", dir);
    /* Fewer epochs under the sanitizers keep the run short there; the
     * accuracy bar is checked in the plain build. */
    int san = getenv("OPTC_SANITIZED") != NULL;
    const char *args[] = {"handnet", "train", "--limit", "2000", "--test-limit", "1000",
                    "--epochs", san ? "1" : "6", "--threads", "1", "--seed", "1",
                    "--out", out, "--quiet", NULL};
    ck_assert_int_eq(hn_run(&handnet, args), 0);
    snprintf(path, sizeof path, "%s/summary.json", out);
    char *s = slurp(path);
    ck_assert_ptr_nonnull(s);
    double acc = json_num(s, "test_acc");
    fprintf(stderr, "test_train: %s", s);
    if (!san)
        ck_assert_msg(acc > 0.80, "test accuracy %.4f <= 0.80", acc);
    else
        ck_assert_msg(acc > 0.5, "test accuracy %.4f <= 0.5 after one epoch", acc);
    ck_assert_int_eq((int)json_num(s, "params"), HN_NPARAMS);
    /* one CSV line per epoch after the header */
    snprintf(path, sizeof path, "%s/log.csv", out);
    s = slurp(path);
    ck_assert_ptr_nonnull(s);
    ck_assert(strncmp(s, "epoch,lr,train_loss,train_acc,test_loss,test_acc,images_per_s,seconds\n",
                      70) == 0);
    int lines = 0;
    for (char *p = s; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, san ? 2 : 7);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(path), 0);
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
