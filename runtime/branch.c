/* branch.c — branch records: the frozen pieces of piecewise kernels that
 * gradient checks replay (contract in rt.h, at RtBranch). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "rt.h"

void rt_branch_reset(RtBranch *b)
{
    b->seen = 0;
    b->crossed = 0;
    b->cross_min = INFINITY;
    b->near_min = INFINITY;
}

uint8_t *rt_branch_mask(const RtCtx *ctx, size_t site, size_t n)
{
    RtBranch *b = ctx ? ctx->branch : NULL;
    if (!b)
        return NULL;
    if (!b->mask || site > b->cap || n > b->cap - site) {
        /* a network whose branch_elems disagrees with its calls: carrying
         * on would write outside the record */
        fprintf(stderr, "optc runtime: branch record of %zu elements has no room for "
                "elements %zu..%zu (wrong branch_elems?)\n", b->cap, site, site + n);
        abort();
    }
    return b->mask + site;
}
