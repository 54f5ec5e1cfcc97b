#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The packages, end to end (suite e2e; root; run alone: it installs into this machine).
#
#   test_packages.sh deb   builds the .debs from a copy of the source tree, runs lintian,
#                          installs them, starts the daemon from the packaged files the way
#                          cvat-authd.service would (and as root without systemd), logs in
#                          with pamtester through /etc/pam.d/cvat against a private slapd,
#                          looks the user up through the installed libnss_cvat, upgrades to
#                          a second build, removes and purges, and checks that
#                          /etc/nsswitch.conf, /etc/pam.d, the users and groups and dpkg's
#                          statoverrides are exactly as before.
#   test_packages.sh rpm   builds rpm/cvat-auth.spec with rpmbuild (--nodeps: Debian's rpm
#                          has no package database) and checks the split and file lists.
#
# Output: TAP. The installed packages are purged and every process started here is stopped
# by PID, also on failure.
set -uo pipefail

mode=${1:-}
[[ $mode == deb || $mode == rpm ]] || { echo "usage: $0 deb|rpm" >&2; exit 2; }
SRC=${CVAT_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
FIXTURES=${CVAT_FIXTURES:-$SRC/tests/fixtures}

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; }
# Runs a command (in this shell: it may set variables) as one TAP point; what it prints
# becomes TAP comments.
check() {
  local what=$1; shift
  if "$@" > >(note) 2>&1; then ok "$what"; else not_ok "$what"; fi
}
note() { sed 's/^/# /'; }
finish() { echo "1..$n"; exit "$failed"; }
bail() { echo "Bail out! $*"; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
  echo "1..0 # SKIP needs root (installs packages into this machine)"
  exit 77
fi
tools=(git tar)
if [[ $mode == deb ]]; then
  tools+=(dpkg-buildpackage dh lintian apt-get pamtester setpriv slapd getent scdoc)
else
  tools+=(rpmbuild rpm scdoc)
fi
for t in "${tools[@]}"; do
  command -v "$t" >/dev/null 2>&1 || bail "$t is not installed (scripts/install-deps.sh installs it)"
done

started=$SECONDS
work=$(mktemp -d /tmp/cvat-packages.XXXXXX) || bail "mktemp failed"
chmod 0755 "$work"
daemon_pid=""
packages=(libpam-cvat libnss-cvat cvat-authd)

# A copy of the working tree as git sees it (tracked and new files, no build directories).
copy_source() {
  mkdir -p "$1"
  (cd "$SRC" && git ls-files -z -co --exclude-standard |
     while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done |
     tar --null -T - -cf -) | tar -x -C "$1"
}

# The file lists each package must have (doc and lintian files aside), in two flavours.
expected_files() {
  local flavour=$1 pkg=$2 triplet libdir unitdir
  if [[ $flavour == deb ]]; then
    triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
    case $pkg in
      pam) printf '%s\n' "/lib/$triplet/security/pam_cvat.so" /etc/pam.d/cvat \
             /usr/share/pam-configs/cvat /usr/share/man/man8/pam_cvat.8.gz ;;
      nss) printf '%s\n' "/usr/lib/$triplet/libnss_cvat.so.2" /usr/share/man/man8/libnss_cvat.8.gz \
             /usr/share/man/man8/nss_cvat.8.gz ;;
      daemon) printf '%s\n' /usr/sbin/cvat-authd /usr/bin/cvat-authctl /lib/systemd/system/cvat-authd.service \
             /etc/cvat-auth/auth_config.yml /usr/share/man/man5/auth_config.yml.5.gz \
             /usr/share/man/man8/cvat-authd.8.gz /usr/share/man/man8/cvat-authctl.8.gz ;;
    esac
  else
    libdir=$(rpm --eval '%{_libdir}')
    unitdir=/usr/lib/systemd/system
    case $pkg in
      pam) printf '%s\n' "$libdir/security/pam_cvat.so" /etc/pam.d/cvat /usr/share/man/man8/pam_cvat.8.gz ;;
      nss) printf '%s\n' "$libdir/libnss_cvat.so.2" /usr/share/man/man8/libnss_cvat.8.gz \
             /usr/share/man/man8/nss_cvat.8.gz ;;
      daemon) printf '%s\n' /usr/sbin/cvat-authd /usr/bin/cvat-authctl "$unitdir/cvat-authd.service" \
             /usr/lib/sysusers.d/cvat-auth.conf /etc/cvat-auth /etc/cvat-auth/auth_config.yml /var/lib/cvat-auth \
             /usr/share/man/man5/auth_config.yml.5.gz /usr/share/man/man8/cvat-authd.8.gz \
             /usr/share/man/man8/cvat-authctl.8.gz ;;
    esac
  fi
}

