"""The Profile: what one traced run measured, as every collector fills it.

The Profile is plain data.  It knows nothing of collectors or renderers; it
serialises itself to the documented JSON schema (docs/schema.md) and refuses
to load any other schema version.  Times are integers in nanoseconds.
"""

from __future__ import annotations

import json
import os
import platform
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from profiler.errors import InputError, shown

SCHEMA = "stprof/1"

MIB = 1024 * 1024
# The most stprof reads of a profile or a record (README: "Input files").
# Measured: a profile of a 2000-process shell loop is 0.6 MB, a record of
# 20 such runs 12 MB (ebpf; ptrace's are smaller), and loading a record
# takes about 3.5 times its size in memory.  128 MiB holds a record of 200
# such runs, or a profile of some 400000 processes; a file past it is
# refused having held at most the bound.
INPUT_LIMIT = 128 * MIB
# Chunks of a bounded read.
_READ_CHUNK = MIB


# ----------------------------------------------------------------- histograms
def log2_bucket(value_ns: int) -> int:
    """Index of the log2 bucket holding ``value_ns``.

    Bucket 0 holds 0 ns; bucket i (i >= 1) holds [2**(i-1), 2**i) ns, the
    same slots as bcc's ``bpf_log2l()`` and DTrace's ``quantize()`` (positive
    side), so every collector's histogram means the same thing.
    """
    return max(0, int(value_ns)).bit_length()


def bucket_bounds(index: int) -> tuple[int, int]:
    """The [low, high) bounds in ns of log2 bucket ``index``."""
    if index == 0:
        return (0, 1)
    return (1 << (index - 1), 1 << index)


def add_to_hist(hist: list[int], value_ns: int, count: int = 1) -> None:
    index = log2_bucket(value_ns)
    if index >= len(hist):
        hist.extend([0] * (index + 1 - len(hist)))
    hist[index] += count


def merge_hist(into: list[int], other: list[int]) -> None:
    if len(other) > len(into):
        into.extend([0] * (len(other) - len(into)))
    for index, count in enumerate(other):
        into[index] += count


def trim_hist(hist: list[int]) -> list[int]:
    end = len(hist)
    while end and hist[end - 1] == 0:
        end -= 1
    return hist[:end]


# ------------------------------------------------------------------ sections
@dataclass
class SyscallStats:
    """Calls, errors and time of one syscall over the traced tree.

    ``total_ns`` is the time shown; where a collector corrects for its own
    overhead (ptrace) ``raw_total_ns`` keeps the uncorrected figure.
    ``faults`` counts page faults taken inside this syscall, and
    ``fault_ns`` their handling time where measured.  ``restarts`` counts
    the times the kernel re-entered a call of it after a signal interrupted
    it; those attempts are not calls (docs/schema.md).
    """

    calls: int = 0
    errors: int = 0
    errnos: dict[str, int] = field(default_factory=dict)
    total_ns: int = 0
    min_ns: int | None = None
    max_ns: int = 0
    hist: list[int] = field(default_factory=list)
    raw_total_ns: int | None = None
    faults: int = 0
    fault_ns: int | None = None
    restarts: int = 0

    def record(self, duration_ns: int, errno_name: str | None = None) -> None:
        """Add one completed call (used by collectors counting in user space)."""
        self.calls += 1
        if errno_name is not None:
            self.errors += 1
            self.errnos[errno_name] = self.errnos.get(errno_name, 0) + 1
        self.total_ns += duration_ns
        if self.min_ns is None or duration_ns < self.min_ns:
            self.min_ns = duration_ns
        if duration_ns > self.max_ns:
            self.max_ns = duration_ns
        add_to_hist(self.hist, duration_ns)

    def merge(self, other: SyscallStats) -> None:
        self.calls += other.calls
        self.errors += other.errors
        for name, count in other.errnos.items():
            self.errnos[name] = self.errnos.get(name, 0) + count
        self.total_ns += other.total_ns
        if other.min_ns is not None and (self.min_ns is None or other.min_ns < self.min_ns):
            self.min_ns = other.min_ns
        self.max_ns = max(self.max_ns, other.max_ns)
        merge_hist(self.hist, other.hist)
        if other.raw_total_ns is not None:
            self.raw_total_ns = (self.raw_total_ns or 0) + other.raw_total_ns
        self.faults += other.faults
        if other.fault_ns is not None:
            self.fault_ns = (self.fault_ns or 0) + other.fault_ns
        self.restarts += other.restarts

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.calls if self.calls else 0.0


