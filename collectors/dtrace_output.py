"""Reading what dtrace(1) printed for stprof's D program, into a Profile.

Two formats, one result (:class:`DtraceRecords`):

- text: the labelled ``printa()`` lines of :mod:`collectors.dtrace_program`
  (``stprof:<aggregation> <keys> <value>``; a quantize table between its
  label line and ``stprof:hist-end``; a stack between its label line and
  ``stprof:stack-count N``), as libdtrace's dt_consume.c prints them;
- JSON: ``-x oformat=json`` (FreeBSD 14.1 and later), shaped as dtrace(1)'s
  STRUCTURED OUTPUT section describes: ``{"dtrace": {"probes": [{...,
  "output": [...]}]}}`` with ``aggregation-name``/``aggregation-data``
  objects, ``buckets`` for quantize and ``stack-frames`` for stacks; drops as
  a pseudo-probe named ``DROP``.

dtrace's own messages (drops, runtime errors, buffer resizing) become
Profile notes; its fatal messages become one-line errors with a fix.
"""

from __future__ import annotations

import errno as errno_module
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from collectors.dtrace_program import (
    AGGREGATIONS,
    END_MARKER,
    HIST_END,
    IN_SYSCALL,
    LABEL_PREFIX,
    OUTSIDE_SYSCALL,
    READY_MARKER,
    STACK_COUNT,
    Aggregation,
    ProgramSpec,
)
from profiler.errors import CollectorUnavailable, StprofError, TracingError
from profiler.model import Faults, ProcessStats, Profile, Stacks, log2_bucket, merge_hist

Key = tuple[Any, ...]


@dataclass
class DtraceRecords:
    """The aggregations one run printed, before they become a Profile.

    ``hists`` are already in profiler.model's log2 buckets; ``stacks`` keys
    are frames as dtrace printed them, leaf first.
    """

    scalars: dict[str, dict[Key, int]] = field(default_factory=dict)
    hists: dict[str, dict[Key, list[int]]] = field(default_factory=dict)
    stacks: dict[str, dict[tuple[str, ...], int]] = field(default_factory=dict)
    ready: bool = False
    complete: bool = False
    drop_messages: list[str] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)

    def scalar(self, name: str) -> dict[Key, int]:
        return self.scalars.get(name, {})

    def add_scalar(self, name: str, key: Key, value: int) -> None:
        table = self.scalars.setdefault(name, {})
        table[key] = table.get(key, 0) + value

    def add_hist(self, name: str, key: Key, hist: list[int]) -> None:
        merge_hist(self.hists.setdefault(name, {}).setdefault(key, []), hist)

    def add_stack(self, name: str, frames: tuple[str, ...], count: int) -> None:
        table = self.stacks.setdefault(name, {})
        table[frames] = table.get(frames, 0) + count


# ------------------------------------------------------------- histograms
def quantize_bucket(value: int) -> int:
    """The profiler.model log2 bucket of dtrace's quantize row ``value``.

    A quantize row labelled v >= 1 (a power of two) counts values in
    [v, 2v): model bucket ``v.bit_length()``, the bucket holding
    [2**(i-1), 2**i).  Row 0 counts zeros (bucket 0).  Times are never
    negative; a negative row (a clock step between CPUs) is folded into 0.
    """
    return log2_bucket(value) if value > 0 else 0


def hist_from_rows(rows: list[tuple[int, int]]) -> list[int]:
    """A model histogram from (quantize row value, count) pairs."""
    hist: list[int] = []
    for value, count in rows:
        index = quantize_bucket(value)
        if index >= len(hist):
            hist.extend([0] * (index + 1 - len(hist)))
        hist[index] += count
    return hist


# ---------------------------------------------------------------- stacks
_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+$")


def frame_function(frame: str) -> str:
    """``kernel`pagezero+0x10`` -> ``pagezero``; an unresolved address stays as is."""
    name = frame.strip()
    if "`" in name:
        name = name.split("`", 1)[1]
    return _OFFSET.sub("", name) or frame.strip()


def fold_stack(frames_leaf_first: tuple[str, ...]) -> str:
    """One folded line, root first, ';'-joined, as flamegraph.pl reads them."""
    return ";".join(frame_function(frame) for frame in reversed(frames_leaf_first))


