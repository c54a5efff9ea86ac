/* train.c — the train command: the training loop, its logs (CSV, JSONL,
 * summary.json, a progress line), its checkpoints (last, best, interrupted)
 * and resuming from them.
 *
 * Reproducibility: the shuffle order of epoch e is a function of (seed, e)
 * alone, and the two random streams that run through training (augmentation
 * and the model's dropout stream) are saved in every checkpoint together
 * with the position (epoch, step within the epoch). A run resumed from any
 * checkpoint therefore replays exactly the steps the uninterrupted run
 * would have taken, with the same thread count giving the same bits.
 *
 * Test hooks (environment, read once per run; used by tests/test_driver.c):
 *   OPTC_TEST_INTERRUPT_AT=N  raise SIGINT (or OPTC_TEST_INTERRUPT_SIGNAL=TERM:
 *                             SIGTERM) after global step N (1-based)
 *   OPTC_TEST_NAN_AT=N        treat the loss of global step N as NaN
 *   OPTC_TEST_NAN_TEST_AT=E   treat the test loss after epoch E (1-based) as NaN
 *   OPTC_TEST_KILL_RANK=R     with OPTC_TEST_INTERRUPT_AT=N under MPI: rank R dies of
 *                             SIGKILL after step N instead (tests/test_mpi.c)
 *
 * No JSON file written here holds NaN or Inf: a non-finite test loss stops
 * the run (exit 1) before the logs and checkpoints of that epoch are
 * written, and any other non-finite number is written as null. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "rt_mpi.h"

/* The one mutable static the runtime allows: the number of the signal that
 * asked training to stop, set by the handler, read between steps. */
static volatile sig_atomic_t train_signal;

static void train_on_signal(int sig)
{
    train_signal = sig;
}

#define SHUFFLE_SALT 0x73687566666c6531ULL
#define AUGMENT_SALT 0x6175676d656e7431ULL

typedef struct {
    const RtNet *net;
    const char *prog;
    RtTrainConfig cfg;
    int augment, quiet, tty;
    RtModel m;
    float *mom, *probs;
    uint8_t *labels;
    uint32_t *order;
    RtData train, test;
    RtNorm norm;                  /* the input normalisation, saved in every checkpoint */
    RtRng aug;
    int epoch, step, steps;       /* position: the next step to run */
    long long gstep;              /* steps done since the run began */
    double best_acc;
    double wall_base, t_start;    /* seconds of earlier sessions; this session's start */
    double step_seconds;          /* time inside training steps, all sessions */
    long long images;             /* images trained, all sessions */
    /* the current epoch so far */
    double part_loss, part_seconds, part_step_seconds;
    long long part_correct, part_seen;
    /* the last evaluation */
    double test_loss, test_acc;
    int evaluated;
    long long hook_interrupt, hook_nan, hook_nan_test, hook_kill;
    int hook_sig;
    char last_good[4200];
    FILE *csv, *jsonl;
    /* data parallel (rt_mpi.h); one rank without MPI */
    RtMpi mp;
    int off, nb, cap;             /* this rank's slice of every batch; model capacity */
    float *gx;                    /* ranks > 1: the whole batch before slicing */
    uint8_t *gy;
    int stop_sig;                 /* ranks > 1: the stop signal every rank agreed on */
    int agreed;                   /* the error ending the run was reached by every rank */
    long long gstep0;             /* gstep when this session began */
} Train;

/* --- files ------------------------------------------------------------------- */

static void path_join(char *dst, size_t n, const char *dir, const char *file)
{
    snprintf(dst, n, "%s/%s", dir, file);
}

/* Create dir (and its parents) and prove it writable by creating a file in
 * it, so an unusable --out fails before any work is done. */
static int prepare_out(const char *dir, RtErr *err)
{
    char buf[4096];
    if (strlen(dir) >= sizeof buf - 64) {
        snprintf(err->msg, sizeof err->msg, "output directory name too long");
        return -1;
    }
    strcpy(buf, dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) {
                snprintf(err->msg, sizeof err->msg, "cannot create output directory '%s': %s",
                         dir, strerror(errno));
                return -1;
            }
            *p = c;
            if (!c)
                break;
        }
    }
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(err->msg, sizeof err->msg, "output directory '%s' is not a directory", dir);
        return -1;
    }
    snprintf(buf, sizeof buf, "%s/.optc-write-test-XXXXXX", dir);
    int fd = mkstemp(buf);
    if (fd < 0) {
        snprintf(err->msg, sizeof err->msg, "output directory '%s' is not writable: %s", dir,
                 strerror(errno));
        return -1;
    }
    close(fd);
    unlink(buf);
    return 0;
}

/* --- checkpoints ----------------------------------------------------------------- */

typedef struct {
    const char *kv[96];
    char buf[48][96];
    int n, nbuf;
} Meta;

static void meta_str(Meta *mt, const char *key, const char *val)
{
    mt->kv[mt->n++] = key;
    mt->kv[mt->n++] = val;
}

__attribute__((format(printf, 3, 4)))
static void meta_fmt(Meta *mt, const char *key, const char *fmt, ...)
{
    char *b = mt->buf[mt->nbuf++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof mt->buf[0], fmt, ap);
    va_end(ap);
    meta_str(mt, key, b);
}

static void rng_hex(char *dst, const RtRng *r)
{
    for (int i = 0; i < 4; i++)
        sprintf(dst + 16 * i, "%016" PRIx64, r->s[i]);
}

static int rng_parse(RtRng *r, const char *s)
{
    if (!s || strlen(s) != 64)
        return -1;
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, s + 16 * i, 16);
        part[16] = 0;
        char *end;
        r->s[i] = (uint64_t)strtoull(part, &end, 16);
        if (*end)
            return -1;
    }
    return 0;
}

/* Everything needed to continue the run exactly: parameters, buffers,
 * momentum, position, random streams, configuration, running totals. */
