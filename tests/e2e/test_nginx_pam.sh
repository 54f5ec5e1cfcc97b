#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck disable=SC2016,SC2034 # some checks are strings for eval, read there
# nginx with ngx_http_auth_pam (libnginx-mod-http-auth-pam) in front of pam_cvat.so and
# cvat-authd: HTTP Basic auth with LDAP users of the AD-shaped test tree. nginx runs on
# 127.0.0.1 under a private config whose server block includes conf/nginx/cvat-auth-pam.conf
# as shipped; its PAM services are conf/pam.d/cvat and cvat-admin (through pam_wrapper). TAP.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"

NGINX_MODULE=/usr/lib/nginx/modules/ngx_http_auth_pam_module.so
command -v nginx >/dev/null || PATH=$PATH:/usr/sbin
command -v nginx >/dev/null || bail "nginx missing (scripts/install-deps.sh)"
[[ -f $NGINX_MODULE ]] || bail "$NGINX_MODULE missing (apt-get install libnginx-mod-http-auth-pam)"

e2e_setup nginx
SNIPPET=$CVAT_SOURCE_ROOT/conf/nginx/cvat-auth-pam.conf
D=$E2E_DIR/nginx
mkdir -p "$D/tmp"

# nginx_conf PORT: the server's config. nginx clears its workers' environment except TZ; `env`
# keeps pam_wrapper's variables (LD_PRELOAD is read at exec, the rest when PAM is first used).
nginx_conf() {
  local v
  echo "load_module $NGINX_MODULE;"
  echo "user $WWW_USER;"
  echo "worker_processes 2;"
  echo "pid $D/nginx.pid;"
  echo "error_log $D/error.log info;"
  while IFS= read -r v; do echo "env ${v%%=*};"; done < <(pam_wrapper_env)
  cat <<EOF
events { worker_connections 256; }
http {
    access_log $D/access.log;
    client_body_temp_path $D/tmp/body;
    proxy_temp_path $D/tmp/proxy;
    fastcgi_temp_path $D/tmp/fastcgi;
    uwsgi_temp_path $D/tmp/uwsgi;
    scgi_temp_path $D/tmp/scgi;
    keepalive_requests 1000;
    server {
        listen 127.0.0.1:$1;
        root $E2E_DIR/www;
        include $SNIPPET;
    }
}
EOF
}

. "$CVAT_FIXTURES/ports.sh"
NGINX_PID="" PORT=""
t0=$(date +%s.%N)
for attempt in 1 2 3 4 5; do
  PORT=$(pick_port) || bail "no free port"
  nginx_conf "$PORT" >"$D/nginx.conf"
  if ((attempt == 1)); then
    out=$(nginx -t -q -c "$D/nginx.conf" -p "$D/" -e "$D/error.log" 2>&1)
    ok "nginx -t accepts the config that includes conf/nginx/cvat-auth-pam.conf" [ $? = 0 ]
    [[ -z "$out" ]] || diag "$out"
  fi
  rm -f "$D/nginx.pid"
  # shellcheck disable=SC2046
  env $(pam_wrapper_env) setsid nginx -c "$D/nginx.conf" -p "$D/" -e "$D/error.log" -g 'daemon off;' \
    </dev/null >"$D/stdout.log" 2>&1 &
  NGINX_PID=$!
  at_exit "stop_pid $NGINX_PID '$D/nginx.conf'"
  for _ in $(seq 200); do
    port_in_use "$PORT" && [[ -s "$D/nginx.pid" ]] && break
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$NGINX_PID" 2>/dev/null && port_in_use "$PORT"; then break; fi
  # a lost race for the port: nginx says "bind() ... failed (98: Address already in use)"
  grep -q "Address already in use" "$D/error.log" "$D/stdout.log" 2>/dev/null || {
    tail -n 20 "$D/error.log" "$D/stdout.log" | sed 's/^/# /'; bail "nginx did not start"; }
  stop_pid "$NGINX_PID" "$D/nginx.conf"
  NGINX_PID=""
