/* load.c — the front end's driver: read the spec, parse, check the
 * optimizers (sema.c) and networks (network.c), apply -D, then unroll every
 * network once (unroll.c) so shape and linearity errors are reported by
 * `optc check` too. Calls go one way: load -> sema, network, unroll. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"

#define MAX_SPEC_BYTES (16 << 20)

/* Declarations holding a syntax error are not checked further: their
 * statements are incomplete and would only produce follow-on errors. */
static bool has_syntax_error(const ParseCtx *pc, Span sp)
{
    for (int i = 0; i < pc->syntax_errors.n; i++) {
        int off = *(const int *)pc->syntax_errors.v[i];
        if (off >= sp.beg && off <= sp.end)
            return true;
    }
    return false;
}

Spec *fe_load_string(Arena *a, const char *name, const char *src, size_t len,
                     const Define *defs, int ndefs, FILE *diag, int *nerrors)
{
    Spec *s = arena_alloc(a, sizeof *s);
    char *copy = arena_alloc(a, len + 1);
    memcpy(copy, src, len);
    s->path = arena_strdup(a, name);
    s->src = copy;
    s->len = len;
    s->arena = a;
    Diag d;
    diag_init(&d, a, diag, s->path, copy, len);
    if (len > MAX_SPEC_BYTES) {
        diag_error_noloc(&d, NULL, "spec larger than %d bytes", MAX_SPEC_BYTES);
        *nerrors = d.nerrors;
        return NULL;
    }
    ParseCtx pc = { .arena = a, .diag = &d };
    ast_parse(&pc, copy, len);
    s->optd = (OptDecl **)pc.opts.v;
    s->nopt = pc.opts.n;
    s->netd = (NetDecl **)pc.nets.v;
    s->nnet = pc.nets.n;
    s->opts = arena_alloc(a, sizeof(OptInfo) * (size_t)(s->nopt + 1));
    s->nets = arena_alloc(a, sizeof(NetInfo) * (size_t)(s->nnet + 1));
    if (!d.stop) {
        for (int i = 0; i < s->nopt; i++) {
            for (int j = 0; j < i; j++)
                if (strcmp(s->optd[i]->name, s->optd[j]->name) == 0) {
                    diag_error(&d, s->optd[i]->name_span, "duplicate optimizer '%s'", s->optd[i]->name);
                    diag_note(&d, s->optd[j]->name_span, "first defined here");
                }
            if (!has_syntax_error(&pc, s->optd[i]->span))
                sema_check_optimizer(&d, a, &s->opts[i], s->optd[i]);
        }
        for (int i = 0; i < s->nnet; i++) {
            for (int j = 0; j < i; j++)
                if (strcmp(s->netd[i]->name, s->netd[j]->name) == 0) {
                    diag_error(&d, s->netd[i]->name_span, "duplicate network '%s'", s->netd[i]->name);
                    diag_note(&d, s->netd[j]->name_span, "first defined here");
                }
            if (!has_syntax_error(&pc, s->netd[i]->span))
                network_check(&d, a, s, i);
        }
        network_apply_defines(&d, s, defs, ndefs);
    }
    if (d.nerrors == 0 && s->nopt == 0 && s->nnet == 0)
        diag_error_noloc(&d, NULL, "no optimizer or network in this spec");
    /* A trial unroll of each network reports shape and linearity errors. */
    for (int i = 0; i < s->nnet && d.nerrors == 0; i++) {
        Arena *tmp = arena_new();
        unroll_network(tmp, s, i, &d);
        arena_free(tmp);
    }
    *nerrors = d.nerrors;
    return d.nerrors ? NULL : s;
}

