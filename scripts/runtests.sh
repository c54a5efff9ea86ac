#!/bin/sh
# Run each Check suite binary; print one closing line with the totals and
# exit non-zero when any suite fails or crashes.
set -u
pass=0; fail=0; bad=""
for t in "$@"; do
    if [ ! -x "$t" ]; then     # a suite that was never built fails, not vanishes
        echo "runtests: $t is missing" >&2
        bad="$bad $(basename "$t")"; fail=$((fail + 1))
        continue
    fi
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -1)
    if [ -n "$line" ]; then
        n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
        f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
        e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
        pass=$((pass + n - f - e)); fail=$((fail + f + e))
    fi
    if [ $rc -ne 0 ]; then
        bad="$bad $(basename "$t")"
        [ -z "$line" ] && fail=$((fail + 1))
    fi
done
[ -n "$bad" ] && echo "failing suites:$bad"
echo "tests: $pass passed, $fail failed"
[ -z "$bad" ] && [ $fail -eq 0 ]
