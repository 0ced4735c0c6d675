#!/bin/sh
# System set-up for stprof, run by `make setup` (and so by `make demo` and
# `make test`).  As root on Debian/Ubuntu it installs the Debian packages the
# project needs, kernel headers bcc can find, and mounts debugfs/tracefs.
# Idempotent: a second run checks and returns in well under a second.
set -eu

# chromium: the HTML reports are tested in a real headless browser
DEBIAN_PACKAGES="python3-bpfcc strace linux-perf gcc libc6-dev python3-venv util-linux chromium"

say() { echo "setup: $*"; }

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

missing=""
for pkg in $DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done

kernel=$(uname -r)
build="/lib/modules/$kernel/build"
apt_updated=""
apt_update() {
    [ -n "$apt_updated" ] && return 0
    say "apt-get update"
    apt-get update -qq
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
    say "installing$missing $headers_pkg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing $headers_pkg >/dev/null
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
