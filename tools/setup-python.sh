#!/bin/sh
# The Python side of `make setup`: pip installs stprof (editable) and its
# dependencies into the venv.  pip's output goes to a log file and is shown
# only when pip fails: this machine's pip configuration may name package
# locations that do not exist, and pip warns about each on every run.
# Usage: setup-python.sh VENV_PYTHON LOG
set -eu
venv_python=$1
log=$2
mkdir -p "$(dirname "$log")"
if ! { "$venv_python" -m pip install --upgrade pip && "$venv_python" -m pip install -e '.[dev]'; } >"$log" 2>&1; then
    grep -v '^WARNING: Location .* is ignored' "$log" | tail -n 30 >&2
    echo "setup: pip failed (its output above; all of it in $log)" >&2
    exit 1
fi
installed=$(sed -n 's/^Successfully installed //p' "$log" | wc -w)
echo "setup: pip installed or upgraded $installed Python packages in $(dirname "$(dirname "$venv_python")") (log: $log)"
