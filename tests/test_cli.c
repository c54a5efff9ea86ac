/* test_cli.c — optc's command line: exit statuses (0 ok, 1 user error, 2
 * usage error) of every command, --help on every command (stdout, status 0,
 * nothing on stderr), the common flag parser, emit/build's files. Commands
 * run as $OPTC_BUILD/optc, or in-process with their output captured. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "frontend.h"
#include "tmain.h"
#include "cgutil.h"

/* fn(argc, argv) with stdout and stderr captured (into *said when given,
 * else dropped): a passing run prints nothing. Returns fn's status. */
static int quiet(int (*fn)(int, char **), int argc, char **argv, char **said)
{
    char tmpl[] = "/tmp/optc-cli-XXXXXX";
    int fd = mkstemp(tmpl);
    ck_assert_int_ge(fd, 0);
    fflush(stdout);
    fflush(stderr);
    int o = dup(1), e = dup(2);
    ck_assert(o >= 0 && e >= 0);
    dup2(fd, 1);
    dup2(fd, 2);
    int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(o, 1);
    dup2(e, 2);
    close(o);
    close(e);
    close(fd);
    if (said)
        *said = tu_slurp(tmpl, NULL);
    unlink(tmpl);
    return rc;
}

/* Run optc ARGS with stdout and stderr apart; returns the status. */
static int optc_run2(const char *args, char **out, char **err)
{
    char o[] = "/tmp/optc-cli-out-XXXXXX", e[] = "/tmp/optc-cli-err-XXXXXX";
    int fo = mkstemp(o), fe = mkstemp(e);
    ck_assert(fo >= 0 && fe >= 0);
    close(fo);
    close(fe);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/optc %s >%s 2>%s", tu_build_dir(), args, o, e);
    int st = system(cmd);
    *out = tu_slurp(o, NULL);
    *err = tu_slurp(e, NULL);
    unlink(o);
    unlink(e);
    ck_assert(*out && *err);
    return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static const char *const commands[] = { "check", "ir", "dot", "list", "emit", "build", "analyze",
                                        "compare" };
#define NCMD ((int)(sizeof commands / sizeof commands[0]))

/* optc CMD --help (and -h): its usage on stdout, status 0, stderr empty. */
START_TEST(test_help_every_command)
{
    static const char *const flags[] = { "--help", "-h" };
    for (int f = 0; f < 2; f++) {
        char args[128], want[64], *out, *err;
        snprintf(args, sizeof args, "%s %s", commands[_i], flags[f]);
        ck_assert_int_eq(optc_run2(args, &out, &err), 0);
        snprintf(want, sizeof want, "usage: optc %s", commands[_i]);
        ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "%s: %s", args, out);
        ck_assert_msg(err[0] == 0, "%s wrote to stderr: %s", args, err);
        free(out);
        free(err);
    }
}
END_TEST

/* optc alone: usage on stderr, 2; --help lists every command; --version;
 * an unknown command is a usage error. */
