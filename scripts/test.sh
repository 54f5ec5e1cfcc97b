#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The README's test command: installs what is missing, builds from scratch, runs every suite and
# ends with one summary line "N passed, N failed, N skipped". Every suite is required: a test
# that skips counts as failed.
#
#   scripts/test.sh           (CI) two builds:
#     build-asan (-Dwerror=true -Db_sanitize=address,undefined, -O1 -g1): suites unit, module,
#                integration and fuzz (the seed corpora); every ASan/UBSan/LeakSanitizer
#                report, from any process (test, daemon, forked child), is a failure
#     build-test (-Dwerror=true, plain, as packaged; only what its runs use): linkage, e2e (real
#                nginx, Apache, sshd, the Debian and RPM packages), test_secrets again (its
#                core-dump scan needs the plain allocator), and the programs that load the
#                modules under valgrind memcheck
#   scripts/test.sh --plain   one plain build, every suite once, no sanitizer, no valgrind
#                             (quicker, for development)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-test}
ASAN_BUILD=${ASAN_BUILD_DIR:-$ROOT/build-asan}
REPORTS=$ASAN_BUILD/sanitizer-reports

bash scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

rm -rf "$BUILD" "$ASAN_BUILD"
if [[ ${1:-} == --plain ]]; then
  if ! meson setup "$BUILD" -Dwerror=true || ! ninja -C "$BUILD"; then
    echo "0 passed, 1 failed"; exit 1
  fi
  meson test -C "$BUILD" --print-errorlogs --num-processes 2 --suite unit --suite module \
    --suite integration --suite fuzz --suite e2e
  LOGS=("$BUILD/meson-logs/testlog.json:")
else
  # The plain build compiles only what its runs below use (the modules, the daemon and tool, and
  # the test programs named there); the sanitizer build compiles everything.
  PLAIN_TARGETS=(pam_cvat/pam_cvat.so nss_cvat/libnss_cvat.so.2 helper/cvat-authd helper/cvat-authctl
                 tests/test_pam_module tests/test_nss_module tests/test_sshd tests/test_secrets)
  # No debug info in the plain build (nothing here reads it; it is a third of the compile time).
  # The sanitizer build: -O1 (what ASan's authors advise) and -g1 (line tables, all a report's
  # stack needs): its compile takes about 40 % less than at -O2 -g, which was most of the run.
  if ! meson setup "$BUILD" -Dwerror=true -Ddebug=false || ! ninja -C "$BUILD" "${PLAIN_TARGETS[@]}" ||
     ! meson setup "$ASAN_BUILD" -Dwerror=true -Dbench=false -Db_sanitize=address,undefined \
       -Doptimization=1 -Ddebug=false -Dcpp_args=-g1 || ! ninja -C "$ASAN_BUILD"; then
    echo "0 passed, 1 failed"; exit 1
  fi
  mkdir -p "$REPORTS"

  # Reports go to files (log_path), so a report from a daemon or a forked child is seen as well.
  # detect_leaks: the test programs and cvat-authd leave by returning from main or exit().
  export ASAN_OPTIONS="log_path=$REPORTS/asan:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
  export UBSAN_OPTIONS="log_path=$REPORTS/ubsan:print_stacktrace=1:halt_on_error=0"
  # The RPM spec's build (a compile, nothing installed) runs beside them, niced: the servers
  # of the sanitizer run leave much of the CPU idle.
  ( unset ASAN_OPTIONS UBSAN_OPTIONS
    nice -n 10 meson test -C "$BUILD" --no-rebuild --print-errorlogs --logbase rpm test_rpm_spec >"$BUILD/rpm-test.out" 2>&1 ) &
  rpm_pid=$!
  meson test -C "$ASAN_BUILD" --no-rebuild --print-errorlogs --num-processes 2 \
    --suite unit --suite module --suite integration --suite fuzz
  unset ASAN_OPTIONS UBSAN_OPTIONS
  wait "$rpm_pid"
  cat "$BUILD/rpm-test.out"

  # test_secrets also here: its core-dump scan needs the plain allocator (ASan keeps freed blocks).
  meson test -C "$BUILD" --no-rebuild --print-errorlogs --num-processes 2 --suite linkage --suite e2e --no-suite rpm
  meson test -C "$BUILD" --no-rebuild --print-errorlogs --logbase secrets test_secrets

  LOGS=("$ASAN_BUILD/meson-logs/testlog.json:asan" "$BUILD/meson-logs/testlog.json:" "$BUILD/meson-logs/rpm.json:"
        "$BUILD/meson-logs/secrets.json:plain")

  # memcheck over the programs that load the modules (pam_cvat.so under real libpam and
  # pam_wrapper, libnss_cvat.so.2 by dlopen and under nss_wrapper); the daemons and tools they
  # start are not traced (--trace-children follows the tests' own re-exec under pam_wrapper).
  # --fair-sched: valgrind runs one thread at a time, and by default a spinning thread can keep
  # the others waiting for seconds (test_nss_module's in-test daemon thread, starved by its
  # three lookup loops, made a forked child's lookup time out).
  VALGRIND="valgrind --quiet --fair-sched=yes --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
  VALGRIND+=" --child-silent-after-fork=yes --trace-children=yes --trace-children-skip=*cvat-authd*,*slapd*,/bin/*,/usr/*,/sbin/*"
  meson test -C "$BUILD" --no-rebuild --print-errorlogs --num-processes 2 --logbase valgrind --timeout-multiplier 4 \
    --wrapper "$VALGRIND" test_pam_module test_pam_module_daemon test_nss_module test_nss_wrapper
  # meson names the log after the wrapper too
  LOGS+=("$BUILD/meson-logs/valgrind-valgrind.json:valgrind")
fi

python3 - "${LOGS[@]}" "$REPORTS" <<'PY'
# Counts TAP subtests (a program that died counts one failure more than it reported), then one
# failure per sanitizer report file.
import glob, json, os, re, sys
passed = failed = 0
lines = []
for spec in sys.argv[1:-1]:
    path, _, tag = spec.rpartition(":")
    if not os.path.exists(path):
        lines.append(f"  MISSING  {path}")
        failed += 1
        continue
    for raw in open(path):
        t = json.loads(raw)
        r = t.get("result")
        name = (f"[{tag}] " if tag else "") + str(t.get("name"))
        out = t.get("stdout") or ""
        # A skipped subtest ("ok N # SKIP") is a failure too: every test here is required.
        skipped = len(re.findall(r"^ok \d+.*# SKIP", out, re.M | re.I))
        ok = len(re.findall(r"^ok \d+", out, re.M)) - skipped
        bad = len(re.findall(r"^not ok \d+", out, re.M)) + skipped
        if skipped:
            lines.append(f"  SKIP     {name}: {skipped} subtest(s) skipped")
        if r == "OK":
            passed += ok if (ok or skipped or bad) else 1
            failed += bad
            if bad and not skipped:
                lines.append(f"  FAIL     {name}")
        else:
            # FAIL, TIMEOUT, ERROR, and SKIP: every suite is required
            passed += ok
            failed += max(bad, 1)
            lines.append(f"  {r:8} {name}" + ("  (a required test skipped)" if r == "SKIP" else ""))
for report in sorted(glob.glob(os.path.join(sys.argv[-1], "*"))):
    failed += 1
    with open(report, errors="replace") as f:
        head = "".join(f.readlines()[:40])
    lines.append(f"  SANITIZER {report}\n" + "\n".join("      " + l for l in head.splitlines()))
if lines:
    print("not passed:")
    print("\n".join(lines))
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
PY
