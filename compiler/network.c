/* network.c — interpreting a network's items: input, classes, stem, grad,
 * share, shortcut, transition, head, stages (their optimizer and parameter
 * values) and the train block; then -D, and the parameter values in effect
 * resolved once per optimizer and per stage for unroll. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"
#include "layer.h"

typedef struct {
    Diag *d;
    Spec *s;
    Arena *a;
    const Define *defs;
    int ndefs;
    bool *def_used;
} NetCtx;

/* A -D value: a number or learned(number). */
static bool define_value(const char *v, PVal *out)
{
    char *end;
    out->learned = false;
    if (strncmp(v, "learned(", 8) == 0) {
        out->learned = true;
        v += 8;
    }
    errno = 0;
    out->value = strtod(v, &end);
    if (end == v || errno || !isfinite(out->value))
        return false;
    if (out->learned) {
        if (*end != ')')
            return false;
        end++;
    }
    return *end == 0;
}

static void parse_stage(NetCtx *S, const Item *it, StageInfo *st)
{
    Diag *d = S->d;
    memset(st, 0, sizeof *st);
    st->span = it->span;
    st->opt = -1;
    st->stride = 1;
    if (it->ngroups != 1) {
        diag_error(d, it->span, "expected: stage OPTIMIZER[(args)] steps N [width W] [stride S];");
        return;
    }
    const Group *g = it->groups[0];
    const Atom *o = g->atoms[0];
    if (o->kind != AT_NAME && o->kind != AT_CALL) {
        diag_error(d, o->span, "expected an optimizer name");
        return;
    }
    st->opt = sema_find_opt(S->s, o->name);
    if (st->opt < 0) {
        diag_error(d, o->span, "unknown optimizer '%s'", o->name);
        return;
    }
    const OptDecl *od = S->s->optd[st->opt];
    const OptInfo *oi = &S->s->opts[st->opt];
    st->pv = arena_alloc(S->a, sizeof(PVal) * (size_t)(od->nparams + 1));
    for (int i = 0; i < od->nparams && oi->defaults; i++)
        st->pv[i] = oi->defaults[i];
    for (int i = 0; i < o->nargs; i++) {
        const Arg *a = o->args[i];
        int pi;
        if (!a->name) {
            diag_error(d, a->span, "stage arguments are named: %s(param = value)", od->name);
            continue;
        }
        if ((pi = sema_find_param(od, a->name)) < 0) {
            diag_error(d, a->name_span, "optimizer '%s' has no parameter '%s'", od->name, a->name);
            continue;
        }
        for (int j = 0; j < i; j++)
            if (o->args[j]->name && strcmp(o->args[j]->name, a->name) == 0)
                diag_error(d, a->name_span, "duplicate argument '%s'", a->name);
        sema_pval(d, a->value, &st->pv[pi]);
    }
    bool seen[3] = { false, false, false };
    for (int i = 1; i < g->natoms; i += 2) {
        const Atom *kw = g->atoms[i];
        if (kw->kind != AT_NAME) {
            diag_error(d, kw->span, "expected steps, width or stride");
            return;
        }
        int which = strcmp(kw->name, "steps") == 0 ? 0 : strcmp(kw->name, "width") == 0 ? 1
                  : strcmp(kw->name, "stride") == 0 ? 2 : -1;
        if (which < 0) {
            diag_error(d, kw->span, "unknown stage option '%s' (expected steps, width or stride)", kw->name);
            return;
        }
        if (seen[which])
            diag_error(d, kw->span, "duplicate '%s'", kw->name);
        seen[which] = true;
        if (i + 1 >= g->natoms) {
            diag_error(d, kw->span, "'%s' needs a value", kw->name);
            return;
        }
        const Atom *v = g->atoms[i + 1];
        if (which == 0)
            sema_atom_int(d, v, 1, SEMA_MAX_STEPS, "steps", &st->steps);
        else if (which == 1)
            sema_atom_int(d, v, 1, SEMA_MAX_WIDTH, "width", &st->width);
        else
            sema_atom_int(d, v, 1, 8, "stride", &st->stride);
    }
    if (!seen[0])
        diag_error(d, it->span, "stage needs 'steps N'");
}

static bool word_is(const Atom *a, const char *w)
{
    return a->kind == AT_NAME && strcmp(a->name, w) == 0;
}

