"""make bench: stprof's overhead as paired ratios measured in one run.

Every workload's commands run round-robin (A B C ... A B C ...), so that the
load of a shared machine falls on all of them alike; each ratio is taken
pair by pair within a round, and the table shows its median and its min-max
over the rounds.  Under the table, the commands that make each row, to
reproduce it by hand.  This is a benchmark, not a test: it prints, and fails
only if a command cannot run at all.

How a command's time is read (its label says which):
- whole run: spawn to reap, stprof's start-up and report included;
- own time: the command itself, as stprof's profile measures it (wall_ns):
  from the release of the paused child (profiler.target.spawn_paused), just
  before its execve, until it has exited (its pidfd is readable).  stprof's
  rows read wall_ns from the profile; the untraced command and the floor
  probe's are timed here by the same steps (spawn_paused, release, pidfd), so
  that "ebpf (own time) / floor probe (own time)" compares like with like:
  spawn to reap would add the spawn and reap of dd to one side only.

--only picks workloads by name (e.g. --only storm,start-up) to iterate on one.
"probe-cost" (in the default set) weighs the storm's probes alone, per
syscall, from the kernel's accounting of each BPF program (it turns
kernel.bpf_stats_enabled on for its runs and restores it).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
STPROF = [sys.executable, "-m", "stprof"]


def dd(bs: str, count: int) -> list[str]:
    return ["dd", "if=/dev/zero", "of=/dev/null", f"bs={bs}", f"count={count}", "status=none"]


STORM = dd("1", 200_000)        # 400k syscalls: the eBPF probes' cost per syscall
SMALL_STORM = dd("1", 30_000)   # 60k syscalls: the ptrace tracers (each stop costs us)
BULK = dd("1M", 2000)           # bulk I/O: few syscalls, each copying 1 MB
DEMO = dd("10M", 1)             # the lecture's dd: page faults inside one read
FORKS = ["sh", "-c", "for i in $(seq 300); do /bin/true; done"]
# where the --timeline rows write their file (removed at the end)
TIMELINE_FILE = Path(tempfile.gettempdir()) / f"stprof-bench-timeline-{os.getpid()}.json"


# ------------------------------------------------------------------ commands
@dataclass
class Command:
    """One way of running a workload, and how its time is read."""

    label: str
    argv: list[str]
    # "whole": the process from spawn to reap; "own": the command's own time, as
    # the profile's wall_ns (for stprof, read from its profile; for others,
    # own_time_once: release of the paused child to its exit)
    time: str = "whole"
    under_floor: bool = False
    seconds: list[float] = field(default_factory=list)

    def shown(self) -> str:
        prefix = "under bench/floor.bpf.c: " if self.under_floor else ""
        if self.time == "own" and self.argv[:len(STPROF)] != STPROF:
            prefix += "own time (bench/run.py own_time_once) of: "
        return prefix + shlex.join(self.argv)


def stprof(collector: str, command: list[str], *extra: str) -> list[str]:
    return [*STPROF, "run", "--collector", collector, "--kernel-stacks", "off",
            "-o", os.devnull, *extra, "--", *command]


def time_once(argv: Sequence[str]) -> float:
    """Spawn to reap.  posix_spawn (a vfork) rather than fork: this process has
    bcc and LLVM loaded for the floor probe, and copying its page tables in a
    fork would add tens of milliseconds to every command it times."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        pid = os.posix_spawnp(argv[0], list(argv), dict(os.environ), file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, errors.fileno(), 2),
        ])
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            errors.seek(0)
            sys.exit(f"bench: {shlex.join(argv)} failed ({code}): "
                     f"{errors.read().decode(errors='replace').strip()[-300:]}")
    return elapsed


def own_time_once(argv: Sequence[str]) -> float:
    """The command's own time, measured as stprof measures a profile's wall_ns
    (collectors' _trace_command): a child paused at the gate is released, and
    the time runs until its pidfd says it has exited (not reaped)."""
    from profiler.target import spawn_paused

    child = spawn_paused(list(argv))
    try:
        pidfd = os.pidfd_open(child.pid)
        try:
            child.release()
            error = child.exec_error()
            select.select([pidfd], [], [])
            ended = time.monotonic_ns()
        finally:
            os.close(pidfd)
        _, status = os.waitpid(child.pid, 0)
    except BaseException:
        child.kill()
        raise
    finally:
        child.close()
    code = os.waitstatus_to_exitcode(status)
    if error is not None or code != 0:
        sys.exit(f"bench: {shlex.join(argv)} failed ({error or code})")
    assert child.released_ns is not None
    return (ended - child.released_ns) / 1e9


