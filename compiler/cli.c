/* cli.c — the front end's subcommands (check, ir, dot, list) and the flag
 * parsing shared by every command that takes one spec. */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "invert.h"
#include "plan.h"

#define DEFINE_HELP                                                                 \
    "  -D NAME=VALUE  override a parameter or stage setting (repeatable):\n"        \
    "                   OPT.PARAM=v         parameter PARAM of optimizer OPT\n"      \
    "                   PARAM=v             PARAM of every optimizer that has it\n"  \
    "                   NET.stageN.steps=n  steps (or .width) of stage N of NET\n"   \
    "                   stageN.steps=n      the same in every network\n"             \
    "                 v is a number or learned(init); stages count from 1\n"

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

bool cli_help(int argc, char **argv, const char *usage)
{
    for (int i = 1; i < argc; i++)
        if (is_help(argv[i])) {
            fputs(usage, stdout);
            return true;
        }
    return false;
}

/* Splits NAME=VALUE in place into d; false when there is no '='. */
static bool split_define(char *s, Define *d)
{
    char *eq = strchr(s, '=');
    if (!eq || eq == s)
        return false;
    *eq = 0;
    d->name = s;
    d->value = eq + 1;
    return true;
}

#define MAX_DEFINES 64    /* CliArgs.defs */

/* Appends one -D value to defs[*ndefs]; false, with a message, when it is
 * malformed or there are too many. */
static bool add_define(char *v, Define *defs, int *ndefs)
{
    if (*ndefs == MAX_DEFINES || !split_define(v, &defs[*ndefs])) {
        fprintf(stderr, "optc: bad -D '%s' (expected NAME=VALUE)\n", v);
        return false;
    }
    (*ndefs)++;
    return true;
}

int cli_parse(CliArgs *ca, int argc, char **argv, const char *usage)
{
    memset(ca, 0, sizeof *ca);
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "-n") == 0 || strcmp(a, "-o") == 0 || strcmp(a, "-D") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "optc: %s needs a value\n%s", a, usage);
                return 2;
            }
            char *v = argv[++i];
            if (a[1] == 'n')
                ca->net = v;
            else if (a[1] == 'o')
                ca->out = v;
            else if (!add_define(v, ca->defs, &ca->ndefs))
                return 2;
        } else if (strncmp(a, "-D", 2) == 0 && a[2]) {
            if (!add_define(a + 2, ca->defs, &ca->ndefs))
                return 2;
        } else if (a[0] != '-' && !ca->spec) {
            ca->spec = a;
        } else {
            if (ca->nrest == 64) {
                fprintf(stderr, "optc: too many arguments\n");
                return 2;
            }
            ca->rest[ca->nrest++] = a;
        }
    }
    if (!ca->spec) {
        fprintf(stderr, "optc: no spec file given\n%s", usage);
        return 2;
    }
    return 0;
}

IrGraph *cli_load_graph(Arena *a, const CliArgs *ca)
{
    int nerr = 0;
    Spec *s = fe_load(a, ca->spec, ca->defs, ca->ndefs, stderr, &nerr);
    if (!s)
        return NULL;
    return fe_unroll(a, s, ca->net, stderr, &nerr);
}

static const char check_usage[] =
    "usage: optc check SPEC... [-D NAME=VALUE]... [--explain [-n NET]]\n"
    "Parse and check each spec (and unroll each network); print diagnostics.\n"
    "Exit status 0 when all are clean, 1 otherwise.\n"
    "  --explain      also print, per network (only NET with -n) and stage, whether a\n"
    "                 memory-free backward pass could rebuild its states: the inverse\n"
    "                 in the spec's terms, or why not, per step where it differs; what\n"
    "                 must stay stored; activations per image, stored vs memory-free\n"
    "                 (docs/memory-free.md)\n" DEFINE_HELP;

