# deps.sh — sourced by scripts: install the Debian packages smmuctl's build and checks need.
# shellcheck shell=bash

# Packages for: building (compiler, cmake, libraries), tests (cmocka), the valgrind pass, libFuzzer
# (clang-14 + its runtime), helper scripts (python3), the packaging test (dpkg-dev: cpack's dpkg-shlibdeps;
# binutils: objdump; build-essential brings both, listed for what they are used for), the man page test
# (groff-base: groff). QEMU 11 is not here: scripts/install-qemu11.
SMMU_DEPS_PACKAGES=(
    build-essential cmake pkg-config
    libjansson-dev libevent-dev libxml2-dev libcmocka-dev
    valgrind clang clang-14 libclang-rt-14-dev
    python3 dpkg-dev binutils groff-base
)

# smmu_deps_missing PKG... — print the packages (one a line) that dpkg does not have installed.
smmu_deps_missing() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) || status=
        [[ $status == installed ]] || printf '%s\n' "$pkg"
    done
}

# smmu_deps_install [PKG...] — install whichever of PKG (default: SMMU_DEPS_PACKAGES) are missing, as
# root or through non-interactive sudo. Runs `apt-get update` once, only when something is missing.
# Quiet on success; on failure prints apt's output and returns non-zero.
smmu_deps_install() {
    local -a want missing sudo=()
    local log rc=0
    if [[ $# -gt 0 ]]; then want=("$@"); else want=("${SMMU_DEPS_PACKAGES[@]}"); fi
    if ! command -v dpkg-query >/dev/null; then
        echo "deps: dpkg-query not found: install ${want[*]} by hand" >&2
        return 1
    fi
    mapfile -t missing < <(smmu_deps_missing "${want[@]}")
    [[ ${#missing[@]} -eq 0 ]] && return 0

    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "deps: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
            return 1
        fi
    fi
    echo "deps: installing ${missing[*]}"
    log=$(mktemp)
    {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends \
                install "${missing[@]}"
    } </dev/null >"$log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        cat "$log" >&2
        echo "deps: apt-get failed (exit $rc) installing ${missing[*]}" >&2
    fi
    rm -f "$log"
    return "$rc"
}
