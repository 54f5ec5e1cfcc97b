#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# cvat-auth next to SSSD and nss-pam-ldapd (nslcd), against one slapd, in one run.
#
#   bench/compare.sh [--users 10000|100000] [--runs N] [--seconds S] [--out DIR] [--no-nginx]
#                    [--no-syncprov]
#
# As root. Installs what it needs (bench/install-deps.sh: wrk, gnuplot, jq, slapd; nslcd and
# sssd only UNPACKED into /var/cache/cvat-bench/root, never installed), builds the project in
# build-bench/ (release), then runs everything inside a private mount namespace (unshare -m)
# whose /etc, /run, /var, /usr/lib/x86_64-linux-gnu, /usr/libexec and /usr/share are overlays:
# nslcd and sssd find their compiled-in paths (/etc/nslcd.conf, /run/nslcd/socket,
# /etc/sssd/sssd.conf, /var/lib/sss/...) there, and nothing on the host changes — not
# /etc/nsswitch.conf, not /etc/pam.d, no service. PAM modules are driven through
# pam_start_confdir with a service file in the work directory; NSS modules through dlopen.
#
# Each run measures every system: NSS getpwnam/getgrnam/initgroups cold and warm, PAM logins
# (right and wrong password, 1 and 8 threads; cvat-authd with helper.verdict_ttl 0 and 30 s),
# the libldap floor (search + bind on persistent connections; and with the nested group walk),
# a Unix-socket round trip, nginx Basic auth through ngx_http_auth_pam with each PAM module
# (wrk), the CPU per login of the daemons, of slapd and of the calling process, and resident
# memory. DIR gets raw.jsonl (every measurement of every run), results.json (medians over the
# runs), table.txt and compare.png.
# Compare systems within one run; numbers from different machines do not compare.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
ROOT=${CVAT_BENCH_ROOT:-/var/cache/cvat-bench/root}
USERS=10000 RUNS=3 SECS=3 OUT="" NGINX=1 SYNCPROV=1
ARGS=("$@")
usage() { echo "usage: bench/compare.sh [--users 10000|100000] [--runs N] [--seconds S] [--out DIR] [--no-nginx] [--no-syncprov]" >&2; exit 64; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --users) USERS=${2:-}; shift 2 ;;
    --runs) RUNS=${2:-}; shift 2 ;;
    --seconds) SECS=${2:-}; shift 2 ;;
    --out) OUT=${2:-}; shift 2 ;;
    --no-nginx) NGINX=""; shift ;;
    --no-syncprov) SYNCPROV=""; shift ;;
    *) usage ;;
  esac
