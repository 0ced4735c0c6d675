"""The command line as a person and a CI job use it: real commands, real exits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from collector_guard import unavailable_reason

from collectors.syscall_names import syscall_table
from profiler.target import PF_KTHREAD, proc_state_and_flags

STPROF = [sys.executable, "-m", "stprof"]



def stprof(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 120)
    return subprocess.run([*STPROF, *args], text=True, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize("args", [["--bogus"], ["run", "--bogus"], ["report"],
                                  ["run", "--top", "zero", "--", "true"],
                                  ["run", "--collector", "nope", "--", "true"], [],
                                  pytest.param(["run", "-e", "read,nosuchsyscall", "--", "true"],
                                               marks=pytest.mark.skipif(
                                                   not syscall_table(),
                                                   reason="no syscall table for this machine"),
                                               id="unknown-syscall")])
def test_usage_errors_are_one_line_and_exit_2(args: list[str]) -> None:
    result = stprof(*args)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("stprof"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["no-such-command-stprof"], ["/nonexistent/bin/x"]])
def test_missing_command_exits_127(command: list[str]) -> None:
    result = stprof("run", "--", *command)
    assert result.returncode == 127
    assert error_lines(result) == [f"stprof: {command[0]}: command not found"]


def test_not_executable_exits_126(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    result = stprof("run", "--", str(script))
    assert result.returncode == 126
    assert len(error_lines(result)) == 1


@pytest.mark.parametrize("option", ["-o", "--json", "--stacks"])
@pytest.mark.parametrize("where", ["a directory", "a missing directory"])
def test_unwritable_outputs_are_refused_before_the_command_runs(tmp_path: Path, option: str,
                                                                where: str) -> None:
    path = tmp_path if where == "a directory" else tmp_path / "missing" / "out"
    marker = tmp_path / "ran"
    result = stprof("run", "--collector", "ptrace", option, str(path), "--",
                    "touch", str(marker))
    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [
        f"stprof: {path}: cannot write "
        f"({'Is a directory' if where == 'a directory' else 'No such file or directory'})"]
    assert not marker.exists()


def _kernel_thread() -> int | None:
    """A kernel thread's pid, if any is visible (none inside a pid namespace)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            state_and_flags = proc_state_and_flags(int(entry.name))
            if state_and_flags and state_and_flags[1] & PF_KTHREAD:
                return int(entry.name)
    return None


def _wait_for_zombie(pid: int) -> None:
    deadline = time.monotonic() + 30
    while (proc_state_and_flags(pid) or ("?", 0))[0] != "Z":
        assert time.monotonic() < deadline, f"process {pid} did not become a zombie in 30 s"
        time.sleep(0.01)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_attach_refuses_kernel_threads_and_zombies(collector: str) -> None:
    kthread = _kernel_thread()
    zombie = subprocess.Popen(["true"])  # not reaped until wait() below
    try:
        _wait_for_zombie(zombie.pid)
        cases = [(zombie.pid, "a zombie")]
        if kthread is not None:
            cases.append((kthread, "a kernel thread"))
        for pid, what in cases:
            result = stprof("run", "--collector", collector, "-p", str(pid), timeout=30)
            assert result.returncode == 2, result.stderr
            lines = error_lines(result)
            assert len(lines) == 1 and lines[0].startswith(f"stprof: -p {pid}: {what}"), lines
    finally:
        zombie.wait()


LEADER_GONE = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(1.5,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_attach_takes_a_process_whose_main_thread_has_exited(collector: str) -> None:
    """/proc shows it as a zombie, but its other thread runs: eBPF traces it;
    ptrace, which cannot seize a zombie thread, says so and what to use."""
    process = subprocess.Popen([sys.executable, "-c", LEADER_GONE])
    try:
        _wait_for_zombie(process.pid)
        result = stprof("run", "--collector", collector, "-p", str(process.pid), "-o",
                        os.devnull, timeout=60)
        if collector == "ptrace":
            assert result.returncode == 125
            assert error_lines(result) == [
                f"stprof: cannot attach to pid {process.pid}: its main thread has exited "
                "while other threads run (the ebpf collector can: -c ebpf)"]
        else:
            assert result.returncode == 0, result.stderr
            assert "zombie" not in result.stderr
    finally:
        process.kill()
        process.wait()


def test_no_command_is_usage_error() -> None:
    result = stprof("run", "--collector", "ptrace")
    assert result.returncode == 2
    assert "no command given" in result.stderr


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ('{"schema": "stprof/9"}', "unsupported schema"),
    ('{"schema": "stprof/1"}', "malformed"),
])
def test_report_refuses_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = stprof("report", str(path))
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run stprof as another user")
def test_ebpf_as_non_root_says_so_and_exits_125() -> None:
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *STPROF, "run",
         "--collector", "ebpf", "--", "true"],
        capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 125, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "root" in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run stprof as another user")
def test_auto_falls_back_to_ptrace_with_one_line_reason_when_not_root() -> None:
    shared = Path(tempfile.mkdtemp(prefix="stprof-test-"))  # reachable by nobody, unlike tmp_path
    shared.chmod(0o777)
    saved = shared / "p.json"
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *STPROF, "run",
         "--json", str(saved), "-o", "/dev/null", "--", "true"],
        capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(saved.read_text())["collector"] == "ptrace"
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("stprof: ebpf collector unavailable: ")
    assert lines[0].endswith("; using ptrace")
    shutil.rmtree(shared)


def test_doctor_says_which_collectors_work() -> None:
    result = stprof("doctor")
    assert result.returncode == 0
    for name in ("ebpf", "ptrace", "dtrace"):
        assert name in result.stdout
    assert "--collector auto uses:" in result.stdout


