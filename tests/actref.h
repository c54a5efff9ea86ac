/* actref.h — the activations of runtime/act.def written from their
 * definitions in plain double arithmetic, independent of act.inc: the
 * reference of test_act (kernels) and test_codegen (the theory block). */
#ifndef OPTC_ACTREF_H
#define OPTC_ACTREF_H
#include <math.h>
#include <string.h>

/* phi(x) of the activation named n with argument a; NAN for a name
 * without a reference, so a new activation cannot pass unchecked. */
static inline double actref_phi(const char *n, double x, double a)
{
    if (!strcmp(n, "relu"))
        return x > 0 ? x : 0;
    if (!strcmp(n, "leaky_relu"))
        return x > 0 ? x : a * x;
    if (!strcmp(n, "elu"))
        return x > 0 ? x : a * (exp(x) - 1);
    if (!strcmp(n, "sigmoid"))
        return 1 / (1 + exp(-x));
    if (!strcmp(n, "tanh"))
        return (exp(x) - exp(-x)) / (exp(x) + exp(-x));
    if (!strcmp(n, "softplus"))
        return log(1 + exp(x));
    if (!strcmp(n, "softsign"))
        return x / (1 + fabs(x));
    if (!strcmp(n, "silu"))
        return x / (1 + exp(-x));
    if (!strcmp(n, "gelu"))
        return 0.5 * x * erfc(-x / sqrt(2.0));
    return NAN;
}

#endif
