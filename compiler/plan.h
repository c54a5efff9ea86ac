/* plan.h — memory planning for one unrolled graph: the parameter block and
 * its gradient twin, the buffer block (BN running statistics), and the
 * activation arena shared by forward and backward.
 *
 * Every arena buffer has a size of (a*B + b) elements for batch B, with a
 * and b compile-time constants, and an offset of the same form. Buffers
 * that scale with the batch (b == 0) are packed in the first a_total*B
 * elements, batch-independent ones (a == 0, e.g. BN's saved mean/rstd)
 * after them; both regions are packed by liveness over one training step
 * (forward then backward), so a forward activation lives until the last
 * backward that reads it and an activation gradient from its first write
 * in backward to its last read. */
#ifndef OPTC_PLAN_H
#define OPTC_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "ir.h"

typedef enum {
    PB_OUT,     /* a node's forward output */
    PB_GRAD,    /* the gradient of a node's output */
    PB_SAVE0,   /* saved state: BN mean, exact's pre-activation a, dropout mask */
    PB_SAVE1,   /* saved state: BN rstd */
    PB_RECOMP,  /* a fused relu's output, recomputed in backward (PlanNode.recomp) */
    PB_CORR     /* exact memory-free builds: a rebuilt state's correction (PlanNode.corr) */
} PlanBufKind;

typedef struct {
    PlanBufKind kind;
    int node;
    size_t size_a, size_b;  /* elements: size_a * B + size_b */
    size_t off_a, off_b;    /* offset in the arena: off_a * B + off_b */
    int birth, death;       /* inclusive step range; see plan_time_* */
} PlanBuf;

/* Where a node's tensors live. -1: not in the arena (node 0's output is
 * m->input, the graph output's is m->logits / m->dlogits) or not needed. */
/* The most sum terms a BN + relu backward takes on (PlanNode.npend). */
#define PLAN_PEND_MAX 3

typedef struct {
    int out, grad, save0, save1;    /* indices into Plan.bufs */
    bool needs_grad;                /* some parameter lies at or before it */
    bool live;                      /* its output reaches the graph output */
    int fuse;       /* 0, or the partner of a fused pair: on a BN whose output feeds only
                     * a relu, that relu; on the relu, the BN. The pair runs as one
                     * kernel at the BN's steps (rt_bn_relu_*): the BN has no output or
                     * gradient buffer, the relu's output is born at the BN's forward
                     * and both the relu's buffers live until the BN's backward. */
    int recomp;     /* -1, or on a fused relu whose BN reads a shared dense-stage state
                     * (see plan_image_stride) and whose one reader is a conv: the
                     * buffer its output is recomputed into (rt_bn_relu_recompute) just
                     * before that conv's backward, from the BN's saved statistics.
                     * Its forward output then dies at the conv's forward (Pleiss et
                     * al. 2017, memory-efficient DenseNet). */
    int rec;        /* memory-free builds (PlanSched): the buffer the backward phase reads
                     * and writes for this node's output (its recomputed or rebuilt value);
                     * -1: the backward reads the forward's buffer, out */
    int corr, corr_hdr; /* exact memory-free builds (PlanSched.exact), on a rebuilt
                     * state: its correction record (runtime/mfcorr.c), written right
                     * after the forward of the sum it is rebuilt from and read where
                     * it is rebuilt: escape values and codes (per image), and its
                     * header (fixed); -1 otherwise */
    size_t corr_esc;    /* ...its escape list's capacity per image (plan_mf_escapes) */
    bool gneg;      /* a conv whose gradient buffer is its one reader's, a sum's, where
                     * the conv stands with coefficient -1: its backward reads the
                     * sum's gradient negated (rt_conv2d_backward_neg); see
                     * plan_fold_sums */
    int npend;      /* > 0 on a node x whose gradient the backwards of npend sums (fixed
                     * coefficients) write before its fused BN + relu's, the last: those
                     * sums skip x's term and the BN's backward writes the gradient in
                     * its one pass, from the sums' gradients (pend_sum[i], in backward
                     * order) times x's coefficients in them (term pend_k[i]), rounded as
                     * the sums would have (rt_bn_relu_backward_pend); or on a pad
                     * read by such sums alone, whose backward reads them in place
                     * of its gradient (rt_pad_backward_pend); see plan_defer_sums */
    int pend_sum[PLAN_PEND_MAX], pend_k[PLAN_PEND_MAX];
} PlanNode;

/* --- memory-free schedules (emit_mfree.c) ---------------------------------
 * A memory-free build runs the forward as usual, then a backward in which
 * some steps are preceded by recomputing their grad block (REC: the node's
 * forward, BN with the forward's saved statistics) and rebuilding older
 * states from newer ones (REB: node = (via - the other terms of via) /
 * via's coefficient at input at). Nodes with rec set get a second buffer
 * (PlanNode.rec) for the backward phase, so their forward buffer dies with
 * the forward. */
typedef enum { PLAN_EV_FWD, PLAN_EV_REC, PLAN_EV_REB, PLAN_EV_BWD } PlanEvKind;
typedef struct {
    PlanEvKind kind;
    int node;
    int via, at;            /* REB */
} PlanEv;
typedef struct {
    PlanEv *ev;             /* every live node's FWD in node order, then the backward */
    int nev;
    bool *rec;              /* per node: recomputed or rebuilt in the backward */
    int nrebuilt;           /* REB events */
    bool exact;             /* exact reconstruction: every rebuilt state has a correction
                             * record (PlanNode.corr), so it is rebuilt bit for bit */
} PlanSched;

/* The correction record of a rebuilt state of n elements per image, in
 * arena elements (runtime/mfcorr.c; sized for float and double): per image
 * its escape list of plan_mf_escapes(n, c) values and its int8 codes
 * (plan_mf_corr_elems); fixed, the header (RT_MF_HDR_BYTES in
 * runtime/rt.h). c is the coefficient the rebuild divides by. */
