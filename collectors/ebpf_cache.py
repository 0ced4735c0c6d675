"""Compiled probes kept between runs, so that a run need not compile stprof.c.

bcc compiles stprof.c with clang and LLVM at every start, which is most of
``stprof run``'s start-up.  What the compile produces is plain data: each BPF
function's instructions and each map's type, sizes and field layout.  After
a compile, :func:`store` writes that down; a later run with the same inputs
:func:`load`-s it instead of compiling: it creates the maps, rewrites the
instructions' map references to the new maps and loads the programs with
bpf(2), through the same verifier.  The kernel runs the very bytecode the
compile gave.

Where: ``$STPROF_CACHE_DIR`` if set (empty or ``off``: no cache), else
``/var/cache/stprof`` for root and ``$XDG_CACHE_HOME/stprof`` (``~/.cache/stprof``)
for others; entries are files ``ebpf/<key>.json`` there.

The key is a SHA-256 of everything the compile's output depends on: the
program text, the -D and clang flags, bcc's version and library file, the
kernel (release and build string, e.g. ``uname -rv``), the kernel headers
bcc compiled against, the number of possible CPUs and this file's FORMAT.
An entry whose recorded key, format or checksum does not match is refused
and the program compiled (and the entry written again).

Safe when runs race or a file is damaged: an entry is written to a temporary
file in the same directory and renamed over the old one, so a reader sees a
whole entry or none, and when two runs write at once the last rename wins
with an entry as good as the other.  A truncated or corrupt file fails its
checksum (or JSON) and is rebuilt.  An entry is code that root loads into the
kernel: the directory and the entry must belong to this user and not be
writable by anyone else, or the cache is not used.  A map reference the
loader does not know how to rewrite (anything but a map fd) makes the
program not cacheable.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import json
import os
import platform
import stat
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors import ebpf_kernel as kernel
from profiler.phases import record

FORMAT = 1
ENV_DIR = "STPROF_CACHE_DIR"

# struct bpf_insn: the wide load of a 64-bit immediate (BPF_LD | BPF_IMM | BPF_DW)
# whose source register says what the immediate is
LD_IMM64 = 0x18
PSEUDO_NONE, PSEUDO_MAP_FD = 0, 1
INSN_SIZE = 8


# ------------------------------------------------------------------ where, what key
def cache_dir() -> Path | None:
    """The directory of stprof's caches, or None when caching is off."""
    chosen = os.environ.get(ENV_DIR)
    if chosen is not None:
        return None if chosen in ("", "off") else Path(chosen)
    if os.geteuid() == 0:
        return Path("/var/cache/stprof")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stprof"


def entry_path(key: str) -> Path | None:
    base = cache_dir()
    return None if base is None else base / "ebpf" / f"{key}.json"


def _file_id(path: Path | None) -> str:
    """What identifies a file's version: its resolved path, size and mtime."""
    if path is None:
        return "-"
    try:
        resolved = path.resolve()
        info = resolved.stat()
    except OSError:
        return f"{path}:?"
    return f"{resolved}:{info.st_size}:{info.st_mtime_ns}"


def _loaded_library(fragment: str) -> Path | None:
    """The file of a shared library this process has mapped (from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[5].strip() if line.count(" ") >= 5 else ""
                if fragment in Path(path).name:
                    return Path(path)
    except (OSError, IndexError):
        pass
    return None


def _bcc_identity() -> str:
    import bcc

    version = getattr(bcc, "__version__", "?")
    return f"{version}|{_file_id(_loaded_library('libbcc.so'))}|{_file_id(Path(bcc.__file__))}"


def _possible_cpus() -> str:
    try:
        return Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return str(os.cpu_count())


def cache_key(source: str, cflags: list[str], bcc_identity: str | None = None) -> str:
    """The key of the compile of ``source`` with ``cflags`` on this host."""
    headers = kernel.kernel_headers_dir()
    config = headers / "include" / "generated" / "autoconf.h" if headers else None
    parts = {
        "format": FORMAT,
        "source": source,
        "cflags": list(cflags),
        "bcc": _bcc_identity() if bcc_identity is None else bcc_identity,
        "kernel": [platform.release(), platform.version(), platform.machine()],
        "headers": [_file_id(headers), _file_id(config)],
        "cpus": _possible_cpus(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def describe() -> tuple[bool, str]:
    """(usable, what) of the cache here, for ``stprof doctor``."""
    base = cache_dir()
    if base is None:
        return False, f"off ({ENV_DIR}={os.environ.get(ENV_DIR, '')!r}): every run compiles"
    directory = base / "ebpf"
    if not directory.exists():
        return True, f"{directory} (made at the first compile)"
    if not _safe_dir(directory, create=False):
        return False, f"{directory} is not this user's alone (others may write it): not used"
    entries = sum(1 for path in directory.glob("*.json"))
    return True, f"{directory}: {entries} compiled plan(s)"


# ------------------------------------------------------------------ entries
@dataclass
class Table:
    """A map as bcc's compile declared it."""

    name: str
    map_id: int
    old_fd: int  # its fd in the compiling process, as the instructions hold it
    map_type: int
    flags: int
    key_size: int
    leaf_size: int
    max_entries: int
    key_desc: str
    leaf_desc: str


