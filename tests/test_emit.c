/* test_emit.c — the C emitter (emit_c.c) on hand-built graphs: the
 * program compiles under the flags make recorded (-Werror included), passes
 * its own gradcheck and reports its parameters; user text cannot escape its
 * comment or string; values C cannot hold and write errors are refused. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "plan.h"
#include "tmain.h"
#include "cgutil.h"

/* Emit h into dir/name.c, compile it into dir/name; returns the C text. */
static char *emit_build(Hand *h, const char *dir, const char *name, const char *spec,
                        size_t spec_len)
{
    Plan *p = plan_build(&h->g, stderr);
    ck_assert_ptr_nonnull(p);
    char src[512], exe[512];
    snprintf(src, sizeof src, "%s/%s.c", dir, name);
    snprintf(exe, sizeof exe, "%s/%s", dir, name);
    FILE *f = fopen(src, "w");
    ck_assert_ptr_nonnull(f);
    EmitInfo info = { .command = "optc emit hand.opt", .spec_path = "hand.opt",
                      .spec_text = spec, .spec_len = spec_len };
    ck_assert_int_eq(emit_c(f, &h->g, p, &info, stderr), 0);
    ck_assert_int_eq(fclose(f), 0);
    plan_free(p);
    char *log = NULL;
    int st = compile(src, exe, &log);
    ck_assert_msg(st == 0, "compiling %s failed:\n%s", src, tail(log));
    free(log);
    char *text = tu_slurp(src, NULL);
    ck_assert_ptr_nonnull(text);
    /* No allocation in generated code: all memory comes from rt_model_init. */
    ck_assert_ptr_null(strstr(text, "malloc"));
    ck_assert_ptr_null(strstr(text, "calloc"));
    return text;
}

START_TEST(test_emit_hand)
{
    static Hand h;
    char *dir = tmpdir();
    for (int which = 0; which < 2; which++) {
        if (which == 0)
            h_resnet(&h);
        else
            h_all(&h);
        const char *spec = "# hand-built graph\n";
        free(emit_build(&h, dir, h.g.name, spec, strlen(spec)));
        char cmd[1024], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s/%s gradcheck --batch 3", dir, h.g.name);
        int st = run(cmd, &out);
        ck_assert_msg(st == 0, "%s: status %d\n%s", cmd, st, tail(out));
        free(out);
        snprintf(cmd, sizeof cmd, "%s/%s info --json", dir, h.g.name);
        st = run(cmd, &out);
        ck_assert_msg(st == 0, "%s: status %d\n%s", cmd, st, tail(out));
        Plan *p = plan_build(&h.g, stderr);
        char want[64];
        snprintf(want, sizeof want, "\"params\":%zu", p->nparams);
        ck_assert_msg(strstr(out, want) != NULL, "info: %s (want %s)", tail(out), want);
        plan_free(p);
        free(out);
    }
    rmtree(dir);
    free(dir);
}
END_TEST

/* A dense stage (plan_image_stride) compiles and passes its gradcheck,
 * with and without a break in the chain: each concat copies only the
 * channels not already in place (rt_concat_slice_*, never the whole-tensor
 * rt_concat_*, except for the head's concat of two gaps), the bn+relu over
 * a state reads the shared buffer with its stride (in training with the
 * statistics cache of rt_bn_relu_forward_train_cached), and the bn+relu outputs
 * that feed a conv are not recomputed before the conv's backward: the 1x1
 * and the 3x3 conv's backward apply them as their weight gradient reads
 * them (rt_bn_relu_conv1x1_backward, rt_bn_relu_conv3x3_backward), and
 * their training forwards apply them as they read their input
 * (rt_bn_relu_conv1x1_train, rt_bn_relu_conv3x3_train). */
