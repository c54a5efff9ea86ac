/* compare.c — optc compare: build several specs (or -D variants of one,
 * or a grid of --sweep values), train each over N seeds, and summarise: a
 * table of mean +- std beside each network's optimizer rate on quadratics
 * (optc analyze), a CSV, and plots through gnuplot (learning curves,
 * accuracy against the rate, accuracy against a swept value).
 *
 * An orchestration layer over the compiler: networks are built through
 * build_program() and analysed through analyze.h in this process; only the
 * training runs (the built programs) and gnuplot are child processes.
 *
 * Layout: OUT/<label>/net is the built program, OUT/<label>/seed<S>/ the
 * run directory the generated program writes (log.csv, summary.json). A run
 * whose summary.json exists is done and is not trained again; a run with
 * interrupted.safetensors resumes from it. So an interrupted compare is
 * finished by running the same command again. */
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "analyze.h"
#include "cli.h"

enum { CMP_MAXENT = 64, CMP_MAXDEF = 32, CMP_MAXSEEDS = 32, CMP_MAXPASS = 32,
       CMP_MAXEPOCHS = 1000, CMP_MAXSWEEP = 8, CMP_MAXVALS = 32 };

/* --sweep NAME=v1,v2,...: one axis of the grid. */
typedef struct {
    const char *name;
    const char *values[CMP_MAXVALS];
    int nvalues;
    bool numeric;           /* every value a plain number (sweep.png's x axis) */
    bool applies[CMP_MAXENT];   /* per spec: a -D of this name is accepted */
} Sweep;

typedef struct {
    const char *spec;
    const char *net;        /* from SPEC:NET, else -n, else NULL (the first) */
    char label[160];
    char group[160];        /* the label without the sweep part */
    Define defs[CMP_MAXDEF];
    int ndefs;
    int sweep_val[CMP_MAXSWEEP];    /* value index per sweep; -1: not applied */
    char dir[1024];
    /* the optimizer on quadratics */
    char optimizer[64];     /* "": no one optimizer (see rate_note) */
    double rate;            /* NAN when n/a */
    const char *rate_note;  /* why the rate is n/a */
    bool learned;
    /* results */
    int nok;
    double acc[CMP_MAXSEEDS], loss[CMP_MAXSEEDS], secs[CMP_MAXSEEDS];
    double params, madds;
    double *curve;      /* mean test accuracy per epoch */
    int ncurve;
    bool failed;
    char *vcopy;        /* the variant text the defines point into */
} Entry;

typedef struct {
    char *specs[CMP_MAXENT];    /* paths; a trailing :NET is split off into nets */
    const char *nets[CMP_MAXENT];
    int nspecs;
    const char *net;
    Define defs[CMP_MAXDEF];
    int ndefs;
    char *variants[CMP_MAXENT];
    int nvariants;
    Sweep sweeps[CMP_MAXSWEEP];
    int nsweeps;
    int seeds, epochs, limit, test_limit, threads, jobs;
    const char *data, *out;
    char *pass[CMP_MAXPASS];    /* after --: passed to train as is */
    int npass;
    AnalyzeOpts an;
    bool dry_run;
} Opts;

static const char usage[] =
    "usage: optc compare A.opt[:NET] [B.opt[:NET] ...] [-n NET] [-D name=value]... [--variant \"-D a=1\"]...\n"
    "         [--sweep NAME=v1,v2,...]... [--seeds N] [--epochs E] [--limit N] [--test-limit N]\n"
    "         [--threads T] [--jobs J] [--data SPEC] [--out DIR] [--mu X] [--L X] [--h X]\n"
    "         [--dry-run] [-- TRAIN-FLAGS...]\n"
    "  Builds each spec (its network NET, else -n NET, else the first; or each\n"
    "  --variant of it), trains it over seeds 1..N into\n"
    "  OUT/<label>/seed<S>/ (default OUT runs/compare), prints mean +- std of test\n"
    "  accuracy and loss, writes OUT/summary.csv and OUT/curves.png. Finished runs\n"
    "  (summary.json present) are not trained again; interrupted ones resume.\n"
    "  --sweep NAME=v1,v2,... (repeatable) makes a variant of every point of the\n"
    "  grid, the cartesian product of the values (first sweep outermost), for\n"
    "  each spec that has NAME (any -D name: beta, heavy_ball.beta, stage1.steps,\n"
    "  stage2.width...); a spec without NAME is trained once.\n"
    "  Each network's optimizer rate per step on quadratics (optc analyze, the\n"
    "  same --mu/--L/--h for all: defaults 0.01, 1, 1/L) stands beside its\n"
    "  results; OUT/rate.png plots test accuracy against it, OUT/sweep.png\n"
    "  against the swept value (one --sweep).\n"
    "  --dry-run prints the variants and their rates, building nothing.\n"
    "  --jobs J trains J runs at once (give each --threads T/J), their output going\n"
    "  to OUT/<label>/seed<S>/train.out; on a small machine 2 jobs x 1 thread beat\n"
    "  1 job x 2 threads for small networks.\n";

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "optc compare: %s wants an integer in %d..%d, got '%s'\n", flag, lo, hi,
                s);
        return 2;
    }
    *out = (int)v;
    return 0;
}

/* "name=value" into a Define pointing into s (which is modified). */
static int split_define(char *s, Define *d)
{
    char *eq = strchr(s, '=');
    if (!eq || eq == s || !eq[1]) {
        fprintf(stderr, "optc compare: -D wants name=value, got '%s'\n", s);
        return 2;
    }
    *eq = 0;
    d->name = s;
    d->value = eq + 1;
    return 0;
}

static int parse_pos(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v <= 0) {
        fprintf(stderr, "optc compare: %s wants a positive number, got '%s'\n", flag, s);
        return 2;
    }
    *out = v;
    return 0;
}

static bool is_number(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    return end != s && !*end && isfinite(v);
}

/* "NAME=v1,v2,..." into sw, pointing into s (which is modified). Every
 * value must be non-empty. */
