/* compare.c — optc compare: build several specs (or -D variants of one),
 * train each over N seeds, and summarise: a table of mean +- std, a CSV,
 * and a learning-curve plot through gnuplot.
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
#include "cli.h"

enum { CMP_MAXENT = 64, CMP_MAXDEF = 32, CMP_MAXSEEDS = 32, CMP_MAXPASS = 32,
       CMP_MAXEPOCHS = 1000 };

typedef struct {
    const char *spec;
    const char *net;        /* from SPEC:NET, else -n, else NULL (the first) */
    char label[128];
    Define defs[CMP_MAXDEF];
    int ndefs;
    char dir[1024];
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
    char *specs[CMP_MAXENT];
    int nspecs;
    const char *net;
    Define defs[CMP_MAXDEF];
    int ndefs;
    char *variants[CMP_MAXENT];
    int nvariants;
    int seeds, epochs, limit, test_limit, threads, jobs;
    const char *data, *out;
    char *pass[CMP_MAXPASS];    /* after --: passed to train as is */
    int npass;
} Opts;

static const char usage[] =
    "usage: optc compare A.opt[:NET] [B.opt[:NET] ...] [-n NET] [-D name=value]... [--variant \"-D a=1\"]...\n"
    "         [--seeds N] [--epochs E] [--limit N] [--test-limit N] [--threads T] [--jobs J]\n"
    "         [--data SPEC] [--out DIR] [-- TRAIN-FLAGS...]\n"
    "  Builds each spec (its network NET, else -n NET, else the first; or each\n"
    "  --variant of it), trains it over seeds 1..N into\n"
    "  OUT/<label>/seed<S>/ (default OUT runs/compare), prints mean +- std of test\n"
    "  accuracy and loss, writes OUT/summary.csv and OUT/curves.png. Finished runs\n"
    "  (summary.json present) are not trained again; interrupted ones resume.\n"
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
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return -1;
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
            o->specs[o->nspecs++] = a;
        }
        if (rc)
            return rc;
    }
    if (o->nspecs == 0) {
        fprintf(stderr, "optc compare: no spec given\n%s", usage);
        return 2;
    }
    if ((size_t)o->nspecs * (size_t)(o->nvariants ? o->nvariants : 1) > CMP_MAXENT) {
        fprintf(stderr, "optc compare: at most %d spec x variant combinations\n", CMP_MAXENT);
        return 2;
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
                  c == '.' || c == '=' || c == '-' || c == '_' || c == '+';
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

static int make_entries(Opts *o, Entry *ent, int *nent)
{
    int n = 0;
    int nv = o->nvariants ? o->nvariants : 1;
    for (int s = 0; s < o->nspecs; s++)
        for (int v = 0; v < nv; v++) {
            Entry *e = &ent[n];
            memset(e, 0, sizeof *e);
            e->spec = o->specs[s];
            e->net = o->net;
            /* SPEC:NET picks a network per spec (a spec path may hold ':'
             * only before its last '/'). */
            char *colon = strrchr(o->specs[s], ':');
            if (colon && !strchr(colon, '/')) {
                *colon = 0;
                e->net = colon + 1;
            }
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
            if (o->nvariants) {
                char *copy = strdup(o->variants[v]);
                if (!copy)
                    return 1;
                int first = e->ndefs;
                int rc = variant_defs(copy, e);
                /* the defines point into copy: it lives as long as the entry */
                e->vcopy = copy;
                if (rc) {
                    *nent = n + 1;
                    return rc;
                }
                for (int d = first; d < e->ndefs; d++) {
                    label_append(e->label, sizeof e->label, d == first ? "." : ",");
                    label_append(e->label, sizeof e->label, e->defs[d].name);
                    label_append(e->label, sizeof e->label, "=");
                    label_append(e->label, sizeof e->label, e->defs[d].value);
                }
            }
            /* Same label twice (same spec file name in two folders): number it. */
            for (int p = 0; p < n; p++)
                if (!strcmp(ent[p].label, e->label)) {
                    char num[16];
                    snprintf(num, sizeof num, "#%d", n + 1);
                    label_append(e->label, sizeof e->label, num);
                    break;
                }
            snprintf(e->dir, sizeof e->dir, "%s/%s", o->out, e->label);
            n++;
        }
    *nent = n;
    return 0;
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

/* Start the training of one run; with redirect its output goes to
 * rundir/train.out. Returns the child's pid, or -1. */
static pid_t train_spawn(const Opts *o, const char *bin, const char *rundir, int seed,
                         bool redirect)
{
    char *argv[32 + CMP_MAXPASS];
    char sb[16], eb[16], lb[16], tb[16], thb[16], resume[1200];
    int n = 0;
    argv[n++] = (char *)(uintptr_t)bin;
    argv[n++] = (char *)(uintptr_t)"train";
    argv[n++] = (char *)(uintptr_t)"--data";
    argv[n++] = (char *)(uintptr_t)o->data;
    snprintf(sb, sizeof sb, "%d", seed);
    argv[n++] = (char *)(uintptr_t)"--seed";
    argv[n++] = sb;
    if (o->epochs > 0) {
        snprintf(eb, sizeof eb, "%d", o->epochs);
        argv[n++] = (char *)(uintptr_t)"--epochs";
        argv[n++] = eb;
    }
    if (o->limit > 0) {
        snprintf(lb, sizeof lb, "%d", o->limit);
        argv[n++] = (char *)(uintptr_t)"--limit";
        argv[n++] = lb;
    }
    if (o->test_limit > 0) {
        snprintf(tb, sizeof tb, "%d", o->test_limit);
        argv[n++] = (char *)(uintptr_t)"--test-limit";
        argv[n++] = tb;
    }
    if (o->threads > 0) {
        snprintf(thb, sizeof thb, "%d", o->threads);
        argv[n++] = (char *)(uintptr_t)"--threads";
        argv[n++] = thb;
    }
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

/* Read a whole small file; NULL when missing. Caller frees. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    while (s) {
        size_t r = fread(s + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (n + 1 == cap) {
            char *t = realloc(s, cap * 2);
            if (!t) {
                free(s);
                s = NULL;
                break;
            }
            s = t;
            cap *= 2;
        }
    }
    fclose(f);
    if (s)
        s[n] = 0;
    return s;
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
    char *s = slurp(path);
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
        char *js = slurp(path);
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

static int write_outputs(const Opts *o, Entry *ent, int n)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/summary.csv", o->out);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "optc compare: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "label,spec,net,defines,seeds,params,madds,train_seconds_mean,"
               "test_acc_mean,test_acc_std,test_loss_mean,test_loss_std\n");
    printf("\n%-28s %10s %10s %10s  %-18s %s\n", "spec", "params", "madds", "time/run",
           "test acc (%)", "test loss");
    for (int i = 0; i < n; i++) {
        Entry *e = &ent[i];
        double am, as, lm, ls, tm, ts;
        mean_std(e->acc, e->nok, &am, &as);
        mean_std(e->loss, e->nok, &lm, &ls);
        mean_std(e->secs, e->nok, &tm, &ts);
        char defs[512] = "";
        size_t dl = 0;
        for (int d = 0; d < e->ndefs && dl < sizeof defs; d++)
            dl += (size_t)snprintf(defs + dl, sizeof defs - dl, "%s%s=%s", d ? " " : "",
                                   e->defs[d].name, e->defs[d].value);
        fprintf(f, "%s,%s,%s,%s,%d,%.0f,%.0f,%.3f,%.4f,%.4f,%.5f,%.5f\n", e->label, e->spec,
                e->net ? e->net : "", defs, e->nok, e->params, e->madds, tm, am, as, lm, ls);
        char pb[32], mb[32], tb[32], ab[48];
        fmt_count(pb, sizeof pb, e->params);
        fmt_count(mb, sizeof mb, e->madds);
        snprintf(tb, sizeof tb, "%.1f s", tm);
        if (e->nok == 0) {
            printf("%-28s %10s %10s %10s  %s\n", e->label, "-", "-", "-", "no finished run");
            continue;
        }
        snprintf(ab, sizeof ab, "%.2f +- %.2f", am, as);
        printf("%-28s %10s %10s %10s  %-18s %.4f +- %.4f   (%d seed%s)\n", e->label, pb, mb, tb,
               ab, lm, ls, e->nok, e->nok == 1 ? "" : "s");
    }
    fclose(f);
    printf("wrote %s\n", path);

    /* curves.dat: one gnuplot data block per entry; curves.gp re-draws it. */
    snprintf(path, sizeof path, "%s/curves.dat", o->out);
    f = fopen(path, "w");
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
    snprintf(path, sizeof path, "%s/curves.gp", o->out);
    f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f, "# written by optc compare; run from the directory holding this file\n"
               "set terminal pngcairo size 900,560 noenhanced\n"
               "set output 'curves.png'\n"
               "set title 'test accuracy, mean over %d seed%s'\n"
               "set xlabel 'epoch'\nset ylabel 'test accuracy (%%)'\n"
               "set key bottom right\nset grid\n",
            o->seeds, o->seeds == 1 ? "" : "s");
    int maxep = 0;
    for (int i = 0; i < n; i++)
        if (ent[i].ncurve > maxep)
            maxep = ent[i].ncurve;
    /* whole epochs on the axis; gnuplot's own tics when there are many */
    if (maxep <= 20)
        fprintf(f, "set xtics 1\nset xrange [0.8:%g]\n", maxep + 0.2);
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
    /* gnuplot runs in OUT so the script's relative names hold. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(o->out) == 0)
            execlp("gnuplot", "gnuplot", "curves.gp", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "optc compare: gnuplot failed; %s/curves.gp and curves.dat are "
                        "there to plot by hand\n", o->out);
        return 0;   /* the table and CSV are the results; the plot is a view */
    }
    printf("wrote %s/curves.png\n", o->out);
    return 0;
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
            char *js = slurp(p);
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