static int train_save(const Train *t, const char *path, RtErr *err)
{
    const RtNet *net = t->net;
    RtStEntry *e = calloc((size_t)(2 * net->ntensors + 1), sizeof *e);
    char **names = calloc((size_t)net->ntensors + 1, sizeof *names);
    int n = 0, rc = -1;
    if (!e || !names) {
        snprintf(err->msg, sizeof err->msg, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < net->ntensors; i++) {
        const RtTensor *ten = &net->tensors[i];
        e[n].name = ten->name;
        e[n].ndim = ten->ndim;
        memcpy(e[n].dims, ten->dims, sizeof e[n].dims);
        e[n].data = (ten->buffer ? t->m.buffers : t->m.params) + ten->offset;
        n++;
    }
    for (int i = 0; i < net->ntensors; i++) {
        const RtTensor *ten = &net->tensors[i];
        if (ten->buffer)
            continue;
        size_t len = strlen(ten->name) + 10;
        if (!(names[i] = malloc(len))) {
            snprintf(err->msg, sizeof err->msg, "%s: out of memory", path);
            goto done;
        }
        snprintf(names[i], len, "momentum.%s", ten->name);
        e[n].name = names[i];
        e[n].ndim = ten->ndim;
        memcpy(e[n].dims, ten->dims, sizeof e[n].dims);
        e[n].data = t->mom + ten->offset;
        n++;
    }
    const RtTrainConfig *c = &t->cfg;
    Meta mt;
    mt.n = mt.nbuf = 0;
    char aug[80], mdl[80], nmean[RT_NORM_MAX_C * 18], nstd[RT_NORM_MAX_C * 18];
    if (rt_norm_format(&t->norm, nmean, nstd, sizeof nmean)) {
        snprintf(err->msg, sizeof err->msg, "%s: the input normalisation does not fit", path);
        goto done;
    }
    rng_hex(aug, &t->aug);
    rng_hex(mdl, &t->m.rng);
    meta_str(&mt, "format", "optc-checkpoint-1");
    meta_str(&mt, "net", net->name);
    meta_str(&mt, "optc_version", net->optc_version ? net->optc_version : RT_VERSION);
    meta_fmt(&mt, "epoch", "%d", t->epoch);
    meta_fmt(&mt, "step", "%d", t->step);
    meta_fmt(&mt, "global_step", "%lld", t->gstep);
    meta_fmt(&mt, "seed", "%" PRIu64, c->seed);
    meta_str(&mt, "rng_augment", aug);
    meta_str(&mt, "rng_model", mdl);
    meta_fmt(&mt, "best_test_acc", "%.17g", t->best_acc);
    meta_fmt(&mt, "epochs", "%d", c->epochs);
    meta_fmt(&mt, "batch", "%d", c->batch);
    meta_fmt(&mt, "lr", "%.17g", c->lr);
    meta_fmt(&mt, "momentum", "%.17g", c->momentum);
    meta_fmt(&mt, "weight_decay", "%.17g", c->weight_decay);
    meta_fmt(&mt, "nesterov", "%d", c->nesterov);
    meta_str(&mt, "schedule", rt_drv_sched_name(c->schedule));
    meta_fmt(&mt, "warmup_epochs", "%d", c->warmup_epochs);
    meta_fmt(&mt, "threads", "%d", c->threads);
    meta_fmt(&mt, "limit", "%d", c->limit);
    meta_fmt(&mt, "test_limit", "%d", c->test_limit);
    meta_str(&mt, "data", c->data);
    meta_fmt(&mt, "data_limit", "%d", c->limit);
    meta_str(&mt, "input_mean", nmean);
    meta_str(&mt, "input_std", nstd);
    meta_fmt(&mt, "augment", "%d", t->augment);
    meta_fmt(&mt, "train_seconds", "%a", t->wall_base + (rt_drv_now() - t->t_start));
    meta_fmt(&mt, "step_seconds", "%a", t->step_seconds);
    meta_fmt(&mt, "images", "%lld", t->images);
    meta_fmt(&mt, "partial_loss", "%a", t->part_loss);
    meta_fmt(&mt, "partial_correct", "%lld", t->part_correct);
    meta_fmt(&mt, "partial_seen", "%lld", t->part_seen);
    meta_fmt(&mt, "partial_seconds", "%a", t->part_seconds + (rt_drv_now() - t->t_start));
    meta_fmt(&mt, "partial_step_seconds", "%a", t->part_step_seconds);
    rc = rt_st_save(path, e, n, mt.kv, mt.n / 2, err);
done:
    if (names)
        for (int i = 0; i < net->ntensors; i++)
            free(names[i]);
    free(names);
    free(e);
    return rc;
}

/* A numeric metadata value of a training checkpoint; -1 when absent or bad. */
static int meta_num(const RtStFile *f, const char *path, const char *key, double *out, RtErr *err)
{
    const char *v = rt_st_meta(f, key);
    char *end = NULL;
    if (v) {
        errno = 0;
        *out = strtod(v, &end);
    }
    if (!v || end == v || *end || errno) {
        snprintf(err->msg, sizeof err->msg,
                 "%s: metadata '%s' is %s (not a training checkpoint written by optc?)", path,
                 key, v ? "malformed" : "missing");
        return -1;
    }
    return 0;
}

/* The run configuration stored in a checkpoint, for every flag the user did
 * not give again. data_store receives the data spec (owned by the caller). */
static int resume_config(Train *t, const RtStFile *f, const char *path, RtDrvOpt *opts, int nopts,
                         char **data_store, RtErr *err)
{
    RtTrainConfig *c = &t->cfg;
    double v;
    for (int i = 0; i < nopts; i++) {
        RtDrvOpt *o = &opts[i];
        if (o->seen)
            continue;
        const char *n = o->name;
        if (strcmp(n, "data") == 0) {
            const char *d = rt_st_meta(f, "data");
            if (d) {
                free(*data_store);
                *data_store = strdup(d);
                c->data = *data_store;
            }
            continue;
        }
        if (strcmp(n, "schedule") == 0) {
            const char *s = rt_st_meta(f, "schedule");
            if (s && rt_drv_sched_parse(s, &c->schedule) == 0)
                continue;
            snprintf(err->msg, sizeof err->msg, "%s: metadata 'schedule' is missing or bad",
                     path);
            return -1;
        }
        static const struct { const char *flag, *key; } map[] = {
            {"epochs", "epochs"}, {"batch", "batch"}, {"lr", "lr"},
            {"momentum", "momentum"}, {"weight-decay", "weight_decay"},
            {"nesterov", "nesterov"}, {"warmup", "warmup_epochs"}, {"seed", "seed"},
            {"threads", "threads"}, {"limit", "limit"}, {"test-limit", "test_limit"},
            {"no-augment", "augment"},
        };
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++) {
            if (strcmp(n, map[k].flag) != 0)
                continue;
            if (strcmp(n, "seed") == 0) {
                const char *s = rt_st_meta(f, "seed");
                char *end = NULL;
                if (s)
                    c->seed = (uint64_t)strtoull(s, &end, 10);
                if (!s || end == s || *end) {
                    snprintf(err->msg, sizeof err->msg, "%s: metadata 'seed' is missing or bad",
                             path);
                    return -1;
                }
                break;
            }
            if (meta_num(f, path, map[k].key, &v, err))
                return -1;
            if (o->kind == OPT_DOUBLE)
                *(double *)o->dst = v;
            else if (strcmp(n, "no-augment") == 0)
                t->augment = v != 0;
            else
                *(int *)o->dst = (int)v;
            break;
        }
    }
    return 0;
}