START_TEST(test_emit_dense)
{
    static Hand h;
    char *dir = tmpdir();
    int cats[3];
    for (int brk = -1; brk < 1; brk++) {
        h_dense(&h, 3, brk, cats);
        const char *spec = "# hand-built dense stage\n";
        char *text = emit_build(&h, dir, h.g.name, spec, strlen(spec));
        ck_assert_ptr_nonnull(strstr(text, "rt_concat_slice_forward"));
        ck_assert_ptr_nonnull(strstr(text, "rt_concat_slice_backward"));
        ck_assert_ptr_nonnull(strstr(text, "rt_bn_relu_forward_eval_strided"));
        /* the training bn+relus over the stage's states share a statistics
         * cache: the first fills it, the later ones read the channels it has */
        int readers = 0, reuse = 0;
        for (int f = 0; f < 2; f++) {   /* alone, or with the 1x1 conv reading it */
            const char *name = f ? "rt_bn_relu_conv1x1_train" : "rt_bn_relu_forward_train_cached";
            for (const char *q = strstr(text, name); q; q = strstr(q + 1, name)) {
                const char *eol = strchr(q, '\n'), *c = NULL;
                ck_assert_ptr_nonnull(eol);
                for (const char *t = strstr(q, "fix + "); t && t < eol; t = strstr(t + 1, "fix + "))
                    c = t;  /* the last: the cache, its channels known after it */
                size_t at;
                int known;
                if (!c || sscanf(c, "fix + %zu, %d", &at, &known) != 2)
                    continue;   /* the conv form without a cache */
                readers++;
                reuse += known != 0;
            }
        }
        ck_assert_int_ge(readers, 2);
        ck_assert_int_ge(reuse, 1);
        /* a bn+relu read by a 1x1 conv alone runs within it in training */
        ck_assert_ptr_nonnull(strstr(text, "FN(rt_bn_relu_conv1x1_train)"));
        ck_assert_ptr_nonnull(strstr(text, "if (!train)    /* training: with its input's bn"));
        ck_assert_ptr_nonnull(strstr(text, "rt_bn_relu_backward_strided"));
        ck_assert_ptr_nonnull(strstr(text, "FN(rt_bn_relu_conv1x1_backward)"));
        ck_assert_ptr_nonnull(strstr(text, "FN(rt_bn_relu_conv3x3_backward)"));
        /* and the 3x3 conv's training forward applies it (h not written) */
        ck_assert_ptr_nonnull(strstr(text, "FN(rt_bn_relu_conv3x3_train)"));
        ck_assert_ptr_null(strstr(text, "rt_bn_relu_recompute"));
        ck_assert_ptr_nonnull(strstr(text, ", in place */"));
        /* the whole-tensor concat only where the head joins two gaps */
        char *cat = strstr(text, "rt_concat_forward");
        ck_assert(brk >= 0 ? cat != NULL : cat == NULL);
        free(text);
        char cmd[1024], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s/%s gradcheck --batch 3", dir, h.g.name);
        int st = run(cmd, &out);
        ck_assert_msg(st == 0, "%s: status %d\n%s", cmd, st, tail(out));
        free(out);
        snprintf(cmd, sizeof cmd, "%s/%s gradcheck --batch 2 --threads 2 --seed 3", dir, h.g.name);
        st = run(cmd, &out);
        ck_assert_msg(st == 0, "%s: status %d\n%s", cmd, st, tail(out));
        free(out);
    }
    rmtree(dir);
    free(dir);
}
END_TEST

/* User text cannot escape its comment or string literal: a spec and names
 * full of comment closers, trigraphs, quotes, backslash-newlines, NULs and
 * preprocessor lines still compile under -Werror into the same program. */
START_TEST(test_emit_escaping)
{
    static Hand h;
    char *dir = tmpdir();
    h_resnet(&h);
    snprintf(h.pnames[0], sizeof h.pnames[0], "w*/\n#error injected\n/*\"?\?/\\");
    static const char spec[] = "network x { } */\n#error injected\n/* ?\?/\n \\\n"
                               "\"\\\" ?\?= \x01\xff\0 end */";
    char *text = emit_build(&h, dir, "escaping", spec, sizeof spec - 1);
    ck_assert_ptr_null(strstr(text, "\n#error"));
    ck_assert_ptr_null(strstr(text, "??"));
    /* The comment closes exactly once, at the end of the header. */
    char *first = strstr(text, "*/");
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(strstr(first, "#include \"rt.h\""));
    free(text);
    rmtree(dir);
    free(dir);
}
END_TEST

/* emit_c refuses what C cannot hold and reports a full disk: -1 and one
 * message naming the network, never a silently broken file. */
START_TEST(test_emit_refuses)
{
    static Hand h;
    h_all(&h);
    Plan *p = plan_build(&h.g, stderr);
    ck_assert_ptr_nonnull(p);
    EmitInfo info = { .command = "optc emit hand.opt", .spec_path = "hand.opt" };
    char *msg = NULL, *text = NULL;
    size_t len = 0, tlen = 0;
    FILE *diag = open_memstream(&msg, &len);
    FILE *out = open_memstream(&text, &tlen);
    ck_assert_int_eq(emit_c(out, &h.g, p, &info, diag), 0);
    fclose(out);
    fflush(diag);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(strstr(text, "all_ops"));
    free(text);
    /* a non-finite coefficient */
    for (int i = 0; i < h.g.nnodes; i++)
        if (h.g.nodes[i].op == OP_SUM)
            h.coefs[i][0].c0 = NAN;
    out = fopen("/dev/null", "w");
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(emit_c(out, &h.g, p, &info, diag), -1);
    fclose(out);
    fflush(diag);
    ck_assert_ptr_nonnull(strstr(msg, "all_ops: a value cannot be written as C"));
    plan_free(p);
    /* a write error */
    h_resnet(&h);
    p = plan_build(&h.g, stderr);
    out = fopen("/dev/full", "w");
    if (out) {
        ck_assert_int_eq(emit_c(out, &h.g, p, &info, diag), -1);
        fclose(out);
        fflush(diag);
        ck_assert_ptr_nonnull(strstr(msg, "write error while emitting tiny_resnet"));
    }
    fclose(diag);
    free(msg);
    plan_free(p);
    if (!out)
        TEST_SKIP("no /dev/full: the write-error half did not run");
}
END_TEST

static Suite *emit_suite(void)
{
    Suite *s = suite_create("emit");
    TCase *tc = tcase_create("hand");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_emit_hand);
    tcase_add_test(tc, test_emit_dense);
    tcase_add_test(tc, test_emit_escaping);
    tcase_add_test(tc, test_emit_refuses);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(emit_suite)