# Compares a package's list with the expected one; prints the difference. Man pages are
# compared without their compression suffix (Fedora's rpm gzips them, Debian's does not).
same_list() {
  local label=$1 actual=$2 expected=$3
  actual=$(sed -E 's#^(/usr/share/man/.*)\.(gz|bz2|xz|zst)$#\1#' <<<"$actual") || return 1
  expected=$(sed -E 's#^(/usr/share/man/.*)\.(gz|bz2|xz|zst)$#\1#' <<<"$expected") || return 1
  [[ -n $actual && -n $expected ]] || { echo "# $label: an empty file list"; return 1; }
  if diff -u <(sort <<<"$expected") <(sort <<<"$actual") >"$work/list.diff"; then return 0; fi
  echo "# $label: expected (-) and found (+):"; note <"$work/list.diff"
  return 1
}

# ---- rpm ---------------------------------------------------------------------------------

if [[ $mode == rpm ]]; then
  trap 'rm -rf "$work"' EXIT
  version=$(sed -n "s/^  version : '\(.*\)',$/\1/p" "$SRC/meson.build")
  spec_version=$(sed -n 's/^Version:[[:space:]]*//p' "$SRC/rpm/cvat-auth.spec")
  deb_version=$(sed -n '1s/^cvat-auth (\([^)-]*\)[^)]*).*/\1/p' "$SRC/debian/changelog")
  check "one version: meson.build $version, the spec $spec_version, debian/changelog $deb_version" \
    test -n "$version" -a "$version" = "$spec_version" -a "$version" = "$deb_version"

  copy_source "$work/cvat-auth-$version"
  mkdir -p "$work/rpm/SOURCES"
  tar -C "$work" -czf "$work/rpm/SOURCES/cvat-auth-$version.tar.gz" "cvat-auth-$version"
  t0=$SECONDS
  if rpmbuild -bb --nodeps --define "_topdir $work/rpm" "$work/cvat-auth-$version/rpm/cvat-auth.spec" \
       >"$work/rpmbuild.log" 2>&1; then
    ok "rpmbuild -bb --nodeps rpm/cvat-auth.spec ($((SECONDS - t0)) s)"
  else
    not_ok "rpmbuild -bb --nodeps rpm/cvat-auth.spec"
    tail -40 "$work/rpmbuild.log" | note
    finish
  fi
  grep -i 'warning' "$work/rpmbuild.log" | note

  mapfile -t rpms < <(find "$work/rpm/RPMS" -name '*.rpm' | sort)
  names=$(for r in "${rpms[@]}"; do rpm -qp --qf '%{NAME}\n' "$r" 2>/dev/null; done | sort | tr '\n' ' ')
  check "three packages: cvat-auth-nss cvat-auth-pam cvat-authd (found: $names)" \
    test "$names" = "cvat-auth-nss cvat-auth-pam cvat-authd "
  for pair in pam:cvat-auth-pam nss:cvat-auth-nss daemon:cvat-authd; do
    role=${pair%%:*} name=${pair#*:}
    file=$(find "$work/rpm/RPMS" -name "$name-[0-9]*.rpm" | head -1)
    [[ -n $file ]] || { not_ok "$name: built"; continue; }
    actual=$(rpm -qlp "$file" 2>/dev/null | grep -v -E '^/usr/share/(doc|licenses)/|^/usr/lib/\.build-id(/|$)')
    check "$name holds what the Debian package holds ($(basename "$file"))" \
      same_list "$name" "$actual" "$(expected_files rpm "$role")"
  done
  daemon_rpm=$(find "$work/rpm/RPMS" -name 'cvat-authd-[0-9]*.rpm' | head -1)
  if [[ -n $daemon_rpm ]]; then
    attrs=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' "$daemon_rpm" 2>/dev/null |
              awk '$4 == "/etc/cvat-auth/auth_config.yml" {print $1, $2, $3}')
    check "auth_config.yml is -rw-r----- root:_cvat-auth (found: $attrs)" test "$attrs" = "-rw-r----- root _cvat-auth"
    check "auth_config.yml is %config(noreplace)" \
      bash -c "rpm -qcp '$daemon_rpm' 2>/dev/null | grep -qx /etc/cvat-auth/auth_config.yml"
    check "cvat-authd creates _cvat-auth before it is installed (%pre)" \
      bash -c "rpm -qp --scripts '$daemon_rpm' 2>/dev/null | grep -q 'useradd -r -g _cvat-auth'"
  fi
  echo "# rpm test: $((SECONDS - started)) s"
  finish
