#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The README's demo: installs what is missing, builds, starts a private slapd holding an
# Active-Directory-shaped tree with sample users and a private OpenID Connect provider
# (glewlwyd over HTTPS), starts cvat-authd on CVAT's AD example config plus an sso: section,
# and logs each user in through real PAM (pam_cvat.so via libpam), printing the CVAT role and
# the backend that decided it; then shows the users as users of the host through
# libnss_cvat.so.2 (under nss_wrapper: the machine's nsswitch.conf is never touched). Stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build}

bash scripts/install-deps.sh
[[ -f "$BUILD/build.ninja" ]] || meson setup "$BUILD" >/dev/null
ninja -C "$BUILD" >/dev/null

DEMO=$(mktemp -d /tmp/cvat-auth-demo.XXXXXX)
DAEMON_PID=""
cleanup() {
  [[ -n "$DAEMON_PID" ]] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  bash tests/fixtures/slapd.sh stop "$DEMO/slapd" >/dev/null 2>&1 || true
  bash tests/fixtures/idp.sh stop "$DEMO/idp" >/dev/null 2>&1 || true
  rm -rf "$DEMO"
}
trap cleanup EXIT

echo "== starting a private slapd (AD-shaped tree; syncprov feeds the daemon's group mirror) in $DEMO"
SLAPD_SYNCPROV=1 bash tests/fixtures/slapd.sh start "$DEMO/slapd" ad >/dev/null
# shellcheck disable=SC1091
. "$DEMO/slapd/env"

echo "== starting a private OpenID Connect provider (glewlwyd over HTTPS, test CA)"
bash tests/fixtures/idp.sh start "$DEMO/idp" >/dev/null 2>&1
# shellcheck disable=SC1091
IDP_ISSUER=$(. "$DEMO/idp/env"; echo "$OIDC_ISSUER")
IDP_CLIENT=$(. "$DEMO/idp/env"; echo "$OIDC_CLIENT_ID")
# The daemon reads the CA file per request, after dropping to its own user: publish it where
# that user can read it (the demo directory itself stays closed to others).
chmod 711 "$DEMO"
mkdir -m 755 "$DEMO/public"
install -m 644 "$(. "$DEMO/idp/env"; echo "$OIDC_CA_FILE")" "$DEMO/public/idp-ca.pem"
IDP_CA=$DEMO/public/idp-ca.pem
(. "$DEMO/idp/env"; printf '%s\n' "$OIDC_CLIENT_SECRET") >"$DEMO/client_secret"
chmod 600 "$DEMO/client_secret"

USERS_DN="CN=Users,DC=ad,DC=example,DC=test"
printf 'Bind-Secret-1\n' >"$DEMO/bind_password"
chmod 600 "$DEMO/bind_password"
cat >"$DEMO/auth_config.yml" <<YAML
# CVAT's Active Directory example (settings.py), as auth_config.yml
helper:
  socket: $DEMO/run/socket                               # nss.mc, the NSS fast path, goes beside it
  cache_dir: $DEMO/cache                                 # the persistent cache (default /var/lib/cvat-auth)
$( [[ $(id -u) -eq 0 ]] && echo "  user: nobody                 # started as root, serves as nobody" )
ldap:
  server_uri: $LDAP_URI                                  # AUTH_LDAP_SERVER_URI
  referrals: false                                       # ldap.OPT_REFERRALS = 0
  bind_dn: "CN=cvat_bind,$USERS_DN"                      # AUTH_LDAP_BIND_DN
  bind_password_file: $DEMO/bind_password                # AUTH_LDAP_BIND_PASSWORD
  user_search:                                           # AUTH_LDAP_USER_SEARCH
    base: "$USERS_DN"
    scope: subtree
    filter: "(sAMAccountName=%(user)s)"
  group_search:                                          # AUTH_LDAP_GROUP_SEARCH
    base: "$USERS_DN"
    scope: subtree
    filter: "(objectClass=group)"
  group_type: nested_active_directory                    # AUTH_LDAP_GROUP_TYPE
  user_attr_map: {user_name: sAMAccountName, first_name: givenName, last_name: sn, email: mail}
  role_groups:                                           # DJANGO_AUTH_LDAP_GROUPS
    admin: ["CN=CVAT Admins,$USERS_DN"]
    user: ["CN=CVAT Users,$USERS_DN"]
    worker: ["CN=CVAT Workers,$USERS_DN"]
  default_role: user                                     # IAM_DEFAULT_ROLE
nss:                                                     # users of the host (libnss_cvat.so.2)
  home: /home/cvat/%u
  enumerate: true                                        # getent passwd/group list cached users
sso:                                                     # CVAT Enterprise's own section
  enabled: true
  selection_mode: email_address                          # user@example.test -> this IdP
  identity_providers:
    - id: demo-oidc
      protocol: OIDC
      name: Demo SSO
      server_url: $IDP_ISSUER
      client_id: $IDP_CLIENT
      client_secret_file: $DEMO/client_secret
      token_auth_method: client_secret_basic
      email_domain: example.test
      ca_file: $IDP_CA                                   # extension: the test CA
      scopes: [openid, groups]                           # extension
      role_claim: groups                                 # extension: claims -> CVAT roles
      role_values: {admin: [cvat-admins], user: [cvat-users], worker: [cvat-workers]}