/* The input normalisation of a checkpoint into t->norm, with a note when
 * the run trains on another data set or limit than the one it was computed
 * on; an older checkpoint without it gets a note and t->norm stays empty
 * (recomputed from the data, as that optc did). */
static int resume_norm(Train *t, const RtStFile *f, const char *path, RtErr *err)
{
    const RtTrainConfig *c = &t->cfg;
    const char *m = rt_st_meta(f, "input_mean"), *s = rt_st_meta(f, "input_std"), *why;
    if (!m && !s) {
        fprintf(stderr, "note: %s has no input_mean/input_std (an older checkpoint): the input "
                "normalisation is recomputed from --data %s --limit %d\n", path, c->data,
                c->limit);
        return 0;
    }
    if (rt_norm_parse(&t->norm, t->net->in_c, m, s, &why)) {
        snprintf(err->msg, sizeof err->msg, "%s: metadata %s", path, why);
        return -1;
    }
    rt_drv_norm_note(f, path, c->data, c->limit, "training");
    return 0;
}

/* The position, random streams and running totals of a checkpoint. */
static int resume_state(Train *t, const RtStFile *f, const char *path, RtErr *err)
{
    double epoch, step, gstep, best, wall, ssec, images, ploss, pcorr, pseen, psec, pssec;
    if (meta_num(f, path, "epoch", &epoch, err) || meta_num(f, path, "step", &step, err) ||
        meta_num(f, path, "global_step", &gstep, err) ||
        meta_num(f, path, "best_test_acc", &best, err) ||
        meta_num(f, path, "train_seconds", &wall, err) ||
        meta_num(f, path, "step_seconds", &ssec, err) ||
        meta_num(f, path, "images", &images, err) ||
        meta_num(f, path, "partial_loss", &ploss, err) ||
        meta_num(f, path, "partial_correct", &pcorr, err) ||
        meta_num(f, path, "partial_seen", &pseen, err) ||
        meta_num(f, path, "partial_seconds", &psec, err) ||
        meta_num(f, path, "partial_step_seconds", &pssec, err))
        return -1;
    if (rng_parse(&t->aug, rt_st_meta(f, "rng_augment")) ||
        rng_parse(&t->m.rng, rt_st_meta(f, "rng_model"))) {
        snprintf(err->msg, sizeof err->msg, "%s: metadata 'rng_augment'/'rng_model' is bad",
                 path);
        return -1;
    }
    if (epoch < 0 || step < 0 || step > t->steps) {
        snprintf(err->msg, sizeof err->msg,
                 "%s: position epoch %g step %g does not fit %d steps per epoch", path, epoch,
                 step, t->steps);
        return -1;
    }
    t->epoch = (int)epoch;
    t->step = (int)step;
    t->gstep = (long long)gstep;
    t->best_acc = best;
    t->wall_base = wall;
    t->step_seconds = ssec;
    t->images = (long long)images;
    t->part_loss = ploss;
    t->part_correct = (long long)pcorr;
    t->part_seen = (long long)pseen;
    t->part_seconds = psec;
    t->part_step_seconds = pssec;
    return 0;
}

/* --- logs -------------------------------------------------------------------------- */

/* Append text to the log fp (path names it in messages) all or nothing:
 * logs are unbuffered, so a failed or short write (a full disk, EFBIG)
 * leaves nothing behind in the stream, and the file is cut back to its old
 * length, so a resumed run never appends after half a line. -1 with
 * "PATH: strerror" in err. */
static int log_write(FILE *fp, const char *path, const char *text, RtErr *err)
{
    struct stat st;
    int have_size = fstat(fileno(fp), &st) == 0;
    size_t n = strlen(text);
    errno = 0;
    if (fwrite(text, 1, n, fp) == n && fflush(fp) == 0)
        return 0;
    int e = errno ? errno : EIO;
    if (have_size && ftruncate(fileno(fp), st.st_size) != 0) {
        /* Nothing more to do: the error below is what the user must see. */
    }
    clearerr(fp);
    snprintf(err->msg, sizeof err->msg, "%.900s: %s", path, strerror(e));
    return -1;
}

