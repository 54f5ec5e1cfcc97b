#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The README's test command: installs what is missing, builds from scratch, runs every suite
# (unit, module, integration, and fuzz: the fuzz targets over their seed corpora) and ends
# with one summary line "N passed, N failed, N skipped".
# Every suite is required: a test that skips counts as failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-test}

bash scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

rm -rf "$BUILD"
if ! meson setup "$BUILD" -Dwerror=true; then
  echo "0 passed, 1 failed"; exit 1
fi
if ! ninja -C "$BUILD"; then
  echo "0 passed, 1 failed"; exit 1
fi

meson test -C "$BUILD" --print-errorlogs --num-processes 2 --suite unit --suite module --suite integration --suite e2e --suite fuzz
python3 - "$BUILD/meson-logs/testlog.json" <<'PY'
# Counts TAP subtests (a program that died counts one failure more than it reported).
import json, re, sys
passed = failed = 0
lines = []
for raw in open(sys.argv[1]):
    t = json.loads(raw)
    r = t.get("result")
    out = t.get("stdout") or ""
    # A skipped subtest ("ok N # SKIP") is a failure too: every test here is required.
    skipped = len(re.findall(r"^ok \d+.*# SKIP", out, re.M | re.I))
    ok = len(re.findall(r"^ok \d+", out, re.M)) - skipped
    bad = len(re.findall(r"^not ok \d+", out, re.M)) + skipped
    if skipped:
        lines.append(f"  SKIP     {t.get('name')}: {skipped} subtest(s) skipped")
    if r == "OK":
        passed += ok if (ok or skipped or bad) else 1
        failed += bad
        if bad and not skipped:
            lines.append(f"  FAIL     {t.get('name')}")
    else:
        # FAIL, TIMEOUT, ERROR, and SKIP: every suite is required
        passed += ok
        failed += max(bad, 1)
        lines.append(f"  {r:8} {t.get('name')}" + ("  (a required test skipped)" if r == "SKIP" else ""))
if lines:
    print("not passed:")
    print("\n".join(lines))
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
PY
