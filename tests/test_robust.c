/* test_robust.c — robustness end to end through $OPTC_BUILD/optc (default
 * build/): injection-proof emission, round-tripping numbers, resource
 * limits, a full disk under training, and kill -9 during training.
 *
 * Specs live in tests/inject/. Generated programs are built with
 * `optc build`, which compiles with the project's strict warning list and
 * -Werror, so a successful build is a warning-free one. Each test works in
 * its own mkdtemp directory and removes it. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "rt.h"
#include "testutil.h"
#include "tmain.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* How a child should be run. */
typedef struct {
    const char *out;        /* stdout to this file (NULL: /dev/null) */
    const char *err;        /* stderr to this file (NULL: /dev/null) */
    long as_limit_mb;       /* RLIMIT_AS for the child, 0: none */
} RbRun;

/* Start argv (argv[0] a path) with its output redirected; a CPU-time limit
 * turns a hang into a failure instead of a stuck suite. */
static pid_t rb_spawn(const char *const argv[], const RbRun *r)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int o = open(r && r->out ? r->out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(r && r->err ? r->err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(126);
        /* A sanitizer report in a child must not pass for a clean exit 1
         * (UBSan's default exit code): make it abort. */
        const char *names[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS"};
        for (int i = 0; i < 2; i++) {
            const char *old = getenv(names[i]);
            char opt[2048];
            snprintf(opt, sizeof opt, "%s%sabort_on_error=1", old ? old : "",
                     old && *old ? ":" : "");
            setenv(names[i], opt, 1);
        }
        struct rlimit cpu = {120, 120};
        setrlimit(RLIMIT_CPU, &cpu);
        if (r && r->as_limit_mb > 0) {
            struct rlimit as = {(rlim_t)r->as_limit_mb << 20, (rlim_t)r->as_limit_mb << 20};
            setrlimit(RLIMIT_AS, &as);
        }
        char *v[64];
        int n = 0;
        for (; argv[n] && n < 63; n++)
            v[n] = strdup(argv[n]);     /* exec wants char *; the copies die with it */
        v[n] = NULL;
        execv(v[0], v);
        _exit(127);
    }
    return pid;
}

/* Exit status of pid, or 128 + signal. */
static int rb_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int rb_run(const char *const argv[], const RbRun *r)
{
    return rb_wait(rb_spawn(argv, r));
}

/* optc with up to 12 arguments after the subcommand; NULL-terminated. */
static int rb_optc(const RbRun *r, const char *a0, ...)
{
    char exe[4200];
    snprintf(exe, sizeof exe, "%s/optc", tu_build_dir());
    const char *argv[16] = {exe, a0};
    va_list ap;
    va_start(ap, a0);
    int n = 2;
    const char *s;
    while (n < 15 && (s = va_arg(ap, const char *)) != NULL)
        argv[n++] = s;
    va_end(ap);
    argv[n] = NULL;
    return rb_run(argv, r);
}

/* Build network net of spec into exe; fails the test with optc's message. */
static void rb_build_net(const char *spec, const char *net, const char *exe, const char *dir)
{
    char err[4200];
    snprintf(err, sizeof err, "%s/build-%s.err", dir, net);
    RbRun r = {NULL, err, 0};
    int rc = rb_optc(&r, "build", spec, "-n", net, "-o", exe, NULL);
    if (rc != 0) {
        char *msg = tu_slurp(err, NULL);
        ck_abort_msg("optc build %s -n %s: status %d:\n%s", spec, net, rc, msg ? msg : "");
    }
}

/* A short training run on synthetic data; returns the status. */
static int rb_train(const char *exe, const char *out, const char *errfile, const char *epochs,
                    const char *resume)
{
    const char *argv[32] = {exe, "train", "--data", "synthetic",
                      "--limit", "32", "--test-limit", "16",
                      "--batch", "8", "--threads", "1",
                      "--quiet", "--epochs", epochs, NULL};
    int n = 15;
    if (out) {
        argv[n++] = "--out";
        argv[n++] = out;
    }
    if (resume) {
        argv[n++] = "--resume";
        argv[n++] = resume;
    }
    argv[n] = NULL;
    RbRun r = {NULL, errfile, 0};
    return rb_wait(rb_spawn(argv, &r));
}

/* A checkpoint opens and holds at least one tensor. */
static int rb_checkpoint_ok(const char *path, char *why, size_t n)
{
    RtErr err = {{0}};
    RtStFile *f = rt_st_open(path, &err);
    if (!f) {
        snprintf(why, n, "%s", err.msg);
        return 0;
    }
    int count = rt_st_count(f);
    rt_st_close(f);
    if (count <= 0) {
        snprintf(why, n, "%s: no tensors", path);
        return 0;
    }
    return 1;
}

static const char *rb_spec(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "tests/inject/%s", name);
    return path;
}

