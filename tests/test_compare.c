/* test_compare.c — optc compare end to end on the synthetic data set: two
 * tiny specs, one epoch, two seeds. The table and summary.csv hold both,
 * a second run trains nothing again (the run files keep their mtimes),
 * and bad input gets the documented exit codes. --sweep: the grid's labels
 * and count, the rate column equal to optc analyze's for each variant, the
 * CSV columns, the plots, and the errors naming a bad sweep. */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include "analyze.h"
#include "cli.h"
#include "testutil.h"
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

/* The whole file, valid until the next call (the tests read one file at a
 * time); NULL when missing. */
static char *read_file(const char *path)
{
    static char *last;
    free(last);
    return last = tu_slurp(path, NULL);
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
    tu_tmpdir(tmpdir, sizeof tmpdir, "compare");
}

static void teardown(void)
{
    tu_rmrf(tmpdir);
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

/* Run fn (a subcommand) with stdout captured into capture and, when errcap
 * is given, stderr into errcap. */
static int run_cmd(int (*fn)(int, char **), const char *const *list, const char *capture,
                   const char *errcap)
{
    int argc;
    char **argv = mkargv(list, &argc);
    fflush(stdout);
    fflush(stderr);
    int saved = dup(1), saved2 = dup(2);
    int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert(saved >= 0 && saved2 >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    if (errcap) {
        fd = open(errcap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ck_assert(fd >= 0);
        dup2(fd, 2);
        close(fd);
    }
    int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, 1);
    dup2(saved2, 2);
    close(saved);
    close(saved2);
    return rc;
}

/* Run cmd_compare with stdout captured into capture. */
static int run_compare(const char *const *list, const char *capture)
{
    return run_cmd(cmd_compare, list, capture, NULL);
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
    char err[PATH_MAX + 32];
    snprintf(err, sizeof err, "%s/stderr.txt", tmpdir);
    const char *none[] = {"compare", NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, none, cap, err), 2);
    const char *badflag[] = {"compare", missing, "--frobnicate", "1", NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, badflag, cap, err), 2);
    ck_assert_ptr_nonnull(strstr(read_file(err), "unknown flag '--frobnicate'"));
    const char *badseeds[] = {"compare", missing, "--seeds", "zero", NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, badseeds, cap, err), 2);
    const char *badD[] = {"compare", missing, "-D", "novalue", NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, badD, cap, err), 2);
    const char *help[] = {"compare", "--help", NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, help, cap, err), 0);
    ck_assert_ptr_nonnull(strstr(read_file(cap), "usage: optc compare"));
    /* A spec that does not exist is a user error: exit 1, a row saying so. */
    const char *nofile[] = {"compare", missing, "--data", "synthetic", "--out", out, NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, nofile, cap, err), 1);
    ck_assert_ptr_nonnull(strstr(read_file(cap), "no finished run"));
}
END_TEST

/* build_program, as compare calls it: diagnostics to the FILE given, the
 * program written, the command that rebuilds it recorded in the C. */
START_TEST(build_program_call)
{
    char b[PATH_MAX + 16], bin[PATH_MAX + 16], missing[PATH_MAX + 16];
    snprintf(b, sizeof b, "%s/hb_tiny.opt", tmpdir);
    snprintf(bin, sizeof bin, "%s/hb", tmpdir);
    snprintf(missing, sizeof missing, "%s/missing.opt", tmpdir);
    write_file(b, spec_b);
    char *msg = NULL;
    size_t msglen = 0;
    FILE *diag = open_memstream(&msg, &msglen);
    ck_assert_ptr_nonnull(diag);
    BuildRequest bad = { .spec = missing, .out = bin };
    ck_assert_int_eq(build_program(&bad, diag), 1);
    Define unknown = { "gamma", "1" };
    BuildRequest bad_def = { .spec = b, .defs = &unknown, .ndefs = 1, .out = bin };
    ck_assert_int_eq(build_program(&bad_def, diag), 1);
    fclose(diag);
    ck_assert_ptr_nonnull(strstr(msg, "missing.opt: error: cannot open"));
    ck_assert_ptr_nonnull(strstr(msg, "-D gamma matches no optimizer parameter or stage"));
    ck_assert_int_ne(access(bin, F_OK), 0);
    free(msg);

    Define beta = { "beta", "0.25" };
    BuildRequest ok = { .spec = b, .defs = &beta, .ndefs = 1, .out = bin, .keep_c = true };
    ck_assert_int_eq(build_program(&ok, stderr), 0);
    ck_assert_int_eq(access(bin, X_OK), 0);
    char cfile[PATH_MAX + 32], want[3 * PATH_MAX];
    snprintf(cfile, sizeof cfile, "%s.c", bin);
    snprintf(want, sizeof want, "optc build %s -D beta=0.25 -o %s --keep-c", b, bin);
    const char *c = read_file(cfile);
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(strstr(c, want), "no '%s' in the emitted C", want);
}
END_TEST

