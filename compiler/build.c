/* build.c — optc emit (the C source of one network) and optc build (emit,
 * compile and link against the runtime).
 *
 * optc build finds the compiler, flags and runtime library in optc.flags,
 * written by make beside the optc executable: the generated program is
 * built exactly as the runtime it links was (sanitizers included). */
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli.h"
#include "emit_torch.h"
#include "invert.h"
#include "plan.h"

extern char **environ;

static const char emit_usage[] =
    "usage: optc emit SPEC [-n NET] [-D name=value]... [-o FILE] [--pytorch]\n"
    "                 [--memory-free[=exact|=drift] [--checkpoint-every N]]\n"
    "\n"
    "Write the C program of network NET (default: the first in SPEC) to FILE\n"
    "(standard output when FILE is missing or -). The file opens with optc's\n"
    "version, this command line and the spec, and compiles against the runtime\n"
    "(runtime/rt.h, build/libort.a).\n"
    "  -n NET            the network to emit\n"
    "  -D name=value     override an optimizer parameter or a stage's steps/width\n"
    "  -o FILE           output file\n"
    "  --pytorch         write a PyTorch module (Python) computing the same function\n"
    "                    instead: build() returns it, its state_dict keys are the\n"
    "                    checkpoint's tensor names (docs/pytorch.md)\n"
    "  --memory-free     the memory-free backward pass (optc build --help)\n"
    "  --checkpoint-every N  with --memory-free=drift: keep the states every N steps\n"
    "  --inference       standalone C99 inference code of a trained network instead\n"
    "                    (optc emit --inference --help)\n";

static const char build_usage[] =
    "usage: optc build SPEC [-n NET] [-D name=value]... [-o PATH] [--keep-c] [--mpi]\n"
    "                  [--memory-free[=exact|=drift] [--checkpoint-every N]]\n"
    "\n"
    "Emit network NET (default: the first in SPEC), compile it and link it\n"
    "against the runtime into the program PATH (default: ./NET). The compiler,\n"
    "flags and library come from optc.flags beside the optc executable.\n"
    "  -n NET            the network to build\n"
    "  -D name=value     override an optimizer parameter or a stage's steps/width\n"
    "  -o PATH           the program to write\n"
    "  --keep-c          keep the emitted C as PATH.c\n"
    "  --mpi             link the MPI runtime: mpirun -np N PATH train (docs/mpi.md)\n"
    "  --memory-free     a backward pass that rebuilds the states of each invertible\n"
    "                    stage from its last states (the inverse optc check --explain\n"
    "                    prints) and recomputes each grad block, instead of storing\n"
    "                    them: activation memory stops growing with depth, at the\n"
    "                    cost of one more grad-block forward per step. A network\n"
    "                    with no invertible step is refused with the reason\n"
    "                    (docs/memory-free.md). Exact (the default, =exact): the\n"
    "                    forward keeps a small per-element correction (1 byte per\n"
    "                    element, rare escapes in full) of each state against its\n"
    "                    rebuild, so the rebuilt states and the gradients are the\n"
    "                    stored build's bit for bit. =drift: no correction; the\n"
    "                    rebuilt states carry float rounding, bounded by checkpoints\n"
    "  --checkpoint-every N  with --memory-free=drift: keep the states that restart\n"
    "                    the inverse every N steps, so float drift is bounded by N\n"
    "                    steps' worth (more memory: a few states per N steps);\n"
    "                    default: from the coefficient the inverse divides by\n"
    "                    (4 steps at 0.9); N above the stages' depth: none\n";

/* Append s to the dynamic string *buf, quoting it for a shell when it holds
 * anything but plain characters. */
static void build_append(char **buf, size_t *len, size_t *cap, const char *s, bool quote)
{
    bool plain = *s != '\0';
    for (const char *c = s; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=,:+-@%",
                    *c))
            plain = false;
    size_t need = *len + 4 * strlen(s) + 4;
    if (need > *cap) {
        *cap = need * 2;
        char *nb = realloc(*buf, *cap);
        if (!nb)
            abort();
        *buf = nb;
    }
    char *o = *buf + *len;
    if (plain || !quote) {
        o += sprintf(o, "%s", s);
    } else {
        *o++ = '\'';
        for (const char *c = s; *c; c++) {
            if (*c == '\'') {
                memcpy(o, "'\\''", 4);
                o += 4;
            } else {
                *o++ = *c;
            }
        }
        *o++ = '\'';
        *o = '\0';
    }
    *len = (size_t)(o - *buf);
}

