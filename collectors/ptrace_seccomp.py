"""The seccomp-bpf filter that makes the ptrace collector stop only at -e trace=SET.

As ``strace --seccomp-bpf`` does: the command installs, before its execve, a
classic BPF program that returns SECCOMP_RET_TRACE for the set's syscall
numbers and SECCOMP_RET_ALLOW for the others.  The tracer (with
PTRACE_O_TRACESECCOMP) resumes its tracees with PTRACE_CONT instead of
PTRACE_SYSCALL, so the others run unstopped; a traced call stops at its
PTRACE_EVENT_SECCOMP (its entry), is resumed with PTRACE_SYSCALL to its
syscall-exit-stop, then with PTRACE_CONT again.

The filter is inherited by every child and thread and stays after exec.  A
process that leaves the tracer (detached at the end, or never traced) gets
ENOSYS from the set's syscalls: SECCOMP_RET_TRACE with no tracer fails the
call.  Installing a filter needs CAP_SYS_ADMIN or the no_new_privs bit, which
is set for a command that does not run as root (setuid programs it runs then
gain no privileges).

Only the native ABI is filtered (x86-64 here): calls of another ABI (i386
int 0x80, x32) pass unstopped and are not counted.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Collection

# linux/filter.h, linux/bpf_common.h
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_RET_K = 0x06
# linux/seccomp.h
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_DATA_NR = 0  # struct seccomp_data: int nr; __u32 arch; ...
SECCOMP_DATA_ARCH = 4
SECCOMP_MODE_FILTER = 2
# linux/prctl.h
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
# linux/audit.h: this machine's native ABI
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]


Instruction = tuple[int, int, int, int]


def ranges(numbers: Collection[int]) -> list[tuple[int, int]]:
    """Sorted numbers as runs [low, high] of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for nr in sorted(set(numbers)):
        if runs and runs[-1][1] == nr - 1:
            runs[-1] = (runs[-1][0], nr)
        else:
            runs.append((nr, nr))
    return runs


def filter_program(numbers: Collection[int], arch: int) -> list[Instruction]:
    """The filter: RET_TRACE for ``numbers`` of ABI ``arch``, RET_ALLOW otherwise.

    One short block per run of consecutive numbers, each ending in its own
    RET_TRACE, so that every jump is short (classic BPF jumps are 8-bit).
    """
    program: list[Instruction] = [
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        (BPF_JEQ_K, 1, 0, arch),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        (BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    for low, high in ranges(numbers):
        if low == high:
            program.append((BPF_JEQ_K, 0, 1, low))
        else:
            program.append((BPF_JGE_K, 0, 2, low))
            program.append((BPF_JGT_K, 1, 0, high))
        program.append((BPF_RET_K, 0, 0, SECCOMP_RET_TRACE))
    program.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return program


def installer(numbers: Collection[int], machine: str) -> Callable[[], None]:
    """A ``child_setup`` for profiler.target.spawn_paused that installs the filter.

    Everything is built here, in stprof; the child only makes its two prctl
    calls.  Raises OSError in the child if the kernel refuses (reported as
    the command's exec error).
    """
    arch = AUDIT_ARCH[machine]
    program = filter_program(numbers, arch)
    array = (SockFilter * len(program))(*(SockFilter(*ins) for ins in program))
    fprog = SockFprog(len(program), ctypes.cast(array, ctypes.POINTER(SockFilter)))
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                      ctypes.c_ulong]
    root = os.geteuid() == 0

    def install() -> None:  # pragma: no cover - runs in the child
        _keep = array  # the program must live until the prctl
        if not root and prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
        del _keep

    return install
