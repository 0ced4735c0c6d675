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


def errno_name(number: int) -> str:
    """ENOENT for 2; ``E<n>`` for numbers this Python does not name."""
    return errno.errorcode.get(number, f"E{number}")