static FILE *open_log(const char *dir, const char *file, const char *header, int append,
                      RtErr *err)
{
    char path[4200];
    path_join(path, sizeof path, dir, file);
    int exists = access(path, F_OK) == 0;
    FILE *fp = fopen(path, append && exists ? "a" : "w");
    if (!fp) {
        snprintf(err->msg, sizeof err->msg, "cannot write '%.900s': %s", path, strerror(errno));
        return NULL;
    }
    /* Unbuffered: every row reaches the file (or fails) when written. */
    setvbuf(fp, NULL, _IONBF, 0);
    if (header && !(append && exists)) {
        char line[512];
        snprintf(line, sizeof line, "%s\n", header);
        if (log_write(fp, path, line, err)) {
            fclose(fp);
            return NULL;
        }
    }
    return fp;
}

/* Close a log; -1 with "PATH: strerror" in err when that fails. */
static int close_log(FILE *fp, const char *dir, const char *file, RtErr *err)
{
    if (fclose(fp) == 0)
        return 0;
    char path[4200];
    path_join(path, sizeof path, dir, file);
    snprintf(err->msg, sizeof err->msg, "%.900s: %s", path, strerror(errno));
    return -1;
}

static void fmt_duration(char *buf, size_t n, double s)
{
    if (s < 0 || !isfinite(s))
        s = 0;
    long x = (long)(s + 0.5);
    if (x >= 3600)
        snprintf(buf, n, "%ldh%02ldm", x / 3600, x / 60 % 60);
    else if (x >= 60)
        snprintf(buf, n, "%ldm%02lds", x / 60, x % 60);
    else
        snprintf(buf, n, "%lds", x);
}

static void progress(const Train *t, double loss_avg, double acc)
{
    double done_steps = (double)t->epoch * t->steps + t->step;
    double todo = (double)t->cfg.epochs * t->steps - done_steps;
    double rate = t->step_seconds > 0 ? (double)t->images / t->step_seconds : 0;
    char eta[32];
    fmt_duration(eta, sizeof eta, rate > 0 ? todo * t->cfg.batch / rate : 0);
    printf("\r\033[Kepoch %d/%d  step %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %s",
           t->epoch + 1, t->cfg.epochs, t->step, t->steps, loss_avg, 100 * acc, rate, eta);
    fflush(stdout);
}

/* A JSON number: v with prec digits after the point (fixed) or prec
 * significant digits (general), or null when v is NaN or infinite, which
 * JSON cannot hold. */
static const char *jnum(char *buf, size_t n, int general, int prec, double v)
{
    if (!isfinite(v))
        return "null";
    if (general || fabs(v) >= 1e15)   /* no 300-digit fixed-point numbers */
        snprintf(buf, n, "%.*g", prec < 6 ? 6 : prec, v);
    else
        snprintf(buf, n, "%.*f", prec, v);
    return buf;
}

/* The evaluation result is finite, or err says where it is not. */
static int check_test_loss(const Train *t, RtErr *err)
{
    if (isfinite(t->test_loss))
        return 0;
    snprintf(err->msg, sizeof err->msg,
             "test loss is %s at the end of epoch %d (step %d); last good checkpoint: %.900s",
             isnan(t->test_loss) ? "NaN" : "Inf", t->epoch + 1, t->step,
             t->last_good[0] ? t->last_good : "none");
    return -1;
}

/* --- the loop ------------------------------------------------------------------------- */

/* One SGD step on batch t->step of epoch t->epoch. -1 on a non-finite loss
 * (left in *bad), before anything was updated. */
