#!/bin/sh
# make demo: the README's first command. Compiles the gradient descent, heavy
# ball, Nesterov and DenseNet-style demo specs (examples/demo/, Fashion-MNIST
# shape, parameter counts within 10 % of each other), trains each on the real
# Fashion-MNIST, and prints one table. Writes runs/demo/: per spec the run
# directory (log.csv, log.jsonl, summary.json) and the architecture as SVG,
# plus curves.png (test accuracy per epoch, gnuplot) and summary.csv.
#
# Budget: under 10 minutes on a 2-core machine: 3 epochs on the first 50,000
# training images (batch 64, cosine), the full 10,000-image test set, two
# trainings at a time with one thread each (for these small networks that is
# faster than one at a time with two threads, and it does not collapse when
# something else runs). Knobs (environment):
#   DEMO_EPOCHS (default 3), DEMO_LIMIT (training images, default 50000; 0 = all),
#   DEMO_JOBS (default 2), DEMO_THREADS (threads per job, default 1),
#   DEMO_OUT (default runs/demo),
#   DEMO_KEEP=1 keeps finished runs of an earlier (interrupted) demo.
set -eu
BUILD=${1:-build}
OPTC=$BUILD/optc
OUT=${DEMO_OUT:-runs/demo}
EPOCHS=${DEMO_EPOCHS:-3}
LIMIT=${DEMO_LIMIT:-50000}
THREADS=${DEMO_THREADS:-1}
JOBS=${DEMO_JOBS:-2}
# The slowest spec first, so the two job slots finish close together.
SPECS="densenet gd heavy_ball nesterov"

start=$(date +%s)
[ -x "$OPTC" ] || { echo "demo: $OPTC is missing; run make first" >&2; exit 1; }
if [ "${DEMO_KEEP:-0}" != 1 ]; then
    rm -rf "$OUT"
fi
mkdir -p "$OUT"

echo "== optc demo: four optimizers as networks, trained on Fashion-MNIST"
echo "   specs: examples/demo/{gd,heavy_ball,nesterov,densenet}.opt"
images=all; [ "$LIMIT" -gt 0 ] && images=$LIMIT
echo "   epochs $EPOCHS, training images $images, $JOBS jobs x $THREADS thread(s), out $OUT"

echo "== architectures (optc dot | dot -Tsvg)"
for s in $SPECS; do
    if command -v dot >/dev/null 2>&1; then
        "$OPTC" dot "examples/demo/$s.opt" | dot -Tsvg -o "$OUT/$s.svg"
        echo "   $OUT/$s.svg"
    else
        "$OPTC" dot "examples/demo/$s.opt" > "$OUT/$s.dot"
        echo "   $OUT/$s.dot (Graphviz not installed: no SVG)"
    fi
done

echo "== optimizers on quadratics (optc analyze, kappa = 100)"
from=1
for s in $SPECS; do
    "$OPTC" analyze "examples/demo/$s.opt" | sed -n "$from,\$p" | grep -v '^$' | sed 's/^/   /' || true
    from=3
done

echo "== build and train (optc compare)"
limit_flag=""
[ "$LIMIT" -gt 0 ] && limit_flag="--limit $LIMIT"
# shellcheck disable=SC2086
"$OPTC" compare $(for s in $SPECS; do printf 'examples/demo/%s.opt ' "$s"; done) \
    --data fashion-mnist --seeds 1 --epochs "$EPOCHS" --threads "$THREADS" --jobs "$JOBS" $limit_flag \
    --out "$OUT"

end=$(date +%s)
best=$(awk -F, 'NR > 1 && $9 > b { b = $9; n = $1 } END { printf "%s %.2f", n, b }' "$OUT/summary.csv")
echo "== best: ${best% *} at ${best#* } % test accuracy"
echo "== wrote $OUT/summary.csv, $OUT/curves.png, $OUT/<spec>.svg, $OUT/<spec>/seed1/log.csv"
echo "== demo wall time: $((end - start)) s"
