"""Build the tests' C workloads (tests/workloads/<name>.c) once, on demand.

``build("groundtruth")`` compiles with ``cc -O1 -static -pthread`` (static
linking keeps the loader's syscalls out of the counts; falls back to a
dynamic build where no static libc is installed) into tests/.build/, and
rebuilds only when the source is newer than the binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "workloads"
BUILD = HERE / ".build"


class BuildError(RuntimeError):
    """The C compiler is missing or refused the source."""


def build(name: str) -> Path:
    """The path of the compiled workload ``name`` (compiled if out of date)."""
    source = SOURCES / f"{name}.c"
    if not source.is_file():
        raise BuildError(f"no workload source {source}")
    binary = BUILD / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise BuildError("no C compiler (cc) found")
    BUILD.mkdir(exist_ok=True)
    # Build under a private name, then rename: parallel test runs never see
    # half a binary.
    tmp = BUILD / f".{name}.{os.getpid()}.tmp"
    errors = []
    for flags in (["-static"], []):
        result = subprocess.run(
            [compiler, "-O1", *flags, "-pthread", "-o", str(tmp), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            os.replace(tmp, binary)
            return binary
        errors.append(result.stderr.strip())
    tmp.unlink(missing_ok=True)
    raise BuildError(f"cannot compile {source.name}: {errors[-1][-500:]}")