static int train_step(Train *t, double *bad)
{
    const RtNet *net = t->net;
    const RtTrainConfig *c = &t->cfg;
    int B = c->batch, K = net->classes, nb = t->nb, ranks = t->mp.size > 1;
    /* Ranks draw the whole batch (the same augmentation as one process)
     * and keep their slice. */
    rt_data_batch(ranks ? t->gx : t->m.input, ranks ? t->gy : t->labels, &t->train,
                  t->order + (size_t)t->step * (size_t)B, B, t->augment ? c->crop_pad : 0,
                  t->augment ? c->flip : 0, &t->aug);
    if (ranks) {
        size_t img = (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
        memcpy(t->m.input, t->gx + (size_t)t->off * img, (size_t)nb * img * sizeof *t->gx);
        memcpy(t->labels, t->gy + t->off, (size_t)nb);
    }
    net->forward(&t->m, nb, 1);
    double loss = rt_xent_forward(&t->m.ctx, t->probs, t->m.logits, t->labels, nb, K);
    long long correct = 0;
    for (int j = 0; j < nb; j++)
        correct += rt_drv_argmax(t->m.logits + (size_t)j * (size_t)K, K) == t->labels[j];
    if (ranks) { /* the whole batch's loss and accuracy, and any stop signal, on every rank */
        double agree[4] = {loss * nb, (double)correct, train_signal == SIGINT,
                           train_signal == SIGTERM};
        rt_mpi_sum_d(&t->mp, agree, 4);
        loss = agree[0] / B;
        correct = (long long)agree[1];
        t->stop_sig = agree[3] > 0 ? SIGTERM : agree[2] > 0 ? SIGINT : 0;
    }
    if (t->hook_nan == t->gstep + 1)
        loss = (double)NAN;
    if (!isfinite(loss)) {
        *bad = loss;
        return -1;
    }
    t->part_correct += correct;
    t->part_loss += loss * B;
    t->part_seen += B;
    if (ranks)
        rt_mpi_xent_backward(t->m.dlogits, t->probs, t->labels, nb, K, B);
    else
        rt_xent_backward(&t->m.ctx, t->m.dlogits, t->probs, t->labels, B, K);
    memset(t->m.grads, 0, net->nparams * sizeof *t->m.grads);
    net->backward(&t->m, nb);
    rt_mpi_sum_f(&t->mp, t->m.grads, net->nparams);
    double lr = rt_lr_at(c, t->epoch + (double)t->step / t->steps);
    for (int i = 0; i < net->ntensors; i++) {
        const RtTensor *ten = &net->tensors[i];
        if (ten->buffer)
            continue;
        rt_sgd_update(t->m.params + ten->offset, t->m.grads + ten->offset, t->mom + ten->offset,
                      ten->numel, lr, c->momentum, rt_weight_decay(ten, c), c->nesterov);
    }
    return 0;
}

static void epoch_order(Train *t)
{
    RtRng r;
    for (int i = 0; i < t->train.n; i++)
        t->order[i] = (uint32_t)i;
    rt_rng_seed(&r, t->cfg.seed ^ (SHUFFLE_SALT + 0x9e3779b97f4a7c15ULL * (uint64_t)t->epoch));
    rt_shuffle(t->order, t->train.n, &r);
}

/* End of an epoch: evaluate, log, checkpoint. -1 when a checkpoint cannot be
 * written. */
static int end_epoch(Train *t, const char *out, RtErr *err)
{
    const RtTrainConfig *c = &t->cfg;
    rt_drv_evaluate(&t->m, t->net, &t->test, t->probs, t->cap, &t->test_loss, &t->test_acc);
    if (t->hook_nan_test == t->epoch + 1)
        t->test_loss = (double)NAN;
    /* A diverged network: nothing of this epoch is logged or saved. */
    if (check_test_loss(t, err)) {
        t->agreed = 1;
        return -1;
    }
    t->evaluated = 1;
    double secs = t->part_seconds + (rt_drv_now() - t->t_start);
    double lr = rt_lr_at(c, t->epoch);
    double tl = t->part_seen ? t->part_loss / (double)t->part_seen : 0;
    double ta = t->part_seen ? (double)t->part_correct / (double)t->part_seen : 0;
    double ips = t->part_step_seconds > 0 ? (double)t->part_seen / t->part_step_seconds : 0;
    /* The logs first: a full disk stops the run here, before a checkpoint
     * claims an epoch the logs do not show. */
    char row[1024], path[4200];
    int io = t->mp.rank == 0;     /* rank 0 alone writes logs and checkpoints */
    snprintf(row, sizeof row, "%d,%.6g,%.6f,%.6f,%.6f,%.6f,%.1f,%.3f\n", t->epoch + 1, lr, tl,
             ta, t->test_loss, t->test_acc, ips, secs);
    path_join(path, sizeof path, out, "log.csv");
    if (io && log_write(t->csv, path, row, err))
        return -1;
    char j[8][40];
    snprintf(row, sizeof row,
             "{\"epoch\":%d,\"lr\":%s,\"train_loss\":%s,\"train_acc\":%s,"
             "\"test_loss\":%s,\"test_acc\":%s,\"images_per_s\":%s,\"seconds\":%s}\n",
             t->epoch + 1, jnum(j[0], 40, 1, 6, lr), jnum(j[1], 40, 0, 6, tl),
             jnum(j[2], 40, 0, 6, ta), jnum(j[3], 40, 0, 6, t->test_loss),
             jnum(j[4], 40, 0, 6, t->test_acc), jnum(j[5], 40, 0, 1, ips),
             jnum(j[6], 40, 0, 3, secs));
    path_join(path, sizeof path, out, "log.jsonl");
    if (io && log_write(t->jsonl, path, row, err))
        return -1;
    if (!t->quiet) {
        if (t->tty)
            printf("\r\033[K");
        printf("epoch %d/%d  lr %.4g  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  "
               "%.0f img/s  %.1f s\n",
               t->epoch + 1, c->epochs, lr, tl, 100 * ta, t->test_loss, 100 * t->test_acc, ips,
               secs);
        fflush(stdout);
    }
    /* The next position; the checkpoints written now resume there. */
    t->epoch++;
    t->step = 0;
    t->part_loss = t->part_seconds = t->part_step_seconds = 0;
    t->part_correct = t->part_seen = 0;
    t->wall_base += rt_drv_now() - t->t_start;
    t->t_start = rt_drv_now();
    int improved = t->test_acc > t->best_acc;
    if (improved)
        t->best_acc = t->test_acc;
    if (improved && io) {
        path_join(path, sizeof path, out, "best.safetensors");
        if (train_save(t, path, err))
            return -1;
    }
    path_join(path, sizeof path, out, "last.safetensors");
    if (io && train_save(t, path, err))
        return -1;
    snprintf(t->last_good, sizeof t->last_good, "%s", path);
    return 0;
}

/* summary.json marks a finished run (compare skips such runs), so it is
 * written to a temporary name and renamed: never seen half-written. */
static int write_summary(const Train *t, const char *out, RtErr *err)
{
    char path[4200], tmp[4300];
    path_join(path, sizeof path, out, "summary.json");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) {
        snprintf(err->msg, sizeof err->msg, "cannot write '%.900s': %s", tmp, strerror(errno));
        return -1;
    }
    char j[5][40];
    int bad = fprintf(fp,
            "{\"net\":\"%s\",\"params\":%zu,\"madds\":%lld,\"epochs\":%d,\"seed\":%" PRIu64 ","
            "\"train_seconds\":%s,\"test_acc\":%s,\"test_loss\":%s,"
            "\"best_test_acc\":%s,\"images_per_s\":%s}\n",
            t->net->name, t->net->nparams, t->net->madds, t->cfg.epochs, t->cfg.seed,
            jnum(j[0], 40, 0, 3, t->wall_base + (rt_drv_now() - t->t_start)),
            jnum(j[1], 40, 0, 6, t->test_acc), jnum(j[2], 40, 0, 6, t->test_loss),
            jnum(j[3], 40, 0, 6, t->best_acc),
            jnum(j[4], 40, 0, 1,
                 t->step_seconds > 0 ? (double)t->images / t->step_seconds : 0.0)) < 0;
    bad = fflush(fp) != 0 || bad;
    bad = fsync(fileno(fp)) != 0 || bad;
    int e = errno;
    if (fclose(fp) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        snprintf(err->msg, sizeof err->msg, "%.900s: %s", path, strerror(e ? e : EIO));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path)) {
        snprintf(err->msg, sizeof err->msg, "cannot write '%.900s': %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static long long env_ll(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strtoll(v, NULL, 10) : 0;
}

/* What every rank must share: the program (network, provenance, layout),
 * the command line, the data's labels and normalisation, and the state to
 * start from (weights, momentum, position, random streams). */
static uint64_t run_hash(const Train *t, int argc, char **argv)
{
    const RtNet *net = t->net;
    uint64_t h = 0xcbf29ce484222325ULL;
    const char *strs[] = {net->name, net->optc_version, net->command, net->spec, RT_VERSION};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i])
            h = rt_mpi_hash(h, strs[i], strlen(strs[i]) + 1);
    for (int i = 0; i < argc; i++)
        h = rt_mpi_hash(h, argv[i], strlen(argv[i]) + 1);
    for (int i = 0; i < net->ntensors; i++) {
        const RtTensor *ten = &net->tensors[i];
        h = rt_mpi_hash(h, ten->name, strlen(ten->name) + 1);
        h = rt_mpi_hash(h, ten->dims, sizeof ten->dims);
        h = rt_mpi_hash(h, &ten->offset, sizeof ten->offset);
    }
    h = rt_mpi_hash(h, t->m.params, net->nparams * sizeof *t->m.params);
    h = rt_mpi_hash(h, t->m.buffers, net->nbuffers * sizeof *t->m.buffers);
    h = rt_mpi_hash(h, t->mom, net->nparams * sizeof *t->mom);
    h = rt_mpi_hash(h, t->train.y, (size_t)t->train.n);
    h = rt_mpi_hash(h, &t->norm, sizeof t->norm);
    int pos[4] = {t->epoch, t->step, t->steps, t->augment};
    h = rt_mpi_hash(h, pos, sizeof pos);
    h = rt_mpi_hash(h, &t->aug, sizeof t->aug);
    return rt_mpi_hash(h, &t->m.rng, sizeof t->m.rng);
}