static int parse_sweep(char *s, Sweep *sw)
{
    memset(sw, 0, sizeof *sw);
    char *eq = strchr(s, '=');
    if (!eq || eq == s) {
        fprintf(stderr, "optc compare: --sweep wants NAME=v1,v2,..., got '%s'\n", s);
        return 2;
    }
    *eq = 0;
    sw->name = s;
    char *list = eq + 1;
    if (!*list) {
        fprintf(stderr, "optc compare: --sweep %s: empty value list\n", sw->name);
        return 2;
    }
    sw->numeric = true;
    for (char *p = list;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = 0;
        if (!*p) {
            fprintf(stderr, "optc compare: --sweep %s: empty value in the list\n", sw->name);
            return 2;
        }
        if (sw->nvalues == CMP_MAXVALS) {
            fprintf(stderr, "optc compare: --sweep %s: more than %d values\n", sw->name,
                    CMP_MAXVALS);
            return 2;
        }
        sw->numeric &= is_number(p);
        sw->values[sw->nvalues++] = p;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

static int parse_opts(Opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->seeds = 1;
    o->epochs = -1;
    o->limit = -1;
    o->test_limit = -1;
    o->threads = -1;
    o->jobs = 1;
    o->data = "fashion-mnist";
    o->out = "runs/compare";
    analyze_defaults(&o->an);
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return -1;
        } else if (!strcmp(a, "--dry-run")) {
            o->dry_run = true;
        } else if (!strcmp(a, "--")) {
            for (i++; i < argc; i++) {
                if (o->npass == CMP_MAXPASS) {
                    fprintf(stderr, "optc compare: too many train flags\n");
                    return 2;
                }
                o->pass[o->npass++] = argv[i];
            }
            break;
        } else if (!strncmp(a, "-D", 2)) {
            char *d = a[2] ? a + 2 : v;
            if (!a[2])
                i++;
            if (!d) {
                fprintf(stderr, "optc compare: -D wants name=value\n");
                return 2;
            }
            if (o->ndefs == CMP_MAXDEF) {
                fprintf(stderr, "optc compare: too many -D\n");
                return 2;
            }
            rc = split_define(d, &o->defs[o->ndefs++]);
        } else if (a[0] == '-' && a[1]) {
            if (!v) {
                fprintf(stderr, "optc compare: %s wants a value\n%s", a, usage);
                return 2;
            }
            i++;
            if (!strcmp(a, "-n"))
                o->net = v;
            else if (!strcmp(a, "--variant")) {
                if (o->nvariants == CMP_MAXENT) {
                    fprintf(stderr, "optc compare: too many variants\n");
                    return 2;
                }
                o->variants[o->nvariants++] = argv[i];
            } else if (!strcmp(a, "--seeds"))
                rc = parse_int(a, v, 1, CMP_MAXSEEDS, &o->seeds);
            else if (!strcmp(a, "--epochs"))
                rc = parse_int(a, v, 1, CMP_MAXEPOCHS, &o->epochs);
            else if (!strcmp(a, "--limit"))
                rc = parse_int(a, v, 1, 100000000, &o->limit);
            else if (!strcmp(a, "--test-limit"))
                rc = parse_int(a, v, 1, 100000000, &o->test_limit);
            else if (!strcmp(a, "--threads"))
                rc = parse_int(a, v, 1, 1024, &o->threads);
            else if (!strcmp(a, "--jobs"))
                rc = parse_int(a, v, 1, 64, &o->jobs);
            else if (!strcmp(a, "--sweep")) {
                if (o->nsweeps == CMP_MAXSWEEP) {
                    fprintf(stderr, "optc compare: at most %d --sweep\n", CMP_MAXSWEEP);
                    return 2;
                }
                rc = parse_sweep(v, &o->sweeps[o->nsweeps++]);
            } else if (!strcmp(a, "--mu"))
                rc = parse_pos(a, v, &o->an.mu);
            else if (!strcmp(a, "--L"))
                rc = parse_pos(a, v, &o->an.L);
            else if (!strcmp(a, "--h"))
                rc = parse_pos(a, v, &o->an.h);
            else if (!strcmp(a, "--data"))
                o->data = v;
            else if (!strcmp(a, "--out"))
                o->out = v;
            else {
                fprintf(stderr, "optc compare: unknown flag '%s'\n%s", a, usage);
                return 2;
            }
        } else {
            if (o->nspecs == CMP_MAXENT) {
                fprintf(stderr, "optc compare: too many specs\n");
                return 2;
            }
            /* SPEC:NET picks a network per spec (a spec path may hold ':'
             * only before its last '/'). */
            char *colon = strrchr(a, ':');
            if (colon && !strchr(colon, '/')) {
                *colon = 0;
                o->nets[o->nspecs] = colon + 1;
            }
            o->specs[o->nspecs++] = a;
        }
        if (rc)
            return rc;
    }
    if (o->nspecs == 0) {
        fprintf(stderr, "optc compare: no spec given\n%s", usage);
        return 2;
    }
    if (o->an.mu > o->an.L) {
        fprintf(stderr, "optc compare: need --mu <= --L\n");
        return 2;
    }
    for (int k = 0; k < o->nsweeps; k++) {
        const char *n = o->sweeps[k].name;
        for (int j = 0; j < k; j++)
            if (!strcmp(o->sweeps[j].name, n)) {
                fprintf(stderr, "optc compare: --sweep %s given twice\n", n);
                return 2;
            }
        for (int d = 0; d < o->ndefs; d++)
            if (!strcmp(o->defs[d].name, n)) {
                fprintf(stderr, "optc compare: %s is both swept and set by -D\n", n);
                return 2;
            }
    }
    return 0;
}