done
[[ -n "$NGINX_PID" ]] || bail "nginx found no free port in 5 tries"
diag "nginx up in $(elapsed "$t0") s on 127.0.0.1:$PORT (master $NGINX_PID)"
is "$(cat "$D/nginx.pid")" "$NGINX_PID" "nginx wrote its master's PID to the private pid file"
for _ in $(seq 100); do (($(ps -o pid= --ppid "$NGINX_PID" | wc -l) >= 2)) && break; sleep 0.05; done
WORKER_PIDS=$(ps -o pid= --ppid "$NGINX_PID" | tr -d ' ' | tr '\n' ' ')
is "$(ps -o user= --ppid "$NGINX_PID" | sort -u | tr '\n' ' ')" "$WWW_USER " \
  "nginx's 2 workers run as $WWW_USER (PAM and pam_cvat in an unprivileged process)"

URL=http://127.0.0.1:$PORT
t=$(date +%s.%N)
root_location_cases "$URL" "an nginx worker"

# The admin location: /etc/pam.d/cvat-admin, account pam_cvat.so require_role=admin.
# ngx_http_auth_pam answers a failed pam_acct_mgmt as a failed password: 401.
mark=$(log_mark)
is "$(status "$URL/admin/" walter "$WALTER_PW")" 401 "walter (worker) on the require_role=admin location: 401"
# The account phase of the same transaction is answered by pam_cvat from the sign-in's verdict
# (role worker), without a second request to the daemon.
ok "the daemon signed walter in for PAM service cvat-admin with the role worker" \
  eval 'log_since "$mark" | grep -q ": auth user=walter service=cvat-admin .* -> ok user=walter role=worker"'
ok "pam_cvat refused walter's account from that verdict (no account request)" \
  eval '! log_since "$mark" | grep -q ": account user=walter"'
is "$(status "$URL/admin/" bob "$BOB_PW")" 401 "bob (user) on the admin location: 401"
is "$(status "$URL/admin/" alice "$ALICE_PW")" 200 "alice (admin) on the admin location: 200"
is "$(body "$URL/admin/" alice "$ALICE_PW")" "admins only" "alice gets the admin page"
is "$(status "$URL/admin/" alice 'not-her-password')" 401 "alice, wrong password, admin location: 401"
diag "single requests: $(elapsed "$t") s"

# 1,000 requests with the same credentials over kept-alive connections: every one answered,
# and answered right (the verdict cache serves repeats; the wrong password never gets in).
burst 1000 "$URL/" alice "$ALICE_PW"
is "$BURST_COUNTS" "200:1000" "1,000 requests as alice: all 200"
diag "alice x1000: $BURST_SECONDS s, $(rate 1000 "$BURST_SECONDS") requests/s, $BURST_CONNECTS TCP connection(s)"
burst 1000 "$URL/admin/" walter "$WALTER_PW"
is "$BURST_COUNTS" "401:1000" "1,000 requests as walter on the admin location: all 401"
diag "walter x1000 (admin): $BURST_SECONDS s, $(rate 1000 "$BURST_SECONDS") requests/s, $BURST_CONNECTS TCP connection(s)"
burst 1000 "$URL/" alice 'not-her-password'
is "$BURST_COUNTS" "401:1000" "1,000 requests as alice with a wrong password: all 401"
diag "alice wrong x1000: $BURST_SECONDS s, $(rate 1000 "$BURST_SECONDS") requests/s, $BURST_CONNECTS TCP connection(s)"
is "$(status "$URL/" alice "$ALICE_PW")" 200 "after the bursts alice still gets 200"

# What nginx logged: every answer in the access log, no password in any log.
n200=$(awk '$9 == 200' "$D/access.log" | wc -l)
ok "nginx's access log holds at least the 1,000 answers 200 ($n200)" [ "$n200" -ge 1000 ]
ok "no password in nginx's logs or the daemon's" \
  eval '! grep -r -F -e "$ALICE_PW" -e "not-her-password" -e "$WALTER_PW" "$D"/*.log "$AUTHD_LOG"'

stop_pid "$NGINX_PID" "$D/nginx.conf"
wait "$NGINX_PID" 2>/dev/null
ok "nginx's master stopped by PID" eval '! kill -0 "$NGINX_PID" 2>/dev/null'
left=""
for w in $WORKER_PIDS; do kill -0 "$w" 2>/dev/null && left="$left $w"; done
is "$left" "" "no worker of it is left"
e2e_done