#define PLAN_MF_HDR_ELEMS 128
size_t plan_mf_escapes(size_t n, double c);
size_t plan_mf_corr_elems(size_t n, double c);
/* The value of coefficient c at initialisation (a learned one's initial
 * value): the divisor the escape lists are sized for. */
double plan_coef_init(const IrGraph *g, const IrCoef *c);

typedef struct {
    size_t *param_off;      /* per IrParam: offset in the params or buffers block */
    size_t nparams;         /* trainable elements (the published count) */
    size_t nbuffers;        /* BN running statistics elements */
    PlanNode *nodes;        /* per IR node */
    PlanBuf *bufs;
    int nbufs;
    size_t arena_a, arena_b;    /* arena elements: arena_a * B + arena_b */
    size_t naive_a, naive_b;    /* the same without reuse, for the report */
    const PlanSched *sched; /* NULL: the stored build */
    size_t stored_a, stored_b;  /* memory-free plans: the stored build's arena */
    size_t work;            /* loop steps plan_build took (reader edges scanned, free-list
                             * tree nodes visited): tests bound it by O(n log n) */
} Plan;

/* Plan a graph. Returns NULL with a message on diag (none when diag is
 * NULL) when the graph cannot be planned (an op the back end does not
 * support, e.g. OP_GRAD). O(n log n) in the graph's size. The result is
 * malloc'd; free it with plan_free. */
Plan *plan_build(const IrGraph *g, FILE *diag);
/* The same for a memory-free schedule: every buffer's lifetime over the
 * schedule's events. p->sched points at s (the caller keeps it alive);
 * stored_a/stored_b hold plan_build's arena for the report. */
Plan *plan_build_sched(const IrGraph *g, const PlanSched *s, FILE *diag);
void  plan_free(Plan *p);

/* Elements from one image to the next in node's output buffer: ir_numel of
 * its shape, except for the states of a dense stage. A chain of concats
 * x[k+1] = concat(x[k], g[k]) whose states are read only by the next concat
 * and by fused BN + relu pairs shares one buffer X[B][C_last][HW]: every
 * state is a channel prefix of it (stride C_last*HW), each concat writes
 * only its new channels, and the gradients share one buffer the same way
 * (a concat's backward leaves its prefix input's gradient in place). */
size_t plan_image_stride(const Plan *p, const IrGraph *g, int node);

/* Step numbers: forward of node i runs at step i, its backward at
 * 2*nnodes - 1 - i. */
int plan_time_fwd(const IrGraph *g, int node);
int plan_time_bwd(const IrGraph *g, int node);

/* Elements of the arena at batch B; total bytes of one float model
 * (params, grads, buffers, arena, input, logits, dlogits) at batch B. */
size_t plan_arena_elems(const Plan *p, int B);
size_t plan_total_bytes(const Plan *p, const IrGraph *g, int B, size_t elem_size);

/* Training memory of a float model at batch B, in bytes (doubles, so no
 * network can overflow them): the parameters, the buffers (BN running
 * statistics) and the activations (arena, input, logits and their
 * gradient); total adds the gradients and the momentum, one more copy of
 * the parameters each. The runtime's convolution scratch is not counted. */
typedef struct {
    double total, params, buffers, acts;
    int batch;
} PlanMemory;
PlanMemory plan_memory(const Plan *p, const IrGraph *g, int B);

/* The batch a generated program trains with unless told otherwise. */
int plan_default_batch(const IrGraph *g);

/* This machine's physical memory in bytes; 0 when unknown. */
double plan_phys_bytes(void);

/* Refuse a network whose training memory at its default batch exceeds phys
 * bytes (0: unknown, anything goes): returns -1 after "SPEC: error: network
 * NET needs N MiB at batch B (parameters P MiB, activations A MiB), more
 * than this machine's M MiB" on diag, else 0. */
int plan_check_memory(const Plan *p, const IrGraph *g, const char *spec, double phys,
                      FILE *diag);

/* Self-check: no two buffers whose lifetimes overlap share memory, and all
 * lie inside the arena. Returns 0, or -1 with a message on diag. */
int plan_verify(const Plan *p, FILE *diag);

/* Pack buffers of known lifetimes (size_a elements each, > 0; birth and
 * death inclusive, in any time unit) into one region as plan_build packs
 * the arena: writes each off_a, returns the region's extent. For plans of
 * their own, e.g. the forward-only one of emit_infer.c. */
size_t plan_pack_lifetimes(PlanBuf *bufs, int n);
/* plan_verify for such buffers in a region of extent elements. */
int plan_verify_lifetimes(PlanBuf *bufs, int n, size_t extent, FILE *diag);

/* --- the C emitter (emit_c.c) ------------------------------------------- */

/* Provenance recorded in the generated file. */
typedef struct {
    const char *command;    /* the command line, as the user should read it */
    const char *spec_path;  /* as given, relative to the project */
    const char *spec_text;  /* the whole spec source, or NULL */
    size_t spec_len;
} EmitInfo;

/* Write the C program of graph g, planned by p, to out: the tensor table,
 * forward/backward for float and double, the RtNet and main(). Returns 0,
 * or -1 with a message on diag (a number the C source cannot hold, or a
 * write error). */
int emit_c(FILE *out, const IrGraph *g, const Plan *p, const EmitInfo *info, FILE *diag);

/* A character every emitter may copy into a string literal or a name as it
 * is (letters, digits, '_', '.'); the others are escaped or replaced. */
bool emit_plain(unsigned char c);

/* Forward multiply-adds per image (conv, linear, exact). */
long long emit_madds(const IrGraph *g);

#endif
