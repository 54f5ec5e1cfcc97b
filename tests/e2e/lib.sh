# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash disable=SC2034
# Sourced by the end-to-end tests (tests/e2e/test_*.sh): TAP, a private slapd (the AD-shaped
# tree of tests/fixtures/slapd.sh) and cvat-authd in a temp directory, the PAM service files of
# conf/pam.d/ pointed at the built pam_cvat.so and that daemon, served to a web server through
# pam_wrapper (never /etc/pam.d), HTTP status counting with curl, and a cleanup that stops
# every process started here by PID on every exit path.
#
# Needs (meson's test environment): CVAT_AUTHD, PAM_CVAT_SO, CVAT_FIXTURES, CVAT_SOURCE_ROOT.
# Set E2E_KEEP=1 to keep the temp directory (configs, logs) after the test.
set -uo pipefail

E2E_N=0 E2E_FAILED=0
E2E_T0=$(date +%s.%N)
E2E_CLEANUP=()

# --- TAP -------------------------------------------------------------------------------------

pass() { E2E_N=$((E2E_N + 1)); echo "ok $E2E_N - $1"; }
fail() {
  E2E_N=$((E2E_N + 1)); E2E_FAILED=$((E2E_FAILED + 1))
  echo "not ok $E2E_N - $1"
  local line; shift
  for line in "$@"; do printf '%s\n' "$line" | sed 's/^/#   /'; done
}
# ok DESC CMD...: passes when CMD succeeds
ok() { if "${@:2}"; then pass "$1"; else fail "$1"; fi; }
# is GOT WANT DESC
is() { if [[ "$1" == "$2" ]]; then pass "$3"; else fail "$3" "got:  $1" "want: $2"; fi; }
diag() { printf '%s\n' "$*" | sed 's/^/# /'; }
bail() { echo "Bail out! $*"; exit 1; }
# The plan goes last (TAP allows it), so a test may add checks as it learns things.
e2e_done() {
  echo "1..$E2E_N"
  diag "$(basename "$0"): $E2E_N checks, $E2E_FAILED failed, $(elapsed "$E2E_T0") s"
  ((E2E_FAILED == 0))
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# --- cleanup ---------------------------------------------------------------------------------

at_exit() { E2E_CLEANUP+=("$1"); }
e2e_cleanup() {
  local i
  for ((i = ${#E2E_CLEANUP[@]} - 1; i >= 0; i--)); do eval "${E2E_CLEANUP[i]}" >/dev/null 2>&1 || true; done
  E2E_CLEANUP=()
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# proc_has PID TEXT: PID is alive and its command line contains TEXT (a reused PID is never
# taken for ours).
proc_has() {
  [[ "$1" =~ ^[0-9]+$ && -r /proc/$1/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -F -- "$2" >/dev/null
}
# stop_pid PID TEXT: SIGTERM, up to 10 s, then SIGKILL; only if PID is still the process whose
# command line holds TEXT.
stop_pid() {
  local pid=$1 text=$2
  proc_has "$pid" "$text" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 200); do proc_has "$pid" "$text" || return 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
}
# wait_gone PID SECONDS: wait for a (child or not) process to leave
wait_gone() {
  local i
  for ((i = 0; i < $2 * 20; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  return 1
}

# --- the world: slapd, cvat-authd, PAM service files -----------------------------------------

# e2e_setup NAME: sets E2E_DIR, SOCK, PAM_DIR, PAM_SO, WWW_USER, and starts slapd and the daemon.
e2e_setup() {
  local name=$1 v
  for v in CVAT_AUTHD PAM_CVAT_SO CVAT_FIXTURES CVAT_SOURCE_ROOT; do
    [[ -n "${!v:-}" ]] || bail "$v is not set (run through meson test)"
  done
  [[ -x "$CVAT_AUTHD" && -f "$PAM_CVAT_SO" ]] || bail "build cvat-authd and pam_cvat.so first"
  # The web servers' workers switch to www-data, which needs root; a test that cannot run is a
  # failure, not a skip (every suite is required).
  [[ $(id -u) -eq 0 ]] || bail "the e2e tests start web servers whose workers run as www-data: run as root"
  WWW_USER=www-data
  id "$WWW_USER" >/dev/null 2>&1 || bail "no user $WWW_USER (it comes with Debian's base-passwd)"
  PWRAP_SO=$(ldconfig -p | sed -n 's/.*libpam_wrapper\.so .*=> //p' | head -n 1)
  [[ -n "$PWRAP_SO" ]] || bail "libpam_wrapper.so not found (apt-get install libpam-wrapper; scripts/install-deps.sh)"
  command -v curl >/dev/null || bail "curl missing (scripts/install-deps.sh)"

  E2E_DIR=$(mktemp -d "/tmp/cvat-e2e-$name.XXXXXX") || bail "mktemp failed"
  if [[ -n "${E2E_KEEP:-}" ]]; then
    diag "keeping $E2E_DIR"
  else
    at_exit "rm -rf '$E2E_DIR'"
  fi
  # mkdtemp made it 0700: the web servers' www-data workers must reach the daemon's socket
  # (run/), pam_cvat.so (lib/), the PAM files (pam.d/) and the documents (www/); the rest
  # (the bind password, the daemon's config and cache, slapd) stays closed to them.
  chmod 0711 "$E2E_DIR"
  mkdir -m 0755 "$E2E_DIR/run" "$E2E_DIR/lib" "$E2E_DIR/pam.d" "$E2E_DIR/www"
  mkdir -m 0700 "$E2E_DIR/authd" "$E2E_DIR/cache"
  # pam_cvat.so from the build, copied: the build tree may sit where www-data cannot read
  # (under /root, say). Byte for byte the built module.
  PAM_SO=$E2E_DIR/lib/pam_cvat.so
  install -m 0644 "$PAM_CVAT_SO" "$PAM_SO"
  SOCK=$E2E_DIR/run/socket

  local t0; t0=$(date +%s.%N)
  at_exit "bash '$CVAT_FIXTURES/slapd.sh' stop '$E2E_DIR/slapd'"
  bash "$CVAT_FIXTURES/slapd.sh" start "$E2E_DIR/slapd" ad >"$E2E_DIR/slapd-start.log" 2>&1 ||
    { sed 's/^/# /' "$E2E_DIR/slapd-start.log"; bail "slapd.sh start failed"; }
  # shellcheck disable=SC1091
  . "$E2E_DIR/slapd/env"
  diag "slapd up in $(elapsed "$t0") s at $LDAP_URI"

  local users="CN=Users,$LDAP_BASE"
  printf 'Bind-Secret-1\n' >"$E2E_DIR/authd/bind_password"
  chmod 0600 "$E2E_DIR/authd/bind_password"
  # CVAT's Active Directory example (the demo's config). The verdict cache keeps its default
  # (helper.verdict_ttl 30 s): a web server asks for every request, as it would in production.
  # Failed-login throttling is off: the tests send 1,000 wrong passwords in a row, which the
  # default rate_limit would rightly slow to one every 5 s (tests/integration/test_abuse proves
  # the throttling itself).
  cat >"$E2E_DIR/authd/auth_config.yml" <<YAML
helper:
  socket: $SOCK
  cache_dir: $E2E_DIR/cache
  log_level: info
  rate_limit: {per_user: {failures: 0}, per_peer: {failures: 0}}
ldap:
  server_uri: $LDAP_URI
  bind_dn: "CN=cvat_bind,$users"
  bind_password_file: $E2E_DIR/authd/bind_password
  user_search: {base: "$users", scope: subtree, filter: "(sAMAccountName=%(user)s)"}
  group_search: {base: "$users", scope: subtree, filter: "(objectClass=group)"}
  group_type: nested_active_directory
  user_attr_map: {user_name: sAMAccountName, first_name: givenName, last_name: sn, email: mail}
  role_groups:
    admin: ["CN=CVAT Admins,$users"]
    user: ["CN=CVAT Users,$users"]
    worker: ["CN=CVAT Workers,$users"]
  default_role: user
YAML
  chmod 0600 "$E2E_DIR/authd/auth_config.yml"
  AUTHD_LOG=$E2E_DIR/authd/authd.log
  t0=$(date +%s.%N)
  env -u CVAT_AUTH_SOCKET -u AUTH_CONFIG_PATH setsid "$CVAT_AUTHD" --foreground \
    --config "$E2E_DIR/authd/auth_config.yml" </dev/null >"$AUTHD_LOG" 2>&1 &
  AUTHD_PID=$!
  at_exit "stop_pid $AUTHD_PID '$E2E_DIR/authd/auth_config.yml'"
  for _ in $(seq 200); do
    [[ -S "$SOCK" ]] && break
    kill -0 "$AUTHD_PID" 2>/dev/null || break
    sleep 0.05
  done
  [[ -S "$SOCK" ]] || { tail -n 20 "$AUTHD_LOG" | sed 's/^/# /'; bail "cvat-authd did not create $SOCK within 10 s"; }
  diag "cvat-authd up in $(elapsed "$t0") s (pid $AUTHD_PID)"

  # The PAM service files, from conf/pam.d: the same lines, with the built module's absolute
  # path and the daemon's socket (pam_cvat's socket= argument) for "pam_cvat.so".
  local svc
  PAM_DIR=$E2E_DIR/pam.d
  for svc in cvat cvat-admin; do
    sed "s#\\bpam_cvat\\.so\\b#$PAM_SO socket=$SOCK#" "$CVAT_SOURCE_ROOT/conf/pam.d/$svc" >"$PAM_DIR/$svc"
    grep -q "^auth .*$PAM_SO socket=$SOCK" "$PAM_DIR/$svc" || bail "conf/pam.d/$svc has no auth line for pam_cvat.so"
  done
  chmod 0644 "$PAM_DIR"/*
  # pam_wrapper's own copies of the service dir, one per process that calls PAM, go here
  # rather than /tmp/pam.?; the workers (www-data) create theirs.
  mkdir -m 0755 "$E2E_DIR/pwrap"
  chown "$WWW_USER" "$E2E_DIR/pwrap"

  printf 'hello from the e2e test\n' >"$E2E_DIR/www/index.html"
  mkdir -m 0755 "$E2E_DIR/www/admin"
  printf 'admins only\n' >"$E2E_DIR/www/admin/index.html"
  chmod 0644 "$E2E_DIR/www/index.html" "$E2E_DIR/www/admin/index.html"
}

# The environment that makes libpam read $PAM_DIR instead of /etc/pam.d (pam_wrapper).
pam_wrapper_env() {
  printf '%s\n' "LD_PRELOAD=$PWRAP_SO" PAM_WRAPPER=1 "PAM_WRAPPER_SERVICE_DIR=$PAM_DIR" \
    "PAM_WRAPPER_RUNTIME_DIR=$E2E_DIR/pwrap"
}

# --- HTTP ------------------------------------------------------------------------------------

# Passwords of the AD tree (tests/fixtures/README.md): roles alice admin, bob user (a non-ASCII
# password with a space), walter worker.
ALICE_PW='alice-Passw0rd'
BOB_PW=$'b0b-p\xc3\xa4ssw0rd ok'
WALTER_PW='walter-Passw0rd'

# status URL [USER PASSWORD]: the HTTP status (000: no answer)
status() {
  local cfg
  cfg=$(mktemp "$E2E_DIR/curl.XXXXXX")
  { echo 'silent'; echo 'max-time = 15'; echo 'output = "/dev/null"'; echo 'write-out = "%{http_code}"'
    [[ $# -ge 3 ]] && curl_user "$2" "$3"
    echo "url = \"$1\""; } >"$cfg"
  curl -K "$cfg" 2>/dev/null || true
  rm -f "$cfg"
}
# curl_user USER PASSWORD: a curl config line (credentials never on a command line)
curl_user() {
  local v="$1:$2"
  v=${v//\\/\\\\}; v=${v//\"/\\\"}
  printf 'user = "%s"\n' "$v"
}
# header URL NAME: a response header's value, without credentials
header() {
  curl -s --max-time 15 -o /dev/null -D - "$1" 2>/dev/null | tr -d '\r' |
    sed -n "s/^$2: //Ip" | head -n 1
}
# body URL USER PASSWORD
body() {
  local cfg
  cfg=$(mktemp "$E2E_DIR/curl.XXXXXX")
  { echo 'silent'; echo 'max-time = 15'; curl_user "$2" "$3"; echo "url = \"$1\""; } >"$cfg"
  curl -K "$cfg" 2>/dev/null || true
  rm -f "$cfg"
}

# burst N URL USER PASSWORD: N requests with the same credentials from one curl, which keeps
# its connection alive between them (reconnecting when the server closes it). Sets
# BURST_COUNTS ("200:1000", or e.g. "200:998 000:2"), BURST_CONNECTS (TCP connections opened)
# and BURST_SECONDS.
burst() {
  local n=$1 url=$2 cfg out t0 i
  cfg=$(mktemp "$E2E_DIR/curl.XXXXXX")
  out=$(mktemp "$E2E_DIR/burst.XXXXXX")
  {
    echo 'silent'; echo 'max-time = 15'; curl_user "$3" "$4"
    # shellcheck disable=SC2028 # curl's config reads the \n
    echo 'write-out = "%{http_code} %{num_connects}\n"'
    for ((i = 0; i < n; i++)); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done
  } >"$cfg"
  t0=$(date +%s.%N)
  timeout 300 curl -K "$cfg" >"$out" 2>/dev/null
  BURST_SECONDS=$(elapsed "$t0")
  BURST_COUNTS=$(awk '{ c[$1]++ } END { for (s in c) printf "%s:%d\n", s, c[s] }' "$out" | sort | tr '\n' ' ' | sed 's/ $//')
  BURST_CONNECTS=$(awk '{ n += $2 } END { print n + 0 }' "$out")
  local answered; answered=$(wc -l <"$out")
  # a request curl never got to (timeout) has no line: count it as 000
  ((answered < n)) && BURST_COUNTS="$BURST_COUNTS 000:$((n - answered))"
  rm -f "$cfg" "$out"
}
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }

# The daemon's log since a mark: what PAM asked of it.
log_mark() { wc -c <"$AUTHD_LOG"; }
log_since() { tail -c +"$(($1 + 1))" "$AUTHD_LOG"; }

# root_location_cases URL WHO: the cases every front end answers the same on its "/" location
# (PAM service cvat): the challenge, alice's page, the daemon's log line for a login from WHO
# (the server's unprivileged process), and the refusals.
root_location_cases() {
  local url=$1 who=$2 mark
  is "$(status "$url/")" 401 "no credentials: 401"
  is "$(header "$url/" WWW-Authenticate)" 'Basic realm="CVAT"' "the challenge names the snippet's realm"
  mark=$(log_mark)
  is "$(status "$url/" alice "$ALICE_PW")" 200 "alice (LDAP, admin), right password: 200"
  is "$(body "$url/" alice "$ALICE_PW")" "hello from the e2e test" "alice gets the page"
  ok "the daemon answered alice's login from $who ($WWW_USER) (PAM service cvat)" \
    eval 'log_since "$mark" | grep -q "uid=$(id -u "$WWW_USER") .*: auth user=alice service=cvat .*-> ok user=alice role=admin"'
  is "$(status "$url/" alice 'not-her-password')" 401 "alice, wrong password: 401"
  is "$(status "$url/" alice '')" 401 "alice, empty password: 401"
  is "$(status "$url/" mallory 'whatever')" 401 "an unknown user: 401"
  is "$(status "$url/" '*' "$ALICE_PW")" 401 "user name '*' (an LDAP filter wildcard) with alice's password: 401"
  is "$(status "$url/" walter "$WALTER_PW")" 200 "walter (worker) on /: 200"
  is "$(status "$url/" bob "$BOB_PW")" 200 "bob (user; a UTF-8 password with a space) on /: 200"
  is "$(status "$url/" dave 'dave-Passw0rd')" 401 "dave (account disabled in the directory): 401"
}
