"""The DTrace collector: availability here, and its orchestration against a fake dtrace.

The real thing needs FreeBSD: that test is marked ``freebsd`` and skipped
elsewhere.  On Linux, tests/fixtures/dtrace/fake_dtrace.py stands in for
dtrace(1): it answers the collector's questions, attaches to nothing, waits
for the target to end and writes a fixture as its output.  That checks what
the collector itself does: the paused start and the release after the ready
line, the exit status from its own wait4, the target's stdout left alone,
the error mapping, and the cleanup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from collectors.base import Options
from collectors.dtrace import DtraceCollector
from profiler.errors import CollectorUnavailable, TracingError
from profiler.model import Profile

FIXTURES = Path(__file__).parent / "fixtures" / "dtrace"
NATIVE = sys.platform.startswith(DtraceCollector.platforms)


@pytest.fixture
def fake_dtrace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``dtrace`` executable running the fake, with its call log set up."""
    wrapper = tmp_path / "dtrace"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FIXTURES / "fake_dtrace.py"}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("FAKE_DTRACE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_DTRACE_OUTPUT", str(FIXTURES / "text-dd.out"))
    monkeypatch.setenv("FAKE_DTRACE_READY_DELAY", "0.3")
    return wrapper


def calls(wrapper: Path) -> list[dict[str, object]]:
    log = wrapper.parent / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def event(wrapper: Path, name: str) -> dict[str, object]:
    [found] = [entry for entry in calls(wrapper) if entry["event"] == name]
    return found


def run(wrapper: Path, **options: Any) -> Profile:
    with DtraceCollector(Options(**options), dtrace_path=str(wrapper)) as collector:
        return collector.run()


def no_children_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


# ---------------------------------------------------------------- here
@pytest.mark.skipif(NATIVE, reason="checks the answer on systems without DTrace")
def test_unavailable_here_with_the_reason() -> None:
    availability = DtraceCollector.availability()
    assert not availability.ok
    assert "FreeBSD/illumos/macOS" in availability.reason or "not a supported dtrace" in \
        availability.reason
    methods = DtraceCollector.methods()
    assert [m.what for m in methods][:2] == ["syscalls", "trap time"]
    assert all(not m.availability.ok for m in methods)