/* The grid of two sweeps over two specs, as --dry-run prints it: a spec
 * gets the product of the sweeps it has (gd has no beta), the first sweep
 * outermost, labels from the values; nothing is built. */
START_TEST(sweep_grid)
{
    char a[PATH_MAX + 16], b[PATH_MAX + 16], out[PATH_MAX + 16], cap[PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/gd_tiny.opt", tmpdir);
    snprintf(b, sizeof b, "%s/hb_tiny.opt", tmpdir);
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(cap, sizeof cap, "%s/stdout.txt", tmpdir);
    write_file(a, spec_a);
    write_file(b, spec_b);
    const char *argv[] = {"compare", a, b, "--sweep", "beta=0,0.5", "--sweep",
                          "stage1.steps=1,2", "--seeds", "3", "--out", out, "--dry-run", NULL};
    ck_assert_int_eq(run_compare(argv, cap), 0);
    const char *txt = read_file(cap);
    static const char *const want[] = {
        "gd_tiny.stage1.steps=1 ", "gd_tiny.stage1.steps=2 ",
        "hb_tiny.beta=0,stage1.steps=1 ", "hb_tiny.beta=0,stage1.steps=2 ",
        "hb_tiny.beta=0.5,stage1.steps=1 ", "hb_tiny.beta=0.5,stage1.steps=2 ",
    };
    const char *at = txt;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *p = strstr(txt, want[i]);
        ck_assert_msg(p != NULL, "no row %s in:\n%s", want[i], txt);
        ck_assert_msg(p > at, "row %s out of order", want[i]);
        at = p;
    }
    int rows = 0;
    for (const char *p = txt; (p = strstr(p, "(dry run)")); p++)
        rows++;
    ck_assert_int_eq(rows, 6);
    ck_assert_ptr_nonnull(strstr(txt, "dry run: 6 variants x 3 seeds = 18 runs"));
    ck_assert_ptr_nonnull(strstr(txt, "kappa = 100"));
    struct stat st;
    ck_assert_int_ne(stat(out, &st), 0);    /* a dry run writes nothing */
}
END_TEST

/* A bad sweep is refused before anything is built, naming what is wrong. */
START_TEST(sweep_errors)
{
    char a[PATH_MAX + 16], b[PATH_MAX + 16], out[PATH_MAX + 16], cap[PATH_MAX + 32],
        err[PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/gd_tiny.opt", tmpdir);
    snprintf(b, sizeof b, "%s/hb_tiny.opt", tmpdir);
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(cap, sizeof cap, "%s/stdout.txt", tmpdir);
    snprintf(err, sizeof err, "%s/stderr.txt", tmpdir);
    write_file(a, spec_a);
    write_file(b, spec_b);
    static const struct { const char *sweep; int rc; const char *msg; } cases[] = {
        { "gamma=1,2", 1, "--sweep gamma: no spec has an optimizer parameter or stage setting "
                          "named 'gamma'" },
        { "stage7.steps=1,2", 1, "named 'stage7.steps'" },
        { "beta=", 2, "--sweep beta: empty value list" },
        { "beta=0.5,,1", 2, "--sweep beta: empty value in the list" },
        { "=1,2", 2, "--sweep wants NAME=v1,v2,..., got '=1,2'" },
        { "stage1.steps=2,0", 1, "--sweep stage1.steps: " },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[] = {"compare", a, b, "--sweep", cases[i].sweep, "--data",
                              "synthetic", "--out", out, NULL};
        ck_assert_int_eq(run_cmd(cmd_compare, argv, cap, err), cases[i].rc);
        const char *txt = read_file(err);
        ck_assert_msg(strstr(txt, cases[i].msg), "--sweep %s: want '%s', got:\n%s",
                      cases[i].sweep, cases[i].msg, txt);
        ck_assert_ptr_null(strstr(read_file(cap), "[compare] build"));
    }
    /* the value a spec rejects is named, with the front end's message */
    const char *argv[] = {"compare", a, "--sweep", "stage1.steps=2,0", "--out", out, NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, argv, cap, err), 1);
    ck_assert_ptr_nonnull(strstr(read_file(err), "rejects the value '0'"));
    const char *twice[] = {"compare", b, "--sweep", "beta=1", "--sweep", "beta=2", NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, twice, cap, err), 2);
    ck_assert_ptr_nonnull(strstr(read_file(err), "--sweep beta given twice"));
    const char *both[] = {"compare", b, "-D", "beta=0.1", "--sweep", "beta=2", NULL};
    ck_assert_int_eq(run_cmd(cmd_compare, both, cap, err), 2);
    ck_assert_ptr_nonnull(strstr(read_file(err), "beta is both swept and set by -D"));
}
END_TEST