/* Train until the configured epochs are done. Returns the exit status. */
static int train_loop(Train *t, const char *out)
{
    RtErr err = {{0}};
    const RtTrainConfig *c = &t->cfg;
    while (t->epoch < c->epochs) {
        epoch_order(t);
        double shown = 0;
        while (t->step < t->steps) {
            double s0 = rt_drv_now();
            double bad = 0;
            if (train_step(t, &bad)) {
                if (t->tty && !t->quiet)
                    printf("\n");
                t->agreed = 1;    /* the loss is the whole batch's, on every rank */
                if (t->mp.rank == 0)
                    fprintf(stderr, "error: loss is %s at epoch %d step %d; last good checkpoint: "
                            "%s\n", isnan(bad) ? "NaN" : "Inf", t->epoch + 1, t->step + 1,
                            t->last_good[0] ? t->last_good : "none");
                return 1;
            }
            double dt = rt_drv_now() - s0;
            t->step++;
            t->gstep++;
            t->part_step_seconds += dt;
            t->step_seconds += dt;
            t->images += c->batch;
            if (t->hook_interrupt == t->gstep &&
                (!t->hook_kill || t->hook_kill == t->mp.rank + 1))
                raise(t->hook_kill ? SIGKILL : t->hook_sig);
            if (t->mp.size > 1 ? t->stop_sig : train_signal) {
                int sig = t->mp.size > 1 ? t->stop_sig : train_signal;
                if (t->mp.rank != 0)  /* rank 0 writes the checkpoint */
                    return 128 + sig;
                char path[4200];
                path_join(path, sizeof path, out, "interrupted.safetensors");
                /* part_seconds and wall_base are folded in by train_save. */
                if (t->tty && !t->quiet)
                    printf("\n");
                if (train_save(t, path, &err)) {
                    fprintf(stderr, "error: interrupted, and the checkpoint failed: %s\n", err.msg);
                    return 1;
                }
                fprintf(stderr,
                        "interrupted by %s at epoch %d step %d/%d; state saved to %s\n"
                        "resume with: %s train --resume %s\n",
                        sig == SIGTERM ? "SIGTERM" : "SIGINT", t->epoch + 1, t->step, t->steps,
                        path, t->prog, path);
                return 128 + sig;
            }
            if (t->tty && !t->quiet && (rt_drv_now() - shown > 0.2 || t->step == t->steps)) {
                shown = rt_drv_now();
                progress(t, t->part_loss / (double)t->part_seen,
                         (double)t->part_correct / (double)t->part_seen);
            }
        }
        if (end_epoch(t, out, &err)) {
            if (t->mp.rank == 0 || !t->agreed)
                fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
    }
    if (!t->evaluated) { /* resumed at the very end: still report the weights */
        rt_drv_evaluate(&t->m, t->net, &t->test, t->probs, t->cap, &t->test_loss, &t->test_acc);
        if (check_test_loss(t, &err)) {
            t->agreed = 1;
            if (t->mp.rank == 0)
                fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
    }
    /* A finished run makes an older interrupted checkpoint stale. */
    char stale[4200];
    path_join(stale, sizeof stale, out, "interrupted.safetensors");
    if (t->mp.rank == 0)
        unlink(stale);
    if (t->mp.rank == 0 && write_summary(t, out, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    if (!t->quiet && t->mp.size > 1 && t->gstep > t->gstep0)
        printf("mpi: %d ranks; per step %lld bytes of gradients and %lld bytes of BN sums "
               "summed; %.3f s in the gradient allreduce\n", t->mp.size,
               t->mp.reduce_bytes / (t->gstep - t->gstep0),
               t->mp.sync_bytes / (t->gstep - t->gstep0), t->mp.reduce_seconds);
    if (!t->quiet)
        printf("done: %s test_acc=%.4f best_test_acc=%.4f; checkpoints and logs in %s\n",
               t->net->name, t->test_acc, t->best_acc, out);
    return 0;
}

static const char train_about[] =
    "Train on a data set with SGD (momentum, optional Nesterov), logging every epoch to\n"
    "OUT/log.csv and OUT/log.jsonl and writing OUT/last.safetensors (every epoch),\n"
    "OUT/best.safetensors (when test accuracy improves) and OUT/summary.json.\n"
    "The last partial batch of an epoch is dropped in training and kept in evaluation.\n"
    "SIGINT/SIGTERM finish the current step, write OUT/interrupted.safetensors and exit\n"
    "130/143; --resume continues any checkpoint exactly (same seed and threads give\n"
    "bit-identical results), taking every flag not given again from the checkpoint.\n"
    "A NaN or Inf loss, training or test, stops training (exit 1) without touching the\n"
    "checkpoints; the error names the last good one.";

int rt_drv_cmd_train(const RtNet *net, const char *prog, int argc, char **argv)
{
    Train *t = calloc(1, sizeof *t);
    if (!t) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    RtTrainConfig *c = &t->cfg;
    *c = net->defaults;
    if (c->epochs <= 0) c->epochs = 10;
    if (c->batch <= 0) c->batch = RT_DEFAULT_BATCH;
    if (c->lr <= 0) c->lr = 0.1;
    if (c->threads <= 0) c->threads = rt_drv_default_threads();
    if (!c->data) c->data = "fashion-mnist";
    c->out = NULL;
    c->resume = NULL;
    t->net = net;
    t->prog = prog;
    int no_augment = 0;
    RtDrvOpt opts[] = {
        {"data", OPT_STR, &c->data, 0, 0, "SPEC",
         "fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | cifar100:DIR | synthetic", 0},
        {"epochs", OPT_INT, &c->epochs, 1, 1e6, "N", "epochs", 0},
        {"batch", OPT_INT, &c->batch, 1, 65536, "N", "mini-batch size", 0},
        {"lr", OPT_DOUBLE, &c->lr, 0, 1e300, "X", "peak learning rate", 0},
        {"momentum", OPT_DOUBLE, &c->momentum, 0, 1, "X", "SGD momentum", 0},
        {"nesterov", OPT_FLAG, &c->nesterov, 0, 0, NULL, "Nesterov momentum", 0},
        {"schedule", OPT_SCHED, &c->schedule, 0, 0, "S", "constant | step | cosine", 0},
        {"warmup", OPT_INT, &c->warmup_epochs, 0, 1e6, "N", "linear warm-up epochs", 0},
        {"weight-decay", OPT_DOUBLE, &c->weight_decay, 0, 1, "X",
         "L2 weight decay (weights; BN affine only if the network says so)", 0},
        {"seed", OPT_U64, &c->seed, 0, 0, "N", "seed of weights, shuffling, augmentation", 0},
        {"threads", OPT_INT, &c->threads, 1, 1024, "N", "OpenMP and OpenBLAS threads", 0},
        {"limit", OPT_INT, &c->limit, 0, 1e9, "N", "use the first N training images (0: all)", 0},
        {"test-limit", OPT_INT, &c->test_limit, 0, 1e9, "N",
         "use the first N test images (0: all)", 0},
        {"out", OPT_STR, &c->out, 0, 0, "DIR",
         "run directory (default runs/NET; with --resume the checkpoint's directory)", 0},
        {"resume", OPT_STR, &c->resume, 0, 0, "FILE", "continue from a checkpoint", 0},
        {"no-augment", OPT_FLAG, &no_augment, 0, 0, NULL, "no random crop / flip", 0},
        {"quiet", OPT_FLAG, &t->quiet, 0, 0, NULL, "no progress or per-epoch lines", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);
    int rc = rt_drv_parse(prog, "train", " [options]", train_about, opts, nopts, argc, argv);
    if (rc) {
        free(t);
        return rc == 1 ? 0 : rc;
    }
    t->augment = !no_augment;
    RtErr err = {{0}};
    RtStFile *f = NULL;
    char *data_store = NULL, out_store[4200];
    struct sigaction sa, old_int, old_term;
    int installed = 0;
    rc = 1;
    if (rt_mpi_start(&t->mp, &err))
        goto fail;
    if (t->mp.rank != 0)
        t->quiet = 1;
    if (c->resume) {
        if (!(f = rt_st_open(c->resume, &err)))
            goto fail;
        const char *name = rt_st_meta(f, "net");
        if (!name || strcmp(name, net->name) != 0) {
            snprintf(err.msg, sizeof err.msg,
                     "%s: checkpoint is from network '%s', this program is '%s'", c->resume,
                     name ? name : "(unknown)", net->name);
            goto fail;
        }
        if (resume_config(t, f, c->resume, opts, nopts, &data_store, &err) ||
            resume_norm(t, f, c->resume, &err))
            goto fail;
    }
    if (!c->out) {
        if (c->resume) {
            const char *slash = strrchr(c->resume, '/');
            if (slash)
                snprintf(out_store, sizeof out_store, "%.*s", (int)(slash - c->resume),
                         c->resume);
            else
                snprintf(out_store, sizeof out_store, ".");
            if (!out_store[0])
                snprintf(out_store, sizeof out_store, "/");
        } else {
            snprintf(out_store, sizeof out_store, "runs/%s", net->name);
        }
        c->out = out_store;
    }
    if (t->mp.rank == 0 && prepare_out(c->out, &err))
        goto fail;
    rt_drv_set_threads(c->threads);
    if (rt_data_load_norm(&t->train, &t->test, c->data, c->limit, c->test_limit, net->in_c,
                          net->in_h, net->in_w, net->classes, c->seed, &t->norm, &err))
        goto fail;
    t->steps = t->train.n / c->batch;
    if (t->steps == 0) {
        snprintf(err.msg, sizeof err.msg,
                 "the training set has %d images, fewer than one batch of %d", t->train.n,
                 c->batch);
        goto fail;
    }
    if (c->batch < t->mp.size) {
        snprintf(err.msg, sizeof err.msg, "--batch %d is smaller than the %d ranks", c->batch,
                 t->mp.size);
        goto fail;
    }
    rt_mpi_slice(&t->mp, c->batch, &t->off, &t->nb);
    t->cap = rt_mpi_slice_max(&t->mp, c->batch);
    if (rt_model_init(&t->m, net, t->cap, c->threads, c->seed, &err))
        goto fail;
    if (t->mp.size > 1) {
        t->gx = malloc((size_t)c->batch * (size_t)net->in_c * (size_t)net->in_h *
                       (size_t)net->in_w * sizeof *t->gx);
        t->gy = malloc((size_t)c->batch);
        if (!t->gx || !t->gy) {
            snprintf(err.msg, sizeof err.msg, "out of memory");
            goto fail;
        }
    }
    t->mom = calloc(net->nparams + 1, sizeof *t->mom);
    t->probs = malloc((size_t)c->batch * (size_t)net->classes * sizeof *t->probs);
    t->labels = malloc((size_t)c->batch);
    t->order = malloc((size_t)t->train.n * sizeof *t->order);
    if (!t->mom || !t->probs || !t->labels || !t->order) {
        snprintf(err.msg, sizeof err.msg, "out of memory");
        goto fail;
    }
    rt_rng_seed(&t->aug, c->seed ^ AUGMENT_SALT);
    if (f) {
        if (rt_drv_load_weights(f, c->resume, net, t->m.params, t->m.buffers, t->mom, &err) ||
            resume_state(t, f, c->resume, &err))
            goto fail;
        snprintf(t->last_good, sizeof t->last_good, "%s", c->resume);
        rt_st_close(f);
        f = NULL;
    }
    if (rt_mpi_same(&t->mp, run_hash(t, argc, argv), &err))
        goto fail;
    if (t->mp.size > 1) {
        /* the BN kernels' per-channel sums, sized once for the widest BN:
         * no allocation per step */
        size_t wc = 0;
        for (int i = 0; i < net->ntensors; i++) {
            const RtTensor *ten = &net->tensors[i];
            int bn = ten->kind == RT_PK_BN_MEAN || ten->kind == RT_PK_BN_VAR ||
                     ten->kind == RT_PK_BN_GAMMA || ten->kind == RT_PK_BN_BETA;
            if (bn && ten->numel > wc)
                wc = ten->numel;
        }
        t->mp.sync.work_len = 2 * wc + 1;
        if (!(t->mp.sync.work = malloc(t->mp.sync.work_len * sizeof *t->mp.sync.work))) {
            snprintf(err.msg, sizeof err.msg, "out of memory");
            goto fail;
        }
        t->m.ctx.sync = &t->mp.sync;
    }
    t->gstep0 = t->gstep;
    t->t_start = rt_drv_now();
    if (t->mp.rank == 0 &&
        (!(t->csv = open_log(c->out, "log.csv",
                            "epoch,lr,train_loss,train_acc,test_loss,test_acc,images_per_s,seconds",
                            c->resume != NULL, &err)) ||
         !(t->jsonl = open_log(c->out, "log.jsonl", NULL, c->resume != NULL, &err))))
        goto fail;
    t->tty = isatty(STDOUT_FILENO);
    t->hook_interrupt = env_ll("OPTC_TEST_INTERRUPT_AT");
    t->hook_nan = env_ll("OPTC_TEST_NAN_AT");
    t->hook_nan_test = env_ll("OPTC_TEST_NAN_TEST_AT");
    if (getenv("OPTC_TEST_KILL_RANK") && t->mp.size > 1)
        t->hook_kill = env_ll("OPTC_TEST_KILL_RANK") + 1;
    {
        const char *s = getenv("OPTC_TEST_INTERRUPT_SIGNAL");
        t->hook_sig = s && strcmp(s, "TERM") == 0 ? SIGTERM : SIGINT;
    }
    if (!t->quiet)
        printf("train: net=%s params=%zu data=%s train=%d test=%d epochs=%d batch=%d lr=%g "
               "threads=%d seed=%" PRIu64 " out=%s%s%s\n",
               net->name, net->nparams, c->data, t->train.n, t->test.n, c->epochs, c->batch,
               c->lr, c->threads, c->seed, c->out, c->resume ? " resume=" : "",
               c->resume ? c->resume : "");
    if (!t->quiet && t->mp.size > 1)
        printf("mpi: %d ranks, %d to %d images each of every batch of %d\n", t->mp.size,
               c->batch / t->mp.size, t->cap, c->batch);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = train_on_signal;
    sigemptyset(&sa.sa_mask);
    train_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    installed = 1;
    rc = train_loop(t, c->out);
    goto done;
fail:
    fprintf(stderr, "error: %s\n", err.msg);
    rc = 1;
done:
    if (installed) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (f)
        rt_st_close(f);
    /* A log that fails to close is an error even after a good run. */
    if (t->csv && close_log(t->csv, c->out, "log.csv", &err) && rc == 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 1;
    }
    if (t->jsonl && close_log(t->jsonl, c->out, "log.jsonl", &err) && rc == 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 1;
    }
    free(t->mom);
    free(t->probs);
    free(t->labels);
    free(t->order);
    free(t->gx);
    free(t->gy);
    rt_data_free(&t->train);
    rt_data_free(&t->test);
    if (t->m.params)
        rt_model_free(&t->m);
    free(data_store);
    free(t->mp.sync.work);
    t->mp.sync.work = NULL;
    /* Ranks that all reached the same exit finish together; one leaving
     * alone (an error only it saw) ends the job. */
    rc = rt_mpi_finish(&t->mp, rc, rc == 0 || rc >= 128 || t->agreed);
    free(t);
    return rc;
}