int cmd_check(int argc, char **argv)
{
    Define defs[MAX_DEFINES];
    int ndefs = 0, nfiles = 0, bad = 0;
    bool explain = false;
    const char *net = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(check_usage, stdout);
            return 0;
        }
        char *d = NULL;
        if (strcmp(argv[i], "--explain") == 0)
            explain = true;
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            net = argv[++i];
        else if (strcmp(argv[i], "-D") == 0 && i + 1 < argc)
            d = argv[++i];
        else if (strncmp(argv[i], "-D", 2) == 0 && argv[i][2])
            d = argv[i] + 2;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "optc check: unknown option '%s'\n%s", argv[i], check_usage);
            return 2;
        }
        if (d && !add_define(d, defs, &ndefs))
            return 2;
    }
    if (net && !explain) {
        fprintf(stderr, "optc check: -n goes with --explain\n%s", check_usage);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-D") == 0 || strcmp(argv[i], "-n") == 0) {
            i++;
            continue;
        }
        if (argv[i][0] == '-')
            continue;
        nfiles++;
        Arena *a = arena_new();
        int nerr = 0;
        /* Every -D applies to (and must be used by) every file. */
        Spec *s = fe_load(a, argv[i], defs, ndefs, stderr, &nerr);
        bad += s == NULL;
        /* A network the machine cannot train is an error here too (plan.h);
         * graphs the back end cannot plan are emit's business, so quietly. */
        bool found = false;
        for (int k = 0; s && k < fe_network_count(s); k++) {
            IrGraph *g = fe_unroll(a, s, fe_network_name(s, k), stderr, &nerr);
            Plan *p = g ? plan_build(g, NULL) : NULL;
            if (p && plan_check_memory(p, g, argv[i], plan_phys_bytes(), stderr) != 0)
                bad++;
            plan_free(p);
            if (g && explain && (!net || strcmp(net, g->name) == 0)) {
                found = true;
                inv_print(stdout, inv_analyze(a, s, g));
            }
        }
        if (s && net && !found) {
            fprintf(stderr, "%s: error: no network named '%s'\n", argv[i], net);
            bad++;
        }
        arena_free(a);
    }
    if (nfiles == 0) {
        fprintf(stderr, "optc check: no spec file given\n%s", check_usage);
        return 2;
    }
    return bad ? 1 : 0;
}

static int graph_cmd(int argc, char **argv, const char *usage, void (*print)(FILE *, const IrGraph *))
{
    if (cli_help(argc, argv, usage))
        return 0;
    CliArgs ca;
    int rc = cli_parse(&ca, argc, argv, usage);
    if (rc)
        return rc;
    if (ca.nrest) {
        fprintf(stderr, "optc: unknown argument '%s'\n%s", ca.rest[0], usage);
        return 2;
    }
    Arena *a = arena_new();
    IrGraph *g = cli_load_graph(a, &ca);
    if (!g) {
        arena_free(a);
        return 1;
    }
    FILE *out = stdout;
    if (ca.out && !(out = fopen(ca.out, "w"))) {
        perror(ca.out);
        arena_free(a);
        return 1;
    }
    print(out, g);
    rc = ferror(out) ? 1 : 0;
    if (out != stdout)
        rc |= fclose(out) != 0;
    arena_free(a);
    return rc;
}

static const char ir_usage[] =
    "usage: optc ir SPEC [-n NET] [-D NAME=VALUE]... [-o OUT]\n"
    "Print the unrolled graph of network NET (default: the first), one op per line:\n"
    "id, op, name, (inputs) -> output shape CxHxW, then op details and parameters.\n" DEFINE_HELP;

int cmd_ir(int argc, char **argv)
{
    return graph_cmd(argc, argv, ir_usage, ir_print);
}

static const char dot_usage[] =
    "usage: optc dot SPEC [-n NET] [-D NAME=VALUE]... [-o OUT] [--layers]\n"
    "Print the network as Graphviz: optc dot x.opt | dot -Tsvg. By default the optimizer:\n"
    "each grad block one node, each sum a node whose incoming edges carry their\n"
    "coefficients. --layers: every op, one cluster per stage.\n"
    DEFINE_HELP;

