#!/bin/sh
# Prints the first python that can import torch (python3, then
# /usr/bin/python3: Debian's python3-torch lives in the system python and a
# python3 earlier on PATH, a virtualenv or pyenv, may not see it); exits 1,
# printing nothing, when none can. Used by oracle.sh and bench.sh.
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then
        echo "$p"
        exit 0
    fi
done
exit 1