START_TEST(test_main_status)
{
    char *out, *err;
    ck_assert_int_eq(optc_run2("", &out, &err), 2);
    ck_assert(out[0] == 0 && strstr(err, "usage: optc COMMAND") != NULL);
    free(out);
    free(err);
    ck_assert_int_eq(optc_run2("--help", &out, &err), 0);
    for (int i = 0; i < NCMD; i++) {
        char want[32];
        snprintf(want, sizeof want, "  %-8s ", commands[i]);
        ck_assert_msg(strstr(out, want) != NULL, "optc --help does not list %s", commands[i]);
    }
    ck_assert(err[0] == 0);
    free(out);
    free(err);
    ck_assert_int_eq(optc_run2("--version", &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(out, "optc " OPTC_VERSION));
    free(out);
    free(err);
    ck_assert_int_eq(optc_run2("frobnicate", &out, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown command 'frobnicate'"));
    free(out);
    free(err);
}
END_TEST

/* Every command: no spec or an unknown flag is a usage error (2); a
 * missing file and a spec with errors are user errors (1), with the
 * file named on stderr. */
START_TEST(test_status_every_command)
{
    const char *c = commands[_i];
    char args[256], *out, *err;
    snprintf(args, sizeof args, "%s", c);
    ck_assert_msg(optc_run2(args, &out, &err) == 2, "optc %s with no spec", c);
    ck_assert_msg(strstr(err, "usage: optc") != NULL, "optc %s: %s", c, err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "%s examples/resnet.opt --frobnicate", c);
    ck_assert_msg(optc_run2(args, &out, &err) == 2, "optc %s --frobnicate", c);
    ck_assert_ptr_nonnull(strstr(err, "--frobnicate"));
    free(out);
    free(err);
    snprintf(args, sizeof args, "%s tests/bad/no_such_file.opt", c);
    ck_assert_msg(optc_run2(args, &out, &err) == 1, "optc %s on a missing file", c);
    ck_assert_msg(strstr(err, "no_such_file.opt") != NULL, "optc %s: %s", c, err);
    free(out);
    free(err);
    /* compare would train the good specs first: its bad-spec path is in test_compare */
    if (strcmp(c, "compare") != 0) {
        snprintf(args, sizeof args, "%s tests/bad/tensor_product.opt", c);
        ck_assert_msg(optc_run2(args, &out, &err) == 1, "optc %s on a bad spec", c);
        ck_assert_msg(strstr(err, "tensor_product.opt:") != NULL && strstr(err, "error:") != NULL,
                      "optc %s: %s", c, err);
        free(out);
        free(err);
    }
}
END_TEST

/* The commands that only read a spec succeed on a good one with output on
 * stdout and nothing on stderr. */
START_TEST(test_status_ok)
{
    static const char *const ok[][2] = {
        { "check examples/resnet.opt examples/heavy_ball.opt", "" },
        { "ir examples/heavy_ball.opt -n hb20_fmnist", "stage1.x1" },
        { "dot examples/heavy_ball.opt -n hb20_fmnist -D heavy_ball.beta=0.5", "digraph" },
        { "list examples/resnet.opt", "resnet20_cifar\n" },
        { "analyze examples/heavy_ball.opt", "heavy_ball" },
        { "emit examples/theory.opt -n theory_gd_fmnist", "int main(" },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *out, *err;
        ck_assert_msg(optc_run2(ok[i][0], &out, &err) == 0, "optc %s: %s", ok[i][0], err);
        ck_assert_msg(strstr(out, ok[i][1]) != NULL, "optc %s printed %.200s", ok[i][0], out);
        ck_assert_msg(err[0] == 0, "optc %s wrote to stderr: %s", ok[i][0], err);
        free(out);
        free(err);
    }
}
END_TEST

/* The CLI's exit statuses: 0 clean, 1 user error, 2 usage error. */
START_TEST(test_cli_status)
{
    char c0[] = "check", e1[] = "examples/resnet.opt", e2[] = "examples/densenet.opt",
         bad[] = "tests/bad/tensor_product.opt", missing[] = "tests/bad/no_such_file.opt",
         dflag[] = "-D", dval[] = "resnet20_cifar.stage1.steps=4", dbad[] = "stage1.steps=0",
         opt[] = "--frobnicate", help[] = "--help";
    char *ok[] = { c0, e1, e2 };
    ck_assert_int_eq(quiet(cmd_check, 3, ok, NULL), 0);
    char *withd[] = { c0, e1, dflag, dval };
    ck_assert_int_eq(quiet(cmd_check, 4, withd, NULL), 0);
    char *badd[] = { c0, e1, dflag, dbad };
    ck_assert_int_eq(quiet(cmd_check, 4, badd, NULL), 1);
    char *one_bad[] = { c0, e1, bad };
    ck_assert_int_eq(quiet(cmd_check, 3, one_bad, NULL), 1);
    char *gone[] = { c0, missing };
    ck_assert_int_eq(quiet(cmd_check, 2, gone, NULL), 1);
    char *none[] = { c0 };
    ck_assert_int_eq(quiet(cmd_check, 1, none, NULL), 2);
    char *unk[] = { c0, opt, e1 };
    char *said = NULL;
    ck_assert_int_eq(quiet(cmd_check, 3, unk, &said), 2);
    ck_assert_ptr_nonnull(strstr(said, "unknown option '--frobnicate'"));
    free(said);
    CliArgs ca;
    /* -D values are split in place (argv is writable), so use a fresh copy */
    char ir[] = "ir", nflag[] = "-n", net[] = "resnet56_cifar", dval2[] = "resnet20_cifar.stage1.steps=4";
    char *args[] = { ir, e1, nflag, net, dflag, dval2, help };
    ck_assert_int_eq(cli_parse(&ca, 7, args, ""), 0);   /* --help is the caller's */
    ck_assert_str_eq(ca.spec, "examples/resnet.opt");
    ck_assert_str_eq(ca.net, "resnet56_cifar");
    ck_assert_int_eq(ca.ndefs, 1);
    ck_assert_str_eq(ca.defs[0].name, "resnet20_cifar.stage1.steps");
    ck_assert_str_eq(ca.defs[0].value, "4");
    ck_assert_int_eq(ca.nrest, 1);
    Arena *a = arena_new();
    ca.ndefs = 0;
    IrGraph *g = cli_load_graph(a, &ca);
    ck_assert(g != NULL);
    ck_assert_str_eq(g->name, "resnet56_cifar");
    arena_free(a);
}
END_TEST

/* optc emit/build: usage errors, bad specs and --keep-c. */
START_TEST(test_cli)
{
    char *out = NULL, *cmd = optc_cmd("emit --help");
    ck_assert_int_eq(run(cmd, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: optc emit"));
    free(out);
    free(cmd);
    cmd = optc_cmd("build --help");
    ck_assert_int_eq(run(cmd, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--keep-c"));
    free(out);
    free(cmd);
    cmd = optc_cmd("emit examples/resnet.opt --bogus");
    ck_assert_int_eq(run(cmd, NULL), 2);
    free(cmd);
    cmd = optc_cmd("emit examples/resnet.opt -n no_such_net");
    ck_assert_int_eq(run(cmd, NULL), 1);
    free(cmd);
    /* A failed emit leaves no file behind. */
    char *dir = tmpdir(), args[512], path[512];
    snprintf(args, sizeof args, "emit examples/resnet.opt -n no_such_net -o %s/x.c", dir);
    cmd = optc_cmd(args);
    ck_assert_int_eq(run(cmd, NULL), 1);
    free(cmd);
    snprintf(path, sizeof path, "%s/x.c", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* emit -o and stdout agree; the file records a relative spec path. */
    snprintf(args, sizeof args, "emit examples/theory.opt -n theory_gd_fmnist -o %s/t.c", dir);
    optc_ok(args, NULL);
    optc_ok("emit examples/theory.opt -n theory_gd_fmnist", &out);
    snprintf(path, sizeof path, "%s/t.c", dir);
    char *file = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(file);
    /* Only the recorded command line (with its -o) differs. */
    const char *body = strstr(file, "static const RtTensor");
    const char *body2 = strstr(out, "static const RtTensor");
    ck_assert(body && body2);
    ck_assert_msg(strcmp(body, body2) == 0, "emit -o and emit to stdout differ");
    ck_assert_ptr_nonnull(strstr(file, " * examples/theory.opt\n"));
    free(file);
    /* build --keep-c keeps PATH.c: the C that emit writes. */
    snprintf(args, sizeof args, "build examples/theory.opt -n theory_gd_fmnist -o %s/t --keep-c",
             dir);
    optc_ok(args, NULL);
    snprintf(path, sizeof path, "%s/t.c", dir);
    file = tu_slurp(path, NULL);
    ck_assert_ptr_nonnull(file);
    body = strstr(file, "static const RtTensor");
    ck_assert_msg(body && strcmp(body, body2) == 0, "build --keep-c and emit differ");
    free(file);
    free(out);
    /* A spec that is not there: the front end's wording, status 1. */
    cmd = optc_cmd("build tests/no_such_spec.opt -o /dev/null");
    ck_assert_int_eq(run(cmd, &out), 1);
    ck_assert_msg(strstr(out, "tests/no_such_spec.opt: error: cannot open: ") != NULL, "%s", out);
    free(out);
    free(cmd);
    snprintf(path, sizeof path, "%s/t", dir);
    ck_assert_int_eq(access(path, X_OK), 0);
    rmtree(dir);
    free(dir);
}
END_TEST

/* make bench's report (scripts/bench.sh, BENCH_REPRINT=1) on results whose
 * figures are known: the medians of the rounds, the steps over 1.25x the
 * fastest of a side counted, and the view outside those steps (each round
 * the median of its other steps). optc: round 1 has two slow steps of five
 * (quiet median 100 ms = 1280 img/s at batch 128), round 2 none, round 3
 * four of five (quiet: the one 105 ms step, 1219 img/s); PyTorch 200 ms a
 * step throughout (640 img/s, none slow). */
START_TEST(test_bench_report)
{
    char *dir = tmpdir(), path[4096], cmd[8192], *out = NULL;
    snprintf(path, sizeof path, "%s/bench", dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/bench/results.txt", dir);
    static const char results[] =
        "meta nets=resnet20\nmeta threads=2\nmeta rounds=3\nmeta iters=5\nmeta peak=0\n"
        "steps optc resnet20 2 wact-mdef 1 train_ms=100,150,100,150,100 infer_ms=30\n"
        "run optc resnet20 2 wact-mdef 1 train_img_s=1280 infer_img_s=4000 peak_rss_mb=200\n"
        "steps torch resnet20 2 wdef-mdef 1 train_ms=200,200,200,200,200 infer_ms=60\n"
        "run torch resnet20 2 wdef-mdef 1 train_img_s=640 infer_img_s=2000 peak_rss_mb=500\n"
        "steps optc resnet20 2 wact-mdef 2 train_ms=100,102,98,100,100 infer_ms=30\n"
        "run optc resnet20 2 wact-mdef 2 train_img_s=1280 infer_img_s=4000 peak_rss_mb=200\n"
        "steps torch resnet20 2 wdef-mdef 2 train_ms=200,200,200,200,200 infer_ms=60\n"
        "run torch resnet20 2 wdef-mdef 2 train_img_s=640 infer_img_s=2000 peak_rss_mb=500\n"
        "steps optc resnet20 2 wact-mdef 3 train_ms=150,150,150,105,150 infer_ms=30\n"
        "run optc resnet20 2 wact-mdef 3 train_img_s=853 infer_img_s=4000 peak_rss_mb=200\n"
        "steps torch resnet20 2 wdef-mdef 3 train_ms=200,200,200,200,200 infer_ms=60\n"
        "run torch resnet20 2 wdef-mdef 3 train_img_s=640 infer_img_s=2000 peak_rss_mb=500\n";
    tu_write_bytes(path, results, sizeof results - 1);
    snprintf(cmd, sizeof cmd, "BENCH_REPRINT=1 sh scripts/bench.sh %s", dir);
    ck_assert_int_eq(run(cmd, &out), 0);
    ck_assert_ptr_nonnull(out);
    /* the medians of the rounds: optc 1280 [853-1280], -33 %: not within 10 % */
    ck_assert_msg(strstr(out, "1280 [853-1280]   640 [640-640]      2.00x") != NULL, "%s", tail(out));
    ck_assert_msg(strstr(out, "| no     -33% | optc 6 of 15 (40%)    PyTorch 0 of 15 (0%)") != NULL,
                  "%s", tail(out));
    /* outside the slow steps: 1280 [1219-1280], within 10 % (-5 %) */
    ck_assert_msg(strstr(out, "1280 [1219-1280]  640 [640-640]      2.00x | optc rounds within +-10 %: yes   -5%") != NULL,
                  "%s", tail(out));
    free(out);
    rmtree(dir);
    free(dir);
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("status");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_help_every_command, 0, NCMD);
    tcase_add_loop_test(tc, test_status_every_command, 0, NCMD);
    tcase_add_test(tc, test_main_status);
    tcase_add_test(tc, test_status_ok);
    tcase_add_test(tc, test_cli_status);
    tcase_add_test(tc, test_cli);
    tcase_add_test(tc, test_bench_report);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(cli_suite)
