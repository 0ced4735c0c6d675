"""Questions the eBPF collector asks the running kernel, without bcc or a compile.

Everything here is cheap and side-effect free except :func:`ensure_tracefs`,
which mounts debugfs/tracefs when they are missing (bcc reads tracepoint
formats there).  Capability checks go straight to the syscalls
(perf_event_open, bpf) through ctypes, so ``stprof doctor`` can report what
works on this host without compiling anything.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from pathlib import Path

from collectors.syscall_names import syscall_table

DEBUGFS = Path("/sys/kernel/debug")
TRACEFS_CANDIDATES = (DEBUGFS / "tracing", Path("/sys/kernel/tracing"))
BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

# perf_event_attr.type / .config values (uapi/linux/perf_event.h)
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_HW_CPU_CYCLES = 0
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_PAGE_FAULTS = 2
PERF_COUNT_SW_PAGE_FAULTS_MIN = 5
PERF_COUNT_SW_PAGE_FAULTS_MAJ = 6

# bpf(2) commands and enum values (uapi/linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FENTRY = 24
PROG_INFO_SIZE = 256
PROG_INFO_NAME_OFFSET = 64
PROG_INFO_RECURSION_MISSES_OFFSET = 208

_libc = ctypes.CDLL(None, use_errno=True)


# ------------------------------------------------------------ privileges
def effective_capabilities() -> int:
    """The CapEff bit mask of this process (0 if /proc cannot tell)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def has_capability(cap: int) -> bool:
    return bool(effective_capabilities() >> cap & 1)


def privileged_enough() -> bool:
    """Root, or the BPF and PERFMON capabilities bcc's probes need."""
    return os.geteuid() == 0 or (has_capability(CAP_BPF) and has_capability(CAP_PERFMON))


# ---------------------------------------------------------- kernel facts
def kernel_release() -> str:
    return platform.release()


def kernel_version() -> tuple[int, int]:
    parts = kernel_release().split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def kernel_headers_dir() -> Path | None:
    """Where bcc will find kernel headers for the running kernel, if anywhere."""
    build = Path("/lib/modules") / kernel_release() / "build"
    if (build / "include").is_dir():
        return build
    kheaders = Path("/sys/kernel/kheaders.tar.xz")
    if kheaders.exists():
        return kheaders
    return None


def headers_description(headers: Path) -> str:
    """Which headers bcc compiles against, saying so when they are another kernel's.

    Where the running kernel has no headers package, `make setup` links a
    distribution's generic ones: good enough for tracepoints, whose field
    offsets bcc reads from tracefs, but not for reading kernel structs.
    """
    resolved = headers.resolve()
    if resolved == headers or not resolved.name.startswith("linux-headers-"):
        return f"kernel headers at {headers}"
    version = resolved.name.removeprefix("linux-headers-")
    if version.startswith(kernel_release()):
        return f"kernel headers {version}"
    return f"kernel headers {version} (another kernel's, linked for {kernel_release()})"


def tracefs_dir() -> Path | None:
    """A mounted tracefs (the directory holding ``events``), or None."""
    for candidate in TRACEFS_CANDIDATES:
        try:
            if (candidate / "events").is_dir():
                return candidate
        except PermissionError:
            continue
    return None


def tracefs_mountable() -> bool:
    """Whether this kernel offers debugfs or tracefs at all."""
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        return False
    names = {line.split()[-1] for line in filesystems.splitlines() if line.strip()}
    return bool(names & {"debugfs", "tracefs"})


def _mount(source: str, target: Path, fstype: str) -> bool:
    result = _libc.mount(source.encode(), str(target).encode(), fstype.encode(), 0, None)
    return result == 0 or ctypes.get_errno() == errno.EBUSY


def ensure_tracefs() -> str | None:
    """Mount debugfs (and tracefs) when missing; None on success, else why not.

    bcc 0.26 looks for tracepoint formats under /sys/kernel/debug/tracing and
    falls back to /sys/kernel/tracing, deciding when ``bcc`` is imported; so
    this runs before the import.
    """
    if (DEBUGFS / "tracing" / "events").is_dir():
        return None
    if DEBUGFS.is_dir() and not _mount("debugfs", DEBUGFS, "debugfs"):
        reason = os.strerror(ctypes.get_errno())
        if tracefs_dir() is None:
            return f"cannot mount debugfs on {DEBUGFS}: {reason}"
    if (DEBUGFS / "tracing").is_dir() and not (DEBUGFS / "tracing" / "events").is_dir():
        _mount("tracefs", DEBUGFS / "tracing", "tracefs")
    plain = TRACEFS_CANDIDATES[1]
    if plain.is_dir() and not (plain / "events").is_dir():
        _mount("tracefs", plain, "tracefs")
    if tracefs_dir() is None:
        return "tracefs is not mounted and could not be mounted"
    return None


