"""The Linux ptrace ABI the ptrace collector needs, over python-ptrace's binding.

Only python-ptrace's low-level layer is used: ``ptrace.binding.func.ptrace``
(raises ``PtraceError``) for attaching, where a clear error matters, and
for everything else the libc ``ptrace`` function through python-ptrace's
own libc handle (``ptrace.ctypes_libc.libc``), with a lean prototype: no
``argtypes``, so small ints go in as C ints (widened to registers by libffi)
and pointers as ``c_void_p`` objects, and a ``c_long`` result (-1 on error,
errno in ``ctypes.get_errno()``).  Measured here, that call costs about
0.7 us less than python-ptrace's four-``c_ulong`` prototype, whose argument
conversion allocates; at one or two calls per stop that is a third of the
loop's own time.  python-ptrace is imported only when :func:`load` is
called, never at module import.

Also here: the tiny /proc readers the collector uses at rare events.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# ptrace requests (include/uapi/linux/ptrace.h)
PTRACE_SYSCALL = 24
PTRACE_CONT = 7
PTRACE_GETREGS = 12  # x86-64 only
PTRACE_DETACH = 17
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

# options
PTRACE_O_TRACESYSGOOD = 0x01
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000
FOLLOW_OPTIONS = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE
BASE_OPTIONS = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT

# events (status >> 16 of a stop)
PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_EXIT = 6
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

# struct ptrace_syscall_info.op
OP_ENTRY = 1
OP_EXIT = 2

WALL = 0x40000000  # __WALL: wait for threads and clones too
# A syscall-stop with TRACESYSGOOD: stopped (0x7f), signal SIGTRAP|0x80, no event.
SYSCALL_STOP_STATUS = ((0x80 | 5) << 8) | 0x7F
# waitpid's status at a PTRACE_EVENT_SECCOMP stop (SIGTRAP | event << 8)
SECCOMP_STOP_STATUS = (((PTRACE_EVENT_SECCOMP << 8) | 5) << 8) | 0x7F
FAILED = -1  # what a failed ptrace() call returns
ULONG = 1 << 64
ENOSYS_RAX = ULONG - errno.ENOSYS  # rax at every x86-64 syscall-entry-stop
ERROR_RAX = ULONG - 4095  # rax at or above this: -errno (the kernel's IS_ERR_VALUE)


class SyscallInfo(ctypes.Structure):
    """struct ptrace_syscall_info, with the union flattened.

    ``value`` is ``entry.nr`` at an entry stop and ``exit.rval`` at an exit
    stop (both live at offset 24); ``is_error`` is ``exit.is_error``.
    """

    _fields_ = [
        ("op", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("stack_pointer", ctypes.c_uint64),
        ("value", ctypes.c_int64),
        ("is_error", ctypes.c_uint8),
        ("rest", ctypes.c_uint8 * 63),
    ]


RawPtrace = Callable[[int, int, object, object], int]


@dataclass(frozen=True)
class Binding:
    """python-ptrace's checked call, the lean libc function, and the error type.

    ``regs`` is python-ptrace's ``user_regs_struct`` where the tracer may read
    a syscall's number and result from the registers at its exit stop alone
    (x86-64, whose entry stops all show ``rax == -ENOSYS``), else None.
    """

    call: Callable[..., int]
    raw: RawPtrace
    error: type[Exception]
    regs: type[ctypes.Structure] | None


_binding: Binding | None = None


def load() -> Binding:
    """Import python-ptrace (once) and return its low-level functions."""
    global _binding
    if _binding is None:
        from ptrace import PtraceError
        from ptrace.binding import func
        from ptrace.ctypes_libc import libc

        raw = libc["ptrace"]  # a function object of our own: func's keeps its prototype
        raw.restype = ctypes.c_long
        regs = None
        names = {name for name, _ in func.ptrace_registers_t._fields_}
        if platform.machine() == "x86_64" and {"orig_rax", "rax"} <= names:
            regs = func.ptrace_registers_t
        _binding = Binding(func.ptrace, raw, PtraceError, regs)
    return _binding


def error_errno(exc: BaseException) -> int | None:
    """The errno of a PtraceError (or OSError), if it has one."""
    value: Any = getattr(exc, "errno", None)
    return value if isinstance(value, int) else None


def errno_message(number: int | None) -> str:
    return os.strerror(number) if number else "unknown error"


def ptrace_or_none(request: int, tid: int, addr: object = 0, data: object = 0) -> int | None:
    """A lean ptrace call; None (errno in ctypes) when it failed."""
    result = load().raw(request, tid, addr, data)
    return None if result == FAILED else result


def pointer_to(struct: ctypes.Structure | ctypes.c_ulong) -> ctypes.c_void_p:
    """A pointer argument for the lean call (a bare address would not fit a C int)."""
    return ctypes.c_void_p(ctypes.addressof(struct))


def geteventmsg(tid: int) -> int | None:
    """PTRACE_GETEVENTMSG: the new tid of a fork event, the former tid of an exec."""
    message = ctypes.c_ulong(0)
    if ptrace_or_none(PTRACE_GETEVENTMSG, tid, 0, pointer_to(message)) is None:
        return None
    return message.value


# --------------------------------------------------------------------- /proc
@dataclass(frozen=True)
class TaskIds:
    tgid: int
    ppid: int
    name: str


def task_ids(tid: int) -> TaskIds | None:
    """Tgid, PPid and Name of a task from /proc/<tid>/status (None if it is gone)."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("Name", "Tgid", "PPid"):
            fields[key] = value.strip()
    try:
        return TaskIds(int(fields["Tgid"]), int(fields["PPid"]), fields.get("Name", ""))
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class ProcStat:
    """Process-wide counters of /proc/<pid>/stat (dead threads included)."""

    comm: str
    threads: int
    minflt: int
    majflt: int
    user_ns: int
    sys_ns: int


_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def proc_stat(pid: int) -> ProcStat | None:
    """Read /proc/<pid>/stat; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    left, right = data.find(b"("), data.rfind(b")")
    if left < 0 or right < 0:
        return None
    comm = data[left + 1 : right].decode(errors="replace")
    rest = data[right + 2 :].split()
    # rest[0] is field 3 (state): field N is rest[N - 3]
    try:
        return ProcStat(
            comm=comm,
            threads=int(rest[17]),
            minflt=int(rest[7]),
            majflt=int(rest[9]),
            user_ns=int(rest[11]) * _TICK_NS,
            sys_ns=int(rest[12]) * _TICK_NS,
        )
    except (IndexError, ValueError):
        return None


def task_ids_of(pid: int) -> list[int]:
    """The thread ids of a process (/proc/<pid>/task)."""
    try:
        return sorted(int(name) for name in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def children_of(pid: int) -> list[int]:
    """The child processes of every thread of a process (/proc/.../children).

    Empty where the kernel lacks CONFIG_PROC_CHILDREN.
    """
    found: list[int] = []
    for tid in task_ids_of(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(word) for word in f.read().split())
        except (OSError, ValueError):
            continue
    return found
