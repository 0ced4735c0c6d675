"""Why the kernel refused to let stprof ptrace a process (EPERM), found by checking.

ptrace(2) says only "Operation not permitted"; the reasons behind it differ
and so do their fixes.  :func:`why_denied` checks them in the kernel's own
order (``ptrace_attach`` -> ``__ptrace_may_access`` -> security modules)
and names the first that holds here:

- the process is traced already (a tracee has one tracer: ``TracerPid``);
- this kernel keeps init private (``kernel.init_private``, a sysctl of some
  sandbox kernels: pid 1 may not be traced or inspected by anyone);
- Yama's ``kernel.yama.ptrace_scope`` (3: nobody; 2: CAP_SYS_PTRACE only;
  1: ancestors only, unless stprof holds CAP_SYS_PTRACE);
- without CAP_SYS_PTRACE: another user, capabilities stprof lacks, or a
  process that made itself undumpable;
- stprof runs in a user namespace the process is outside of (a container);
- stprof runs in a Landlock sandbox (a sandboxed tracer reaches only
  processes inside its sandbox).

Kernel lockdown does not restrict ptrace, so it is not among them.  When
none holds, the message says so instead of guessing (SELinux, AppArmor or
a BPF LSM program can refuse too, and do not say so to the process).
Everything here reads /proc and /proc/sys; only the Landlock check starts a
child, which restricts itself and exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from profiler.errors import shown

CAP_SYS_PTRACE = 19
# The capability names for a message, from linux/capability.h.
CAPABILITY_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
USE_EBPF = "the ebpf collector needs no ptrace: -c ebpf"

# Landlock (x86-64 and aarch64 share these numbers); a domain nests at most
# LANDLOCK_MAX_NUM_LAYERS deep.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_ACCESS_FS_EXECUTE = 1  # handled by the child's own layers only
LANDLOCK_MAX_NUM_LAYERS = 16


def why_denied(pid: int) -> tuple[str, str]:
    """The reason ptrace of ``pid`` was refused with EPERM, and its fix ("" if none)."""
    for check in (_traced_already, _init_private, _yama, _unprivileged, _other_user_namespace,
                  _landlock):
        found = check(pid)
        if found is not None:
            return found
    return ("the kernel refused (Operation not permitted), though no known cause holds: "
            "not Yama, not another tracer, user, capabilities, user namespace or Landlock; "
            "a security module (SELinux, AppArmor, a BPF LSM program) may forbid it", USE_EBPF)


# ------------------------------------------------------------------ checks
def _traced_already(pid: int) -> tuple[str, str] | None:
    tracer = _status_int(pid, "TracerPid")
    if not tracer:
        return None
    name = _comm(tracer)
    return (f"it is traced already, by pid {tracer}{f' ({shown(name)})' if name else ''}, "
            "and a process has one tracer at a time", USE_EBPF)


def _init_private(pid: int) -> tuple[str, str] | None:
    if pid != 1 or _sysctl_int("kernel/init_private") in (None, 0):
        return None
    return ("this kernel keeps init private (kernel.init_private = 1): "
            "no process may trace or inspect pid 1", USE_EBPF)


def _yama(pid: int) -> tuple[str, str] | None:
    scope = _sysctl_int("kernel/yama/ptrace_scope")
    if not scope:
        return None
    if scope >= 3:
        return ("Yama forbids every ptrace attach (kernel.yama.ptrace_scope = 3, "
                "fixed until reboot)", USE_EBPF)
    if _has_capability(CAP_SYS_PTRACE):
        return None
    if scope == 2:
        return ("Yama lets only CAP_SYS_PTRACE holders attach (kernel.yama.ptrace_scope = 2)",
                "run stprof as root")
    if not _is_ancestor_of(os.getpid(), pid):
        return ("Yama lets only a process's ancestors attach to it "
                "(kernel.yama.ptrace_scope = 1)",
                "run stprof as root, or sysctl kernel.yama.ptrace_scope=0")
    return None


def _unprivileged(pid: int) -> tuple[str, str] | None:
    """What the kernel checks of a tracer without CAP_SYS_PTRACE."""
    if _has_capability(CAP_SYS_PTRACE):
        return None
    fix = "run stprof as root"
    theirs = _status_ids(pid, "Uid")
    ours = os.getresuid()
    if theirs and any(uid != ours[0] for uid in theirs[:3]):
        return f"it runs as uid {theirs[0]}, stprof as uid {ours[0]}", fix
    their_groups, our_group = _status_ids(pid, "Gid"), os.getresgid()[0]
    if their_groups and any(gid != our_group for gid in their_groups[:3]):
        return (f"it runs as group {their_groups[0]} (set-gid, say), stprof as group "
                f"{our_group}", fix)
    lacking = _status_hex(pid, "CapPrm") & ~_status_hex("self", "CapPrm")
    if lacking:
        names = ", ".join(_capability_name(bit) for bit in range(64) if lacking >> bit & 1)
        return f"it holds capabilities stprof lacks ({names})", fix
    if theirs and _proc_owner(pid) == 0 and theirs[0] != 0:
        return ("it made itself undumpable (set-uid, or prctl PR_SET_DUMPABLE 0), "
                "which only CAP_SYS_PTRACE overrides", fix)
    return None


def _other_user_namespace(pid: int) -> tuple[str, str] | None:
    """A process in an ancestor or sibling user namespace: stprof's
    capabilities count only in its own namespace and those below it.
    Their uid_map texts (each seen from stprof's namespace) differ then."""
    ours, theirs = _read(Path("/proc/self/uid_map")), _read(Path(f"/proc/{pid}/uid_map"))
    if ours is None or theirs is None or ours.split() == theirs.split():
        return None
    if ours.split() == ["0", "0", "4294967295"]:
        return None  # stprof is in the initial namespace: it reaches every other
    return ("stprof runs in a user namespace (a container) that it is outside of",
            "run stprof in the namespace of the process, or outside the container")


def _landlock(pid: int) -> tuple[str, str] | None:
    depth = landlock_depth()
    if not depth:
        return None
    return (f"stprof runs in a Landlock sandbox ({depth} layer{'s' if depth > 1 else ''}), "
            "and a sandboxed process may trace only processes inside its sandbox",
            "run stprof outside the sandbox")


# Adds empty Landlock layers until the kernel refuses one; exits with how
# many it added, 255 where Landlock is missing.  Run as a child of its own,
# which nothing else shares.
_LAYER_COUNTER = f"""
import ctypes, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
ruleset = ctypes.create_string_buffer(struct.pack("Q", {LANDLOCK_ACCESS_FS_EXECUTE}))
fd = libc.syscall({SYS_LANDLOCK_CREATE_RULESET}, ruleset, 8, 0)
if fd < 0:
    sys.exit(255)
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: needed without CAP_SYS_ADMIN
added = 0
while added <= {LANDLOCK_MAX_NUM_LAYERS} and libc.syscall({SYS_LANDLOCK_RESTRICT_SELF}, fd, 0) == 0:
    added += 1
sys.exit(added)
"""


def landlock_depth() -> int | None:
    """How many Landlock layers confine stprof, None if it cannot be told.

    Counted by a child adding empty layers until the kernel's limit of 16
    refuses one (E2BIG): what it could not add, stprof's sandbox has.
    """
    try:
        added = subprocess.run([sys.executable, "-I", "-S", "-c", _LAYER_COUNTER],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30, check=False).returncode
    except (OSError, subprocess.SubprocessError):
        return None
    if added < 0 or added > LANDLOCK_MAX_NUM_LAYERS:
        return None  # no Landlock in this kernel, or a limit other than the known one
    return LANDLOCK_MAX_NUM_LAYERS - added


# ------------------------------------------------------------------ /proc
def _read(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8", errors="replace") as stream:
            return stream.read(65536)
    except OSError:
        return None


def _status_field(pid: int | str, key: str) -> str | None:
    text = _read(Path(f"/proc/{pid}/status"))
    for line in (text or "").splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return value.strip()
    return None


def _status_int(pid: int | str, key: str) -> int | None:
    value = _status_field(pid, key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _status_hex(pid: int | str, key: str) -> int:
    try:
        return int(_status_field(pid, key) or "0", 16)
    except ValueError:
        return 0


def _status_ids(pid: int, key: str) -> list[int]:
    try:
        return [int(word) for word in (_status_field(pid, key) or "").split()]
    except ValueError:
        return []


def _sysctl_int(name: str) -> int | None:
    text = _read(Path("/proc/sys") / name)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _has_capability(bit: int) -> bool:
    return bool(_status_hex("self", "CapEff") >> bit & 1)


def _capability_name(bit: int) -> str:
    return f"CAP_{CAPABILITY_NAMES[bit]}" if bit < len(CAPABILITY_NAMES) else f"capability {bit}"


def _comm(pid: int) -> str:
    text = _read(Path(f"/proc/{pid}/comm"))
    return text.strip() if text else ""


def _proc_owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _is_ancestor_of(ancestor: int, pid: int) -> bool:
    seen: set[int] = set()
    current: int | None = pid
    while current and current not in seen:
        if current == ancestor:
            return True
        seen.add(current)
        current = _status_int(current, "PPid")
    return False