/* Label characters safe in a path and in gnuplot: others become '_'. */
static void label_append(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(dst);
    for (; *s && n + 1 < cap; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '=' || c == '-' || c == '_' || c == '+' || c == ',';
        dst[n++] = ok ? c : '_';
    }
    dst[n] = 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Split a variant string ("-D a=1 -D b=2", "a=1 b=2") into defines. */
static int variant_defs(char *v, Entry *e)
{
    char *save = NULL;
    for (char *t = strtok_r(v, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (!strcmp(t, "-D"))
            continue;
        if (!strncmp(t, "-D", 2))
            t += 2;
        if (e->ndefs == CMP_MAXDEF) {
            fprintf(stderr, "optc compare: too many -D in a variant\n");
            return 2;
        }
        if (split_define(t, &e->defs[e->ndefs++]))
            return 2;
    }
    return 0;
}

/* Whether spec loads with the global -D's plus name=value (diagnostics to
 * diag, NULL for none). */
static bool spec_loads(const Opts *o, const char *spec, const char *name, const char *value,
                       FILE *diag)
{
    Define defs[CMP_MAXDEF + 1];
    int n = 0;
    for (int d = 0; d < o->ndefs; d++)
        defs[n++] = o->defs[d];
    if (name)
        defs[n++] = (Define){ name, value };
    Arena *a = arena_new();
    int nerr = 0;
    bool ok = fe_load(a, spec, defs, n, diag, &nerr) != NULL;
    arena_free(a);
    return ok;
}

/* Which specs each sweep applies to. A name applies to a spec that loads
 * with it at some value: "1" (a valid steps, width and parameter alike) or
 * one of the sweep's own. A spec that does not load without it is left to
 * fail at its build. Errors: a name no spec has, a value a spec rejects. */
static int sweep_targets(Opts *o)
{
    bool loads[CMP_MAXENT];
    bool any_loads = false;
    for (int s = 0; s < o->nspecs; s++)
        any_loads |= loads[s] = spec_loads(o, o->specs[s], NULL, NULL, NULL);
    for (int k = 0; k < o->nsweeps; k++) {
        Sweep *sw = &o->sweeps[k];
        bool any = false;
        for (int s = 0; s < o->nspecs; s++) {
            bool ok = loads[s] && spec_loads(o, o->specs[s], sw->name, "1", NULL);
            for (int v = 0; loads[s] && !ok && v < sw->nvalues; v++)
                ok = spec_loads(o, o->specs[s], sw->name, sw->values[v], NULL);
            sw->applies[s] = ok;
            any |= ok;
        }
        if (!any && any_loads) {
            fprintf(stderr, "optc compare: --sweep %s: no spec has an optimizer parameter or "
                    "stage setting named '%s'\n", sw->name, sw->name);
            return 1;
        }
        for (int s = 0; s < o->nspecs; s++)
            for (int v = 0; sw->applies[s] && v < sw->nvalues; v++)
                if (!spec_loads(o, o->specs[s], sw->name, sw->values[v], NULL)) {
                    spec_loads(o, o->specs[s], sw->name, sw->values[v], stderr);
                    fprintf(stderr, "optc compare: --sweep %s: %s rejects the value '%s'\n",
                            sw->name, o->specs[s], sw->values[v]);
                    return 1;
                }
    }
    return 0;
}

/* One entry per spec x variant x point of the sweep grid (the sweeps that
 * apply to the spec; the first sweep outermost). */
static int make_entries(Opts *o, Entry *ent, int *nent)
{
    int n = 0;
    int nv = o->nvariants ? o->nvariants : 1;
    int rc = sweep_targets(o);
    if (rc)
        return rc;
    for (int s = 0; s < o->nspecs; s++) {
        int npoints = 1;
        for (int k = 0; k < o->nsweeps; k++)
            if (o->sweeps[k].applies[s])
                npoints *= o->sweeps[k].nvalues;
        if (n + nv * npoints > CMP_MAXENT) {
            fprintf(stderr, "optc compare: more than %d variants (spec x variant x sweep "
                    "point)\n", CMP_MAXENT);
            *nent = n;
            return 2;
        }
        for (int v = 0; v < nv; v++)
            for (int pt = 0; pt < npoints; pt++) {
                Entry *e = &ent[n];
                memset(e, 0, sizeof *e);
                e->spec = o->specs[s];
                e->net = o->nets[s] ? o->nets[s] : o->net;
                for (int d = 0; d < o->ndefs; d++)
                    e->defs[e->ndefs++] = o->defs[d];
                char base[256];
                snprintf(base, sizeof base, "%s", base_name(o->specs[s]));
                char *dot = strrchr(base, '.');
                if (dot && !strcmp(dot, ".opt"))
                    *dot = 0;
                label_append(e->label, sizeof e->label, base);
                if (e->net) {
                    label_append(e->label, sizeof e->label, "-");
                    label_append(e->label, sizeof e->label, e->net);
                }
                bool dotted = false;
                if (o->nvariants) {
                    char *copy = strdup(o->variants[v]);
                    if (!copy)
                        return 1;
                    int first = e->ndefs;
                    rc = variant_defs(copy, e);
                    /* the defines point into copy: it lives as long as the entry */
                    e->vcopy = copy;
                    if (rc) {
                        *nent = n + 1;
                        return rc;
                    }
                    for (int d = first; d < e->ndefs; d++) {
                        label_append(e->label, sizeof e->label, dotted ? "," : ".");
                        label_append(e->label, sizeof e->label, e->defs[d].name);
                        label_append(e->label, sizeof e->label, "=");
                        label_append(e->label, sizeof e->label, e->defs[d].value);
                        dotted = true;
                    }
                }
                snprintf(e->group, sizeof e->group, "%s", e->label);
                /* pt in mixed radix over the applying sweeps, last fastest */
                int rest = pt;
                for (int k = o->nsweeps - 1; k >= 0; k--) {
                    const Sweep *sw = &o->sweeps[k];
                    e->sweep_val[k] = -1;
                    if (!sw->applies[s])
                        continue;
                    e->sweep_val[k] = rest % sw->nvalues;
                    rest /= sw->nvalues;
                }
                for (int k = 0; k < o->nsweeps; k++) {
                    if (e->sweep_val[k] < 0)
                        continue;
                    if (e->ndefs == CMP_MAXDEF) {
                        fprintf(stderr, "optc compare: too many -D in a variant\n");
                        *nent = n + 1;
                        return 2;
                    }
                    const char *val = o->sweeps[k].values[e->sweep_val[k]];
                    e->defs[e->ndefs++] = (Define){ o->sweeps[k].name, val };
                    label_append(e->label, sizeof e->label, dotted ? "," : ".");
                    label_append(e->label, sizeof e->label, o->sweeps[k].name);
                    label_append(e->label, sizeof e->label, "=");
                    label_append(e->label, sizeof e->label, val);
                    dotted = true;
                }
                /* Same label twice (same spec file name in two folders): number it. */
                for (int p = 0; p < n; p++)
                    if (!strcmp(ent[p].label, e->label)) {
                        char num[16];
                        snprintf(num, sizeof num, "#%d", n + 1);
                        label_append(e->label, sizeof e->label, num);
                        label_append(e->group, sizeof e->group, num);
                        break;
                    }
                snprintf(e->dir, sizeof e->dir, "%s/%s", o->out, e->label);
                n++;
            }
    }
    *nent = n;
    return 0;
}

/* The rate of e's network on quadratics, as optc analyze with e's -D's
 * prints it for the optimizer its stages run. */
static void entry_rate(const Opts *o, Entry *e)
{
    e->rate = NAN;
    Arena *a = arena_new();
    int nerr = 0;
    AnalyzeResult r;
    const char *why = NULL, *opt = NULL;
    Spec *s = fe_load(a, e->spec, e->defs, e->ndefs, NULL, &nerr);
    if (!s)
        e->rate_note = "spec error";
    else if (!(opt = fe_network_optimizer(s, e->net, &why)))
        e->rate_note = why;
    else if (analyze_optimizer(s, opt, &o->an, &r, stderr) < 0)
        e->rate_note = "analyze failed";
    else if (r.method == AN_CONCAT)
        e->rate_note = "concat";
    else {
        e->rate = r.rate;
        e->learned = r.learned;
    }
    snprintf(e->optimizer, sizeof e->optimizer, "%s", opt ? opt : "");
    arena_free(a);
}

static int mkdir_p(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    if (mkdir(buf, 0777) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int build_entry(const Entry *e, const char *bin)
{
    BuildRequest req = { .spec = e->spec, .net = e->net, .defs = e->defs, .ndefs = e->ndefs,
                         .out = bin };
    fflush(stdout);
    return build_program(&req, stderr);
}

/* Append "flag N" to argv at *n; text holds N's digits (and must live as
 * long as argv). */
static void push_num(char **argv, int *n, const char *flag, char text[16], int v)
{
    snprintf(text, 16, "%d", v);
    argv[(*n)++] = (char *)(uintptr_t)flag;
    argv[(*n)++] = text;
}

/* Start the training of one run; with redirect its output goes to
 * rundir/train.out. Returns the child's pid, or -1. */
static pid_t train_spawn(const Opts *o, const char *bin, const char *rundir, int seed,
                         bool redirect)
{
    char *argv[32 + CMP_MAXPASS];
    char num[5][16], resume[1200];
    int n = 0;
    argv[n++] = (char *)(uintptr_t)bin;
    argv[n++] = (char *)(uintptr_t)"train";
    argv[n++] = (char *)(uintptr_t)"--data";
    argv[n++] = (char *)(uintptr_t)o->data;
    push_num(argv, &n, "--seed", num[0], seed);
    if (o->epochs > 0)
        push_num(argv, &n, "--epochs", num[1], o->epochs);
    if (o->limit > 0)
        push_num(argv, &n, "--limit", num[2], o->limit);
    if (o->test_limit > 0)
        push_num(argv, &n, "--test-limit", num[3], o->test_limit);
    if (o->threads > 0)
        push_num(argv, &n, "--threads", num[4], o->threads);
    argv[n++] = (char *)(uintptr_t)"--out";
    argv[n++] = (char *)(uintptr_t)rundir;
    snprintf(resume, sizeof resume, "%s/interrupted.safetensors", rundir);
    if (file_exists(resume)) {
        printf("[compare]   resuming from %s\n", resume);
        argv[n++] = (char *)(uintptr_t)"--resume";
        argv[n++] = resume;
    }
    for (int i = 0; i < o->npass; i++)
        argv[n++] = o->pass[i];
    argv[n] = NULL;
    char outp[1200];
    snprintf(outp, sizeof outp, "%s/train.out", rundir);
    if (redirect && mkdir_p(rundir) < 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (redirect) {
            int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                _exit(127);
            close(fd);
        }
        execv(argv[0], argv);
        fprintf(stderr, "optc compare: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static int exit_status(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The last non-empty line of a run's train.out, for the heartbeat. */
static void last_line(const char *rundir, char *buf, size_t cap)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/train.out", rundir);
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0])
            snprintf(buf, cap, "%s", line);
    }
    fclose(f);
}

/* The number after "key": in a flat JSON object; NAN when absent. */
static double json_num(const char *js, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(js, pat);
    if (!p)
        return NAN;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ':')
        p++;
    char *end;
    double v = strtod(p, &end);
    return end == p ? (double)NAN : v;
}

/* Accuracy as a percentage whether the program logs a fraction or not. */
static double as_pct(double a)
{
    return a <= 1.0 ? 100.0 * a : a;
}

/* test_acc per epoch from log.csv into acc (0-based by row); count. */
static int read_curve(const char *path, double *acc, int cap)
{
    char *s = fe_read_file(path, SIZE_MAX, NULL);
    if (!s)
        return 0;
    int col = -1, n = 0;
    char *save = NULL;
    char *line = strtok_r(s, "\n", &save);
    if (line) {
        int c = 0;
        for (char *p = line; p; c++) {
            char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (len == 8 && !strncmp(p, "test_acc", 8))
                col = c;
            p = comma ? comma + 1 : NULL;
        }
    }
    while (col >= 0 && (line = strtok_r(NULL, "\n", &save)) && n < cap) {
        char *p = line;
        for (int c = 0; c < col && p; c++) {
            p = strchr(p, ',');
            if (p)
                p++;
        }
        if (!p)
            continue;
        acc[n++] = as_pct(strtod(p, NULL));
    }
    free(s);
    return n;
}

static void mean_std(const double *x, int n, double *mean, double *sd)
{
    double m = 0, v = 0;
    for (int i = 0; i < n; i++)
        m += x[i];
    m = n ? m / n : (double)NAN;
    for (int i = 0; i < n; i++)
        v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(v / (n - 1)) : 0.0;
}

static void collect(const Opts *o, Entry *e)
{
    double curves[CMP_MAXSEEDS][256];
    int ncurve = 1 << 30;
    e->nok = 0;
    e->params = e->madds = NAN;
    for (int s = 1; s <= o->seeds; s++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/seed%d/summary.json", e->dir, s);
        char *js = fe_read_file(path, SIZE_MAX, NULL);
        if (!js)
            continue;
        int k = e->nok;
        e->acc[k] = as_pct(json_num(js, "test_acc"));
        e->loss[k] = json_num(js, "test_loss");
        e->secs[k] = json_num(js, "train_seconds");
        e->params = json_num(js, "params");
        e->madds = json_num(js, "madds");
        free(js);
        snprintf(path, sizeof path, "%s/seed%d/log.csv", e->dir, s);
        int nc = read_curve(path, curves[k], 256);
        if (nc < ncurve)
            ncurve = nc;
        e->nok++;
    }
    if (e->nok == 0 || ncurve <= 0)
        return;
    e->curve = calloc((size_t)ncurve, sizeof(double));
    if (!e->curve)
        return;
    e->ncurve = ncurve;
    for (int ep = 0; ep < ncurve; ep++) {
        double m = 0;
        for (int k = 0; k < e->nok; k++)
            m += curves[k][ep];
        e->curve[ep] = m / e->nok;
    }
}

static void fmt_count(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "?");
    else if (v >= 1e9)
        snprintf(buf, cap, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, cap, "%.3fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, cap, "%.1fK", v / 1e3);
    else
        snprintf(buf, cap, "%.0f", v);
}

/* s as one CSV field: quoted when it holds a comma, a quote or a newline
 * (sweep labels hold commas). */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static double entry_h(const Opts *o)
{
    return o->an.h > 0 ? o->an.h : 1.0 / o->an.L;
}

static void fmt_rate(char *buf, size_t cap, const Entry *e)
{
    if (isnan(e->rate))
        snprintf(buf, cap, "n/a");
    else
        snprintf(buf, cap, "%.6f%s", e->rate, e->learned ? "*" : "");
}

/* The table on stdout: per entry its optimizer and rate, then (unless
 * dry) parameters, multiply-adds, time and test accuracy and loss. */
static void print_table(const Opts *o, const Entry *ent, int n, bool dry)
{
    int w = 12;
    for (int i = 0; i < n; i++)
        if ((int)strlen(ent[i].label) > w)
            w = (int)strlen(ent[i].label);
    printf("\nrate: the network's optimizer on quadratics (optc analyze), eig(A) in [%g, %g], "
           "kappa = %g, h = %g%s;\n      worst-case contraction of the error per step, "
           "lower is faster\n",
           o->an.mu, o->an.L, o->an.L / o->an.mu, entry_h(o), o->an.h > 0 ? "" : " (1/L)");
    printf("%-*s %-12s %-9s %10s %10s %10s  %-18s %s\n", w, "spec", "optimizer", "rate",
           "params", "madds", "time/run", "test acc (%)", "test loss");
    bool learned = false, na = false;
    for (int i = 0; i < n; i++) {
        const Entry *e = &ent[i];
        char rb[32];
        fmt_rate(rb, sizeof rb, e);
        learned |= e->learned;
        na |= isnan(e->rate);
        printf("%-*s %-12s %-9s ", w, e->label, e->optimizer[0] ? e->optimizer : "-", rb);
        if (dry) {
            printf("%10s %10s %10s  %s\n", "-", "-", "-", "(dry run)");
            continue;
        }
        if (e->nok == 0) {
            printf("%10s %10s %10s  %s\n", "-", "-", "-", "no finished run");
            continue;
        }
        double am, as, lm, ls, tm, ts;
        mean_std(e->acc, e->nok, &am, &as);
        mean_std(e->loss, e->nok, &lm, &ls);
        mean_std(e->secs, e->nok, &tm, &ts);
        char pb[32], mb[32], tb[32], ab[48];
        fmt_count(pb, sizeof pb, e->params);
        fmt_count(mb, sizeof mb, e->madds);
        snprintf(tb, sizeof tb, "%.1f s", tm);
        snprintf(ab, sizeof ab, "%.2f +- %.2f", am, as);
        printf("%10s %10s %10s  %-18s %.4f +- %.4f   (%d seed%s)\n", pb, mb, tb, ab, lm, ls,
               e->nok, e->nok == 1 ? "" : "s");
    }
    if (learned)
        printf("* learned coefficients taken at their init values\n");
    for (int i = 0; na && i < n; i++)
        if (isnan(ent[i].rate) && (i == 0 || strcmp(ent[i].group, ent[i - 1].group)))
            printf("rate n/a for %s: %s\n", ent[i].group,
                   !strcmp(ent[i].rate_note, "concat") ? "concatenation, no contraction"
                                                       : ent[i].rate_note);
}

static int write_csv(const Opts *o, const Entry *ent, int n)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/summary.csv", o->out);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "optc compare: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "label,spec,net,defines,seeds,params,madds,train_seconds_mean,"
               "test_acc_mean,test_acc_std,test_loss_mean,test_loss_std,optimizer,rate");
    for (int k = 0; k < o->nsweeps; k++) {
        fputc(',', f);
        csv_field(f, o->sweeps[k].name);
    }
    fputc('\n', f);
    for (int i = 0; i < n; i++) {
        const Entry *e = &ent[i];
        double am, as, lm, ls, tm, ts;
        mean_std(e->acc, e->nok, &am, &as);
        mean_std(e->loss, e->nok, &lm, &ls);
        mean_std(e->secs, e->nok, &tm, &ts);
        char defs[512] = "";
        size_t dl = 0;
        for (int d = 0; d < e->ndefs && dl < sizeof defs; d++)
            dl += (size_t)snprintf(defs + dl, sizeof defs - dl, "%s%s=%s", d ? " " : "",
                                   e->defs[d].name, e->defs[d].value);
        csv_field(f, e->label);
        fputc(',', f);
        csv_field(f, e->spec);
        fputc(',', f);
        csv_field(f, e->net ? e->net : "");
        fputc(',', f);
        csv_field(f, defs);
        fprintf(f, ",%d,%.0f,%.0f,%.3f,%.4f,%.4f,%.5f,%.5f,%s,", e->nok, e->params, e->madds,
                tm, am, as, lm, ls, e->optimizer);
        if (!isnan(e->rate))
            fprintf(f, "%.6f", e->rate);
        for (int k = 0; k < o->nsweeps; k++) {
            fputc(',', f);
            if (e->sweep_val[k] >= 0)
                csv_field(f, o->sweeps[k].values[e->sweep_val[k]]);
        }
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "optc compare: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("wrote %s\n", path);
    return 0;
}

/* Run gnuplot on OUT/script (in OUT, so the script's relative names hold;
 * its messages appended to OUT/gnuplot.log); true when it wrote OUT/png. */
static bool run_gnuplot(const Opts *o, const char *script, const char *png)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = chdir(o->out) == 0 ? open("gnuplot.log", O_WRONLY | O_CREAT | O_APPEND, 0644)
                                    : -1;
        if (fd >= 0 && dup2(fd, 2) >= 0)
            execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "optc compare: gnuplot failed on %s/%s (its messages are in "
                        "gnuplot.log there; the script and its data are there to plot by "
                        "hand)\n", o->out, script);
        return false;
    }
    printf("wrote %s/%s\n", o->out, png);
    return true;
}