def test_doctor_timing_times_each_phase_of_a_run() -> None:
    reason = unavailable_reason("ebpf")
    if reason:
        pytest.skip(f"ebpf collector unavailable here: {reason}")
    result = stprof("doctor", "--timing")
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("Timing of a run of `true`", 1)[1]
    rows = {line.rsplit(None, 1)[0].strip(): int(line.rsplit(None, 1)[1])
            for line in table.splitlines()[3:] if line.strip()}
    for name in ("plan", "import bcc", "compile", "load (verifier)", "attach",
                 "run (command) and read", "teardown", "report", "total (after start-up)"):
        assert name in rows, (name, table)
    parts = sum(ms for name, ms in rows.items() if not name.startswith(("total", "start-up")))
    assert rows["compile"] > 0 and parts <= rows["total (after start-up)"] + len(rows)


def test_verbose_says_each_phase_on_stderr(collector: str) -> None:
    result = stprof("run", "-v", "--collector", collector, "-o", os.devnull, "--",
                    "sh", "-c", "exit 3")
    assert result.returncode == 3
    said = [line.split(": ")[2] for line in result.stderr.splitlines()
            if line.startswith("stprof: timing: ")]
    assert said[0] == "start-up (python, imports, arguments)"
    assert said[-2:] == ["report", "total (since exec)"]
    assert said.index("checks (options, collector choice)") < said.index("run (command) and read")
    if collector == "ebpf":
        assert (said.index("compile") < said.index("load (verifier)") < said.index("attach")
                < said.index("run (command) and read") < said.index("teardown"))


# --------------------------------------------------- the command's streams
def test_stdio_untouched_and_report_on_stderr(collector: str) -> None:
    result = stprof("run", "--collector", collector, "--", "sh", "-c",
                    "cat; echo to-stderr >&2", input="hello\nworld\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nworld\n"
    assert result.stderr.startswith("to-stderr\n") or "to-stderr\n" in result.stderr
    assert "syscall" in result.stderr and "read" in result.stderr


@pytest.mark.parametrize("script,status", [("exit 7", 7), ("kill -TERM $$", 128 + 15),
                                           ("kill -KILL $$", 128 + 9)])
def test_exit_status_is_the_commands(collector: str, script: str, status: int) -> None:
    result = stprof("run", "--collector", collector, "-o", os.devnull, "--", "sh", "-c", script)
    assert result.returncode == status, result.stderr


def test_report_to_file_and_json_round_trip(collector: str, tmp_path: Path) -> None:
    report, saved = tmp_path / "report.txt", tmp_path / "p.json"
    result = stprof("run", "--collector", collector, "-o", str(report), "--json", str(saved),
                    "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=64k", "count=20", "status=none")
    assert result.returncode == 0 and result.stderr == ""
    data = json.loads(saved.read_text())
    assert data["schema"] == "stprof/1" and data["collector"] == collector
    assert data["syscalls"]["read"]["calls"] >= 20
    again = stprof("report", str(saved))
    assert again.returncode == 0
    assert again.stdout == report.read_text()
    as_json = stprof("report", "--format", "json", str(saved))
    assert json.loads(as_json.stdout) == data


def test_view_options_filter_and_sort(collector: str, tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    stprof("run", "--collector", collector, "--json", str(saved), "-o", os.devnull, "--",
           "dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=50", "status=none")
    only = stprof("report", "-e", "read,write", str(saved)).stdout
    table = next(block for block in only.split("\n\n") if block.startswith("syscall "))
    names = [line.split()[0] for line in table.splitlines()[2:]]
    assert names[:2] in (["read", "write"], ["write", "read"]) and "mmap" not in names
    top = stprof("report", "-S", "calls", "--top", "1", str(saved)).stdout
    assert "more syscalls not shown" in top


# ------------------------------------------------------------- signals
def wait_for_child(parent: psutil.Process, timeout: float = 30.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in parent.children(recursive=True):
            if child.name() == "sleep":
                return child
        time.sleep(0.05)
    raise AssertionError("the command never started")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_stprof_reaches_command_and_report_follows(collector: str,
                                                             signum: int) -> None:
    proc = subprocess.Popen([*STPROF, "run", "--collector", collector, "--", "sleep", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = wait_for_child(psutil.Process(proc.pid))
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "nanosleep" in err or "clock_nanosleep" in err
    assert not psutil.pid_exists(target.pid) or target.status() == psutil.STATUS_ZOMBIE


# ---------------------------------------------------------- privileges
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
@pytest.mark.parametrize("extra,env,uid", [
    ([], {"SUDO_UID": "65534", "SUDO_GID": "65534"}, "65534"),
    (["--as-root"], {"SUDO_UID": "65534", "SUDO_GID": "65534"}, "0"),
    (["-u", "nobody"], {}, "65534"),
])
def test_command_runs_as_the_invoking_user(collector: str, extra: list[str],
                                           env: dict[str, str], uid: str) -> None:
    result = stprof("run", "--collector", collector, *extra, "-o", os.devnull, "--",
                    "sh", "-c", 'echo "$(id -u) $HOME"', env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    got_uid, home = result.stdout.split()
    assert got_uid == uid
    assert home == ("/nonexistent" if uid == "65534" else os.environ["HOME"])


def test_output_to_dev_null_leaves_the_device_alone(tmp_path: Path) -> None:
    before = os.stat(os.devnull)
    result = stprof("run", "--collector", "ptrace", "-o", os.devnull, "--json", os.devnull,
                    "--", "true")
    assert result.returncode == 0, result.stderr
    after = os.stat(os.devnull)
    assert (after.st_ino, after.st_rdev, after.st_mode) == (before.st_ino, before.st_rdev,
                                                           before.st_mode)