@dataclass
class Entry:
    key: str
    license: str
    kern_version: int
    functions: dict[str, bytes]  # name -> instructions (map references: old fds)
    tables: list[Table]


def _checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def encode(entry: Entry) -> str:
    body = {
        "format": FORMAT,
        "key": entry.key,
        "license": entry.license,
        "kern_version": entry.kern_version,
        "functions": {name: base64.b64encode(code).decode()
                      for name, code in entry.functions.items()},
        "tables": [vars(table) for table in entry.tables],
    }
    return json.dumps({"body": body, "sha256": _checksum(body)})


def decode(text: str, key: str) -> Entry | None:
    """The entry in ``text`` if it is whole and made for ``key``, else None."""
    try:
        outer = json.loads(text)
        body = outer["body"]
        if outer["sha256"] != _checksum(body) or body["format"] != FORMAT or body["key"] != key:
            return None
        return Entry(key=key, license=str(body["license"]),
                     kern_version=int(body["kern_version"]),
                     functions={str(name): base64.b64decode(code, validate=True)
                                for name, code in body["functions"].items()},
                     tables=[Table(**table) for table in body["tables"]])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def relocate(code: bytes, fds: dict[int, int]) -> bytes | None:
    """``code`` with its map references changed from old to new fds (``fds``);
    None if it refers to anything this cannot rewrite."""
    out = bytearray(code)
    if len(out) % INSN_SIZE:
        return None
    index = 0
    while index < len(out):
        opcode, regs, _, imm = struct.unpack_from("<BBhi", out, index)
        if opcode != LD_IMM64:
            index += INSN_SIZE
            continue
        source = regs >> 4
        if source == PSEUDO_MAP_FD:
            if imm not in fds:
                return None
            struct.pack_into("<i", out, index + 4, fds[imm])
        elif source != PSEUDO_NONE:
            return None
        index += 2 * INSN_SIZE  # the wide load takes two slots
    return bytes(out)


# ------------------------------------------------------------------ the directory
def _safe_dir(path: Path, create: bool) -> bool:
    """``path`` is a directory of ours that no one else may write (made if asked)."""
    if create:
        with contextlib.suppress(OSError):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def read_entry(key: str) -> Entry | None:
    path = entry_path(key)
    if path is None or not _safe_dir(path.parent, create=False):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        try:
            text = file.read().decode()
        except (OSError, UnicodeDecodeError):
            return None
    return decode(text, key)


def write_entry(entry: Entry) -> Path | None:
    """Write ``entry`` (atomically); its path, or None where it cannot be written."""
    path = entry_path(entry.key)
    if path is None or not _safe_dir(path.parent, create=True):
        return None
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    except OSError:
        return None
    try:
        with os.fdopen(fd, "w") as file:
            file.write(encode(entry))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return None
    return path


