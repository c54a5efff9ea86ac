/* rng.c — xoshiro256** seeded through splitmix64: fast, small state held by
 * the caller (no globals), and the same stream on every platform. */
#include <math.h>
#include "rt.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Every seed, 0 included, gives a valid (not all-zero) state. */
void rt_rng_seed(RtRng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t rt_rng_u64(RtRng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* The top 53 bits: every double in [0, 1) on the 2^-53 grid, equally likely. */
double rt_rng_uniform(RtRng *r)
{
    return (double)(rt_rng_u64(r) >> 11) * 0x1.0p-53;
}

/* Box-Muller from two uniforms; the second variate is dropped because the
 * state has no room to cache it, which keeps the stream a pure function of
 * s[4]. */
double rt_rng_normal(RtRng *r)
{
    double u1 = 1.0 - rt_rng_uniform(r);   /* (0, 1]: log is finite */
    double u2 = rt_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Lemire's multiply-and-reject: unbiased for every n >= 1 (0 for n == 0). */
uint32_t rt_rng_below(RtRng *r, uint32_t n)
{
    if (n == 0)
        return 0;
    uint64_t m = (rt_rng_u64(r) >> 32) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t thresh = (uint32_t)(-n) % n;
        while (lo < thresh) {
            m = (rt_rng_u64(r) >> 32) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