/* Split one CSV line (fields quoted when they hold commas) into f. */
static int csv_split(const char *line, char f[][128], int cap)
{
    int n = 0;
    const char *p = line;
    while (n < cap) {
        size_t k = 0;
        if (*p == '"') {
            for (p++; *p && !(*p == '"' && p[1] != '"'); p++) {
                if (*p == '"')
                    p++;
                if (k + 1 < 128)
                    f[n][k++] = *p;
            }
            if (*p == '"')
                p++;
        } else {
            for (; *p && *p != ',' && *p != '\n'; p++)
                if (k + 1 < 128)
                    f[n][k++] = *p;
        }
        f[n++][k] = 0;
        if (*p != ',')
            break;
        p++;
    }
    return n;
}

/* The rate optc analyze prints for optimizer opt of spec under -D def. */
static void analyze_rate_text(const char *spec, const char *opt, const char *def, char *rate,
                              size_t cap)
{
    char outp[PATH_MAX + 32];
    snprintf(outp, sizeof outp, "%s/analyze.txt", tmpdir);
    const char *with[] = {"analyze", spec, "-D", def, NULL};
    const char *without[] = {"analyze", spec, NULL};
    ck_assert_int_eq(run_cmd(cmd_analyze, def ? with : without, outp, NULL), 0);
    const char *txt = read_file(outp);
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s ", opt);
    const char *p = strstr(txt, pat);
    ck_assert_msg(p != NULL, "no row %s in:\n%s", opt, txt);
    char name[64], params[128];
    ck_assert_int_eq(sscanf(p + 1, "%63s %127s %31s", name, params, rate), 3);
    (void)cap;
}

/* Trained: every variant's row in summary.csv has the documented columns,
 * its seeds and accuracy, and the rate optc analyze prints for it. */