static bool bool_item(Diag *d, const Item *it, bool *out)
{
    if (it->ngroups == 0) {
        *out = true;
        return true;
    }
    const Atom *a = sema_single_atom(d, it);
    if (!a)
        return false;
    if (word_is(a, "true") || word_is(a, "on") || (a->kind == AT_NUM && a->num == 1))
        *out = true;
    else if (word_is(a, "false") || word_is(a, "off") || (a->kind == AT_NUM && a->num == 0))
        *out = false;
    else {
        diag_error(d, a->span, "expected true or false");
        return false;
    }
    return true;
}

static void parse_train(Diag *d, const Item *blk, IrTrain *t)
{
    for (int i = 0; i < blk->nitems; i++) {
        const Item *it = blk->items[i];
        const char *n = it->name;
        const Atom *a;
        if (it->block) {
            diag_error(d, it->span, "unexpected block in train");
            continue;
        }
        if (strcmp(n, "nesterov") == 0) {
            bool_item(d, it, &t->nesterov);
            continue;
        }
        if (strcmp(n, "decay_bn") == 0) {
            bool_item(d, it, &t->decay_bn);
            continue;
        }
        if (strcmp(n, "augment") == 0) {
            for (int j = 0; j < it->ngroups; j++) {
                const Group *g = it->groups[j];
                const Atom *x = g->atoms[0];
                if (g->natoms != 1)
                    diag_error(d, g->span, "expected crop(N), flip or none");
                else if (word_is(x, "flip"))
                    t->flip = true;
                else if (word_is(x, "none"))
                    ;
                else if (x->kind == AT_CALL && strcmp(x->name, "crop") == 0 && x->nargs == 1 && !x->args[0]->name)
                    sema_arg_int(d, x->args[0], 1, 64, "crop padding", &t->crop_pad);
                else
                    diag_error(d, x->span, "expected crop(N), flip or none");
            }
            continue;
        }
        if (strcmp(n, "schedule") == 0) {
            if (!(a = sema_single_atom(d, it)))
                continue;
            if (word_is(a, "constant"))
                t->schedule = SCHED_CONSTANT;
            else if (word_is(a, "cosine"))
                t->schedule = SCHED_COSINE;
            else if (a->kind == AT_CALL && strcmp(a->name, "step") == 0) {
                t->schedule = SCHED_STEP;
                t->step_gamma = 0.1;
                t->nmilestones = 0;
                for (int j = 0; j < a->nargs; j++) {
                    const Arg *g = a->args[j];
                    if (g->name && strcmp(g->name, "gamma") == 0) {
                        if (sema_const(d, g->value, &t->step_gamma) && !(t->step_gamma > 0 && t->step_gamma <= 1))
                            diag_error(d, g->value->span, "gamma must be in (0, 1]");
                    } else if (g->name) {
                        diag_error(d, g->name_span, "unknown argument '%s'", g->name);
                    } else if (t->nmilestones == 4) {
                        diag_error(d, g->span, "at most 4 milestones");
                    } else if (sema_arg_int(d, g, 1, 100000, "milestone", &t->milestones[t->nmilestones])) {
                        if (t->nmilestones && t->milestones[t->nmilestones] <= t->milestones[t->nmilestones - 1])
                            diag_error(d, g->span, "milestones must increase");
                        t->nmilestones++;
                    }
                }
                if (t->nmilestones == 0)
                    diag_error(d, a->span, "step(...) needs at least one milestone epoch");
            } else
                diag_error(d, a->span, "expected constant, cosine or step(m1, m2, ..., gamma = g)");
            continue;
        }
        if (!(a = sema_single_atom(d, it)))
            continue;
        if (strcmp(n, "epochs") == 0)
            sema_atom_int(d, a, 1, 100000, "epochs", &t->epochs);
        else if (strcmp(n, "batch") == 0)
            sema_atom_int(d, a, 1, 65536, "batch", &t->batch);
        else if (strcmp(n, "warmup") == 0)
            sema_atom_int(d, a, 0, 100000, "warmup", &t->warmup_epochs);
        else if (strcmp(n, "lr") == 0) {
            if (sema_atom_num(d, a, 0, 100, "lr", &t->lr) && t->lr == 0)
                diag_error(d, a->span, "lr must be positive");
        } else if (strcmp(n, "momentum") == 0)
            sema_atom_num(d, a, 0, 0.999999, "momentum", &t->momentum);
        else if (strcmp(n, "weight_decay") == 0)
            sema_atom_num(d, a, 0, 1, "weight_decay", &t->weight_decay);
        else
            diag_error(d, it->name_span, "unknown train setting '%s'", n);
    }
}

