#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Measures the time of a password change through pam_cvat (pam_chauthtok as passwd(1) does
# it) against the test slapd with the ppolicy overlay, over LDAPS, one thread.
#   bench/password_change.sh [N]      (default N=20)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
BUILD=${BUILD_DIR:-$PWD/build}
[[ -f "$BUILD/build.ninja" ]] || meson setup "$BUILD" >/dev/null
ninja -C "$BUILD" >/dev/null
W=$(mktemp -d /tmp/cvat-bench.XXXXXX)
PID=""
trap '[[ -n "$PID" ]] && kill "$PID" 2>/dev/null; bash tests/fixtures/slapd.sh stop "$W/slapd" >/dev/null 2>&1; rm -rf "$W"' EXIT
bash tests/fixtures/slapd.sh start "$W/slapd" ppolicy tls >/dev/null
. "$W/slapd/env"
B="dc=pp,dc=example,dc=test"
printf 'Bind-Secret-3\n' >"$W/bind_password"; chmod 600 "$W/bind_password"
cat >"$W/auth_config.yml" <<YAML
helper: {socket: $W/socket, cache_dir: $W/cache, log_level: info}
ldap:
  server_uri: $LDAPS_URI
  tls: {ca_file: $CA_FILE}
  bind_dn: "uid=cvat_bind,ou=system,$B"
  bind_password_file: $W/bind_password
  user_search: {base: "ou=people,$B", scope: onelevel, filter: "(uid=%(user)s)"}
  group_search: {base: "ou=groups,$B", filter: "(objectClass=groupOfNames)"}
  group_type: group_of_names
  user_attr_map: {user_name: uid}
  role_groups: {user: ["cn=cvat-users,ou=groups,$B"]}
YAML
chmod 600 "$W/auth_config.yml"
"$BUILD/helper/cvat-authd" --foreground --config "$W/auth_config.yml" 2>>"$W/authd.log" &
PID=$!
for _ in $(seq 100); do [[ -S "$W/socket" ]] && break; sleep 0.05; done
export PAM_CVAT_SO=$BUILD/pam_cvat/pam_cvat.so
"$BUILD/bench/cvat-bench-pwchange" "$W" "$W/socket" pat pat-Passw0rd "$N"
