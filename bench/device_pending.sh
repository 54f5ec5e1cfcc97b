#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# What N pending device logins cost cvat-authd: the real OpenID provider of the tests
# (tests/fixtures/idp.sh: glewlwyd over HTTPS), the daemon, and one client holding N device
# logins at once (each first prompt answered with Enter, so the daemon polls the IdP for all
# of them). Prints the daemon's threads and resident memory before, with all N pending, and
# halfway through holding them SECONDS; the lines are JSON.
#   bench/device_pending.sh [N] [SECONDS]      (default 1000 logins, held 30 s)
# IDP_DEVICE_INTERVAL (default 5, RFC 8628's default) is the interval glewlwyd asks for.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
HOLD=${2:-30}
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$HOLD" =~ ^[0-9]+$ ]] || { echo "usage: device_pending.sh [N] [SECONDS]" >&2; exit 64; }
export IDP_DEVICE_INTERVAL=${IDP_DEVICE_INTERVAL:-5}
BUILD=${BUILD_DIR:-$PWD/build-bench}
[[ -f "$BUILD/build.ninja" ]] || meson setup "$BUILD" -Dbuildtype=release >/dev/null
ninja -C "$BUILD" helper/cvat-authd bench/cvat-bench-device >/dev/null
W=$(mktemp -d /tmp/cvat-bench-device.XXXXXX)
PID="" CLIENT=""
cleanup() {  # (each kill may find its process gone: not an error, and set -e must not stop here)
  [[ -z "$CLIENT" ]] || kill "$CLIENT" 2>/dev/null || true
  [[ -z "$PID" ]] || kill "$PID" 2>/dev/null || true
  bash tests/fixtures/idp.sh stop "$W/idp" >/dev/null 2>&1 || true
  [[ -n "${CVAT_BENCH_KEEP:-}" ]] || rm -rf "$W"
}
trap cleanup EXIT
bash tests/fixtures/idp.sh start "$W/idp" >/dev/null
. "$W/idp/env"
cat >"$W/auth_config.yml" <<YAML
helper: {socket: $W/socket, cache_dir: $W/cache, log_level: warning, max_connections: $((N + 64))}
sso:
  enabled: true
  selection_mode: lowest_weight
  identity_providers:
    - id: corp-oidc
      protocol: OIDC
      name: Bench IdP
      server_url: $OIDC_ISSUER
      client_id: $OIDC_CLIENT_ID
      client_secret: $OIDC_CLIENT_SECRET
      ca_file: $OIDC_CA_FILE
      role_claim: groups
      role_values: {admin: [cvat-admins], user: [cvat-users], worker: [cvat-workers]}
YAML
chmod 600 "$W/auth_config.yml"
"$BUILD/helper/cvat-authd" --foreground --config "$W/auth_config.yml" 2>"$W/authd.log" &
PID=$!
for _ in $(seq 200); do [[ -S "$W/socket" ]] && break; sleep 0.05; done
[[ -S "$W/socket" ]] || { cat "$W/authd.log" >&2; exit 1; }
sample() {  # PHASE
  local threads rss
  threads=$(awk '/^Threads:/ { print $2 }' "/proc/$PID/status")
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status")
  printf '{"test":"device","phase":"%s","daemon_threads":%s,"daemon_rss_kib":%s}\n' "$1" "$threads" "$rss"
}
# Device authorizations glewlwyd holds (one per flow the daemon started), and how many of them
# the daemon polled within the last interval + 2 s (gpoda_last_check: glewlwyd's mark of the
# last token request of that flow).
authorizations() { sqlite3 -cmd '.timeout 5000' "$GLEWLWYD_DB" "SELECT COUNT(*) FROM gpo_device_authorization" 2>/dev/null || echo 0; }
polled_recently() {
  sqlite3 -cmd '.timeout 5000' "$GLEWLWYD_DB" "SELECT COUNT(*) FROM gpo_device_authorization
    WHERE gpoda_last_check >= CAST(strftime('%s','now') AS INTEGER) - $((IDP_DEVICE_INTERVAL + 2))" 2>/dev/null || echo 0
}
{
  sample before
  "$BUILD/bench/cvat-bench-device" "$W/socket" "$N" "$HOLD" >"$W/client.out" 2>"$W/client.err" &
  CLIENT=$!
  for _ in $(seq 3000); do grep -q '"phase":"started"' "$W/client.out" 2>/dev/null && break; kill -0 "$CLIENT" 2>/dev/null || break; sleep 0.1; done
  cat "$W/client.out"
  sample pending
  sleep $(( HOLD / 2 ))
  sample "held $(( HOLD / 2 )) s"
  printf '{"test":"device","phase":"held %d s","polled_in_last_%d_s":%s}\n' "$(( HOLD / 2 ))" \
    "$((IDP_DEVICE_INTERVAL + 2))" "$(polled_recently)"
  rc=0; wait "$CLIENT" || rc=$?; CLIENT=""
  tail -n +2 "$W/client.out"
  printf '{"test":"device","phase":"done","client_rc":%d,"device_authorizations_at_idp":%s,"interval_s":%s}\n' \
    "$rc" "$(authorizations)" "$IDP_DEVICE_INTERVAL"
} | tee "$W/results.jsonl"
echo "== $N pending device logins (interval ${IDP_DEVICE_INTERVAL} s): threads and VmRSS of cvat-authd"
jq -r 'select(.daemon_threads) | "\(.phase): \(.daemon_threads) threads, \(.daemon_rss_kib / 1024 | . * 10 | round / 10) MiB"' "$W/results.jsonl"
[[ -s "$W/client.err" ]] && { echo "client:"; head -5 "$W/client.err"; }
tail -3 "$W/authd.log"
