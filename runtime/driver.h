/* driver.h — internal to the driver (driver.c, train.c, gradcheck.c): the
 * flag parser and helpers the commands share. Not part of the runtime's
 * public contract (rt.h). */
#ifndef OPTC_DRIVER_H
#define OPTC_DRIVER_H

#include <stdio.h>

#include "rt.h"

typedef enum { OPT_INT, OPT_U64, OPT_DOUBLE, OPT_STR, OPT_FLAG, OPT_SCHED } RtDrvOptKind;

/* One flag: --name VALUE (or --name=VALUE); dst's type follows kind (int,
 * uint64_t, double, const char *, int for flags, RtSchedule). Numbers are
 * range-checked against [min, max]. seen is set when the flag was given. */
typedef struct {
    const char *name;
    RtDrvOptKind kind;
    void *dst;
    double min, max;
    const char *meta, *help;
    int seen;
} RtDrvOpt;

/* Parse argv (the command's flags only) into opts. 0: parsed; 1: --help was
 * printed (exit 0); 2: a usage error was printed naming the flag (exit 2). */
int  rt_drv_parse(const char *prog, const char *cmd, const char *synopsis, const char *about,
               RtDrvOpt *opts, int n, int argc, char **argv);
void rt_drv_usage(FILE *fp, const char *prog, const char *cmd, const char *synopsis,
               const char *about, const RtDrvOpt *opts, int n);

const char *rt_drv_sched_name(RtSchedule s);
int         rt_drv_sched_parse(const char *s, RtSchedule *out);

double rt_drv_now(void);                  /* monotonic seconds */
void   rt_drv_set_threads(int threads);   /* OpenMP threads, OpenBLAS at 1, process-wide */
int    rt_drv_default_threads(void);
int    rt_drv_argmax(const float *row, int k);

/* Loss and accuracy of the model on all of d in eval mode, in batches of at
 * most B (the last partial batch is kept); probs holds B x classes. */
void rt_drv_evaluate(RtModel *m, const RtNet *net, const RtData *d, float *probs, int B,
                  double *loss, double *acc);

/* Read every tensor of net from an open checkpoint (and momentum.<name> for
 * the parameters when momentum is non-NULL), checking the network name and
 * each shape; -1 with a message naming path and the tensor. */
int rt_drv_load_weights(RtStFile *f, const char *path, const RtNet *net, float *params,
                     float *buffers, float *momentum, RtErr *err);

/* One note on stderr when a checkpoint's input normalisation, computed on
 * its metadata data / data_limit, is used for `what` (training, evaluation)
 * on another data set or limit. */
void rt_drv_norm_note(const RtStFile *f, const char *path, const char *data, int limit,
                      const char *what);

int rt_drv_cmd_train(const RtNet *net, const char *prog, int argc, char **argv);
int rt_drv_cmd_gradcheck(const RtNet *net, const char *prog, int argc, char **argv);
int rt_drv_cmd_dump(const RtNet *net, const char *prog, int argc, char **argv);

#endif