@dataclass
class Rusage:
    """Resource usage of the whole traced tree, as wait4()/getrusage() report it."""

    user_ns: int = 0
    sys_ns: int = 0
    minflt: int = 0
    majflt: int = 0
    nvcsw: int = 0
    nivcsw: int = 0

    @classmethod
    def from_struct(cls, usage: Any) -> Rusage:
        """From a ``resource.struct_rusage`` (as os.wait4 returns it)."""
        return cls(
            user_ns=round(usage.ru_utime * 1e9),
            sys_ns=round(usage.ru_stime * 1e9),
            minflt=usage.ru_minflt,
            majflt=usage.ru_majflt,
            nvcsw=usage.ru_nvcsw,
            nivcsw=usage.ru_nivcsw,
        )


@dataclass
class Faults:
    """Page faults of the traced tree.

    ``user`` faults were taken in user mode, ``in_syscall`` inside a syscall
    (copy to or from user memory); ``minor``/``major`` split the completed
    ones.  ``total_ns`` is null when the method measures no time.  ``method``
    names how they were measured and ``precision`` what that means.
    """

    count: int = 0
    user: int = 0
    in_syscall: int = 0
    minor: int = 0
    major: int = 0
    total_ns: int | None = None
    user_ns: int | None = None
    in_syscall_ns: int | None = None
    hist: list[int] = field(default_factory=list)
    method: str = "none"
    precision: str = ""
    # faults whose context the collector could not tell: user mode or inside a
    # syscall it did not trace (eBPF --no-budget with -e trace=SET)
    unknown_context: int = 0


@dataclass
class Irqs:
    """Interrupts taken while a traced thread was on the CPU."""

    count: int = 0
    total_ns: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    method: str = "none"


@dataclass
class Budget:
    """Where the tree's threads spent their lifetimes; the parts add up to it.

    Summed over every traced thread: ``lifetime_ns`` is from each thread's
    start (or attach) to its exit (or detach).
    """

    lifetime_ns: int = 0
    user_ns: int = 0
    syscall_cpu_ns: int = 0
    syscall_blocked_ns: int = 0
    fault_user_ns: int = 0
    fault_in_syscall_ns: int = 0
    irq_ns: int = 0
    runqueue_ns: int = 0
    unexplained_ns: int = 0

    PARTS = (
        "user_ns",
        "syscall_cpu_ns",
        "syscall_blocked_ns",
        "fault_user_ns",
        "fault_in_syscall_ns",
        "irq_ns",
        "runqueue_ns",
        "unexplained_ns",
    )

    def parts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.PARTS}


@dataclass
class ProcessStats:
    """One process of the tree (its threads summed)."""

    pid: int
    ppid: int | None = None
    comm: str = ""
    threads: int = 1
    exit_status: int | None = None
    syscalls: int = 0
    syscall_errors: int = 0
    syscall_ns: int = 0
    minflt: int = 0
    majflt: int = 0
    user_ns: int | None = None
    sys_ns: int | None = None
    fault_ns: int | None = None


