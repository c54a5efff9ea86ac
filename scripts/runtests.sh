#!/bin/sh
# Run each Check suite binary; print one closing line with the totals
# (passed, failed, skipped) and exit non-zero when any suite fails or
# crashes. A test that cannot run here prints "SKIPPED: TEST: why"
# (TEST_SKIP in tests/tmain.h): Check counts it as a pass, this script as a
# skip. A passing suite prints only its skip lines; a failing one all it said.
set -u
pass=0; fail=0; skip=0; bad=""
for t in "$@"; do
    if [ ! -x "$t" ]; then     # a suite that was never built fails, not vanishes
        echo "runtests: $t is missing" >&2
        bad="$bad $(basename "$t")"; fail=$((fail + 1))
        continue
    fi
    out=$("$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -1)
    s=$(printf '%s\n' "$out" | grep -c '^SKIPPED: ')
    f=0; e=0
    if [ -n "$line" ]; then
        n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
        f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
        e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
        pass=$((pass + n - f - e - s)); fail=$((fail + f + e)); skip=$((skip + s))
    fi
    if [ $rc -ne 0 ] || [ -z "$line" ] || [ $((f + e)) -ne 0 ]; then
        printf '%s\n' "$out"
        bad="$bad $(basename "$t")"
        [ -z "$line" ] && fail=$((fail + 1))
    else
        printf '%s\n' "$out" | grep '^SKIPPED: ' | sed "s|^|$(basename "$t"): |"
    fi
done
[ -n "$bad" ] && echo "failing suites:$bad"
echo "tests: $pass passed, $fail failed, $skip skipped"
[ -z "$bad" ] && [ $fail -eq 0 ]
