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
# issue 6 hardening tests: gcore (gdb) takes a core of the daemon in test_secrets; capsh
# (libcap2-bin) runs it without CAP_SYS_PTRACE there. Plain packages, no services.
HARDENING_PACKAGES=(gdb libcap2-bin)
PACKAGES+=("${HARDENING_PACKAGES[@]}")

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=() samba_missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${SAMBA_PACKAGES[@]}"; do installed "$p" || samba_missing+=("$p"); done
saml_missing=()
for p in "${SAML_PACKAGES[@]}"; do installed "$p" || saml_missing+=("$p"); done
if ((${#missing[@]} + ${#samba_missing[@]} + ${#saml_missing[@]} == 0)); then
  echo "install-deps: everything is installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]} ${samba_missing[*]} ${saml_missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The packaged slapd, glewlwyd and samba services are never used: tests start their own on
# loopback. dnsmasq-base is the binary without the dnsmasq package's service (which would
# start on install and take port 53); tests/integration/test_dns_srv starts its own.
if ((${#missing[@]})); then $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; fi
if ((${#samba_missing[@]})); then
  $SUDO apt-get install -y -qq --no-install-recommends "${samba_missing[@]}" >/dev/null
fi
if ((${#saml_missing[@]})); then
  had_apache=no
  installed apache2 && had_apache=yes
  # invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service (Debian Policy
  # 9.3.3.1); containers often have one that answers 101, a CI machine may not. Without one,
  # a temporary policy keeps apache2 from starting during the install.
  policy=/usr/sbin/policy-rc.d own_policy=no
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# cvat-auth scripts/install-deps.sh, removed after the install\ncase "$1" in apache2|apache-htcacheclean) exit 101 ;; esac\nexit 0\n' |
      $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=yes
  fi
  rc=0
  $SUDO apt-get install -y -qq --no-install-recommends "${saml_missing[@]}" >/dev/null || rc=$?
  [[ $own_policy == no ]] || $SUDO rm -f "$policy"
  ((rc == 0)) || exit "$rc"
  # The package enables apache2.service (and the SysV links): a machine that had no apache2
  # before gets it disabled and masked, so no boot starts it either.
  if [[ $had_apache == no ]] && installed apache2; then
    $SUDO systemctl disable apache2.service apache-htcacheclean.service >/dev/null 2>&1 || true
    $SUDO systemctl mask apache2.service apache-htcacheclean.service >/dev/null 2>&1 || true
    if [[ -d /run/systemd/system ]]; then $SUDO systemctl stop apache2.service >/dev/null 2>&1 || true; fi
    echo "install-deps: apache2 (a dependency of simplesamlphp) is $(systemctl is-enabled apache2.service 2>/dev/null || echo 'not enabled'); the tests never use it"
  fi
fi
echo "install-deps: done"
