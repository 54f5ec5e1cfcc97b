#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# What bench/compare.sh needs, without touching the host's PAM or NSS configuration.
#   bench/install-deps.sh [ROOT]     (ROOT: where nslcd and sssd are unpacked;
#                                     default /var/cache/cvat-bench/root)
# Tools with no service and no maintainer script that edits the login stack (wrk, gnuplot,
# slapd's ldap-utils, nginx's PAM module, pam_wrapper) come from apt as usual; nginx the way
# scripts/install-deps.sh installs it (never started). nslcd, sssd and their PAM/NSS modules are
# NOT installed: Debian's maintainer scripts would run pam-auth-update (the machine's
# /etc/pam.d/common-*), add ldap/sss to /etc/nsswitch.conf and start the daemons. Their .debs are
# downloaded (apt-get download) and unpacked with dpkg-deb -x into ROOT, with every library they
# need that the machine lacks; compare.sh runs them from there in a private mount namespace.
set -euo pipefail
ROOT=${1:-/var/cache/cvat-bench/root}
DEBS=/var/cache/cvat-bench/debs
export DEBIAN_FRONTEND=noninteractive

# Installed normally: none of these starts a service or edits PAM/NSS configuration.
BENCH_PACKAGES=(wrk gnuplot-nox jq slapd ldap-utils libpam-wrapper libnss-wrapper libldap-dev
                libpam0g-dev apache2-utils procps util-linux)
missing=()
for p in "${BENCH_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  # slapd's postinst starts slapd unless told not to: the same policy-rc.d as scripts/install-deps.sh.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx and its PAM module: scripts/install-deps.sh's quiet path (never started, unit masked).
if ! dpkg-query -W -f='${Status}' libnginx-mod-http-auth-pam 2>/dev/null | grep -q 'install ok installed'; then
  bash "$(dirname "$0")/../scripts/install-deps.sh"
fi

# Unpacked only. The daemons and modules, then the libraries sssd links that a machine without
# sssd lacks (each only if not installed; dpkg-deb -x never runs a maintainer script).
UNPACK=(nslcd libpam-ldapd libnss-ldapd sssd-common sssd-ldap sssd-krb5-common libpam-sss libnss-sss)
LIBS=(libc-ares2 libdhash1 libini-config5 libref-array1 libbasicobjects0 libcollection4
      libpath-utils1 libldb2 libtalloc2 libtdb1 libtevent0 libnfsidmap1 libnl-3-200
      libnl-route-3-200 libsss-certmap0 libsss-idmap0 libsss-nss-idmap0 libsemanage2
      libsemanage-common libsepol2 libpopt0 libkeyutils1 libdbus-1-3 libunistring2 libjansson4
      libp11-kit0 libaudit1 libcap-ng0 libbz2-1.0 liblmdb0 libsasl2-modules-gssapi-mit libkrb5-3
      libgssapi-krb5-2 libk5crypto3 libkrb5support0)
for p in "${LIBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || UNPACK+=("$p")
done
mkdir -p "$DEBS" "$ROOT"
chown _apt "$DEBS" 2>/dev/null || true  # apt-get download drops to _apt
(cd "$DEBS" && for p in "${UNPACK[@]}"; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$p"; done)
for p in "${UNPACK[@]}"; do
  deb=$(ls "$DEBS/${p}"_*.deb | tail -n 1)
  dpkg-deb -x "$deb" "$ROOT"
done
# Debian 12 is merged-/usr: what the .debs put in /lib belongs in /usr/lib, where compare.sh's
# overlay of /usr/lib/x86_64-linux-gnu shows it (to the daemons and to dlopen alike).
if [[ -d "$ROOT/lib" && ! -L "$ROOT/lib" ]]; then
  cp -a "$ROOT/lib/." "$ROOT/usr/lib/"
  rm -rf "$ROOT/lib"
  ln -s usr/lib "$ROOT/lib"
fi
echo "unpacked into $ROOT: ${UNPACK[*]}"
