#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck disable=SC2016,SC2034 # some checks are strings for eval, read there
# Apache with mod_authnz_pam (libapache2-mod-authnz-pam) in front of pam_cvat.so and
# cvat-authd: HTTP Basic auth with LDAP users of the AD-shaped test tree, through
# `AuthBasicProvider PAM` + `AuthPAMService cvat`, and an admin location authorized with
# `Require pam-account cvat-admin`. Apache runs on 127.0.0.1 under a private config that
# includes conf/apache2/cvat-auth-pam.conf as shipped; its PAM services are conf/pam.d/cvat and
# cvat-admin (through pam_wrapper). TAP.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"

MODS=/usr/lib/apache2/modules
command -v apache2 >/dev/null || PATH=$PATH:/usr/sbin
command -v apache2 >/dev/null || bail "apache2 missing (scripts/install-deps.sh)"
[[ -f $MODS/mod_authnz_pam.so ]] || bail "$MODS/mod_authnz_pam.so missing (apt-get install libapache2-mod-authnz-pam)"

e2e_setup apache
SNIPPET=$CVAT_SOURCE_ROOT/conf/apache2/cvat-auth-pam.conf
D=$E2E_DIR/apache
mkdir -p "$D/run"

# apache_conf PORT: the server's config; nothing of /etc/apache2 is read.
apache_conf() {
  cat <<EOF
ServerRoot $D
ServerName 127.0.0.1
PidFile $D/run/apache2.pid
DefaultRuntimeDir $D/run
Mutex file:$D/run default
Listen 127.0.0.1:$1
LoadModule mpm_event_module $MODS/mod_mpm_event.so
LoadModule authn_core_module $MODS/mod_authn_core.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule authz_user_module $MODS/mod_authz_user.so
LoadModule auth_basic_module $MODS/mod_auth_basic.so
LoadModule dir_module $MODS/mod_dir.so
LoadModule authnz_pam_module $MODS/mod_authnz_pam.so
User $WWW_USER
Group $WWW_USER
ErrorLog $D/error.log
LogLevel info
LogFormat "%h %u \"%r\" %>s" short
CustomLog $D/access.log short
# One child: all requests go through one process's PAM (and pam_wrapper copy).
StartServers 1
ServerLimit 1
MinSpareThreads 25
MaxSpareThreads 75
ThreadsPerChild 25
MaxRequestWorkers 25
KeepAlive On
MaxKeepAliveRequests 1000
DocumentRoot $E2E_DIR/www
DirectoryIndex index.html
<Directory $E2E_DIR/www>
    Require all granted
</Directory>
Include $SNIPPET
EOF
}

. "$CVAT_FIXTURES/ports.sh"
APACHE_PID="" PORT=""
t0=$(date +%s.%N)
for attempt in 1 2 3 4 5; do
  PORT=$(pick_port) || bail "no free port"
  apache_conf "$PORT" >"$D/apache2.conf"
  if ((attempt == 1)); then
    out=$(apache2 -t -f "$D/apache2.conf" 2>&1)
    ok "apache2 -t accepts the config that includes conf/apache2/cvat-auth-pam.conf" [ $? = 0 ]
    [[ "$out" == "Syntax OK" ]] || diag "$out"
  fi
  rm -f "$D/run/apache2.pid"
  # -DFOREGROUND: the process started here is the parent; Apache keeps its environment, so
  # the children see pam_wrapper's variables.
  # shellcheck disable=SC2046
  env $(pam_wrapper_env) setsid apache2 -f "$D/apache2.conf" -DFOREGROUND </dev/null >"$D/stdout.log" 2>&1 &
  APACHE_PID=$!
  at_exit "stop_pid $APACHE_PID '$D/apache2.conf'"
  for _ in $(seq 200); do
    port_in_use "$PORT" && [[ -s "$D/run/apache2.pid" ]] && break
    kill -0 "$APACHE_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$APACHE_PID" 2>/dev/null && port_in_use "$PORT"; then break; fi
  grep -q "Address already in use" "$D/error.log" "$D/stdout.log" 2>/dev/null || {
    tail -n 20 "$D/error.log" "$D/stdout.log" | sed 's/^/# /'; bail "apache2 did not start"; }
  stop_pid "$APACHE_PID" "$D/apache2.conf"
  APACHE_PID=""
