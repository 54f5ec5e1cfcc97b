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
  dnsmasq-base util-linux
  liblasso3-dev libxmlsec1-dev xmlsec1
)
# tests/fixtures/samba.sh. Installed without Recommends: libnss-winbind and libpam-winbind
# would add winbind to /etc/nsswitch.conf and pam_winbind to /etc/pam.d/common-*.
# samba-ad-provision is itself only a Recommends of samba-ad-dc, hence named.
SAMBA_PACKAGES=(samba-ad-dc samba-ad-provision ldb-tools)   # and ldap-utils, above

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=() samba_missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${SAMBA_PACKAGES[@]}"; do installed "$p" || samba_missing+=("$p"); done
if ((${#missing[@]} + ${#samba_missing[@]} == 0)); then
  echo "install-deps: everything is installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]} ${samba_missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The packaged slapd, glewlwyd and samba services are never used: tests start their own on
# loopback. dnsmasq-base is the binary without the dnsmasq package's service (which would
# start on install and take port 53); tests/integration/test_dns_srv starts its own.
if ((${#missing[@]})); then $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; fi
if ((${#samba_missing[@]})); then
  $SUDO apt-get install -y -qq --no-install-recommends "${samba_missing[@]}" >/dev/null
fi
echo "install-deps: done"
