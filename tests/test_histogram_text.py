"""--histogram: each syscall's log2 latency histogram under the table, bcc-style."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from collector_guard import unavailable_reason

from reports.histogram import log2_hist_lines

STPROF = [sys.executable, "-m", "stprof"]
ROW = re.compile(r"^\s*(\d+) -> (\d+)\s*: (\d+)\s+\|(\**)\s*\|$")


def test_buckets_are_the_models_log2_slots() -> None:
    # bucket 0 is 0 ns; bucket i is [2**(i-1), 2**i - 1]; leading empty buckets are left out
    lines = log2_hist_lines([0, 0, 0, 4, 0, 2])
    rows = [ROW.match(line) for line in lines[1:]]
    assert all(rows)
    assert [(int(m[1]), int(m[2]), int(m[3])) for m in rows if m] == [
        (4, 7, 4), (8, 15, 0), (16, 31, 2)]
    assert len(rows[0][4]) == 40 and len(rows[2][4]) == 20  # type: ignore[index]
    assert log2_hist_lines([]) == [] and log2_hist_lines([0, 0]) == []


def _histogram_counts(report: str, syscall: str) -> list[int]:
    block = report.split(f"\n{syscall}: ", 1)[1].split("\n\n", 1)[0]
    return [int(m[3]) for line in block.splitlines()[2:] if (m := ROW.match(line))]


@pytest.mark.parametrize("collector", ["ptrace", "ebpf"])
def test_histogram_counts_equal_the_calls(collector: str, tmp_path: Path) -> None:
    reason = unavailable_reason(collector)
    if reason:
        pytest.skip(f"{collector} collector unavailable here: {reason}")
    saved = tmp_path / "p.json"
    run = subprocess.run(
        [*STPROF, "run", "-c", collector, "--histogram", "--json", str(saved), "--",
         "dd", "if=/dev/zero", "of=/dev/null", "bs=4k", "count=300"],
        capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    profile = json.loads(saved.read_text())
    reads = profile["syscalls"]["read"]
    assert reads["calls"] >= 300
    assert sum(_histogram_counts(run.stderr, "read")) == reads["calls"]
    # the same view from the saved profile
    again = subprocess.run([*STPROF, "report", "--histogram", "-e", "read", str(saved)],
                           capture_output=True, text=True, check=False, timeout=60)
    assert again.returncode == 0, again.stderr
    assert _histogram_counts(again.stdout, "read") == _histogram_counts(run.stderr, "read")
    assert "\nwrite: " not in again.stdout.split("Latency histograms", 1)[1].split(
        "page faults:", 1)[0]
