#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Warm getpwnam latency through nss_cvat (from a published nss.mc) next to nss_files on the
# same machine, median over N lookups each.
#   bench/nss_lookup.sh [N] [USERS]      (defaults: N=100000, USERS=1000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
USERS=${2:-1000}
BUILD=${BUILD_DIR:-$PWD/build}
[[ -f "$BUILD/build.ninja" ]] || meson setup "$BUILD" >/dev/null
ninja -C "$BUILD" >/dev/null
W=$(mktemp -d /tmp/cvat-bench-nss.XXXXXX)
trap 'rm -rf "$W"' EXIT
echo "$(wc -l </etc/passwd) lines in /etc/passwd; looking up root (line 1) and the last local user"
last=$(tail -n 1 /etc/passwd | cut -d: -f1)
NSS_CVAT_SO=$BUILD/nss_cvat/libnss_cvat.so.2 "$BUILD/bench/cvat-bench-nss" "$W" "$N" "$USERS" root
NSS_CVAT_SO=$BUILD/nss_cvat/libnss_cvat.so.2 "$BUILD/bench/cvat-bench-nss" "$W" "$N" "$USERS" "$last" | tail -n 1
