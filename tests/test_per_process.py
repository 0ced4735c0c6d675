"""--per-process (-P) and --per-thread: each task's own syscalls, both collectors.

`sh -c 'cat /etc/hostname; ls /'` makes three processes; each one's counts
must equal what the real strace -f counts for that pid (strace -ff writes
one file per pid), and the tables must add up to the main table.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from workloads import build

from profiler.model import Profile, TaskSyscalls

STPROF = [sys.executable, "-m", "stprof"]
TIMEOUT_S = 90
SCRIPT = "cat /etc/hostname; ls /"
# a syscall line of strace -ff output: "name(" at the start ("--- SIG", "+++" are not)
THREADS, CALLS = 4, 500  # thread_storm's arguments
CALL_LINE = re.compile(r"^([a-z0-9_]+)\(")



def strace_counts(tmp_path: Path) -> dict[str, dict[str, int]]:
    """comm of each pid's last execve -> name -> calls, as strace -f -ff counts them."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    prefix = tmp_path / "strace"
    subprocess.run(["strace", "-f", "-ff", "-qq", "-o", str(prefix), "sh", "-c", SCRIPT],
                   capture_output=True, check=True, timeout=TIMEOUT_S)
    by_program: dict[str, dict[str, int]] = {}
    for path in tmp_path.glob("strace.*"):
        counts: dict[str, int] = {}
        program = ""
        for line in path.read_text().splitlines():
            match = CALL_LINE.match(line)
            if not match:
                continue
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
            exec_match = re.match(r'execve\("([^"]+)"', line)
            if exec_match and " = 0" in line:
                program = Path(exec_match.group(1)).name
        by_program[program or "sh"] = counts
    return by_program


def calls_of(task: TaskSyscalls) -> dict[str, int]:
    return {name: c["calls"] for name, c in task.syscalls.items()}


def run_stprof(collector: str, tmp_path: Path, *options: str) -> tuple[Profile, str]:
    json_path = tmp_path / f"{collector}.json"
    result = subprocess.run(
        [*STPROF, "run", "-c", collector, *options, "--json", str(json_path),
         "--", "sh", "-c", SCRIPT],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr
    return Profile.load(json_path), result.stderr


def assert_tables_add_up(profile: Profile, tasks: list[TaskSyscalls]) -> None:
    sums: dict[str, list[int]] = {}
    for task in tasks:
        for name, c in task.syscalls.items():
            row = sums.setdefault(name, [0, 0, 0])
            row[0] += c["calls"]
            row[1] += c["errors"]
            row[2] += c["total_ns"]
    assert sums == {name: [s.calls, s.errors, s.total_ns]
                    for name, s in profile.syscalls.items() if s.calls}


def test_per_process_counts_equal_strace_per_pid(collector: str, tmp_path: Path) -> None:
    truth = strace_counts(tmp_path)
    profile, report = run_stprof(collector, tmp_path, "-P")
    assert profile.per_process is not None and profile.per_thread is None
    assert len(profile.per_process) == 3
    by_comm = {task.comm: task for task in profile.per_process}
    assert set(by_comm) == {"sh", "cat", "ls"}, by_comm.keys()
    for comm, task in by_comm.items():
        assert task.tid == task.pid
        assert calls_of(task) == truth[comm], comm
        assert f"Process pid {task.pid} {comm}:" in report
    assert_tables_add_up(profile, profile.per_process)
    pids = {p.pid: p.syscalls for p in profile.processes}
    for task in profile.per_process:
        assert sum(calls_of(task).values()) == pids[task.pid]


def test_per_process_tables_are_capped_and_sorted(collector: str, tmp_path: Path) -> None:
    profile, report = run_stprof(collector, tmp_path, "-P", "--top", "2", "-S", "calls")
    assert profile.per_process is not None
    for task in profile.per_process:
        block = report.split(f"Process pid {task.pid} {task.comm}:", 1)[1].split("\n\n", 1)[0]
        rows = [line.split()[0] for line in block.splitlines()[3:]
                if line and not line.startswith("(")]
        expected = sorted(task.syscalls.items(), key=lambda item: (-item[1]["calls"], item[0]))
        assert rows == [name for name, _ in expected[:2]], block
        assert "more syscalls not shown; --top" in block


def test_per_thread_splits_a_threaded_process(collector: str, tmp_path: Path) -> None:
    json_path = tmp_path / "threads.json"
    result = subprocess.run(
        [*STPROF, "run", "-c", collector, "--per-thread", "-P", "--json", str(json_path),
         "-o", str(tmp_path / "report.txt"),
         "--", str(build("thread_storm")), str(THREADS), str(CALLS)],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr
    profile = Profile.load(json_path)
    assert profile.per_thread is not None and profile.per_process is not None
    assert len(profile.per_thread) == THREADS + 1
    workers = [t for t in profile.per_thread if t.tid != t.pid]
    assert len(workers) == THREADS
    assert all(t.syscalls["getppid"]["calls"] == CALLS for t in workers)
    assert {t.comm for t in profile.per_thread} == {"thread_storm"}
    main = next(t for t in profile.per_thread if t.tid == t.pid)
    assert "getppid" not in main.syscalls
    assert {t.pid for t in profile.per_thread} == {t.pid for t in profile.per_process}
    assert_tables_add_up(profile, profile.per_thread)
    assert_tables_add_up(profile, profile.per_process)
    assert "Thread tid " in (tmp_path / "report.txt").read_text()


def test_without_the_options_there_are_no_tables(collector: str, tmp_path: Path) -> None:
    profile, report = run_stprof(collector, tmp_path)
    assert profile.per_process is None and profile.per_thread is None
    assert "Process pid " not in report
