#!/bin/sh
# make explore: the hypothesis as one picture. Is a faster optimizer a better
# network? Heavy ball at beta = 0, 0.3, 0.6, 0.9 (one optc compare --sweep)
# against gradient descent and Nesterov, the demo's networks
# (examples/demo/*.opt, ~42K parameters, Fashion-MNIST shape), each trained
# over 2 seeds on the real Fashion-MNIST. Each network's optimizer rate on
# quadratics (optc analyze, kappa = 100, h = 1/L) stands beside its accuracy.
# Writes runs/explore/: table.txt (the table printed), summary.csv,
# rate.png (test accuracy against the rate), sweep.png (against beta),
# curves.png (per epoch), and per variant the run directories.
#
# beta = 0 is gradient descent exactly (the zero-coefficient edge is folded
# away, the graph is gd's): its row repeats gd's to the digit, a check built
# into the picture.
#
# Budget: under 15 minutes on a 2-core machine: 12 runs (6 networks x 2
# seeds) of 2 epochs on the first 40,000 training images (batch 64, cosine),
# the full 10,000-image test set, two at a time with one thread each. Knobs
# (environment):
#   EXPLORE_EPOCHS (default 2), EXPLORE_LIMIT (training images, default 40000;
#   0 = all), EXPLORE_SEEDS (default 2), EXPLORE_BETAS (default 0,0.3,0.6,0.9),
#   EXPLORE_JOBS (default 2), EXPLORE_THREADS (threads per job, default 1),
#   EXPLORE_DATA (default fashion-mnist), EXPLORE_OUT (default runs/explore),
#   EXPLORE_KEEP=1 keeps finished runs of an earlier (interrupted) explore.
set -eu
BUILD=${1:-build}
OPTC=$BUILD/optc
OUT=${EXPLORE_OUT:-runs/explore}
EPOCHS=${EXPLORE_EPOCHS:-2}
LIMIT=${EXPLORE_LIMIT:-40000}
SEEDS=${EXPLORE_SEEDS:-2}
BETAS=${EXPLORE_BETAS:-0,0.3,0.6,0.9}
THREADS=${EXPLORE_THREADS:-1}
JOBS=${EXPLORE_JOBS:-2}
DATA=${EXPLORE_DATA:-fashion-mnist}

start=$(date +%s)
[ -x "$OPTC" ] || { echo "explore: $OPTC is missing; run make first" >&2; exit 1; }
if [ "${EXPLORE_KEEP:-0}" != 1 ]; then
    rm -rf "$OUT"
fi
mkdir -p "$OUT"

images=all; [ "$LIMIT" -gt 0 ] && images=$LIMIT
echo "== optc explore: heavy ball's beta against gradient descent and Nesterov"
echo "   specs: examples/demo/{gd,nesterov,heavy_ball}.opt, --sweep beta=$BETAS"
echo "   data $DATA, epochs $EPOCHS, training images $images, $SEEDS seeds,"
echo "   $JOBS jobs x $THREADS thread(s), out $OUT"

limit_flag=""
[ "$LIMIT" -gt 0 ] && limit_flag="--limit $LIMIT"
# The compare log keeps the progress lines; table.txt only the table.
status=0
# shellcheck disable=SC2086
"$OPTC" compare examples/demo/gd.opt examples/demo/nesterov.opt examples/demo/heavy_ball.opt \
    --sweep "beta=$BETAS" --data "$DATA" --seeds "$SEEDS" --epochs "$EPOCHS" \
    --threads "$THREADS" --jobs "$JOBS" $limit_flag --out "$OUT" >"$OUT/compare.log" 2>&1 ||
    status=$?
sed -n '/^rate: /,/^wrote .*summary.csv/p' "$OUT/compare.log" | grep -v '^wrote ' >"$OUT/table.txt" || true
if [ $status -ne 0 ] || [ ! -s "$OUT/table.txt" ]; then
    tail -n 30 "$OUT/compare.log" >&2
    echo "explore: optc compare failed (status $status); the log is $OUT/compare.log" >&2
    exit 1
fi
cat "$OUT/table.txt"

end=$(date +%s)
missing=""
for p in rate.png sweep.png curves.png; do
    [ -s "$OUT/$p" ] || missing="$missing $p"
done
echo "== wrote $OUT/table.txt, $OUT/summary.csv, $OUT/rate.png, $OUT/sweep.png, $OUT/curves.png"
echo "== explore wall time: $((end - start)) s"
if [ -n "$missing" ]; then
    echo "explore: not written:$missing (is gnuplot installed? see $OUT/gnuplot.log)" >&2
    exit 1
fi