# ------------------------------------------------------------- text parser
def _label_of(line: str) -> tuple[str, str] | None:
    """(aggregation name, rest of the line) for a ``stprof:name ...`` line."""
    if not line.startswith(LABEL_PREFIX):
        return None
    head, _, rest = line[len(LABEL_PREFIX):].partition(" ")
    return head, rest


def _parse_keys(agg: Aggregation, text: str) -> Key:
    """Keys from the text between the label and the value; the last key takes the rest."""
    if not agg.keys:
        return ()
    parts = text.split(" ", len(agg.keys) - 1)
    if len(parts) != len(agg.keys):
        raise ValueError(f"expected {len(agg.keys)} keys in {text!r}")
    return tuple(int(part) if kind == "int" else part for kind, part in zip(agg.keys, parts))


def _parse_scalar_line(agg: Aggregation, rest: str) -> tuple[Key, int]:
    keys_text, _, value = rest.rpartition(" ")
    return _parse_keys(agg, keys_text), int(value)


def parse_quantize_row(line: str) -> tuple[int, int] | None:
    """(row value, count) of one quantize table row; None for headers and blanks.

    A row is ``%16lld |<bar> %-9lld``: the value left of the first ``|``,
    the count the last word.
    """
    left, bar, right = line.partition("|")
    words = right.split()
    if not bar or not words:
        return None
    value_text = left.replace("@", "").strip()
    try:
        return int(value_text), int(words[-1])
    except ValueError:
        return None


def _read_hist(lines: Iterator[str]) -> list[tuple[int, int]]:
    rows: list[tuple[int, int]] = []
    for line in lines:
        if line.strip() == HIST_END:
            return rows
        row = parse_quantize_row(line)
        if row is not None:
            rows.append(row)
    raise ValueError(f"quantize table without its closing {HIST_END!r} line")


def _read_stack(lines: Iterator[str]) -> tuple[tuple[str, ...], int]:
    frames: list[str] = []
    for line in lines:
        if line.startswith(STACK_COUNT + " "):
            return tuple(frames), int(line[len(STACK_COUNT) + 1:])
        if line.strip():
            frames.append(line.strip())
    raise ValueError(f"stack without its closing {STACK_COUNT!r} line")


def _parse_text_record(records: DtraceRecords, agg: Aggregation, rest: str,
                       lines: Iterator[str]) -> None:
    if agg.is_stack:
        frames, count = _read_stack(lines)
        records.add_stack(agg.name, frames, count)
    elif agg.is_hist:
        key = _parse_keys(agg, rest.strip())
        records.add_hist(agg.name, key, hist_from_rows(_read_hist(lines)))
    else:
        key, value = _parse_scalar_line(agg, rest)
        records.add_scalar(agg.name, key, value)


def parse_text(text: str) -> DtraceRecords:
    """Records from the labelled text output (dtrace without oformat)."""
    records = DtraceRecords()
    lines = iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if stripped == READY_MARKER:
            records.ready = True
            continue
        if stripped == END_MARKER:
            records.complete = True
            continue
        labelled = _label_of(line)
        agg = AGGREGATIONS.get(labelled[0]) if labelled else None
        if labelled is None or agg is None:
            if stripped:
                records.unparsed.append(line)
            continue
        try:
            _parse_text_record(records, agg, labelled[1], lines)
        except ValueError:
            records.unparsed.append(line)
    return records


# ------------------------------------------------------------- JSON parser
def _json_key(item: Any) -> Any:
    """One key of an aggregation-data entry: a bare value or ``{"value": ...}``."""
    if isinstance(item, dict):
        if "stack-frames" in item:
            return tuple(_json_frame(frame) for frame in item["stack-frames"])
        if "value" in item:
            return item["value"]
        if len(item) == 1:
            return next(iter(item.values()))
    return item


def _json_frame(frame: Any) -> str:
    """A stack frame in the text form (module`name+offset) so both formats fold alike."""
    if isinstance(frame, dict):
        symbol = frame.get("symbol")
        if symbol:
            return str(symbol)
        name = frame.get("name") or frame.get("offset") or ""
        module = frame.get("module")
        return f"{module}`{name}" if module else str(name)
    return str(frame)


def _typed_keys(agg: Aggregation, raw_keys: list[Any]) -> Key:
    keys = tuple(_json_key(item) for item in raw_keys)
    return tuple(int(value) if kind == "int" else value
                 for kind, value in zip(agg.keys, keys))


_VALUE_FIELDS = ("count", "sum", "min", "max", "avg", "stddev", "value")