class FloorProbe:
    """bench/floor.bpf.c: two clock reads per syscall and nothing else.

    Loaded once, attached only while a command is timed under it.
    """

    TRACEPOINTS = (b"sys_enter", b"sys_exit")

    def __init__(self) -> None:
        from bcc import BPF

        # bcc attaches RAW_TRACEPOINT_PROBE functions as it loads them
        self._bpf = BPF(src_file=str(ROOT / "bench" / "floor.bpf.c").encode())
        self._attached = set(self.TRACEPOINTS)
        self._detach()

    def _detach(self) -> None:
        for tracepoint in sorted(self._attached):
            self._bpf.detach_raw_tracepoint(tracepoint)
            self._attached.discard(tracepoint)

    def time(self, argv: Sequence[str], own: bool = False) -> float:
        try:
            for tracepoint in self.TRACEPOINTS:
                self._bpf.attach_raw_tracepoint(tp=tracepoint,
                                                fn_name=b"raw_tracepoint__" + tracepoint)
                self._attached.add(tracepoint)
            return own_time_once(argv) if own else time_once(argv)
        finally:
            self._detach()

    def attached_fds(self) -> list[int]:
        """The programs' fds (loaded once, at the first attach)."""
        return [function.fd for function in self._bpf.funcs.values()]

    def attached_run(self, argv: Sequence[str]) -> Callable[[], float]:
        """A run of argv's own time under the probe, attached first (so its
        programs are loaded when attached_fds() is read)."""
        for tracepoint in self.TRACEPOINTS:
            self._bpf.attach_raw_tracepoint(tp=tracepoint,
                                            fn_name=b"raw_tracepoint__" + tracepoint)
            self._attached.add(tracepoint)

        def run() -> float:
            try:
                return own_time_once(argv)
            finally:
                self._detach()
        return run

    def close(self) -> None:
        self._bpf.cleanup()


def run_command(command: Command, floor: FloorProbe | None, scratch: Path) -> float:
    if command.under_floor:
        assert floor is not None
        return floor.time(command.argv, own=command.time == "own")
    if command.time == "own" and command.argv[:len(STPROF)] != STPROF:
        return own_time_once(command.argv)
    if command.time == "own":
        saved = scratch / "profile.json"
        after_run = command.argv.index("run") + 1
        time_once([*command.argv[:after_run], "--json", str(saved), *command.argv[after_run:]])
        return float(json.loads(saved.read_text())["wall_ns"]) / 1e9
    return time_once(command.argv)


