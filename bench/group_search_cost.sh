#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# What a login's group search costs cvat-authd here, and what the group mirror saves of it: its
# cache-off logins (right password, 8 and 1 threads) as bench/compare.sh configures it (the
# groups from the mirror, the directory having syncprov), next to the same daemon with
# ldap.group_mirror false (a group search per login), and with group_type member_of on the
# benchmark's directory, which has no memberOf, so that a login asks the directory two things
# (user search and bind) and takes default_role user: the most that taking the user's groups
# from memory could save. nslcd's logins and the libldap floor (search + bind) in the same
# rounds, for scale. compare.sh's directory, setup and table.
#
#   bench/group_search_cost.sh [--rounds N] [--users N] [--seconds S] [--out DIR]
#
# As root, as compare.sh (it runs compare.sh with this file as its CVAT_BENCH_HOOK).
set -euo pipefail

if [[ -z "${CVAT_BENCH_INSIDE:-}" ]]; then
  cd "$(dirname "$0")/.."
  rounds=2 args=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --rounds) rounds=${2:-}; shift 2 ;;
      --users|--seconds|--out) args+=("$1" "${2:-}"); shift 2 ;;
      *) echo "usage: bench/group_search_cost.sh [--rounds N] [--users N] [--seconds S] [--out DIR]" >&2; exit 64 ;;
    esac
  done
  [[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "group_search_cost.sh: --rounds takes a number" >&2; exit 64; }
  export CVAT_GSC_ROUNDS=$rounds
  exec env CVAT_BENCH_HOOK=". $PWD/bench/group_search_cost.sh" bash bench/compare.sh --runs "$rounds" --no-nginx "${args[@]}"
fi

# Sourced by compare.sh inside its namespace: its functions (login, cvat_config, stop_cvat) and
# variables (CV, BUILD, LOGIN_POOL, NSLCD_PID, ...) are in scope.
export CVAT_AUTH_SOCKET=$CV/socket
gsc_start() {  # SED [MUST]: compare.sh's daemon, its config edited by SED, which must leave a line MUST
  start_cvat 0 "$1"
  [[ -z "${2:-}" ]] || grep -q "$2" "$CV/auth_config.yml" || { log "compare.sh's cvat config has changed: no \"$2\""; exit 1; }
}
for ((RUN = 1; RUN <= CVAT_GSC_ROUNDS; RUN++)); do
  log "round $RUN of $CVAT_GSC_ROUNDS"
  gsc_start ''
  login cvat-cache-off bench-cvat 8 ok "$LOGIN_POOL" "$CVAT_PID"
  login cvat-cache-off bench-cvat 1 ok "$LOGIN_POOL" "$CVAT_PID"
  gsc_start 's/^\(  default_role: none\)$/\1\n  group_mirror: false/' 'group_mirror: false'
  login cvat-searched bench-cvat 8 ok "$LOGIN_POOL" "$CVAT_PID"
  login cvat-searched bench-cvat 1 ok "$LOGIN_POOL" "$CVAT_PID"
  gsc_start 's/group_type: nested_group_of_names/group_type: member_of/; s/default_role: none/default_role: user/' \
    'group_type: member_of'
  login cvat-no-groups bench-cvat 8 ok "$LOGIN_POOL" "$CVAT_PID"
  login cvat-no-groups bench-cvat 1 ok "$LOGIN_POOL" "$CVAT_PID"
  login nslcd bench-nslcd 8 ok "$LOGIN_POOL" "$NSLCD_PID"
  for t in 8 1; do
    "$BENCH" floor uri="$URI" binddn="$BIND_DN" bindpw="$BIND_PW" base="ou=people,$BASE" users="$LOGIN_POOL" \
      password="$PASSWORD" threads="$t" seconds="$SECS" dir_pids="$SLAPD_PID" | record
  done
done
