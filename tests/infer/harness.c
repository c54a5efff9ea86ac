/* harness.c — runs NET_predict over a file of images for test_infer.c.
 * Built with -DNET_H="path/NET.h" -DPREDICT=net_predict -DIMG=C*H*W
 * -DCLASSES=K. Usage: harness PIXELS LOGITS N: reads N images (float32,
 * C x H x W each, in [0, 1]), writes N x K logits (float32), and prints the
 * wall time per image in milliseconds. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include NET_H

static float px[IMG], lg[CLASSES];

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    int n = atoi(argv[3]);
    if (!in || !out)
        return 1;
    double total = 0;
    for (int i = 0; i < n; i++) {
        struct timespec t0, t1;
        if (fread(px, sizeof px, 1, in) != 1)
            return 1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
        PREDICT(px, lg);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
        total += (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (fwrite(lg, sizeof lg, 1, out) != 1)
            return 1;
    }
    fclose(in);
    if (fclose(out) != 0)
        return 1;
    printf("ms_per_image=%.4f\n", n ? total / n : 0.0);
    return 0;
}
