#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Measures login latency through pam_cvat against the test slapd (AD-shaped tree, nested
# groups), one thread, and the raw libldap floor on the same server; then the same logins
# answered by the verdict cache (what nginx's repeated requests cost); then getpwnam through
# nss_cvat, cold (directory) and warm (the published nss.mc).
#   bench/login_latency.sh [N] [--groups G]   (default N=100)
# --groups G: alice is first made a member of G more groups (Big 0001..G, one ldapmodify),
# and the daemon may collect them all (max_groups G + 100): a user in thousands of groups.
set -euo pipefail
cd "$(dirname "$0")/.."
N=100
NGROUPS=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --groups) NGROUPS=${2:?--groups G}; shift 2 ;;
    *) N=$1; shift ;;
  esac
done
[[ "$N" =~ ^[0-9]+$ && "$NGROUPS" =~ ^[0-9]+$ ]] || { echo "usage: login_latency.sh [N] [--groups G]" >&2; exit 64; }
BUILD=${BUILD_DIR:-$PWD/build}
[[ -f "$BUILD/build.ninja" ]] || meson setup "$BUILD" >/dev/null
ninja -C "$BUILD" >/dev/null
W=$(mktemp -d /tmp/cvat-bench.XXXXXX)
PID=""
trap '[[ -n "$PID" ]] && kill "$PID" 2>/dev/null; bash tests/fixtures/slapd.sh stop "$W/slapd" >/dev/null 2>&1; rm -rf "$W"' EXIT
bash tests/fixtures/slapd.sh start "$W/slapd" ad >/dev/null
. "$W/slapd/env"
U="CN=Users,DC=ad,DC=example,DC=test"
if [[ "$NGROUPS" -gt 0 ]]; then
  for ((i = 1; i <= NGROUPS; i++)); do
    printf 'dn: CN=Big %05d,%s\nobjectClass: group\ncn: Big %05d\nmember: CN=Alice Admin,%s\n\n' "$i" "$U" "$i" "$U"
  done >"$W/groups.ldif"
  t0=$EPOCHREALTIME
  ldapmodify -a -x -H "$LDAP_URI" -D "$LDAP_ADMIN_DN" -w "$LDAP_ADMIN_PW" -f "$W/groups.ldif" >/dev/null
  echo "== alice is in $NGROUPS more groups (loaded in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s)"
fi
printf 'Bind-Secret-1\n' >"$W/bind_password"; chmod 600 "$W/bind_password"
cat >"$W/auth_config.yml" <<YAML
helper: {socket: $W/socket, cache_dir: $W/cache, log_level: info, verdict_ttl: @TTL@}
ldap:
  server_uri: $LDAP_URI
  bind_dn: "CN=cvat_bind,$U"
  bind_password_file: $W/bind_password
  user_search: {base: "$U", filter: "(sAMAccountName=%(user)s)"}
  group_search: {base: "$U", filter: "(objectClass=group)"}
  group_type: nested_active_directory
  user_attr_map: {user_name: sAMAccountName, first_name: givenName, last_name: sn, email: mail}
  role_groups: {admin: ["CN=CVAT Admins,$U"], user: ["CN=CVAT Users,$U"], worker: ["CN=CVAT Workers,$U"]}
  max_groups: $((NGROUPS > 3900 ? NGROUPS + 100 : 4096))
YAML
start_daemon() {  # TTL
  sed -i "s/verdict_ttl: [0-9@A-Z]*/verdict_ttl: $1/" "$W/auth_config.yml"
  "$BUILD/helper/cvat-authd" --foreground --config "$W/auth_config.yml" 2>>"$W/authd.log" &
  PID=$!
  for _ in $(seq 100); do [[ -S "$W/socket" ]] && break; sleep 0.05; done
}
stop_daemon() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; rm -f "$W/socket"; }
chmod 600 "$W/auth_config.yml"
export PAM_CVAT_SO=$BUILD/pam_cvat/pam_cvat.so
login() {
  "$BUILD/bench/cvat-bench-login" "$W" "$W/socket" alice alice-Passw0rd "$LDAP_URI" "CN=cvat_bind,$U" Bind-Secret-1 \
    "$U" "(sAMAccountName=alice)" "$N"
}
echo "== every login asks the directory (helper.verdict_ttl: 0)"
start_daemon 0
login
echo "== repeated logins within helper.verdict_ttl (30 s): the verdict cache answers"
stop_daemon
start_daemon 30
login | grep pam_
echo "== getpwnam through nss_cvat"
${NSS_BENCH_WRAP:-} "$BUILD/bench/cvat-bench-nss-daemon" "$BUILD/nss_cvat/libnss_cvat.so.2" "$BUILD/helper/cvat-authctl" \
  "$W/socket" alice "$N" 100000
# The daemon's own account of each request (its log keeps the time each one took).
[[ -z "${KEEP_LOG:-}" ]] || cp "$W/authd.log" "$KEEP_LOG"