/* "optc SUBCOMMAND ARGS..." as a shell would read it. argv[0] is the
 * subcommand (main.c strips optc's own path, which is never recorded). */
static char *build_command_line(int argc, char **argv)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    build_append(&buf, &len, &cap, "optc", false);
    for (int i = 0; i < argc; i++) {
        build_append(&buf, &len, &cap, " ", false);
        build_append(&buf, &len, &cap, argv[i], true);
    }
    return buf;
}

/* Load, plan and emit req's network to out, from the spec's text (read
 * once by the caller: the bytes compiled are the bytes embedded);
 * diagnostics to diag. Returns the exit status. */
static int build_emit_to(FILE *out, const BuildRequest *req, const char *text, size_t len,
                         const char *command, char *netname, size_t netname_size, FILE *diag,
                         bool torch)
{
    const char *path = req->spec;
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load_string(a, path, text, len, req->defs, req->ndefs, diag, &nerr);
    IrGraph *g = s ? fe_unroll(a, s, req->net, diag, &nerr) : NULL;
    if (!g) {
        arena_free(a);
        return 1;
    }
    if (netname)
        snprintf(netname, netname_size, "%s", g->name);
    int rc = 1;
    Plan *p = plan_build(g, diag);
    PlanSched *sched = NULL;
    if (p && req->memory_free && !torch) {
        InvReport *r = inv_analyze(a, s, g);
        const char *why = "the network is not in the spec";
        /* exact reconstruction: no checkpoints (an interval above any depth) */
        int every = req->mf_drift ? req->checkpoint_every : INT_MAX;
        sched = r ? mfree_schedule_every(g, p, r, every, &why) : NULL;
        if (sched)
            sched->exact = !req->mf_drift;
        plan_free(p);
        p = NULL;
        if (!sched)
            fprintf(diag, "%s: error: network %s cannot be built memory-free: %s\n", path,
                    g->name, why);
        else if ((p = plan_build_sched(g, sched, diag)) && plan_verify(p, diag) != 0) {
            plan_free(p);
            p = NULL;
        }
    }
    /* Before the C exists: a program the machine cannot hold is refused
     * here, with its size, not killed by the OOM killer later. */
    if (p && plan_check_memory(p, g, path, plan_phys_bytes(), diag) == 0) {
        EmitInfo info = { .command = command, .spec_path = path, .spec_text = text,
                          .spec_len = len };
        rc = (torch ? emit_torch : emit_c)(out, g, p, &info, diag) == 0 ? 0 : 1;
    }
    plan_free(p);
    mfree_sched_free(sched);
    arena_free(a);
    return rc;
}

/* The spec file's text, or NULL after "PATH: error: cannot open: ..." on
 * diag (the front end's wording). */
static char *build_read_spec(const char *path, size_t *len, FILE *diag)
{
    char *text = fe_read_file(path, SIZE_MAX, len);
    if (!text)
        fprintf(diag, "%s: error: cannot open: %s\n", path, strerror(errno));
    return text;
}

/* Emit to path through a temporary file renamed into place, so a failed
 * run leaves no half-written file. */
