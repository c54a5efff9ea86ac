/* fuzz_readers.c — libFuzzer harness for the runtime's readers of untrusted
 * files: safetensors checkpoints (header and tensors), IDX images and labels
 * (plain and gzip), CIFAR-10/100 binary batches.
 *
 * The first byte of an input picks the reader (modulo 7); the rest is the
 * file, written to a scratch file that the reader opens by name as a user's
 * file would be:
 *   0 safetensors   1 IDX images   2 IDX labels   3 CIFAR-10   4 CIFAR-100
 *   5 IDX images, 6 IDX labels: the rest gzipped by the harness first, so
 *     the parser behind zlib sees mutated content too.
 * Besides crashes, sanitizer reports, leaks and hangs, the harness asserts
 * the readers' contracts: an error always names the file; an accepted
 * checkpoint reads every tensor it lists at its stated shape, its note is
 * one line; accepted images lie in [0, 1] with positive sizes; CIFAR labels
 * are below the class count. Built and run by scripts/fuzz.sh. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "rt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The scratch file, created once: the harness runs millions of inputs. */
static char fuzz_path[4096];

static void fuzz_cleanup(void)
{
    unlink(fuzz_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *t = getenv("TMPDIR");
    snprintf(fuzz_path, sizeof fuzz_path, "%s/optc-fuzz-readers-XXXXXX", t && *t ? t : "/tmp");
    int fd = mkstemp(fuzz_path);
    if (fd < 0)
        abort();
    close(fd);
    atexit(fuzz_cleanup);
    return 0;
}

static void fuzz_require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_readers: contract violated: %s\n", what);
        abort();
    }
}

static void write_file(const uint8_t *data, size_t size, int gzip)
{
    if (gzip) {
        gzFile gz = gzopen(fuzz_path, "wb1");
        if (!gz)
            abort();
        if (size && gzwrite(gz, data, (unsigned)size) != (int)size)
            abort();
        if (gzclose(gz) != Z_OK)
            abort();
        return;
    }
    FILE *fp = fopen(fuzz_path, "wb");
    if (!fp || (size && fwrite(data, 1, size, fp) != size) || fclose(fp) != 0)
        abort();
}

static void fuzz_safetensors(void)
{
    RtErr err = {{0}};
    RtStFile *f = rt_st_open(fuzz_path, &err);
    if (!f) {
        fuzz_require(strstr(err.msg, fuzz_path) != NULL, "safetensors error without the file");
        return;
    }
    const char *note = rt_st_note(f);
    fuzz_require(!note || !strchr(note, '\n'), "the skip note is more than one line");
    for (int i = 0; i < rt_st_count(f); i++) {
        const char *name = rt_st_name(f, i);
        int nd, dims[4];
        fuzz_require(name && rt_st_shape(f, name, &nd, dims) == 0, "a listed tensor has no shape");
        size_t numel = 1;
        for (int d = 0; d < nd; d++)
            numel *= (size_t)dims[d];
        float *buf = malloc(numel * sizeof *buf + 1);
        if (!buf)
            abort();
        fuzz_require(rt_st_read(f, name, buf, numel, &err) == 0, "a listed tensor is unreadable");
        fuzz_require(numel == 0 || rt_st_read(f, name, buf, numel - 1, &err) == -1,
                     "a tensor read at the wrong size");
        free(buf);
    }
    (void)rt_st_meta(f, "input_mean");
    rt_st_close(f);
}

static void fuzz_idx(int labels)
{
    RtErr err = {{0}};
    int n = 0, h = 0, w = 0;
    if (labels) {
        uint8_t *y = NULL;
        if (rt_idx_read_labels(fuzz_path, &y, &n, &err)) {
            fuzz_require(strstr(err.msg, fuzz_path) != NULL, "IDX error without the file");
            return;
        }
        fuzz_require(n > 0, "IDX labels: no labels accepted");
        free(y);
        return;
    }
    float *x = NULL;
    if (rt_idx_read_images(fuzz_path, &x, &n, &h, &w, &err)) {
        fuzz_require(strstr(err.msg, fuzz_path) != NULL, "IDX error without the file");
        return;
    }
    fuzz_require(n > 0 && h > 0 && w > 0, "IDX images: empty shape accepted");
    for (size_t i = 0; i < (size_t)n * (size_t)h * (size_t)w; i++)
        fuzz_require(x[i] >= 0.0f && x[i] <= 1.0f, "IDX pixel outside [0, 1]");
    free(x);
}

static void fuzz_cifar(int c100)
{
    RtErr err = {{0}};
    float *x = NULL;
    uint8_t *y = NULL;
    int n = 0;
    if (rt_cifar_read(fuzz_path, c100, &x, &y, &n, &err)) {
        fuzz_require(strstr(err.msg, fuzz_path) != NULL, "CIFAR error without the file");
        return;
    }
    fuzz_require(n > 0, "CIFAR: no records accepted");
    for (int i = 0; i < n; i++)
        fuzz_require(y[i] < (c100 ? 100 : 10), "CIFAR label out of range");
    free(x);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 7;
    write_file(data + 1, size - 1, mode >= 5);
    switch (mode) {
    case 0: fuzz_safetensors(); break;
    case 1: case 5: fuzz_idx(0); break;
    case 2: case 6: fuzz_idx(1); break;
    case 3: fuzz_cifar(0); break;
    case 4: fuzz_cifar(1); break;
    }
    return 0;
}
