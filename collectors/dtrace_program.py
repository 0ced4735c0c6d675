"""The D program the DTrace collector runs, generated from the user's options.

What it measures (the lecture's dd scripts, generalised):

- every syscall of the target (and, with ``follow``, its descendants): calls,
  time from entry to return, min/max, a ``quantize()`` of the times, and
  errors by errno;
- time in ``trap()`` (fbt), split into traps taken outside a syscall and
  inside one (a page fault on a copyout, say);
- page faults: fbt on ``vm_fault_trap``/``vm_fault`` on FreeBSD (there is no
  vminfo provider there), with their handling time; ``vminfo:::as_fault``
  (counts only) where fbt has neither, as on illumos and macOS;
- kernel stacks sampled with ``profile-N`` while in a fault, or in all kernel
  time.

Counting starts at the target's ``execve`` (when stprof runs the command), so
stprof's own pre-exec syscalls in the paused child are never counted.

Output is meant to parse without guessing: in text mode every aggregation is
printed in END with ``printa()`` and an explicit format whose first word is a
``stprof:<aggregation>`` label, one record a line; a quantize table or a
stack runs from its label line to an explicit closing line.  In JSON mode
(``-x oformat=json``) dtrace labels the aggregations itself.  BEGIN prints
:data:`READY_MARKER` (the collector releases the command once it sees it) and
END prints :data:`END_MARKER` last.
"""

from __future__ import annotations

from dataclasses import dataclass

READY_MARKER = "stprof:ready"
END_MARKER = "stprof:end"
LABEL_PREFIX = "stprof:"
HIST_END = "stprof:hist-end"
STACK_COUNT = "stprof:stack-count"

# Key of the trap and fault aggregations: where the thread was.
IN_SYSCALL = "syscall"
OUTSIDE_SYSCALL = "user"

OUTPUT_FORMATS = ("text", "json")
STACK_MODES = ("faults", "all", "off")


@dataclass(frozen=True)
class FaultProbe:
    """Where page faults are counted: fbt on a kernel function, or vminfo."""

    provider: str  # "fbt" or "vminfo"
    name: str  # the kernel function (fbt) or the vminfo probe name

    @property
    def timed(self) -> bool:
        """fbt has entry and return, so it measures each fault's time; vminfo only counts."""
        return self.provider == "fbt"

    @property
    def entry(self) -> str:
        if self.provider == "fbt":
            return f"fbt::{self.name}:entry"
        return f"{self.provider}:::{self.name}"

    @property
    def exit(self) -> str:
        return f"fbt::{self.name}:return"

    def describe(self) -> str:
        return f"fbt {self.name} entry/return" if self.timed else self.entry


# Probe points tried for faults, best first (FreeBSD, older FreeBSD, illumos/macOS).
FAULT_PROBES = (
    FaultProbe("fbt", "vm_fault_trap"),
    FaultProbe("fbt", "vm_fault"),
    FaultProbe("vminfo", "as_fault"),
)


@dataclass(frozen=True)
class ProgramSpec:
    """Everything the D program depends on."""

    follow: bool = True
    attach: bool = False
    stacks: str = "off"  # "faults", "all" or "off"
    stack_hz: int = 999
    output: str = "text"  # "text" or "json"
    trap_function: str | None = "trap"
    fault_probe: FaultProbe | None = FAULT_PROBES[0]

    def __post_init__(self) -> None:
        if self.stacks not in STACK_MODES:
            raise ValueError(f"stacks must be one of {STACK_MODES}, not {self.stacks!r}")
        if self.output not in OUTPUT_FORMATS:
            raise ValueError(f"output must be one of {OUTPUT_FORMATS}, not {self.output!r}")
        if self.stack_hz <= 0:
            raise ValueError("stack_hz must be positive")

    @property
    def fault_timed(self) -> bool:
        return self.fault_probe is not None and self.fault_probe.timed

    @property
    def stack_condition(self) -> str | None:
        """The per-thread test for "sample this thread's stack", None if impossible.

        ``faults`` samples while the thread is inside the timed fault handler,
        or, failing that, inside ``trap()`` (on FreeBSD nearly all of a
        process's traps are page faults).
        """
        if self.stacks == "all":
            return "1"
        if self.stacks == "faults":
            if self.fault_timed:
                return "self->pf_ts != 0"
            if self.trap_function is not None:
                return "self->trap_depth > 0"
        return None


