/* driver.c — rt_main: the command line of every generated program.
 *
 *   train      the training loop (train.c does the work)
 *   eval       accuracy of a checkpoint on the test set
 *   info       parameter count, multiply-adds, memory, parameter table
 *   gradcheck  analytic double gradients against finite differences, and
 *              float gradients against double ones
 *   bench      training and inference throughput on synthetic input
 *   dump       every number of one batch, double and float, for an oracle
 *
 * Exit status: 0 ok, 1 a user error at run time (bad file, NaN loss, failed
 * gradient check), 2 a usage error (unknown flag, bad number), 128 + signal
 * when training was interrupted. */
#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "driver.h"

/* --- command-line options ------------------------------------------------ */

static const char *const rt_drv_sched_names[] = {"constant", "step", "cosine"};

const char *rt_drv_sched_name(RtSchedule s)
{
    return (unsigned)s < 3 ? rt_drv_sched_names[s] : "?";
}

int rt_drv_sched_parse(const char *s, RtSchedule *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, rt_drv_sched_names[i]) == 0) {
            *out = (RtSchedule)i;
            return 0;
        }
    return -1;
}

/* Parse v into o's destination with o's range; a message naming the flag
 * on error. */
static int opt_value(const char *prog, const char *cmd, RtDrvOpt *o, const char *v)
{
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || (double)x < o->min || (double)x > o->max) {
            fprintf(stderr, "%s %s: error: --%s expects an integer in [%.0f, %.0f], got '%s'\n",
                    prog, cmd, o->name, o->min, o->max, v);
            return -1;
        }
        *(int *)o->dst = (int)x;
        return 0;
    }
    case OPT_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') {
            fprintf(stderr, "%s %s: error: --%s expects a non-negative integer, got '%s'\n", prog,
                    cmd, o->name, v);
            return -1;
        }
        *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || x < o->min || x > o->max) {
            fprintf(stderr, "%s %s: error: --%s expects a number in [%g, %g], got '%s'\n", prog,
                    cmd, o->name, o->min, o->max, v);
            return -1;
        }
        *(double *)o->dst = x;
        return 0;
    }
    case OPT_STR:
        if (!*v) {
            fprintf(stderr, "%s %s: error: --%s expects a non-empty value\n", prog, cmd, o->name);
            return -1;
        }
        *(const char **)o->dst = v;
        return 0;
    case OPT_SCHED:
        if (rt_drv_sched_parse(v, (RtSchedule *)o->dst)) {
            fprintf(stderr, "%s %s: error: --%s expects constant, step or cosine, got '%s'\n",
                    prog, cmd, o->name, v);
            return -1;
        }
        return 0;
    case OPT_FLAG:
        break;
    }
    return -1;
}

static void opt_default(const RtDrvOpt *o, char *buf, size_t n)
{
    buf[0] = 0;
    switch (o->kind) {
    case OPT_INT: snprintf(buf, n, " (default %d)", *(const int *)o->dst); break;
    case OPT_U64: snprintf(buf, n, " (default %" PRIu64 ")", *(const uint64_t *)o->dst); break;
    case OPT_DOUBLE: snprintf(buf, n, " (default %g)", *(const double *)o->dst); break;
    case OPT_STR:
        if (*(const char *const *)o->dst)
            snprintf(buf, n, " (default %s)", *(const char *const *)o->dst);
        break;
    case OPT_SCHED:
        snprintf(buf, n, " (default %s)", rt_drv_sched_name(*(const RtSchedule *)o->dst));
        break;
    case OPT_FLAG: break;
    }
}

void rt_drv_usage(FILE *fp, const char *prog, const char *cmd, const char *synopsis,
               const char *about, const RtDrvOpt *opts, int n)
{
    fprintf(fp, "usage: %s %s%s\n\n%s\n", prog, cmd, synopsis, about);
    if (n)
        fprintf(fp, "\noptions:\n");
    for (int i = 0; i < n; i++) {
        char flag[64], def[160];
        snprintf(flag, sizeof flag, "--%s%s%s", opts[i].name, opts[i].meta ? " " : "",
                 opts[i].meta ? opts[i].meta : "");
        opt_default(&opts[i], def, sizeof def);
        fprintf(fp, "  %-22s %s%s\n", flag, opts[i].help, def);
    }
    fprintf(fp, "  %-22s %s\n", "--help", "show this text");
}

