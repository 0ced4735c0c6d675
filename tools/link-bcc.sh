#!/bin/sh
# Make Debian's bcc Python module (python3-bpfcc) importable from the
# project's venv without pulling in every other Debian Python package:
# a .pth file adds a directory holding one link, to bcc only.
set -eu
venv_python=$1
link_dir=$(cd "$(dirname "$venv_python")/.." && pwd)/bcc-link
for candidate in /usr/lib/python3/dist-packages/bcc /usr/lib/python3*/site-packages/bcc; do
    if [ -d "$candidate" ]; then
        for pth in "$link_dir"/../lib/python*/site-packages/stprof-bcc.pth; do
            if [ "$(readlink "$link_dir/bcc" 2>/dev/null)" = "$candidate" ] &&
               [ "$(cat "$pth" 2>/dev/null)" = "$link_dir" ]; then
                exit 0  # linked already: nothing to say (and no Python started)
            fi
        done
        site=$("$venv_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        if [ "$(readlink "$link_dir/bcc" 2>/dev/null)" = "$candidate" ] &&
           [ "$(cat "$site/stprof-bcc.pth" 2>/dev/null)" = "$link_dir" ]; then
            exit 0
        fi
        mkdir -p "$link_dir"
        ln -sfn "$candidate" "$link_dir/bcc"
        echo "$link_dir" > "$site/stprof-bcc.pth"
        echo "setup: linked Debian's bcc module ($candidate) into the venv"
        exit 0
    fi
done
echo "setup: bcc's Python module not found: the eBPF collector will not work (stprof doctor says why)"