static void check_network(NetCtx *S, NetInfo *ni, NetDecl *nd)
{
    Diag *d = S->d;
    ni->decl = nd;
    ni->shortcut = SC_PAD;
    ni->train = (IrTrain){ .epochs = 10, .batch = RT_DEFAULT_BATCH, .lr = 0.1, .momentum = 0.9,
                           .weight_decay = 5e-4, .schedule = SCHED_COSINE, .step_gamma = 0.1 };
    ni->stages = arena_alloc(S->a, sizeof(StageInfo) * (size_t)(nd->nitems + 1));
    ni->stem = arena_alloc(S->a, sizeof(Layer));
    ni->trans = arena_alloc(S->a, sizeof(Layer));
    static const char *const once[] = { "input", "classes", "stem", "grad", "share", "shortcut",
                                        "transition", "head", "train" };
    enum { NONCE = sizeof once / sizeof once[0] };
    const Item *seen[NONCE] = { 0 };
    for (int i = 0; i < nd->nitems; i++) {
        const Item *it = nd->items[i];
        const char *n = it->name;
        if (strcmp(n, "stage") == 0) {
            parse_stage(S, it, &ni->stages[ni->nstages++]);
            continue;
        }
        int w = -1;
        for (int j = 0; j < NONCE; j++)
            if (strcmp(n, once[j]) == 0)
                w = j;
        if (w < 0) {
            diag_error(d, it->name_span, "unknown network item '%s'", n);
            continue;
        }
        if (seen[w]) {
            diag_error(d, it->name_span, "duplicate '%s'", n);
            diag_note(d, seen[w]->name_span, "first given here");
            continue;
        }
        seen[w] = it;
        if ((w == 8) != it->block) {
            diag_error(d, it->span, w == 8 ? "train takes a block: train { epochs 10; ... }"
                                           : "unexpected block");
            continue;
        }
        const Atom *a;
        switch (w) {
        case 0:
            if (it->ngroups != 1 || it->groups[0]->natoms != 1)
                diag_error(d, it->span, "expected the input shape as CxHxW, e.g. 3x32x32");
            else if ((a = sema_single_atom(d, it))) {
                if (a->kind != AT_DIMS)
                    diag_error(d, a->span, "expected the input shape as CxHxW, e.g. 3x32x32");
                else
                    ni->input = (IrShape){ a->dims[0], a->dims[1], a->dims[2] };
            }
            break;
        case 1:
            if ((a = sema_single_atom(d, it)))
                sema_atom_int(d, a, 1, 100000, "classes", &ni->classes);
            break;
        case 2:
            layer_parse_list(d, S->a, it, CTX_STEM, &ni->stem, &ni->nstem);
            break;
        case 3:
            layer_parse_list(d, S->a, it, CTX_GRAD, &ni->grad, &ni->ngrad);
            ni->grad_span = it->span;
            break;
        case 4:
            if ((a = sema_single_atom(d, it))) {
                if (word_is(a, "stage"))
                    ni->share = true;
                else if (!word_is(a, "none"))
                    diag_error(d, a->span, "expected share = none | stage");
            }
            break;
        case 5:
            if ((a = sema_single_atom(d, it))) {
                if (word_is(a, "conv1x1"))
                    ni->shortcut = SC_CONV;
                else if (!word_is(a, "pad"))
                    diag_error(d, a->span, "expected shortcut = pad | conv1x1");
            }
            break;
        case 6:
            layer_parse_list(d, S->a, it, CTX_TRANS, &ni->trans, &ni->ntrans);
            break;
        case 7:
            layer_parse_list(d, S->a, it, CTX_HEAD, &ni->head, &ni->nhead);
            ni->head_span = it->span;
            break;
        case 8:
            parse_train(d, it, &ni->train);
            break;
        }
    }
    static const int required[] = { 0, 1, 3, 7 };
    for (int j = 0; j < 4; j++)
        if (!seen[required[j]])
            diag_error(d, nd->name_span, "network '%s' has no '%s'", nd->name, once[required[j]]);
    if (ni->nstages == 0)
        diag_error(d, nd->name_span, "network '%s' has no stage", nd->name);
    if (ni->nhead && ni->head[ni->nhead - 1].op != OP_LINEAR)
        diag_error(d, ni->head_span, "the head must end with 'linear'");
}

/* ---- -D ----------------------------------------------------------------- */

static bool stage_key(const char *a, const char *b, int *stage, bool *steps)
{
    int n = 0, st;
    if (sscanf(a, "stage%d%n", &st, &n) != 1 || a[n] != 0 || st < 1)
        return false;
    if (strcmp(b, "steps") != 0 && strcmp(b, "width") != 0)
        return false;
    *stage = st;
    *steps = b[1] == 't';
    return true;
}