int rt_drv_parse(const char *prog, const char *cmd, const char *synopsis, const char *about,
              RtDrvOpt *opts, int n, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            rt_drv_usage(stdout, prog, cmd, synopsis, about, opts, n);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "%s %s: error: unexpected argument '%s' (see --help)\n", prog, cmd, a);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        RtDrvOpt *o = NULL;
        for (int j = 0; j < n; j++)
            if (strlen(opts[j].name) == len && strncmp(opts[j].name, name, len) == 0)
                o = &opts[j];
        if (!o) {
            fprintf(stderr, "%s %s: error: unknown flag '%.*s' (see --help)\n", prog, cmd,
                    (int)(len + 2), a);
            return 2;
        }
        if (o->kind == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "%s %s: error: --%s takes no value\n", prog, cmd, o->name);
                return 2;
            }
            *(int *)o->dst = 1;
        } else {
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "%s %s: error: --%s needs a value\n", prog, cmd, o->name);
                return 2;
            }
            if (opt_value(prog, cmd, o, v))
                return 2;
        }
        o->seen = 1;
    }
    return 0;
}

/* --- small shared helpers -------------------------------------------------- */

double rt_drv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* OpenMP gets the threads and OpenBLAS runs single-threaded inside the
 * kernels' OpenMP loops: one thread pool, as rt_model_init sets it (see
 * model_threads in model.c). */
void rt_drv_set_threads(int threads)
{
    omp_set_num_threads(threads);
    openblas_set_num_threads(1);
}

int rt_drv_default_threads(void)
{
    int n = omp_get_num_procs();
    return n > 0 ? n : 1;
}

int rt_drv_argmax(const float *row, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (row[j] > row[best])
            best = j;
    return best;
}

