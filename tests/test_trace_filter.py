"""-e trace=SET filters the tracing itself, on both Linux collectors.

The workload (tests/workloads/trace_mix.c) makes known numbers of getppid,
openat, read and write in two processes.  Each run goes through the CLI;
its counts must equal the truth and the real strace's ``strace -f -c -e
trace=SAME`` for every syscall, and contain nothing outside the set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from collector_guard import unavailable_reason
from workloads import build

from profiler.model import Profile
from profiler.syscall_classes import X86_64_CLASSES

STPROF = [sys.executable, "-m", "stprof"]
RUN_TIMEOUT_S = 120
# per process (the workload forks once: every count is twice these)
GETPPID, OPENAT, READ, WRITE = 60, 25, 40, 30
ARGS = [str(n) for n in (GETPPID, OPENAT, READ, WRITE)]
COLLECTORS = ("ptrace", "ebpf")


def _needs(collector: str) -> None:
    reason = unavailable_reason(collector)
    if reason:
        pytest.skip(f"{collector} collector: {reason}")


def stprof_run(collector: str, spec: str, tmp_path: Path, *extra: str) -> Profile:
    _needs(collector)
    path = tmp_path / f"{collector}.json"
    result = subprocess.run(
        [*STPROF, "run", "-c", collector, "-e", f"trace={spec}", *extra, "--json", str(path),
         "-o", str(tmp_path / "report.txt"), "--", str(build("trace_mix")), *ARGS],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr
    return Profile.load(path)


def strace_counts(spec: str, tmp_path: Path) -> dict[str, int]:
    """What `strace -f -c -e trace=SPEC` counts for the workload, by syscall."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    out = tmp_path / "strace.txt"
    subprocess.run(["strace", "-f", "-c", "-o", str(out), "-e", f"trace={spec}",
                    str(build("trace_mix")), *ARGS],
                   check=True, timeout=RUN_TIMEOUT_S, capture_output=True)
    counts: dict[str, int] = {}
    rows = False
    for line in out.read_text().splitlines():
        if line.startswith("------"):
            rows = not rows
            continue
        fields = line.split()
        if rows and fields:
            counts[fields[-1]] = int(fields[3])
    assert counts, out.read_text()
    return counts


def calls(profile: Profile) -> dict[str, int]:
    return {name: s.calls for name, s in profile.syscalls.items() if s.calls}


@pytest.mark.parametrize("collector", COLLECTORS)
def test_file_class_counts_exactly_the_openat(collector: str, tmp_path: Path) -> None:
    profile = stprof_run(collector, "%file", tmp_path)
    counts = calls(profile)
    assert counts["openat"] == 2 * OPENAT
    assert set(counts) <= X86_64_CLASSES["file"]
    assert not {"getppid", "read", "write", "close"} & set(counts)
    assert counts == strace_counts("%file", tmp_path)
    assert profile.trace_set is not None
    assert profile.trace_set["spec"] == "%file"
    assert set(profile.trace_set["syscalls"]) == X86_64_CLASSES["file"] & set(
        profile.trace_set["syscalls"]) and "openat" in profile.trace_set["syscalls"]
    assert "-e trace=%file" in (tmp_path / "report.txt").read_text()


@pytest.mark.parametrize("collector", COLLECTORS)
def test_all_but_read(collector: str, tmp_path: Path) -> None:
    profile = stprof_run(collector, "!read", tmp_path)
    counts = calls(profile)
    assert "read" not in counts
    assert counts["getppid"] == 2 * GETPPID
    assert counts["openat"] == 2 * OPENAT
    assert counts["write"] == 2 * WRITE
    assert counts["close"] == 2 * OPENAT
    assert counts.pop("exit_group") == 2  # never returns: strace -c leaves it out
    assert counts == strace_counts("!read", tmp_path)


