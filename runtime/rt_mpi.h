/* rt_mpi.h — internal to the driver (train.c): data-parallel training over
 * MPI. mpi.c is compiled twice: plainly into libort.a, where every rank
 * call is a one-process stub (no MPI symbol in the library), and with
 * -DRT_MPI into libort_mpi.a, which `optc build --mpi` links.
 *
 * The contract train.c follows under N > 1 ranks:
 * - the global batch B is cut into N slices in rank order, rank r taking
 *   B/N images plus one more when r < B % N (rt_mpi_slice); every rank
 *   draws the whole batch (shuffle and augmentation from the shared seed)
 *   and keeps its slice, so the images each rank sees do not depend on N;
 * - per step, rt_mpi_sum_d agrees on the loss, correct count and any stop
 *   signal; BN sums go through ctx->sync (rt.h); rt_mpi_sum_f sums the
 *   gradients with a ring in a fixed order, so every rank holds the same
 *   bits and applies the same update;
 * - collectives never fail silently: MPI's default error handler aborts
 *   the job, and mpirun ends every rank when one dies. */
#ifndef OPTC_RT_MPI_H
#define OPTC_RT_MPI_H

#include <stddef.h>
#include <stdint.h>

#include "rt.h"

typedef struct {
    int rank, size;         /* 0 and 1 without MPI */
    int started;            /* MPI_Init was called (MPI build only) */
    RtSync sync;            /* the BN hook; hand it to ctx->sync when size > 1 */
    void *tmp;              /* ring and gather buffers */
    size_t tmp_bytes;
    double reduce_seconds;  /* time inside rt_mpi_sum_f */
    long long reduce_bytes; /* gradient bytes summed */
    long long sync_bytes;   /* BN statistics bytes summed */
} RtMpi;

/* Whether this runtime was built with MPI (libort_mpi.a). */
int  rt_mpi_enabled(void);
/* Start MPI (MPI build) or check that no launcher started several copies
 * of a program built without it (plain build). -1 with a message. */
int  rt_mpi_start(RtMpi *mp, RtErr *err);
/* Finish: MPI_Finalize when every rank reached the same exit (agreed), or
 * MPI_Abort with rc when this rank leaves alone. Returns rc. */
int  rt_mpi_finish(RtMpi *mp, int rc, int agreed);

/* This rank's slice [*off, *off + *n) of a global batch of B images. */
void rt_mpi_slice(const RtMpi *mp, int B, int *off, int *n);
/* The largest slice of any rank (what the model's buffers must hold). */
int  rt_mpi_slice_max(const RtMpi *mp, int B);

/* Every rank passes its hash of the run (network, flags, initial state);
 * 0 when all agree, else -1 on every rank with the differing ranks named. */
int  rt_mpi_same(RtMpi *mp, uint64_t hash, RtErr *err);
/* Sum over ranks in place, in a fixed order; every rank gets the same
 * bits. _f: a ring (reduce-scatter then allgather, 2(N-1)/N of the buffer
 * sent per rank); _d: small buffers, gathered and added in rank order. */
void rt_mpi_sum_f(RtMpi *mp, float *buf, size_t n);
void rt_mpi_sum_d(RtMpi *mp, double *buf, size_t n);

/* FNV-1a, for rt_mpi_same. */
uint64_t rt_mpi_hash(uint64_t h, const void *p, size_t n);

/* dlogits = (probs - onehot(labels)) / Bglobal for this rank's n rows:
 * the loss is the mean over the global batch. */
void rt_mpi_xent_backward(float *dlogits, const float *probs, const uint8_t *labels, int n,
                          int K, int Bglobal);

#endif