static void apply_stage_define(NetCtx *S, int di, NetInfo *ni, int stage, bool steps)
{
    if (stage > ni->nstages)
        return;
    long v;
    char *end;
    errno = 0;
    v = strtol(S->defs[di].value, &end, 10);
    S->def_used[di] = true;
    if (errno || *end || end == S->defs[di].value || v < 1 || v > (steps ? SEMA_MAX_STEPS : SEMA_MAX_WIDTH)) {
        diag_error_noloc(S->d, "<command line>", "-D %s=%s: %s must be an integer in 1..%d",
                         S->defs[di].name, S->defs[di].value, steps ? "steps" : "width",
                         steps ? SEMA_MAX_STEPS : SEMA_MAX_WIDTH);
        return;
    }
    if (steps)
        ni->stages[stage - 1].steps = (int)v;
    else
        ni->stages[stage - 1].width = (int)v;
}

/* The parameter values in effect, resolved once for unroll: per optimizer
 * (default, then -D) and per stage (default, then its argument, then -D). */
static void resolve_values(Spec *s)
{
    for (int i = 0; i < s->nopt; i++) {
        OptInfo *oi = &s->opts[i];
        int np = s->optd[i]->nparams;
        if (!oi->defaults)      /* unchecked: it has a syntax error */
            continue;
        oi->values = arena_alloc(s->arena, sizeof(PVal) * (size_t)(np + 1));
        for (int j = 0; j < np; j++)
            oi->values[j] = oi->overridden[j] ? oi->override[j] : oi->defaults[j];
    }
    for (int n = 0; n < s->nnet; n++)
        for (int j = 0; j < s->nets[n].nstages; j++) {
            StageInfo *st = &s->nets[n].stages[j];
            if (st->opt < 0 || !st->pv || !s->opts[st->opt].defaults)
                continue;
            for (int p = 0; p < s->optd[st->opt]->nparams; p++)
                if (s->opts[st->opt].overridden[p])
                    st->pv[p] = s->opts[st->opt].override[p];
        }
}

static void apply_defines(NetCtx *S)
{
    Spec *s = S->s;
    for (int di = 0; di < S->ndefs; di++) {
        const Define *df = &S->defs[di];
        char buf[256];
        if (!df->name || !df->value || strlen(df->name) >= sizeof buf) {
            diag_error_noloc(S->d, "<command line>", "malformed -D");
            continue;
        }
        strcpy(buf, df->name);
        char *part[4];
        int np = 0;
        for (char *p = buf; np < 4;) {
            part[np++] = p;
            p = strchr(p, '.');
            if (!p)
                break;
            *p++ = 0;
        }
        int stage;
        bool steps;
        if (np == 1 || np == 2) {
            for (int oi = 0; oi < s->nopt; oi++) {
                if (np == 2 && strcmp(part[0], s->optd[oi]->name) != 0)
                    continue;
                int pi = sema_find_param(s->optd[oi], part[np - 1]);
                if (pi < 0)
                    continue;
                S->def_used[di] = true;
                if (!s->opts[oi].override)  /* unchecked: it has a syntax error */
                    continue;
                if (!define_value(df->value, &s->opts[oi].override[pi])) {
                    diag_error_noloc(S->d, "<command line>", "-D %s=%s: expected a number or learned(number)",
                                     df->name, df->value);
                    break;
                }
                s->opts[oi].overridden[pi] = true;
            }
        }
        if (np == 2 && stage_key(part[0], part[1], &stage, &steps))
            for (int ni = 0; ni < s->nnet; ni++)
                apply_stage_define(S, di, &s->nets[ni], stage, steps);
        if (np == 3 && stage_key(part[1], part[2], &stage, &steps))
            for (int ni = 0; ni < s->nnet; ni++)
                if (strcmp(s->netd[ni]->name, part[0]) == 0)
                    apply_stage_define(S, di, &s->nets[ni], stage, steps);
        if (!S->def_used[di])
            diag_error_noloc(S->d, "<command line>", "-D %s matches no optimizer parameter or stage", df->name);
    }
    resolve_values(s);
}

void network_check(Diag *d, Arena *a, Spec *s, int i)
{
    NetCtx S = { d, s, a, NULL, 0, NULL };
    check_network(&S, &s->nets[i], s->netd[i]);
}

void network_apply_defines(Diag *d, Spec *s, const Define *defs, int ndefs)
{
    NetCtx S = { d, s, s->arena, defs, ndefs, arena_alloc(s->arena, sizeof(bool) * (size_t)(ndefs + 1)) };
    apply_defines(&S);
}
