/* tmain.h — one main() per Check suite binary: runs the suite, prints
 * Check's summary and exits non-zero on any failure; TEST_SKIP for a test
 * that cannot run here. */
#ifndef OPTC_TMAIN_H
#define OPTC_TMAIN_H
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

/* Ends the current test as skipped, not passed: prints one line
 * "SKIPPED: TEST: why" on stdout, which scripts/runtests.sh counts as a
 * skip (Check itself has no such outcome and would count a pass). */
#define TEST_SKIP(...)                                                   \
    do {                                                                 \
        printf("SKIPPED: %s: ", __func__);                               \
        printf(__VA_ARGS__);                                             \
        putchar('\n');                                                   \
        fflush(stdout);                                                  \
        return;                                                          \
    } while (0)

#define TEST_MAIN(suite_fn)                                  \
    int main(void)                                           \
    {                                                        \
        SRunner *sr = srunner_create(suite_fn());            \
        srunner_run_all(sr, CK_NORMAL);                      \
        int failed = srunner_ntests_failed(sr);              \
        srunner_free(sr);                                    \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;    \
    }
#endif
