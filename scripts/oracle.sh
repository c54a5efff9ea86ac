#!/bin/sh
# oracle.sh BUILD — PyTorch as the oracle of the generated code (make oracle).
# For every network of examples/*.opt and tests/oracle/*.opt (more op kinds):
# optc emit --pytorch, optc build, and ./NET dump on a seeded batch of 2, two
# networks at a time; then
# tests/oracle/oracle.py compares (tolerances stated there) and
# tests/oracle/checkpoint.py loads a checkpoint of ./NET train into the
# emitted module. Skips (counted as a skip, exit 0) when no python can
# import torch (Debian: python3-torch, installed by make deps).
# ORACLE_NETS="net1 net2" restricts the run to those networks.
set -eu
O=${1:-build}
optc=$O/optc
[ -x "$optc" ] || { echo "oracle: $optc is missing (run make)" >&2; exit 1; }

py=$(scripts/torchpy.sh) || py=""
if [ -z "$py" ]; then
    echo "oracle: SKIPPED: no python that can import torch (tried python3, /usr/bin/python3;" \
         "install python3-torch)"
    echo "oracle: 0 passed, 0 failed, 1 skipped"
    exit 0
fi

t0=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
# SPEC NET NESTEROV DECAY_BN: the SGD settings cycle so every combination of
# Nesterov and BN decay is checked somewhere.
i=0
for spec in examples/*.opt tests/oracle/*.opt; do
    for net in $("$optc" list "$spec"); do
        case " ${ORACLE_NETS:-$net} " in *" $net "*) ;; *) continue;; esac
        echo "$spec $net $((i % 2)) $((i / 2 % 2))" >>"$work/nets"
        i=$((i + 1))
    done
done
[ -s "$work/nets" ] || { echo "oracle: no networks to check" >&2; exit 1; }
[ -n "${ORACLE_NETS:-}" ] &&
    echo "oracle: ORACLE_NETS restricts the run to $(wc -l <"$work/nets") network(s): not a full check"

# One network: its module, its program, its dump (output kept on failure).
export OPTC="$optc" WORK="$work"
# shellcheck disable=SC2016
xargs -P 2 -L 1 sh -c '
    d=$WORK/$1; mkdir -p "$d"
    { "$OPTC" emit "$0" -n "$1" --pytorch -o "$d/net.py" &&
      "$OPTC" build "$0" -n "$1" -o "$d/$1" &&
      OMP_NUM_THREADS=1 "$d/$1" dump --out "$d" --batch 2 --seed 7 --threads 1 --lr 0.1 \
          --momentum 0.9 --weight-decay 0.01 --nesterov "$2" --decay-bn "$3"; } \
        >"$d/log" 2>&1 || { echo "oracle: $1: emit/build/dump failed:"; cat "$d/log"; }
    rm -f "$d/$1"' <"$work/nets"

status=0
"$py" tests/oracle/oracle.py --work "$work" --nets "$work/nets" || status=1
"$py" tests/oracle/checkpoint.py --optc "$optc" --work "$work/ckpt" || status=1
echo "oracle: $(($(date +%s) - t0)) s"
exit $status
