#!/bin/sh
# Run each Check suite binary; print one closing line with the totals
# (passed, failed, skipped) and exit non-zero when any suite fails or
# crashes. A test that cannot run here prints "SKIPPED: TEST: why"
# (TEST_SKIP in tests/tmain.h): Check counts it as a pass, this script as a
# skip. A passing suite prints only its skip lines; a failing one all it said.
# TEST_JOBS suites run at once (default: the processors here, at most 4:
# a suite trains networks with threads of its own, and each can take a GB
# or more); the suites are independent (each works in its own temporary
# directories); the reports come in the order of the arguments whatever
# order they end in.
set -u
np=$(nproc 2>/dev/null || echo 1)
[ "$np" -gt 4 ] 2>/dev/null && np=4
jobs=${TEST_JOBS:-$np}
case $jobs in ''|*[!0-9]*|0) echo "runtests: TEST_JOBS must be a number >= 1" >&2; exit 2 ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/optc-runtests-XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
# one suite: its output and exit status in $tmp/N.out, $tmp/N.rc
i=0
for t in "$@"; do
    i=$((i + 1))
    printf '%s %s\n' "$i" "$t"
done | xargs -P "$jobs" -L 1 sh -c 'if [ -x "$2" ]; then "$2" >"$0/$1.out" 2>&1; echo $? >"$0/$1.rc"; fi' "$tmp"
pass=0; fail=0; skip=0; bad=""
i=0
for t in "$@"; do
    i=$((i + 1))
    if [ ! -x "$t" ]; then     # a suite that was never built fails, not vanishes
        echo "runtests: $t is missing" >&2
        bad="$bad $(basename "$t")"; fail=$((fail + 1))
        continue
    fi
    out=$(cat "$tmp/$i.out" 2>/dev/null); rc=$(cat "$tmp/$i.rc" 2>/dev/null || echo 255)
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -1)
    s=$(printf '%s\n' "$out" | grep -c '^SKIPPED: ')
    f=0; e=0
    if [ -n "$line" ]; then
        n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
        f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
        e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
        pass=$((pass + n - f - e - s)); fail=$((fail + f + e)); skip=$((skip + s))
    fi
    if [ "$rc" -ne 0 ] || [ -z "$line" ] || [ $((f + e)) -ne 0 ]; then
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
