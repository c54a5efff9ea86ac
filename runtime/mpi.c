/* mpi.c — data-parallel training over MPI (see rt_mpi.h). Compiled without
 * RT_MPI into libort.a (one process, stubs, no MPI symbol) and with it into
 * libort_mpi.a. */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_mpi.h"

#ifdef RT_MPI
#include <mpi.h>
#endif

uint64_t rt_mpi_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void rt_mpi_slice(const RtMpi *mp, int B, int *off, int *n)
{
    int q = B / mp->size, r = B % mp->size, k = mp->rank;
    *off = k * q + (k < r ? k : r);
    *n = q + (k < r);
}

int rt_mpi_slice_max(const RtMpi *mp, int B)
{
    return B / mp->size + (B % mp->size != 0);
}

void rt_mpi_xent_backward(float *dlogits, const float *probs, const uint8_t *labels, int n,
                          int K, int Bglobal)
{
    /* The same arithmetic as rt_xent_backward over the global batch, so a
     * rank's rows are bit-identical to those rows of one process. */
    double inv = 1.0 / (double)Bglobal;
    for (int b = 0; b < n; b++)
        for (int k = 0; k < K; k++) {
            size_t i = (size_t)b * (size_t)K + (size_t)k;
            double v = (double)probs[i] - (k == labels[b] ? 1.0 : 0.0);
            dlogits[i] = (float)(v * inv);
        }
}

#ifdef RT_MPI

int rt_mpi_enabled(void)
{
    return 1;
}

static void *tmp_get(RtMpi *mp, size_t bytes)
{
    if (bytes > mp->tmp_bytes) {
        void *p = realloc(mp->tmp, bytes);
        if (!p) {
            fprintf(stderr, "error: rank %d: out of memory (%zu bytes for a reduction)\n",
                    mp->rank, bytes);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        mp->tmp = p;
        mp->tmp_bytes = bytes;
    }
    return mp->tmp;
}

static void sync_sum(RtSync *s, double *buf, size_t n)
{
    RtMpi *mp = (RtMpi *)(void *)((char *)s - offsetof(RtMpi, sync));
    mp->sync_bytes += (long long)(n * sizeof *buf);
    rt_mpi_sum_d(mp, buf, n);
}

int rt_mpi_start(RtMpi *mp, RtErr *err)
{
    memset(mp, 0, sizeof *mp);
    mp->size = 1;
    mp->sync.sum = sync_sum;
    int ok = MPI_Init(NULL, NULL) == MPI_SUCCESS;
    if (ok) {
        mp->started = 1;
        /* Explicit: an error in any collective (a peer that died) ends the
         * whole job with MPI's message instead of leaving ranks waiting. */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
        ok = MPI_Comm_rank(MPI_COMM_WORLD, &mp->rank) == MPI_SUCCESS &&
             MPI_Comm_size(MPI_COMM_WORLD, &mp->size) == MPI_SUCCESS;
    }
    if (!ok) {
        snprintf(err->msg, sizeof err->msg, "MPI_Init failed");
        return -1;
    }
    return 0;
}

int rt_mpi_finish(RtMpi *mp, int rc, int agreed)
{
    free(mp->tmp);
    mp->tmp = NULL;
    mp->tmp_bytes = 0;
    if (!mp->started)
        return rc;
    mp->started = 0;
    if (!agreed && mp->size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, rc ? rc : 1);
    }
    MPI_Finalize();
    return rc;
}

int rt_mpi_same(RtMpi *mp, uint64_t hash, RtErr *err)
{
    if (mp->size == 1)
        return 0;
    uint64_t *all = tmp_get(mp, (size_t)mp->size * sizeof *all);
    MPI_Allgather(&hash, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    char list[256] = "";
    size_t len = 0;
    int bad = 0;
    for (int r = 1; r < mp->size; r++)
        if (all[r] != all[0]) {
            if (len < sizeof list - 16)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", bad ? ", " : "",
                                        r);
            bad++;
        }
    if (!bad)
        return 0;
    snprintf(err->msg, sizeof err->msg,
             "ranks disagree on the network, its flags or its starting state: rank%s %s "
             "differ%s from rank 0 (every rank must run the same program with the same "
             "arguments and files)", bad > 1 ? "s" : "", list, bad > 1 ? "" : "s");
    return -1;
}

