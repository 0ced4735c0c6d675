"""Starting the command to profile, paused until the probes are in place.

The child blocks reading a gate pipe; the collector attaches its probes (or
ptrace) to the paused pid and only then releases it, so the command's very
first syscall (its execve) is seen.  A second pipe, closed by a successful
exec, carries a failed exec's errno back, so a missing command is reported
as exit status 127 with one line and no traceback.

The process waiting at the gate is small: stprof (bcc and LLVM loaded, some
150 MB mapped) starts it with posix_spawn (a vfork: its image is neither
copied nor torn down) as the gate program (profiler/gate_program.py), a
625-byte program run from a memfd, which drops privileges, says it is ready, waits at the gate and
execs the command.  So the command's execve, where counting starts, costs
what it costs outside stprof.  Where that program cannot run (not x86-64
Linux, or exec from a memfd forbidden) the child is a fork of stprof that
waits at the gate in Python, and its execve then also tears down the forked
image (a few ms on a large stprof).

Under sudo the child drops to the invoking user before exec: root is for the
probes, not for the command.

The command does not outlive stprof: on Linux it is started with
PR_SET_PDEATHSIG SIGKILL (set after the privilege drop, which would clear
it), so a SIGKILL of stprof kills it too, as a tracer's PTRACE_O_EXITKILL
would; when it leads a process group of its own, a guard (see
:data:`GUARD_SCRIPT`) kills that whole group if stprof dies before the command
has ended.  Signals: see :func:`relay_signals`.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiler import gate_program
from profiler.errors import (
    CommandNotExecutable,
    CommandNotFound,
    TracingError,
    UsageError,
    shown,
)


# ---------------------------------------------------------------- identity
@dataclass(frozen=True)
class Credentials:
    """Who the command runs as; ``None`` means as stprof itself."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    user: str
    home: str

    @classmethod
    def for_user(cls, name_or_uid: str) -> Credentials:
        try:
            entry = (
                pwd.getpwuid(int(name_or_uid))
                if name_or_uid.isdigit()
                else pwd.getpwnam(name_or_uid)
            )
        except (KeyError, ValueError):
            raise UsageError(f"unknown user {name_or_uid!r}") from None
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(entry.pw_uid, entry.pw_gid, groups, entry.pw_name, entry.pw_dir)

    @classmethod
    def from_sudo(cls, environ: dict[str, str]) -> Credentials | None:
        """The invoking user when stprof runs as root under sudo, else None."""
        if os.geteuid() != 0 or "SUDO_UID" not in environ:
            return None
        uid = int(environ["SUDO_UID"])
        if uid == 0:
            return None
        creds = cls.for_user(str(uid))
        gid = int(environ.get("SUDO_GID", creds.gid))
        return cls(creds.uid, gid, creds.groups, creds.user, creds.home)


def choose_credentials(
    user: str | None, as_root: bool, environ: dict[str, str]
) -> Credentials | None:
    """``-u USER`` wins; under sudo the invoking user unless ``--as-root``."""
    if user is not None:
        if os.geteuid() != 0:
            raise UsageError("-u USER needs stprof to run as root")
        return Credentials.for_user(user)
    if as_root:
        return None
    return Credentials.from_sudo(environ)


# ---------------------------------------------------------------- commands
def resolve_command(argv: list[str], path: str | None = None) -> str:
    """The executable argv[0] names, or a one-line error (127/126) like a shell."""
    if not argv:
        raise UsageError("no command given (usage: stprof run [OPTIONS] -- COMMAND [ARGS...])")
    name = argv[0]
    if "/" in name:
        if not os.path.exists(name):
            raise CommandNotFound(f"{shown(name)}: command not found")
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise CommandNotExecutable(f"{shown(name)}: permission denied")
        return name
    found = shutil.which(name, path=path)
    if found is None:
        raise CommandNotFound(f"{shown(name)}: command not found")
    return found