def measure(commands: list[Command], rounds: int, floor: FloorProbe | None,
            settle: float = 0.0) -> None:
    """Round-robin: every command once per round, so noise hits all alike; each
    starts ``settle`` seconds after the one before ended: an eBPF run's
    tracepoints are released by its keeper after stprof has exited (RCU
    waits, tens of ms of kernel work), which would otherwise land in whichever
    command comes next (in the storm's rounds, the untraced and floor runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for command in commands:
                time.sleep(settle)
                command.seconds.append(run_command(command, floor, Path(tmp)))


# ------------------------------------------------------------------ rows
@dataclass
class Row:
    workload: str
    a: Command
    b: Command
    target: float | None = None

    def ratios(self) -> list[float]:
        return [x / y for x, y in zip(self.a.seconds, self.b.seconds) if y > 0]

    def cells(self, number: int) -> list[str]:
        ratios = self.ratios()
        median = statistics.median(ratios)
        verdict = ""
        if self.target is not None:
            verdict = f"<= {self.target:.2f}x: {'met' if median <= self.target else 'MISSED'}"
        return [
            f"[{number}] {self.workload}: {self.a.label} / {self.b.label}",
            f"{median:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
            f"{statistics.median(self.a.seconds):.3f} s / "
            f"{statistics.median(self.b.seconds):.3f} s",
            verdict,
        ]


@dataclass
class Bench:
    rounds: int
    slow_rounds: int
    floor: FloorProbe | None
    settle: float = 0.0
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def workload(self, name: str, commands: list[Command], rounds: int,
                 pairs: Callable[[dict[str, Command]], list[Row]]) -> None:
        runnable = [c for c in commands if not c.under_floor or self.floor is not None]
        print(f"bench: {name}: {len(runnable)} commands x {rounds} rounds", file=sys.stderr)
        measure(runnable, rounds, self.floor, self.settle)
        by_label = {c.label: c for c in runnable}
        self.rows += pairs(by_label)


def pick(by_label: dict[str, Command], workload: str,
         wanted: list[tuple[str, str, float | None]]) -> list[Row]:
    """The rows whose two commands both ran here."""
    return [Row(workload, by_label[a], by_label[b], target) for a, b, target in wanted
            if a in by_label and b in by_label]


def peers(argv: list[str], follow: bool = True) -> list[Command]:
    """strace -c and perf trace -s, where installed (perf trace needs root)."""
    found = []
    if shutil.which("strace"):
        found.append(Command("strace -c -f" if follow else "strace -c",
                             ["strace", "-c", *(["-f"] if follow else []), "-o", os.devnull,
                              *argv]))
    if shutil.which("perf") and os.geteuid() == 0:
        found.append(Command("perf trace -s", ["perf", "trace", "-s", "-o", os.devnull, *argv]))
    return found


def ebpf_available() -> bool:
    from collectors import collector_class

    return collector_class("ebpf").availability().ok


# ------------------------------------------------------------------ workloads
def bench_storm(bench: Bench, ebpf: bool) -> None:
    """400k syscalls: eBPF against the floor any exact per-call timer costs here."""
    if not ebpf:
        return
    from collectors.base import DEFAULT_STACK_HZ

    commands = [
        Command("untraced (own time)", STORM, time="own"),
        Command("floor probe (own time)", STORM, time="own", under_floor=True),
        Command("ebpf (own time)", stprof("ebpf", STORM), time="own"),
        Command(f"ebpf, stacks at {DEFAULT_STACK_HZ} Hz (own time)",
                stprof("ebpf", STORM, "--kernel-stacks", "faults"), time="own"),
        Command("ebpf --timeline (own time)",
                stprof("ebpf", STORM, "--timeline", str(TIMELINE_FILE)), time="own"),
    ]
    bench.workload("dd bs=1 count=200000", commands, bench.rounds, lambda c: pick(
        c, "dd bs=1 count=200000", [
            ("ebpf (own time)", "untraced (own time)", None),
            ("floor probe (own time)", "untraced (own time)", None),
            ("ebpf (own time)", "floor probe (own time)", 1.05),
            (f"ebpf, stacks at {DEFAULT_STACK_HZ} Hz (own time)", "untraced (own time)", None),
            ("ebpf --timeline (own time)", "ebpf (own time)", None),
        ]))


def probe_nanoseconds(fds: list[int], run: Callable[[], object]) -> float:
    """What ``run`` cost in the programs ``fds``, per syscall (an entry and an
    exit), from the kernel's own accounting (run_time_ns / run_cnt)."""
    from collectors import ebpf_kernel

    def totals() -> tuple[int, int]:
        stats = [ebpf_kernel.run_stats(fd) or (0, 0) for fd in fds]
        return sum(s[0] for s in stats), sum(s[1] for s in stats)

    time_before, runs_before = totals()
    run()
    time_after, runs_after = totals()
    return 2 * (time_after - time_before) / max(1, runs_after - runs_before)