# ------------------------------------------------------------ aggregations
@dataclass(frozen=True)
class Aggregation:
    """One aggregation: its name, the kinds of its keys and its function.

    Key kinds are ``str``, ``int`` or ``stack``.  In text mode only the last
    key may hold spaces (the parser gives it the rest of the line): execname
    comes last; syscall names hold none.
    """

    name: str
    keys: tuple[str, ...]
    function: str  # count, sum, min, max or quantize

    @property
    def is_hist(self) -> bool:
        return self.function == "quantize"

    @property
    def is_stack(self) -> bool:
        return self.keys == ("stack",)

    def text_format(self) -> str:
        """The printa() format that prints this aggregation as labelled lines."""
        label = LABEL_PREFIX + self.name
        if self.is_stack:
            return f"{label}%k\\n{STACK_COUNT} %@d\\n"
        conversions = "".join(" %s" if kind == "str" else " %d" for kind in self.keys)
        if self.is_hist:
            return f"{label}{conversions}%@d\\n{HIST_END}\\n"
        return f"{label}{conversions} %@d\\n"


_PROC_KEYS = ("int", "int", "str")
AGGREGATIONS: dict[str, Aggregation] = {
    agg.name: agg
    for agg in (
        Aggregation("sc_calls", ("str",), "count"),
        Aggregation("sc_ns", ("str",), "sum"),
        Aggregation("sc_min", ("str",), "min"),
        Aggregation("sc_max", ("str",), "max"),
        Aggregation("sc_hist", ("str",), "quantize"),
        Aggregation("sc_errno", ("str", "int"), "count"),
        Aggregation("sc_faults", ("str",), "sum"),
        Aggregation("sc_fault_ns", ("str",), "sum"),
        Aggregation("proc_calls", _PROC_KEYS, "count"),
        Aggregation("proc_errors", _PROC_KEYS, "count"),
        Aggregation("proc_ns", _PROC_KEYS, "sum"),
        Aggregation("trap_count", ("str",), "count"),
        Aggregation("trap_ns", ("str",), "sum"),
        Aggregation("fault_count", ("str",), "count"),
        Aggregation("fault_ns", ("str",), "sum"),
        Aggregation("fault_hist", (), "quantize"),
        Aggregation("stacks", ("stack",), "count"),
    )
}


def aggregations_for(spec: ProgramSpec) -> list[Aggregation]:
    """The aggregations the program for ``spec`` fills, in printing order."""
    names = ["sc_calls", "sc_ns", "sc_min", "sc_max", "sc_hist", "sc_errno",
             "proc_calls", "proc_errors", "proc_ns"]
    if spec.trap_function is not None:
        names += ["trap_count", "trap_ns"]
    if spec.fault_probe is not None:
        names += ["fault_count", "sc_faults"]
    if spec.fault_timed:
        names += ["fault_ns", "fault_hist", "sc_fault_ns"]
    if spec.stack_condition is not None:
        names.append("stacks")
    return [AGGREGATIONS[name] for name in names]


# ---------------------------------------------------------------- program
def traced_predicate(spec: ProgramSpec) -> str:
    """The test for "this thread belongs to the traced tree, and counting has started"."""
    tree = "(pid == $target || progenyof($target))" if spec.follow else "pid == $target"
    return f"stprof_started && {tree}"


def _clause(probes: str, predicate: str | None, body: list[str]) -> str:
    lines = [probes]
    if predicate is not None:
        lines.append(f"/{predicate}/")
    lines.append("{")
    lines += [f"\t{statement}" for statement in body]
    lines.append("}")
    return "\n".join(lines)


def _where() -> str:
    """The key saying whether the thread is inside a syscall."""
    return f'self->sc_ts ? "{IN_SYSCALL}" : "{OUTSIDE_SYSCALL}"'


def _header() -> str:
    """Options: quiet; a fast switch rate so the ready marker shows within 0.1 s."""
    return "\n".join([
        "/* Generated by stprof's DTrace collector. */",
        "#pragma D option quiet",
        "#pragma D option switchrate=10hz",
        "#pragma D option dynvarsize=16m",
        "",
        "int stprof_started;",
    ])


def _begin_clause(spec: ProgramSpec) -> str:
    started = 1 if spec.attach else 0
    return _clause("dtrace:::BEGIN", None, [
        f"stprof_started = {started};",
        f'printf("%s\\n", "{READY_MARKER}");',
    ])


def _start_clauses(spec: ProgramSpec) -> list[str]:
    """Start counting at the target's execve; attached, counting starts at BEGIN.

    This clause comes before the syscall:::entry clause, so the execve itself
    is timed.
    """
    if spec.attach:
        return []
    return [_clause("syscall::execve:entry", "pid == $target && !stprof_started",
                    ["stprof_started = 1;"])]


