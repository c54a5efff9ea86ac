#!/bin/sh
# make bench: optc's example networks against the same networks in PyTorch
# (bench/torch_bench.py), batch 128, measured so that neither side is held
# back by a setting:
#
# 1. Settings sweep (ResNet-20, first thread count): each side runs once
#    under every combination of OMP_WAIT_POLICY (unset = the runtime's own
#    default, passive, active; or GOMP_SPINCOUNT=10000: libgomp spins ~0.1-1 ms
#    before it sleeps instead of its default ~3-20 ms) and malloc (glibc default; tuned =
#    MALLOC_MMAP_THRESHOLD_/TRIM_THRESHOLD_/TOP_PAD_ raised so freed
#    activations are not unmapped and faulted back in every step). Every
#    setting's figures are printed; each side then runs its two best
#    settings once more (the sides alternating) and keeps the better mean
#    of two (a single run is at the mercy of a slow spell of the machine:
#    run 8f kept a setting on one line and ran its rounds 5-10 % slower than
#    its runner-up would have); PyTorch's best is then tried once more
#    with its model and input in channels_last (NHWC, oneDNN's layout: the
#    -cl settings) and kept if faster. Every other net runs once under that
#    setting, once under the default and (PyTorch) once in the other layout
#    (marked "pick", printed, outside the medians), and each side keeps the
#    fastest for that net's rounds: a setting chosen on ResNet-20 may hold a
#    DenseNet back.
#    PyTorch's inference figure is the faster of its eager model and its
#    traced model frozen for inference (bench/torch_bench.py).
# 2. Rounds: for each net and thread count, optc and PyTorch alternate for
#    BENCH_ROUNDS rounds (optc first in odd rounds, PyTorch first in even
#    ones), so a slow spell of the machine hits both sides alike.
# 3. The table: per side the median of the rounds and their spread
#    (min-max), the ratio of the medians, peak RSS, effective GFLOPS
#    (3 x forward multiply-adds x 2 x train img/s) and its share of this
#    machine's FMA peak (bench/fma_probe.c, AVX-512 and AVX2 where both).
#    Inference times 3x as many forwards as training steps (a forward is
#    a quarter of a step: 10 of them fit inside one of the host's slow
#    spells). Both sides print every timed step (--steps); the table says
#    whether optc's rounds kept within +-10 % of their median and, per
#    side, how many training steps of the rounds ran over 1.25x the
#    fastest: on this shared guest the host has spells of seconds in
#    which the same forward on the same data runs 1.4-1.5x slower, at
#    one thread as at two (BENCHMARKS.md run 12). A second table shows
#    the rounds outside those steps (each round: the median of its steps
#    within 1.25x the fastest of that side, the same rule for both), a
#    view of what a quiet host would show; the medians above stay the
#    figures.
#    The heavy-ball, Nesterov and momentum examples run on the optc side
#    and are compared with ResNet-20 (the same convolutions: their cost per
#    step should match): each of their rounds runs optc's ResNet-20 too,
#    alternated with the variant (run marked "pair"), and the comparison is
#    the variant's median against the median of the ResNet-20 runs of its
#    own rounds, so a slow spell during one net's rounds does not pass for
#    a cost of that net. hb110 / hb110mf: the 110-layer heavy ball (3 x 18
#    steps) stored and built with --memory-free (issue 13): peak RSS and
#    img/s of the two builds against each other, their rounds alternated.
#
# Usage: scripts/bench.sh BUILD_DIR   (make bench passes its $(O))
# Environment knobs:
#   BENCH_QUICK=1     one net (resnet20), 2 threads, one round, 3 steps, no sweep
#   BENCH_THREADS="2" BENCH_ITERS=30 BENCH_WARMUP=2 BENCH_ROUNDS=5
#   BENCH_NETS="resnet20 hb20 nesterov20 momentum20 densenet40 densenet100 hb110 hb110mf"
#   BENCH_DENSE_ITERS=5 (timed steps for DenseNet-100 and hb110*; DenseNet-40
#   times BENCH_ITERS / 2)  BENCH_SWEEP=1
#   BENCH_TIMEOUT=900 (seconds per single run)
#   BENCH_REPRINT=1   print the last run's table again without running
set -u