/* A y range holding [lo, hi] with a margin, at least 1 point wide, so
 * gnuplot never meets an empty range (all runs at the same accuracy). */
static void yrange(FILE *f, double lo, double hi)
{
    double pad = 0.12 * (hi - lo);
    if (pad < 0.5)
        pad = 0.5;
    fprintf(f, "set yrange [%.4f:%.4f]\n", lo - pad, hi + pad);
}

/* Widen [*lo, *hi] to hold entry e's mean +- std. */
static void acc_span(const Entry *e, double *lo, double *hi)
{
    double am, as;
    mean_std(e->acc, e->nok, &am, &as);
    if (am - as < *lo)
        *lo = am - as;
    if (am + as > *hi)
        *hi = am + as;
}

static FILE *open_out(const Opts *o, const char *name)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", o->out, name);
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "optc compare: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

/* curves.png: every entry's mean test accuracy per epoch. */
static int plot_curves(const Opts *o, const Entry *ent, int n)
{
    FILE *f = open_out(o, "curves.dat");
    if (!f)
        return 1;
    int nplot = 0;
    for (int i = 0; i < n; i++) {
        if (ent[i].ncurve == 0)
            continue;
        fprintf(f, "# %s\n", ent[i].label);
        for (int ep = 0; ep < ent[i].ncurve; ep++)
            fprintf(f, "%d %.4f\n", ep + 1, ent[i].curve[ep]);
        fprintf(f, "\n\n");
        nplot++;
    }
    fclose(f);
    if (nplot == 0)
        return 0;
    if (!(f = open_out(o, "curves.gp")))
        return 1;
    fprintf(f, "# written by optc compare; run from the directory holding this file\n"
               "set terminal pngcairo size 900,560 noenhanced\n"
               "set output 'curves.png'\n"
               "set title 'test accuracy, mean over %d seed%s'\n"
               "set xlabel 'epoch'\nset ylabel 'test accuracy (%%)'\n"
               "set key %s\nset grid\n",
            o->seeds, o->seeds == 1 ? "" : "s", nplot > 4 ? "below" : "bottom right");
    if (nplot > 4)     /* room under the x label for the key's rows */
        fprintf(f, "set bmargin %d\n", 5 + (nplot + 2) / 3);
    int maxep = 0;
    for (int i = 0; i < n; i++)
        if (ent[i].ncurve > maxep)
            maxep = ent[i].ncurve;
    /* whole epochs on the axis; gnuplot's own tics when there are many */
    if (maxep <= 20)
        fprintf(f, "set xtics 1\nset xrange [0.8:%g]\n", maxep + 0.2);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        for (int ep = 0; ep < ent[i].ncurve; ep++) {
            lo = fmin(lo, ent[i].curve[ep]);
            hi = fmax(hi, ent[i].curve[ep]);
        }
    yrange(f, lo, hi);
    fprintf(f, "plot");
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (ent[i].ncurve == 0)
            continue;
        fprintf(f, "%s 'curves.dat' index %d with linespoints lw 2 title '%s'", k ? ", \\\n    " : " ",
                k, ent[i].label);
        k++;
    }
    fprintf(f, "\n");
    fclose(f);
    run_gnuplot(o, "curves.gp", "curves.png");
    return 0;
}