def _syscall_clauses(spec: ProgramSpec) -> list[str]:
    proc = "pid, ppid, execname"
    return [
        _clause("syscall:::entry", traced_predicate(spec), ["self->sc_ts = timestamp;"]),
        _clause("syscall:::return", "self->sc_ts", [
            "this->ns = timestamp - self->sc_ts;",
            "@sc_calls[probefunc] = count();",
            "@sc_ns[probefunc] = sum(this->ns);",
            "@sc_min[probefunc] = min(this->ns);",
            "@sc_max[probefunc] = max(this->ns);",
            "@sc_hist[probefunc] = quantize(this->ns);",
            f"@proc_calls[{proc}] = count();",
            f"@proc_ns[{proc}] = sum(this->ns);",
        ]),
        # errno is the syscall's error (td_errno on FreeBSD); ERESTART and
        # EJUSTRETURN are negative and are not errors the caller sees.
        _clause("syscall:::return", "self->sc_ts && errno > 0", [
            "@sc_errno[probefunc, errno] = count();",
            f"@proc_errors[{proc}] = count();",
        ]),
        *_syscall_fault_clauses(spec),
        _clause("syscall:::return", "self->sc_ts", ["self->sc_ts = 0;"]),
    ]


def _syscall_fault_clauses(spec: ProgramSpec) -> list[str]:
    """Charge the faults a syscall took (counted in self->sc_pf*) to it at its return.

    Integers in thread-locals, not the syscall's name: no string copies in
    the dynamic variable space.
    """
    if spec.fault_probe is None:
        return []
    body = ["@sc_faults[probefunc] = sum(self->sc_pf);", "self->sc_pf = 0;"]
    if spec.fault_timed:
        body += ["@sc_fault_ns[probefunc] = sum(self->sc_pf_ns);", "self->sc_pf_ns = 0;"]
    return [_clause("syscall:::return", "self->sc_ts && self->sc_pf", body)]


def _trap_clauses(spec: ProgramSpec) -> list[str]:
    """Time the outermost trap() of a thread; a nested one (an NMI) is part of it."""
    if spec.trap_function is None:
        return []
    entry = f"fbt::{spec.trap_function}:entry"
    exit_ = f"fbt::{spec.trap_function}:return"
    return [
        _clause(entry, traced_predicate(spec), ["self->trap_depth++;"]),
        _clause(entry, "self->trap_depth == 1", ["self->trap_ts = timestamp;"]),
        _clause(exit_, "self->trap_depth == 1 && self->trap_ts", [
            "this->ns = timestamp - self->trap_ts;",
            f"@trap_count[{_where()}] = count();",
            f"@trap_ns[{_where()}] = sum(this->ns);",
            "self->trap_ts = 0;",
        ]),
        _clause(exit_, "self->trap_depth > 0", ["self->trap_depth--;"]),
    ]


def _fault_clauses(spec: ProgramSpec) -> list[str]:
    probe = spec.fault_probe
    if probe is None:
        return []
    if not probe.timed:
        return [
            _clause(probe.entry, f"{traced_predicate(spec)} && self->sc_ts",
                    ["self->sc_pf++;"]),
            _clause(probe.entry, traced_predicate(spec),
                    [f"@fault_count[{_where()}] = count();"]),
        ]
    return [
        _clause(probe.entry, traced_predicate(spec), ["self->pf_ts = timestamp;"]),
        _clause(probe.exit, "self->pf_ts && self->sc_ts", [
            "self->sc_pf++;",
            "self->sc_pf_ns += timestamp - self->pf_ts;",
        ]),
        _clause(probe.exit, "self->pf_ts", [
            "this->ns = timestamp - self->pf_ts;",
            f"@fault_count[{_where()}] = count();",
            f"@fault_ns[{_where()}] = sum(this->ns);",
            "@fault_hist = quantize(this->ns);",
            "self->pf_ts = 0;",
        ]),
    ]


def _stack_clauses(spec: ProgramSpec) -> list[str]:
    """Sample kernel stacks: arg0 is the kernel PC, 0 when the CPU was in user mode."""
    condition = spec.stack_condition
    if condition is None:
        return []
    predicate = f"arg0 != 0 && {traced_predicate(spec)}"
    if condition != "1":
        predicate += f" && {condition}"
    return [_clause(f"profile-{spec.stack_hz}", predicate, ["@stacks[stack()] = count();"])]


def _end_clause(spec: ProgramSpec) -> str:
    body = []
    for agg in aggregations_for(spec):
        if spec.output == "json":
            body.append(f"printa(@{agg.name});")
        else:
            body.append(f'printa("{agg.text_format()}", @{agg.name});')
    body.append(f'printf("%s\\n", "{END_MARKER}");')
    return _clause("dtrace:::END", None, body)


def generate(spec: ProgramSpec) -> str:
    """The whole D program for ``spec``."""
    parts = [
        _header(),
        _begin_clause(spec),
        *_start_clauses(spec),
        *_syscall_clauses(spec),
        *_trap_clauses(spec),
        *_fault_clauses(spec),
        *_stack_clauses(spec),
        _end_clause(spec),
    ]
    return "\n\n".join(parts) + "\n"