def _json_scalar_value(entry: dict[str, Any]) -> int:
    for name in _VALUE_FIELDS:
        if name in entry:
            return int(entry[name])
    raise ValueError(f"no value in aggregation entry {entry!r}")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _parse_json_aggregation(records: DtraceRecords, item: dict[str, Any]) -> None:
    name = str(item["aggregation-name"]).lstrip("@")
    agg = AGGREGATIONS.get(name)
    if agg is None:
        records.unparsed.append(json.dumps(item)[:200])
        return
    for entry in _as_list(item.get("aggregation-data")):
        keys = _as_list(entry.get("keys"))
        if agg.is_stack:
            frames = _json_key(keys[0]) if keys else ()
            records.add_stack(name, tuple(frames), _json_scalar_value(entry))
        elif agg.is_hist:
            rows = [(int(b["value"]), int(b["count"])) for b in _as_list(entry.get("buckets"))]
            records.add_hist(name, _typed_keys(agg, keys), hist_from_rows(rows))
        else:
            records.add_scalar(name, _typed_keys(agg, keys), _json_scalar_value(entry))


def _parse_json_output_item(records: DtraceRecords, item: Any) -> None:
    if not isinstance(item, dict):
        return
    if "aggregation-name" in item:
        _parse_json_aggregation(records, item)
        return
    message = str(item.get("message", "")).strip()
    if message == READY_MARKER:
        records.ready = True
    elif message == END_MARKER:
        records.complete = True


def _json_probes(text: str) -> list[Any]:
    document = json.loads(text)
    if not isinstance(document, dict) or not isinstance(document.get("dtrace"), dict):
        raise ValueError("not dtrace's structured output (no top-level 'dtrace' object)")
    return _as_list(document["dtrace"].get("probes"))


def parse_json(text: str) -> DtraceRecords:
    """Records from dtrace's ``-x oformat=json`` output."""
    records = DtraceRecords()
    if not text.strip():
        return records
    try:
        probes = _json_probes(text)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        records.unparsed.append(f"unreadable JSON output: {exc}")
        return records
    for probe in probes:
        if not isinstance(probe, dict):
            continue
        if probe.get("name") == "DROP":
            records.drop_messages.append(str(probe.get("msg", "")).strip())
            continue
        for item in _as_list(probe.get("output")):
            _parse_json_output_item(records, item)
    return records


def parse_output(text: str, output_format: str) -> DtraceRecords:
    return parse_json(text) if output_format == "json" else parse_text(text)


# ---------------------------------------------------------------- stderr
_PREFIX = "dtrace: "
_DROP = re.compile(r"^(?:\[\w+\] )?(?P<count>\d+) (?P<kind>.*?\bdrops?\b.*?)"
                   r"(?: on CPU (?P<cpu>\d+))?$")
_PROBE_ERROR = re.compile(r"^error on enabled probe ID \d+ \((?P<probe>[^)]*)\): (?P<what>.*)$")
_EXIT_NOTICE = re.compile(r"^pid \d+ (has exited|exited with status -?\d+|terminated by \S+)$")
_DROP_ADVICE = {
    "drops": "principal buffer full; records were lost",
    "aggregation drops": "aggregation buffer full; figures undercount",
    "dynamic variable drops": "dynamic variable space full; some call and fault times were lost",
}
MAX_ERROR_EXAMPLES = 3


@dataclass
class _DropTally:
    count: int = 0
    cpus: list[str] = field(default_factory=list)


def _drop_kind(kind: str) -> str:
    return re.sub(r"\bdrops?\b", "drops", kind.strip())


def _drop_note(kind: str, tally: _DropTally) -> str:
    where = f" on CPU {', '.join(tally.cpus)}" if tally.cpus else ""
    advice = _DROP_ADVICE.get(kind.split(" with ")[0])
    return f"dtrace: {tally.count} {kind}{where}" + (f" ({advice})" if advice else "")


def _error_note(examples: list[str], count: int) -> str:
    if count == 1:
        return _PREFIX + examples[0]
    return (f"dtrace: {count} errors on enabled probes (the affected events were not "
            f"counted), e.g. " + "; ".join(examples))


