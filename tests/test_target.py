"""spawn_paused() with real processes: the gate, the privilege drop, exec errors.

Every behaviour is checked both ways the command can wait at its gate: in
the small gate program (posix_spawn'ed from a memfd) and, where that cannot
run, in a fork of stprof.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from collector_guard import unavailable_reason

from collectors.base import Options
from profiler import gate_program
from profiler.errors import CommandNotExecutable, CommandNotFound
from profiler.target import Credentials, PausedChild, raise_exec_error, spawn_paused

pytestmark = pytest.mark.usefixtures("time_limit")

GATE = pytest.param("gate", marks=pytest.mark.skipif(
    not gate_program.available(), reason="the gate program cannot run here"))


@pytest.fixture(params=[GATE, "fork"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fork":
        monkeypatch.setattr(gate_program, "descriptor", lambda: None)
    return str(request.param)


@contextlib.contextmanager
def stdout_to_pipe() -> Iterator[Callable[[], str]]:
    """Start commands with a pipe as stdout (theirs is ours, untouched); read it after."""
    r, w = os.pipe()
    saved = os.dup(1)
    os.dup2(w, 1)
    os.close(w)
    chunks: list[bytes] = []
    try:
        yield lambda: b"".join(chunks).decode()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        while chunk := os.read(r, 4096):
            chunks.append(chunk)
        os.close(r)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def finish(child: PausedChild) -> int:
    """Release, check the exec worked, reap: the wait status."""
    child.release()
    assert child.exec_error() is None
    child.close()
    _, status = os.waitpid(child.pid, 0)
    return status


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def blocked_in_read(pid: int, timeout_s: float = 5.0) -> bool:
    """The process sleeps in read(2) (x86-64 syscall 0) or, elsewhere, just sleeps."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = proc_status(pid)["State"][0]
        try:
            syscall = Path(f"/proc/{pid}/syscall").read_text().split()[0]
        except OSError:
            syscall = "0"
        if state == "S" and syscall == "0":
            return True
        time.sleep(0.005)
    return False


