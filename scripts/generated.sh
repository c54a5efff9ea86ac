#!/bin/sh
# generated.sh BUILD write|check
# generated/<net>.c holds the C that optc emits for every network of every
# examples/*.opt (`optc list SPEC` names them). write refreshes the files
# (and removes ones no network produces any more); check fails, naming each
# file, when what is committed differs from what the current compiler emits.
# Run from the project root: the emitted files record the spec path as given.
set -eu
O=${1:-build}
mode=${2:-check}
optc=$O/optc
case $mode in write|check) ;; *) echo "usage: $0 BUILD write|check" >&2; exit 2;; esac
[ -x "$optc" ] || { echo "generated: $optc is missing (run make)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
status=0
seen=" "
mkdir -p generated
for spec in examples/*.opt; do
    [ -e "$spec" ] || continue
    nets=$("$optc" list "$spec") || { echo "generated: optc list $spec failed" >&2; exit 1; }
    for net in $nets; do
        case $seen in *" $net "*)
            echo "generated: network name '$net' is used twice (generated/$net.c)" >&2
            exit 1;;
        esac
        seen="$seen$net "
        if ! "$optc" emit "$spec" -n "$net" >"$tmp/$net.c"; then
            echo "generated: optc emit $spec -n $net failed" >&2
            exit 1
        fi
        if cmp -s "$tmp/$net.c" "generated/$net.c"; then
            continue
        fi
        if [ "$mode" = write ]; then
            cp "$tmp/$net.c" "generated/$net.c"
            echo "wrote generated/$net.c"
        else
            echo "generated/$net.c differs from what optc emits for $spec -n $net (run make generated)" >&2
            status=1
        fi
    done
done
for f in generated/*.c; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .c)
    case $seen in *" $n "*) continue;; esac
    if [ "$mode" = write ]; then
        rm -f "$f"
        echo "removed $f (no example network emits it)"
    else
        echo "$f: no example network emits it (run make generated)" >&2
        status=1
    fi
done
[ "$mode" = check ] && [ $status -eq 0 ] && echo "generated: all files current"
exit $status