YAML
chmod 600 "$DEMO/auth_config.yml"

echo "== cvat-authctl config check"
"$BUILD/helper/cvat-authctl" config check "$DEMO/auth_config.yml"

echo "== starting cvat-authd"
# The socket's directory belongs to the daemon's user (as systemd's RuntimeDirectory would):
# the daemon publishes nss.mc there.
mkdir -m 755 "$DEMO/run"
[[ $(id -u) -eq 0 ]] && chown nobody "$DEMO/run"
"$BUILD/helper/cvat-authd" --foreground --config "$DEMO/auth_config.yml" 2>"$DEMO/authd.log" &
DAEMON_PID=$!
for _ in $(seq 100); do [[ -S "$DEMO/run/socket" ]] && break; sleep 0.05; done
[[ -S "$DEMO/run/socket" ]] || { cat "$DEMO/authd.log"; exit 1; }

export PAM_CVAT_SO=$BUILD/pam_cvat/pam_cvat.so
try() {  # USER PASSWORD [MODULE ARGS...]
  local user=$1 pw=$2; shift 2
  printf '%s\n' "$pw" | "$BUILD/tests/cvat-pam-try" "$DEMO" "$user" "socket=$DEMO/run/socket" "$@" || true
}

echo
echo "== real PAM logins (pam_start_confdir -> pam_cvat.so -> cvat-authd -> slapd)"
try alice  'alice-Passw0rd'                     # in CVAT Admins
try bob    $'b0b-p\xc3\xa4ssw0rd ok'            # in CVAT Users (a non-ASCII password)
try walter 'walter-Passw0rd'                    # in CVAT Workers
try dora   'dora-Passw0rd'                      # in CVAT Workers and CVAT Admins: highest wins
try nestor 'nestor-Passw0rd'                    # admin through three levels of nested groups
try nina   'nina-Passw0rd'                      # in no role group: default_role user
try ALICE  'alice-Passw0rd'                     # canonical name comes back from the directory
try alice  'not-her-password'                   # wrong password
try dave   'dave-Passw0rd'                      # disabled account (userAccountControl 514)
try mallory 'whatever'                          # no such user
try '*'    'alice-Passw0rd'                     # a filter wildcard is escaped, not obeyed

echo
echo "== the same PAM stack, names user@example.test go to the OpenID Connect provider"
try ada@example.test  'ada-Idp-Passw0rd'             # groups [cvat-admins]: admin
try uma@example.test  'uma-Idp-Passw0rd'             # groups [cvat-users]: user
try bert@example.test 'bert-Idp-Passw0rd'            # [cvat-workers, cvat-admins]: highest wins
try ada@example.test  'wrong'                        # the IdP refuses the password grant
TOKEN=$(. "$DEMO/idp/env"; curl -sS --max-time 10 --cacert "$OIDC_CA_FILE" -u "$OIDC_CLIENT_ID:$OIDC_CLIENT_SECRET" \
          -d grant_type=password --data-urlencode username=ada --data-urlencode password=ada-Idp-Passw0rd \
          --data-urlencode 'scope=openid groups' "$OIDC_ISSUER/token" | sed -n 's/.*"id_token":"\([^"]*\)".*/\1/p')
echo "   (an ID token of ada's as the password: checked locally against the IdP's keys)"
try ada@example.test  "$TOKEN"

echo
echo "== an admin-only service (account: pam_cvat.so require_role=admin)"
try alice  'alice-Passw0rd' require_role=admin
try walter 'walter-Passw0rd' require_role=admin

echo
echo "== cvat-authctl explain nestor   (why is Nestor an admin?)"
"$BUILD/helper/cvat-authctl" --socket "$DEMO/run/socket" explain nestor

echo
echo "== users of the host: libnss_cvat.so.2 (nss_wrapper stands in for /etc/nsswitch.conf: passwd: files cvat)"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$DEMO/passwd"
printf 'root:x:0:\n' >"$DEMO/group"
nss() {
  LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD=$DEMO/passwd NSS_WRAPPER_GROUP=$DEMO/group \
    NSS_WRAPPER_MODULE_SO_PATH=$BUILD/nss_cvat/libnss_cvat.so.2 NSS_WRAPPER_MODULE_FN_PREFIX=cvat \
    CVAT_AUTH_SOCKET=$DEMO/run/socket "$@" || true
}
for u in alice bob walter nestor ada@example.test; do nss getent passwd "$u"; done
sleep 0.5   # the daemon republishes nss.mc after the lookups
for u in alice walter; do echo "\$ id $u"; nss id "$u"; done
echo "\$ getent group cvat-admin cvat-user cvat-worker"
nss getent group cvat-admin cvat-user cvat-worker

echo
echo "== cvat-authctl cache list   (the persistent cache: stable IDs, roles, backends)"
"$BUILD/helper/cvat-authctl" --socket "$DEMO/run/socket" cache list

echo
echo "== cvat-authctl status"
"$BUILD/helper/cvat-authctl" --socket "$DEMO/run/socket" status || true
echo
echo "demo done; the daemon's log was:"
sed 's/^/  /' "$DEMO/authd.log" | tail -n 20
