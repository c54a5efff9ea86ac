#!/bin/sh
# gradcheck_all.sh BUILD — every example network's gradcheck at batches
# 1 2 4 8 and seeds 1 2 3 (make gradcheck-all). Builds the programs with
# scripts/examples.sh into BUILD/bin, runs JOBS checks at a time (default 2)
# with GC_ARGS (default "--samples 1 --tensors 8": sampled coordinates and
# a random direction on 8 random tensors, float vs double on all of them;
# the whole network at every point costs hours on the big CIFAR nets), and
# prints one line per run, the largest errors per network and overall.
# NETS limits the networks (space-separated names). Exit 1 when any run
# fails. Run from the project root.
set -eu
O=${1:-build}
JOBS=${JOBS:-2}
GC_ARGS=${GC_ARGS:---samples 1 --tensors 8}
BATCHES=${BATCHES:-1 2 4 8}
SEEDS=${SEEDS:-1 2 3}
scripts/examples.sh "$O" >/dev/null
out=$O/gradcheck-all
rm -rf "$out"
mkdir -p "$out"
nets=${NETS:-$(for s in examples/*.opt; do "$O/optc" list "$s"; done)}
for net in $nets; do
    for b in $BATCHES; do
        for s in $SEEDS; do
            echo "$net $b $s"
        done
    done
done > "$out/jobs"
# one run: its output in $out/NET.bBATCH.sSEED, its status in a .rc beside
export O out GC_ARGS
xargs -P "$JOBS" -L 1 sh -c '
    f="$out/$0.b$1.s$2"
    "$O/bin/$0" gradcheck --batch "$1" --seed "$2" $GC_ARGS > "$f" 2>&1
    echo $? > "$f.rc"
    echo "$0 batch $1 seed $2: $(tail -1 "$f")"
' < "$out/jobs"
fails=0
for f in "$out"/*.rc; do
    [ "$(cat "$f")" = 0 ] || { fails=$((fails + 1)); echo "FAILED: ${f%.rc}" >&2; }
done
# summary: the largest of each error per network, from the closing lines
printf '%-24s %5s %12s %12s %12s %8s\n' network runs fd_rel_err dir_rel_err float_rel_err kinks
for net in $nets; do
    runs=$(ls "$out/$net".b*.s*.rc | wc -l)
    cat "$out/$net".b*.s[0-9] | awk -v net="$net" -v runs="$runs" '
        /^gradcheck: (passed|FAILED)/ {
            for (i = 1; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "fd_rel_err" && kv[2] + 0 > fd) fd = kv[2] + 0
                if (kv[1] == "dir_rel_err" && kv[2] + 0 > dir) dir = kv[2] + 0
                if (kv[1] == "float_rel_err" && kv[2] + 0 > fl) fl = kv[2] + 0
            }
        }
        /^gradcheck: kinks:/ { k += $3 }
        END { printf "%-24s %5d %12.3e %12.3e %12.3e %8d\n", net, runs, fd, dir, fl, k }'
done | tee "$out/summary"
awk 'NR > 0 { if ($3 > a) a = $3; if ($4 > b) b = $4; if ($5 > c) c = $5 }
     END { printf "overall: max fd_rel_err %.3e, dir_rel_err %.3e, float_rel_err %.3e\n", a, b, c }' \
    "$out/summary"
echo "gradcheck-all: $fails failed run(s); outputs in $out"
[ "$fails" -eq 0 ]
