#!/bin/sh
# make reproduce (documented, not run in CI): trains the Fashion-MNIST example
# networks with their full schedules (cosine, the augmentation their train
# blocks name, REPRO_EPOCHS epochs) over 3 seeds with optc compare, then
# writes RESULTS.md: the table, the plot, the exact commands, the machine and
# the wall time. It takes many hours on a 2-core machine (see RESULTS.md);
# an interrupted run is continued by running it again (finished runs are
# kept, interrupted ones resume from their checkpoint).
#
# Knobs (environment): REPRO_EPOCHS (default 30), REPRO_SEEDS (3),
# REPRO_LIMIT (training images, default all), REPRO_TEST_LIMIT (test images,
# default all), REPRO_THREADS (2), REPRO_JOBS (runs at once, 1),
# REPRO_OUT (runs/reproduce), REPRO_NETS (spec:net list, default below),
# REPRO_RESULTS (RESULTS.md).
set -eu
BUILD=${1:-build}
OPTC=$BUILD/optc
OUT=${REPRO_OUT:-runs/reproduce}
EPOCHS=${REPRO_EPOCHS:-30}
SEEDS=${REPRO_SEEDS:-3}
LIMIT=${REPRO_LIMIT:-0}
TEST_LIMIT=${REPRO_TEST_LIMIT:-0}
THREADS=${REPRO_THREADS:-2}
JOBS=${REPRO_JOBS:-1}
RESULTS=${REPRO_RESULTS:-RESULTS.md}
NETS=${REPRO_NETS:-"examples/resnet.opt:resnet20_fmnist examples/heavy_ball.opt:hb20_fmnist \
examples/nesterov.opt:nesterov20_fmnist examples/momentum.opt:momentum20_fmnist \
examples/lm.opt:lm20_fmnist examples/demo/gd.opt examples/demo/densenet.opt"}

[ -x "$OPTC" ] || { echo "reproduce: $OPTC is missing; run make first" >&2; exit 1; }
start=$(date +%s)
mkdir -p "$OUT"
limit_flag=""
[ "$LIMIT" -gt 0 ] && limit_flag="--limit $LIMIT"
[ "$TEST_LIMIT" -gt 0 ] && limit_flag="$limit_flag --test-limit $TEST_LIMIT"
# shellcheck disable=SC2086
set -- "$OPTC" compare $NETS --data fashion-mnist --seeds "$SEEDS" --epochs "$EPOCHS" \
    --threads "$THREADS" --jobs "$JOBS" $limit_flag --out "$OUT"
echo "reproduce: $*"
# A pipeline's status is tee's: compare's own goes through a file.
rm -f "$OUT/compare.status"
{ "$@" || echo $? > "$OUT/compare.status"; } | tee "$OUT/compare.txt"
status=$(cat "$OUT/compare.status" 2>/dev/null || echo 0)
end=$(date +%s)
wall=$((end - start))

# RESULTS.md: everything needed to judge and to re-run. runs/ is not
# committed, so the plot is copied next to it.
plotdir=$(dirname "$RESULTS")/results
mkdir -p "$plotdir"
[ -f "$OUT/curves.png" ] && cp "$OUT/curves.png" "$plotdir/reproduce-curves.png"
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || echo unknown)
cores=$(nproc 2>/dev/null || echo '?')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || echo '?')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "# Results: optimizer-inspired networks on Fashion-MNIST"
    echo
    echo "Written by \`make reproduce\` (scripts/reproduce.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'),"
    echo "optc commit $commit. Wall time of this run: $wall s (runs finished by an earlier,"
    echo "interrupted invocation are not counted again). Exit status of compare: $status."
    echo
    echo "## Command"
    echo
    echo '```'
    echo "REPRO_EPOCHS=$EPOCHS REPRO_SEEDS=$SEEDS REPRO_LIMIT=$LIMIT REPRO_TEST_LIMIT=$TEST_LIMIT REPRO_THREADS=$THREADS REPRO_JOBS=$JOBS \\"
    echo "  REPRO_NETS=\"$NETS\" make reproduce"
    echo "# which runs:"
    echo "$*"
    echo '```'
    echo
    if [ "$LIMIT" -gt 0 ] || [ "$TEST_LIMIT" -gt 0 ] || [ "$EPOCHS" -lt 30 ] || [ -n "${REPRO_NETS:-}" ]; then
        echo "**This is a reduced run** (fewer epochs, images or networks than the full"
        echo "schedule): its accuracies say nothing about what the networks reach when"
        echo "trained fully. The full run is \`make reproduce\` with no REPRO_* settings."
        echo
    fi
    echo "Each network trains with SGD (momentum 0.9), the cosine schedule and the"
    echo "augmentation its train block names (crop(2) for the *_fmnist examples, none"
    echo "for examples/demo; add \`flip\` to a train block to flip too), for $EPOCHS epochs on"
    echo "$( [ "$LIMIT" -gt 0 ] && echo "the first $LIMIT" || echo "all 60,000") training images; test accuracy is on the"
    echo "$( [ "$TEST_LIMIT" -gt 0 ] && echo "first $TEST_LIMIT" || echo "10,000") test images after the last epoch, mean +- sample std over $SEEDS seeds."
    echo
    echo "## Machine"
    echo
    echo "- CPU: $cpu, $cores cores; memory $mem"
    echo "- threads per run: $THREADS"
    echo
    echo "## Table"
    echo
    echo '```'
    sed -n '/^spec /,/^wrote/p' "$OUT/compare.txt" | grep -v '^wrote'
    echo '```'
    echo
    echo "Raw numbers: \`$OUT/summary.csv\`; per run: \`$OUT/<label>/seed<S>/log.csv\`."
    echo
    echo "## Learning curves"
    echo
    echo "![test accuracy per epoch](results/reproduce-curves.png)"
    echo
    echo "The aim of issue 5 is >= 95 % test accuracy at <= 0.3M parameters; the table"
    echo "above is what this run reached."
} > "$RESULTS"
echo "reproduce: wrote $RESULTS (wall time $wall s)"
exit $status