def probe_cost(bench: Bench) -> None:
    """The storm's cost in the probes alone, stprof's sys_enter/sys_exit pair
    against the floor's, per syscall, with kernel.bpf_stats_enabled on for the
    while (run_time_ns/run_cnt of each program; the probes run for every
    process's syscalls, dd's are nearly all of them).  Wall times on a shared
    machine move with its load; this does not, and it says how far stprof's
    probes are from the floor's.  stprof runs in this process here (the same
    probes as the CLI's), alternating with the floor."""
    from collectors import ebpf_kernel
    from collectors.base import Options
    from collectors.ebpf import EbpfCollector

    if bench.floor is None:
        return
    floor = bench.floor
    sysctl = ebpf_kernel.BPF_STATS_SYSCTL
    try:
        was = sysctl.read_text().strip()
        sysctl.write_text("1")
    except OSError as exc:
        bench.lines.append(f"probe cost: kernel.bpf_stats_enabled not available ({exc})")
        return
    print(f"bench: probe cost: 2 commands x {bench.rounds} rounds", file=sys.stderr)
    ratios, ours, floors = [], [], []
    try:
        with EbpfCollector(Options(command=STORM, kernel_stacks="off")) as collector:
            collector.prepare()
            hot = [f.fd for name, f in collector.bpf_functions().items()
                   if name in (b"raw_tracepoint__sys_enter", b"raw_tracepoint__sys_exit")]
            for _ in range(bench.rounds):
                floors.append(probe_nanoseconds(floor.attached_fds(), floor.attached_run(STORM)))
                ours.append(probe_nanoseconds(hot, collector.run))
                ratios.append(ours[-1] / floors[-1])
    finally:
        sysctl.write_text(was)
    bench.lines.append(
        f"probe cost per syscall on dd bs=1 count=200000 (kernel.bpf_stats_enabled): stprof's "
        f"sys_enter+sys_exit {statistics.median(ours):.0f} ns ({min(ours):.0f}-{max(ours):.0f}), "
        f"the floor's {statistics.median(floors):.0f} ns ({min(floors):.0f}-{max(floors):.0f}); "
        f"paired ratio {statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f})")


def bench_trace_set(bench: Bench, ebpf: bool) -> None:
    """400k syscalls, none of them traced (-e trace=openat): what untraced calls cost."""
    name = "dd bs=1 count=200000, -e trace=openat"
    only = ("-e", "trace=openat")
    commands = [Command("untraced", STORM),
                Command("ptrace -e trace=openat (own time)", stprof("ptrace", STORM, *only),
                        time="own")]
    if ebpf:
        commands += [
            Command("ebpf --no-budget -e trace=openat (own time)",
                    stprof("ebpf", STORM, "--no-budget", *only), time="own"),
            Command("ebpf -e trace=openat (own time)", stprof("ebpf", STORM, *only),
                    time="own"),
        ]
    if shutil.which("strace"):
        commands.append(Command("strace --seccomp-bpf -f -e trace=openat",
                                ["strace", "--seccomp-bpf", "-f", "-c", "-o", os.devnull,
                                 "-e", "trace=openat", *STORM]))
    bench.workload(name, commands, bench.rounds, lambda c: pick(c, name, [
        ("ptrace -e trace=openat (own time)", "untraced", 1.3),
        ("ebpf --no-budget -e trace=openat (own time)", "untraced", 1.3),
        ("ebpf -e trace=openat (own time)", "untraced", None),
        ("strace --seccomp-bpf -f -e trace=openat", "untraced", None),
    ]))


def bench_small_storm(bench: Bench) -> None:
    """60k syscalls: ptrace against strace and perf trace (each stop costs)."""
    commands = [Command("untraced", SMALL_STORM), Command("ptrace", stprof("ptrace", SMALL_STORM)),
                Command("ptrace --timeline",
                        stprof("ptrace", SMALL_STORM, "--timeline", str(TIMELINE_FILE))),
                *peers(SMALL_STORM)]
    bench.workload("dd bs=1 count=30000", commands, bench.slow_rounds, lambda c: pick(
        c, "dd bs=1 count=30000", [
            ("ptrace", "strace -c -f", 0.9),
            ("ptrace", "perf trace -s", None),
            ("ptrace", "untraced", None),
            ("strace -c -f", "untraced", None),
            ("ptrace --timeline", "ptrace", None),
        ]))


def bench_both(bench: Bench, name: str, argv: list[str], ebpf: bool, rounds: int,
               ptrace_target: float | None = None, floor: bool = False) -> None:
    """Both collectors and the peers on one workload."""
    commands = [Command("untraced", argv)]
    if ebpf:
        commands += [Command("ebpf (own time)", stprof("ebpf", argv), time="own"),
                     Command("ebpf (whole run)", stprof("ebpf", argv))]
        if floor:
            commands += [Command("untraced (own time)", argv, time="own"),
                         Command("floor probe (own time)", argv, time="own", under_floor=True)]
    commands += [Command("ptrace", stprof("ptrace", argv)), *peers(argv)]
    bench.workload(name, commands, rounds, lambda c: pick(c, name, [
        ("ebpf (own time)", "untraced", None),
        ("ebpf (whole run)", "untraced", None),
        ("floor probe (own time)", "untraced (own time)", None),
        ("ebpf (own time)", "floor probe (own time)", None),
        ("ptrace", "untraced", None),
        ("ptrace", "strace -c -f", ptrace_target),
        ("ptrace", "perf trace -s", None),
        ("strace -c -f", "untraced", None),
        ("perf trace -s", "untraced", None),
    ]))