B=${1:-build}
W=$B/bench
mkdir -p "$W"
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    THREADS=${BENCH_THREADS:-2}; ITERS=${BENCH_ITERS:-3}; WARMUP=${BENCH_WARMUP:-1}
    ROUNDS=${BENCH_ROUNDS:-1}; NETS=${BENCH_NETS:-resnet20}; SWEEP=${BENCH_SWEEP:-0}
    DITERS=${BENCH_DENSE_ITERS:-2}
else
    # 30 steps (about 4 s of ResNet-20): a round's figure is the median of
    # its steps, and the host's slow spells here last 5-15 ResNet-20 steps or more
    # (run 12), so a median of 10 steps could fall inside one
    THREADS=${BENCH_THREADS:-2}; ITERS=${BENCH_ITERS:-30}; WARMUP=${BENCH_WARMUP:-2}
    # 5 rounds: on a shared host a slow spell of a minute or two can take
    # a round down by a third on either side (run 11a: ResNet-20's optc
    # rounds 883 / 540 / 654 img/s, 903-1020 in its pairs minutes later),
    # and one such round moves the median of three
    ROUNDS=${BENCH_ROUNDS:-5}; SWEEP=${BENCH_SWEEP:-1}; DITERS=${BENCH_DENSE_ITERS:-5}
    NETS=${BENCH_NETS:-resnet20 hb20 nesterov20 momentum20 densenet40 densenet100 hb110 hb110mf}
fi
TMO=${BENCH_TIMEOUT:-900}
BATCH=128
TUNED="MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456"
RES=$W/results.txt      # one line per run: "run SIDE NET THREADS SETTING ROUND key=value..."
LOG=$W/bench.log        # everything the runs printed
REPRINT=${BENCH_REPRINT:-0}

say() { echo "# $*" >&2; }
isnum() { case $1 in ''|*[!0-9]*) return 1 ;; esac; }
for v in "$ITERS" "$WARMUP" "$ROUNDS" "$DITERS"; do
    isnum "$v" || { echo "bench: BENCH_ITERS, BENCH_WARMUP, BENCH_ROUNDS, BENCH_DENSE_ITERS must be numbers" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] || { echo "bench: BENCH_ROUNDS must be >= 1" >&2; exit 2; }

# net -> "SPEC OPTCNET TORCHNET [-D ...]"; TORCHNET "-" = optc only
net_spec() {
    dn=densenet_bc100_cifar
    HB110="-D hb20_cifar.stage1.steps=18 -D hb20_cifar.stage2.steps=18 -D hb20_cifar.stage3.steps=18"
    case $1 in
        resnet20)    echo "examples/resnet.opt resnet20_cifar resnet20" ;;
        hb20)        echo "examples/heavy_ball.opt hb20_cifar hb20" ;;
        nesterov20)  echo "examples/nesterov.opt nesterov20_cifar -" ;;
        momentum20)  echo "examples/momentum.opt momentum20_cifar -" ;;
        densenet100) echo "examples/densenet.opt $dn densenet100" ;;
        # depth 40 = 3 dense stages of (40 - 4) / 6 = 6 steps
        densenet40)  echo "examples/densenet.opt $dn densenet40 -D $dn.stage1.steps=6 -D $dn.stage2.steps=6 -D $dn.stage3.steps=6" ;;
        # 110 layers = 3 heavy-ball stages of 18 steps, stored and memory-free
        hb110)       echo "examples/heavy_ball.opt hb20_cifar - $HB110" ;;
        hb110mf)     echo "examples/heavy_ball.opt hb20_cifar - $HB110 --memory-free" ;;
        *) return 1 ;;
    esac
}