fi

# ---- deb ---------------------------------------------------------------------------------

for p in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q -v 'not-installed'; then
    bail "$p is already installed (or has configuration left): this test installs and purges it"
  fi
done
for d in /etc/cvat-auth /var/lib/cvat-auth /run/cvat-auth; do
  [[ -e $d ]] && bail "$d exists: this test would take it over (and purge removes it)"
done
getent passwd _cvat-auth >/dev/null && bail "user _cvat-auth exists: the package creates it"

# What must be as before at the end.
snapshot() {
  local f
  for f in /etc/nsswitch.conf /etc/passwd /etc/group /etc/shadow /etc/gshadow /var/lib/dpkg/statoverride; do
    if [[ -e $f ]]; then sha256sum "$f"; else echo "absent $f"; fi
  done
  # pam-auth-update's state (the profiles it has seen, the generated stacks).
  find /etc/pam.d /var/lib/pam -type f -print0 | sort -z | xargs -0 sha256sum
  # deb-systemd-helper's record of the unit.
  find /var/lib/systemd -path '*deb-systemd-helper*' -name '*cvat*' 2>/dev/null | sort
}
snapshot >"$work/before"
cp /etc/nsswitch.conf "$work/nsswitch.conf.orig"
cp -a /etc/pam.d "$work/pam.d.orig"

apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q "$@" </dev/null
}
installed_any() {
  local p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q -v 'not-installed' && return 0
  done
  return 1
}
stop_daemon() {
  [[ -n $daemon_pid ]] || return 0
  kill -TERM "$daemon_pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$daemon_pid" 2>/dev/null
  wait "$daemon_pid" 2>/dev/null
  daemon_pid=""
}
cleanup() {
  stop_daemon
  "$FIXTURES/slapd.sh" stop "$work/slapd" >/dev/null 2>&1
  if installed_any; then
    echo "# cleanup: purging ${packages[*]}"
    apt_get purge "${packages[@]}" >"$work/cleanup.log" 2>&1 || note <"$work/cleanup.log"
  fi
  # A failed purge must not leave this machine resolving users through cvat.
  if grep -q -E '^(passwd|group):[^#]*[[:space:]]cvat' /etc/nsswitch.conf &&
     ! grep -q -E '^(passwd|group):[^#]*[[:space:]]cvat' "$work/nsswitch.conf.orig"; then
    echo "# cleanup: /etc/nsswitch.conf still names cvat; restoring the copy taken at the start"
    cat "$work/nsswitch.conf.orig" >/etc/nsswitch.conf
  fi
  rm -rf /run/cvat-auth
  [[ -n ${KEEP_WORK:-} ]] && echo "# kept $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- build, lintian ------------------------------------------------------------------------

copy_source "$work/src"
t0=$SECONDS
if (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=2" dpkg-buildpackage -us -uc -b) \
     >"$work/build.log" 2>&1; then
  ok "dpkg-buildpackage -us -uc -b ($((SECONDS - t0)) s)"
else
  not_ok "dpkg-buildpackage -us -uc -b"
  tail -40 "$work/build.log" | note
  finish
fi
mkdir -p "$work/v1"
mv "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$work/v1/"
changes=$(ls "$work"/v1/*.changes)

for pair in pam:libpam-cvat nss:libnss-cvat daemon:cvat-authd; do
  role=${pair%%:*} name=${pair#*:}
  deb=$(ls "$work"/v1/"${name}"_*.deb 2>/dev/null | head -1)
  [[ -n $deb ]] || { not_ok "$name: built"; continue; }
  actual=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|' |
             grep -v -E '^/usr/share/(doc|lintian)/')
  check "$name holds its files ($(basename "$deb"))" same_list "$name" "$actual" "$(expected_files deb "$role")"
done
deb_authd=$(ls "$work"/v1/cvat-authd_*.deb | head -1)
check "auth_config.yml is shipped 0640" \
  bash -c "dpkg-deb -c '$deb_authd' | grep -E '^-rw-r----- .* \./etc/cvat-auth/auth_config.yml$' >/dev/null"
check "/etc/pam.d/cvat and auth_config.yml are conffiles" \
  bash -c "dpkg-deb -I '$(ls "$work"/v1/libpam-cvat_*.deb)' conffiles | grep -qx /etc/pam.d/cvat &&
           dpkg-deb -I '$deb_authd' conffiles | grep -qx /etc/cvat-auth/auth_config.yml"

t0=$SECONDS
lintian --fail-on error --display-level '>=warning' "$changes" >"$work/lintian.log" 2>&1
lintian_rc=$?
check "lintian: no errors ($((SECONDS - t0)) s)" test "$lintian_rc" -eq 0
note <"$work/lintian.log"

# ---- install -------------------------------------------------------------------------------

t0=$SECONDS
if apt_get install --no-install-recommends "$work"/v1/*.deb >"$work/install.log" 2>&1; then
  ok "apt-get install the three packages ($((SECONDS - t0)) s)"
else
  not_ok "apt-get install the three packages"
  tail -30 "$work/install.log" | note
  finish
fi
check "nsswitch.conf: cvat added to passwd: and group:, nothing else changed" \
  bash -c "diff <(sed -E '/^(passwd|group):/ s/[[:space:]]+cvat([[:space:]]|\$)/\1/' /etc/nsswitch.conf) '$work/nsswitch.conf.orig' >/dev/null &&
           [[ \$(grep -c -E '^(passwd|group):[^#]*[[:space:]]cvat([[:space:]]|#|\$)' /etc/nsswitch.conf) -eq \$(grep -c -E '^(passwd|group):' /etc/nsswitch.conf) ]]"
grep -E '^(passwd|group):' /etc/nsswitch.conf | note
check "/etc/pam.d: only the new service file cvat (the profile is off: common-* unchanged)" \
  bash -c "diff -r '$work/pam.d.orig' /etc/pam.d | grep -qx 'Only in /etc/pam.d: cvat' &&
           [[ \$(diff -r '$work/pam.d.orig' /etc/pam.d | wc -l) -eq 1 ]]"
uid=$(id -u _cvat-auth 2>/dev/null)
check "system user _cvat-auth (uid $uid) and its group" \
  bash -c "[[ -n '$uid' && '$uid' -lt 1000 ]] && getent group _cvat-auth >/dev/null"
check "auth_config.yml is root:_cvat-auth 0640" \
  test "$(stat -c '%U:%G %a' /etc/cvat-auth/auth_config.yml)" = "root:_cvat-auth 640"
check "/var/lib/cvat-auth is _cvat-auth's, 0700" \
  test "$(stat -c '%U %a' /var/lib/cvat-auth)" = "_cvat-auth 700"
check "the packaged example configuration loads (cvat-authd --check as _cvat-auth)" \
  setpriv --reuid=_cvat-auth --regid=_cvat-auth --init-groups -- /usr/sbin/cvat-authd --check
check "man pages installed (man -w pam_cvat nss_cvat auth_config.yml cvat-authd cvat-authctl)" \
  bash -c "command -v man >/dev/null || exit 0; for p in 8/pam_cvat 8/nss_cvat 8/libnss_cvat 5/auth_config.yml 8/cvat-authd 8/cvat-authctl; do man -w \${p%%/*} \${p#*/} >/dev/null || exit 1; done"

# ---- a directory, the packaged configuration pointed at it ---------------------------------

if ! "$FIXTURES/slapd.sh" start "$work/slapd" ad tls >"$work/slapd.out" 2>&1; then
  not_ok "private slapd started"
  note <"$work/slapd.out"
  finish
fi
# shellcheck disable=SC1091
. "$work/slapd/env"
install -m 0644 "$CA_FILE" /etc/cvat-auth/test-ca.pem
printf '%s\n' 'Bind-Secret-1' >/etc/cvat-auth/bind_password
chown root:_cvat-auth /etc/cvat-auth/bind_password
chmod 0640 /etc/cvat-auth/bind_password
users="CN=Users,dc=ad,dc=example,dc=test"
# The packaged helper: and nss: sections stay; the ldap: section becomes the test directory's.
{
  cat <<EOF
ldap:
  server_uri: $LDAPS_URI
  tls: {ca_file: /etc/cvat-auth/test-ca.pem, require_cert: true}
  bind_dn: "CN=cvat_bind,$users"
  bind_password_file: /etc/cvat-auth/bind_password
  user_search: {base: "$users", scope: subtree, filter: "(sAMAccountName=%(user)s)"}
  group_search: {base: "$users", scope: subtree, filter: "(objectClass=group)"}
  group_type: nested_active_directory
  user_attr_map: {user_name: sAMAccountName, first_name: givenName, last_name: sn, email: mail}
  role_groups:
    admin: ["CN=CVAT Admins,$users"]
    user: ["CN=CVAT Users,$users"]
    worker: ["CN=CVAT Workers,$users"]
  default_role: user
EOF
  sed -n '/^helper:/,$p' /etc/cvat-auth/auth_config.yml
} >"$work/auth_config.yml"
cat "$work/auth_config.yml" >/etc/cvat-auth/auth_config.yml   # keeps owner and mode
config_sum=$(sha256sum </etc/cvat-auth/auth_config.yml)
check "the edited configuration loads (cvat-authctl config check)" \
  bash -c "cvat-authctl config check >'$work/check.out' 2>&1" || note <"$work/check.out"

unit=/lib/systemd/system/cvat-authd.service
unit_value() { sed -n "s/^$1=//p" "$unit" | tail -1; }
exec_start=$(unit_value ExecStart) unit_user=$(unit_value User) unit_group=$(unit_value Group)
runtime_dir=$(unit_value RuntimeDirectory) runtime_mode=$(unit_value RuntimeDirectoryMode)
umask_value=$(unit_value UMask)
check "unit: ExecStart=$exec_start User=$unit_user RuntimeDirectory=$runtime_dir StateDirectory=$(unit_value StateDirectory) ExecReload=$(unit_value ExecReload)" \
  test "$exec_start" = "/usr/sbin/cvat-authd --foreground" -a "$unit_user" = _cvat-auth \
       -a "$runtime_dir" = cvat-auth -a "$(unit_value StateDirectory)" = cvat-auth
check "the unit is installed but not enabled" \
  bash -c "[[ ! -e /etc/systemd/system/multi-user.target.wants/cvat-authd.service ]]"

wait_socket() {
  for _ in $(seq 150); do
    [[ -S /run/cvat-auth/socket ]] && return 0
    kill -0 "$daemon_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# pamtester reads the password from standard input when it is not a terminal.
login() { printf '%s\n' "$2" | timeout 30 pamtester cvat "$1" authenticate acct_mgmt >"$work/pamtester.out" 2>&1; }
daemon_uid() { awk '/^Uid:/ {print $2}' "/proc/$daemon_pid/status" 2>/dev/null; }

# As systemd would run it (PID 1 here is not systemd): the unit's user and group, its
# RuntimeDirectory with its mode, its UMask, no new privileges.
start_as_unit() {
  install -d -m "${runtime_mode:-0755}" -o "$unit_user" -g "$unit_group" "/run/$runtime_dir"
  # shellcheck disable=SC2086
  (umask "${umask_value:-0022}"
   exec setpriv --reuid="$unit_user" --regid="$unit_group" --init-groups --no-new-privs -- $exec_start) \
    >>"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  wait_socket
}

logins() {
  local label=$1
  check "$label: pamtester cvat alice (right password) succeeds" login alice 'alice-Passw0rd' ||
    { note <"$work/pamtester.out"; tail -20 "$work/daemon.log" | note; }
  login alice 'not-her-password'
  local rc=$?
  check "$label: pamtester cvat alice (wrong password) fails with an authentication failure" \
    bash -c "[[ $rc -ne 0 ]] && grep -q 'Authentication failure' '$work/pamtester.out'" || note <"$work/pamtester.out"
}

t0=$SECONDS
check "daemon started as the unit would start it (socket within 15 s)" start_as_unit ||
  tail -20 "$work/daemon.log" | note
check "daemon runs as _cvat-auth" test "$(daemon_uid)" = "$uid"
logins "unit"
check "getent passwd alice through the installed libnss_cvat" \
  bash -c "getent passwd alice | grep '^alice:\*:' >/dev/null"
getent passwd alice | note
check "id alice: in cvat-admin" bash -c "id -nG alice | tr ' ' '\n' | grep -qx cvat-admin"
check "cvat-authctl status: the directory is up" bash -c "cvat-authctl status >'$work/status.out' 2>&1" ||
  note <"$work/status.out"
kill -HUP "$daemon_pid"
sleep 0.5
check "ExecReload (SIGHUP): the daemon reloads and keeps answering" \
  bash -c "kill -0 $daemon_pid && printf '%s\n' 'alice-Passw0rd' | timeout 30 pamtester cvat alice authenticate >/dev/null 2>&1"
stop_daemon
check "SIGTERM stops the daemon and removes its socket" test ! -e /run/cvat-auth/socket

# Without systemd: started as root, the daemon makes /run/cvat-auth itself and drops to
# helper.user.
rm -rf /run/cvat-auth
/usr/sbin/cvat-authd --foreground >>"$work/daemon.log" 2>&1 &
daemon_pid=$!
check "started as root without systemd: socket within 15 s" wait_socket || tail -20 "$work/daemon.log" | note
check "it created /run/cvat-auth 0755 for _cvat-auth" \
  test "$(stat -c '%U %a' /run/cvat-auth 2>/dev/null)" = "_cvat-auth 755"
check "it dropped to _cvat-auth" test "$(daemon_uid)" = "$uid"
logins "root start"
stop_daemon
echo "# daemon and logins: $((SECONDS - t0)) s"

# ---- upgrade --------------------------------------------------------------------------------

# A second build of the same tree with a newer version: the build stamp keeps dh from
# compiling again, so this packages the same binaries as 0.1.0+pkgtest1.
t0=$SECONDS
old_version=$(dpkg-query -W -f='${Version}' cvat-authd)
new_version="${old_version}+pkgtest1"
{
  printf 'cvat-auth (%s) unstable; urgency=medium\n\n  * Test upgrade.\n\n -- %s  %s\n\n' \
    "$new_version" "The cvat-auth developers <cvat-auth@lists.example.org>" "$(date -R)"
  cat "$work/src/debian/changelog"
} >"$work/changelog.new"
mv "$work/changelog.new" "$work/src/debian/changelog"
if (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=2" dpkg-buildpackage -us -uc -b -nc) \
     >"$work/build2.log" 2>&1; then
  ok "second build, version $new_version ($((SECONDS - t0)) s)"
else
  not_ok "second build, version $new_version"
  tail -30 "$work/build2.log" | note
fi
nss_after_install=$(sha256sum </etc/nsswitch.conf)
if apt_get install --no-install-recommends "$work"/*_"$new_version"_*.deb >"$work/upgrade.log" 2>&1; then
  ok "apt-get install upgrades $old_version -> $new_version"
else
  not_ok "apt-get install upgrades $old_version -> $new_version"
  tail -30 "$work/upgrade.log" | note
fi
check "upgraded: all three at $new_version" bash -c "
  for p in ${packages[*]}; do [[ \$(dpkg-query -W -f='\${Version}' \$p) == '$new_version' ]] || exit 1; done"
check "upgrade kept the edited configuration, its owner and mode" \
  bash -c "[[ \"\$(sha256sum </etc/cvat-auth/auth_config.yml)\" == '$config_sum' &&
             \$(stat -c '%U:%G %a' /etc/cvat-auth/auth_config.yml) == 'root:_cvat-auth 640' ]]"
check "upgrade left nsswitch.conf alone (cvat once per line)" \
  test "$(sha256sum </etc/nsswitch.conf)" = "$nss_after_install"
check "after the upgrade: daemon started as the unit would" start_as_unit || tail -20 "$work/daemon.log" | note
logins "upgraded"
stop_daemon

# ---- remove, purge --------------------------------------------------------------------------

if apt_get remove "${packages[@]}" >"$work/remove.log" 2>&1; then
  ok "apt-get remove"
else
  not_ok "apt-get remove"
  tail -20 "$work/remove.log" | note
fi
check "removed: nsswitch.conf is as before" cmp -s /etc/nsswitch.conf "$work/nsswitch.conf.orig" ||
  diff "$work/nsswitch.conf.orig" /etc/nsswitch.conf | note
check "removed: /etc/pam.d differs only by the conffile cvat (kept until purge)" \
  bash -c "[[ \$(diff -r '$work/pam.d.orig' /etc/pam.d) == 'Only in /etc/pam.d: cvat' ]]"
check "removed: getent passwd alice no longer answers" bash -c "! getent passwd alice >/dev/null"
if apt_get purge "${packages[@]}" >"$work/purge.log" 2>&1; then
  ok "apt-get purge"
else
  not_ok "apt-get purge"
  tail -20 "$work/purge.log" | note
fi
check "purged: no user or group _cvat-auth" \
  bash -c "! getent passwd _cvat-auth >/dev/null && ! getent group _cvat-auth >/dev/null"
check "purged: /etc/cvat-auth, /var/lib/cvat-auth and /run/cvat-auth are gone" \
  bash -c "[[ ! -e /etc/cvat-auth && ! -e /var/lib/cvat-auth && ! -e /run/cvat-auth ]]"
check "purged: dpkg knows none of the packages" bash -c "! dpkg-query -W ${packages[*]} 2>/dev/null | grep -q ."
snapshot >"$work/after"
check "purged: nsswitch.conf, /etc/pam.d, /var/lib/pam, passwd, group, shadow, gshadow, statoverride, deb-systemd-helper state as before" \
  cmp -s "$work/before" "$work/after" || diff "$work/before" "$work/after" | note
echo "# deb test: $((SECONDS - started)) s"
finish