int cmd_dot(int argc, char **argv)
{
    bool layers = false;
    int n = 0;
    for (int i = 0; i < argc; i++) {    /* --layers is dot's own: drop it */
        if (i > 0 && strcmp(argv[i], "--layers") == 0)
            layers = true;
        else
            argv[n++] = argv[i];
    }
    return graph_cmd(n, argv, dot_usage, layers ? ir_dot_layers : ir_dot);
}

static const char list_usage[] =
    "usage: optc list SPEC [-D NAME=VALUE]...\n"
    "Print the spec's network names, one per line.\n";

int cmd_list(int argc, char **argv)
{
    if (cli_help(argc, argv, list_usage))
        return 0;
    CliArgs ca;
    int rc = cli_parse(&ca, argc, argv, list_usage);
    if (rc)
        return rc;
    if (ca.nrest) {
        fprintf(stderr, "optc list: unknown argument '%s'\n%s", ca.rest[0], list_usage);
        return 2;
    }
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load(a, ca.spec, ca.defs, ca.ndefs, stderr, &nerr);
    if (s)
        for (int i = 0; i < fe_network_count(s); i++)
            printf("%s\n", fe_network_name(s, i));
    arena_free(a);
    return s ? 0 : 1;
}

static const char infer_usage[] =
    "usage: optc emit SPEC [-n NET] [-D NAME=VALUE]... --inference --weights CKPT -o DIR\n"
    "                 [--norm MEAN,...:STD,...]\n"
    "Write standalone C99 inference code of network NET (default: the first) trained\n"
    "into checkpoint CKPT: DIR/NET.h (NET_INPUT_C/H/W, NET_CLASSES, net_predict),\n"
    "DIR/NET.c (no allocation, one static buffer, libm at most) and DIR/NET_weights.c.\n"
    "  --weights CKPT  the trained checkpoint (safetensors)\n"
    "  --norm M:S      the input normalisation, one mean and std per channel (default:\n"
    "                  the checkpoint's input_mean and input_std)\n"
    "  -o DIR          the output directory (created when missing)\n" DEFINE_HELP;

int cmd_emit_inference(int argc, char **argv, const char *command)
{
    for (int i = 1; i < argc; i++)
        if (is_help(argv[i])) {
            fputs(infer_usage, stdout);
            return 0;
        }
    const char *weights = NULL, *norm = NULL;
    char **rest = malloc(((size_t)argc + 1) * sizeof *rest);
    if (!rest)
        abort();
    int n = 0, rc = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = strcmp(a, "--weights") == 0 ? &weights
                         : strcmp(a, "--norm") == 0 ? &norm : NULL;
        if (i > 0 && strcmp(a, "--inference") == 0)
            continue;
        if (i > 0 && dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "optc emit: %s needs a value\n%s", a, infer_usage);
                free(rest);
                return 2;
            }
            *dst = argv[++i];
            continue;
        }
        rest[n++] = argv[i];
    }
    rest[n] = NULL;
    CliArgs ca;
    rc = cli_parse(&ca, n, rest, infer_usage);
    if (rc == 0 && ca.nrest) {
        fprintf(stderr, "optc emit: unknown argument '%s'\n%s", ca.rest[0], infer_usage);
        rc = 2;
    }
    if (rc == 0 && (!weights || !ca.out || strcmp(ca.out, "-") == 0)) {
        fprintf(stderr, "optc emit: --inference needs --weights CKPT and -o DIR\n%s",
                infer_usage);
        rc = 2;
    }
    if (rc == 0) {
        Arena *a = arena_new();
        IrGraph *g = cli_load_graph(a, &ca);
        EmitInferRequest rq = { .g = g, .weights = weights, .norm = norm, .dir = ca.out,
                                .command = command, .spec_path = ca.spec };
        rc = g && emit_infer(&rq, stderr) == 0 ? 0 : 1;
        arena_free(a);
    }
    free(rest);
    return rc;
}