# setting name -> environment assignments; a name ending in -cl (PyTorch
# only) runs the model in NHWC (TORCH_BENCH_LAYOUT=channels_last)
setting_env() {
    case $1 in *-cl) echo "TORCH_BENCH_LAYOUT=channels_last $(setting_env "${1%-cl}")"; return ;; esac
    case $1 in
        wdef-mdef) echo "" ;;
        wpas-mdef) echo "OMP_WAIT_POLICY=passive" ;;
        wact-mdef) echo "OMP_WAIT_POLICY=active" ;;
        wdef-mtun) echo "$TUNED" ;;
        wpas-mtun) echo "OMP_WAIT_POLICY=passive $TUNED" ;;
        wact-mtun) echo "OMP_WAIT_POLICY=active $TUNED" ;;
        wspn-mdef) echo "GOMP_SPINCOUNT=10000" ;;
        wspn-mtun) echo "GOMP_SPINCOUNT=10000 $TUNED" ;;
    esac
}
SETTINGS="wdef-mdef wpas-mdef wact-mdef wspn-mdef wdef-mtun wpas-mtun wact-mtun wspn-mtun"

bench_fields() { sed -n 's/^bench: net=[^ ]* batch=[0-9]* threads=[0-9]* //p' | tail -n 1; }

# run SIDE NET THREADS SETTING ROUND: one process, one line in $RES
run() {
    side=$1 net=$2 t=$3 set=$4 round=$5
    spec=$(net_spec "$net")
    # shellcheck disable=SC2086
    set -- $spec
    tnet=$3
    it=$ITERS
    case $net in densenet40) it=$(( (ITERS + 1) / 2 )) ;; densenet*|hb110*) it=$DITERS ;; esac
    envs=$(setting_env "$set")
    say "$side $net threads=$t $set round $round"
    if [ "$side" = optc ]; then
        # shellcheck disable=SC2086
        out=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT $envs timeout "$TMO" "$W/$net" bench --batch $BATCH \
              --threads "$t" --iters "$it" --infer-iters $((3 * it)) --warmup "$WARMUP" --steps 2>>"$LOG")
    else
        # shellcheck disable=SC2086
        out=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT $envs timeout "$TMO" "$PY" bench/torch_bench.py --net "$tnet" \
              --batch $BATCH --threads "$t" --iters "$it" --infer-iters $((3 * it)) --warmup "$WARMUP" \
              --steps 2>>"$LOG")
        m=$(echo "$out" | sed -n 's/^info: .* madds=\([0-9]*\).*/\1/p')
        [ -n "$m" ] && ! grep -q "^tinfo $net " "$RES" && echo "tinfo $net madds=$m" >>"$RES"
    fi
    echo "$out" >>"$LOG"
    st=$(echo "$out" | sed -n 's/^steps: //p')
    [ -n "$st" ] && echo "steps $side $net $t $set $round $st" >>"$RES"
    f=$(echo "$out" | bench_fields)
    if [ -n "$f" ]; then
        echo "run $side $net $t $set $round $f" >>"$RES"
    else
        say "$side $net threads=$t $set: no bench line (see $LOG)"
    fi
}

# the best setting of a side (by the mean train img/s of its runs) among
# its settings with the most runs in ROUND ("sweep": resnet20's settings
# sweep, where the two best ran twice; "pick": one net's candidates), for
# NET (any net when empty), or the default; with TOP, the TOP best by
# their first run, best first
best_setting() {
    awk -v side="$1" -v round="$2" -v net="${3:-}" -v top="${4:-0}" '$1 == "run" && $2 == side && $6 == round && (net == "" || $3 == net) {
        for (i = 7; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] != "train_img_s") continue
            if (!($5 in n)) { first[$5] = kv[2] + 0; order[++m] = $5 }
            sum[$5] += kv[2]; n[$5]++
        }
    } END {
        if (top > 0) {
            for (k = 1; k <= m && k <= top; k++) {
                b = ""; for (i = 1; i <= m; i++) if (!(order[i] in done) && (b == "" || first[order[i]] > first[b])) b = order[i]
                done[b] = 1; printf "%s ", b
            }
            print ""; exit
        }
        mx = 0; for (i = 1; i <= m; i++) if (n[order[i]] > mx) mx = n[order[i]]
        b = ""; for (i = 1; i <= m; i++) if (n[order[i]] == mx && (b == "" || sum[order[i]] / n[order[i]] > sum[b] / n[b])) b = order[i]
        print (b == "" ? "wdef-mdef" : b)
    }' "$RES"
}

