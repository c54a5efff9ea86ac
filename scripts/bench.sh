#!/bin/sh
# make bench: optc's example networks side by side with the same networks in
# PyTorch (bench/torch_bench.py), at batch 128 for 2 threads and 1 thread.
# Prints one table: training and inference images/s for both, the ratio
# optc / PyTorch's best, peak RSS, and effective training GFLOPS
# (3 x forward multiply-adds x 2 FLOPs per image x train img/s) against this
# machine's FMA peak (bench/fma_probe.c) times the thread count.
#
# PyTorch runs twice per row: with glibc's default malloc, and with
# MALLOC_MMAP_THRESHOLD_/TRIM_THRESHOLD_/TOP_PAD_ raised so its activations
# are not unmapped and faulted back in at every step; both are reported and
# the ratio is against the better one. optc allocates once at start-up, so it
# runs with the default only.
#
# Usage: scripts/bench.sh BUILD_DIR   (make bench passes its $(O))
# Environment knobs (defaults keep a full run under ~15 minutes here):
#   BENCH_THREADS="2 1"   BENCH_ITERS=10   BENCH_WARMUP=2
#   BENCH_NETS="resnet20 hb20 densenet"   BENCH_DENSENET_DEPTH=40 (40 or 100)
#   BENCH_TIMEOUT=900 (seconds per single run)
#   BENCH_REPRINT=1 prints the table of the last run again without running
set -u

# Idle OpenMP workers sleep instead of spinning, for optc and PyTorch alike
# (every run below inherits it; the OpenMP runtime reads it before main): on
# this shared 2-core machine spinning workers burn the timeslices their
# preempted partner needs, which cut both sides' 2-thread figures by up to
# 10x under load (BENCHMARKS.md). A value already set is kept.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

B=${1:-build}
W=$B/bench
mkdir -p "$W"
THREADS=${BENCH_THREADS:-2 1}
ITERS=${BENCH_ITERS:-10}
WARMUP=${BENCH_WARMUP:-2}
NETS=${BENCH_NETS:-resnet20 hb20 densenet}
DN_DEPTH=${BENCH_DENSENET_DEPTH:-40}
TMO=${BENCH_TIMEOUT:-900}
BATCH=128
TUNED="MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456"
RES=$W/results.txt      # one "side net threads key=value..." line per run
LOG=$W/bench.log        # everything the runs printed
REPRINT=${BENCH_REPRINT:-0}
if [ "$REPRINT" != 1 ]; then
    : > "$RES"
    : > "$LOG"
fi

say() { echo "# $*" >&2; }

case $DN_DEPTH in
    40|100) ;;
    *) echo "bench: BENCH_DENSENET_DEPTH must be 40 or 100, got '$DN_DEPTH'" >&2; exit 2 ;;
esac
case $ITERS in
    ''|*[!0-9]*) echo "bench: BENCH_ITERS must be a number" >&2; exit 2 ;;
esac
[ "$ITERS" -ge 10 ] || say "note: BENCH_ITERS=$ITERS is below the 10 timed iterations the issue asks for"

if [ "$REPRINT" = 1 ]; then
    [ -f "$RES" ] || { echo "bench: no earlier run in $W" >&2; exit 1; }
    PY=$(sed -n 's/^meta py=//p' "$RES"); TORCH_VERSION=$(sed -n 's/^meta torch=//p' "$RES")
    PEAK=$(sed -n 's/^meta peak=//p' "$RES"); OPTC_STATUS=$(sed -n 's/^meta optc=//p' "$RES")
    NETS=$(sed -n 's/^meta nets=//p' "$RES"); THREADS=$(sed -n 's/^meta threads=//p' "$RES")
    DN_DEPTH=$(sed -n 's/^meta dn=//p' "$RES"); ITERS=$(sed -n 's/^meta iters=//p' "$RES")
    WARMUP=$(sed -n 's/^meta warmup=//p' "$RES")
else
# --- PyTorch: installed here and only here (make check never needs it) -----
if ! scripts/deps.sh python3-torch >>"$LOG" 2>&1; then
    say "could not install python3-torch (see $LOG); continuing without it"
fi
# Debian's torch lives in the system python; a python3 earlier on PATH (a
# virtualenv, pyenv) may not see it.
PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then
        PY=$p
        break
    fi
