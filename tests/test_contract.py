"""Which collector exists where, and stprof without the Linux-only dependencies.

Like psutil's per-platform contract tests: a collector is offered only on the
systems it is written for, and with bcc and python-ptrace missing (as on
FreeBSD, where they are not installed) stprof imports, `doctor` says why each
collector cannot run, and `run` refuses in one line: no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collectors import NAMES, collector_class

NATIVE = {"linux": {"ebpf", "ptrace"}, "freebsd": {"dtrace"}}


@pytest.mark.skipif(not sys.platform.startswith(tuple(NATIVE)), reason="no contract written "
                    f"for {sys.platform}")
def test_collectors_offered_only_where_they_are_written_for() -> None:
    platform = next(p for p in NATIVE if sys.platform.startswith(p))
    offered = {name for name in NAMES
               if sys.platform.startswith(collector_class(name).platforms)}
    assert offered == NATIVE[platform]
    for name in set(NAMES) - offered:
        available = collector_class(name).availability()
        assert not available.ok and available.reason


def without_linux_dependencies(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run stprof with bcc and ptrace made unimportable (None in sys.modules)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nfor name in ('ptrace', 'bcc'):\n    sys.modules[name] = None\n")
    return subprocess.run([sys.executable, "-m", "stprof", *args], capture_output=True,
                          text=True, check=False, timeout=60,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_doctor_without_bcc_and_ptrace_says_why(tmp_path: Path) -> None:
    result = without_linux_dependencies(tmp_path, "doctor")
    assert "Traceback" not in result.stderr
    assert "the bcc Python module is not installed" in result.stdout
    assert "python-ptrace is not installed" in result.stdout
    assert result.returncode == 125  # no collector can run


def test_run_without_bcc_and_ptrace_is_one_line(tmp_path: Path) -> None:
    result = without_linux_dependencies(tmp_path, "run", "--", "true")
    assert result.returncode == 125
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stprof: no collector can run here")
