#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# libnss_cvat.so.2 links libc and nothing else (DESIGN.md §1: not even libstdc++), exports only
# _nss_cvat_*, is never unloaded (DF_1_NODELETE: glibc keeps NSS modules loaded, and its atfork
# handlers must stay valid), carries its SONAME, and loads with every symbol resolved.
# Usage: test_nss_linkage.sh PATH/TO/libnss_cvat.so.2      Output: TAP.
set -u

so=${1:?usage: $0 path/to/libnss_cvat.so.2}
if [ ! -f "$so" ]; then
    echo "Bail out! $so not found"
    exit 1
fi
for tool in readelf nm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "Bail out! $tool not installed"
        exit 1
    fi
done

failed=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; }

echo "1..6"
dyn=$(LC_ALL=C readelf -d "$so")

# 1. DT_NEEDED: libc (and the dynamic loader) only.
needed=$(printf '%s\n' "$dyn" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
bad=""
for lib in $needed; do
    case "$lib" in
        libc.so.6|ld-linux*.so.*) ;;
        *) bad="$bad $lib" ;;
    esac
done
if [ -z "$needed" ]; then
    not_ok "DT_NEEDED could not be read"
elif [ -n "$bad" ]; then
    not_ok "DT_NEEDED has libraries beyond libc:$bad"
else
    ok "DT_NEEDED is only: $(echo $needed)"
fi

# 2. Exported (defined, dynamic) symbols: _nss_cvat_* only.
exported=$(LC_ALL=C nm -D --defined-only "$so" | awk '{print $NF}')
extra=$(printf '%s\n' $exported | grep -v '^_nss_cvat_' | head -n 20 | tr '\n' ' ')
if [ -n "$extra" ]; then
    not_ok "exports symbols other than _nss_cvat_*: $extra"
else
    ok "exports only _nss_cvat_*"
fi

# 3. Every entry point glibc looks up for passwd, group and initgroups.
missing=""
for f in getpwnam_r getpwuid_r setpwent getpwent_r endpwent getgrnam_r getgrgid_r setgrent \
         getgrent_r endgrent initgroups_dyn; do
    printf '%s\n' $exported | grep -qx "_nss_cvat_$f" || missing="$missing $f"
done
if [ -n "$missing" ]; then
    not_ok "missing entry points:$missing"
else
    ok "all eleven _nss_cvat_* entry points defined"
fi

# 4. DF_1_NODELETE (-z nodelete).
if printf '%s\n' "$dyn" | grep 'FLAGS_1' | grep -q 'NODELETE'; then
    ok "DF_1_NODELETE set"
else
    not_ok "DF_1_NODELETE not set"
fi

# 5. SONAME.
soname=$(printf '%s\n' "$dyn" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" = "libnss_cvat.so.2" ]; then
    ok "SONAME libnss_cvat.so.2"
else
    not_ok "SONAME is '$soname', not libnss_cvat.so.2"
fi

# 6. No C++ runtime symbol is even referenced (it would fail at load without libstdc++).
#    __cxa_finalize is libc's (crtbegin's weak reference for destructors on dlclose).
cxx=$(LC_ALL=C nm -D --undefined-only "$so" | awk '{print $NF}' | grep -E '^_Z|__cxa_|__gxx_|_Unwind_' |
      grep -v '^__cxa_finalize@' | head -n 10 | tr '\n' ' ')
if [ -n "$cxx" ]; then
    not_ok "references C++ runtime symbols: $cxx"
else
    ok "references no C++ runtime symbol"
fi

exit $failed