# ------------------------------------------------------------------ from a compile
def entry_of(bpf: Any, key: str) -> Entry | None:
    """What bcc's compile in ``bpf`` (a bcc.BPF) produced, or None if it cannot be cached."""
    from bcc import lib

    module = bpf.module
    ulong, string = ctypes.c_ulonglong, ctypes.c_char_p
    calls = {"bpf_num_tables": (ulong, []), "bpf_table_name": (string, [ulong]),
             "bpf_table_fd_id": (ctypes.c_int, [ulong]),
             "bpf_table_key_size_id": (ctypes.c_size_t, [ulong]),
             "bpf_table_leaf_size_id": (ctypes.c_size_t, [ulong]),
             "bpf_table_key_desc_id": (string, [ulong]),
             "bpf_table_leaf_desc_id": (string, [ulong])}
    for name, (restype, argtypes) in calls.items():
        function = getattr(lib, name, None)
        if function is None:
            return None
        function.restype, function.argtypes = restype, [ctypes.c_void_p, *argtypes]
    tables = []
    for map_id in range(lib.bpf_num_tables(module)):
        name = lib.bpf_table_name(module, map_id)
        key_desc = lib.bpf_table_key_desc_id(module, map_id)
        leaf_desc = lib.bpf_table_leaf_desc_id(module, map_id)
        if name is None or key_desc is None or leaf_desc is None:
            return None
        tables.append(Table(
            name=name.decode(), map_id=map_id, old_fd=lib.bpf_table_fd_id(module, map_id),
            map_type=lib.bpf_table_type_id(module, map_id),
            flags=lib.bpf_table_flags_id(module, map_id),
            key_size=lib.bpf_table_key_size_id(module, map_id),
            leaf_size=lib.bpf_table_leaf_size_id(module, map_id),
            max_entries=int(lib.bpf_table_max_entries_id(module, map_id)),
            key_desc=key_desc.decode(), leaf_desc=leaf_desc.decode()))
    old_fds = {table.old_fd: table.old_fd for table in tables}
    functions = {}
    for index in range(lib.bpf_num_functions(module)):
        name = lib.bpf_function_name(module, index)
        code = ctypes.string_at(lib.bpf_function_start(module, name),
                                lib.bpf_function_size(module, name))
        if relocate(code, old_fds) is None:
            return None
        functions[name.decode()] = code
    return Entry(key=key, license=lib.bpf_module_license(module).decode(),
                 kern_version=int(lib.bpf_module_kern_version(module)),
                 functions=functions, tables=tables)


def store(bpf: Any, key: str) -> Path | None:
    """Keep the compile in ``bpf`` for later runs (best effort: None if not kept)."""
    if cache_dir() is None:
        return None
    entry = entry_of(bpf, key)
    return None if entry is None else write_entry(entry)


# ------------------------------------------------------------------ into a run
def load(key: str) -> Any:
    """A bcc.BPF-like object from the entry for ``key``, its probes loaded and
    auto-attached as bcc's compile would have; None on a miss (or any failure,
    after undoing what was done)."""
    started = time.perf_counter()
    entry = read_entry(key)
    if entry is None:
        return None
    bpf = cached_bpf_class()(entry)
    bpf.stprof_started = started
    try:
        bpf.open()
    except Exception:
        bpf.cleanup()  # whatever was created or attached: the compile starts afresh
        return None
    # "compile" as in a compiled run (doctor --timing's table keeps its rows); the
    # next phase says where it came from
    record("compile", bpf.stprof_read_seconds)
    record("cache: compiled probes loaded, no compile", 0.0)
    return bpf