# ----------------------------------------------------------------- the gate
def test_the_gate_holds_the_command_until_release(mode: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    child = spawn_paused(["sh", "-c", f"echo ran > {marker}"])
    assert blocked_in_read(child.pid)
    time.sleep(0.2)
    assert not marker.exists()
    assert finish(child) == 0
    assert marker.read_text() == "ran\n"


def test_spawn_returns_with_the_gate_program_exec_done(mode: str) -> None:
    """The collectors attach to a process whose next execve is the command's."""
    child = spawn_paused(["/bin/true"])
    try:
        exe = os.readlink(f"/proc/{child.pid}/exe")
        if mode == "gate":
            assert "memfd:stprof-gate" in exe
            assert Path(f"/proc/{child.pid}/cmdline").read_bytes().startswith(b"stprof-gate\0")
            # A few pages mapped, not a copy of stprof.
            assert len(Path(f"/proc/{child.pid}/maps").read_text().splitlines()) < 10
        else:
            assert exe == os.readlink("/proc/self/exe")
        assert blocked_in_read(child.pid)
    finally:
        assert finish(child) == 0


def test_closing_the_gate_without_release_runs_nothing(mode: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    child = spawn_paused(["sh", "-c", f"echo ran > {marker}"])
    child.close()
    _, status = os.waitpid(child.pid, 0)
    assert os.WEXITSTATUS(status) == 125
    assert not marker.exists()


def test_kill_at_the_gate(mode: str) -> None:
    child = spawn_paused(["/bin/true"])
    child.kill()
    child.close()
    _, status = os.waitpid(child.pid, 0)
    assert os.WTERMSIG(status) == signal.SIGKILL


# ------------------------------------------------------- what the command gets
def test_argv_env_fds_and_signals_reach_the_command(mode: str) -> None:
    script = (
        'echo "$0|$1|$2|$STPROF_TEST_VAR|$(id -u)"; '
        "grep -E '^Sig(Blk|Ign)' /proc/self/status; "
        'for f in /proc/$$/fd/*; do [ -e "$f" ] && printf "%s " "${f##*/}"; done; echo; '
        "echo pgid $(ps -o pgid= -p $$)"
    )
    env = dict(os.environ, STPROF_TEST_VAR="a b")
    with stdout_to_pipe() as output:
        child = spawn_paused(["sh", "-c", script, "zero", "", "two"], environ=env)
        assert finish(child) == 0
    out = output().splitlines()
    assert out[0] == f"zero||two|a b|{os.getuid()}"
    assert out[1] == "SigBlk:\t0000000000000000"
    ignored = int(out[2].split()[1], 16)
    if mode == "fork":
        # glibc refuses to touch its own signals 32 and 33 from Python: a fork
        # keeps them as stprof's parent left them, as an untraced run would.
        ignored &= ~((1 << 31) | (1 << 32))
    assert out[2].startswith("SigIgn:") and ignored == 0  # SIGPIPE, SIGXFSZ (, 32, 33) at default
    # The gate and error pipes are closed in the command; stdin/out/err are kept.
    inherited = {int(fd) for fd in out[3].split()}
    ours = {fd for fd in range(3, 1024) if _is_open(fd) and os.get_inheritable(fd)}
    assert inherited == {0, 1, 2} | ours
    assert int(out[4].split()[1]) == os.getpgrp()


def test_argv0_is_kept_and_the_path_lookup_is_ours(mode: str) -> None:
    with stdout_to_pipe() as output:
        child = spawn_paused(["sh", "-c", 'echo "$0"'])
        assert child.executable == shutil.which("sh")
        assert finish(child) == 0
    assert output() == "sh\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_privileges_are_dropped_before_the_gate(mode: str) -> None:
    nobody = Credentials.for_user("nobody")
    with stdout_to_pipe() as output:
        child = spawn_paused(
            ["sh", "-c", 'echo "$(id -u) $(id -g) $(id -G) $HOME $USER $LOGNAME"'], nobody
        )
        if mode == "gate":  # the fork drops them after the gate
            status = proc_status(child.pid)
            assert status["Uid"].split() == [str(nobody.uid)] * 4
            assert status["Gid"].split() == [str(nobody.gid)] * 4
        assert finish(child) == 0
    uid, gid, *rest = output().split()
    groups, (home, user, logname) = rest[:-3], rest[-3:]
    assert (int(uid), int(gid)) == (nobody.uid, nobody.gid)
    assert sorted(map(int, groups)) == sorted(set(nobody.groups))
    assert (home, user, logname) == (nobody.home, "nobody", "nobody")


# ------------------------------------------------------------------ failures
def test_a_missing_command_fails_before_anything_starts() -> None:
    with pytest.raises(CommandNotFound) as caught:
        spawn_paused(["/nonexistent/stprof-command"])
    assert caught.value.exit_status == 127
    with pytest.raises(CommandNotFound):
        spawn_paused(["stprof-no-such-command-anywhere"])


def test_exec_errors_come_back_through_the_error_pipe(mode: str, tmp_path: Path) -> None:
    vanishing = tmp_path / "vanishing"
    shutil.copy("/bin/true", vanishing)
    child = spawn_paused([str(vanishing)])
    vanishing.unlink()  # resolved, then gone by the exec
    child.release()
    err = child.exec_error()
    child.close()
    assert err == errno.ENOENT
    assert os.WEXITSTATUS(os.waitpid(child.pid, 0)[1]) == 127
    with pytest.raises(CommandNotFound):
        raise_exec_error(str(vanishing), err)

    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01not a program\n")
    junk.chmod(0o755)
    child = spawn_paused([str(junk)])
    child.release()
    err = child.exec_error()
    child.close()
    assert err == errno.ENOEXEC
    assert os.WEXITSTATUS(os.waitpid(child.pid, 0)[1]) == 126
    with pytest.raises(CommandNotExecutable) as caught:
        raise_exec_error(str(junk), err)
    assert caught.value.exit_status == 126


# -------------------------------------------------------------------- costs
@pytest.mark.skipif(not gate_program.available(), reason="the gate program cannot run here")
def test_the_gate_adds_little_to_the_commands_rusage() -> None:
    """The command's wait4 rusage includes the gate program: a few faults at most."""

    def faults(gated: bool) -> int:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        if gated:
            finish(spawn_paused(["/bin/true"]))
        else:
            subprocess.run(["/bin/true"], check=True)
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before

    gated = statistics.median(faults(True) for _ in range(5))
    bare = statistics.median(faults(False) for _ in range(5))
    assert gated <= bare + 10


def test_the_embedded_code_is_the_assembled_source(tmp_path: Path) -> None:
    if shutil.which("as") is None or shutil.which("objcopy") is None:
        pytest.skip("no GNU as/objcopy to assemble GATE_ASM with")
    source, obj, binary = tmp_path / "gate.s", tmp_path / "gate.o", tmp_path / "gate.bin"
    source.write_text(gate_program.GATE_ASM)
    subprocess.run(["as", "--64", "-o", obj, source], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", obj, binary], check=True)
    assert binary.read_bytes() == gate_program.GATE_CODE


# ------------------------------------------------------- through a collector
@pytest.mark.parametrize("name", ["ptrace", "ebpf"])
def test_exactly_one_execve_is_counted(mode: str, name: str) -> None:
    reason = unavailable_reason(name)
    if reason:
        pytest.skip(f"{name} collector: {reason}")
    from collectors import collector_class

    with collector_class(name)(Options(command=["/bin/true"])) as collector:
        profile = collector.run()
    assert profile.exit_status == 0
    assert profile.syscalls["execve"].calls == 1
    assert profile.syscalls["execve"].errors == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_a_failed_privilege_drop_is_an_exec_error(mode: str) -> None:
    impossible = Credentials(2**32 - 1, 0, (), "nobody", "/")  # setuid(-1): EINVAL
    with pytest.raises(CommandNotExecutable):
        child = spawn_paused(["/bin/true"], impossible)  # the gate program: here
        try:
            child.release()
            err = child.exec_error()  # a fork: here
        finally:
            child.close()
            os.waitpid(child.pid, 0)
        assert err is not None
        raise_exec_error("/bin/true", err)
    assert not psutil.Process().children()


def test_where_the_gate_program_cannot_run_a_fork_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    if not gate_program.available():
        pytest.skip("the gate program cannot run here")
    monkeypatch.setattr(gate_program, "_broken", False)

    def refused(*_args: object, **_kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "exec from a memfd refused")

    monkeypatch.setattr(os, "posix_spawn", refused)
    child = spawn_paused(["/bin/true"])
    assert os.readlink(f"/proc/{child.pid}/exe") == os.readlink("/proc/self/exe")
    assert finish(child) == 0
    assert gate_program._broken
    assert not gate_program.available()
