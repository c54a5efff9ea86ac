/* emit_torch.h — optc emit --pytorch: a PyTorch module computing the same
 * function as the C that emit_c writes (emit_torch.c). */
#ifndef OPTC_EMIT_TORCH_H
#define OPTC_EMIT_TORCH_H

#include <stdio.h>
#include "plan.h"

/* Write a Python file defining build() -> torch.nn.Module for graph g:
 * one commented line per live op in the order of the C forward, parameters
 * and BN statistics registered under the IR tensor names (the checkpoint
 * names, so load_state_dict(strict=True) takes a checkpoint of the
 * generated program once its "momentum." entries are dropped). Returns 0,
 * or -1 with a message on diag (a number Python cannot hold, a write
 * error). */
int emit_torch(FILE *out, const IrGraph *g, const Plan *p, const EmitInfo *info, FILE *diag);

#endif