def tracepoint_exists(category: str, event: str) -> bool | None:
    """True/False, or None when tracefs cannot be read (not mounted, not root)."""
    base = tracefs_dir()
    if base is None:
        return None
    return (base / "events" / category / event).is_dir()


def kprobes_available() -> bool:
    base = tracefs_dir()
    if base is not None and (base / "kprobe_events").exists():
        return True
    return Path("/sys/bus/event_source/devices/kprobe").is_dir()


def raw_tracepoints_likely() -> bool:
    """Raw tracepoint BPF programs exist since Linux 4.17."""
    return kernel_version() >= (4, 17)


def raw_tracepoint_usable(tracepoint: str = "sys_enter") -> tuple[bool, str]:
    """Load an empty raw tracepoint program and attach it to ``tracepoint``.

    Raw tracepoints hand the probe the tracepoint's arguments as they are,
    skipping the trace-buffer set-up of regular tracepoint programs.  As with
    fentry, only trying tells (the program is attached for a moment).
    """
    if not privileged_enough():
        return False, "cannot tell without root"
    if not raw_tracepoints_likely():
        return False, f"kernel {kernel_release()} predates raw tracepoints (4.17)"
    return _attach_empty(BPF_PROG_TYPE_RAW_TRACEPOINT, tracepoint.encode())


# ------------------------------------------------------------- syscalls
def _syscall_number(name: str) -> int | None:
    for number, known in syscall_table().items():
        if known == name:
            return number
    return None


def perf_event_opens(config: int, sample_period: int = 1,
                     event_type: int = PERF_TYPE_SOFTWARE) -> tuple[bool, str]:
    """Can this perf event (sampling, disabled) be opened for ourselves?"""
    number = _syscall_number("perf_event_open")
    if number is None:
        return False, "perf_event_open number unknown on this machine"
    attr = bytearray(64)
    flags_disabled = 1
    struct.pack_into("IIQQQQQ", attr, 0, event_type, 64, config, sample_period, 0, 0,
                     flags_disabled)
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    fd = _libc.syscall(number, buf, 0, -1, -1, 0)
    if fd < 0:
        return False, os.strerror(ctypes.get_errno())
    os.close(fd)
    return True, ""


def _bpf(cmd: int, attr: bytearray) -> tuple[int, int]:
    number = _syscall_number("bpf")
    if number is None:
        return -1, errno.ENOSYS
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    result = _libc.syscall(number, cmd, buf, len(attr))
    return result, (ctypes.get_errno() if result < 0 else 0)


BPF_MAP_CREATE = 0
BPF_MAP_TYPE_RINGBUF = 27
OBJ_NAME_LEN = 16  # BPF_OBJ_NAME_LEN, with its NUL


def _object_name(name: str) -> bytes:
    """A map's or program's name as the kernel takes it: [A-Za-z0-9_.], 15 at most."""
    kept = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_.") else "_" for ch in name)
    return kept.encode()[:OBJ_NAME_LEN - 1]


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int, name: str) -> int:
    """BPF_MAP_CREATE; the map's fd (raises OSError if refused)."""
    if map_type == BPF_MAP_TYPE_RINGBUF:  # sized by max_entries alone
        key_size = value_size = 0
    attr = bytearray(128)
    struct.pack_into("IIIII", attr, 0, map_type, key_size, value_size, max_entries, flags)
    attr[28:28 + OBJ_NAME_LEN - 1] = _object_name(name).ljust(OBJ_NAME_LEN - 1, b"\0")
    fd, err = _bpf(BPF_MAP_CREATE, attr)
    if fd < 0:
        raise OSError(err, f"cannot create BPF map {name}: {os.strerror(err)}")
    return fd


def prog_load(prog_type: int, code: bytes, license_: str, kern_version: int, name: str,
              expected_attach_type: int = 0) -> tuple[int, int]:
    """BPF_PROG_LOAD of ``code`` (struct bpf_insn[]): (fd, 0) or (-1, errno)."""
    insns = ctypes.create_string_buffer(code, len(code))
    license_buffer = ctypes.create_string_buffer(license_.encode())
    attr = bytearray(128)
    struct.pack_into("IIQQ", attr, 0, prog_type, len(code) // 8, ctypes.addressof(insns),
                     ctypes.addressof(license_buffer))
    struct.pack_into("I", attr, 40, kern_version)
    attr[48:48 + OBJ_NAME_LEN - 1] = _object_name(name).ljust(OBJ_NAME_LEN - 1, b"\0")
    struct.pack_into("I", attr, 68, expected_attach_type)
    return _bpf(BPF_PROG_LOAD, attr)