@pytest.mark.parametrize("collector", COLLECTORS)
def test_faults_still_cover_the_whole_command(collector: str, tmp_path: Path) -> None:
    """A set with no call that faults: the faults are the unfiltered run's."""
    filtered = stprof_run(collector, "getppid", tmp_path)
    assert calls(filtered) == {"getppid": 2 * GETPPID}
    whole = stprof_run(collector, "all", tmp_path)
    assert whole.faults.count > 20
    assert abs(filtered.faults.count - whole.faults.count) <= max(5, whole.faults.count // 5)


def test_ebpf_no_budget_probes_only_the_set(tmp_path: Path) -> None:
    profile = stprof_run("ebpf", "getppid,openat", tmp_path, "--no-budget")
    assert calls(profile) == {"getppid": 2 * GETPPID, "openat": 2 * OPENAT}
    assert profile.budget is None
    assert profile.trace_set is not None
    assert "sys_enter_NAME" in profile.trace_set["method"]
    assert profile.timing["syscall_probe"].startswith("the trace set's")
    assert any("--no-budget" in note and "time budget is not measured" in note
               for note in profile.notes)
    faults = profile.faults
    assert faults.count > 20
    assert faults.unknown_context + faults.in_syscall == faults.count
    assert faults.user == 0


@pytest.mark.parametrize("collector", COLLECTORS)
def test_ptrace_and_ebpf_budget_mode_keep_the_budget(collector: str, tmp_path: Path) -> None:
    profile = stprof_run(collector, "openat", tmp_path)
    assert calls(profile) == {"openat": 2 * OPENAT}
    assert (profile.budget is not None) == (collector == "ebpf")


def _stprof(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STPROF, *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)


@pytest.mark.parametrize("spec", ["x", "%nosuchclass", "openat,x"])
def test_unknown_name_or_class_exits_2_before_the_command_runs(spec: str,
                                                                tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = _stprof("run", "-c", "ptrace", "-e", f"trace={spec}", "--", "touch", str(marker))
    bad = spec.split(",")[-1]
    assert result.returncode == 2
    assert result.stderr == f"stprof: unknown syscall or class {bad!r} in -e trace=\n"
    assert not marker.exists()


def test_no_budget_needs_a_trace_set() -> None:
    result = _stprof("run", "--no-budget", "--", "true")
    assert result.returncode == 2
    assert result.stderr.startswith("stprof: --no-budget needs -e trace=SET")


def test_report_refuses_trace_set(tmp_path: Path) -> None:
    result = _stprof("report", "-e", "trace=openat", str(tmp_path / "none.json"))
    assert result.returncode == 2
    assert result.stderr.startswith("stprof: -e trace=SET chooses what stprof run traces")


def test_view_filter_still_traces_everything(tmp_path: Path) -> None:
    _needs("ptrace")
    path = tmp_path / "p.json"
    result = _stprof("run", "-c", "ptrace", "-e", "getppid", "--json", str(path),
                     "-o", str(tmp_path / "r.txt"), "--", str(build("trace_mix")), *ARGS)
    assert result.returncode == 0, result.stderr
    profile = Profile.load(path)
    assert profile.trace_set is None
    assert calls(profile)["read"] == 2 * READ  # in the JSON, all of them
    table = (tmp_path / "r.txt").read_text()
    assert "getppid" in table and "\nread " not in table


def test_ptrace_installs_the_seccomp_filter_and_untraced_calls_do_not_stop(
        tmp_path: Path) -> None:
    _needs("ptrace")
    report = tmp_path / "r.txt"
    shown = subprocess.run(
        [*STPROF, "run", "-c", "ptrace", "-e", "trace=openat", "-o", str(report), "--",
         "grep", "^Seccomp:", "/proc/self/status"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["Seccomp:", "2"]  # SECCOMP_MODE_FILTER
    assert "seccomp-bpf filter" in report.read_text()
    dd = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=100000", "status=none"]
    started = time.monotonic()
    subprocess.run(dd, check=True, timeout=RUN_TIMEOUT_S)
    untraced_s = time.monotonic() - started
    path = tmp_path / "dd.json"
    result = _stprof("run", "-c", "ptrace", "-e", "trace=openat", "--json", str(path),
                     "-o", os.devnull, "--", *dd)
    assert result.returncode == 0, result.stderr
    profile = Profile.load(path)
    assert "read" not in profile.syscalls and profile.syscalls["openat"].calls >= 1
    # 200k calls stopped twice each would take seconds (tens of us a stop)
    assert profile.wall_ns / 1e9 < max(1.0, 5 * untraced_s)


def test_seccomp_program_has_one_block_per_run_of_numbers() -> None:
    from collectors import ptrace_seccomp as sc

    assert sc.ranges([5, 1, 2, 3, 9, 10]) == [(1, 3), (5, 5), (9, 10)]
    program = sc.filter_program([1, 2, 3, 5], sc.AUDIT_ARCH["x86_64"])
    returns = [k for code, _, _, k in program if code == sc.BPF_RET_K]
    assert returns.count(sc.SECCOMP_RET_TRACE) == 2
    assert program[-1] == (sc.BPF_RET_K, 0, 0, sc.SECCOMP_RET_ALLOW)
    assert all(jt <= 2 and jf <= 2 for _, jt, jf, _ in program)