void rt_drv_evaluate(RtModel *m, const RtNet *net, const RtData *d, float *probs, int B,
                  double *loss, double *acc)
{
    size_t img = (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    double lsum = 0;
    long correct = 0;
    for (int i = 0; i < d->n; i += B) {
        int b = d->n - i < B ? d->n - i : B;
        memcpy(m->input, d->x + (size_t)i * img, (size_t)b * img * sizeof(float));
        net->forward(m, b, 0);
        lsum += (double)b * rt_xent_forward(&m->ctx, probs, m->logits, d->y + i, b, net->classes);
        for (int j = 0; j < b; j++)
            correct += rt_drv_argmax(m->logits + (size_t)j * (size_t)net->classes, net->classes) ==
                       d->y[i + j];
    }
    *loss = d->n ? lsum / d->n : 0;
    *acc = d->n ? (double)correct / d->n : 0;
}

/* "3x16x3x3" into buf (cap bytes). */
static void fmt_dims(char *buf, size_t cap, const int *dims, int ndim)
{
    buf[0] = 0;
    for (int j = 0; j < ndim; j++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%d", j ? "x" : "", dims[j]);
}

int rt_drv_load_weights(RtStFile *f, const char *path, const RtNet *net, float *params,
                     float *buffers, float *momentum, RtErr *err)
{
    const char *name = rt_st_meta(f, "net");
    if (name && strcmp(name, net->name) != 0) {
        snprintf(err->msg, sizeof err->msg,
                 "%s: checkpoint is from network '%s', this program is '%s'", path, name,
                 net->name);
        return -1;
    }
    if (rt_st_note(f))
        fprintf(stderr, "note: %s\n", rt_st_note(f));
    int old_names = 0;
    for (int i = 0; i < net->ntensors; i++) {
        const RtTensor *t = &net->tensors[i];
        for (int pass = 0; pass < (momentum && !t->buffer ? 2 : 1); pass++) {
            char key[512];
            int ndim, dims[4];
            snprintf(key, sizeof key, "%s%s", pass ? "momentum." : "", t->name);
            /* Checkpoints of optc before 0.1 named BN's affine parameters
             * .gamma/.beta; PyTorch's .weight/.bias replaced them. */
            size_t kl = strlen(key);
            const char *suffix = t->kind == RT_PK_BN_GAMMA ? ".weight"
                               : t->kind == RT_PK_BN_BETA ? ".bias" : NULL;
            if (suffix && rt_st_shape(f, key, &ndim, dims) && kl > strlen(suffix) &&
                strcmp(key + kl - strlen(suffix), suffix) == 0) {
                char oldkey[sizeof key];
                snprintf(oldkey, sizeof oldkey, "%.*s%s", (int)(kl - strlen(suffix)), key,
                         t->kind == RT_PK_BN_GAMMA ? ".gamma" : ".beta");
                if (rt_st_shape(f, oldkey, &ndim, dims) == 0) {
                    memcpy(key, oldkey, sizeof key);
                    old_names = 1;
                }
            }
            if (rt_st_shape(f, key, &ndim, dims)) {
                snprintf(err->msg, sizeof err->msg,
                         "%s: tensor '%s' is missing (checkpoint not from network '%s'?)", path,
                         key, net->name);
                return -1;
            }
            int same = ndim == t->ndim;
            for (int j = 0; same && j < ndim; j++)
                same = dims[j] == t->dims[j];
            if (!same) {
                char have[64], want[64];
                fmt_dims(have, sizeof have, dims, ndim < 4 ? ndim : 4);
                fmt_dims(want, sizeof want, t->dims, t->ndim);
                snprintf(err->msg, sizeof err->msg,
                         "%s: tensor '%s' has shape [%s], network '%s' expects [%s]", path, key,
                         have, net->name, want);
                return -1;
            }
            float *dst = pass ? momentum + t->offset
                              : (t->buffer ? buffers : params) + t->offset;
            if (rt_st_read(f, key, dst, t->numel, err))
                return -1;
        }
    }
    if (old_names)
        fprintf(stderr, "note: %s: BN parameters under their old names .gamma/.beta read as "
                ".weight/.bias\n", path);
    return 0;
}

void rt_drv_norm_note(const RtStFile *f, const char *path, const char *data, int limit,
                      const char *what)
{
    const char *cdata = rt_st_meta(f, "data"), *clim = rt_st_meta(f, "data_limit");
    if (!clim)
        clim = rt_st_meta(f, "limit");
    int climit = clim ? atoi(clim) : 0;
    if (cdata && strcmp(cdata, data) == 0 && climit == limit)
        return;
    fprintf(stderr, "note: %s: %s normalises its inputs with the checkpoint's statistics "
            "(computed on --data %s --limit %d), not on --data %s --limit %d\n", path, what,
            cdata ? cdata : "(unknown)", climit, data, limit);
}

/* --- memory-free builds ----------------------------------------------------- */

RtDrift *rt_drift_new(int n)
{
    RtDrift *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->n = n;
    d->ref = calloc((size_t)n + 1, sizeof *d->ref);
    d->len = calloc((size_t)n + 1, sizeof *d->len);
    d->err = malloc(((size_t)n + 1) * sizeof *d->err);
    d->esc = calloc((size_t)n + 1, sizeof *d->esc);
    d->lost = calloc((size_t)n + 1, sizeof *d->lost);
    d->cap = calloc((size_t)n + 1, sizeof *d->cap);
    if (!d->ref || !d->len || !d->err || !d->esc || !d->lost || !d->cap) {
        rt_drift_free(d);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        d->err[i] = -1;
    return d;
}

void rt_drift_free(RtDrift *d)
{
    if (!d)
        return;
    for (int i = 0; d->ref && i < d->n; i++)
        free(d->ref[i]);
    free(d->ref);
    free(d->len);
    free(d->err);
    free(d->esc);
    free(d->lost);
    free(d->cap);
    free(d);
}

/* The float reconstruction error of every state a memory-free build
 * rebuilds: one training forward and backward on a seeded synthetic batch
 * of B images, each rebuilt state against the forward's value (RtDrift).
 * One line per state, prefixed by tag; returns the largest error, or -1
 * when the network is not memory-free or the model cannot be allocated. */
static double mf_drift_report(const RtNet *net, const char *tag, int B)
{
    if (net->mf_nrebuilt <= 0)
        return -1;
    RtModel m;
    RtErr err;
    if (rt_model_init(&m, net, B, 1, 1, &err) != 0)
        return -1;
    RtDrift *d = rt_drift_new(net->mf_nrebuilt);
    if (!d) {
        rt_model_free(&m);
        return -1;
    }
    size_t nin = (size_t)B * (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    uint8_t *labels = malloc((size_t)B);
    float *probs = malloc((size_t)B * (size_t)net->classes * sizeof *probs);
    double worst = -1;
    if (labels && probs) {
        RtRng rng;
        rt_rng_seed(&rng, 2);
        rt_model_synth_batch(net, &rng, m.input, nin, labels, B);
        m.drift = d;
        net->forward(&m, B, 1);
        rt_xent_forward(&m.ctx, probs, m.logits, labels, B, net->classes);
        rt_xent_backward(&m.ctx, m.dlogits, probs, labels, B, net->classes);
        net->backward(&m, B);
        m.drift = NULL;
        if (net->mf_exact)
            printf("%s: exact reconstruction: rebuilt states equal the forward's by construction; "
                   "measured max |rebuilt - stored| / max |stored|, escapes / capacity (float, "
                   "batch %d):\n", tag, B);
        else
            printf("%s: memory-free reconstruction (drift mode), max |rebuilt - stored| / "
                   "max |stored| (float, batch %d):\n", tag, B);
        size_t esc = 0, lost = 0, codes = 0;
        for (int r = 0; r < d->n; r++) {
            const char *name = net->mf_names && net->mf_names[r] ? net->mf_names[r] : "?";
            if (net->mf_exact)
                printf("%s:   %-32s %.3e  %zu / %zu%s\n", tag, name, d->err[r], d->esc[r],
                       d->cap[r], d->lost[r] ? "  OVERFLOW: not exact" : "");
            else
                printf("%s:   %-32s %.3e\n", tag, name, d->err[r]);
            if (d->err[r] > worst || d->err[r] != d->err[r])
                worst = d->err[r];
            esc += d->esc[r];
            lost += d->lost[r];
        }
        for (int k = 0; k < 9; k++)
            codes += d->hist[k];
        if (net->mf_exact && codes > 0) {
            static const char *const bucket[9] = { "0", "1", "2-3", "4-7", "8-15", "16-31",
                                                   "32-63", "64-127", "escape" };
            printf("%s: corrections by size in ulps:", tag);
            for (int k = 0; k < 9; k++)
                printf(" %s %.2f%%", bucket[k], 100.0 * (double)d->hist[k] / (double)codes);
            printf("\n%s: %zu escapes in %zu elements, %zu lost%s\n", tag, esc, codes, lost,
                   lost ? " (their escape lists were full: those elements are not exact)" : "");
        }
        printf("%s: memory-free drift max %.3e over %d rebuilt states%s\n", tag, worst, d->n,
               net->mf_exact ? (lost ? " (exact, but escapes lost)" : " (exact)") : "");
    }
    free(labels);
    free(probs);
    rt_drift_free(d);
    rt_model_free(&m);
    return worst;
}

/* --- info ------------------------------------------------------------------ */

static int cmd_info(const RtNet *net, const char *prog, int argc, char **argv)
{
    int json = 0;
    RtDrvOpt opts[] = {
        {"json", OPT_FLAG, &json, 0, 0, NULL, "print JSON instead of a table", 0},
    };
    int rc = rt_drv_parse(prog, "info", " [--json]",
                       "Parameter count, multiply-adds per image, activation memory at the\n"
                       "default batch, op count and the parameter table.",
                       opts, 1, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    int B = net->defaults.batch > 0 ? net->defaults.batch : RT_DEFAULT_BATCH;
    size_t act_bytes = net->act_elems(B) * sizeof(float);
    size_t param_bytes = net->nparams * sizeof(float);
    int threads = net->defaults.threads > 0 ? net->defaults.threads : rt_drv_default_threads();
    /* what training allocates: parameters, gradients, momentum, buffers,
     * activations, input, logits and their gradients, conv scratch */
    size_t img = (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    size_t train_bytes = 3 * param_bytes + net->nbuffers * sizeof(float) + act_bytes +
                         (size_t)B * (img + 2 * (size_t)net->classes) * sizeof(float) +
                         (net->scratch_bytes ? net->scratch_bytes(B, threads, sizeof(float)) : 0);
    if (json) {
        printf("{\"net\":\"%s\",\"params\":%zu,\"buffers\":%zu,\"madds\":%lld,\"ops\":%d,"
               "\"batch\":%d,\"activation_bytes\":%zu,\"param_bytes\":%zu,\"train_bytes\":%zu,"
               "\"input\":[%d,%d,%d],\"classes\":%d,",
               net->name, net->nparams, net->nbuffers, net->madds, net->nops, B, act_bytes,
               param_bytes, train_bytes, net->in_c, net->in_h, net->in_w, net->classes);
        if (net->mf_nrebuilt > 0)
            printf("\"memory_free\":true,\"activation_bytes_stored\":%zu,\"rebuilt\":%d,"
                   "\"exact\":%s,\"correction_bytes\":%zu,",
                   (net->mf_stored_a * (size_t)B + net->mf_stored_b) * sizeof(float),
                   net->mf_nrebuilt, net->mf_exact ? "true" : "false",
                   (net->mf_corr_a * (size_t)B + net->mf_corr_b) * sizeof(float));
        printf("\"tensors\":[");
        for (int i = 0; i < net->ntensors; i++) {
            const RtTensor *t = &net->tensors[i];
            printf("%s{\"name\":\"%s\",\"shape\":[", i ? "," : "", t->name);
            for (int j = 0; j < t->ndim; j++)
                printf("%s%d", j ? "," : "", t->dims[j]);
            printf("],\"numel\":%zu,\"buffer\":%s}", t->numel, t->buffer ? "true" : "false");
        }
        printf("]}\n");
        return 0;
    }
    printf("network         %s\n", net->name);
    if (net->optc_version)
        printf("optc version    %s\n", net->optc_version);
    printf("input           %dx%dx%d, %d classes\n", net->in_c, net->in_h, net->in_w,
           net->classes);
    printf("parameters      %zu (%.2f MiB)\n", net->nparams, (double)param_bytes / 1048576.0);
    printf("buffers         %zu (BN running statistics)\n", net->nbuffers);
    printf("multiply-adds   %lld per image (%.2f M)\n", net->madds, (double)net->madds / 1e6);
    printf("activations     %.2f MiB at batch %d\n", (double)act_bytes / 1048576.0, B);
    if (net->mf_nrebuilt > 0) {
        double stored = (double)(net->mf_stored_a * (size_t)B + net->mf_stored_b) * 4.0;
        printf("memory-free     yes: %d states rebuilt in backward; the stored build's "
               "activations %.2f MiB (%.2fx more)\n", net->mf_nrebuilt, stored / 1048576.0,
               act_bytes ? stored / (double)act_bytes : 1.0);
        if (net->mf_exact)
            printf("reconstruction  exact: corrections %.2f MiB of the activations (int8 codes "
                   "and escape lists)\n", (double)(net->mf_corr_a * (size_t)B + net->mf_corr_b) *
                   4.0 / 1048576.0);
        else
            printf("reconstruction  drift (--memory-free=drift): float rounding, report below\n");
    }
    printf("training memory %.2f MiB at batch %d, %d threads (all buffers)\n",
           (double)train_bytes / 1048576.0, B, threads);
    printf("ops             %d\n", net->nops);
    if (net->mf_nrebuilt > 0)
        mf_drift_report(net, "drift", 4);
    printf("\n");
    printf("%-44s %-16s %10s\n", "tensor", "shape", "count");
    for (int i = 0; i < net->ntensors; i++) {
        const RtTensor *t = &net->tensors[i];
        char shape[64];
        fmt_dims(shape, sizeof shape, t->dims, t->ndim);
        printf("%-44s %-16s %10zu%s\n", t->name, shape, t->numel, t->buffer ? "  (buffer)" : "");
    }
    return 0;
}

/* --- eval ------------------------------------------------------------------ */

/* The eval-mode logits of every image of d, float32 [n][classes] (this
 * machine's byte order, little-endian on every target we build for). */
static int write_logits(RtModel *m, const RtNet *net, const RtData *d, int B, const char *path,
                        RtErr *err)
{
    size_t img = (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    FILE *f = fopen(path, "wb");
    int bad = !f;
    for (int i = 0; !bad && i < d->n; i += B) {
        int b = d->n - i < B ? d->n - i : B;
        memcpy(m->input, d->x + (size_t)i * img, (size_t)b * img * sizeof(float));
        net->forward(m, b, 0);
        size_t k = (size_t)b * (size_t)net->classes;
        bad = fwrite(m->logits, sizeof(float), k, f) != k;
    }
    if (f && fclose(f) != 0)
        bad = 1;
    if (bad)
        snprintf(err->msg, sizeof err->msg, "%s: cannot write the logits: %s", path,
                 strerror(errno));
    return bad ? -1 : 0;
}

static int cmd_eval(const RtNet *net, const char *prog, int argc, char **argv)
{
    const char *weights = NULL, *data = NULL, *logits = NULL;
    int batch = net->defaults.batch > 0 ? net->defaults.batch : RT_DEFAULT_BATCH;
    int threads = net->defaults.threads > 0 ? net->defaults.threads : rt_drv_default_threads();
    int test_limit = 0, limit = 0;
    RtDrvOpt opts[] = {
        {"weights", OPT_STR, &weights, 0, 0, "FILE", "checkpoint to evaluate (required)", 0},
        {"data", OPT_STR, &data, 0, 0, "SPEC",
         "fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | cifar100:DIR | synthetic"
         " (default: the checkpoint's)", 0},
        {"batch", OPT_INT, &batch, 1, 65536, "N", "evaluation batch", 0},
        {"threads", OPT_INT, &threads, 1, 1024, "N", "threads", 0},
        {"limit", OPT_INT, &limit, 0, 1e9, "N",
         "training images to compute the normalisation on, for a checkpoint without "
         "input_mean/input_std (default: the checkpoint's)", 0},
        {"test-limit", OPT_INT, &test_limit, 0, 1e9, "N", "use the first N test images (0: all)",
         0},
        {"logits", OPT_STR, &logits, 0, 0, "FILE",
         "also write the logits, float32 [images][classes] little-endian", 0},
    };
    int rc = rt_drv_parse(prog, "eval", " --weights FILE [options]",
                       "Loss and accuracy of a checkpoint on the test set (eval mode: BN running\n"
                       "statistics, no dropout; the last partial batch is kept).",
                       opts, 7, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!weights) {
        fprintf(stderr, "%s eval: error: --weights FILE is required\n", prog);
        return 2;
    }
    RtErr err = {{0}};
    RtStFile *f = rt_st_open(weights, &err);
    if (!f) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    if (!data)
        data = rt_st_meta(f, "data") ? rt_st_meta(f, "data") : "fashion-mnist";
    if (!opts[4].seen) {
        const char *l = rt_st_meta(f, "data_limit") ? rt_st_meta(f, "data_limit")
                                                     : rt_st_meta(f, "limit");
        limit = l ? atoi(l) : 0;
    }
    uint64_t seed = rt_st_meta(f, "seed") ? strtoull(rt_st_meta(f, "seed"), NULL, 10) : 0;
    /* The checkpoint's normalisation when it has one: the test set alone is
     * read. An older checkpoint recomputes it from the training set. */
    RtNorm norm = {0};
    const char *nm = rt_st_meta(f, "input_mean"), *ns = rt_st_meta(f, "input_std"), *why;
    if (!nm && !ns) {
        fprintf(stderr, "note: %s has no input_mean/input_std (an older checkpoint): the input "
                "normalisation is recomputed from --data %s --limit %d\n", weights, data, limit);
    } else if (rt_norm_parse(&norm, net->in_c, nm, ns, &why)) {
        fprintf(stderr, "error: %s: metadata %s\n", weights, why);
        rt_st_close(f);
        return 1;
    } else {
        rt_drv_norm_note(f, weights, data, limit, "evaluation");
    }
    char *data_copy = strdup(data);   /* the file's strings go away on close */
    RtModel m;
    RtData train = {0}, test = {0};
    float *probs = NULL;
    int status = 1;
    rt_drv_set_threads(threads);
    if (!data_copy || rt_model_init(&m, net, batch, threads, 0, &err)) {
        if (!data_copy)
            snprintf(err.msg, sizeof err.msg, "out of memory");
        fprintf(stderr, "error: %s\n", err.msg);
        rt_st_close(f);
        free(data_copy);
        return 1;
    }
    if (rt_drv_load_weights(f, weights, net, m.params, m.buffers, NULL, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto done;
    }
    rt_st_close(f);
    f = NULL;
    if (rt_data_load_norm(norm.c ? NULL : &train, &test, data_copy, limit, test_limit, net->in_c,
                          net->in_h, net->in_w, net->classes, seed, &norm, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto done;
    }
    probs = malloc((size_t)batch * (size_t)net->classes * sizeof *probs);
    if (!probs) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    double t0 = rt_drv_now(), loss, acc;
    rt_drv_evaluate(&m, net, &test, probs, batch, &loss, &acc);
    double secs = rt_drv_now() - t0;
    printf("eval: net=%s weights=%s images=%d test_loss=%.4f test_acc=%.4f images_per_s=%.1f\n",
           net->name, weights, test.n, loss, acc, secs > 0 ? test.n / secs : 0.0);
    if (logits && write_logits(&m, net, &test, batch, logits, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto done;
    }
    status = 0;
done:
    if (f)
        rt_st_close(f);
    free(probs);
    free(data_copy);
    rt_data_free(&train);
    rt_data_free(&test);
    rt_model_free(&m);
    return status;
}

/* --- bench ----------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int cmd_bench(const RtNet *net, const char *prog, int argc, char **argv)
{
    int batch = RT_DEFAULT_BATCH, iters = 10, warmup = 3, infer_iters = 0, steps = 0;
    int threads = net->defaults.threads > 0 ? net->defaults.threads : rt_drv_default_threads();
    uint64_t seed = 1;
    RtDrvOpt opts[] = {
        {"batch", OPT_INT, &batch, 1, 65536, "N", "batch size", 0},
        {"threads", OPT_INT, &threads, 1, 1024, "N", "threads", 0},
        {"iters", OPT_INT, &iters, 1, 100000, "N", "timed iterations", 0},
        {"infer-iters", OPT_INT, &infer_iters, 0, 100000, "N",
         "timed inference forwards (0: as many as --iters)", 0},
        {"warmup", OPT_INT, &warmup, 0, 100000, "N", "untimed iterations first", 0},
        {"seed", OPT_U64, &seed, 0, 0, "N", "seed of the weights and the synthetic input", 0},
        {"steps", OPT_FLAG, &steps, 0, 0, NULL, "also print every timed step's milliseconds", 0},
    };
    int rc = rt_drv_parse(prog, "bench", " [options]",
                       "Times training steps (forward, loss, backward, SGD update) and inference\n"
                       "forwards on synthetic input; reports the median and the peak RSS, then one\n"
                       "machine-readable line:\n"
                       "  bench: net=NAME batch=B threads=T train_img_s=X infer_img_s=Y "
                       "peak_rss_mb=Z\n"
                       "With --steps, first a line of each timed step in order:\n"
                       "  steps: train_ms=A,B,... infer_ms=C,D,...",
                       opts, 7, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (infer_iters == 0)
        infer_iters = iters;
    RtErr err = {{0}};
    RtModel m;
    rt_drv_set_threads(threads);
    if (rt_model_init(&m, net, batch, threads, seed, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    size_t nin = (size_t)batch * (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    size_t nlog = (size_t)batch * (size_t)net->classes;
    float *probs = malloc(nlog * sizeof *probs), *mom = calloc(net->nparams + 1, sizeof *mom);
    uint8_t *labels = malloc((size_t)batch);
    double *ttrain = malloc((size_t)iters * sizeof *ttrain);
    double *tinfer = malloc((size_t)infer_iters * sizeof *tinfer);
    if (!probs || !mom || !labels || !ttrain || !tinfer) {
        fprintf(stderr, "error: out of memory\n");
        free(probs), free(mom), free(labels), free(ttrain), free(tinfer);
        rt_model_free(&m);
        return 1;
    }
    RtRng rng;
    rt_rng_seed(&rng, seed + 1);
    rt_model_synth_batch(net, &rng, m.input, nin, labels, batch);
    for (int it = 0; it < warmup + iters; it++) {
        double t0 = rt_drv_now();
        net->forward(&m, batch, 1);
        rt_xent_forward(&m.ctx, probs, m.logits, labels, batch, net->classes);
        rt_xent_backward(&m.ctx, m.dlogits, probs, labels, batch, net->classes);
        memset(m.grads, 0, net->nparams * sizeof *m.grads);
        net->backward(&m, batch);
        /* A small step keeps the weights sane over the iterations. */
        for (int t = 0; t < net->ntensors; t++) {
            const RtTensor *ten = &net->tensors[t];
            if (!ten->buffer)
                rt_sgd_update(m.params + ten->offset, m.grads + ten->offset, mom + ten->offset,
                              ten->numel, 1e-4, 0.9, 0.0, 0);
        }
        if (it >= warmup)
            ttrain[it - warmup] = rt_drv_now() - t0;
    }
    for (int it = 0; it < warmup + infer_iters; it++) {
        double t0 = rt_drv_now();
        net->forward(&m, batch, 0);
        if (it >= warmup)
            tinfer[it - warmup] = rt_drv_now() - t0;
    }
    if (steps) {
        /* in the order they ran (median() sorts them) */
        printf("steps: train_ms=");
        for (int i = 0; i < iters; i++)
            printf("%s%.2f", i ? "," : "", 1e3 * ttrain[i]);
        printf(" infer_ms=");
        for (int i = 0; i < infer_iters; i++)
            printf("%s%.2f", i ? "," : "", 1e3 * tinfer[i]);
        printf("\n");
    }
    double mt = median(ttrain, iters), mi = median(tinfer, infer_iters);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = (double)ru.ru_maxrss / 1024.0;
    printf("%-24s %12s %12s\n", "", "ms/batch", "images/s");
    printf("%-24s %12.2f %12.1f\n", "train step (median)", 1e3 * mt, batch / mt);
    printf("%-24s %12.2f %12.1f\n", "inference (median)", 1e3 * mi, batch / mi);
    printf("%-24s %12.1f MiB\n", "peak RSS", rss_mb);
    printf("bench: net=%s batch=%d threads=%d train_img_s=%.1f infer_img_s=%.1f "
           "peak_rss_mb=%.1f\n",
           net->name, batch, threads, batch / mt, batch / mi, rss_mb);
    free(probs), free(mom), free(labels), free(ttrain), free(tinfer);
    rt_model_free(&m);
    return 0;
}

/* --- top level --------------------------------------------------------------- */

static void main_usage(FILE *fp, const RtNet *net, const char *prog)
{
    fprintf(fp,
            "usage: %s COMMAND [options]   (COMMAND --help for its options)\n\n"
            "Network %s, generated by optc %s.\n\n"
            "commands:\n"
            "  train      train on a data set (default fashion-mnist), logs and checkpoints\n"
            "  eval       evaluate a checkpoint on the test set\n"
            "  info       parameter count, multiply-adds, memory, parameter table\n"
            "  gradcheck  check the gradients against finite differences\n"
            "  bench      training and inference throughput\n"
            "  dump       one batch's loss, logits, gradients and SGD step, for an oracle\n",
            prog, net->name, net->optc_version ? net->optc_version : RT_VERSION);
}

int rt_main(const RtNet *net, int argc, char **argv)
{
    const char *prog = argc > 0 && argv[0] ? argv[0] : net->name;
    if (argc < 2) {
        main_usage(stderr, net, prog);
        return 2;
    }
    const char *cmd = argv[1];
    int n = argc - 2;
    char **rest = argv + 2;
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        main_usage(stdout, net, prog);
        return 0;
    }
    if (strcmp(cmd, "train") == 0)
        return rt_drv_cmd_train(net, prog, n, rest);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(net, prog, n, rest);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(net, prog, n, rest);
    if (strcmp(cmd, "gradcheck") == 0) {
        int grc = rt_drv_cmd_gradcheck(net, prog, n, rest);
        int help = 0;
        for (int i = 0; i < n; i++)
            help |= strcmp(rest[i], "--help") == 0 || strcmp(rest[i], "-h") == 0;
        if ((grc == 0 || grc == 1) && net->mf_nrebuilt > 0 && !help)
            mf_drift_report(net, "gradcheck", 4);
        return grc;
    }
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(net, prog, n, rest);
    if (strcmp(cmd, "dump") == 0)
        return rt_drv_cmd_dump(net, prog, n, rest);
    fprintf(stderr, "%s: error: unknown command '%s'\n", prog, cmd);
    main_usage(stderr, net, prog);
    return 2;
}