def stderr_notes(stderr: str, drop_messages: list[str] | None = None) -> list[str]:
    """Notes from dtrace's stderr (and JSON DROP records), none hidden.

    Drops are summed by kind; runtime errors are counted with a few
    examples; exit notices are left out (stprof reports the exit status
    itself); every other line is kept as dtrace wrote it.
    """
    drops: dict[str, _DropTally] = {}
    errors: list[str] = []
    others: list[str] = []
    lines = [line.strip() for line in stderr.splitlines()]
    lines += [_PREFIX + msg for msg in (drop_messages or [])]
    for line in lines:
        message = line[len(_PREFIX):] if line.startswith(_PREFIX) else line
        if not message or _EXIT_NOTICE.match(message):
            continue
        drop = _DROP.match(message)
        if drop:
            tally = drops.setdefault(_drop_kind(drop["kind"]), _DropTally())
            tally.count += int(drop["count"])
            if drop["cpu"] is not None and drop["cpu"] not in tally.cpus:
                tally.cpus.append(drop["cpu"])
        elif _PROBE_ERROR.match(message):
            errors.append(message)
        elif line not in others:
            others.append(line)
    notes = [_drop_note(kind, tally) for kind, tally in drops.items()]
    if errors:
        notes.append(_error_note(list(dict.fromkeys(errors))[:MAX_ERROR_EXAMPLES], len(errors)))
    return notes + others


# ----------------------------------------------------------- fatal errors
_FIX_ROOT = "run stprof as root, e.g. with sudo"
_FIX_KLDLOAD = "load the DTrace modules: kldload dtraceall"
_FIX_SIP = "allow DTrace under System Integrity Protection: csrutil enable --without dtrace"


