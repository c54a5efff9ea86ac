/* fuzz_frontend.c — libFuzzer harness for optc's front end.
 *
 * Every input is a spec; leading comment lines "#D name=value" are also
 * passed as -D overrides (the spec still sees them as comments). It is loaded (lex, parse, sema), every network is
 * unrolled, printed as IR and as Graphviz, planned, and emitted as C into a
 * memory stream (graphs up to FUZZ_MAX_PLAN ops); every optimizer is unrolled alone as `optc analyze` does.
 * Diagnostics go to /dev/null. Any crash, sanitizer report, leak or hang
 * is a bug in optc; the harness itself asserts only the front end's own
 * contracts (NULL exactly when errors were reported, a planned graph
 * passes plan_verify). Built and run by scripts/fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "frontend.h"
#include "plan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Opened once: the harness runs millions of inputs. */
static FILE *fuzz_null;

/* Graphs bigger than FUZZ_MAX_NODES are only unrolled, and graphs bigger
 * than FUZZ_MAX_PLAN ops are not planned and emitted: the later passes are
 * covered by small inputs, while a big graph (up to 10^4 steps per stage;
 * the planner is quadratic in its buffers) takes seconds under ASan, and
 * libFuzzer's hang limit is wall-clock time, which a loaded machine
 * stretches. */
#define FUZZ_MAX_NODES 2000
#define FUZZ_MAX_PLAN 500

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_null = fopen("/dev/null", "w");
    if (!fuzz_null)
        abort();
    return 0;
}

/* A contract violation: abort so libFuzzer records the input. */
static void fuzz_require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_frontend: contract violated: %s\n", what);
        abort();
    }
}

static void fuzz_backend(const IrGraph *g, const char *src, size_t len)
{
    if (g->nnodes > FUZZ_MAX_PLAN)
        return;
    Plan *p = plan_build(g, fuzz_null);
    if (!p)
        return;
    fuzz_require(plan_verify(p, fuzz_null) == 0, "plan_verify failed on a planned graph");
    char *buf = NULL;
    size_t blen = 0;
    FILE *ms = open_memstream(&buf, &blen);
    if (ms) {
        EmitInfo info = {"optc emit fuzz.opt", "fuzz.opt", src, len};
        int rc = emit_c(ms, g, p, &info, fuzz_null);
        fclose(ms);
        /* Whatever the spec holds, the C is printable ASCII, newlines and
         * tabs: user bytes arrive escaped. */
        for (size_t i = 0; rc == 0 && i < blen; i++) {
            unsigned char c = (unsigned char)buf[i];
            fuzz_require((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t',
                         "emit_c wrote a control or non-ASCII byte");
        }
        free(buf);
    }
    plan_free(p);
}

#define FUZZ_MAX_DEFS 8

/* Split the leading "#D name=value" lines of src into defs, with the
 * strings copied into a (the input is not NUL-terminated). */
static int fuzz_defines(Arena *a, const char *src, size_t size, Define *defs)
{
    int n = 0;
    size_t i = 0;
    while (n < FUZZ_MAX_DEFS && i + 3 <= size && src[i] == '#' && src[i + 1] == 'D' &&
           src[i + 2] == ' ') {
        size_t b = i + 3, e = b;
        while (e < size && src[e] != '\n')
            e++;
        size_t eq = b;
        while (eq < e && src[eq] != '=')
            eq++;
        char *name = arena_alloc(a, eq - b + 1);
        memcpy(name, src + b, eq - b);
        size_t vb = eq < e ? eq + 1 : e;
        char *value = arena_alloc(a, e - vb + 1);
        memcpy(value, src + vb, e - vb);
        defs[n].name = name;
        defs[n].value = value;
        n++;
        i = e + 1;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    Arena *a = arena_new();
    int nerr = 0;
    Define defs[FUZZ_MAX_DEFS];
    int ndefs = fuzz_defines(a, src, size, defs);
    Spec *s = fe_load_string(a, "fuzz.opt", src, size, defs, ndefs, fuzz_null, &nerr);
    fuzz_require((s == NULL) == (nerr > 0), "fe_load_string: NULL iff errors");
    if (s) {
        int nn = fe_network_count(s);
        for (int i = 0; i < nn; i++) {
            const char *name = fe_network_name(s, i);
            fuzz_require(name != NULL, "network without a name");
            int ne = 0;
            IrGraph *g = fe_unroll(a, s, name, fuzz_null, &ne);
            fuzz_require((g == NULL) == (ne > 0), "fe_unroll: NULL iff errors");
            if (!g || g->nnodes > FUZZ_MAX_NODES)
                continue;
            ir_print(fuzz_null, g);
            ir_dot(fuzz_null, g);
            fuzz_backend(g, src, size);
        }
        int no = fe_optimizer_count(s);
        for (int i = 0; i < no; i++) {
            const char *name = fe_optimizer_name(s, i);
            fuzz_require(name != NULL, "optimizer without a name");
            int ne = 0;
            IrShape st = {4, 6, 6};
            IrGraph *g = fe_unroll_optimizer(a, s, name, 3, st, fuzz_null, &ne);
            fuzz_require((g == NULL) == (ne > 0), "fe_unroll_optimizer: NULL iff errors");
            if (g)
                ir_print(fuzz_null, g);
        }
    }
    arena_free(a);
    return 0;
}
