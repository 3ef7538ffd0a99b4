#!/usr/bin/env bash
# test_install.sh BUILD_DIR SOURCE_DIR — issue 14.1: the .deb cpack builds from BUILD_DIR holds what
# `cmake --install` puts in place, depends on Debian runtime packages only, and works from a scratch root:
# `smmuctl --version` runs from there, and a tiny program builds and runs against the installed library
# through pkg-config (shared) and through CMake's find_package(smmuctl) (shared and static).
set -euo pipefail
BUILD=$1
SRC=$2
S=$(mktemp -d /tmp/smmu-install-XXXXXX)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$S"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

version=$(sed -n 's/^project(smmuctl VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[[ -n $version ]] || fail "no version in $SRC/CMakeLists.txt"

# 1. the .deb
(cd "$S" && cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$S/pkg" >"$S/cpack.log" 2>&1) ||
    { cat "$S/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$S"/pkg/smmuctl_*.deb)
info=$(dpkg-deb -I "$deb")
depends=$(sed -n 's/^ Depends: //p' <<<"$info")
echo "Depends: $depends"
for want in libjansson4 libevent-2.1-7 libxml2 libc6; do
    [[ $depends == *"$want"* ]] || fail "Depends lacks $want: $depends"
done
[[ $depends != *-dev* ]] || fail "Depends names a -dev package: $depends"
[[ $(sed -n 's/^ Version: //p' <<<"$info") == "$version" ]] || fail "package version is not $version"

# 2. its files, unpacked into a scratch root
root=$S/root
dpkg-deb -x "$deb" "$root"
has() { [[ -n $(find "$root" -path "$root$1" -print -quit) ]] || fail "the package has no $1"; }
has /usr/bin/smmuctl
has /usr/include/smmuctl/engine.h
has "/usr/lib*/libsmmuctl.so.0"
has "/usr/lib*/libsmmuctl.a"
has "/usr/lib*/pkgconfig/smmuctl.pc"
has "/usr/lib*/cmake/smmuctl/smmuctlConfig.cmake"
for f in /usr/share/man/man1/smmuctl.1 /usr/share/man/man8/smmuctl-serve.8 \
         /usr/share/bash-completion/completions/smmuctl "/*lib/systemd/system/smmuctl.service"; do
    if [[ -e $SRC/dist/${f##*/} || -e $SRC/dist/man/${f##*/} || -e $SRC/dist/bash-completion/${f##*/} ||
          -e $SRC/dist/systemd/${f##*/} ]]; then
        has "$f*"
    fi
done
out=$("$root/usr/bin/smmuctl" --version)
[[ $out == "smmuctl $version" ]] || fail "smmuctl --version from the scratch root said '$out'"
libdir=$(dirname "$(find "$root" -name 'libsmmuctl.so.0' -print -quit)")
syms=$(objdump -T "$libdir/libsmmuctl.so.0")
grep -q 'SMMUCTL_0.*smmu_bdf_parse' <<<"$syms" || fail "smmu_bdf_parse is not versioned SMMUCTL_0"
if grep -v -E 'SMMUCTL_0|\*UND\*' <<<"$syms" | grep ' DF .text'; then
    fail "unversioned symbols exported (above)"
fi

# 3. a consumer
mkdir -p "$S/app"
cat >"$S/app/app.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <smmuctl/bdf.h>
#include <smmuctl/qmp.h>
int main(void)
{
    char bdf[SMMU_BDF_LEN + 1];
    struct smmu_error e = SMMU_ERROR_INIT;
    if (smmu_bdf_parse("9:1:0.0", bdf, &e) == 0 || !strstr(e.message, "9:1:0.0"))
        return 1; /* strict: refused, and the message names the input */
    if (smmu_bdf_parse("0009:01:00.0", bdf, &e) != 0)
        return 2;
    struct qmp_addr a;
    char canon[256];
    if (qmp_addr_parse("/run/vm1.qmp", &a, &e) != 0)
        return 3;
    qmp_addr_canonical(&a, canon, sizeof(canon));
    printf("%s %s\n", bdf, canon);
    return 0;
}
C
expect="0009:01:00.0 unix:/run/vm1.qmp"
pcdir=$(dirname "$(find "$root" -name smmuctl.pc -print -quit)")
export PKG_CONFIG_PATH=$pcdir
[[ $(pkg-config --modversion smmuctl) == "$version" ]] || fail "pkg-config --modversion smmuctl"
# shellcheck disable=SC2046
cc -Wall -Werror -o "$S/app/app-pc" "$S/app/app.c" $(pkg-config --cflags --libs smmuctl) ||
    fail "building against the installed library through pkg-config"
out=$(LD_LIBRARY_PATH=$libdir "$S/app/app-pc") || fail "the pkg-config build ran with exit $?"
[[ $out == "$expect" ]] || fail "pkg-config build printed '$out'"
# (outputs captured first: `cmd | grep -q` under pipefail fails when grep stops reading early)
deps=$(LD_LIBRARY_PATH=$libdir ldd "$S/app/app-pc")
[[ $deps == *"$libdir/libsmmuctl.so.0"* ]] || fail "app-pc is not linked to the installed libsmmuctl.so.0: $deps"

cat >"$S/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(app C)
find_package(smmuctl 0.1 REQUIRED)
add_executable(app-shared app.c)
target_link_libraries(app-shared PRIVATE smmuctl::smmuctl)
add_executable(app-static app.c)
target_link_libraries(app-static PRIVATE smmuctl::smmuctl_static)
CM
cmake -S "$S/app" -B "$S/app/build" -DCMAKE_PREFIX_PATH="$root/usr" >"$S/cmake.log" 2>&1 &&
    cmake --build "$S/app/build" >>"$S/cmake.log" 2>&1 || { cat "$S/cmake.log"; fail "find_package(smmuctl) build"; }
out=$(LD_LIBRARY_PATH=$libdir "$S/app/build/app-shared") && [[ $out == "$expect" ]] || fail "app-shared printed '$out'"
out=$("$S/app/build/app-static") && [[ $out == "$expect" ]] || fail "app-static printed '$out'"
deps=$(ldd "$S/app/build/app-static")
[[ $deps != *libsmmuctl* ]] || fail "app-static links libsmmuctl.so: $deps"
echo "ok: smmuctl $version installs from its .deb; pkg-config and find_package(smmuctl) builds run"