def decode_wait_status(status: int) -> int:
    """A shell's view of a wait status: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WSTOPSIG(status)


@dataclass
class PausedChild:
    """A forked child waiting at the gate; ``release()`` lets it exec."""

    pid: int
    executable: str
    argv: list[str]
    _gate_w: int
    _error_r: int
    started_ns: int = field(default_factory=time.monotonic_ns)
    released_ns: int | None = None
    group: int | None = None  # the process group it leads, if not stprof's
    guard: tuple[int, int] | None = None  # the group's guard: its pid, stprof's end of its pipe

    def release(self) -> None:
        """Let the child exec.  Raises if the exec itself failed."""
        self.released_ns = time.monotonic_ns()
        with suppress(BrokenPipeError):
            os.write(self._gate_w, b"g")
        os.close(self._gate_w)
        self._gate_w = -1

    def exec_error(self) -> int | None:
        """After release: the exec's errno if it failed, else None (blocks until exec)."""
        try:
            data = _read_all(self._error_r)
        finally:
            os.close(self._error_r)
            self._error_r = -1
        if not data:
            return None
        return int(data.decode())

    def kill(self) -> None:
        """SIGKILL the child, and its process group when it leads its own."""
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.group is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.group, signal.SIGKILL)

    def close(self) -> None:
        """Close the pipes; the command has ended (or was killed): dismiss the guard."""
        for fd in (self._gate_w, self._error_r):
            if fd >= 0:
                os.close(fd)
        self._gate_w = self._error_r = -1
        if self.guard is not None:
            pid, said = self.guard
            self.guard = None
            with suppress(OSError):
                os.write(said, b"done\n")
            os.close(said)
            _reap(pid)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 64)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def raise_exec_error(argv0: str, err: int) -> None:
    if err in (errno.ENOENT, errno.ENOTDIR):
        raise CommandNotFound(f"{shown(argv0)}: command not found")
    raise CommandNotExecutable(f"{shown(argv0)}: {os.strerror(err)}")


# Signals stprof passes on to the command (see relay_signals).
RELAYED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

# Those of them stprof's parent left ignored (nohup: SIGHUP; a shell's
# background job without job control: SIGINT, SIGQUIT), read when this module
# is first imported, before stprof sets any handler.  Python keeps an
# inherited SIG_IGN of SIGINT (it installs its own handler only otherwise)
# and leaves the others alone.  They stay ignored in the command, and stprof
# ignores them too rather than pass them on.
IGNORED_AT_START = frozenset(
    sig for sig in RELAYED_SIGNALS if signal.getsignal(sig) == signal.SIG_IGN
)

# Signals the command starts with at their default action, whatever stprof
# did with them: Python ignores SIGPIPE and SIGXFSZ for itself (whether
# stprof's parent ignored them cannot be known, so they start at default).
DEFAULT_SIGNALS = tuple(
    sig for sig in (*RELAYED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ)
    if sig not in IGNORED_AT_START
)

PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h


