"""make bench: stprof's overhead as ratios measured in one run.

Every figure is a ratio against the untraced command (or against strace /
perf trace) timed in the same run, interleaved round by round, so that the
load of a shared machine falls on both sides.  Medians of the rounds.
This is a benchmark, not a test: it prints, and fails only if a command
cannot run at all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from collectors.base import DEFAULT_STACK_HZ

ROOT = Path(__file__).resolve().parent.parent
STPROF = [sys.executable, "-m", "stprof"]
DD_SMALL = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=200000", "status=none"]
DD_LARGE = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=2000", "status=none"]


@dataclass
class Timing:
    name: str
    argv: list[str]
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_once(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({result.returncode}): "
                 f"{result.stderr.decode(errors='replace').strip()[-300:]}")
    return elapsed


def measure(timings: list[Timing], rounds: int) -> None:
    """Round-robin: every command once per round, so noise hits all alike."""
    for _ in range(rounds):
        for timing in timings:
            timing.seconds.append(time_once(timing.argv))


def launch_to_exec_seconds(prefix: list[str], rounds: int) -> float:
    """From launching ``prefix + probe`` to the probe's exec: the probe prints its clock."""
    probe = [sys.executable, "-c", "import time; print(time.time_ns())"]
    samples = []
    for _ in range(rounds):
        launched = time.time_ns()
        out = subprocess.run([*prefix, *probe], capture_output=True, check=True, text=True)
        samples.append((int(out.stdout.strip()) - launched) / 1e9)
    return statistics.median(samples)


def ebpf_available() -> bool:
    from collectors import collector_class

    return collector_class("ebpf").availability().ok


def stprof(collector: str, command: list[str], *extra: str) -> list[str]:
    return [*STPROF, "run", "--collector", collector, "--kernel-stacks", "off", "-o", os.devnull,
            *extra, "--", *command]


Row = tuple[str, str, str, str]


def goal(value: float, target: float | None, unit: str = "x") -> str:
    if target is None:
        return ""
    return f"<= {target:.2f}{unit} {'meets' if value <= target else 'MISSES'}"


def ratio_row(what: str, num: float, den: float, target: float | None) -> Row:
    ratio = num / den
    return (what, f"{num:.3f} s / {den:.3f} s", f"{ratio:.2f}x", goal(ratio, target))


def bench_ptrace(rounds: int) -> list[Row]:
    untraced = Timing("untraced", DD_SMALL)
    ptrace = Timing("stprof ptrace", stprof("ptrace", DD_SMALL))
    trace = Path(os.environ.get("TMPDIR", "/tmp")) / f"stprof-bench-{os.getpid()}.json"
    timeline = Timing("stprof ptrace --timeline",
                      stprof("ptrace", DD_SMALL, "--timeline", str(trace)))
    timings = [untraced, ptrace, timeline]
    strace = Timing("strace -c -f", ["strace", "-c", "-f", "-o", os.devnull, *DD_SMALL])
    perf = Timing("perf trace -s", ["perf", "trace", "-s", "-o", os.devnull, *DD_SMALL])
    if shutil.which("strace"):
        timings.append(strace)
    if shutil.which("perf") and os.geteuid() == 0:
        timings.append(perf)
    try:
        measure(timings, rounds)
    finally:
        trace.unlink(missing_ok=True)
    rows = [ratio_row("ptrace vs untraced (dd bs=1 count=200000)", ptrace.median,
                      untraced.median, None),
            ratio_row("ptrace --timeline vs ptrace", timeline.median, ptrace.median, None)]
    if strace.seconds:
        rows.append(ratio_row("ptrace vs strace -c -f", ptrace.median, strace.median, 1.0))
    if perf.seconds:
        rows.append(ratio_row("ptrace vs perf trace -s", ptrace.median, perf.median, None))
    return rows


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

    def time(self, argv: Sequence[str]) -> float:
        try:
            for tracepoint in self.TRACEPOINTS:
                self._bpf.attach_raw_tracepoint(tp=tracepoint,
                                                fn_name=b"raw_tracepoint__" + tracepoint)
                self._attached.add(tracepoint)
            return time_once(argv)
        finally:
            self._detach()

    def close(self) -> None:
        self._bpf.cleanup()


@dataclass
class EbpfRounds:
    """One workload's interleaved rounds: untraced, under the floor probe, under stprof."""

    untraced: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    whole: list[float] = field(default_factory=list)   # the whole stprof run
    inner: list[float] = field(default_factory=list)   # the command's own wall_ns
    sampled: list[float] = field(default_factory=list)  # the same, stacks sampled as by default
    timeline: list[float] = field(default_factory=list)  # the command's own, with --timeline
    timeline_whole: list[float] = field(default_factory=list)  # and the whole run
    syscalls: int = 0