done
[[ "$USERS" =~ ^[0-9]+$ && "$USERS" -ge 1000 && "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 ]] || usage
[[ "$SECS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage
OUT=${OUT:-$SRC/bench/results/run-$(date +%Y%m%d-%H%M%S)}
BUILD=${BUILD_DIR:-$SRC/build-bench}
PASSWORD=Bench-Passw0rd BIND_PW=Bind-Secret-1 BASE=dc=bench,dc=test
BIND_DN=cn=bind,ou=services,$BASE

# ---------------------------------------------------------------------------------------------
# Outside the namespace: dependencies, build, then the run itself in `unshare -m`, then the
# summary (written from here, so DIR may be anywhere, even under an overlaid path).
if [[ -z "${CVAT_BENCH_INSIDE:-}" ]]; then
  [[ $EUID -eq 0 ]] || { echo "compare.sh: run as root (mount namespace, daemons)" >&2; exit 1; }
  if [[ ! -x "$ROOT/usr/sbin/nslcd" || ! -x "$ROOT/usr/sbin/sssd" ]] || ! command -v wrk gnuplot jq >/dev/null; then
    bash bench/install-deps.sh "$ROOT"
  fi
  [[ -f "$BUILD/build.ninja" ]] || meson setup "$BUILD" -Dbuildtype=release >/dev/null
  ninja -j2 -C "$BUILD" helper/cvat-authd helper/cvat-authctl pam_cvat/pam_cvat.so \
    nss_cvat/libnss_cvat.so.2 bench/cvat-bench-compare >/dev/null
  W=$(mktemp -d /tmp/cvat-bench-compare.XXXXXX)
  chmod 755 "$W"   # nginx's workers (www-data) reach the daemon's socket in here
  # CVAT_BENCH_KEEP=1 keeps the work directory (configs, daemons' logs).
  trap '[[ -n "${CVAT_BENCH_KEEP:-}" ]] && echo "kept $W" || rm -rf "$W"' EXIT
  mkdir -p "$OUT"
  echo "== compare.sh: $USERS users, $RUNS runs, ${SECS} s per measurement; slapd ${SYNCPROV:+with}${SYNCPROV:-without} syncprov; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  CVAT_BENCH_INSIDE=1 W=$W unshare -m --propagation private bash ${CVAT_BENCH_TRACE:+-x} "$SRC/bench/compare.sh" "${ARGS[@]}"
  cp "$W/raw.jsonl" "$OUT/raw.jsonl"
  uptime >"$OUT/uptime.txt"
  bash "$SRC/bench/compare_report.sh" "$OUT" "$USERS" "$RUNS"   # not exec: the EXIT trap removes W
  exit
fi

# ---------------------------------------------------------------------------------------------
# Inside the namespace.
. "$SRC/tests/fixtures/ports.sh"
PIDS=()
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  sleep 0.3
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -KILL "${PIDS[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
log() { echo "-- $*" >&2; }
overlay() {  # PATH LOWER...: read-only unless a work dir is given (then writes go to W)
  local path=$1 name; name=$(echo "$path" | tr / _)
  mkdir -p "$W/ov/$name.up" "$W/ov/$name.work"
  local lower=$path
  [[ -n "${2:-}" ]] && lower=$2:$path
  mount -t overlay "cvat-bench$name" -o "lowerdir=$lower,upperdir=$W/ov/$name.up,workdir=$W/ov/$name.work" "$path"
}
overlay /etc
overlay /run
overlay /var   # (ROOT lies under /var: overlayfs refuses overlapping layers; sssd's dirs are made below)
overlay /usr/lib/x86_64-linux-gnu "$ROOT/usr/lib/x86_64-linux-gnu"
overlay /usr/libexec "$ROOT/usr/libexec"
overlay /usr/share "$ROOT/usr/share"
LIBDIR=/usr/lib/x86_64-linux-gnu
BENCH=$BUILD/bench/cvat-bench-compare
RAW=$W/raw.jsonl
: >"$RAW"
# json EXTRA: adds "run" and the given fields to every JSON line on stdin, appends them to RAW.
record() { jq -c --argjson run "$RUN" '. + {run: $run}' | tee -a "$RAW" | jq -r '"   \(.test) \(.system) \(.op // "") \(.phase // "") t=\(.threads // 1) \(.password // "") \(.ops_s) ops/s p50 \(.p50_us) us p99 \(.p99_us) us errors \(.errors)"' >&2; }

# --- the directory --------------------------------------------------------------------------
SL=$W/slapd
mkdir -p "$SL/db"
GROUP_SIZE=100
NTEAMS=$(( (USERS + GROUP_SIZE - 1) / GROUP_SIZE ))
HASH=$(slappasswd -h '{SSHA}' -s "$PASSWORD")
log "LDIF: $USERS posixAccount users, $NTEAMS posixGroups (memberUid) and $NTEAMS groupOfNames teams nested in cvat-users"
awk -v n="$USERS" -v gs="$GROUP_SIZE" -v base="$BASE" -v hash="$HASH" -v bindpw="$(slappasswd -h '{SSHA}' -s "$BIND_PW")" '
BEGIN {
  printf "dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: bench\no: bench\n\n", base
  split("people groups services", ous, " ")
  for (i = 1; i <= 3; i++) printf "dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n", ous[i], base, ous[i]
  printf "dn: cn=bind,ou=services,%s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: bind\nuserPassword: %s\n\n", base, bindpw
  for (i = 1; i <= n; i++) {
    u = sprintf("u%06d", i)
    printf "dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: %s\ncn: User %d\nsn: %d\ngivenName: User\nmail: %s@bench.test\nuidNumber: %d\ngidNumber: 10000\nhomeDirectory: /home/%s\nloginShell: /bin/bash\nuserPassword: %s\n\n", u, base, u, i, i, u, 100000 + i, u, hash
  }
  printf "dn: cn=users,ou=groups,%s\nobjectClass: posixGroup\ncn: users\ngidNumber: 10000\n\n", base
  nt = int((n + gs - 1) / gs)
  for (t = 1; t <= nt; t++) {
    g = sprintf("g%04d", t)
    printf "dn: cn=%s,ou=groups,%s\nobjectClass: posixGroup\ncn: %s\ngidNumber: %d\n", g, base, g, 20000 + t
    for (i = (t - 1) * gs + 1; i <= t * gs && i <= n; i++) printf "memberUid: u%06d\n", i
    printf "\n"
    printf "dn: cn=team-%04d,ou=groups,%s\nobjectClass: groupOfNames\ncn: team-%04d\n", t, base, t
    for (i = (t - 1) * gs + 1; i <= t * gs && i <= n; i++) printf "member: uid=u%06d,ou=people,%s\n", i, base
    printf "\n"
  }
  printf "dn: cn=cvat-users,ou=groups,%s\nobjectClass: groupOfNames\ncn: cvat-users\n", base
  for (t = 1; t <= nt; t++) printf "member: cn=team-%04d,ou=groups,%s\n", t, base
  printf "\n"
  printf "dn: cn=cvat-admins,ou=groups,%s\nobjectClass: groupOfNames\ncn: cvat-admins\nmember: uid=u000001,ou=people,%s\n\n", base, base
}' >"$SL/data.ldif"
cat >"$SL/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
${SYNCPROV:+moduleload syncprov}
pidfile $SL/slapd.pid
# As Debian's slapd package sets it (olcLogLevel: none, /usr/share/slapd/slapd.init.ldif):
# slapd's own default, stats, syslogs several lines per operation.
loglevel ${SLAPD_LOGLEVEL:-none}
database mdb
maxsize 4294967296
dbnosync
suffix "$BASE"
rootdn "cn=admin,$BASE"
rootpw admin-Secret
directory $SL/db
index objectClass,uid,cn,member,memberUid,uidNumber,gidNumber eq
${SYNCPROV:+index entryCSN,entryUUID eq}
${SYNCPROV:+overlay syncprov}
limits * size.soft=unlimited size.hard=unlimited
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
EOF
t0=$EPOCHREALTIME
slapadd -q -f "$SL/slapd.conf" -l "$SL/data.ldif" >"$SL/slapadd.log" 2>&1 || { cat "$SL/slapadd.log" >&2; exit 1; }
log "slapadd: $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
for _ in 1 2 3 4 5; do
  LDAP_PORT=$(pick_port)
  slapd -d 0 -f "$SL/slapd.conf" -h "ldap://127.0.0.1:$LDAP_PORT/" </dev/null >"$SL/slapd.log" 2>&1 &
  SLAPD_PID=$!; PIDS+=("$SLAPD_PID")
  for _ in $(seq 100); do
    ldapsearch -x -H "ldap://127.0.0.1:$LDAP_PORT" -b "" -s base >/dev/null 2>&1 && break 2
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
done
URI=ldap://127.0.0.1:$LDAP_PORT
ldapwhoami -x -H "$URI" -D "uid=u000001,ou=people,$BASE" -w "$PASSWORD" >/dev/null || { log "slapd refused u000001"; exit 1; }
log "slapd on $URI"

# --- cvat-authd -------------------------------------------------------------------------------
CV=$W/cvat
mkdir -p "$CV"
printf '%s\n' "$BIND_PW" >"$CV/bind_password"; chmod 600 "$CV/bind_password"
cvat_config() {  # VERDICT_TTL [DIR [NSS_YAML]]: the daemon's socket and cache in DIR (default CV)
  local dir=${2:-$CV}
  cat <<YAML
# conf/auth_config.openldap.yml's shape, on this slapd
ldap:
  server_uri: "$URI"
  bind_dn: "$BIND_DN"
  bind_password_file: $CV/bind_password
  user_search: {base: "ou=people,$BASE", scope: onelevel, filter: "(&(objectClass=posixAccount)(uid=%(user)s))"}
  group_search: {base: "ou=groups,$BASE", scope: subtree, filter: "(objectClass=groupOfNames)"}
  group_type: nested_group_of_names
  user_attr_map: {user_name: uid, first_name: givenName, last_name: sn, email: mail}
  role_groups:
    admin: ["cn=cvat-admins,ou=groups,$BASE"]
    user: ["cn=cvat-users,ou=groups,$BASE"]
  default_role: none
# Failed-login throttling off: the wrong-password rows repeat the same users' wrong passwords
# thousands of times (helper.rate_limit would hold them, as it should a guesser; nslcd and sssd
# have no such limit).
helper:
  socket: $dir/socket
  cache_dir: $dir/cache
  log_level: warning
  verdict_ttl: $1
  rate_limit: {per_user: {failures: 0}, per_peer: {failures: 0}}
${3:-}
YAML
}
CVAT_PID=""
start_cvat() {  # VERDICT_TTL [SED]: the config of cvat_config VERDICT_TTL, edited by SED
  stop_cvat
  cvat_config "$1" | sed -e "${2:-}" >"$CV/auth_config.yml"; chmod 600 "$CV/auth_config.yml"
  rm -f "$CV/socket"
  "$BUILD/helper/cvat-authd" --foreground --config "$CV/auth_config.yml" 2>>"$CV/authd.log" &
  CVAT_PID=$!; PIDS+=("$CVAT_PID")
  for _ in $(seq 200); do [[ -S "$CV/socket" ]] && break; sleep 0.05; done
  [[ -S "$CV/socket" ]] || { tail "$CV/authd.log" >&2; exit 1; }
  mirror_ready "$CV"
}
# mirror_ready DIR: with syncprov, the group mirror of the daemon of DIR/auth_config.yml (socket
# DIR/socket) in use before anything is measured, unless that config turns it off (the first
# login starts its feed: here one of a name the directory does not have).
mirror_ready() {
  [[ -n "$SYNCPROV" ]] || return 0
  ! grep -qE '^  (group_mirror: false|group_type: member_of)$' "$1/auth_config.yml" || return 0
  echo not-a-password | "$BUILD/helper/cvat-authctl" --socket "$1/socket" login cvat-bench-nobody >/dev/null 2>&1 || true
  for _ in $(seq 100); do
    "$BUILD/helper/cvat-authctl" --socket "$1/socket" status 2>/dev/null | grep -q 'group mirror .*kept current' && return 0
    sleep 0.05
  done
  log "the group mirror did not come up: $("$BUILD/helper/cvat-authctl" --socket "$1/socket" status 2>&1 | grep 'group mirror')"
  exit 1
}
stop_cvat() { [[ -z "$CVAT_PID" ]] || { kill "$CVAT_PID" 2>/dev/null; wait "$CVAT_PID" 2>/dev/null || true; CVAT_PID=""; }; }
# getgrnam like for like: a second cvat-authd (own socket, nss.mc and a fresh cache) with
# nss.directory_groups on, so that it answers for the directory groups of the users it has
# looked up (named after their CN) as nslcd and SSSD answer for posixGroups. Its groups are
# the benchmark's teams: each the same 100 users as the posixGroup of the same number.
# cvat_groups_getgrnam FROM COUNT TEAMS: looks up users FROM.. (COUNT) through it (not
# measured: cvat-authd knows a group through the users it has seen, and never searches the
# directory for one), lets it publish them (as a host's users were looked up before anyone
# lists their group), then measures getgrnam: "cold" is each team's first lookup, from nss.mc.
cvat_groups_getgrnam() {
  local dir=$CV/groups-$RUN pid
  mkdir -p "$dir"
  cvat_config 0 "$dir" "nss: {directory_groups: true}" >"$dir/auth_config.yml"; chmod 600 "$dir/auth_config.yml"
  "$BUILD/helper/cvat-authd" --foreground --config "$dir/auth_config.yml" 2>>"$dir/authd.log" &
  pid=$!; PIDS+=("$pid")
  for _ in $(seq 200); do [[ -S "$dir/socket" ]] && break; sleep 0.05; done
  [[ -S "$dir/socket" ]] || { tail "$dir/authd.log" >&2; exit 1; }
  mirror_ready "$dir"
  CVAT_AUTH_SOCKET=$dir/socket "$BENCH" nss system=cvat-fill so="$BUILD/nss_cvat/libnss_cvat.so.2" symprefix=_nss_cvat \
    op=initgroups from="$1" count="$2" warm_seconds=0 settle=1.5 | sed -n 1p | jq -e '.errors == 0' >/dev/null ||
    { log "cvat-authd (directory groups) failed lookups of users $1..: see $dir/authd.log"; exit 1; }
  CVAT_AUTH_SOCKET=$dir/socket nss cvat "$BUILD/nss_cvat/libnss_cvat.so.2" _nss_cvat getgrnam names="$3"
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
}

# --- nslcd --------------------------------------------------------------------------------------
cat >/etc/nslcd.conf <<EOF
# nss-pam-ldapd with Debian's defaults, on this slapd
uid nobody
gid nogroup
uri $URI
base $BASE
binddn $BIND_DN
bindpw $BIND_PW
EOF
chmod 600 /etc/nslcd.conf
mkdir -p /run/nslcd; chown nobody:nogroup /run/nslcd   # as Debian's postinst does for its nslcd user
"$ROOT/usr/sbin/nslcd" -n 2>"$W/nslcd.log" &
NSLCD_PID=$!; PIDS+=("$NSLCD_PID")
for _ in $(seq 100); do [[ -S /run/nslcd/socket ]] && break; sleep 0.05; done
[[ -S /run/nslcd/socket ]] || { cat "$W/nslcd.log" >&2; exit 1; }

# --- sssd -------------------------------------------------------------------------------------
mkdir -p /etc/sssd /var/lib/sss/db /var/lib/sss/pipes/private /var/lib/sss/mc /var/lib/sss/pubconf \
  /var/lib/sss/gpo_cache /var/log/sssd
cat >/etc/sssd/sssd.conf <<EOF
# SSSD's LDAP provider with its defaults, on this slapd (rfc2307: posixGroup memberUid)
[sssd]
services = nss, pam
domains = bench
[nss]
[pam]
[domain/bench]
id_provider = ldap
auth_provider = ldap
access_provider = permit
ldap_uri = $URI
ldap_search_base = $BASE
ldap_schema = rfc2307
ldap_default_bind_dn = $BIND_DN
ldap_default_authtok = $BIND_PW
ldap_id_use_start_tls = false
# the cleartext bind on loopback, as for the others
ldap_auth_disable_tls_never_use_in_production = true
EOF
chmod 600 /etc/sssd/sssd.conf
"$ROOT/usr/sbin/sssd" -i --logger=files 2>"$W/sssd.log" &
SSSD_PID=$!; PIDS+=("$SSSD_PID")
for _ in $(seq 200); do [[ -S /var/lib/sss/pipes/pam ]] && [[ -S /var/lib/sss/pipes/nss ]] && break; sleep 0.1; done
[[ -S /var/lib/sss/pipes/pam ]] || { cat "$W/sssd.log" /var/log/sssd/*.log >&2; exit 1; }
sssd_pids() { local p; p=$(pgrep -d, -f "$ROOT/usr/libexec/sssd|$ROOT/usr/sbin/sssd|/usr/libexec/sssd/" || true); echo "$SSSD_PID${p:+,$p}"; }

# --- PAM services (pam_start_confdir reads them from here) --------------------------------------
PAMD=$W/pam.d
mkdir -p "$PAMD"
printf 'auth required %s socket=%s\naccount required %s socket=%s\n' \
  "$BUILD/pam_cvat/pam_cvat.so" "$CV/socket" "$BUILD/pam_cvat/pam_cvat.so" "$CV/socket" >"$PAMD/bench-cvat"
printf 'auth required %s/security/pam_ldap.so\naccount required %s/security/pam_ldap.so\n' "$LIBDIR" "$LIBDIR" >"$PAMD/bench-nslcd"
printf 'auth required %s/security/pam_sss.so\naccount required %s/security/pam_sss.so\n' "$LIBDIR" "$LIBDIR" >"$PAMD/bench-sssd"
# libpam alone: pam_permit does nothing, so a login through it costs what libpam itself does
# (reading the service file, its audit messages, pam_end): the floor under every PAM module.
printf 'auth required %s/security/pam_permit.so\naccount required %s/security/pam_permit.so\n' "$LIBDIR" "$LIBDIR" >"$PAMD/bench-permit"
# nginx's ngx_http_auth_pam calls pam_start(): the same files in this namespace's /etc/pam.d.
cp "$PAMD"/bench-* /etc/pam.d/

LOGIN_POOL=$((USERS / 2))   # logins draw from u000001..; NSS cold lookups use the other half
login() {  # SYSTEM SERVICE THREADS EXPECT PICK PIDS
  "$BENCH" login system="$1" confdir="$PAMD" service="$2" threads="$3" expect="$4" pick="$5" pids="$6" dir_pids="$SLAPD_PID" \
    preload="$(awk '{ print $3; exit }' "$PAMD/$2")" \
    users="$USERS" password="$([[ $4 == ok ]] && echo "$PASSWORD" || echo wrong-Passw0rd)" seconds="$SECS" | record
}
nss() {  # SYSTEM SO SYMPREFIX OP (names=...|from=.. count=..)
  "$BENCH" nss system="$1" so="$2" symprefix="$3" op="$4" "${@:5}" warm_seconds=1 settle=1.5 | record
}

# --- nginx: Basic auth through ngx_http_auth_pam, one location per PAM module ------------------
NGX=$W/nginx
nginx_bench() {  # [SUFFIX]: appended to the systems' names in the results
  local port="" pid="" s sfx=${1:-}
  mkdir -p "$NGX/tmp" "$NGX/www"
  for s in cvat nslcd sssd; do mkdir -p "$NGX/www/$s"; echo ok >"$NGX/www/$s/index.html"; done
  for _ in 1 2 3 4 5; do
    port=$(pick_port)
    cat >"$NGX/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_http_auth_pam_module.so;
user www-data;
worker_processes 2;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$port;
        root $NGX/www;
        location /cvat/ { auth_pam "CVAT"; auth_pam_service_name "bench-cvat"; }
        location /nslcd/ { auth_pam "CVAT"; auth_pam_service_name "bench-nslcd"; }
        location /sssd/ { auth_pam "CVAT"; auth_pam_service_name "bench-sssd"; }
    }
}
EOF
    /usr/sbin/nginx -c "$NGX/nginx.conf" -p "$NGX/" -e "$NGX/error.log" -g 'daemon off;' </dev/null >>"$NGX/stdout.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do port_in_use "$port" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    port_in_use "$port" && break
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""
  done
  [[ -n "$pid" ]] || { tail "$NGX/error.log" >&2; exit 1; }
  PIDS+=("$pid")
  # 100 users' credentials, one drawn at random per request (as a web app's users come back).
  {
    echo 'local creds = {'
    for i in $(seq 1 100); do printf '"%s",\n' "$(printf 'u%06d:%s' "$i" "$PASSWORD" | base64 -w0)"; done
    echo '}'
    echo 'request = function() return wrk.format("GET", nil, {["Authorization"] = "Basic " .. creds[math.random(#creds)]}) end'
  } >"$NGX/creds.lua"
  NGINX_PORT=$port NGINX_PID=$pid
  [[ -z "${NGINX_ONLY_START:-}" ]] || return 0
  for s in cvat nslcd sssd; do
    curl -fsS -o /dev/null -u "u000001:$PASSWORD" "http://127.0.0.1:$port/$s/" || log "nginx: $s refused u000001"
    wrk -t2 -c8 -d"${SECS}s" --latency -s "$NGX/creds.lua" "http://127.0.0.1:$port/$s/" >"$NGX/wrk-$s.txt" 2>&1 || true
    awk -v sys="$s$sfx" '
      function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v }
      /Requests\/sec:/ { rps = $2 }
      /^ +50%/ { p50 = us($2) }
      /^ +99%/ { p99 = us($2) }
      /Non-2xx/ { bad = $NF }
      / requests in / { n = $1 }
      END { printf "{\"test\":\"nginx\",\"system\":\"%s\",\"ops\":%d,\"errors\":%d,\"ops_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", sys, n, bad + 0, rps, p50, p99 }
    ' "$NGX/wrk-$s.txt" | record
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
}

# CVAT_BENCH_HOOK: a command run here instead of the measurements (debugging the setup).
if [[ -n "${CVAT_BENCH_HOOK:-}" ]]; then start_cvat 0; eval "$CVAT_BENCH_HOOK"; exit; fi

COLD=200
for ((RUN = 1; RUN <= RUNS; RUN++)); do
  log "run $RUN of $RUNS ($(cut -d' ' -f1-3 /proc/loadavg))"
  start_cvat 0
  # NSS: fresh names for every run and operation (never asked before, never logged in).
  b=$((LOGIN_POOL + 1 + (RUN - 1) * 3 * COLD))
  # getgrnam: the teams whose 100 users are all among those names (fresh every run too): the
  # posixGroups g<N> for nslcd and SSSD, the groupOfNames team-<N> for cvat-authd.
  t1=$(( (b - 1 + GROUP_SIZE - 1) / GROUP_SIZE + 1 )) t2=$(( (b + 2 * COLD - 1) / GROUP_SIZE ))
  (( t2 <= NTEAMS )) || t2=$NTEAMS
  (( t1 <= t2 )) || { log "no whole team among users $b..$((b + 2 * COLD - 1))"; exit 1; }
  export CVAT_AUTH_SOCKET=$CV/socket
  for s in cvat nslcd sssd; do
    case $s in
      cvat) so=$BUILD/nss_cvat/libnss_cvat.so.2 sym=_nss_cvat ;;
      nslcd) so=$LIBDIR/libnss_ldap.so.2 sym=_nss_ldap ;;
      sssd) so=$LIBDIR/libnss_sss.so.2 sym=_nss_sss ;;
    esac
    nss "$s" "$so" "$sym" getpwnam from="$b" count="$COLD"
    nss "$s" "$so" "$sym" initgroups from="$((b + COLD))" count="$COLD"
    if [[ $s == cvat ]]; then
      cvat_groups_getgrnam "$b" "$((2 * COLD))" "$(seq -f 'team-%04.0f' -s, "$t1" "$t2")"
      # And its role groups as this host's daemon serves them (default config): every cached
      # user in the role is a member, thousands from the second run on.
      nss cvat-roles "$so" "$sym" getgrnam names=cvat-user,cvat-admin
    else
      nss "$s" "$so" "$sym" getgrnam names="$(seq -f 'g%04.0f' -s, "$t1" "$t2")"
    fi
  done
  # The floors.
  for t in 1 8; do
    "$BENCH" floor uri="$URI" binddn="$BIND_DN" bindpw="$BIND_PW" base="ou=people,$BASE" users="$LOGIN_POOL" \
      password="$PASSWORD" threads="$t" seconds="$SECS" dir_pids="$SLAPD_PID" | record
    "$BENCH" floor uri="$URI" binddn="$BIND_DN" bindpw="$BIND_PW" base="ou=people,$BASE" users="$LOGIN_POOL" \
      password="$PASSWORD" threads="$t" seconds="$SECS" groups="ou=groups,$BASE" dir_pids="$SLAPD_PID" | record
    "$BENCH" socket threads="$t" seconds="$SECS" | record
  done
  # PAM logins: every system, right and wrong password, 1 and 8 threads.
  for t in 1 8; do
    for e in ok wrong; do
      login cvat-cache-off bench-cvat "$t" "$e" "$LOGIN_POOL" "$CVAT_PID"
      login nslcd bench-nslcd "$t" "$e" "$LOGIN_POOL" "$NSLCD_PID"
      login sssd bench-sssd "$t" "$e" "$LOGIN_POOL" "$(sssd_pids)"
    done
  done
  # cvat-authd with the verdict cache (30 s): repeated credentials of 100 users, as a web
  # server's requests bring them.
  start_cvat 30
  for t in 1 8; do
    for e in ok wrong; do login cvat-cache-on bench-cvat "$t" "$e" 100 "$CVAT_PID"; done
    login floor-pam bench-permit "$t" ok 100 ""
  done
  if [[ -n "$NGINX" ]]; then
    nginx_bench
    # libpam reads the service file and /etc/pam.d/other (Debian's: common-*, pam_unix,
    # pam_systemd, ...) and dlopens their modules in every pam_start, which the nginx module
    # calls per request. The same again with a one-line "other", to see the modules' own cost.
    cp /etc/pam.d/other "$W/pam.d-other.debian"
    printf 'auth required pam_deny.so\naccount required pam_deny.so\npassword required pam_deny.so\nsession required pam_deny.so\n' >/etc/pam.d/other
    nginx_bench "/min-other"
    cp "$W/pam.d-other.debian" /etc/pam.d/other
  fi
done

# Resident memory: cvat-authd with min(USERS, 10000) users in its cache (cold lookups through
# nss_cvat fill it), nslcd and sssd as the runs left them.
FILL=$(( USERS < 10000 ? USERS : 10000 ))
RUN=0
log "filling cvat-authd's cache with $FILL users"
"$BENCH" nss system=cvat-fill so="$BUILD/nss_cvat/libnss_cvat.so.2" symprefix=_nss_cvat op=getpwnam prefix=u \
  from=1 count="$FILL" warm_seconds=0 settle=2 | sed -n 1p | record
rss() { local p s=0; for p in ${1//,/ }; do s=$((s + $(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$s"; }
for s in cvat nslcd sssd; do
  case $s in cvat) p=$CVAT_PID n=$FILL ;; nslcd) p=$NSLCD_PID n=0 ;; *) p=$(sssd_pids) n=-1 ;; esac
  printf '{"test":"memory","system":"%s","cached_users":%s,"rss_kib":%s,"processes":%s}\n' "$s" "$n" "$(rss "$p")" \
    "$(echo "${p//,/ }" | wc -w)" | jq -c '. + {run: 0}' | tee -a "$RAW" >&2
done