def test_the_collector_modules_import_nothing_linux_only() -> None:
    code = ("import sys, collectors.dtrace, collectors.dtrace_output, collectors.dtrace_program;"
            "print(sorted(m for m in ('ptrace', 'bcc', 'collectors.ptracer', 'collectors.ebpf',"
            " 'collectors.linux_syscalls') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------- run a command
def test_a_run_releases_after_ready_and_keeps_the_exit_status(
        fake_dtrace: Path, capfd: pytest.CaptureFixture[str]) -> None:
    profile = run(fake_dtrace, command=["sh", "-c", "echo to-stdout; echo to-stderr >&2; "
                                           "exit 3"])
    assert profile.exit_status == 3
    out, err = capfd.readouterr()
    assert out == "to-stdout\n" and "to-stderr" in err
    ready = event(fake_dtrace, "ready")
    if Path("/proc/self/cmdline").exists():
        # Not yet released when dtrace was ready: the paused child is still the
        # gate program (profiler/gate_program.py) or, where it cannot run, a
        # fork of this process.
        ours = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        target = str(ready["target"])
        assert target.startswith("stprof-gate ") or target == ours, target
    argv = ready["argv"]
    assert isinstance(argv, list)
    assert argv[:1] == ["-q"] and "-p" in argv and "-o" in argv and "-c" not in argv
    assert profile.syscalls["read"].calls == 2
    assert profile.wall_ns > 0 and profile.collector == "dtrace"
    assert profile.notes == []


def test_a_target_killed_by_a_signal_gives_128_plus_n(fake_dtrace: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DTRACE_OUTPUT", str(FIXTURES / "text-killed.out"))
    monkeypatch.setenv("FAKE_DTRACE_STDERR", str(FIXTURES / "text-killed.stderr"))
    profile = run(fake_dtrace, command=["sh", "-c", "kill -9 $$"])
    assert profile.exit_status == 137
    assert profile.total_calls == 4


def test_the_program_compiled_is_the_one_run(fake_dtrace: Path) -> None:
    run(fake_dtrace, command=["true"], follow=False, kernel_stacks="all", stack_frequency_hz=97)
    compiled = event(fake_dtrace, "compiled")["program"]
    assert compiled == event(fake_dtrace, "ready")["program"]
    assert isinstance(compiled, str)
    assert "profile-97" in compiled and "progenyof" not in compiled
    assert "stprof:sc_calls" in compiled  # text mode: this fake has no oformat


def test_json_mode_when_dtrace_accepts_it(fake_dtrace: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DTRACE_JSON", "1")
    monkeypatch.setenv("FAKE_DTRACE_OUTPUT", str(FIXTURES / "json-dd.json"))
    profile = run(fake_dtrace, command=["true"])
    ready = event(fake_dtrace, "ready")
    assert "oformat=json" in str(ready["argv"])
    assert "printa(@sc_calls);" in str(ready["program"])
    assert profile.timing["dtrace_output"] == "json"
    assert profile.total_syscall_ns == 397310780
    assert profile.exit_status == 0 and profile.notes == []


def test_drops_on_stderr_reach_the_notes(fake_dtrace: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DTRACE_OUTPUT", str(FIXTURES / "text-drops.out"))
    monkeypatch.setenv("FAKE_DTRACE_STDERR", str(FIXTURES / "text-drops.stderr"))
    profile = run(fake_dtrace, command=["true"])
    notes = profile.notes
    assert notes[0] == "dtrace: 15 drops on CPU 0, 1 (principal buffer full; records were lost)"
    assert "dtrace: buffer size lowered to 2m" in notes


def test_missing_probes_degrade_with_notes(fake_dtrace: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DTRACE_MISSING", "fbt::trap:entry,fbt::vm_fault_trap:entry")
    profile = run(fake_dtrace, command=["true"], kernel_stacks="off")
    program = str(event(fake_dtrace, "compiled")["program"])
    assert "fbt::trap" not in program and "fbt::vm_fault:entry" in program
    assert "no fbt::trap:entry probe here: trap time not measured" in profile.notes
    assert "traps_user" not in profile.timing


def test_each_run_starts_from_zero(fake_dtrace: Path) -> None:
    collector = DtraceCollector(Options(command=["true"]), dtrace_path=str(fake_dtrace))
    with collector:
        first, second = collector.run(), collector.run()
    assert first.syscalls["read"].calls == second.syscalls["read"].calls == 2
    assert len([c for c in calls(fake_dtrace) if c["event"] == "compiled"]) == 1


# ------------------------------------------------------------- attach
def test_attach_traces_until_the_process_ends(fake_dtrace: Path) -> None:
    process = subprocess.Popen(["sleep", "1"])
    try:
        started = time.monotonic()
        profile = run(fake_dtrace, attach_pid=process.pid)
    finally:
        process.wait()
    assert profile.exit_status is None
    assert profile.attached_pid == process.pid
    assert profile.command == []
    assert time.monotonic() - started >= 0.6
    assert "stprof_started = 1;" in str(event(fake_dtrace, "ready")["program"])


# ------------------------------------------------------------- errors
@pytest.mark.parametrize(("message", "fix"), [
    ("failed to initialize dtrace: DTrace requires additional privileges", "root"),
    ("failed to initialize dtrace: DTrace device not available on system", "kldload dtraceall"),
    ("invalid probe specifier syscall::read:entry: probe description syscall::read:entry "
     "does not match any probes", "kldload dtraceall"),
])
def test_dtrace_refusals_are_one_line_errors_with_a_fix(
        fake_dtrace: Path, monkeypatch: pytest.MonkeyPatch, message: str, fix: str) -> None:
    monkeypatch.setenv("FAKE_DTRACE_FAIL", message)
    with pytest.raises(CollectorUnavailable) as caught:
        DtraceCollector(Options(command=["true"]), dtrace_path=str(fake_dtrace)).prepare()
    assert fix in caught.value.fix and "\n" not in caught.value.one_line()


def test_dtrace_failing_at_start_leaves_no_process_behind(
        fake_dtrace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DTRACE_RUN_FAIL", "failed to grab pid 1234: No such process")
    with pytest.raises(TracingError, match="failed to grab pid"):
        run(fake_dtrace, command=["sleep", "30"])
    assert no_children_left()


def test_a_missing_dtrace_is_unavailable(tmp_path: Path) -> None:
    collector = DtraceCollector(Options(command=["true"]), dtrace_path=str(tmp_path / "none"))
    with pytest.raises(CollectorUnavailable):
        collector.prepare()


def test_a_missing_command_is_127(fake_dtrace: Path) -> None:
    from profiler.errors import CommandNotFound

    with pytest.raises(CommandNotFound):
        run(fake_dtrace, command=["no-such-command-stprof"])


# ------------------------------------------------------------- FreeBSD
@pytest.mark.freebsd
@pytest.mark.root
@pytest.mark.skipif(not NATIVE or os.geteuid() != 0,
                    reason="needs FreeBSD (or illumos/macOS) with DTrace, as root")
def test_real_run_of_dd(tmp_path: Path) -> None:
    if not DtraceCollector.availability().ok:
        pytest.skip(DtraceCollector.availability().reason)
    saved = tmp_path / "dd.json"
    result = subprocess.run(
        [sys.executable, "-m", "stprof", "run", "--collector", "dtrace", "--json", str(saved),
         "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=1m", "count=10"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(saved.read_text())
    assert data["collector"] == "dtrace" and data["exit_status"] == 0
    assert data["syscalls"]["read"]["calls"] >= 10 and data["syscalls"]["write"]["calls"] >= 10
    assert data["faults"]["count"] > 0 and data["faults"]["total_ns"] > 0