def startup(bench: Bench, ebpf: bool) -> None:
    """`stprof run -- true` as a whole, against `true` untraced.

    The eBPF collector loads its compiled probes from its cache
    (collectors/ebpf_cache.py) when an earlier run left them: "ebpf" is that
    (the first round fills the cache if it was empty), "ebpf, no cache" the
    compile every run does without it (STPROF_CACHE_DIR=off)."""
    true = ["true"]
    # as a user runs it: the default options (eBPF's default: stacks sampled in faults)
    ebpf_true = [*STPROF, "run", "--collector", "ebpf", "-o", os.devnull, "--", *true]
    commands = [Command("true", true), Command("ptrace", stprof("ptrace", true))]
    if ebpf:
        commands += [Command("ebpf", ebpf_true),
                     Command("ebpf, no cache", ["env", "STPROF_CACHE_DIR=off", *ebpf_true])]
        time_once(ebpf_true)  # fills the cache, if empty
    bench.workload("start-up", commands, bench.rounds, lambda c: [])
    for command in commands[1:]:
        seconds = command.seconds
        target = " (goal <= 0.70 s)" if command.label.startswith("ebpf") else ""
        bench.lines.append(
            f"start-up: {command.shown()}: "
            f"{statistics.median(seconds):.3f} s ({min(seconds):.3f}-{max(seconds):.3f}) "
            f"whole{target}; `true` untraced {statistics.median(commands[0].seconds):.4f} s")


WORKLOADS: dict[str, Callable[[Bench, bool], None]] = {
    "storm": bench_storm,
    "trace-set": bench_trace_set,
    "small-storm": lambda bench, ebpf: bench_small_storm(bench),
    "bulk": lambda bench, ebpf: bench_both(bench, "dd bs=1M count=2000", BULK, ebpf,
                                           bench.rounds, floor=True),
    "demo": lambda bench, ebpf: bench_both(bench, "dd bs=10M count=1 (demo)", DEMO, ebpf,
                                           bench.rounds),
    "forks": lambda bench, ebpf: bench_both(bench, "300 forks of /bin/true", FORKS, ebpf,
                                            bench.slow_rounds, ptrace_target=1.0),
    "start-up": startup,
    "probe-cost": lambda bench, ebpf: probe_cost(bench) if ebpf else None,
}


def workload_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workload {', '.join(unknown) or '(none)'}; known: {', '.join(WORKLOADS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds for the quick workloads (default 5)")
    parser.add_argument("--slow-rounds", type=int, default=3,
                        help="rounds for the syscall storm under ptrace, strace and perf "
                             "trace (default 3)")
    parser.add_argument("--settle", type=float, default=0.3,
                        help="seconds of quiet before each command (default 0.3): an eBPF "
                             "run's tracepoints are released in the background after it")
    parser.add_argument("--only", type=workload_names, default=list(WORKLOADS),
                        help="comma-separated workloads to run, of: " + ", ".join(WORKLOADS)
                             + " (default: all)")
    args = parser.parse_args()
    os.chdir(ROOT)
    ebpf = ebpf_available()
    if not ebpf:
        print("bench: the ebpf collector cannot run here; see `stprof doctor`", file=sys.stderr)
    floor = FloorProbe() if ebpf else None
    bench = Bench(args.rounds, args.slow_rounds, floor, args.settle)
    try:
        for name in args.only:
            WORKLOADS[name](bench, ebpf)
    finally:
        if floor is not None:
            floor.close()
        TIMELINE_FILE.unlink(missing_ok=True)
    rows = [row.cells(number) for number, row in enumerate(bench.rows, 1)]
    print(tabulate(rows, headers=["measure (A / B)", "A/B median (min-max)",
                                  "median A / B", "goal"]))
    print()
    print("\n".join(bench.lines))
    print("\nTo reproduce a row, time its two commands alternately:")
    for number, row in enumerate(bench.rows, 1):
        print(f"[{number}] A: {row.a.shown()}\n     B: {row.b.shown()}")


if __name__ == "__main__":
    main()
