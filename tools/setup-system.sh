#!/bin/sh
# System set-up for stprof, run by `make setup` (and so by `make demo` and
# `make test`).  As root on Debian/Ubuntu it installs the Debian packages the
# project needs, kernel headers bcc can find, and mounts debugfs/tracefs.
# Idempotent: a second run checks and returns in well under a second.
#
# Usage: setup-system.sh [LOG].  apt's own output goes to LOG (default: not
# kept) and is shown only when it fails; what is done is one line a step.
# Another apt-get or dpkg at work (a second `make`, unattended upgrades) is
# waited for, up to STPROF_LOCK_WAIT seconds (default 900), not failed on.
set -eu

# chromium: the HTML reports are tested in a real headless browser
DEBIAN_PACKAGES="python3-bpfcc strace linux-perf gcc libc6-dev python3-venv util-linux chromium"

log=${1:-/dev/null}
lock_wait=${STPROF_LOCK_WAIT:-900}
[ "$log" = /dev/null ] || : >"$log"

say() { echo "setup: $*"; }

fail() {
    if [ "$log" != /dev/null ]; then
        tail -n 20 "$log" >&2
        say "$1 failed (its output above; all of it in $log)" >&2
    else
        say "$1 failed" >&2
    fi
    exit 1
}

# "pid N (name)" of the process holding a lock that apt and dpkg take with
# fcntl(2); nothing, and a failure status, when the lock is free.
lock_holder() {
    python3 - "$1" <<'PYTHON'
import fcntl, os, struct, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    lock = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
except OSError:
    sys.exit(1)
kind, _, _, _, pid = struct.unpack("hhqqi", lock)
if kind == fcntl.F_UNLCK:
    sys.exit(1)
try:
    with open(f"/proc/{pid}/comm") as stream:
        name = stream.read().strip()
except OSError:
    name = "?"
print(f"pid {pid} ({name})")
PYTHON
}

if [ "$(uname -s)" != Linux ]; then
    say "not Linux: no system packages needed (the DTrace collector uses the system's dtrace)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    say "not root: skipping Debian packages, kernel headers and debugfs (the ptrace collector works without them)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get: install bcc (python3 module), kernel headers, strace and perf with your package manager"
    exit 0
fi

# dpkg-query reads dpkg's status without its lock: a package another dpkg is
# installing right now shows as not installed yet, and is then installed
# (a no-op) once that dpkg is done, below.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $DEBIAN_PACKAGES 2>/dev/null | grep " ok installed$" || true)
missing=""
for pkg in $DEBIAN_PACKAGES; do
    case "$installed" in
        "$pkg "*|*"
$pkg "*) ;;
        *) missing="$missing $pkg" ;;
    esac
done

kernel=$(uname -r)
build="/lib/modules/$kernel/build"
apt_updated=""
apt_update() {
    [ -n "$apt_updated" ] && return 0
    say "apt-get update"
    # DPkg::Lock::Timeout waits for dpkg's lock, not for the lists lock of
    # `apt-get update`, which fails at once when another holds it: wait here.
    waited=0
    until output=$(apt-get -o DPkg::Lock::Timeout="$lock_wait" update -qq 2>&1); do
        printf '%s\n' "$output" >>"$log"
        case $output in
            *"Could not get lock"*) ;;
            *) fail "apt-get update" ;;
        esac
        [ "$waited" -lt "$lock_wait" ] || fail "apt-get update (waited ${lock_wait}s for its lock)"
        if [ "$waited" -eq 0 ]; then
            say "waiting for $(lock_holder /var/lib/apt/lists/lock || echo another apt-get) to release the apt lists lock"
        fi
        sleep 2
        waited=$((waited + 2))
    done
    printf '%s\n' "$output" >>"$log"
    apt_updated=1
}

headers_pkg=""
if [ ! -e "$build/include" ]; then
    apt_update
    if apt-cache show "linux-headers-$kernel" >/dev/null 2>&1; then
        headers_pkg="linux-headers-$kernel"
    else
        headers_pkg="linux-headers-$(dpkg --print-architecture)"
    fi
fi

if [ -n "$missing$headers_pkg" ]; then
    apt_update
    say "installing$missing${headers_pkg:+ $headers_pkg}"
    if holder=$(lock_holder /var/lib/dpkg/lock-frontend); then
        say "waiting for $holder to release the dpkg lock"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$lock_wait" install -y -qq \
        --no-install-recommends $missing $headers_pkg >>"$log" 2>&1 || fail "apt-get install"
fi

# The running kernel has no headers package of its own: show bcc the
# distribution's generic ones as this kernel's build and source trees.
# Only links that do not exist yet are made, so nothing else changes.
if [ ! -e "$build/include" ]; then
    arch_dir=$(ls -d /usr/src/linux-headers-*-"$(dpkg --print-architecture)" 2>/dev/null | sort -V | tail -n 1)
    common_dir=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$arch_dir" ] && [ -n "$common_dir" ]; then
        mkdir -p "/lib/modules/$kernel"
        [ -e "$build" ] || ln -s "$arch_dir" "$build"
        [ -e "/lib/modules/$kernel/source" ] || ln -s "$common_dir" "/lib/modules/$kernel/source"
        say "kernel $kernel has no headers package: linked $arch_dir and $common_dir for bcc"
    else
        say "no kernel headers found: the eBPF collector will not work (stprof doctor says why)"
    fi
fi

if [ ! -d /sys/kernel/debug/tracing/events ] && [ ! -d /sys/kernel/tracing/events ]; then
    mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
    [ -d /sys/kernel/debug/tracing/events ] || mount -t tracefs none /sys/kernel/tracing 2>/dev/null || true
    say "mounted debugfs/tracefs"
fi