def ebpf_rounds(command: list[str], rounds: int, floor: FloorProbe,
                with_timeline: bool = False) -> EbpfRounds:
    import json
    import tempfile

    result = EbpfRounds()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.json"
        for _ in range(rounds):
            result.untraced.append(time_once(command))
            result.floor.append(floor.time(command))
            result.whole.append(time_once(stprof("ebpf", command, "--json", str(out))))
            profile = json.loads(out.read_text())
            result.inner.append(profile["wall_ns"] / 1e9)
            result.syscalls = sum(row["calls"] for row in profile["syscalls"].values())
            time_once(stprof("ebpf", command, "--kernel-stacks", "faults", "--json", str(out)))
            result.sampled.append(json.loads(out.read_text())["wall_ns"] / 1e9)
            if with_timeline:
                trace = Path(tmp) / "trace.json"
                result.timeline_whole.append(time_once(stprof(
                    "ebpf", command, "--json", str(out), "--timeline", str(trace))))
                result.timeline.append(json.loads(out.read_text())["wall_ns"] / 1e9)
    return result


def per_syscall_ns(traced: float, untraced: float, syscalls: int) -> str:
    """(traced - untraced) a syscall.  stprof's traced time is its profile's
    wall_ns (release to reap, which adds the gate's wake-up) where the untraced
    one is spawn to reap (which adds the fork): within a few 100 us alike."""
    return f"+{(traced - untraced) / max(syscalls, 1) * 1e9:.0f} ns a syscall"


def bench_ebpf(rounds: int) -> list[Row]:
    rows = []
    floor = FloorProbe()
    try:
        for label, command, target in (("bs=1 count=200000", DD_SMALL, 2.0),
                                       ("bs=1M count=2000", DD_LARGE, 1.05)):
            result = ebpf_rounds(command, rounds, floor, with_timeline=command == DD_SMALL)
            bare = statistics.median(result.untraced)
            inner = statistics.median(result.inner)
            least = statistics.median(result.floor)
            # The fixed cost (compiling and loading the probes) is not overhead
            # on the command: the command's own wall time leaves it out.
            rows.append(ratio_row(f"ebpf vs untraced, whole stprof run (dd {label})",
                                  statistics.median(result.whole), bare, None))
            rows.append(ratio_row(f"ebpf vs untraced, the command itself (dd {label})",
                                  inner, bare, target))
            rows.append(ratio_row(f"ebpf with stacks sampled as by default (faults, "
                                  f"{DEFAULT_STACK_HZ} Hz) (dd {label})",
                                  statistics.median(result.sampled), bare, None))
            if result.timeline:
                rows.append(ratio_row(f"ebpf --timeline vs untraced, the command itself "
                                      f"(dd {label})", statistics.median(result.timeline),
                                      bare, None))
                rows.append(ratio_row(f"ebpf --timeline vs untraced, whole stprof run "
                                      f"(dd {label}, file written)",
                                      statistics.median(result.timeline_whole), bare, None))
            rows.append(ratio_row(f"floor: clock-only syscall probes vs untraced (dd {label})",
                                  least, bare, None))
            rows.append((f"cost per syscall (dd {label}, {result.syscalls:,} syscalls)",
                         f"ebpf {per_syscall_ns(inner, bare, result.syscalls)}",
                         f"floor {per_syscall_ns(least, bare, result.syscalls)}", ""))
    finally:
        floor.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds for the cheap commands")
    parser.add_argument("--slow-rounds", type=int, default=1,
                        help="rounds for ptrace, strace and perf trace (each takes seconds)")
    args = parser.parse_args()
    os.chdir(ROOT)
    rows: list[Row] = []
    if ebpf_available():
        rows += bench_ebpf(args.rounds)
        start = launch_to_exec_seconds(
            [*STPROF, "run", "--collector", "ebpf", "-o", os.devnull, "--"], args.rounds)
        bare = launch_to_exec_seconds([], args.rounds)
        rows.append(("ebpf start-up: launch to the command's exec", f"{start:.3f} s",
                     f"({bare:.3f} s untraced)", goal(start, 1.0, " s")))
    else:
        print("bench: the ebpf collector cannot run here; see `stprof doctor`", file=sys.stderr)
    rows += bench_ptrace(args.slow_rounds)
    print(tabulate(rows, headers=["measure", "median times", "ratio", "target"]))


if __name__ == "__main__":
    main()