def failure_error(stderr: str, action: str = "dtrace failed") -> StprofError:
    """The one-line error for a dtrace that would not start, with its fix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(lines)
    first = lines[0] if lines else "no message"
    if "requires additional privileges" in text:
        return CollectorUnavailable("DTrace requires additional privileges", _FIX_ROOT)
    if "device not available" in text:
        return CollectorUnavailable("the DTrace device is not available", _FIX_KLDLOAD)
    if "System Integrity Protection" in text:
        return CollectorUnavailable("System Integrity Protection blocks DTrace probes", _FIX_SIP)
    if "does not match any probes" in text:
        return CollectorUnavailable(f"DTrace providers are not loaded ({first})", _FIX_KLDLOAD)
    if "could not enable tracing" in text and "ermission denied" in text:
        return CollectorUnavailable(f"dtrace could not enable tracing ({first})", _FIX_ROOT)
    return TracingError(f"{action}: {first}")


# --------------------------------------------------------- into a Profile
def _by_name(table: dict[Key, int]) -> dict[str, int]:
    return {str(key[0]): value for key, value in table.items()}


def fill_syscalls(profile: Profile, records: DtraceRecords, spec: ProgramSpec,
                  errno_name: Callable[[int], str]) -> None:
    calls = _by_name(records.scalar("sc_calls"))
    totals = _by_name(records.scalar("sc_ns"))
    minimums = _by_name(records.scalar("sc_min"))
    maximums = _by_name(records.scalar("sc_max"))
    faults = _by_name(records.scalar("sc_faults"))
    fault_ns = _by_name(records.scalar("sc_fault_ns"))
    hists = {str(key[0]): hist for key, hist in records.hists.get("sc_hist", {}).items()}
    for name, count in calls.items():
        stats = profile.syscall(name)
        stats.calls = count
        stats.total_ns = totals.get(name, 0)
        stats.min_ns = minimums.get(name)
        stats.max_ns = maximums.get(name, 0)
        stats.hist = list(hists.get(name, []))
        stats.faults = faults.get(name, 0)
        stats.fault_ns = fault_ns.get(name, 0) if spec.fault_timed else None
    for (name, number), count in records.scalar("sc_errno").items():
        stats = profile.syscall(str(name))
        errno_label = errno_name(int(number))
        stats.errors += count
        stats.errnos[errno_label] = stats.errnos.get(errno_label, 0) + count


def fill_faults(profile: Profile, records: DtraceRecords, spec: ProgramSpec) -> None:
    probe = spec.fault_probe
    if probe is None:
        profile.faults = Faults(method="none", precision="no fault probe found")
        return
    counts = _by_name(records.scalar("fault_count"))
    faults = Faults(
        count=sum(counts.values()),
        user=counts.get(OUTSIDE_SYSCALL, 0),
        in_syscall=counts.get(IN_SYSCALL, 0),
        method=f"dtrace {probe.describe()}",
    )
    if probe.timed:
        times = _by_name(records.scalar("fault_ns"))
        faults.total_ns = sum(times.values())
        faults.user_ns = times.get(OUTSIDE_SYSCALL, 0)
        faults.in_syscall_ns = times.get(IN_SYSCALL, 0)
        faults.hist = list(records.hists.get("fault_hist", {}).get((), []))
        faults.precision = (f"exact: every call of {probe.name}() by the traced threads, "
                            "timed from entry to return (minor/major split not measured)")
    else:
        faults.precision = "counts only: every vminfo as_fault event; no time measured"
    profile.faults = faults


def fill_traps(profile: Profile, records: DtraceRecords, spec: ProgramSpec) -> None:
    """Trap counts and time, outside and inside syscalls, into ``profile.timing``."""
    if spec.trap_function is None:
        return
    counts = _by_name(records.scalar("trap_count"))
    times = _by_name(records.scalar("trap_ns"))
    profile.timing.update(
        traps_user=counts.get(OUTSIDE_SYSCALL, 0),
        trap_user_ns=times.get(OUTSIDE_SYSCALL, 0),
        traps_in_syscall=counts.get(IN_SYSCALL, 0),
        trap_in_syscall_ns=times.get(IN_SYSCALL, 0),
        trap_method=f"dtrace fbt {spec.trap_function} entry/return (outermost trap only)",
    )


def fill_stacks(profile: Profile, records: DtraceRecords, spec: ProgramSpec) -> None:
    if spec.stack_condition is None:
        return
    folded: dict[str, int] = {}
    for frames, count in records.stacks.get("stacks", {}).items():
        line = fold_stack(frames)
        folded[line] = folded.get(line, 0) + count
    profile.stacks = Stacks(mode=spec.stacks, frequency_hz=spec.stack_hz,
                            samples=sum(folded.values()), folded=folded)


def fill_processes(profile: Profile, records: DtraceRecords) -> None:
    """One ProcessStats per pid; an exec'd process shows its most active name."""
    by_pid: dict[int, ProcessStats] = {}
    name_calls: dict[int, dict[str, int]] = {}
    for (pid, ppid, comm), count in records.scalar("proc_calls").items():
        stats = by_pid.setdefault(pid, ProcessStats(pid=pid, ppid=ppid))
        stats.syscalls += count
        names = name_calls.setdefault(pid, {})
        names[comm] = names.get(comm, 0) + count
    for (pid, ppid, _comm), count in records.scalar("proc_errors").items():
        by_pid.setdefault(pid, ProcessStats(pid=pid, ppid=ppid)).syscall_errors += count
    for (pid, ppid, _comm), total in records.scalar("proc_ns").items():
        by_pid.setdefault(pid, ProcessStats(pid=pid, ppid=ppid)).syscall_ns += total
    for pid, names in name_calls.items():
        by_pid[pid].comm = max(names.items(), key=lambda item: (item[1], item[0]))[0]
    profile.processes = [by_pid[pid] for pid in sorted(by_pid)]


def _completeness_notes(records: DtraceRecords) -> list[str]:
    notes = []
    if not records.complete:
        notes.append("dtrace's output ended before stprof's end marker (dtrace was "
                     "interrupted or its output was cut): the figures may be incomplete")
    if records.unparsed:
        notes.append(f"{len(records.unparsed)} line(s) of dtrace output not understood, "
                     f"first: {records.unparsed[0][:160]!r}")
    return notes


def default_errno_name(number: int) -> str:
    """This host's name for an errno value (dtrace runs on this host)."""
    return errno_module.errorcode.get(number, f"E{number}")


def fill_profile(profile: Profile, records: DtraceRecords, spec: ProgramSpec,
                 stderr: str = "",
                 errno_name: Callable[[int], str] = default_errno_name) -> Profile:
    """Put everything the run measured into ``profile``; returns it."""
    fill_syscalls(profile, records, spec, errno_name)
    fill_faults(profile, records, spec)
    fill_traps(profile, records, spec)
    fill_stacks(profile, records, spec)
    fill_processes(profile, records)
    profile.timing.setdefault("method", "dtrace: timestamp at syscall entry and return")
    profile.timing["dtrace_output"] = spec.output
    for note in _completeness_notes(records) + stderr_notes(stderr, records.drop_messages):
        profile.note(note)
    return profile