/* ------------------------------------------------------------------------ */
/* A small C scanner: splits a C file into comments, string and character
 * literals, and code, so a test can ask where a piece of text landed.      */

typedef enum { RB_CODE, RB_COMMENT, RB_STRING } RbRegion;

/* code[i] = region of byte i of src (translation phases 1-2 included:
 * a backslash-newline continues whatever region it is in). */
static void rb_regions(const char *src, size_t n, RbRegion *reg)
{
    size_t i = 0;
    while (i < n) {
        if (src[i] == '\\' && i + 1 < n && src[i + 1] == '\n') {
            reg[i] = reg[i + 1] = RB_CODE;
            i += 2;
            continue;
        }
        if (src[i] == '/' && i + 1 < n && src[i + 1] == '*') {
            size_t j = i + 2;
            while (j + 1 < n && !(src[j] == '*' && src[j + 1] == '/'))
                j++;
            j = j + 2 <= n ? j + 2 : n;
            for (size_t k = i; k < j; k++)
                reg[k] = RB_COMMENT;
            i = j;
            continue;
        }
        if (src[i] == '/' && i + 1 < n && src[i + 1] == '/') {
            size_t j = i;
            while (j < n && !(src[j] == '\n' && src[j - 1] != '\\'))
                j++;
            for (size_t k = i; k < j; k++)
                reg[k] = RB_COMMENT;
            i = j;
            continue;
        }
        if (src[i] == '"' || src[i] == '\'') {
            char q = src[i];
            size_t j = i + 1;
            while (j < n && src[j] != q && src[j] != '\n')
                j += src[j] == '\\' && j + 1 < n ? 2 : 1;
            j = j < n ? j + 1 : n;
            for (size_t k = i; k < j; k++)
                reg[k] = RB_STRING;
            i = j;
            continue;
        }
        reg[i++] = RB_CODE;
    }
}

/* Emit spec (network net) to DIR/NAME.c; return the text. */
static char *rb_emit(const char *spec, const char *net, const char *dir, size_t *len)
{
    char cfile[4200], err[4200];
    snprintf(cfile, sizeof cfile, "%s/%s.c", dir, net);
    snprintf(err, sizeof err, "%s/emit-%s.err", dir, net);
    RbRun r = {NULL, err, 0};
    int rc = rb_optc(&r, "emit", spec, "-n", net, "-o", cfile, NULL);
    if (rc != 0) {
        char *msg = tu_slurp(err, NULL);
        ck_abort_msg("optc emit %s -n %s: status %d:\n%s", spec, net, rc, msg ? msg : "");
    }
    char *c = tu_slurp(cfile, len);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Compile a C file alone with the build's own compiler and flags (strict
 * warnings, -Werror), as optc build would; returns the status. */
