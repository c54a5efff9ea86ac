/* tmain.h — one main() per Check suite binary: runs the suite, prints
 * Check's summary and exits non-zero on any failure. */
#ifndef OPTC_TMAIN_H
#define OPTC_TMAIN_H
#include <check.h>
#include <stdlib.h>

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