static int build_emit_file(const char *path, const BuildRequest *req, const char *text,
                           size_t len, const char *command, char *netname,
                           size_t netname_size, FILE *diag, bool torch)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        abort();
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(diag, "optc: cannot write %s: %s\n", tmp, strerror(errno));
        free(tmp);
        return 1;
    }
    int rc = build_emit_to(f, req, text, len, command, netname, netname_size, diag, torch);
    if (fclose(f) != 0 && rc == 0) {
        fprintf(diag, "optc: cannot write %s: %s\n", tmp, strerror(errno));
        rc = 1;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        fprintf(diag, "optc: cannot write %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    if (rc != 0)
        remove(tmp);
    free(tmp);
    return rc;
}

/* "--memory-free", "--memory-free=exact" or "--memory-free=drift" in a:
 * 1 with *mfree and *drift set, 0 for another argument, -1 for another
 * mode. */
static int build_mfree_arg(const char *a, bool *mfree, bool *drift)
{
    const char *f = "--memory-free";
    size_t n = strlen(f);
    if (strncmp(a, f, n) != 0 || (a[n] && a[n] != '='))
        return 0;
    if (a[n] && strcmp(a + n + 1, "exact") != 0 && strcmp(a + n + 1, "drift") != 0)
        return -1;
    *mfree = true;
    *drift = a[n] && strcmp(a + n + 1, "drift") == 0;
    return 1;
}

/* The combinations build and emit refuse (exit 2): the message, or NULL. */
static const char *build_mfree_check(bool mfree, bool drift, int every, bool torch)
{
    if (every > 0 && !mfree)
        return "--checkpoint-every applies only with --memory-free=drift";
    if (every > 0 && !drift)
        return "--checkpoint-every applies only with --memory-free=drift (exact reconstruction, "
               "the default, keeps no checkpoints)";
    if (torch && mfree)
        return "--pytorch emits the stored computation; --memory-free is for the C program";
    return NULL;
}

/* "--checkpoint-every N" at rest[*i]: N into *every; -1 when it is missing
 * or not a number in 1..1000000. */
static int build_every(CliArgs *ca, int *i, int *every)
{
    if (strcmp(ca->rest[*i], "--checkpoint-every") != 0)
        return 0;
    char *end = NULL;
    long v = *i + 1 < ca->nrest ? strtol(ca->rest[*i + 1], &end, 10) : 0;
    if (!end || *end || v < 1 || v > 1000000)
        return -1;
    *every = (int)v;
    ++*i;
    return 1;
}

int cmd_emit(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--inference") == 0) {   /* cli.c, emit_infer.c */
            char *command = build_command_line(argc, argv);
            int rc = cmd_emit_inference(argc, argv, command);
            free(command);
            return rc;
        }
    if (cli_help(argc, argv, emit_usage))
        return 0;
    CliArgs ca;
    int rc = cli_parse(&ca, argc, argv, emit_usage);
    if (rc != 0)
        return rc;
    bool torch = false, mfree = false, drift = false;
    int every = 0;
    for (int i = 0; i < ca.nrest; i++) {
        int mf = build_mfree_arg(ca.rest[i], &mfree, &drift);
        if (mf < 0) {
            fprintf(stderr, "optc emit: --memory-free takes =exact or =drift, not '%s'\n%s",
                    ca.rest[i], emit_usage);
            return 2;
        }
        if (mf > 0)
            continue;
        int ev = build_every(&ca, &i, &every);
        if (ev < 0) {
            fprintf(stderr, "optc emit: --checkpoint-every needs a number of steps\n%s",
                    emit_usage);
            return 2;
        }
        if (ev > 0)
            continue;
        if (strcmp(ca.rest[i], "--pytorch") != 0) {
            fprintf(stderr, "optc emit: unknown argument '%s'\n%s", ca.rest[i], emit_usage);
            return 2;
        }
        torch = true;
    }
    const char *bad = build_mfree_check(mfree, drift, every, torch);
    if (bad) {
        fprintf(stderr, "optc emit: %s\n%s", bad, emit_usage);
        return 2;
    }
    size_t len;
    char *text = build_read_spec(ca.spec, &len, stderr);
    if (!text)
        return 1;
    char *command = build_command_line(argc, argv);
    BuildRequest req = { .spec = ca.spec, .net = ca.net, .defs = ca.defs, .ndefs = ca.ndefs,
                         .memory_free = mfree, .mf_drift = drift,
                         .checkpoint_every = every };
    if (!ca.out || strcmp(ca.out, "-") == 0)
        rc = build_emit_to(stdout, &req, text, len, command, NULL, 0, stderr, torch);
    else
        rc = build_emit_file(ca.out, &req, text, len, command, NULL, 0, stderr, torch);
    if (rc == 0 && fflush(stdout) != 0) {
        fprintf(stderr, "optc emit: write error: %s\n", strerror(errno));
        rc = 1;
    }
    free(command);
    free(text);
    return rc;
}

/* The build settings make wrote beside the optc executable. */
typedef struct {
    char cc[1024], cflags[4096], include[PATH_MAX + 1], libs[4096];
    char mpi_libs[4096];    /* empty when make found no MPI */
} BuildFlags;