def _prctl() -> Any:
    """libc's prctl, loaded before a fork (None where there is none)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def spawn_paused(
    argv: list[str],
    creds: Credentials | None = None,
    child_setup: Callable[[], None] | None = None,
    environ: dict[str, str] | None = None,
    own_group: bool = False,
) -> PausedChild:
    """Start a child that waits at a gate, then (after ``release()``) execs argv.

    It runs as ``creds`` (dropped before it waits), with argv[0] as given,
    the executable found by :func:`resolve_command`, stprof's open
    inheritable descriptors, signal mask cleared, :data:`DEFAULT_SIGNALS` at
    their default action (:data:`IGNORED_AT_START` stay ignored), and
    stprof's process group, or with ``own_group`` a new one it leads (see
    :func:`command_needs_own_group`).  On Linux it dies with stprof
    (PR_SET_PDEATHSIG SIGKILL, set after the privilege drop; the gate gives
    up if stprof is already gone then).  On return it is ready
    at the gate: what it runs before the command's execve is stprof's, not
    the command's.  ``child_setup``, if given, runs in the child after the
    gate opens, before the privilege drop; it needs a fork of stprof (no
    collector uses it today).
    """
    executable = resolve_command(argv)
    env = dict(os.environ if environ is None else environ)
    if creds is not None:
        env.update(HOME=creds.home, USER=creds.user, LOGNAME=creds.user)
    if child_setup is None:
        child = _spawn_gate(executable, argv, env, creds, own_group)
        if child is not None:
            return _guarded(child)
    gate_r, gate_w = os.pipe()
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    prctl = _prctl()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        _child(executable, argv, env, creds, child_setup, gate_r, gate_w, error_r, error_w,
               (prctl, parent), own_group)
    if own_group:
        with suppress(OSError):  # as the child does: whichever runs first
            os.setpgid(pid, pid)
    os.close(gate_r)
    os.close(error_w)
    return _guarded(PausedChild(pid, executable, list(argv), gate_w, error_r,
                                group=pid if own_group else None))


def _spawn_gate(
    executable: str, argv: list[str], env: dict[str, str], creds: Credentials | None,
    own_group: bool,
) -> PausedChild | None:
    """posix_spawn the gate program; None if it cannot be run (use a fork)."""
    program = gate_program.descriptor()
    if program is None:
        return None
    drop = [] if creds is None else [str(creds.uid), str(creds.gid), *map(str, creds.groups)]
    gate_r, gate_w = os.pipe()
    error_r, error_w = os.pipe()
    # stprof's descriptors are close-on-exec; the child's ends of the pipes
    # are dup2'ed onto their own numbers there (from spare copies), which
    # leaves them open in the gate program and in no other child.
    spare_r, spare_w = os.dup(gate_r), os.dup(error_w)
    try:
        pid = os.posix_spawn(
            f"/proc/self/fd/{program}",
            ["stprof-gate", str(gate_r), str(error_w), str(os.getpid()), str(len(drop)), *drop,
             executable, *argv],
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, spare_r, gate_r),
                (os.POSIX_SPAWN_DUP2, spare_w, error_w),
            ],
            setsigmask=(),
            setsigdef=DEFAULT_SIGNALS,
            **_new_group(own_group),
        )
    except BaseException as exc:
        for fd in (gate_w, error_r):
            os.close(fd)
        if not isinstance(exc, OSError):
            raise
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.ENOENT):
            gate_program.mark_unusable()  # exec from a memfd is forbidden here
        return None  # or E2BIG...: the fork reports the command's own exec error
    finally:
        for fd in (spare_r, spare_w, gate_r, error_w):
            os.close(fd)
    child = PausedChild(pid, executable, list(argv), gate_w, error_r,
                        group=pid if own_group else None)
    try:
        ready = os.read(error_r, 1)
    except BaseException:
        child.kill()
        _reap(pid)
        child.close()
        raise
    if ready != b"r":  # the privilege drop failed: its errno follows
        data = ready + _read_all(error_r)
        child.close()
        _reap(pid)
        if data.isdigit():
            raise_exec_error(argv[0], int(data))
        raise TracingError(f"the command's gate (pid {pid}) died before it was ready")
    return child


# The guard of a command's own process group: a shell that waits for stprof
# to say "done" (the command has ended) and, if stprof dies first (its pipe
# closes unsaid), SIGKILLs the group, so the command's descendants in it do
# not outlive stprof either.  It ignores the signals a job gets and leads a
# group of its own, so a SIGKILL of stprof's group does not reach it.
GUARD_SCRIPT = 'trap "" INT TERM HUP QUIT; read -r said; [ "$said" = done ] || kill -9 -"$1"'


def _guarded(child: PausedChild) -> PausedChild:
    """Give a child that leads its own group a guard (see :data:`GUARD_SCRIPT`)."""
    if child.group is None:
        return child
    try:
        child.guard = _start_guard(child.group)
    except BaseException:
        child.kill()
        _reap(child.pid)
        child.close()
        raise
    return child


def _start_guard(group: int) -> tuple[int, int] | None:
    """Start the guard of ``group``; None where no shell can be run."""
    shell = "/bin/sh"
    read_end, write_end = os.pipe()
    spare = os.dup(read_end)
    try:
        pid = os.posix_spawn(
            shell,
            ["stprof-guard", "-c", GUARD_SCRIPT, "stprof-guard", str(group)],
            {"PATH": os.defpath},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, spare, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setpgroup=0,
            setsigmask=(),
        )
    except OSError:
        os.close(write_end)
        return None
    finally:
        os.close(spare)
        os.close(read_end)
    return pid, write_end


def _new_group(own_group: bool) -> dict[str, Any]:
    """posix_spawn's argument for a process group of the child's own (none: stprof's)."""
    return {"setpgroup": 0} if own_group else {}


def _reap(pid: int) -> None:
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _child(
    executable: str,
    argv: list[str],
    env: dict[str, str],
    creds: Credentials | None,
    child_setup: Callable[[], None] | None,
    gate_r: int,
    gate_w: int,
    error_r: int,
    error_w: int,
    death: tuple[Any, int],
    own_group: bool,
) -> None:  # pragma: no cover - runs in the child
    err = errno.EIO
    try:
        if own_group:
            os.setpgid(0, 0)
        os.close(gate_w)
        os.close(error_r)
        for sig in DEFAULT_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        for sig in IGNORED_AT_START:
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if os.read(gate_r, 1) != b"g":
            os._exit(125)
        os.close(gate_r)
        if child_setup is not None:
            child_setup()
        if creds is not None:
            os.setgroups(list(creds.groups))
            os.setgid(creds.gid)
            os.setuid(creds.uid)
        _die_with_parent(*death)
        os.execve(executable, argv, env)
    except OSError as exc:
        err = exc.errno or errno.EIO
    except BaseException:
        err = errno.EIO
    try:
        os.write(error_w, str(err).encode())
    finally:
        os._exit(127 if err in (errno.ENOENT, errno.ENOTDIR) else 126)


def _die_with_parent(prctl: Any, parent: int) -> None:  # pragma: no cover - in the child
    """PR_SET_PDEATHSIG SIGKILL; exit 125 if the parent is already gone."""
    if prctl is None:
        return
    if prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(errno.EIO, "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(125)


# ------------------------------------------------------------------ signals
class Interrupted(Exception):
    """Raised in attach mode when the user asks stprof to stop tracing."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread


def proc_state_and_flags(pid: int) -> tuple[str, int] | None:
    """The state letter and the flags of /proc/PID/stat, None if unreadable.

    The command name before them may hold spaces, ')' and any bytes: the
    fields are what follows its last ')'.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat.rpartition(b")")[2].split()
    try:
        return fields[0].decode("ascii"), int(fields[6])
    except (IndexError, ValueError):
        return None


def why_not_attachable(pid: int) -> str | None:
    """Why ``-p pid`` cannot be traced (Linux), or None if it can be tried.

    A kernel thread makes no syscalls and never exits, and a zombie has
    nothing left to trace: both would leave stprof waiting for nothing.  A
    process whose main thread has exited shows as a zombie too while its
    other threads run: that one can be traced.
    """
    if not Path(f"/proc/{pid}").exists():
        return "no such process"
    state_and_flags = proc_state_and_flags(pid)
    if state_and_flags is None:
        return None
    state, flags = state_and_flags
    if flags & PF_KTHREAD:
        return "a kernel thread (it makes no syscalls)"
    if state in ("Z", "X") and _thread_count(pid) <= 1:
        return "a zombie (it has exited; its parent has not reaped it)"
    return None


def _thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _terminal_foreground() -> int | None:
    """The foreground process group of stprof's controlling terminal, if any."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return None
    try:
        return os.tcgetpgrp(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def command_needs_own_group() -> bool:
    """Whether the command is started in a process group of its own.

    A signal sent to stprof's whole process group (``kill -INT -PGID``, GNU
    timeout, a CI runner stopping a job) would otherwise reach the command
    twice: directly and through stprof.  In its own group the command gets
    only stprof's relay of it.  Not so when stprof is in its terminal's
    foreground group: the command must stay there to read the terminal and
    stop with it on Ctrl-Z, and a Ctrl-C reaches both (stprof does not relay
    that one).
    """
    foreground = _terminal_foreground()
    return foreground is None or foreground != os.getpgrp()


def terminal_delivers_to(pid: int) -> bool:
    """True when a Ctrl-C on our terminal reaches ``pid`` as well as us.

    That is when we are in the terminal's foreground process group and so is
    the target (it inherited our group).  Then a SIGINT/SIGQUIT the terminal
    sent is not forwarded, or the command would see each Ctrl-C twice.
    """
    foreground = _terminal_foreground()
    try:
        return foreground is not None and foreground == os.getpgrp() == os.getpgid(pid)
    except OSError:
        return False


# si_code of a signal a process sent with kill(), and of one the kernel sent
# (a terminal's to its foreground group): Linux's <asm-generic/siginfo.h>,
# FreeBSD's <sys/signal.h> (the dtrace collector; not run on FreeBSD yet).
SI_USER, SI_KERNEL = (0x10001, 0x10006) if sys.platform.startswith("freebsd") else (0, 0x80)


@dataclass
class SignalState:
    received: list[int] = field(default_factory=list)


@contextmanager
def relay_signals(target_pid: int | None, group: int | None = None) -> Iterator[SignalState]:
    """While tracing: pass SIGINT, SIGTERM, SIGHUP, SIGQUIT on to the command, once.

    The command gets each such signal once, as it would untraced:

    - in its own process group (``group``, see :func:`command_needs_own_group`)
      nothing sent to stprof's group reaches it, so every one stprof gets is
      passed on, to that group (where an untraced command's job would get it);
    - in stprof's group, one the kernel sent to the whole group (a terminal's
      Ctrl-C, Ctrl-\\, hang-up) reached it already and is not passed on; one a
      process sent (``kill PID``) is, to the command alone.

    Telling the two apart needs the sender's ``si_code``, so the signals are
    blocked and taken by a thread with ``sigwaitinfo`` rather than handled
    (the stprof CLI has no other thread; one of a caller's that leaves them
    unblocked gets them handled, and passed on as sent by a process).
    Signals in :data:`IGNORED_AT_START` stay ignored, by stprof and the command.

    With ``target_pid`` None (attach mode) the first such signal raises
    :class:`Interrupted` instead, so the collector detaches and reports.
    stprof itself keeps running until the command exits, so the partial
    profile is always reported.
    """
    state = SignalState()
    watched = [sig for sig in RELAYED_SIGNALS if sig not in IGNORED_AT_START]
    if target_pid is None:
        with _interrupting(watched, state):
            yield state
        return
    terminal_shared = group is None and terminal_delivers_to(target_pid)

    def relay(batch: list[tuple[int, int]]) -> None:
        sent: set[int] = set()
        for signum, si_code in batch:
            state.received.append(signum)
            if terminal_shared and si_code == SI_KERNEL:
                continue  # the terminal sent it to the command as well
            if signum not in sent:  # see _waited_signals: sent again at once, merged
                sent.add(signum)
                _send(target_pid, group, signum)

    with _waited_signals(watched, relay):
        yield state


def _send(pid: int, group: int | None, signum: int) -> None:
    """``signum`` to the command's group if it leads one, else to the command."""
    with suppress(ProcessLookupError, PermissionError):
        if group is None:
            os.kill(pid, signum)
            return
        os.killpg(group, signum)
        if os.getpgid(pid) != group:  # the command has left its group since
            os.kill(pid, signum)


# A signal sent again within this of the first (GNU timeout signals its child,
# then its whole group, microseconds apart) is one: untraced, the second would
# find the first still pending and merge with it, as standard signals do.
COALESCE_S = 0.001


@contextmanager
def _waited_signals(
    watched: list[signal.Signals], relay: Callable[[list[tuple[int, int]]], None]
) -> Iterator[None]:
    """Block ``watched``; hand them, as (signal, si_code) batches, to ``relay`` from a thread.

    A batch is a signal and those that follow it within :data:`COALESCE_S`
    of each other.
    """
    if not watched:
        yield
        return

    def stray(signum: int, _frame: Any) -> None:
        # Another thread of stprof's (not the CLI's: a caller's) did not block
        # it and took it: no si_code then; passed on, as one sent by a process.
        relay([(signum, SI_USER)])

    previous_handlers = {sig: signal.signal(sig, stray) for sig in watched}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    done = threading.Event()

    def wait_loop() -> None:
        while True:
            infos = [signal.sigwaitinfo(watched)]
            while len(infos) < 64 and (more := signal.sigtimedwait(watched, COALESCE_S)):
                infos.append(more)
            woken = done.is_set() and any(info.si_pid == os.getpid() for info in infos)
            relay([(info.si_signo, info.si_code) for info in infos
                   if not (woken and info.si_pid == os.getpid())])
            if woken:
                return  # the wake-up below (stprof signals nothing else to itself)

    thread = threading.Thread(target=wait_loop, name="stprof-signals", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        if thread.ident is not None:
            signal.pthread_kill(thread.ident, watched[0])
        thread.join()
        # Signals that came since: the command has ended (its pid may be
        # another process's by now), or stprof is stopping it on an error.
        while signal.sigtimedwait(watched, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


@contextmanager
def _interrupting(watched: list[signal.Signals], state: SignalState) -> Iterator[None]:
    """Attach mode: the first of ``watched`` raises :class:`Interrupted`."""

    def handler(signum: int, _frame: Any) -> None:
        state.received.append(signum)
        if len(state.received) == 1:  # later ones must not break the detach
            raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in watched}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
