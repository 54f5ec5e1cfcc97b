#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Installs (apt-get) what building and testing cvat-auth needs on Debian 12, only if missing.
set -euo pipefail

PACKAGES=(
  g++ meson ninja-build pkg-config python3 openssl
  libpam0g-dev libldap-dev libyaml-cpp-dev libssl-dev libexpected-dev
  libcmocka-dev libpamtest0-dev libpam-wrapper libnss-wrapper
  slapd ldap-utils libsasl2-modules
  nlohmann-json3-dev libcurl4-openssl-dev libqrencode-dev libsqlite3-dev libargon2-dev
  glewlwyd curl jq sqlite3 binutils
  dnsmasq-base util-linux procps
  liblasso3-dev libxmlsec1-dev xmlsec1
)
# tests/fixtures/samba.sh. Installed without Recommends: libnss-winbind and libpam-winbind
# would add winbind to /etc/nsswitch.conf and pam_winbind to /etc/pam.d/common-*.
# samba-ad-provision is itself only a Recommends of samba-ad-dc, hence named.
SAMBA_PACKAGES=(samba-ad-dc samba-ad-provision ldb-tools)   # and ldap-utils, above
# tests/fixtures/saml-idp.sh (SimpleSAMLphp under `php -S`) and saml-forge.py. simplesamlphp
# Depends on "apache2 | httpd" and php on libapache2-mod-php8.2: apache2 comes along, is never
# used, and must not run (below).
SAML_PACKAGES=(simplesamlphp php-cli php-xml php-mbstring xmlsec1 python3-lxml)
# tests/e2e (issue 5): nginx with ngx_http_auth_pam and Apache with mod_authnz_pam, which the
# tests run on loopback under private configs. The packaged services are never used.
WEB_PACKAGES=(nginx libnginx-mod-http-auth-pam apache2 libapache2-mod-authnz-pam)
# Services that SAML_PACKAGES, WEB_PACKAGES and SSH_PACKAGES would start on install: installed under a
# temporary policy-rc.d that forbids starting them, then disabled and masked (below).
# tests/e2e/test_sshd runs its own sshd (private config, host keys and port on 127.0.0.1) and
# the OpenSSH client; the packaged ssh service is never used.
SSH_PACKAGES=(openssh-server openssh-client)
QUIET_SERVICES=(nginx apache2 apache-htcacheclean ssh)
# The fuzz targets' seed corpora run with g++ (suite fuzz); the libFuzzer build needs clang-14
# and libclang-rt-14-dev, which scripts/fuzz.sh installs itself (CI does not fuzz).
# python3-cryptography: tests/fuzz/make-jwt-seeds.py (regenerating the JWT seeds).
FUZZ_PACKAGES=(python3-cryptography)
# Packaging (debian/, rpm/cvat-auth.spec, doc/man) and tests/e2e/test_packages.sh: building the
# .debs and the .rpm, lintian, the man pages (scdoc), logins through the packaged PAM service
# (pamtester). None of them starts a service.
PACKAGING_PACKAGES=(debhelper dpkg-dev fakeroot lintian rpm scdoc pamtester util-linux)
# issue 6 hardening tests: gcore (gdb) takes a core of the daemon in test_secrets; capsh
# (libcap2-bin) runs it without CAP_SYS_PTRACE there; valgrind runs the module tests in
# scripts/test.sh. Plain packages, no services.
HARDENING_PACKAGES=(gdb libcap2-bin valgrind)
PACKAGES+=("${HARDENING_PACKAGES[@]}")

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=() samba_missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${SAMBA_PACKAGES[@]}"; do installed "$p" || samba_missing+=("$p"); done
saml_missing=() web_missing=()
for p in "${SAML_PACKAGES[@]}"; do installed "$p" || saml_missing+=("$p"); done
for p in "${FUZZ_PACKAGES[@]}" "${PACKAGING_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${WEB_PACKAGES[@]}" "${SSH_PACKAGES[@]}"; do installed "$p" || web_missing+=("$p"); done
if ((${#missing[@]} + ${#samba_missing[@]} + ${#saml_missing[@]} + ${#web_missing[@]} == 0)); then
  echo "install-deps: everything is installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]} ${samba_missing[*]} ${saml_missing[*]} ${web_missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The packaged slapd, glewlwyd and samba services are never used: tests start their own on
# loopback. dnsmasq-base is the binary without the dnsmasq package's service (which would
# start on install and take port 53); tests/integration/test_dns_srv starts its own.
if ((${#missing[@]})); then $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; fi
if ((${#samba_missing[@]})); then
  $SUDO apt-get install -y -qq --no-install-recommends "${samba_missing[@]}" >/dev/null
fi
# Installs packages that would start one of QUIET_SERVICES, without starting it. invoke-rc.d
# and deb-systemd-invoke ask policy-rc.d before starting a service (Debian Policy 9.3.3.1; the
# first passes "apache2", the second "apache2.service"); containers often have one that answers
# 101, a CI machine may not. Without one, a temporary policy forbids QUIET_SERVICES during the
# install. A service whose unit the install brought is then disabled and masked, so no boot
# starts it either.
install_quiet() {
  local policy=/usr/sbin/policy-rc.d own_policy=no rc=0 s had=() new=()
  for s in "${QUIET_SERVICES[@]}"; do
    [[ -e /lib/systemd/system/$s.service ]] && had+=("$s")
  done
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# cvat-auth scripts/install-deps.sh, removed after the install\ncase "${1%%.service}" in %s) exit 101 ;; esac\nexit 0\n' \
      "$(IFS='|'; echo "${QUIET_SERVICES[*]}")" | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=yes
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  [[ $own_policy == no ]] || $SUDO rm -f "$policy"
  ((rc == 0)) || return "$rc"
  for s in "${QUIET_SERVICES[@]}"; do
    [[ -e /lib/systemd/system/$s.service && " ${had[*]} " != *" $s "* ]] && new+=("$s.service")
  done
  ((${#new[@]})) || return 0
  $SUDO systemctl disable "${new[@]}" >/dev/null 2>&1 || true
  $SUDO systemctl mask "${new[@]}" >/dev/null 2>&1 || true
  if [[ -d /run/systemd/system ]]; then $SUDO systemctl stop "${new[@]}" >/dev/null 2>&1 || true; fi
  for s in "${new[@]}"; do
    echo "install-deps: $s is $(systemctl is-enabled "$s" 2>/dev/null); the tests never use it"
  done
}
# simplesamlphp Depends on "apache2 | httpd", php on libapache2-mod-php8.2: apache2 comes along.
# ssh: the unit is ssh.service (and ssh.socket, which is never enabled by the package).
if ((${#saml_missing[@]} + ${#web_missing[@]})); then
  install_quiet "${saml_missing[@]}" "${web_missing[@]}"
fi
echo "install-deps: done"