static int rb_compile_only(const char *cfile, const char *dir)
{
    char flags[4200];
    snprintf(flags, sizeof flags, "%s/optc.flags", tu_build_dir());
    char *f = tu_slurp(flags, NULL);
    ck_assert_msg(f != NULL, "cannot read %s (run make)", flags);
    char cc[1024] = "", cflags[4096] = "", inc[1024] = "";
    for (char *line = strtok(f, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "CC=", 3))
            snprintf(cc, sizeof cc, "%s", line + 3);
        else if (!strncmp(line, "CFLAGS=", 7))
            snprintf(cflags, sizeof cflags, "%s", line + 7);
        else if (!strncmp(line, "INCLUDE=", 8))
            snprintf(inc, sizeof inc, "%s", line + 8);
    }
    free(f);
    char cmd[12000];
    snprintf(cmd, sizeof cmd, "%s %s -Werror -I'%s' -c -o '%s/obj.o' '%s' 2>'%s/cc.err'", cc,
             cflags, inc, dir, cfile, dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* ------------------------------------------------------------------------ */
/* Injection                                                                */

/* Names that are C keywords or the generated code's / runtime's own names
 * (int, static, register, volatile, main, rt_main, rt_conv2d_forward, net,
 * m, B) build warning-free, report themselves in `info`, and train. */
START_TEST(test_keyword_names_build_and_train)
{
    char dir[4096], exe[4200], out[4200], err[4200], run[4200];
    tu_tmpdir(dir, sizeof dir, "robust");
    const char *nets[] = {"main", "rt_main"};
    for (int i = 0; i < 2; i++) {
        snprintf(exe, sizeof exe, "%s/%s", dir, nets[i]);
        rb_build_net(rb_spec("keywords.opt"), nets[i], exe, dir);
        snprintf(out, sizeof out, "%s/info-%s.out", dir, nets[i]);
        const char *argv[] = {exe, "info", NULL};
        RbRun r = {out, NULL, 0};
        ck_assert_int_eq(rb_run(argv, &r), 0);
        char *text = tu_slurp(out, NULL);
        ck_assert_ptr_nonnull(text);
        ck_assert_msg(strstr(text, nets[i]) != NULL, "info of %s does not name it:\n%s",
                      nets[i], text);
        free(text);
        snprintf(run, sizeof run, "%s/run-%s", dir, nets[i]);
        snprintf(err, sizeof err, "%s/train-%s.err", dir, nets[i]);
        int rc = rb_train(exe, run, err, "1", NULL);
        char *msg = tu_slurp(err, NULL);
        ck_assert_msg(rc == 0, "%s train: status %d: %s", nets[i], rc, msg ? msg : "");
        free(msg);
        char ck[4300], why[1100];
        snprintf(ck, sizeof ck, "%s/last.safetensors", run);
        ck_assert_msg(rb_checkpoint_ok(ck, why, sizeof why), "%s", why);
    }
    tu_rmrf(dir);
}
END_TEST

/* Comments full of C syntax (comment ends, quotes, backslash-newline,
 * #include, trigraphs, control and non-ASCII bytes) reach the emitted C
 * only inside comments and string literals; the file compiles with
 * -Werror. Every hostile line carries a PWNED_ marker. */
START_TEST(test_hostile_comments_stay_inert)
{
    char dir[4096], cfile[4200];
    tu_tmpdir(dir, sizeof dir, "robust");
    size_t n;
    char *c = rb_emit(rb_spec("comments.opt"), "hostile", dir, &n);
    RbRegion *reg = calloc(n + 1, sizeof *reg);
    ck_assert_ptr_nonnull(reg);
    rb_regions(c, n, reg);
    int quoted = 0;
    for (const char *p = c; (p = strstr(p, "PWNED")) != NULL; p++) {
        size_t at = (size_t)(p - c);
        ck_assert_msg(reg[at] != RB_CODE, "spec text reached C code at byte %zu: %.60s", at,
                      p);
        quoted += reg[at] != RB_CODE;
    }
    /* The spec is quoted once: in spec_text (or the opening comment when it
     * is too long for a string literal). */
    ck_assert_int_ge(quoted, 10);
    /* Nothing but printable ASCII, newlines and tabs: control bytes of the
     * spec arrive escaped. */
    for (size_t i = 0; i < n; i++)
        ck_assert_msg((unsigned char)c[i] >= 0x20 ? (unsigned char)c[i] < 0x7f :
                      c[i] == '\n' || c[i] == '\t',
                      "byte 0x%02x at %zu of the emitted C", (unsigned char)c[i], i);
    free(reg);
    free(c);
    snprintf(cfile, sizeof cfile, "%s/hostile.c", dir);
    int rc = rb_compile_only(cfile, dir);
    if (rc != 0) {
        char errf[4200];
        snprintf(errf, sizeof errf, "%s/cc.err", dir);
        char *msg = tu_slurp(errf, NULL);
        ck_abort_msg("emitted C does not compile (status %d):\n%s", rc, msg ? msg : "");
    }
    tu_rmrf(dir);
}
END_TEST

/* Does the code part of c hold a numeric literal that strtod reads back to
 * exactly v (or -v: a coefficient may be written negated)? */
static int rb_has_literal(const char *c, const RbRegion *reg, size_t n, double v)
{
    for (size_t i = 0; i < n; i++) {
        if (reg[i] != RB_CODE || !((c[i] >= '0' && c[i] <= '9') || c[i] == '.'))
            continue;
        if (i > 0 && (c[i - 1] == '_' || (c[i - 1] >= 'A' && c[i - 1] <= 'Z') ||
                      (c[i - 1] >= 'a' && c[i - 1] <= 'z') || (c[i - 1] >= '0' && c[i - 1] <= '9') ||
                      c[i - 1] == '.'))
            continue;
        char *end;
        double x = strtod(c + i, &end);
        if (end > c + i && (x == v || x == -v))
            return 1;
    }
    return 0;
}

/* 0.30000000000000004 (a parameter, the learning rate), 1e-300 (weight
 * decay) and 0.1 (a learned scalar's initial value) appear as literals that
 * round-trip exactly; the file compiles with -Werror. */
START_TEST(test_numbers_round_trip)
{
    char dir[4096], cfile[4200];
    tu_tmpdir(dir, sizeof dir, "robust");
    size_t n;
    char *c = rb_emit(rb_spec("numbers.opt"), "numbers", dir, &n);
    RbRegion *reg = calloc(n + 1, sizeof *reg);
    ck_assert_ptr_nonnull(reg);
    rb_regions(c, n, reg);
    const double want[] = {0.30000000000000004, 1e-300, 0.1};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(rb_has_literal(c, reg, n, want[i]), "no literal reads back as %.17g",
                      want[i]);
    free(reg);
    free(c);
    snprintf(cfile, sizeof cfile, "%s/numbers.c", dir);
    ck_assert_int_eq(rb_compile_only(cfile, dir), 0);
    tu_rmrf(dir);
}
END_TEST

/* Found by the fuzzer: a -D naming a parameter of an optimizer that has a
 * syntax error made sema write through the NULL override table of the
 * unchecked optimizer (segfault). It must be one more error, exit 1. */
START_TEST(test_define_on_broken_optimizer)
{
    char dir[4096], err[4200];
    tu_tmpdir(dir, sizeof dir, "robust");
    snprintf(err, sizeof err, "%s/check.err", dir);
    RbRun r = {NULL, err, 0};
    int rc = rb_optc(&r, "check", "tests/fuzz/regress/define-on-broken-optimizer.opt", "-D",
                     "beta=0.25", NULL);
    ck_assert_msg(rc == 1, "optc check -D beta=0.25 on a broken optimizer: status %d", rc);
    tu_rmrf(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Resource limits                                                          */

/* Write text to DIR/name; return the path in a static buffer. */
static const char *rb_write_spec(const char *dir, const char *name, const char *text)
{
    static char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* A message whose error line (from "error" on: not the file name, which
 * may hold digits of its own, nor the quoted source) states a size: a
 * number of at least 4 digits. */
static int rb_has_size(const char *msg)
{
    const char *e = strstr(msg, "error");
    int run = 0;
    for (const char *p = e ? e : ""; *p && *p != '\n'; p++) {
        run = (*p >= '0' && *p <= '9') ? run + 1 : 0;
        if (run >= 4)
            return 1;
    }
    return 0;
}

/* Run optc CMD on spec under an address-space limit (no limit under
 * ASan, which reserves terabytes of shadow); expect exit 1 with an error
 * that states a size, within the CPU limit, and no output file. */
static void rb_expect_refused(const char *cmd, const char *spec, const char *dir)
{
    char err[4200], out[4200];
    snprintf(err, sizeof err, "%s/%s.err", dir, cmd);
    snprintf(out, sizeof out, "%s/%s.out", dir, cmd);
    RbRun r = {NULL, err, tu_sanitized() ? 0 : 1024};
    int rc;
    if (!strcmp(cmd, "check"))
        rc = rb_optc(&r, "check", spec, NULL);
    else
        rc = rb_optc(&r, cmd, spec, "-o", out, NULL);
    char msg[4096] = "";
    char *text = tu_slurp(err, NULL);
    if (text)
        snprintf(msg, sizeof msg, "%s", text);
    free(text);     /* before any assertion: a failure must not leak */
    ck_assert_msg(rc == 1, "optc %s: status %d (want 1):\n%s", cmd, rc, msg);
    ck_assert_msg(strstr(msg, "error") != NULL && rb_has_size(msg),
                  "optc %s: the message does not state the size:\n%s", cmd, msg);
    ck_assert_msg(access(out, F_OK) != 0, "optc %s left %s behind", cmd, out);
}

/* A stage of 10^9 steps is refused before it is unrolled. */
START_TEST(test_billion_steps_refused)
{
    char dir[4096];
    tu_tmpdir(dir, sizeof dir, "robust");
    const char *spec = rb_write_spec(dir, "steps.opt",
        "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
        "network deep {\n"
        "    input 1x8x8; classes 3; stem conv3x3(4);\n"
        "    grad = bn, relu, conv3x3;\n"
        "    stage gd steps 1000000000 width 4;\n"
        "    head bn, relu, avgpool, linear;\n"
        "}\n");
    char copy[4300];
    snprintf(copy, sizeof copy, "%s", spec);
    rb_expect_refused("check", copy, dir);
    rb_expect_refused("ir", copy, dir);
    rb_expect_refused("build", copy, dir);
    tu_rmrf(dir);
}
END_TEST

/* A network within every per-tensor limit whose parameters (2.4 G, 9 GiB
 * plus as much again for gradients) and activations (tens of GiB per
 * image) need far more memory than the machine has is refused by emit and
 * build with the computed size, instead of a program the kernel kills. */
START_TEST(test_huge_network_refused)
{
    char dir[4096];
    tu_tmpdir(dir, sizeof dir, "robust");
    const char *spec = rb_write_spec(dir, "wide.opt",
        "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
        "network wide {\n"
        "    input 3x256x256; classes 10; stem conv3x3(2048);\n"
        "    grad = bn, relu, conv3x3;\n"
        "    stage gd steps 64 width 2048;\n"
        "    head bn, relu, avgpool, linear;\n"
        "}\n");
    char copy[4300];
    snprintf(copy, sizeof copy, "%s", spec);
    rb_expect_refused("emit", copy, dir);
    rb_expect_refused("build", copy, dir);
    tu_rmrf(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Full disk and kill -9                                                    */

static const char rb_tiny_spec[] =
    "optimizer hb(beta = 0.5) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
    "network tiny {\n"
    "    input 1x8x8; classes 3; stem conv3x3(4);\n"
    "    grad = bn, relu, conv3x3;\n"
    "    stage hb steps 2 width 4;\n"
    "    head bn, relu, avgpool, linear;\n"
    "}\n";

/* Fill the file system holding dir: write to dir/filler until ENOSPC.
 * Returns 0, or the errno that stopped it otherwise. */
static int rb_fill(const char *dir)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return errno;
    char block[512] = {0};
    int e = ENOSPC;
    for (size_t sz = sizeof block; sz > 0; sz /= 2) {
        while (write(fd, block, sz) == (ssize_t)sz)
            ;
        if (errno != ENOSPC)
            e = errno;
    }
    close(fd);
    return e == ENOSPC ? 0 : e;
}

/* Training on a full tmpfs: one clear error naming a file in the run
 * directory, exit 1; the good checkpoint written before is byte-identical
 * afterwards and no temporary file is left. Skipped when tmpfs cannot be
 * mounted (not root, no CAP_SYS_ADMIN). */
START_TEST(test_full_disk)
{
    char dir[4096], mnt[4200], exe[4200], run[4300], err[4300], ck[4400], why[1100];
    tu_tmpdir(dir, sizeof dir, "robust");
    snprintf(mnt, sizeof mnt, "%s/mnt", dir);
    ck_assert_int_eq(mkdir(mnt, 0755), 0);
    snprintf(exe, sizeof exe, "%s/tiny", dir);
    const char *spec = rb_write_spec(dir, "tiny.opt", rb_tiny_spec);
    char specp[4300];
    snprintf(specp, sizeof specp, "%s", spec);
    rb_build_net(specp, "tiny", exe, dir);
    /* From the mount to the umount nothing may assert: a failed check
     * would leave the tmpfs mounted. */
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k") != 0) {
        int why_errno = errno;
        tu_rmrf(dir);
        TEST_SKIP("cannot mount a tmpfs on %s: %s", mnt, strerror(why_errno));
    }

    /* A good run first. */
    snprintf(run, sizeof run, "%s/run", mnt);
    snprintf(err, sizeof err, "%s/train1.err", dir);
    int rc1 = rb_train(exe, run, err, "1", NULL);
    char *msg1 = tu_slurp(err, NULL);
    snprintf(ck, sizeof ck, "%s/last.safetensors", run);
    size_t good_len = 0;
    char *good = tu_slurp(ck, &good_len);

    /* Then the disk fills up and training runs again into the same
     * directory, and into a fresh one. */
    int fill = rb_fill(mnt);
    snprintf(err, sizeof err, "%s/train2.err", dir);
    int rc2 = rb_train(exe, run, err, "1", NULL);
    char *msg2 = tu_slurp(err, NULL);
    size_t after_len = 0;
    char *after = tu_slurp(ck, &after_len);
    int ck_ok = rb_checkpoint_ok(ck, why, sizeof why);
    char cmd[4600];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c tmp", run);
    FILE *ls = popen(cmd, "r");
    int ntmp = -1;
    if (ls) {
        if (fscanf(ls, "%d", &ntmp) != 1)
            ntmp = -1;
        pclose(ls);
    }
    char fresh[4300];
    snprintf(fresh, sizeof fresh, "%s/fresh", mnt);
    snprintf(err, sizeof err, "%s/train3.err", dir);
    int rc3 = rb_train(exe, fresh, err, "1", NULL);
    char *msg3 = tu_slurp(err, NULL);

    int um = umount(mnt);
    ck_assert_msg(um == 0, "umount %s: %s", mnt, strerror(errno));

    ck_assert_msg(fill == 0, "filling the tmpfs: %s", strerror(fill));
    ck_assert_msg(rc1 == 0, "first training: status %d: %s", rc1, msg1 ? msg1 : "");
    ck_assert_ptr_nonnull(good);
    ck_assert_msg(rc2 == 1, "training on a full disk: status %d (want 1): %s", rc2,
                  msg2 ? msg2 : "");
    ck_assert_ptr_nonnull(msg2);
    ck_assert_msg(strstr(msg2, run) != NULL, "the error does not name a file in %s:\n%s", run,
                  msg2);
    ck_assert_msg(strstr(msg2, "error") != NULL, "no error line:\n%s", msg2);
    ck_assert_msg(after && after_len == good_len && !memcmp(after, good, good_len),
                  "the good checkpoint changed");
    ck_assert_msg(ck_ok, "%s", why);
    ck_assert_msg(ntmp == 0, "%d temporary files left in %s", ntmp, run);
    ck_assert_msg(rc3 == 1, "fresh training on a full disk: status %d (want 1): %s", rc3,
                  msg3 ? msg3 : "");
    ck_assert_msg(msg3 && strstr(msg3, fresh) != NULL, "the error does not name a file in %s:\n%s",
                  fresh, msg3 ? msg3 : "");
    free(msg1);
    free(msg2);
    free(msg3);
    free(good);
    free(after);
    tu_rmrf(dir);
}
END_TEST

/* Five kill -9's at random moments of a training run (once the first
 * checkpoint exists, each after one or two more epochs are logged, plus a random number of extra polls, so kills
 * land anywhere, checkpoint writes included): OUT/last.safetensors always
 * opens, and a resumed run continues from it. Driven by the log, never by
 * timing; every wait is bounded. */
START_TEST(test_kill9_never_corrupts)
{
    char dir[4096], exe[4200], run[4300], err[4300], ck[4400], log[4400], why[1100];
    tu_tmpdir(dir, sizeof dir, "robust");
    snprintf(exe, sizeof exe, "%s/tiny", dir);
    const char *spec = rb_write_spec(dir, "tiny.opt", rb_tiny_spec);
    char specp[4300];
    snprintf(specp, sizeof specp, "%s", spec);
    rb_build_net(specp, "tiny", exe, dir);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(err, sizeof err, "%s/train.err", dir);
    snprintf(ck, sizeof ck, "%s/last.safetensors", run);
    snprintf(log, sizeof log, "%s/log.csv", run);
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    const unsigned seed0 = seed;    /* named in every failure, to replay it */
    for (int kill_no = 0; kill_no < 5; kill_no++) {
        int base = tu_count_lines(log);
        const char *argv[32] = {exe, "train", "--data", "synthetic",
                          "--limit", "32", "--test-limit",
                          "16", "--batch", "8", "--threads",
                          "1", "--quiet", "--epochs",
                          "1000000", "--out", run, NULL};
        if (kill_no > 0) {
            argv[17] = "--resume";
            argv[18] = ck;
            argv[19] = NULL;
        }
        RbRun r = {NULL, err, 0};
        pid_t pid = rb_spawn(argv, &r);
        /* The first run must write its first checkpoint (renamed into
         * place whole) before the kills start. */
        int extra = (int)(rand_r(&seed) % 2000);
        int alive = 1;
        long polls = 0;
        while (kill_no == 0 && access(ck, F_OK) != 0) {
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                alive = 0;
                break;
            }
            ck_assert_msg(++polls < 5000000L, "training never wrote %s (seed %u)", ck, seed0);
        }
        int want = (kill_no == 0 ? tu_count_lines(log) : base) + 1 + (int)(rand_r(&seed) % 2);
        while (alive && tu_count_lines(log) < want) {
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                alive = 0;
                break;
            }
            ck_assert_msg(++polls < 5000000L, "training never logged epoch %d (seed %u)", want, seed0);
        }
        for (int i = 0; i < extra && alive; i++)
            (void)tu_count_lines(log);
        ck_assert_msg(alive, "training exited early (kill %d, seed %u); see %s", kill_no, seed0, err);
        kill(pid, SIGKILL);
        ck_assert_int_eq(rb_wait(pid), 128 + SIGKILL);
        ck_assert_msg(rb_checkpoint_ok(ck, why, sizeof why), "after kill %d (%d lines, seed %u): %s",
                      kill_no, tu_count_lines(log), seed0, why);
    }
    tu_rmrf(dir);
}
END_TEST

static Suite *robust_suite(void)
{
    Suite *s = suite_create("robust");
    TCase *tc = tcase_create("inject");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_keyword_names_build_and_train);
    tcase_add_test(tc, test_hostile_comments_stay_inert);
    tcase_add_test(tc, test_numbers_round_trip);
    tcase_add_test(tc, test_define_on_broken_optimizer);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_billion_steps_refused);
    tcase_add_test(tc, test_huge_network_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("disk");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_full_disk);
    tcase_add_test(tc, test_kill9_never_corrupts);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(robust_suite)
