#!/bin/sh
# fuzz.sh — build optc's front end and the runtime's file readers with
# libFuzzer + ASan + UBSan and fuzz them (two harnesses: fuzz_frontend for
# specs, fuzz_readers for safetensors, IDX plain and gzip, CIFAR files).
#
#   scripts/fuzz.sh [SECONDS]   replay the regression inputs, then run a
#                               campaign of SECONDS in all (default 600): two
#                               thirds on the front end, one third on the
#                               readers
#   scripts/fuzz.sh replay      build and replay the regression inputs only
#   FUZZ_FORK=1 scripts/fuzz.sh N   a long campaign that keeps going after a
#                               finding (libFuzzer -fork=1) and fails at the end
#                               (FUZZ_SKIP_REPLAY=1: start it despite a known
#                               failing regression input)
#
# Everything is built in build/fuzz (the compiler objects through the
# Makefile with clang, so the build is incremental). The campaign keeps its
# corpus in build/fuzz/corpus between runs and is seeded with examples/*.opt,
# tests/bad/*.opt, tests/inject/*.opt and tests/fuzz/regress/*. Any crash, hang (> 5 s for one
# input), leak, out-of-memory (> 2048 MB) or sanitizer report fails the run
# with the input saved under build/fuzz/artifacts/; copy it into
# tests/fuzz/regress/ once fixed, so make check replays it forever. The
# readers' campaign keeps build/fuzz/corpus-readers, is seeded with
# tests/fuzz/readers/* (small valid files, first byte = which reader; see
# fuzz_readers.c) and saves findings as build/fuzz/artifacts/readers-*; copy
# them into tests/fuzz/readers/ once fixed.
set -u
cd "$(dirname "$0")/.." || exit 1

arg=${1:-600}
B=${FUZZ_BUILD:-build/fuzz}   # FUZZ_BUILD: a second campaign beside a running one
CLANG=${FUZZ_CC:-clang}
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "fuzz: $CLANG not found (install clang and libclang-rt-dev)" >&2
    exit 1
fi
case $arg in
    replay) ;;
    ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS | replay]" >&2; exit 2 ;;
esac

# The compiler library, instrumented. WARN is emptied: the strict list is
# enforced by the gcc build; clang's warnings differ and are not the point.
mkdir -p $B
make -s O=$B CC="$CLANG" OPT="-O1 -g" WARN="-w" SAN="$SAN" $B/liboptc.a >$B/make.log 2>&1 || {
    cat $B/make.log >&2; echo "fuzz: building the front end failed" >&2; exit 1; }
mkdir -p $B/seeds $B/corpus $B/artifacts
bin=$B/fuzz_frontend
if [ ! -x $bin ] || [ tests/fuzz/fuzz_frontend.c -nt $bin ] || [ $B/liboptc.a -nt $bin ]; then
    "$CLANG" -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O1 -g \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
        -Icompiler -Iruntime -I$B/grammar -o $bin tests/fuzz/fuzz_frontend.c $B/liboptc.a -lm || {
        echo "fuzz: linking the harness failed" >&2; exit 1; }
fi

# The readers: runtime/safetensors.c, data.c and rng.c compiled straight
# into the harness (no OpenMP, BLAS or driver needed).
rbin=$B/fuzz_readers
RSRC="tests/fuzz/fuzz_readers.c runtime/safetensors.c runtime/data.c runtime/rng.c"
stale=0
[ -x $rbin ] || stale=1
for f in $RSRC runtime/rt.h; do [ "$f" -nt $rbin ] && stale=1; done
if [ $stale = 1 ]; then
    "$CLANG" -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O1 -g \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
        -Iruntime -o $rbin $RSRC -lz -lm || {
        echo "fuzz: linking the readers' harness failed" >&2; exit 1; }
fi

# Stray environment from a sanitizer test run must not change the verdict.
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
OPTS="-timeout=5 -rss_limit_mb=2048 -max_len=65536 -detect_leaks=1"

# Replay: every regression input and every seed once.
rm -f $B/seeds/*
for f in examples/*.opt tests/bad/*.opt tests/inject/*.opt; do
    [ -f "$f" ] && cp "$f" "$B/seeds/$(echo "$f" | tr / _)"
done
set -- $(ls tests/fuzz/regress/* $B/seeds/* 2>/dev/null)
if [ $# -gt 0 ] && [ "${FUZZ_SKIP_REPLAY:-0}" != 1 ]; then
    if ! $bin $OPTS "$@" >$B/replay.log 2>&1; then
        tail -n 60 $B/replay.log >&2
        echo "fuzz: a regression input or seed fails (log: $B/replay.log)" >&2
        exit 1
    fi
    echo "fuzz: replayed $# regression inputs and seeds"
fi
set -- $(ls tests/fuzz/readers/* 2>/dev/null)
if [ $# -gt 0 ] && [ "${FUZZ_SKIP_REPLAY:-0}" != 1 ]; then
    if ! $rbin $OPTS "$@" >$B/replay-readers.log 2>&1; then
        tail -n 60 $B/replay-readers.log >&2
        echo "fuzz: a readers' regression input or seed fails (log: $B/replay-readers.log)" >&2
        exit 1
    fi
    echo "fuzz: replayed $# readers' inputs"
fi
[ "$arg" = replay ] && exit 0
rsecs=$((arg / 3))
fsecs=$((arg - rsecs))

fork=
[ "${FUZZ_FORK:-0}" = 1 ] && fork="-fork=1 -ignore_timeouts=1 -ignore_crashes=1 -ignore_ooms=1"
rm -f $B/artifacts/*

# campaign NAME BINARY SECONDS CORPUS [DICT] -- SEEDS...: one libFuzzer run;
# prints a line and returns 0 when it found nothing.
campaign() {
    name=$1 bin=$2 secs=$3 corpus=$4 dict=$5
    shift 5
    mkdir -p $corpus
    $bin $OPTS $dict $fork -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix=$B/artifacts/$name- $corpus "$@" >$B/campaign-$name.log 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' $B/campaign-$name.log | tail -1)
    [ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9][0-9]*\):* .*/\1/p' $B/campaign-$name.log | tail -1)
    ncorpus=$(ls $corpus | wc -l)
    found=$(ls $B/artifacts | grep -c "^$name-")
    if [ $rc -ne 0 ] || [ "$found" -ne 0 ]; then
        ls $B/artifacts | grep "^$name-" >&2
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written|contract violated' \
            $B/campaign-$name.log >&2
        echo "fuzz: $name FAILED after ${execs:-?} executions (log: $B/campaign-$name.log);" \
            "reproduce with" >&2
        echo "  $bin $B/artifacts/$name-<file>" >&2
        return 1
    fi
    echo "fuzz: $name ${secs} s, ${execs:-?} executions, corpus $ncorpus inputs, no crash, hang," \
        "leak or sanitizer report"
}

dict=
[ -f tests/fuzz/optc.dict ] && dict=-dict=tests/fuzz/optc.dict
status=0
campaign frontend $bin $fsecs $B/corpus "$dict" $B/seeds tests/fuzz/regress || status=1
if [ $rsecs -gt 0 ]; then   # 0 would mean "no limit" to libFuzzer
    campaign readers $rbin $rsecs $B/corpus-readers "" tests/fuzz/readers || status=1
fi
exit $status