/* What a point is labelled with in a plot whose key names its group: the
 * variant/sweep part of the label, or the whole label when there is none. */
static const char *short_label(const Entry *e)
{
    size_t g = strlen(e->group);
    return strlen(e->label) > g ? e->label + g + 1 : e->label;
}

/* rate.png: mean test accuracy (error bars: std over seeds) against the
 * rate, one labelled point per entry that has both, one colour per spec
 * (group). Labels of points at nearly the same rate are stacked above and
 * below in turn. */
static int plot_rate(const Opts *o, const Entry *ent, int n)
{
    int idx[CMP_MAXENT], m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(ent[i].rate) && ent[i].nok > 0)
            idx[m++] = i;
    if (m == 0)
        return 0;
    FILE *f = open_out(o, "rate.dat");
    if (!f)
        return 1;
    /* one data block per group, in order of first appearance */
    int first[CMP_MAXENT], ng = 0;
    fprintf(f, "# rate test_acc_mean test_acc_std label\n");
    for (int i = 0; i < m; i++) {
        const Entry *g = &ent[idx[i]];
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen |= !strcmp(ent[idx[j]].group, g->group);
        if (seen)
            continue;
        first[ng++] = idx[i];
        fprintf(f, "# %s\n", g->group);
        for (int j = i; j < m; j++) {
            const Entry *e = &ent[idx[j]];
            if (strcmp(e->group, g->group))
                continue;
            double am, as;
            mean_std(e->acc, e->nok, &am, &as);
            fprintf(f, "%.6f %.4f %.4f %s\n", e->rate, am, as, e->label);
        }
        fprintf(f, "\n\n");
    }
    fclose(f);
    /* labels: by rate (insertion sort, m <= CMP_MAXENT) */
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && ent[idx[j]].rate < ent[idx[j - 1]].rate; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    if (!(f = open_out(o, "rate.gp")))
        return 1;
    double lo = ent[idx[0]].rate, hi = ent[idx[m - 1]].rate;
    double span = hi - lo > 1e-9 ? hi - lo : 0.01;
    fprintf(f, "# written by optc compare; run from the directory holding this file\n"
               "set terminal pngcairo size 1000,640 noenhanced\n"
               "set output 'rate.png'\n"
               "set title \"test accuracy against the optimizer's rate on quadratics "
               "(kappa = %g, h = %g)\\nmean +- std over %d seed%s\"\n"
               "set xlabel 'rate per step (optc analyze; lower = faster optimizer)'\n"
               "set ylabel 'test accuracy (%%)'\n"
               "set grid\nset key below\nset bmargin 6\n"
               "set xrange [%g:%g]\n",
            o->an.L / o->an.mu, entry_h(o), o->seeds, o->seeds == 1 ? "" : "s",
            lo - 0.1 * span, hi + 0.3 * span);
    double ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < m; i++)
        acc_span(&ent[idx[i]], &ylo, &yhi);
    yrange(f, ylo, yhi);
    static const double lift[] = { 0.9, -0.9, 1.9, -1.9, 2.9, -2.9 };
    int run = 0;
    for (int i = 0; i < m; i++) {
        const Entry *e = &ent[idx[i]];
        double am, as;
        mean_std(e->acc, e->nok, &am, &as);
        bool close = i > 0 && e->rate - ent[idx[i - 1]].rate < 0.1 * span;
        run = close ? (run + 1) % 6 : 0;
        fprintf(f, "set label %d '%s' at %.6f,%.4f offset char 1,%g font ',9'\n", i + 1,
                short_label(e), e->rate, am, lift[run]);
    }
    fprintf(f, "plot");
    for (int g = 0; g < ng; g++)
        fprintf(f, "%s 'rate.dat' index %d using 1:2:3 with yerrorbars pt 7 ps 1.2 lw 2 "
                   "title '%s'", g ? ", \\\n    " : " ", g, ent[first[g]].group);
    fprintf(f, "\n");
    fclose(f);
    run_gnuplot(o, "rate.gp", "rate.png");
    return 0;
}