static int build_flags_load(BuildFlags *bf, FILE *diag)
{
    char exe[PATH_MAX + 1];
    const char *env = getenv("OPTC_FLAGS");     /* an explicit file wins */
    char path[PATH_MAX + 32];
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) {
            fprintf(diag, "optc build: cannot locate the optc executable: %s\n",
                    strerror(errno));
            return -1;
        }
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(path, sizeof path, "%s/optc.flags", exe);
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(diag, "optc build: cannot read %s: %s (it is written by make next to "
                "optc; run make)\n", path, strerror(errno));
        return -1;
    }
    memset(bf, 0, sizeof *bf);
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(line, "CC") == 0)
            snprintf(bf->cc, sizeof bf->cc, "%s", v);
        else if (strcmp(line, "CFLAGS") == 0)
            snprintf(bf->cflags, sizeof bf->cflags, "%s", v);
        else if (strcmp(line, "INCLUDE") == 0)
            snprintf(bf->include, sizeof bf->include, "%s", v);
        else if (strcmp(line, "LIBS") == 0)
            snprintf(bf->libs, sizeof bf->libs, "%s", v);
        else if (strcmp(line, "MPI_LIBS") == 0)
            snprintf(bf->mpi_libs, sizeof bf->mpi_libs, "%s", v);
    }
    fclose(f);
    if (!bf->cc[0] || !bf->include[0] || !bf->libs[0]) {
        fprintf(diag, "optc build: %s lacks CC, INCLUDE or LIBS\n", path);
        return -1;
    }
    return 0;
}

/* Run a shell command line; returns its exit status (or -1). */
static int build_run(char *cmd, FILE *diag)
{
    char sh[] = "sh", dash_c[] = "-c";
    char *args[] = { sh, dash_c, cmd, NULL };
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, args, environ);
    if (rc != 0) {
        fprintf(diag, "optc build: cannot run /bin/sh: %s\n", strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* "optc build SPEC [-n NET] [-D name=value]... [-o OUT]": the command that
 * rebuilds req, recorded in the emitted C when the caller gives none. */
static char *build_request_line(const BuildRequest *req)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    build_append(&buf, &len, &cap, "optc build ", false);
    build_append(&buf, &len, &cap, req->spec, true);
    if (req->net) {
        build_append(&buf, &len, &cap, " -n ", false);
        build_append(&buf, &len, &cap, req->net, true);
    }
    for (int i = 0; i < req->ndefs; i++) {
        size_t n = strlen(req->defs[i].name) + strlen(req->defs[i].value) + 2;
        char *d = malloc(n);
        if (!d)
            abort();
        snprintf(d, n, "%s=%s", req->defs[i].name, req->defs[i].value);
        build_append(&buf, &len, &cap, " -D ", false);
        build_append(&buf, &len, &cap, d, true);
        free(d);
    }
    if (req->out) {
        build_append(&buf, &len, &cap, " -o ", false);
        build_append(&buf, &len, &cap, req->out, true);
    }
    if (req->keep_c)
        build_append(&buf, &len, &cap, " --keep-c", false);
    if (req->mpi)
        build_append(&buf, &len, &cap, " --mpi", false);
    if (req->memory_free)
        build_append(&buf, &len, &cap, req->mf_drift ? " --memory-free=drift" : " --memory-free",
                     false);
    if (req->checkpoint_every > 0) {
        char n[48];
        snprintf(n, sizeof n, " --checkpoint-every %d", req->checkpoint_every);
        build_append(&buf, &len, &cap, n, false);
    }
    return buf;
}

int build_program(const BuildRequest *req, FILE *diag)
{
    BuildFlags bf;
    if (build_flags_load(&bf, diag) != 0)
        return 1;
    if (req->mpi && !bf.mpi_libs[0]) {
        fprintf(diag, "optc build: --mpi: this optc was built without MPI (install "
                "libopenmpi-dev and openmpi-bin, then run make)\n");
        return 1;
    }
    size_t speclen;
    char *spec = build_read_spec(req->spec, &speclen, diag);
    if (!spec)
        return 1;
    char dir[PATH_MAX];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/optc-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(diag, "optc build: cannot create a directory in %s: %s\n",
                tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
        free(spec);
        return 1;
    }
    char cfile[PATH_MAX + 16];
    snprintf(cfile, sizeof cfile, "%s/net.c", dir);
    char netname[256] = "";
    char *command = req->command ? NULL : build_request_line(req);
    int rc = build_emit_file(cfile, req, spec, speclen, req->command ? req->command : command,
                             netname, sizeof netname, diag, false);
    free(command);
    free(spec);

    char out[PATH_MAX];
    snprintf(out, sizeof out, "%s", req->out ? req->out : netname);

    bool emitted = rc == 0;
    if (rc == 0) {
        char *cmd = NULL;
        size_t len = 0, cap = 0;
        build_append(&cmd, &len, &cap, bf.cc, false);
        build_append(&cmd, &len, &cap, " ", false);
        build_append(&cmd, &len, &cap, bf.cflags, false);
        build_append(&cmd, &len, &cap, " -I", false);
        build_append(&cmd, &len, &cap, bf.include, true);
        build_append(&cmd, &len, &cap, " -o ", false);
        build_append(&cmd, &len, &cap, out, true);
        build_append(&cmd, &len, &cap, " ", false);
        build_append(&cmd, &len, &cap, cfile, true);
        build_append(&cmd, &len, &cap, " ", false);
        build_append(&cmd, &len, &cap, req->mpi ? bf.mpi_libs : bf.libs, false);
        int st = build_run(cmd, diag);
        if (st != 0) {
            fprintf(diag, "optc build: the C compiler failed (status %d) on the code "
                    "emitted for %s:\n  %s\n", st, netname, cmd);
            rc = 1;
        }
        free(cmd);
    }
    /* Kept even when the C compiler failed: that is when it is wanted. */
    if (req->keep_c && emitted) {
        char kept[PATH_MAX + 8];
        snprintf(kept, sizeof kept, "%s.c", out);
        size_t n;
        char *text = fe_read_file(cfile, SIZE_MAX, &n);
        FILE *f = text ? fopen(kept, "w") : NULL;
        bool ok = f && fwrite(text, 1, n, f) == n;
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok) {
            fprintf(diag, "optc build: cannot write %s\n", kept);
            rc = 1;
        } else if (rc != 0) {
            fprintf(diag, "optc build: the emitted C is in %s\n", kept);
        }
        free(text);
    }
    remove(cfile);
    rmdir(dir);
    return rc;
}

