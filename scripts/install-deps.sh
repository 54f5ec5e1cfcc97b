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
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: everything is installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The packaged slapd and glewlwyd services are never used: tests start their own on loopback.
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install-deps: done"
