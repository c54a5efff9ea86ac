#!/bin/sh
# Install each missing Debian package the project needs; do nothing when all
# are present. Non-interactive, so it runs in CI with no terminal.
# Usage: scripts/deps.sh [extra-package ...]
set -eu
PKGS="flex bison libopenblas-dev check zlib1g-dev pkg-config dataset-fashion-mnist gnuplot-nox graphviz clang libclang-rt-14-dev python3-torch libopenmpi-dev openmpi-bin gcc-arm-none-eabi libnewlib-arm-none-eabi $*"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