done
TORCH_VERSION=none
[ -n "$PY" ] && TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)

# --- FMA peak -------------------------------------------------------------
PEAK=0
CCX=${CC:-cc}
if "$CCX" -std=c11 -O2 -o "$W/fma_probe" bench/fma_probe.c >>"$LOG" 2>&1; then
    PROBE=$("$W/fma_probe")
    echo "$PROBE" >>"$LOG"
    PEAK=$(echo "$PROBE" | sed -n 's/.*fma_peak_gflops_per_core=\([0-9.]*\).*/\1/p')
    say "FMA probe: $PROBE"
else
    say "could not build bench/fma_probe.c (see $LOG); no peak column"
fi

# --- the rows ---------------------------------------------------------------
# net_spec NET -> "SPEC OPTCNET TORCHNET [-D ...]"
net_spec() {
    case $1 in
        resnet20) echo "examples/resnet.opt resnet20_cifar resnet20" ;;
        hb20)     echo "examples/heavy_ball.opt hb20_cifar hb20" ;;
        densenet)
            if [ "$DN_DEPTH" = 100 ]; then
                echo "examples/densenet.opt densenet_bc100_cifar densenet100"
            else
                # depth 40 = 3 dense stages of (40 - 4) / 6 = 6 steps
                n=densenet_bc100_cifar
                echo "examples/densenet.opt $n densenet40 -D $n.stage1.steps=6 -D $n.stage2.steps=6 -D $n.stage3.steps=6"
            fi ;;
        *) return 1 ;;
    esac
}

# Keep the bench line's key=value fields of a run's output.
bench_fields() { sed -n 's/^bench: net=[^ ]* batch=[0-9]* threads=[0-9]* //p' | tail -n 1; }

row_name() { case $1 in densenet) echo "densenet$DN_DEPTH" ;; *) echo "$1" ;; esac; }

OPTC_STATUS=""
for net in $NETS; do
    spec=$(net_spec "$net") || { echo "bench: unknown net '$net'" >&2; exit 2; }
    # shellcheck disable=SC2086
    set -- $spec
    file=$1 onet=$2 tnet=$3
    shift 3
    row=$(row_name "$net")

    # optc
    exe=$W/$row
    if [ ! -x "$B/optc" ]; then
        OPTC_STATUS="optc not built ($B/optc missing)"
    elif ! "$B/optc" build "$file" -n "$onet" "$@" -o "$exe" >>"$LOG" 2>&1; then
        say "optc build $file -n $onet failed (see $LOG)"
        OPTC_STATUS="optc build failed for some networks (see $LOG)"
    else
        madds=$("$exe" info --json 2>>"$LOG" | sed -n 's/.*"madds":\([0-9]*\).*/\1/p')
        [ -n "$madds" ] && echo "info $row - madds=$madds" >>"$RES"
        for t in $THREADS; do
            say "optc    $row threads=$t"
            out=$(timeout "$TMO" "$exe" bench --batch $BATCH --threads "$t" --iters "$ITERS" --warmup "$WARMUP" 2>>"$LOG")
            echo "$out" >>"$LOG"
            f=$(echo "$out" | bench_fields)
            if [ -n "$f" ]; then echo "optc $row $t $f" >>"$RES"; else say "optc $row threads=$t: no bench line"; fi
        done
    fi

    # PyTorch, default malloc then tuned
    [ -n "$PY" ] || continue
    for t in $THREADS; do
        for mode in default tuned; do
            say "pytorch $row threads=$t malloc=$mode"
            if [ $mode = tuned ]; then
                # shellcheck disable=SC2086
                out=$(env $TUNED timeout "$TMO" "$PY" bench/torch_bench.py --net "$tnet" --batch $BATCH \
                      --threads "$t" --iters "$ITERS" --warmup "$WARMUP" 2>>"$LOG")
            else
                out=$(timeout "$TMO" "$PY" bench/torch_bench.py --net "$tnet" --batch $BATCH \
                      --threads "$t" --iters "$ITERS" --warmup "$WARMUP" 2>>"$LOG")
            fi
            echo "$out" >>"$LOG"
            f=$(echo "$out" | bench_fields)
            if [ -n "$f" ]; then echo "torch-$mode $row $t $f" >>"$RES"; else say "pytorch $row threads=$t $mode: no bench line"; fi
            m=$(echo "$out" | sed -n 's/^info: .* madds=\([0-9]*\).*/\1/p')
            [ -n "$m" ] && ! grep -q "^tinfo $row " "$RES" && echo "tinfo $row - madds=$m" >>"$RES"
        done
    done
