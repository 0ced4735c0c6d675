"""The ptrace collector's compiled loop (collectors/ptrace_fast.c) and --pin.

The loop's exactness is tested where every other ptrace test runs it (they
use the compiled loop by default, and tests/test_ptrace.py's ground truth runs
under both loops); here: that `make setup` built it, its thread table, and
stprof run --pin.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import pytest

from collectors import ptrace_fast
from collectors.ptrace_loop import OUTSIDE, Tracer

STPROF = [sys.executable, "-m", "stprof"]
x86_64_only = pytest.mark.skipif(platform.machine() != "x86_64",
                                 reason="the compiled loop reads x86-64 registers")


@x86_64_only
def test_make_setup_built_the_compiled_loop() -> None:
    assert os.environ.get("STPROF_PTRACE_LOOP") != "python"
    assert ptrace_fast.unavailable_reason() is None
    tracer = Tracer()
    assert tracer.fast is not None
    assert tracer.loop_kind.startswith("compiled")
    tracer.close()


@x86_64_only
def test_the_python_loop_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STPROF_PTRACE_LOOP", "python")
    tracer = Tracer()
    assert tracer.fast is None
    assert tracer.loop_kind == "Python (STPROF_PTRACE_LOOP=python asks for the Python loop)"


@x86_64_only
def test_thread_table_keeps_every_state_through_growth_and_removals() -> None:
    """Open addressing with removals by shifting: many tids that share home slots
    (multiples of the table size), grown well past its first 64 slots."""
    fast = ptrace_fast.FastPath(cont_exit=24)
    rng = random.Random(7)
    tids = [64 * k + 1 for k in range(1, 400)] + rng.sample(range(2, 4_000_000), 600)
    truth: dict[int, list[int]] = {}
    for tid in tids:
        truth[tid] = [rng.randrange(-1, 500), rng.randrange(1 << 40)]
    fast.put_states(truth)
    removed = rng.sample(tids, 500)
    for tid in removed:
        fast.remove(tid)
        del truth[tid]
    for tid in removed[:100]:  # back again, with a new state
        truth[tid] = [OUTSIDE, tid]
        fast.set(tid, truth[tid])
    seen = {tid: [0, 0] for tid in tids}
    fast.get_states(seen)
    one = [0, 0]
    fast.get_state(removed[0], one)
    assert one == [OUTSIDE, removed[0]]
    assert {tid: state for tid, state in seen.items() if state != [0, 0]} == truth
    assert fast.loop.used == len(truth)
    fast.close()
    fast.close()  # twice is harmless


def test_pin_puts_the_command_on_one_cpu(tmp_path: Path) -> None:
    cpu = max(os.sched_getaffinity(0))
    json_path = tmp_path / "pin.json"
    result = subprocess.run(
        [*STPROF, "run", "-c", "ptrace", "--pin", str(cpu), "--json", str(json_path), "--",
         "sh", "-c", "grep Cpus_allowed_list /proc/self/status; exit 5"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 5, result.stderr
    assert result.stdout.split() == ["Cpus_allowed_list:", str(cpu)]
    profile = json.loads(json_path.read_text())
    assert any(f"--pin: stprof and the command ran on CPU {cpu}" in note
               for note in profile["notes"])
    assert profile["syscalls"]["execve"]["calls"] == 2  # sh, then grep


@pytest.mark.parametrize("args, message", [
    (["-c", "ptrace", "--pin", "-p", "1"], "--pin needs a command"),
    (["-c", "ptrace", "--pin", "100000", "--", "true"], "--pin 100000: stprof may run only"),
    (["-c", "ptrace", "--pin", "x", "--", "true"], "not a CPU number"),
    (["-c", "ptrace", "--pin", "-1", "--", "true"], "not a CPU number"),
])
def test_bad_pin_is_a_one_line_usage_error(args: list[str], message: str) -> None:
    result = subprocess.run([*STPROF, "run", *args], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_pin_is_refused_by_a_collector_that_does_not_stop_the_command() -> None:
    from collectors import collector_class

    if not collector_class("ebpf").availability().ok:
        pytest.skip(f"ebpf: {collector_class('ebpf').availability().reason}")
    result = subprocess.run([*STPROF, "run", "-c", "ebpf", "--pin", "--", "true"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "--pin: only the ptrace collector pins" in result.stderr


def test_pinned_counts_are_exact(groundtruth: Path) -> None:
    """The ground truth of tests/test_ptrace.py under --pin, and stprof's CPUs given back."""
    from collectors.base import Options
    from collectors.ptracer import PtraceCollector

    before = os.sched_getaffinity(0)
    cpu = min(before)
    command = [str(groundtruth), "37", "5", "11", "13", "300", "3"]
    collector = PtraceCollector(Options(command=command, pin_cpu=cpu))
    with collector:
        assert os.sched_getaffinity(0) == {cpu}
        profile = collector.run()
    assert os.sched_getaffinity(0) == before
    assert profile.syscalls["getppid"].calls == 37 + 11 + 13
    assert profile.syscalls["chdir"].errnos == {"ENOENT": 5}
    assert profile.exit_status == 3