@dataclass
class Stacks:
    """Kernel stacks sampled while the target was in a fault (or all kernel time)."""

    mode: str = "faults"
    frequency_hz: int = 0
    samples: int = 0
    folded: dict[str, int] = field(default_factory=dict)

    def top_functions(self, limit: int = 10) -> list[tuple[str, int]]:
        """Leaf kernel functions by number of samples, most first."""
        by_leaf: dict[str, int] = {}
        for stack, count in self.folded.items():
            leaf = stack.rsplit(";", 1)[-1]
            by_leaf[leaf] = by_leaf.get(leaf, 0) + count
        return sorted(by_leaf.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def inclusive(self) -> dict[str, int]:
        """Samples with each function anywhere on the stack (counted once a stack)."""
        in_stack: dict[str, int] = {}
        for stack, count in self.folded.items():
            for function in set(stack.split(";")):
                in_stack[function] = in_stack.get(function, 0) + count
        return in_stack


@dataclass
class Interval:
    """What one stretch of the run measured (stprof run -i SECONDS).

    ``start_ns``/``end_ns`` are from the start of tracing.  ``syscalls`` maps
    a name to ``{"calls", "errors", "total_ns"}``; ``faults`` is ``{"count",
    "total_ns"}`` (total_ns null where fault time is not measured); ``budget``
    holds the Budget's parts and ``lifetime_ns``, or is None.  The intervals
    of a run add up exactly to its totals: each is the difference of two
    readings of the same cumulative counters, the last one's end being the
    final totals.
    """

    start_ns: int = 0
    end_ns: int = 0
    syscalls: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: dict[str, int | None] = field(default_factory=dict)
    budget: dict[str, int] | None = None


@dataclass
class TaskSyscalls:
    """One process's (or thread's) own syscalls (--per-process, --per-thread).

    ``pid`` is the process id (tgid); ``tid`` the thread id, equal to ``pid``
    in a per-process table.  ``syscalls`` maps a name to ``{"calls",
    "errors", "total_ns"}``.
    """

    pid: int
    tid: int
    comm: str = ""
    syscalls: dict[str, dict[str, int]] = field(default_factory=dict)


# ------------------------------------------------------------------- profile
def describe_host() -> dict[str, str]:
    """Where a profile was taken: enough to tell two machines apart."""
    uname = platform.uname()
    return {"system": uname.system, "kernel": uname.release, "machine": uname.machine,
            "hostname": uname.node, "cpus": str(os.cpu_count() or 0),
            "python": platform.python_version()}


@dataclass
class Profile:
    command: list[str] = field(default_factory=list)
    exit_status: int | None = None
    collector: str = ""
    wall_ns: int = 0
    rusage: Rusage = field(default_factory=Rusage)
    syscalls: dict[str, SyscallStats] = field(default_factory=dict)
    processes: list[ProcessStats] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    notes: list[str] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    irqs: Irqs | None = None
    budget: Budget | None = None
    stacks: Stacks | None = None
    attached_pid: int | None = None
    intervals: list[Interval] | None = None
    per_process: list[TaskSyscalls] | None = None
    per_thread: list[TaskSyscalls] | None = None
    host: dict[str, str] = field(default_factory=lambda: describe_host())
    # -e trace=SET: {"spec", "syscalls" (the names traced), "method"}; None: all traced
    trace_set: dict[str, Any] | None = None
    schema: str = SCHEMA

    # ---- derived figures
    def syscall(self, name: str) -> SyscallStats:
        """The stats of ``name``, created empty on first use."""
        stats = self.syscalls.get(name)
        if stats is None:
            stats = self.syscalls[name] = SyscallStats()
        return stats

    @property
    def total_calls(self) -> int:
        return sum(s.calls for s in self.syscalls.values())

    @property
    def total_errors(self) -> int:
        return sum(s.errors for s in self.syscalls.values())

    @property
    def total_syscall_ns(self) -> int:
        return sum(s.total_ns for s in self.syscalls.values())

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": self.schema}
        for f in fields(self):
            if f.name == "schema":
                continue
            value = getattr(self, f.name)
            if f.name == "syscalls":
                value = {name: _syscall_dict(s) for name, s in sorted(value.items())}
            elif f.name == "processes":
                value = [asdict(p) for p in value]
            elif f.name in ("intervals", "per_process", "per_thread"):
                value = None if value is None else [asdict(item) for item in value]
            elif f.name == "faults":
                value = asdict(value)
                value["hist"] = trim_hist(value["hist"])
            elif value is not None and hasattr(value, "__dataclass_fields__"):
                value = asdict(value)
            data[f.name] = value
        return data

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "profile") -> Profile:
        if not isinstance(data, dict):
            raise InputError(f"{source}: not a stprof profile (expected a JSON object)")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise InputError(
                f"{source}: unsupported schema {schema!r} (this stprof reads {SCHEMA!r})"
            )
        try:
            return cls(
                command=_checked(data["command"], "list[str]", "command"),
                exit_status=_checked(data.get("exit_status"), "int | None", "exit_status"),
                collector=_checked(data["collector"], "str", "collector"),
                wall_ns=int(data["wall_ns"]),
                rusage=_section(Rusage, data["rusage"]),
                syscalls={
                    str(name): _section(SyscallStats, value)
                    for name, value in data["syscalls"].items()
                },
                processes=[_section(ProcessStats, p) for p in data.get("processes", [])],
                faults=_section(Faults, data["faults"]),
                notes=_checked(data.get("notes", []), "list[str]", "notes"),
                timing=_checked(data.get("timing") or {}, "dict", "timing"),
                irqs=_section(Irqs, data["irqs"]) if data.get("irqs") else None,
                budget=_section(Budget, data["budget"]) if data.get("budget") else None,
                stacks=_section(Stacks, data["stacks"]) if data.get("stacks") else None,
                attached_pid=_checked(data.get("attached_pid"), "int | None", "attached_pid"),
                intervals=_list_of(Interval, data.get("intervals")),
                per_process=_list_of(TaskSyscalls, data.get("per_process")),
                per_thread=_list_of(TaskSyscalls, data.get("per_thread")),
                host=_checked(data.get("host") or {}, "dict[str, str]", "host"),
                trace_set=_trace_set_section(data.get("trace_set")),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            reason = describe_error(exc)
            raise InputError(f"{source}: malformed stprof profile ({reason})") from None

    @classmethod
    def from_json(cls, text: str, source: str = "profile") -> Profile:
        return cls.from_dict(load_json_text(text, source), source)

    def save(self, path: str | os.PathLike[str]) -> None:
        write_text_atomically(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        return cls.from_json(read_input_file(path), shown(path))


def _trace_set_section(value: Any) -> dict[str, Any] | None:
    """The ``trace_set`` key as read: an object with a string spec and a name list."""
    if value is None:
        return None
    if (not isinstance(value, dict) or not isinstance(value.get("spec"), str)
            or not isinstance(value.get("syscalls"), list)):
        raise TypeError("trace_set has the wrong type")
    return dict(value)


def _syscall_dict(stats: SyscallStats) -> dict[str, Any]:
    data = asdict(stats)
    data["hist"] = trim_hist(stats.hist)
    data["errnos"] = dict(sorted(stats.errnos.items()))
    return data


_Section = TypeVar("_Section")

# How each annotated field type is checked when a file is read.
_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "int | None": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    "str": lambda v: isinstance(v, str),
    "list[int]": lambda v: isinstance(v, list) and all(isinstance(i, int) for i in v),
    "dict[str, int]": lambda v: isinstance(v, dict) and all(
        isinstance(i, int) for i in v.values()),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "dict[str, str]": lambda v: isinstance(v, dict) and all(
        isinstance(i, str) for i in v.values()),
    "dict": lambda v: isinstance(v, dict),
}


def _checked(value: Any, kind: str, key: str) -> Any:
    """``value`` when it has the type ``kind`` names (a key of _FIELD_CHECKS)."""
    if not _FIELD_CHECKS[kind](value):
        raise TypeError(f"{key} has the wrong type")
    return value


def _section(cls: type[_Section], value: Any) -> _Section:
    """A model section from its JSON object, checking the types of known keys.

    Keys this version does not know are ignored: files only ever gain keys
    within one schema version (docs/schema.md).
    """
    if not isinstance(value, dict):
        raise TypeError(f"{cls.__name__} is not an object")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, item in value.items():
        f = known.get(key)
        if f is None:
            continue
        check = _FIELD_CHECKS.get(str(f.type))
        if check is not None and not check(item):
            raise TypeError(f"{cls.__name__.lower()}.{key} has the wrong type")
        kwargs[key] = item
    return cls(**kwargs)


def _list_of(cls: type[_Section], value: Any) -> list[_Section] | None:
    """A list of sections, or None where an older file lacks the key."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise TypeError(f"{cls.__name__.lower()} list is not a list")
    return [_section(cls, item) for item in value]


def describe_error(exc: BaseException) -> str:
    """A short text for a parse error: the missing key, or the error's first line."""
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# ----------------------------------------------------------------- file I/O
def read_input_file(path: str | os.PathLike[str], limit: int = INPUT_LIMIT,
                    kind: str = "profile or record") -> str:
    """Read a file given on the command line, as one-line InputErrors.

    At most ``limit`` bytes are read (``limit + 1`` to tell a file past it),
    whatever the file is: /dev/zero, a FIFO whose writer never stops and a
    sparse file of a terabyte are refused at the bound, never held whole.
    """
    try:
        with open(path, "rb") as stream:
            data = _read_at_most(stream, limit)
    except FileNotFoundError:
        raise InputError(f"{shown(path)}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{shown(path)}: is a directory") from None
    except PermissionError:
        raise InputError(f"{shown(path)}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{shown(path)}: {exc.strerror}") from None
    if data is None:
        raise InputError(f"{shown(path)}: larger than {describe_size(limit)}, the most stprof "
                         f"reads of a {kind}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{shown(path)}: not a text file") from None


def _read_at_most(stream: BinaryIO, limit: int) -> bytearray | None:
    """The stream's bytes, or None once it holds more than ``limit``."""
    status = os.fstat(stream.fileno())
    if stat.S_ISREG(status.st_mode) and status.st_size > limit:
        return None  # /proc files say 0 and a file may grow: the read below still counts
    data = bytearray()
    while len(data) <= limit:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - len(data)))
        if not chunk:
            return data
        data += chunk
    return None


def describe_size(size: int) -> str:
    """1048576 -> '1 MiB'; sizes that are no whole MiB in bytes."""
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size} bytes"


def load_json_text(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InputError(f"{source}: not valid JSON ({describe_error(exc)})") from None
    except RecursionError:
        raise InputError(f"{source}: not valid JSON (nested too deeply)") from None


def write_text_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and a rename so a reader never sees half a file.

    Only a regular file (or a new one) is replaced that way; anything else,
    such as /dev/null, /dev/stderr (a link) or a FIFO, is opened and written
    as it is, so a device or a link is never replaced by a file.
    """
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            with path.open("w", encoding="utf-8") as stream:
                stream.write(text)
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(f"{shown(path)}: cannot write ({exc.strerror})") from None