# pick SIDE NET T BEST: the setting SIDE runs NET's rounds with. The sweep
# runs on resnet20 only, and a setting that suits one net can hold another
# back (PyTorch's DenseNets ran slower under the spin count resnet20 chose,
# and at half speed in NCHW when resnet20 kept it), so every other net
# tries the sweep's choice, the runtime's default and, for PyTorch, the
# choice in the other layout (channels_last or not) once each (runs
# marked "pick", outside the medians) and keeps the fastest.
pick() {
    side=$1 net=$2 t=$3 best=$4
    if [ "$net" = resnet20 ] || [ "$SWEEP" != 1 ]; then
        echo "$best"; return
    fi
    cands=$best
    [ "$best" != wdef-mdef ] && cands="$cands wdef-mdef"
    if [ "$side" = torch ]; then
        case $best in *-cl) cands="$cands ${best%-cl}" ;; *) cands="$cands $best-cl" ;; esac
    fi
    if [ "$cands" = "$best" ]; then
        echo "$best"; return
    fi
    for c in $cands; do
        run "$side" "$net" "$t" "$c" pick
    done
    best_setting "$side" pick "$net"
}

if [ "$REPRINT" != 1 ]; then
    : > "$RES"
    : > "$LOG"
    T0=$(date +%s)
    # --- PyTorch: installed here and only here (make check never needs it)
    if ! scripts/deps.sh python3-torch >>"$LOG" 2>&1; then
        say "could not install python3-torch (see $LOG); continuing without it"
    fi
    PY=$(scripts/torchpy.sh) || PY=""
    TORCH_VERSION=none
    [ -n "$PY" ] && TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)
    [ -z "$PY" ] && say "no python3 here can import torch: optc's figures only"

    # --- the machine and its FMA peak
    PEAK=0 PEAK2=0
    if ${CC:-cc} -std=c11 -O2 -o "$W/fma_probe" bench/fma_probe.c >>"$LOG" 2>&1; then
        PROBE=$("$W/fma_probe")
        echo "$PROBE" >>"$LOG"
        PEAK=$(echo "$PROBE" | sed -n 's/.*fma_peak_gflops_per_core=\([0-9.]*\).*/\1/p')
        PEAK2=$(echo "$PROBE" | sed -n 's/.*avx2_peak_gflops_per_core=\([0-9.]*\).*/\1/p')
        say "FMA probe: $(echo "$PROBE" | tr '\n' ' ')"
    else
        say "could not build bench/fma_probe.c (see $LOG); no peak column"
    fi
    CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
    FLAGS=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' |
            grep -E '^(avx2|fma|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx512_fp16|amx_tile)$' | tr '\n' ' ')
    {
        echo "meta py=$PY"; echo "meta torch=$TORCH_VERSION"; echo "meta peak=${PEAK:-0}"
        echo "meta peak2=${PEAK2:-0}"; echo "meta cpu=$CPU, $(nproc) cores"; echo "meta flags=$FLAGS"
        echo "meta nets=$NETS"; echo "meta threads=$THREADS"; echo "meta rounds=$ROUNDS"
        echo "meta iters=$ITERS (DenseNet-40: $(( (ITERS + 1) / 2 )), DenseNet-100 and hb110: $DITERS) after $WARMUP warm-up"
    } >>"$RES"

    # --- build the optc side
    [ -x "$B/optc" ] || { echo "bench: $B/optc missing (make first)" >&2; exit 1; }
    for net in $NETS; do
        spec=$(net_spec "$net") || { echo "bench: unknown net '$net'" >&2; exit 2; }
        # shellcheck disable=SC2086
        set -- $spec
        file=$1 onet=$2
        shift 3
        if ! "$B/optc" build "$file" -n "$onet" "$@" -o "$W/$net" >>"$LOG" 2>&1; then
            say "optc build $file -n $onet failed (see $LOG)"
            continue
        fi
        madds=$("$W/$net" info --json 2>>"$LOG" | sed -n 's/.*"madds":\([0-9]*\).*/\1/p')
        [ -n "$madds" ] && echo "info $net madds=$madds" >>"$RES"
    done

    # --- 1. settings sweep
    first=${THREADS%% *}
    case " $NETS " in *" resnet20 "*) ;; *) SWEEP=0 ;; esac
    if [ "$SWEEP" = 1 ]; then
        for set in $SETTINGS; do
            run optc resnet20 "$first" "$set" sweep
            [ -n "$PY" ] && run torch resnet20 "$first" "$set" sweep
        done
    fi
    if [ "$SWEEP" = 1 ]; then
        # each side's two best settings once more, alternating: one run per
        # setting is at the mercy of a slow spell; the kept setting is the
        # better mean of two
        set -- $(best_setting optc sweep "" 2)
        o1=${1:-} o2=${2:-}
        set -- $([ -n "$PY" ] && best_setting torch sweep "" 2)
        t1=${1:-} t2=${2:-}
        for pr in "$o1:$t1" "$o2:$t2"; do    # (run() sets $set)
            os=${pr%%:*} ts=${pr#*:}
            [ -n "$os" ] && run optc resnet20 "$first" "$os" sweep
            [ -n "$ts" ] && run torch resnet20 "$first" "$ts" sweep
        done
    fi
    OSET=$(best_setting optc sweep); TSET=$(best_setting torch sweep)
    if [ "$SWEEP" = 1 ] && [ -n "$PY" ]; then
        # PyTorch's best setting again with its tensors in channels_last,
        # twice like the kept one
        run torch resnet20 "$first" "$TSET-cl" sweep
        run torch resnet20 "$first" "$TSET-cl" sweep
        TSET=$(best_setting torch sweep)
    fi
    echo "meta osetting=$OSET" >>"$RES"; echo "meta tsetting=$TSET" >>"$RES"
    say "settings kept: optc $OSET, PyTorch $TSET"

    # --- 2. alternating rounds
    for net in $NETS; do
        [ -x "$W/$net" ] || continue
        # shellcheck disable=SC2046
        set -- $(net_spec "$net")
        tnet=$3
        for t in $THREADS; do
            # hb110 / hb110mf run optc's resnet20 setting: they are compared with each
            # other; nesterov20 / momentum20 too: they are compared with resnet20 alone
            # (same cost per step), so only the network may differ
            case $net in
                hb110*|nesterov20|momentum20) os=$OSET ;;
                *) os=$(pick optc "$net" "$t" "$OSET") ;;
            esac
            ts=$TSET tw=""
            if [ -n "$PY" ] && [ "$tnet" != - ]; then
                ts=$(pick torch "$net" "$t" "$TSET"); tw=", PyTorch $ts"
            fi
            echo "meta set_${net}_$t=$os$tw" >>"$RES"
            r=1
            while [ $r -le "$ROUNDS" ]; do
                if [ "$net" = hb110mf ] && [ -x "$W/hb110" ]; then
                    break       # alternated with hb110 below
                elif [ "$net" = hb110 ] && [ -x "$W/hb110mf" ]; then
                    # the stored and the memory-free build alternate like optc and PyTorch
                    if [ $((r % 2)) = 1 ]; then
                        run optc hb110 "$t" "$os" $r; run optc hb110mf "$t" "$os" $r
                    else
                        run optc hb110mf "$t" "$os" $r; run optc hb110 "$t" "$os" $r
                    fi
                    net=hb110   # run() sets net
                else
                    # the same-convolution variants: ResNet-20 alternated with them
                    pair="" vnet=$net vtnet=$tnet
                    case $net in hb20|nesterov20|momentum20) [ -x "$W/resnet20" ] && pair=1 ;; esac
                    if [ -n "$pair" ] && [ $((r % 2)) = 0 ]; then
                        run optc resnet20 "$t" "$os" "pair-$vnet"; net=$vnet tnet=$vtnet   # run() sets them
                    fi
                    if [ -z "$PY" ] || [ "$tnet" = - ]; then
                        run optc "$net" "$t" "$os" $r
                    elif [ $((r % 2)) = 1 ]; then
                        run optc "$net" "$t" "$os" $r; run torch "$net" "$t" "$ts" $r
                    else
                        run torch "$net" "$t" "$ts" $r; run optc "$net" "$t" "$os" $r
                    fi
                    if [ -n "$pair" ] && [ $((r % 2)) = 1 ]; then
                        run optc resnet20 "$t" "$os" "pair-$vnet"; net=$vnet tnet=$vtnet
                    fi
                fi
                r=$((r + 1))
            done
        done
    done
    echo "meta seconds=$(( $(date +%s) - T0 ))" >>"$RES"
    echo "meta load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >>"$RES"