int cmd_build(int argc, char **argv)
{
    if (cli_help(argc, argv, build_usage))
        return 0;
    CliArgs ca;
    int rc = cli_parse(&ca, argc, argv, build_usage);
    if (rc != 0)
        return rc;
    BuildRequest req = { .spec = ca.spec, .net = ca.net, .defs = ca.defs, .ndefs = ca.ndefs,
                         .out = ca.out && strcmp(ca.out, "-") != 0 ? ca.out : NULL };
    for (int i = 0; i < ca.nrest; i++) {
        if (strcmp(ca.rest[i], "--keep-c") == 0) {
            req.keep_c = true;
        } else if (strcmp(ca.rest[i], "--mpi") == 0) {
            req.mpi = true;
        } else if (build_mfree_arg(ca.rest[i], &req.memory_free, &req.mf_drift) != 0) {
            if (!req.memory_free) {
                fprintf(stderr, "optc build: --memory-free takes =exact or =drift, not '%s'\n%s",
                        ca.rest[i], build_usage);
                return 2;
            }
        } else if (strcmp(ca.rest[i], "--checkpoint-every") == 0) {
            if (build_every(&ca, &i, &req.checkpoint_every) < 0) {
                fprintf(stderr, "optc build: --checkpoint-every needs a number of steps\n%s",
                        build_usage);
                return 2;
            }
        } else {
            fprintf(stderr, "optc build: unknown argument '%s'\n%s", ca.rest[i], build_usage);
            return 2;
        }
    }
    const char *bad = build_mfree_check(req.memory_free, req.mf_drift, req.checkpoint_every,
                                        false);
    if (bad) {
        fprintf(stderr, "optc build: %s\n%s", bad, build_usage);
        return 2;
    }
    char *command = build_command_line(argc, argv);
    req.command = command;
    rc = build_program(&req, stderr);
    free(command);
    return rc;
}