/* sweep.png (one --sweep): mean test accuracy (error bars: std) against
 * the swept value, one line per spec (or variant) it applies to, each
 * point labelled with its rate; entries it does not apply to are dashed
 * horizontal lines. Values that are not all numbers are spaced evenly. */
static int plot_sweep(const Opts *o, const Entry *ent, int n)
{
    if (o->nsweeps != 1)
        return 0;
    const Sweep *sw = &o->sweeps[0];
    FILE *f = open_out(o, "sweep.dat");
    if (!f)
        return 1;
    char groups[CMP_MAXENT][160];
    int ng = 0;
    for (int i = 0; i < n; i++) {
        if (ent[i].sweep_val[0] < 0 || ent[i].nok == 0)
            continue;
        int g = 0;
        while (g < ng && strcmp(groups[g], ent[i].group))
            g++;
        if (g < ng)
            continue;
        snprintf(groups[ng++], sizeof groups[0], "%s", ent[i].group);
        fprintf(f, "# %s\n", ent[i].group);
        for (int j = i; j < n; j++) {
            const Entry *e = &ent[j];
            if (e->sweep_val[0] < 0 || e->nok == 0 || strcmp(e->group, ent[i].group))
                continue;
            double am, as;
            mean_std(e->acc, e->nok, &am, &as);
            char xb[32], rb[32];
            if (sw->numeric)
                snprintf(xb, sizeof xb, "%s", sw->values[e->sweep_val[0]]);
            else
                snprintf(xb, sizeof xb, "%d", e->sweep_val[0]);
            if (isnan(e->rate))
                snprintf(rb, sizeof rb, "n/a");
            else
                snprintf(rb, sizeof rb, "%.4f", e->rate);
            fprintf(f, "%s %.4f %.4f \"rate %s\"\n", xb, am, as, rb);
        }
        fprintf(f, "\n\n");
    }
    fclose(f);
    if (ng == 0)
        return 0;
    if (!(f = open_out(o, "sweep.gp")))
        return 1;
    fprintf(f, "# written by optc compare; run from the directory holding this file\n"
               "set terminal pngcairo size 1000,640 noenhanced\n"
               "set output 'sweep.png'\n"
               "set title \"test accuracy against %s, mean +- std over %d seed%s\\n"
               "points labelled with the optimizer's rate per step on quadratics (kappa = "
               "%g)\"\n"
               "set xlabel '%s'\nset ylabel 'test accuracy (%%)'\n"
               "set grid\nset key below\nset bmargin 6\nset offsets graph 0.05, graph 0.05, "
               "0, 0\n",
            sw->name, o->seeds, o->seeds == 1 ? "" : "s", o->an.L / o->an.mu, sw->name);
    double ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (ent[i].nok > 0)
            acc_span(&ent[i], &ylo, &yhi);
    yrange(f, ylo, yhi);
    if (!sw->numeric) {
        fprintf(f, "set xtics (");
        for (int v = 0; v < sw->nvalues; v++)
            fprintf(f, "%s'%s' %d", v ? ", " : "", sw->values[v], v);
        fprintf(f, ")\n");
    }
    fprintf(f, "plot");
    int k = 0;
    for (int g = 0; g < ng; g++, k++)
        fprintf(f, "%s 'sweep.dat' index %d using 1:2:3 with yerrorlines pt 7 lw 2 title '%s', "
                   "'' index %d using 1:2:4 with labels offset char 0,-1.2 font ',8' notitle",
                k ? ", \\\n    " : " ", g, groups[g], g);
    for (int i = 0; i < n; i++) {
        if (ent[i].sweep_val[0] >= 0 || ent[i].nok == 0)
            continue;
        double am, as;
        mean_std(ent[i].acc, ent[i].nok, &am, &as);
        char rb[32];
        fmt_rate(rb, sizeof rb, &ent[i]);
        fprintf(f, "%s %.4f with lines dt 2 lw 2 title '%s (rate %s)'", k++ ? ", \\\n    " : " ",
                am, ent[i].label, rb);
    }
    fprintf(f, "\n");
    fclose(f);
    run_gnuplot(o, "sweep.gp", "sweep.png");
    return 0;
}

