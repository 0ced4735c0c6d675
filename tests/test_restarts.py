"""Syscalls a signal interrupts: counted as the program called them, restarts apart.

The workload (tests/workloads/restarts.c) prints its own tally of the calls
it made ("NAME CALLS EINTR"); each collector must count exactly those calls,
whatever the kernel restarted underneath (ERESTARTNOINTR for fork,
ERESTARTSYS for read with SA_RESTART, ERESTART_RESTARTBLOCK resumed through
restart_syscall), and report the re-entries in ``restarts``.  Runs through
the CLI, so the JSON and the text report are checked as a user gets them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from collector_guard import unavailable_reason
from workloads import build

from collectors.base import Options
from collectors.ptracer import PtraceCollector
from profiler.model import Profile, SyscallStats
from reports.text import TextRenderer

STPROF = [sys.executable, "-m", "stprof"]
FORKS = 500
# "ptrace-python": the ptrace collector with its Python loop instead of the
# compiled one (STPROF_PTRACE_LOOP=python): both must count restarts alike
COLLECTORS = ("ptrace", "ptrace-python", "ebpf")


def cli_and_env(collector: str) -> tuple[str, dict[str, str]]:
    """The -c value and the environment of a run of ``collector``."""
    env = dict(os.environ)
    env.pop("STPROF_PTRACE_LOOP", None)
    if collector == "ptrace-python":
        env["STPROF_PTRACE_LOOP"] = "python"
        return "ptrace", env
    return collector, env
RUN_TIMEOUT_S = 90


def _needs(collector: str) -> None:
    reason = unavailable_reason(cli_and_env(collector)[0])
    if reason:
        pytest.skip(f"{collector} collector: {reason}")


Tally = dict[str, tuple[int, int]]


def trace(collector: str, args: list[str], tmp_path: Path) -> tuple[Profile, Tally, str]:
    """The profile, the program's own tally and the text report of one run."""
    _needs(collector)
    profile_path, report_path = tmp_path / f"{collector}.json", tmp_path / f"{collector}.txt"
    name, env = cli_and_env(collector)
    result = subprocess.run(
        [*STPROF, "run", "-c", name, "--json", str(profile_path), "-o", str(report_path),
         "--", str(build("restarts")), *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False, env=env)
    assert result.returncode == 0, result.stderr
    tally = {}
    for line in result.stdout.splitlines():
        name, calls, eintr = line.split()
        tally[name] = (int(calls), int(eintr))
    return Profile.load(profile_path), tally, report_path.read_text()


def stats(profile: Profile, name: str) -> SyscallStats:
    return profile.syscalls.get(name) or SyscallStats()


def eintr(profile: Profile, name: str) -> int:
    return stats(profile, name).errnos.get("EINTR", 0)


def assert_no_restart_codes(profile: Profile) -> None:
    """No attempt is counted as a call failing with a restart code."""
    for name, s in profile.syscalls.items():
        assert not {e for e in s.errnos if e.startswith("ERESTART")}, (name, s.errnos)
    assert stats(profile, "restart_syscall").calls == 0
    assert stats(profile, "rt_sigreturn").errors == 0


def assert_restart_note(profile: Profile, report: str) -> None:
    restarted = [name for name, s in profile.syscalls.items() if s.restarts]
    if restarted:
        line = next(line for line in report.splitlines() if line.startswith("restarted"))
        assert all(f"{name} x" in line for name in restarted), line
    else:
        assert "restarted by the kernel" not in report


# ------------------------------------------------------------------- fork
@pytest.mark.parametrize("collector", COLLECTORS)
@pytest.mark.parametrize("mode", ["dfl", "handler", "restart"])
def test_each_fork_is_one_clone_call(collector: str, mode: str, tmp_path: Path) -> None:
    profile, tally, report = trace(collector, ["fork", str(FORKS), mode], tmp_path)
    assert tally["clone"] == (FORKS, 0)
    clone = stats(profile, "clone")
    assert clone.calls == FORKS
    assert clone.errors == 0
    assert sum(clone.hist) == FORKS
    assert stats(profile, "wait4").calls == tally["wait4"][0]
    assert eintr(profile, "wait4") == tally["wait4"][1]
    root = next(p for p in profile.processes if p.ppid not in {q.pid for q in profile.processes})
    assert root.syscalls >= FORKS
    if collector.startswith("ptrace") and mode == "dfl":
        # the case: traced, a SIG_DFL SIGCHLD still interrupts fork
        assert clone.restarts > 0
    if collector == "ebpf" and mode == "dfl":
        # untraced, the kernel discards a SIG_DFL SIGCHLD: nothing interrupts
        assert clone.restarts == 0
    assert_no_restart_codes(profile)
    assert_restart_note(profile, report)


def test_both_collectors_agree_on_fork_calls(tmp_path: Path) -> None:
    counted = {}
    for collector in COLLECTORS:
        profile, tally, _ = trace(collector, ["fork", str(FORKS), "handler"], tmp_path)
        counted[collector] = (stats(profile, "clone").calls,
                              stats(profile, "wait4").calls - tally["wait4"][0])
    assert counted == {collector: (FORKS, 0) for collector in COLLECTORS}


# ------------------------------------------------------------------- read
@pytest.mark.parametrize("collector", COLLECTORS)
def test_read_restarted_for_an_sa_restart_handler_is_one_call(collector: str,
                                                              tmp_path: Path) -> None:
    profile, tally, report = trace(collector, ["read", "restart"], tmp_path)
    assert tally["read"] == (1, 0)
    read = stats(profile, "read")
    assert (read.calls, read.errors, read.restarts) == (1, 0, 1)
    # its time is both attempts': from the read to the write 300 ms later
    assert read.total_ns >= 250_000_000
    assert stats(profile, "rt_sigreturn").calls == 1
    assert_no_restart_codes(profile)
    assert_restart_note(profile, report)
    assert "read x1" in report


@pytest.mark.parametrize("collector", COLLECTORS)
def test_read_interrupted_for_a_plain_handler_fails_with_eintr(collector: str,
                                                               tmp_path: Path) -> None:
    profile, tally, report = trace(collector, ["read", "handler"], tmp_path)
    assert tally["read"] == (2, 1)
    read = stats(profile, "read")
    assert (read.calls, read.errors, read.restarts) == (2, 1, 0)
    assert read.errnos == {"EINTR": 1}
    assert_no_restart_codes(profile)
    assert_restart_note(profile, report)


# ------------------------------------------------------------------ sleeps
@pytest.mark.parametrize("collector", COLLECTORS)
def test_sleep_resumed_by_restart_syscall_counts_as_the_sleep(collector: str,
                                                              tmp_path: Path) -> None:
    profile, tally, report = trace(collector, ["sleep", "stop"], tmp_path)
    assert tally["nanosleep"] == (1, 0)
    sleeps = stats(profile, "clock_nanosleep")
    # the stopped parent's one call, and the child's two 30 ms sleeps
    assert (sleeps.calls, sleeps.errors) == (1 + 2, 0)
    assert sleeps.restarts >= 1
    assert_no_restart_codes(profile)
    assert_restart_note(profile, report)


@pytest.mark.parametrize("collector", COLLECTORS)
def test_nanosleep_interrupted_for_an_sa_restart_handler_fails_with_eintr(
        collector: str, tmp_path: Path) -> None:
    """nanosleep is never restarted for a handler, SA_RESTART or not."""
    profile, tally, report = trace(collector, ["sleep", "handler"], tmp_path)
    assert tally["nanosleep"] == (2, 1)
    sleeps = stats(profile, "clock_nanosleep")
    assert (sleeps.calls, sleeps.errors, sleeps.restarts) == (2, 1, 0)
    assert sleeps.errnos == {"EINTR": 1}
    assert sleeps.total_ns >= 250_000_000
    assert_no_restart_codes(profile)
    assert_restart_note(profile, report)


# ------------------------------------------------------------------- model
def test_restarts_default_to_zero_in_older_profiles() -> None:
    older = Profile(command=["true"]).to_dict()
    older["syscalls"] = {"read": {"calls": 3, "errors": 0, "total_ns": 30}}
    loaded = Profile.from_json(json.dumps(older))
    assert loaded.syscalls["read"].restarts == 0
    assert loaded.syscalls["read"].calls == 3


def test_restarts_are_saved_loaded_and_merged() -> None:
    profile = Profile(command=["true"])
    profile.syscalls["clone"] = SyscallStats(calls=5, restarts=2)
    loaded = Profile.from_json(profile.to_json())
    assert loaded.syscalls["clone"].restarts == 2
    merged = SyscallStats(calls=1, restarts=1)
    merged.merge(loaded.syscalls["clone"])
    assert (merged.calls, merged.restarts) == (6, 3)


def test_text_report_notes_restarts_only_when_some() -> None:
    profile = Profile(command=["true"])
    profile.syscalls["clone"] = SyscallStats(calls=500, total_ns=10, restarts=12)
    profile.syscalls["read"] = SyscallStats(calls=2, total_ns=5, restarts=1)
    text = TextRenderer().render(profile)
    assert ("restarted by the kernel after a signal: clone x12, read x1 (each call "
            "counted once, with the time of all its attempts)") in text
    profile.syscalls["clone"].restarts = profile.syscalls["read"].restarts = 0
    assert "restarted" not in TextRenderer().render(profile)


# ------------------------------------------- ptrace's portable stop method
@pytest.mark.parametrize("args, name, expected", [
    (["read", "restart"], "read", (1, 0, 1)),
    (["read", "handler"], "read", (2, 1, 0)),
    (["fork", "200", "dfl"], "clone", (200, 0, None)),
])
def test_ptrace_get_syscall_info_method_counts_alike(
        args: list[str], name: str, expected: tuple[int, int, int | None],
        capfd: pytest.CaptureFixture[str]) -> None:
    """PTRACE_GET_SYSCALL_INFO at every stop (where registers cannot tell)."""
    _needs("ptrace")
    collector = PtraceCollector(Options(command=[str(build("restarts")), *args]))
    collector.entry_info = True
    profile = collector.run()
    assert profile.timing["stops"] == "PTRACE_GET_SYSCALL_INFO at entry and exit"
    assert profile.exit_status == 0
    calls, eintr_count = next((int(line.split()[1]), int(line.split()[2]))
                              for line in capfd.readouterr().out.splitlines()
                              if line.startswith(f"{name} "))
    s = stats(profile, name)
    assert (s.calls, s.errors) == (calls, eintr_count) == expected[:2]
    if expected[2] is not None:
        assert s.restarts == expected[2]
    assert_no_restart_codes(profile)


# ------------------------------------------------------------------ timeline
@pytest.mark.parametrize("collector", COLLECTORS)
@pytest.mark.parametrize("args", [["read", "restart"], ["read", "handler"], ["sleep", "stop"],
                                  ["fork", "200", "handler"]])
def test_timeline_has_one_slice_per_counted_call_across_restarts(
        collector: str, args: list[str], tmp_path: Path) -> None:
    """A restarted call is one call and one slice; an EINTR attempt is one of each."""
    _needs(collector)
    profile_path, timeline_path = tmp_path / "p.json", tmp_path / "t.json"
    name, env = cli_and_env(collector)
    result = subprocess.run(
        [*STPROF, "run", "-c", name, "--json", str(profile_path), "-o", str(tmp_path / "r"),
         "--timeline", str(timeline_path), "--", str(build("restarts")), *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False, env=env)
    assert result.returncode == 0, result.stderr
    profile = Profile.load(profile_path)
    slices: dict[str, int] = {}
    for event in json.loads(timeline_path.read_text())["traceEvents"]:
        if event["ph"] == "X" and event["cat"] not in ("fault", "irq", "softirq"):
            slices[event["name"]] = slices.get(event["name"], 0) + 1
    assert slices == {name: s.calls for name, s in profile.syscalls.items() if s.calls}