done
[[ -n "$APACHE_PID" ]] || bail "apache2 found no free port in 5 tries"
diag "apache2 up in $(elapsed "$t0") s on 127.0.0.1:$PORT (parent $APACHE_PID)"
is "$(cat "$D/run/apache2.pid")" "$APACHE_PID" "apache2 wrote its parent's PID to the private pid file"
for _ in $(seq 100); do (($(ps -o pid= --ppid "$APACHE_PID" | wc -l) >= 1)) && break; sleep 0.05; done
CHILD_PIDS=$(ps -o pid= --ppid "$APACHE_PID" | tr -d ' ' | tr '\n' ' ')
is "$(ps -o user= --ppid "$APACHE_PID" | sort -u | tr '\n' ' ')" "$WWW_USER " \
  "apache2's children run as $WWW_USER (PAM and pam_cvat in an unprivileged process)"

URL=http://127.0.0.1:$PORT
t=$(date +%s.%N)
root_location_cases "$URL" "an Apache child"
ok "mod_authnz_pam logged the refusals as PAM failures" grep -q "PAM authentication failed for user alice" "$D/error.log"

# The admin location: authenticated as above, authorized by `Require pam-account cvat-admin`
# (account pam_cvat.so require_role=admin), 403 with AuthzSendForbiddenOnFailure.
mark=$(log_mark)
is "$(status "$URL/admin/" walter "$WALTER_PW")" 403 "walter (worker) on the Require pam-account cvat-admin location: 403"
ok "the daemon refused walter in account of PAM service cvat-admin: role worker, admin required" \
  eval 'log_since "$mark" | grep -q ": account user=walter service=cvat-admin require_role=admin -> permission denied"'
ok "Apache logged it as an authorization failure" grep -q 'user walter: authorization failure for "/admin/"' "$D/error.log"
is "$(status "$URL/admin/" bob "$BOB_PW")" 403 "bob (user) on the admin location: 403"
is "$(status "$URL/admin/" alice "$ALICE_PW")" 200 "alice (admin) on the admin location: 200"
is "$(body "$URL/admin/" alice "$ALICE_PW")" "admins only" "alice gets the admin page"
is "$(status "$URL/admin/" alice 'not-her-password')" 401 "alice, wrong password, admin location: 401 (authentication first)"
is "$(status "$URL/admin/" mallory 'whatever')" 401 "an unknown user on the admin location: 401"
diag "single requests: $(elapsed "$t") s"

burst 1000 "$URL/" alice "$ALICE_PW"
is "$BURST_COUNTS" "200:1000" "1,000 requests as alice: all 200"
diag "alice x1000: $BURST_SECONDS s, $(rate 1000 "$BURST_SECONDS") requests/s, $BURST_CONNECTS TCP connection(s)"
burst 1000 "$URL/admin/" walter "$WALTER_PW"
is "$BURST_COUNTS" "403:1000" "1,000 requests as walter on the admin location: all 403"
diag "walter x1000 (admin): $BURST_SECONDS s, $(rate 1000 "$BURST_SECONDS") requests/s, $BURST_CONNECTS TCP connection(s)"
burst 1000 "$URL/" alice 'not-her-password'
is "$BURST_COUNTS" "401:1000" "1,000 requests as alice with a wrong password: all 401"
diag "alice wrong x1000: $BURST_SECONDS s, $(rate 1000 "$BURST_SECONDS") requests/s, $BURST_CONNECTS TCP connection(s)"
is "$(status "$URL/" alice "$ALICE_PW")" 200 "after the bursts alice still gets 200"

n200=$(awk '$NF == 200' "$D/access.log" | wc -l)
ok "Apache's access log holds at least the 1,000 answers 200 ($n200)" [ "$n200" -ge 1000 ]
ok "no password in Apache's logs or the daemon's" \
  eval '! grep -r -F -e "$ALICE_PW" -e "not-her-password" -e "$WALTER_PW" "$D"/*.log "$AUTHD_LOG"'

stop_pid "$APACHE_PID" "$D/apache2.conf"
wait "$APACHE_PID" 2>/dev/null
ok "apache2's parent stopped by PID" eval '! kill -0 "$APACHE_PID" 2>/dev/null'
left=""
for c in $CHILD_PIDS; do kill -0 "$c" 2>/dev/null && left="$left $c"; done
is "$left" "" "no child of it is left"
e2e_done
