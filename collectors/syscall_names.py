"""Syscall and errno names for the Linux collectors."""

from __future__ import annotations

import errno
import platform

from collectors.linux_syscalls import AARCH64, X86_64

_TABLES = {"x86_64": X86_64, "aarch64": AARCH64}


def syscall_table(machine: str | None = None) -> dict[int, str]:
    """Number -> name for this machine's native syscall ABI."""
    return _TABLES.get(machine or platform.machine(), {})


def syscall_name(number: int, table: dict[int, str]) -> str:
    return table.get(number) or f"syscall_{number}"


# The kernel's internal restart codes (include/linux/errno.h): a tracer sees
# them when a signal interrupts a call that the kernel then restarts.
KERNEL_ERRNOS = {
    512: "ERESTARTSYS",
    513: "ERESTARTNOINTR",
    514: "ERESTARTNOHAND",
    515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK",
}


def errno_name(number: int) -> str:
    """ENOENT for 2; ``E<n>`` for numbers neither Python nor the kernel names."""
    return errno.errorcode.get(number) or KERNEL_ERRNOS.get(number) or f"E{number}"