def recursion_misses(prog_fd: int) -> int | None:
    """How often the kernel skipped this BPF program (recursion), or None."""
    info = ctypes.create_string_buffer(PROG_INFO_SIZE)
    attr = bytearray(16)
    struct.pack_into("IIQ", attr, 0, prog_fd, PROG_INFO_SIZE, ctypes.addressof(info))
    result, _ = _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    if result < 0:
        return None
    info_len = struct.unpack_from("I", attr, 4)[0]
    if info_len < PROG_INFO_RECURSION_MISSES_OFFSET + 8:
        return None
    misses: int = struct.unpack_from("Q", info.raw, PROG_INFO_RECURSION_MISSES_OFFSET)[0]
    return misses


PROG_INFO_RUN_TIME_OFFSET = 192  # run_time_ns, then run_cnt (kernel.bpf_stats_enabled)
BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def run_stats(prog_fd: int) -> tuple[int, int] | None:
    """(run_time_ns, run_cnt) the kernel counted for this program while
    kernel.bpf_stats_enabled was on, or None where it cannot say."""
    info = ctypes.create_string_buffer(PROG_INFO_SIZE)
    attr = bytearray(16)
    struct.pack_into("IIQ", attr, 0, prog_fd, PROG_INFO_SIZE, ctypes.addressof(info))
    result, _ = _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    if result < 0 or struct.unpack_from("I", attr, 4)[0] < PROG_INFO_RUN_TIME_OFFSET + 16:
        return None
    run_time, runs = struct.unpack_from("QQ", info.raw, PROG_INFO_RUN_TIME_OFFSET)
    return int(run_time), int(runs)


# ---------------------------------------------------------------- fentry
def _btf_func_id(name: str) -> int | None:
    """The BTF type id of kernel function ``name`` in vmlinux BTF, or None."""
    try:
        data = BTF_VMLINUX.read_bytes()
    except OSError:
        return None
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, _str_len = struct.unpack_from(
        "<HBBIIIII", data, 0
    )
    if magic != 0xEB9F:
        return None
    strings = hdr_len + str_off
    wanted = data.find(b"\0" + name.encode() + b"\0", strings)
    if wanted < 0:
        return None
    wanted_off = wanted + 1 - strings
    pos, end, type_id = hdr_len + type_off, hdr_len + type_off + type_len, 1
    while pos < end:
        name_off, info, _size = struct.unpack_from("<III", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind == 12 and name_off == wanted_off:  # BTF_KIND_FUNC
            return type_id
        pos += 12 + _btf_extra(kind, vlen)
        type_id += 1
    return None


def _btf_extra(kind: int, vlen: int) -> int:
    """Bytes following a BTF type record of this kind (uapi/linux/btf.h)."""
    fixed = {1: 4, 3: 12, 14: 4, 17: 4}  # INT, ARRAY, VAR, DECL_TAG
    # STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64
    per_member = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
    return fixed.get(kind, 0) + per_member.get(kind, 0) * vlen


def fentry_usable(function: str = "handle_mm_fault") -> tuple[bool, str]:
    """Try to load and attach an empty fentry program on ``function``.

    This is the only honest test: BTF and the trampoline code may be present
    while the kernel still refuses the load (EPERM here, e.g. lockdown).
    """
    if not BTF_VMLINUX.exists():
        return False, "no kernel BTF (/sys/kernel/btf/vmlinux)"
    btf_id = _btf_func_id(function)
    if btf_id is None:
        return False, f"{function} not found in kernel BTF"
    return _attach_empty(BPF_PROG_TYPE_TRACING, None, BPF_TRACE_FENTRY, btf_id)


def _attach_empty(prog_type: int, raw_tracepoint: bytes | None, attach_type: int = 0,
                  btf_id: int = 0) -> tuple[bool, str]:
    """Load "r0 = 0; exit" as ``prog_type`` and attach it with BPF_RAW_TRACEPOINT_OPEN
    (to ``raw_tracepoint``, or to its BTF target when None), then let go of both."""
    insns = bytes.fromhex("b700000000000000" "9500000000000000")  # r0 = 0; exit
    code = ctypes.create_string_buffer(insns)
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("IIQQ", attr, 0, prog_type, 2, ctypes.addressof(code),
                     ctypes.addressof(license_))
    struct.pack_into("I", attr, 68, attach_type)
    struct.pack_into("I", attr, 108, btf_id)
    prog_fd, err = _bpf(BPF_PROG_LOAD, attr)
    if prog_fd < 0:
        return False, f"program load refused ({errno.errorcode.get(err, err)})"
    name = ctypes.create_string_buffer(raw_tracepoint) if raw_tracepoint is not None else None
    try:
        link = bytearray(16)
        struct.pack_into("QI", link, 0, ctypes.addressof(name) if name is not None else 0,
                         prog_fd)
        link_fd, err = _bpf(BPF_RAW_TRACEPOINT_OPEN, link)
        if link_fd < 0:
            return False, f"attach refused ({errno.errorcode.get(err, err)})"
        os.close(link_fd)
    finally:
        os.close(prog_fd)
    return True, ""