def cached_bpf_class() -> Any:
    """bcc's BPF class, fed from an Entry instead of a compile (bcc is imported here)."""
    from bcc import BPF, table

    table_classes = {
        table.BPF_MAP_TYPE_HASH: table.HashTable,
        table.BPF_MAP_TYPE_ARRAY: table.Array,
        table.BPF_MAP_TYPE_PERF_EVENT_ARRAY: table.PerfEventArray,
        table.BPF_MAP_TYPE_PERCPU_HASH: table.PerCpuHash,
        table.BPF_MAP_TYPE_PERCPU_ARRAY: table.PerCpuArray,
        table.BPF_MAP_TYPE_STACK_TRACE: table.StackTrace,
        table.BPF_MAP_TYPE_RINGBUF: table.RingBuf,
    }

    class CachedBPF(BPF):  # type: ignore[misc]
        """What BPF.__init__ sets up, minus the module: maps and programs come
        from the entry (bcc's own methods, which use neither, work as ever)."""

        def __init__(self, entry: Entry) -> None:
            started = time.perf_counter()
            self.kprobe_fds: dict[Any, Any] = {}
            self.uprobe_fds: dict[Any, Any] = {}
            self.tracepoint_fds: dict[Any, Any] = {}
            self.raw_tracepoint_fds: dict[Any, Any] = {}
            self.kfunc_entry_fds: dict[Any, Any] = {}
            self.kfunc_exit_fds: dict[Any, Any] = {}
            self.lsm_fds: dict[Any, Any] = {}
            self.perf_buffers: dict[Any, Any] = {}
            self.open_perf_events: dict[Any, Any] = {}
            self._ringbuf_manager = None
            self.tracefile = None
            self.debug = 0
            self.funcs: dict[bytes, Any] = {}
            self.tables: dict[bytes, Any] = {}
            self.module = None
            self.stprof_from_cache = True
            self._entry = entry
            self._map_fds: dict[str, int] = {}
            self._code: dict[bytes, bytes] = {}
            self.stprof_load_seconds = 0.0
            self.stprof_autoload_seconds = 0.0
            self.stprof_started = started
            self.stprof_read_seconds = 0.0
            import atexit

            atexit.register(self.cleanup)

        def open(self) -> None:
            """Create the maps, load and attach the auto-attached probes (raises on failure;
            then cleanup() undoes it all)."""
            self._create_maps()
            self.stprof_read_seconds = time.perf_counter() - self.stprof_started
            autoload = time.perf_counter()
            self._trace_autoload()
            self.stprof_autoload_seconds = time.perf_counter() - autoload

        def _create_maps(self) -> None:
            moved = {}
            for spec in self._entry.tables:
                fd = kernel.map_create(spec.map_type, spec.key_size, spec.leaf_size,
                                       spec.max_entries, spec.flags, spec.name)
                self._map_fds[spec.name] = fd
                moved[spec.old_fd] = fd
            for name, code in self._entry.functions.items():
                relocated = relocate(code, moved)
                if relocated is None:
                    raise ValueError(f"cannot relocate {name}")
                self._code[name.encode()] = relocated

        def _function_names(self) -> list[bytes]:
            return list(self._code)

        def _trace_autoload(self) -> None:
            """BPF._trace_autoload, for the kinds of function stprof.c has."""
            for name in self._function_names():
                if name.startswith(b"tracepoint__"):
                    self.attach_tracepoint(
                        tp=name[len(b"tracepoint__"):].replace(b"__", b":"), fn_name=name)
                elif name.startswith(b"raw_tracepoint__"):
                    self.attach_raw_tracepoint(tp=name[len(b"raw_tracepoint__"):],
                                               fn_name=name)

        def load_func(self, func_name: Any, prog_type: int, device: Any = None,
                      attach_type: int = -1) -> Any:
            name = func_name.encode() if isinstance(func_name, str) else bytes(func_name)
            if name in self.funcs:
                return self.funcs[name]
            code = self._code.get(name)
            if code is None:
                raise Exception(f"Unknown program {name.decode()}")
            started = time.perf_counter()
            try:
                fd, error = kernel.prog_load(prog_type, code, self._entry.license,
                                             self._entry.kern_version, name.decode(),
                                             max(attach_type, 0))
            finally:
                self.stprof_load_seconds += time.perf_counter() - started
            if fd < 0:
                raise Exception(f"Failed to load BPF program {name.decode()}: "
                                f"{os.strerror(error)}")
            function = BPF.Function(self, name, fd)
            self.funcs[name] = function
            return function

        def get_table(self, name: Any, keytype: Any = None, leaftype: Any = None,
                      reducer: Any = None) -> Any:
            wanted = name.decode() if isinstance(name, bytes) else str(name)
            spec = next((t for t in self._entry.tables if t.name == wanted), None)
            if spec is None or spec.name not in self._map_fds:
                raise KeyError(name)
            cls = table_classes.get(spec.map_type)
            if cls is None:
                raise Exception(f"Unknown table type {spec.map_type}")
            keytype = keytype or BPF._decode_table_type(json.loads(spec.key_desc))
            leaftype = leaftype or BPF._decode_table_type(json.loads(spec.leaf_desc))
            extra = {"reducer": reducer} if cls in (table.PerCpuArray, table.PerCpuHash) else {}
            made = cls(self, spec.map_id, self._map_fds[spec.name], keytype, leaftype,
                       spec.name.encode(), **extra)
            # TableBase asks the (absent) module for these: give the compile's
            made.ttype, made.flags, made.max_entries = spec.map_type, spec.flags, spec.max_entries
            return made

        def close(self) -> None:
            super().close()
            for fd in self._map_fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._map_fds.clear()

    return CachedBPF