void rt_mpi_sum_d(RtMpi *mp, double *buf, size_t n)
{
    if (mp->size == 1 || n == 0)
        return;
    if (n > INT_MAX) {
        fprintf(stderr, "error: a reduction of %zu values is too large\n", n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    double *all = tmp_get(mp, (size_t)mp->size * n * sizeof *all);
    MPI_Allgather(buf, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, MPI_COMM_WORLD);
    for (size_t i = 0; i < n; i++) {
        double s = all[i];
        for (int r = 1; r < mp->size; r++)
            s += all[(size_t)r * n + i];
        buf[i] = s;
    }
}

/* Ring allreduce. Chunk k is [n k / N, n (k+1) / N). Reduce-scatter: in
 * step s rank r sends chunk (r - s) mod N to r + 1 and adds chunk
 * (r - s - 1) mod N from r - 1 into its own; after N - 1 steps it holds
 * the total of chunk (r + 1) mod N, accumulated in an order fixed by N.
 * Allgather: N - 1 more steps pass the totals around unchanged. */
void rt_mpi_sum_f(RtMpi *mp, float *buf, size_t n)
{
    int N = mp->size, r = mp->rank;
    if (N == 1 || n == 0)
        return;
    double t0 = MPI_Wtime();
    size_t most = n / (size_t)N + 1;
    if (most > INT_MAX) {
        fprintf(stderr, "error: a gradient chunk of %zu values is too large\n", most);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    float *in = tmp_get(mp, most * sizeof *in);
    int next = (r + 1) % N, prev = (r + N - 1) % N;
#define LO(k) (n * (size_t)(k) / (size_t)N)
    for (int s = 0; s < N - 1; s++) {
        int ks = ((r - s) % N + N) % N, kr = ((r - s - 1) % N + N) % N;
        size_t ls = LO(ks + 1) - LO(ks), lr = LO(kr + 1) - LO(kr);
        MPI_Sendrecv(buf + LO(ks), (int)ls, MPI_FLOAT, next, 1, in, (int)lr, MPI_FLOAT, prev, 1,
                     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        float *dst = buf + LO(kr);
        for (size_t i = 0; i < lr; i++)
            dst[i] += in[i];
    }
    for (int s = 0; s < N - 1; s++) {
        int ks = ((r + 1 - s) % N + N) % N, kr = ((r - s) % N + N) % N;
        size_t ls = LO(ks + 1) - LO(ks), lr = LO(kr + 1) - LO(kr);
        MPI_Sendrecv(buf + LO(ks), (int)ls, MPI_FLOAT, next, 2, buf + LO(kr), (int)lr,
                     MPI_FLOAT, prev, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
#undef LO
    mp->reduce_seconds += MPI_Wtime() - t0;
    mp->reduce_bytes += (long long)(n * sizeof *buf);
}

#else /* one process: stubs */

int rt_mpi_enabled(void)
{
    return 0;
}

int rt_mpi_start(RtMpi *mp, RtErr *err)
{
    memset(mp, 0, sizeof *mp);
    mp->size = 1;
    /* Launchers export the job size: a program built without --mpi that
     * mpirun started N times would train N times into one directory. */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1) {
            snprintf(err->msg, sizeof err->msg,
                     "started as one of %s processes (%s), but this program was built "
                     "without MPI: rebuild it with optc build --mpi", v, vars[i]);
            return -1;
        }
    }
    return 0;
}

int rt_mpi_finish(RtMpi *mp, int rc, int agreed)
{
    (void)mp;
    (void)agreed;
    return rc;
}

int rt_mpi_same(RtMpi *mp, uint64_t hash, RtErr *err)
{
    (void)mp;
    (void)hash;
    (void)err;
    return 0;
}

void rt_mpi_sum_d(RtMpi *mp, double *buf, size_t n)
{
    (void)mp;
    (void)buf;
    (void)n;
}

void rt_mpi_sum_f(RtMpi *mp, float *buf, size_t n)
{
    (void)mp;
    (void)buf;
    (void)n;
}

#endif