START_TEST(sweep_csv_and_rates)
{
    char a[PATH_MAX + 16], b[PATH_MAX + 16], out[PATH_MAX + 16], cap[PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/gd_tiny.opt", tmpdir);
    snprintf(b, sizeof b, "%s/hb_tiny.opt", tmpdir);
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(cap, sizeof cap, "%s/stdout.txt", tmpdir);
    write_file(a, spec_a);
    write_file(b, spec_b);
    const char *argv[] = {"compare", a, b, "--sweep", "beta=0,0.75", "--data", "synthetic",
                          "--epochs", "1", "--seeds", "2", "--limit", "128", "--test-limit",
                          "64", "--threads", "1", "--jobs", "2", "--out", out, "--", "--quiet",
                          NULL};
    ck_assert_int_eq(run_compare(argv, cap), 0);
    char *txt = strdup(read_file(cap));
    ck_assert_ptr_nonnull(txt);
    ck_assert_ptr_nonnull(strstr(txt, "rate: the network's optimizer on quadratics"));
    ck_assert_ptr_nonnull(strstr(txt, "kappa = 100, h = 1 (1/L)"));
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/summary.csv", out);
    char *csv = strdup(read_file(path));
    ck_assert_ptr_nonnull(csv);
    static const char header[] =
        "label,spec,net,defines,seeds,params,madds,train_seconds_mean,test_acc_mean,"
        "test_acc_std,test_loss_mean,test_loss_std,optimizer,rate,beta";
    ck_assert_msg(!strncmp(csv, header, strlen(header)) && csv[strlen(header)] == '\n',
                  "header: %s", csv);
    static const struct { const char *label, *spec, *opt, *def, *beta; } want[] = {
        { "gd_tiny", "gd_tiny.opt", "gd", NULL, "" },
        { "hb_tiny.beta=0", "hb_tiny.opt", "hb", "beta=0", "0" },
        { "hb_tiny.beta=0.75", "hb_tiny.opt", "hb", "beta=0.75", "0.75" },
    };
    char *save = NULL;
    char *line = strtok_r(csv, "\n", &save);
    size_t nrow = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        ck_assert_uint_lt(nrow, 3);
        char f[16][128];
        ck_assert_int_eq(csv_split(line, f, 16), 15);
        ck_assert_str_eq(f[0], want[nrow].label);
        ck_assert_ptr_nonnull(strstr(f[1], want[nrow].spec));
        ck_assert_str_eq(f[4], "2");                /* seeds */
        ck_assert(atof(f[8]) >= 0 && atof(f[8]) <= 100);
        ck_assert_str_eq(f[12], want[nrow].opt);
        char rate[32];
        const char *spec = nrow == 0 ? a : b;
        analyze_rate_text(spec, want[nrow].opt, want[nrow].def, rate, sizeof rate);
        ck_assert_str_eq(f[13], rate);
        ck_assert_str_eq(f[14], want[nrow].beta);
        /* and the printed table's row carries the same rate */
        char row[256];
        snprintf(row, sizeof row, "\n%s ", want[nrow].label);
        const char *r = strstr(txt, row);
        ck_assert_msg(r != NULL, "no row %s in:\n%s", want[nrow].label, txt);
        const char *eol = strchr(r + 1, '\n');
        const char *hit = strstr(r, rate);
        ck_assert(hit && (!eol || hit < eol));
        nrow++;
    }
    ck_assert_uint_eq(nrow, 3);
    free(csv);
    free(txt);
}
END_TEST

static bool have_gnuplot(void)
{
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

static bool is_png(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char sig[8] = {0};
    size_t n = f ? fread(sig, 1, 8, f) : 0;
    if (f)
        fclose(f);
    return n == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8);
}

/* A one-parameter sweep writes curves.png, rate.png and sweep.png (and
 * the data and scripts behind them). Skipped without gnuplot. */
START_TEST(sweep_plots)
{
    if (!have_gnuplot())
        TEST_SKIP("gnuplot is not installed");
    char b[PATH_MAX + 16], out[PATH_MAX + 16], cap[PATH_MAX + 32];
    snprintf(b, sizeof b, "%s/hb_tiny.opt", tmpdir);
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(cap, sizeof cap, "%s/stdout.txt", tmpdir);
    write_file(b, spec_b);
    const char *argv[] = {"compare", b, "--sweep", "beta=0.25,0.5", "--data", "synthetic",
                          "--epochs", "1", "--limit", "64", "--test-limit", "64", "--threads",
                          "1", "--out", out, "--", "--quiet", NULL};
    ck_assert_int_eq(run_compare(argv, cap), 0);
    static const char *const files[] = {"curves.png", "rate.png", "sweep.png", "rate.dat",
                                        "rate.gp", "sweep.dat", "sweep.gp"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", out, files[i]);
        struct stat st;
        ck_assert_msg(stat(path, &st) == 0 && st.st_size > 0, "%s missing or empty", path);
        if (strstr(files[i], ".png"))
            ck_assert_msg(is_png(path), "%s is not a PNG", path);
    }
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/rate.gp", out);
    ck_assert_ptr_nonnull(strstr(read_file(path), "'beta=0.25'"));  /* labelled points */
    snprintf(path, sizeof path, "%s/sweep.dat", out);
    const char *dat = read_file(path);
    ck_assert_ptr_nonnull(strstr(dat, "\n0.25 "));
    ck_assert_ptr_nonnull(strstr(dat, "\n0.5 "));
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
    tcase_add_test(tc, build_program_call);
    tcase_add_test(tc, sweep_grid);
    tcase_add_test(tc, sweep_errors);
    tcase_add_test(tc, sweep_csv_and_rates);
    tcase_add_test(tc, sweep_plots);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(compare_suite)