done

{
    echo "meta py=$PY"; echo "meta torch=$TORCH_VERSION"; echo "meta peak=$PEAK"
    echo "meta optc=$OPTC_STATUS"; echo "meta nets=$NETS"; echo "meta threads=$THREADS"
    echo "meta dn=$DN_DEPTH"; echo "meta iters=$ITERS"; echo "meta warmup=$WARMUP"
} >>"$RES"
fi

# --- the table --------------------------------------------------------------
echo
echo "optc vs PyTorch $TORCH_VERSION, batch $BATCH, median of $ITERS steps after $WARMUP warm-up"
echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores;" \
     "FMA peak ${PEAK:-?} GFLOPS/core; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
[ -z "$PY" ] && echo "PyTorch is not installed: optc's figures only."
[ -n "$OPTC_STATUS" ] && echo "optc side: $OPTC_STATUS"
awk -v peak="$PEAK" -v rows="$NETS" -v threads="$THREADS" -v dn="$DN_DEPTH" '
function get(side, row, t, key,   k) { k = side SUBSEP row SUBSEP t SUBSEP key; return (k in v) ? v[k] : "" }
function num(x) { return x == "" ? "-" : sprintf("%.0f", x) }
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2fx", a / b) }
function best(a, b) { if (a == "") return b; if (b == "") return a; return (a + 0 > b + 0) ? a : b }
function gf(img, madds) { return (img == "" || madds == "") ? "" : 6 * madds * img / 1e9 }
function gfs(g, t) {
    if (g == "") return "-"
    if (peak + 0 > 0) return sprintf("%.1f (%.0f%%)", g, 100 * g / (peak * t))
    return sprintf("%.1f", g)
}
$1 == "meta" { next }
{
    for (i = 4; i <= NF; i++) { split($i, kv, "="); v[$1, $2, $3, kv[1]] = kv[2] }
}
END {
    fmt = "%-11s %3s | %9s %15s %7s | %9s %15s %7s | %8s %13s | %14s %14s\n"
    printf "%-15s | %-33s | %-33s | %-22s | %s\n", "", "train img/s", "infer img/s", "peak RSS MB", "train GFLOPS (% of FMA peak)"
    printf fmt, "net", "thr", "optc", "torch tun/def", "ratio", "optc", "torch tun/def", "ratio", "optc", "torch tun/def", "optc", "torch best"
    n = split(rows, R, " "); m = split(threads, T, " ")
    for (i = 1; i <= n; i++) {
        row = (R[i] == "densenet") ? "densenet" dn : R[i]
        madds = get("info", row, "-", "madds"); tm = get("tinfo", row, "-", "madds")
        if (madds != "" && tm != "" && madds != tm)
            warn = warn sprintf("warning: %s: optc counts %s forward multiply-adds, PyTorch %s: the networks differ\n", row, madds, tm)
        if (madds == "") madds = tm
        for (j = 1; j <= m; j++) {
            t = T[j]
            ot = get("optc", row, t, "train_img_s"); oi = get("optc", row, t, "infer_img_s")
            tt = get("torch-tuned", row, t, "train_img_s"); td = get("torch-default", row, t, "train_img_s")
            it = get("torch-tuned", row, t, "infer_img_s"); id = get("torch-default", row, t, "infer_img_s")
            ro = get("optc", row, t, "peak_rss_mb")
            rt = get("torch-tuned", row, t, "peak_rss_mb"); rd = get("torch-default", row, t, "peak_rss_mb")
            printf fmt, row, t, num(ot), num(tt) "/" num(td), ratio(ot, best(tt, td)),
                   num(oi), num(it) "/" num(id), ratio(oi, best(it, id)),
                   num(ro), num(rt) "/" num(rd), gfs(gf(ot, madds), t), gfs(gf(best(tt, td), madds), t)
        }
    }
    print "ratio = optc / the better PyTorch run; GFLOPS = 3 x forward multiply-adds x 2 x train img/s;"
    print "% of peak = against the FMA probe x threads. Raw lines: results.txt, bench.log in the build dir."
    printf "%s", warn
}' "$RES"
