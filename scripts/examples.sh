#!/bin/sh
# examples.sh BUILD — build every network of every examples/*.opt into
# BUILD/bin/<net> with BUILD/optc build. Run from the project root.
set -eu
O=${1:-build}
optc=$O/optc
[ -x "$optc" ] || { echo "examples: $optc is missing (run make)" >&2; exit 1; }
mkdir -p "$O/bin"
n=0
for spec in examples/*.opt; do
    [ -e "$spec" ] || continue
    nets=$("$optc" list "$spec") || { echo "examples: optc list $spec failed" >&2; exit 1; }
    for net in $nets; do
        echo "optc build $spec -n $net -o $O/bin/$net"
        "$optc" build "$spec" -n "$net" -o "$O/bin/$net"
        n=$((n + 1))
    done
done
echo "examples: $n programs in $O/bin"
