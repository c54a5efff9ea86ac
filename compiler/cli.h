/* cli.h — optc's subcommands. main.c dispatches argv[1] to one of these;
 * each parses its own flags, prints --help, and returns the exit status
 * (0 ok, 1 user error, 2 usage error). */
#ifndef OPTC_CLI_H
#define OPTC_CLI_H

#include "frontend.h"

int cmd_check(int argc, char **argv);     /* cli.c */
int cmd_ir(int argc, char **argv);        /* cli.c */
int cmd_dot(int argc, char **argv);       /* cli.c */
int cmd_list(int argc, char **argv);      /* cli.c: network names, one per line */
int cmd_emit(int argc, char **argv);      /* build.c */
/* optc emit --inference: argv as cmd_emit's, command the line for the
 * files' provenance. */
int cmd_emit_inference(int argc, char **argv, const char *command);  /* cli.c */
int cmd_build(int argc, char **argv);     /* build.c */
int cmd_analyze(int argc, char **argv);   /* analyze.c */
int cmd_compare(int argc, char **argv);   /* orchestrate/compare.c */

/* Common flags of the commands that take one spec: SPEC [-n NET]
 * [-D name=value]... [-o OUT]. Unknown flags are left for the caller in
 * rest (argv-style, nrest entries). Returns 0, or 2 with a message. */
typedef struct {
    const char *spec;
    const char *net;
    const char *out;
    Define defs[64];
    int ndefs;
    char *rest[64];
    int nrest;
} CliArgs;
int cli_parse(CliArgs *ca, int argc, char **argv, const char *usage);
/* Whether argv[1..] holds --help or -h; prints usage to stdout when so
 * (the command then returns 0). */
bool cli_help(int argc, char **argv, const char *usage);

/* Load ca->spec with its -D's and unroll ca->net; diagnostics to stderr.
 * NULL on error (already reported). */
IrGraph *cli_load_graph(Arena *a, const CliArgs *ca);

/* One program to build: optc build as a call (optc compare builds its
 * variants through it). */
typedef struct {
    const char *spec;       /* spec file path, read once */
    const char *net;        /* the network; NULL: the first in the spec */
    const Define *defs;     /* -D overrides, ndefs of them */
    int ndefs;
    const char *out;        /* the program to write; NULL: ./NET */
    bool keep_c;            /* keep the emitted C as OUT.c */
    bool mpi;               /* link the MPI runtime (libort_mpi.a, docs/mpi.md) */
    bool memory_free;       /* rebuild invertible stages' states in backward (docs/memory-free.md) */
    bool mf_drift;          /* memory_free without exact reconstruction (--memory-free=drift) */
    int checkpoint_every;   /* mf_drift: keep the states every N steps (0: the default) */
    const char *command;    /* recorded in the emitted C; NULL: the optc build
                             * command line that rebuilds this request */
} BuildRequest;

/* Emit, compile and link req's network against the runtime (compiler,
 * flags and library from optc.flags beside the optc executable, or the
 * file $OPTC_FLAGS). Returns 0, or 1 with diagnostics on diag; the C
 * compiler's own messages go to standard error. */
int build_program(const BuildRequest *req, FILE *diag);

/* Standalone inference code of one trained network (emit_infer.c). */
typedef struct {
    const IrGraph *g;
    const char *weights;    /* the checkpoint (safetensors) */
    const char *norm;       /* "MEAN,...:STD,..." or NULL: the checkpoint's input_mean/std */
    const char *dir;        /* the output directory, created when missing */
    const char *command;    /* provenance, may be NULL */
    const char *spec_path;
} EmitInferRequest;

/* Write DIR/NET.h, DIR/NET.c and DIR/NET_weights.c (all or none). Returns 0,
 * or -1 with a message naming the file on diag. */
int emit_infer(const EmitInferRequest *rq, FILE *diag);

#endif