char *fe_read_file(const char *path, size_t limit, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int err = buf ? 0 : ENOMEM;
    while (!err) {
        if (n + 1 == cap) {
            char *nb = cap > limit ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                err = cap > limit ? EFBIG : ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (!err && ferror(f))
        err = EIO;
    if (!err && n > limit)
        err = EFBIG;
    fclose(f);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

Spec *fe_load(Arena *a, const char *path, const Define *defs, int ndefs, FILE *diag, int *nerrors)
{
    size_t len;
    char *buf = fe_read_file(path, MAX_SPEC_BYTES, &len);
    if (!buf) {
        Diag d;
        diag_init(&d, a, diag, path, "", 0);
        if (errno == EFBIG)
            diag_error_noloc(&d, NULL, "spec larger than %d bytes", MAX_SPEC_BYTES);
        else if (errno == EIO)
            diag_error_noloc(&d, path, "read error");
        else
            diag_error_noloc(&d, path, "cannot open: %s", strerror(errno));
        *nerrors = d.nerrors;
        return NULL;
    }
    Spec *s = fe_load_string(a, path, buf, len, defs, ndefs, diag, nerrors);
    free(buf);
    return s;
}

int fe_network_count(const Spec *s) { return s->nnet; }
const char *fe_network_name(const Spec *s, int i) { return s->netd[i]->name; }
int fe_optimizer_count(const Spec *s) { return s->nopt; }
const char *fe_optimizer_name(const Spec *s, int i) { return s->optd[i]->name; }
int fe_optimizer_param_count(const Spec *s, int i) { return s->optd[i]->nparams; }

const char *fe_optimizer_param(const Spec *s, int i, int j, double *value, bool *learned)
{
    const PVal *v = &s->opts[i].values[j];
    *value = v->value;
    *learned = v->learned;
    return s->optd[i]->params[j]->name;
}

static int net_index(Diag *d, const Spec *s, const char *net)
{
    if (s->nnet == 0) {
        diag_error_noloc(d, NULL, "no network in this spec");
        return -1;
    }
    if (!net)
        return 0;
    for (int i = 0; i < s->nnet; i++)
        if (strcmp(s->netd[i]->name, net) == 0)
            return i;
    diag_error_noloc(d, NULL, "no network named '%s'", net);
    return -1;
}

IrGraph *fe_unroll(Arena *a, const Spec *s, const char *net, FILE *diag, int *nerrors)
{
    Diag d;
    diag_init(&d, a, diag, s->path, s->src, s->len);
    int ni = net_index(&d, s, net);
    IrGraph *g = ni < 0 ? NULL : unroll_network(a, s, ni, &d);
    *nerrors = d.nerrors;
    return d.nerrors ? NULL : g;
}

IrGraph *fe_unroll_optimizer(Arena *a, const Spec *s, const char *opt, int steps,
                             IrShape state, FILE *diag, int *nerrors)
{
    Diag d;
    diag_init(&d, a, diag, s->path, s->src, s->len);
    int oi = opt ? sema_find_opt(s, opt) : (s->nopt ? 0 : -1);
    IrGraph *g = NULL;
    if (oi < 0)
        diag_error_noloc(&d, NULL, "no optimizer named '%s'", opt ? opt : "(none)");
    else if (steps < 1 || steps > SEMA_MAX_STEPS)
        diag_error_noloc(&d, NULL, "steps must be in 1..%d", SEMA_MAX_STEPS);
    else
        g = unroll_optimizer(a, s, oi, steps, state, &d);
    *nerrors = d.nerrors;
    return d.nerrors ? NULL : g;
}

const char *fe_network_optimizer(const Spec *s, const char *net, const char **why)
{
    int ni = net ? -1 : 0;
    for (int i = 0; net && i < s->nnet; i++)
        if (!strcmp(s->netd[i]->name, net))
            ni = i;
    if (ni < 0 || ni >= s->nnet) {
        *why = "no such network";
        return NULL;
    }
    const NetInfo *n = &s->nets[ni];
    if (n->nstages == 0) {
        *why = "no stages";
        return NULL;
    }
    for (int j = 0; j < n->nstages; j++) {
        if (n->stages[j].opt != n->stages[0].opt) {
            *why = "stages run different optimizers";
            return NULL;
        }
        /* analyze runs the optimizer with its own values (after -D): a
         * stage whose arguments change one is not described by it. */
        const OptInfo *oi = &s->opts[n->stages[j].opt];
        for (int q = 0; q < s->optd[n->stages[j].opt]->nparams; q++)
            if (n->stages[j].pv[q].learned != oi->values[q].learned ||
                n->stages[j].pv[q].value != oi->values[q].value) {
                *why = "a stage passes arguments";
                return NULL;
            }
    }
    *why = NULL;
    return s->optd[n->stages[0].opt]->name;
}