static int write_outputs(const Opts *o, Entry *ent, int n)
{
    print_table(o, ent, n, false);
    int rc = write_csv(o, ent, n);
    /* The table and CSV are the results; the plots are views of them. */
    rc |= plot_curves(o, ent, n);
    rc |= plot_rate(o, ent, n);
    rc |= plot_sweep(o, ent, n);
    return rc;
}

int cmd_compare(int argc, char **argv)
{
    Opts o;
    int rc = parse_opts(&o, argc, argv);
    if (rc < 0)
        return 0;
    if (rc)
        return rc;
    static Entry ent[CMP_MAXENT];
    int n = 0;
    rc = make_entries(&o, ent, &n);
    if (rc)
        goto out;
    for (int i = 0; i < n; i++)
        entry_rate(&o, &ent[i]);
    if (o.dry_run) {
        print_table(&o, ent, n, true);
        printf("dry run: %d variant%s x %d seed%s = %d runs; nothing built or trained\n", n,
               n == 1 ? "" : "s", o.seeds, o.seeds == 1 ? "" : "s", n * o.seeds);
        goto out;
    }
    if (mkdir_p(o.out) < 0) {
        fprintf(stderr, "optc compare: cannot create %s: %s\n", o.out, strerror(errno));
        rc = 1;
        goto out;
    }
    int total = n * o.seeds, failed = 0;
    /* Build every spec that still has runs to do. */
    for (int i = 0; i < n; i++) {
        Entry *e = &ent[i];
        bool need = false;
        for (int s = 1; s <= o.seeds; s++) {
            char p[1200];
            snprintf(p, sizeof p, "%s/seed%d/summary.json", e->dir, s);
            need |= !file_exists(p);
        }
        if (!need)
            continue;
        char bin[1100];
        snprintf(bin, sizeof bin, "%s/net", e->dir);
        printf("[compare] build %d/%d: %s\n", i + 1, n, e->label);
        if (mkdir_p(e->dir) < 0 || build_entry(e, bin) != 0) {
            fprintf(stderr, "optc compare: building %s failed\n", e->label);
            e->failed = true;
            failed++;
        }
    }
    /* Train: runs in order, up to o.jobs at once. */
    typedef struct { pid_t pid; int entry, seed, idx; time_t t0; } Job;
    Job run[64];
    int nrun = 0, next = 0;
    time_t beat = time(NULL);
    while (next < total || nrun > 0) {
        while (next < total && nrun < o.jobs) {
            int idx = next++;
            Entry *e = &ent[idx / o.seeds];
            int s = idx % o.seeds + 1;
            if (e->failed)
                continue;
            char rundir[1100], p[1200], bin[1100];
            snprintf(rundir, sizeof rundir, "%s/seed%d", e->dir, s);
            snprintf(p, sizeof p, "%s/summary.json", rundir);
            snprintf(bin, sizeof bin, "%s/net", e->dir);
            if (file_exists(p)) {
                printf("[compare] run %d/%d: %s seed %d: done before, not trained again\n",
                       idx + 1, total, e->label, s);
                continue;
            }
            printf("[compare] run %d/%d: %s seed %d%s\n", idx + 1, total, e->label, s,
                   o.jobs > 1 ? " (started; output in its train.out)" : "");
            pid_t pid = train_spawn(&o, bin, rundir, s, o.jobs > 1);
            if (pid < 0) {
                fprintf(stderr, "optc compare: cannot start %s seed %d\n", e->label, s);
                failed++;
                continue;
            }
            run[nrun++] = (Job){pid, idx / o.seeds, s, idx, time(NULL)};
        }
        if (nrun == 0)
            continue;
        int st = 0;
        pid_t pid;
        if (o.jobs == 1) {
            while ((pid = waitpid(run[0].pid, &st, 0)) < 0 && errno == EINTR)
                ;
        } else {
            pid = waitpid(-1, &st, WNOHANG);
            if (pid == 0) {
                sleep(1);
                if (time(NULL) - beat >= 30) {
                    beat = time(NULL);
                    for (int j = 0; j < nrun; j++) {
                        char rundir[1100], line[512];
                        snprintf(rundir, sizeof rundir, "%s/seed%d", ent[run[j].entry].dir,
                                 run[j].seed);
                        last_line(rundir, line, sizeof line);
                        printf("[compare]   %s seed %d, %lds: %s\n", ent[run[j].entry].label,
                               run[j].seed, (long)(time(NULL) - run[j].t0),
                               line[0] ? line : "starting");
                    }
                    fflush(stdout);
                }
                continue;
            }
        }
        int j = 0;
        while (j < nrun && run[j].pid != pid)
            j++;
        if (j == nrun) {
            if (pid < 0 && errno != EINTR)
                break;  /* no children left: should not happen */
            continue;
        }
        Job done = run[j];
        run[j] = run[--nrun];
        Entry *e = &ent[done.entry];
        char p[1200];
        snprintf(p, sizeof p, "%s/seed%d/summary.json", e->dir, done.seed);
        if (exit_status(st) != 0 || !file_exists(p)) {
            fprintf(stderr, "optc compare: training %s seed %d failed (status %d)\n", e->label,
                    done.seed, exit_status(st));
            failed++;
        } else if (o.jobs > 1) {
            char *js = fe_read_file(p, SIZE_MAX, NULL);
            printf("[compare] run %d/%d: %s seed %d finished in %lds, test acc %.2f %%\n",
                   done.idx + 1, total, e->label, done.seed, (long)(time(NULL) - done.t0),
                   js ? as_pct(json_num(js, "test_acc")) : (double)NAN);
            free(js);
        }
    }
    for (int i = 0; i < n; i++)
        collect(&o, &ent[i]);
    rc = write_outputs(&o, ent, n);
    if (failed)
        rc = 1;
out:
    for (int i = 0; i < n; i++) {
        free(ent[i].curve);
        free(ent[i].vcopy);
    }
    return rc;
}
