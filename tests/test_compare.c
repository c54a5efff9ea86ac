/* test_compare.c — optc compare end to end on the synthetic data set: two
 * tiny specs, one epoch, two seeds. The table and summary.csv hold both,
 * a second run trains nothing again (the run files keep their mtimes),
 * and bad input gets the documented exit codes. */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"
#include "tmain.h"

static char tmpdir[PATH_MAX];

static const char spec_a[] =
    "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
    "network tiny { input 1x28x28; classes 10; stem conv3x3(4);\n"
    "  grad = bn, relu, conv3x3; stage gd steps 1 width 4; head bn, relu, gap, linear;\n"
    "  train { epochs 1; batch 32; lr 0.05; } }\n";
static const char spec_b[] =
    "optimizer hb(beta = 0.5) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
    "network tiny { input 1x28x28; classes 10; stem conv3x3(4);\n"
    "  grad = bn, relu, conv3x3; stage hb steps 2 width 4; head bn, relu, gap, linear;\n"
    "  train { epochs 1; batch 32; lr 0.05; } }\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* optc build must find optc.flags: the test binary lives in BUILD/tests. */
static void setup(void)
{
    if (!getenv("OPTC_FLAGS")) {
        char exe[PATH_MAX], flags[PATH_MAX + 32];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        ck_assert(n > 0);
        exe[n] = 0;
        *strrchr(exe, '/') = 0;
        snprintf(flags, sizeof flags, "%s/../optc.flags", exe);
        setenv("OPTC_FLAGS", flags, 1);
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/optc_compare_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Mutable copies of a NULL-terminated list (cmd_compare takes char **). */
static char pool[32][PATH_MAX + 64];
static char *pargv[33];
static char **mkargv(const char *const *list, int *argc)
{
    int n = 0;
    for (; list[n]; n++) {
        snprintf(pool[n], sizeof pool[n], "%s", list[n]);
        pargv[n] = pool[n];
    }
    pargv[n] = NULL;
    *argc = n;
    return pargv;
}

/* Run cmd_compare with stdout captured into OUT/stdout.txt. */
static int run_compare(const char *const *list, const char *capture)
{
    int argc;
    char **argv = mkargv(list, &argc);
    fflush(stdout);
    int saved = dup(1);
    int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    int rc = cmd_compare(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

static long mtime_ns(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return (long)st.st_mtim.tv_sec * 1000000000L + st.st_mtim.tv_nsec;
}

START_TEST(two_specs_two_seeds)
{
    char a[PATH_MAX + 16], b[PATH_MAX + 16], out[PATH_MAX + 16], cap[PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/gd_tiny.opt", tmpdir);
    snprintf(b, sizeof b, "%s/hb_tiny.opt", tmpdir);
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(cap, sizeof cap, "%s/stdout.txt", tmpdir);
    write_file(a, spec_a);
    write_file(b, spec_b);
    const char *argv[] = {"compare", a, b, "--data", "synthetic", "--epochs", "1", "--seeds", "2",
                    "--limit", "256", "--test-limit", "128", "--threads", "1", "--out", out,
                    "--", "--quiet", NULL};
    ck_assert_int_eq(run_compare(argv, cap), 0);
    const char *txt = read_file(cap);
    ck_assert_ptr_nonnull(txt);
    ck_assert_ptr_nonnull(strstr(txt, "test acc"));
    ck_assert_ptr_nonnull(strstr(txt, "gd_tiny"));
    ck_assert_ptr_nonnull(strstr(txt, "hb_tiny"));
    ck_assert_ptr_nonnull(strstr(txt, "(2 seeds)"));
    ck_assert_ptr_null(strstr(txt, "not trained again"));

    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/summary.csv", out);
    const char *csv = read_file(path);
    ck_assert_ptr_nonnull(csv);
    int lines = 0;
    for (const char *p = csv; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, 3);     /* header + one row per spec */
    ck_assert_ptr_nonnull(strstr(csv, "\ngd_tiny,"));
    ck_assert_ptr_nonnull(strstr(csv, "\nhb_tiny,"));
    ck_assert_ptr_nonnull(strstr(csv, ",2,"));  /* seeds column */
    snprintf(path, sizeof path, "%s/curves.dat", out);
    ck_assert_ptr_nonnull(read_file(path));

    /* Again: everything is done, so nothing is trained or rebuilt. */
    snprintf(path, sizeof path, "%s/hb_tiny/seed2/summary.json", out);
    long t0 = mtime_ns(path);
    char logp[PATH_MAX + 64];
    snprintf(logp, sizeof logp, "%s/gd_tiny/seed1/log.csv", out);
    long l0 = mtime_ns(logp);
    ck_assert(t0 > 0 && l0 > 0);
    ck_assert_int_eq(run_compare(argv, cap), 0);
    txt = read_file(cap);
    ck_assert_ptr_nonnull(strstr(txt, "run 4/4: hb_tiny seed 2: done before, not trained again"));
    ck_assert_ptr_null(strstr(txt, "[compare] build"));
    ck_assert_int_eq(mtime_ns(path), t0);
    ck_assert_int_eq(mtime_ns(logp), l0);

    /* A lost run is trained again, and only that one (here with --jobs 2,
     * whose runs write their output to train.out). */
    ck_assert_int_eq(unlink(path), 0);
    const char *argv2[] = {"compare", a, b, "--data", "synthetic", "--epochs", "1", "--seeds",
                           "2", "--limit", "256", "--test-limit", "128", "--threads", "1",
                           "--jobs", "2", "--out", out, "--", "--quiet", NULL};
    ck_assert_int_eq(run_compare(argv2, cap), 0);
    txt = read_file(cap);
    ck_assert_ptr_nonnull(strstr(txt, "run 4/4: hb_tiny seed 2 (started"));
    ck_assert_ptr_nonnull(strstr(txt, "run 4/4: hb_tiny seed 2 finished"));
    ck_assert_ptr_nonnull(strstr(txt, "run 1/4: gd_tiny seed 1: done before"));
    ck_assert(mtime_ns(path) > 0);
    ck_assert_int_eq(mtime_ns(logp), l0);
}
END_TEST

START_TEST(exit_codes)
{
    char out[PATH_MAX + 16], cap[PATH_MAX + 32], missing[PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(cap, sizeof cap, "%s/stdout.txt", tmpdir);
    snprintf(missing, sizeof missing, "%s/missing.opt", tmpdir);
    const char *none[] = {"compare", NULL};
    ck_assert_int_eq(run_compare(none, cap), 2);
    const char *badflag[] = {"compare", missing, "--frobnicate", "1", NULL};
    ck_assert_int_eq(run_compare(badflag, cap), 2);
    const char *badseeds[] = {"compare", missing, "--seeds", "zero", NULL};
    ck_assert_int_eq(run_compare(badseeds, cap), 2);
    const char *badD[] = {"compare", missing, "-D", "novalue", NULL};
    ck_assert_int_eq(run_compare(badD, cap), 2);
    const char *help[] = {"compare", "--help", NULL};
    ck_assert_int_eq(run_compare(help, cap), 0);
    ck_assert_ptr_nonnull(strstr(read_file(cap), "usage: optc compare"));
    /* A spec that does not exist is a user error: exit 1, a row saying so. */
    const char *nofile[] = {"compare", missing, "--data", "synthetic", "--out", out, NULL};
    ck_assert_int_eq(run_compare(nofile, cap), 1);
    ck_assert_ptr_nonnull(strstr(read_file(cap), "no finished run"));
}
END_TEST

static Suite *compare_suite(void)
{
    Suite *s = suite_create("compare");
    TCase *tc = tcase_create("compare");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, two_specs_two_seeds);
    tcase_add_test(tc, exit_codes);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(compare_suite)
