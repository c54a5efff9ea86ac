/* layer.h — the layer lists of a network (stem, grad, transition, head),
 * parsed through the op table (optable.h). */
#ifndef OPTC_LAYER_H
#define OPTC_LAYER_H

#include "ast.h"

/* Where a layer list stands: some layers are allowed in only one of them. */
enum { CTX_STEM, CTX_GRAD, CTX_TRANS, CTX_HEAD };

/* The layers of item it (`grad = bn, relu, conv3x3;`) into *out (arena
 * memory, *n of them); errors go to d. `none` is an empty stem or
 * transition. */
void layer_parse_list(Diag *d, Arena *a, const Item *it, int ctx, Layer **out, int *n);

#endif
