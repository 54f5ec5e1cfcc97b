#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Runs the libFuzzer targets of tests/fuzz, each for SECONDS (default 60) on a scratch copy of
# its corpus (new inputs never land in the repo), and prints per target: executions, exec/s,
# coverage (cov = edges, ft = features) from libFuzzer's final stats, corpus growth and any
# crash, leak or timeout files.
#   scripts/fuzz.sh [SECONDS] [TARGET...]        e.g. scripts/fuzz.sh 600        (all targets)
#                                                     scripts/fuzz.sh 60 jwt nss_mc
# Environment: BUILD_DIR (default build-fuzz), FUZZ_CC/FUZZ_CXX (default clang-14), FUZZ_OUT (scratch, default a temp dir, kept),
# FUZZ_JOBS (targets run at once, default 1), FUZZ_ARGS (more libFuzzer flags).
# Builds BUILD_DIR with clang (-Dfuzzing=true: ASan + UBSan + libFuzzer) when needed.
# Exit status: 1 when any target crashed, leaked or timed out.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
BUILD=${BUILD_DIR:-$ROOT/build-fuzz}
JOBS=${FUZZ_JOBS:-1}
ALL=$(sed -n "s/^  '\([a-z_]*\)',.*/\1/p" tests/fuzz/meson.build)
TARGETS=("$@")
((${#TARGETS[@]})) || read -r -a TARGETS <<<"$(echo $ALL)"
for t in "${TARGETS[@]}"; do
  grep -qx "$t" <<<"$ALL" || { echo "fuzz: unknown target '$t' (targets: $(echo $ALL))" >&2; exit 2; }
done
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }

# clang and its fuzzer runtime (not in scripts/install-deps.sh: CI runs the corpora with g++).
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null && continue
  echo "fuzz: installing clang-14 libclang-rt-14-dev"
  SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null ||
    { echo "fuzz: cannot install clang-14 libclang-rt-14-dev" >&2; exit 1; }
  break
done
if [[ ! -f $BUILD/build.ninja ]]; then
  CC=${FUZZ_CC:-clang-14} CXX=${FUZZ_CXX:-clang++-14} meson setup "$BUILD" -Dfuzzing=true -Dbuildtype=debugoptimized >/dev/null ||
    { echo "fuzz: meson setup failed (clang and libclang-rt-14-dev installed?)" >&2; exit 1; }
fi
ninja -C "$BUILD" $(printf 'tests/fuzz/fuzz_%s ' "${TARGETS[@]}") >/dev/null ||
  { echo "fuzz: build failed" >&2; exit 1; }

OUT=${FUZZ_OUT:-$(mktemp -d /tmp/cvat-fuzz.XXXXXX)}
mkdir -p "$OUT"
echo "fuzz: ${#TARGETS[@]} target(s), ${SECONDS_EACH} s each, scratch $OUT"

run_one() {
  local t=$1 dir=$OUT/$1
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp tests/fuzz/corpus/"$t"/* "$dir/corpus/" 2>/dev/null
  local dict=()
  [[ -f tests/fuzz/$t.dict ]] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
  # detect_leaks stays on (the default); -rss_limit_mb guards against runaway allocation.
  (cd "$dir" && ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 \
      -rss_limit_mb=2048 -artifact_prefix="$dir/artifacts/" "${dict[@]}" ${FUZZ_ARGS:-} corpus \
      >"$dir/log" 2>&1)
  echo $? >"$dir/rc"
}

i=0
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  i=$((i + 1))
  if ((i % JOBS == 0)); then wait; fi
done
wait

failed=0
printf '%-12s %12s %9s %7s %7s %7s  %s\n' target execs exec/s cov ft corpus result
for t in "${TARGETS[@]}"; do
  dir=$OUT/$t log=$OUT/$t/log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # The last status line (#N ... cov: C ft: F corp: ...) has the final coverage.
  last=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  crashes=$(ls "$dir/artifacts" 2>/dev/null)
  rc=$(cat "$dir/rc")
  if [[ -z $crashes && $rc == 0 ]]; then
    result=ok
  else
    result="FAILED (exit $rc) $(for c in $crashes; do printf '%s ' "$dir/artifacts/$c"; done)"
    failed=1
  fi
  printf '%-12s %12s %9s %7s %7s %7s  %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
echo "fuzz: logs and grown corpora in $OUT"
exit $failed