else
    [ -f "$RES" ] || { echo "bench: no earlier run in $W" >&2; exit 1; }
fi

# --- 3. the tables ------------------------------------------------------------
# SPELL: a training step over SPELL x the fastest of its side's rounds ran
# in one of the host's slow spells (BENCHMARKS.md run 12)
awk -v SPELL=1.25 -v batch="$BATCH" '
# the median of the rounds of a side, net and thread count; with pair, of
# the ResNet-20 runs alternated with the rounds of variant net pair
function med(side, net, t, key, pair,   n, i, a) {
    n = 0
    for (i = 1; i <= nrun; i++)
        if (R_side[i] == side && R_net[i] == net && R_t[i] == t && ((i, key) in V) &&
            (pair == "" ? R_set[i] != "sweep" && R_set[i] != "pick" && R_set[i] != "pair" : R_set[i] == "pair" && R_pair[i] == pair))
            a[++n] = V[i, key] + 0
    isort(a, n)
    lo = n ? a[1] : ""; hi = n ? a[n] : ""; cnt = n
    if (n == 0) return ""
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function num(x) { return x == "" ? "-" : sprintf("%.0f", x) }
function spread(m) { return m == "" ? "-" : sprintf("%.0f [%.0f-%.0f]", m, lo, hi) }
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2fx", a / b) }
function share(img, madds, t,   g) {
    if (img == "" || madds == "") return "-"
    g = 6 * madds * img / 1e9
    if (peak + 0 > 0) return sprintf("%.0f (%.0f%%)", g, 100 * g / (peak * t))
    return sprintf("%.0f", g)
}
$1 == "meta" { k = $2; sub(/=.*/, "", k); v = $0; sub(/^meta [^=]*=/, "", v); M[k] = v; next }
$1 == "info" { split($3, kv, "="); OM[$2] = kv[2]; next }
$1 == "tinfo" { split($3, kv, "="); TM[$2] = kv[2]; next }
# the timed training steps of each round (and of the ResNet-20 runs paired
# with a variant, under the key net "resnet20@VARIANT") per side, net and
# threads, and the fastest of them
$1 == "steps" && ($6 ~ /^[0-9]+$/ || $6 ~ /^pair-/) {
    k = $2 SUBSEP ($6 ~ /^pair-/ ? $3 "@" substr($6, 6) : $3) SUBSEP $4
    for (i = 7; i <= NF; i++) {
        split($i, kv, "="); if (kv[1] != "train_ms") continue
        QR[k, ++QN[k]] = kv[2]
        c = split(kv[2], ms, ",")
        for (j = 1; j <= c; j++) if (!(k in SMIN) || ms[j] + 0 < SMIN[k]) SMIN[k] = ms[j] + 0
    }
    next
}
function isort(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
function amed(a, n) { isort(a, n); return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
# the round farthest from median m among lo..hi, as a signed fraction of m
function far(m, lo, hi) { return (m - lo > hi - m) ? (lo - m) / m : (hi - m) / m }
function within10(d) { return (d < 0 ? -d : d) <= 0.10 ? "yes" : "no" }
# A step in a host slow spell: over SPELL x the fastest step of the rounds
# of that side (the spells seen on this guest run a step 1.4-1.5x slower). quiet:
# per round, img/s of the median of its other steps; returns the median
# over the rounds and sets qlo / qhi (the spread); slow: how many steps of
# the rounds were over, as text
function quiet(side, net, t,   k, r, i, c, n, q, ms, v, per) {
    k = side SUBSEP net SUBSEP t; q = 0
    for (r = 1; r <= QN[k]; r++) {
        n = split(QR[k, r], ms, ","); c = 0
        for (i = 1; i <= n; i++) if (ms[i] + 0 <= SPELL * SMIN[k]) v[++c] = ms[i] + 0
        if (c) per[++q] = 1000 * batch / amed(v, c)
        split("", v)
    }
    if (!q) return ""
    isort(per, q); qlo = per[1]; qhi = per[q]
    return amed(per, q)
}
function slow(side, net, t,   k, r, i, c, n, all, ms) {
    k = side SUBSEP net SUBSEP t; c = 0; all = 0
    for (r = 1; r <= QN[k]; r++) {
        n = split(QR[k, r], ms, ","); all += n
        for (i = 1; i <= n; i++) if (ms[i] + 0 > SPELL * SMIN[k]) c++
    }
    return all ? sprintf("%d of %d (%.0f%%)", c, all, 100 * c / all) : "-"
}
$1 == "run" {
    nrun++; R_side[nrun] = $2; R_net[nrun] = $3; R_t[nrun] = $4; R_set[nrun] = $5; R_round[nrun] = $6
    if ($6 == "sweep" || $6 == "pick") { R_set[nrun] = $6; S_set[nrun] = $5 }
    if ($6 ~ /^pair-/) { R_set[nrun] = "pair"; R_pair[nrun] = substr($6, 6) }
    for (i = 7; i <= NF; i++) { split($i, kv, "="); V[nrun, kv[1]] = kv[2] }
}
END {
    peak = M["peak"]
    printf "optc vs PyTorch %s, batch 128, %s, %s round(s) alternating\n", M["torch"], M["iters"], M["rounds"]
    printf "machine: %s; flags: %s\n", M["cpu"], M["flags"]
    printf "FMA peak per core: %s GFLOPS (widest ISA)", M["peak"]
    if (M["peak2"] + 0 > 0) printf ", AVX2 %s GFLOPS", M["peak2"]
    printf "; whole run %s s; load average at the end: %s\n", M["seconds"], M["load"]
    # the sweep
    header = 0
    for (i = 1; i <= nrun; i++) if (R_set[i] == "sweep") {
        if (!header) { printf "\nsettings sweep (resnet20, threads %s): train / infer img/s\n", R_t[i]; header = 1 }
        printf "  %-6s %-12s %6.0f / %6.0f\n", R_side[i], S_set[i], V[i, "train_img_s"], V[i, "infer_img_s"]
    }
    if (header) printf "  kept: optc %s, PyTorch %s (wdef = OMP_WAIT_POLICY unset, wpas/wact = passive/active, wspn = GOMP_SPINCOUNT=10000; mdef/mtun = default/tuned malloc; -cl = PyTorch in channels_last)\n", M["osetting"], M["tsetting"]
    for (i = 1; i <= nrun; i++) if (R_set[i] == "pick") {
        if (!pheader) { printf "\nper-net check of the kept setting against the default (and PyTorch the other layout; one run each): train img/s\n"; pheader = 1 }
        printf "  %-6s %-12s %-10s %6.0f\n", R_side[i], R_net[i], S_set[i], V[i, "train_img_s"]
    }
    printf "\n%-12s %3s | %-17s %-17s %6s | %-17s %-17s %6s | %5s %5s | %-10s %-10s\n", "net", "thr",
           "optc train", "torch train", "ratio", "optc infer", "torch infer", "ratio", "RSS o", "RSS t", "GFLOPS o", "GFLOPS t"
    n = split(M["nets"], N, " "); m = split(M["threads"], T, " ")
    for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
        net = N[i]; t = T[j]
        madds = (net in OM) ? OM[net] : TM[net]
        if ((net in OM) && (net in TM) && OM[net] != TM[net])
            warn = warn sprintf("warning: %s: optc counts %s forward multiply-adds, PyTorch %s: the networks differ\n", net, OM[net], TM[net])
        ot = med("optc", net, t, "train_img_s"); ots = spread(ot); olo = lo; ohi = hi
        if (ot != "" && cnt > 1) {
            dev = far(ot, olo, ohi)
            roundx = roundx sprintf("  %-12s %3s | %-5s %+4.0f%% | optc %-16s PyTorch %s\n", net, t,
                                    within10(dev), 100 * dev, slow("optc", net, t), slow("torch", net, t))
        }
        tt = med("torch", net, t, "train_img_s"); tts = spread(tt)
        oi = med("optc", net, t, "infer_img_s"); ois = spread(oi)
        ti = med("torch", net, t, "infer_img_s"); tis = spread(ti)
        orss = med("optc", net, t, "peak_rss_mb"); trss = med("torch", net, t, "peak_rss_mb")
        printf "%-12s %3s | %-17s %-17s %6s | %-17s %-17s %6s | %5s %5s | %-10s %-10s\n", net, t,
               ots, tts, ratio(ot, tt), ois, tis, ratio(oi, ti), num(orss), num(trss),
               share(ot, madds, t), share(tt, madds, t)
        if (net == "hb110") { hbt[t] = ot; hbr[t] = orss }
        if (net == "hb110mf" && hbt[t] != "" && ot != "" && orss + 0 > 0)
            mfx = mfx sprintf("  %s threads: peak RSS %.1fx less, training img/s %.2fx of the stored build\n", t, hbr[t] / orss, ot / hbt[t])
        if (net == "resnet20") base[t] = ot
        else if (net ~ /^(hb20|nesterov20|momentum20)$/ && ot != "") {
            pm = med("optc", "resnet20", t, "train_img_s", net); plo = lo; phi = hi
            if (pm != "")
                cmpx = cmpx sprintf("  %s: %.2fx ResNet-20 training img/s at %s threads (%.0f [%.0f-%.0f] against ResNet-20 %.0f [%.0f-%.0f] in the same rounds)\n", net, ot / pm, t, ot, olo, ohi, pm, plo, phi)
            else if (base[t] != "")
                cmpx = cmpx sprintf("  %s: %.2fx ResNet-20 training img/s at %s threads\n", net, ot / base[t], t)
        }
    }
    for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) if (("set_" N[i] "_" T[j]) in M)
        kept = kept sprintf("  %s, %s threads: optc %s\n", N[i], T[j], M["set_" N[i] "_" T[j]])
    print "train/infer: median img/s of the rounds [min-max]; ratio = optc median / PyTorch median;"
    print "RSS: median peak RSS MB (PyTorch includes the interpreter and libtorch);"
    print "GFLOPS = 3 x forward multiply-adds x 2 x train img/s (% of the FMA peak x threads)."
    # outside the spells (a view of what a quiet host would show, the same
    # rule for both sides; the medians above stay the figures)
    for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
        net = N[i]; t = T[j]
        oq = quiet("optc", net, t); oql = qlo; oqh = qhi
        if (oq == "") continue
        tq = quiet("torch", net, t); tql = qlo; tqh = qhi
        dv = far(oq, oql, oqh)
        qx = qx sprintf("  %-12s %3s | %-17s %-17s %6s | optc rounds within +-10 %%: %-3s %+4.0f%%\n", net, t,
                        sprintf("%.0f [%.0f-%.0f]", oq, oql, oqh), tq == "" ? "-" : sprintf("%.0f [%.0f-%.0f]", tq, tql, tqh),
                        ratio(oq, tq), within10(dv), 100 * dv)
        if (net ~ /^(hb20|nesterov20|momentum20)$/) {
            pq = quiet("optc", "resnet20@" net, t)
            if (pq != "") qv = qv sprintf("  %s: %.2fx ResNet-20 (%.0f against %.0f [%.0f-%.0f])\n", net, oq / pq, oq, pq, qlo, qhi)
        }
    }
    if (qx != "") printf "outside the host slow spells (each round: img/s of the median of its training steps within %gx the fastest of that side; the same rule for both sides):\n%s", SPELL, qx
    if (qv != "") printf "  same-convolution variants outside the spells, against the ResNet-20 runs of their rounds:\n%s", qv
    if (roundx != "") printf "optc rounds within +-10 %% of their median (the farthest round) | training steps of the rounds over %gx the fastest of that side (host slow spells):\n%s", SPELL, roundx
    if (cmpx != "") printf "same-convolution variants against ResNet-20 (1.00x = the same cost per step):\n%s", cmpx
    if (kept != "") printf "settings of the rounds:\n%s", kept
    if (mfx != "") printf "110-layer heavy ball, --memory-free (hb110mf) against stored (hb110):\n%s", mfx
    printf "%s", warn
    print "Raw lines: results.txt, bench.log in the build dir."
}' "$RES"
