/* rt_defaults.h — defaults shared by the runtime (a program run without the
 * setting) and the compiler (a train block without it, sizes it reports):
 * one place for each number. Included by rt.h and by the compiler's ir.h. */
#ifndef OPTC_RT_DEFAULTS_H
#define OPTC_RT_DEFAULTS_H

#define RT_DEFAULT_BATCH 128

#endif
