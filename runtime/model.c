/* model.c — allocation and initialisation of the buffers a generated
 * network runs on (RtModel, and its double twin RtModelD for gradcheck).
 *
 * Every buffer is one 64-byte aligned allocation, sized once for the batch
 * capacity and touched once here, so the training loop never allocates and
 * never page-faults on first use. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rt.h"

/* Salt separating the dropout stream from the parameter-initialisation
 * stream drawn from the same seed. */
#define MODEL_DROPOUT_SALT 0x6d6f64656c726e67ULL

/* Blocks of at least this size are aligned to it and asked to be backed by
 * transparent huge pages (where the kernel's setting is "madvise", as on
 * Debian): the activations of a batch are hundreds of MiB walked every
 * step, and with 4 KiB pages the memory-bound kernels (BN, sums) spent part
 * of their time in TLB misses, more or less from one process to the next. */
#define MODEL_HUGE ((size_t)2 << 20)

/* A zeroed, 64-byte aligned block of n bytes (at least one cache line, so
 * an empty block still has a unique non-NULL address). NULL on failure. */
static void *model_alloc(size_t n)
{
    void *p = NULL;
    size_t bytes = (n + 63) / 64 * 64;
    if (bytes == 0)
        bytes = 64;
    if (bytes >= MODEL_HUGE) {
        bytes = (bytes + MODEL_HUGE - 1) / MODEL_HUGE * MODEL_HUGE;
        if (posix_memalign(&p, MODEL_HUGE, bytes) != 0)
            return NULL;
#ifdef MADV_HUGEPAGE
        (void)madvise(p, bytes, MADV_HUGEPAGE);  /* advice only: 4 KiB pages otherwise */
#endif
    } else if (posix_memalign(&p, 64, bytes) != 0) {
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

/* Check that a size in elements times the element size does not overflow. */
static int model_bytes(size_t elems, size_t elem, size_t *out)
{
    if (elem != 0 && elems > SIZE_MAX / elem)
        return -1;
    *out = elems * elem;
    return 0;
}

/* Draw the initial values of one tensor into dst (numel elements). */
static void model_init_tensor(float *dst, const RtTensor *t, RtRng *rng)
{
    double fan = t->fan_in > 0 ? (double)t->fan_in : 1.0;
    switch (t->init) {
    case RT_INIT_KAIMING: {
        double std = sqrt(2.0 / fan);
        for (size_t i = 0; i < t->numel; i++)
            dst[i] = (float)(std * rt_rng_normal(rng));
        break;
    }
    case RT_INIT_UNIFORM: {
        double bound = 1.0 / sqrt(fan);
        for (size_t i = 0; i < t->numel; i++)
            dst[i] = (float)(bound * (2.0 * rt_rng_uniform(rng) - 1.0));
        break;
    }
    case RT_INIT_ONES:
        for (size_t i = 0; i < t->numel; i++)
            dst[i] = 1.0f;
        break;
    case RT_INIT_ZEROS:
        memset(dst, 0, t->numel * sizeof *dst);
        break;
    case RT_INIT_CONST:
        for (size_t i = 0; i < t->numel; i++)
            dst[i] = (float)t->init_value;
        break;
    }
}

/* Shared by both element types: sizes of every block for batch capacity B. */
typedef struct {
    size_t params, buffers, acts, input, logits, scratch;
} ModelSizes;

static int model_sizes(ModelSizes *s, const RtNet *net, int B, int threads, size_t elem,
                       RtErr *err)
{
    size_t in_elems = (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    if (B <= 0 || threads <= 0) {
        snprintf(err->msg, sizeof err->msg, "model: batch (%d) and threads (%d) must be positive",
                 B, threads);
        return -1;
    }
    if (model_bytes(net->nparams, elem, &s->params) ||
        model_bytes(net->nbuffers, elem, &s->buffers) ||
        model_bytes(net->act_elems(B), elem, &s->acts) ||
        in_elems > SIZE_MAX / (size_t)B || model_bytes(in_elems * (size_t)B, elem, &s->input) ||
        model_bytes((size_t)B * (size_t)net->classes, elem, &s->logits)) {
        snprintf(err->msg, sizeof err->msg, "model: buffer sizes overflow at batch %d", B);
        return -1;
    }
    s->scratch = net->scratch_bytes ? net->scratch_bytes(B, threads, elem) : 0;
    return 0;
}

/* Bytes of every block MODEL_ALLOC allocates (params and logits twice:
 * their gradients). */
static double model_total(const ModelSizes *s)
{
    return 2.0 * (double)s->params + (double)s->buffers + (double)s->acts +
           (double)s->input + 2.0 * (double)s->logits + (double)s->scratch;
}

/* Refuse a model larger than the machine's physical memory before touching
 * it: with overcommit the allocation would succeed and the first touch
 * would bring in the OOM killer instead of an error message. */
static int model_fits(const ModelSizes *s, int B, RtErr *err)
{
    double total = model_total(s);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double phys = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
    if (phys > 0 && total > phys) {
        snprintf(err->msg, sizeof err->msg,
                 "model: needs %.2f GiB at batch %d, more than this machine's %.2f GiB of memory",
                 total / 1073741824.0, B, phys / 1073741824.0);
        return -1;
    }
    return 0;
}

/* One thread pool only: the runtime's kernels split their work over the
 * batch with OpenMP (threads of them) and call OpenBLAS single-threaded from
 * inside. Two live pools on a small machine spin against each other (see the
 * conv2d comment in kernels.inc); measured on 2 cores for ResNet-20 at batch
 * 128, OpenBLAS at 2 threads cost 2.8x the CPU time of OpenBLAS at 1. */
static void model_threads(int threads)
{
    omp_set_num_threads(threads);
    openblas_set_num_threads(1);
}

/* The float and double models have the same fields (RT_MODEL_FIELDS), so
 * their blocks are allocated and freed by one macro each rather than two
 * copies of the list. MODEL_ALLOC evaluates to nonzero when every block was
 * allocated. */
#define MODEL_ALLOC(m, s)                                                              \
    ((m)->params = model_alloc((s).params), (m)->grads = model_alloc((s).params),      \
     (m)->buffers = model_alloc((s).buffers), (m)->acts = model_alloc((s).acts),        \
     (m)->input = model_alloc((s).input), (m)->logits = model_alloc((s).logits),        \
     (m)->dlogits = model_alloc((s).logits), (m)->ctx.scratch = model_alloc((s).scratch), \
     (m)->params && (m)->grads && (m)->buffers && (m)->acts && (m)->input &&             \
         (m)->logits && (m)->dlogits && (m)->ctx.scratch)
#define MODEL_FREE(m)                                                                  \
    do {                                                                               \
        free((m)->params);                                                             \
        free((m)->grads);                                                              \
        free((m)->buffers);                                                            \
        free((m)->acts);                                                               \
        free((m)->input);                                                              \
        free((m)->logits);                                                             \
        free((m)->dlogits);                                                            \
        free((m)->ctx.scratch);                                                        \
        memset((m), 0, sizeof *(m));                                                   \
    } while (0)

int rt_model_init(RtModel *m, const RtNet *net, int B, int threads, uint64_t seed, RtErr *err)
{
    ModelSizes s;
    memset(m, 0, sizeof *m);
    if (model_sizes(&s, net, B, threads, sizeof(float), err) || model_fits(&s, B, err))
        return -1;
    m->batch = B;
    m->ctx.threads = threads;
    m->ctx.scratch_bytes = s.scratch;
    if (!MODEL_ALLOC(m, s)) {
        rt_model_free(m);
        snprintf(err->msg, sizeof err->msg,
                 "model: out of memory allocating %.1f MiB for batch %d",
                 model_total(&s) / 1048576.0, B);
        return -1;
    }
    model_threads(threads);

    /* Tensors are initialised in table order from one stream, so a given
     * seed gives the same weights whatever the thread count. */
    RtRng rng;
    rt_rng_seed(&rng, seed);
    for (int i = 0; i < net->ntensors; i++) {
        const RtTensor *t = &net->tensors[i];
        model_init_tensor((t->buffer ? m->buffers : m->params) + t->offset, t, &rng);
    }
    rt_rng_seed(&m->rng, seed ^ MODEL_DROPOUT_SALT);
    return 0;
}

void rt_model_synth_batch(const RtNet *net, RtRng *rng, float *input, size_t nin,
                          uint8_t *labels, int B)
{
    for (size_t i = 0; i < nin; i++)
        input[i] = (float)rt_rng_normal(rng);
    for (int i = 0; i < B; i++)
        labels[i] = (uint8_t)rt_rng_below(rng, (uint32_t)net->classes);
}

void rt_model_free(RtModel *m)
{
    MODEL_FREE(m);
}

int rt_model_init_d(RtModelD *m, const RtNet *net, int B, int threads, RtErr *err)
{
    ModelSizes s;
    memset(m, 0, sizeof *m);
    if (model_sizes(&s, net, B, threads, sizeof(double), err) || model_fits(&s, B, err))
        return -1;
    m->batch = B;
    m->ctx.threads = threads;
    m->ctx.scratch_bytes = s.scratch;
    if (!MODEL_ALLOC(m, s)) {
        rt_model_free_d(m);
        snprintf(err->msg, sizeof err->msg, "model: out of memory (double model, batch %d)", B);
        return -1;
    }
    model_threads(threads);
    return 0;
}

void rt_model_free_d(RtModelD *m)
{
    MODEL_FREE(m);
}
