"""make bench: where a ptrace stop's time goes, loop by loop (docs/architecture.md).

A forked child makes N getppid calls (a null syscall) under the ptrace
collector's tracer; each call costs two stops (entry and exit).  For each way
of tracing, round-robin over the rounds like bench/run.py:

- "per call": the child's whole traced run divided by N (two stops, the
  tracer's work and the call itself);
- "entry to exit": the median time from the entry stop's wake-up of the
  tracer to the exit stop's (one resume, the call, one stop, one wake-up).

Then the pieces measured alone: one ptrace call on a stopped tracee (what the
loop pays per stop besides waiting), and the same N getppid calls untraced.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors import ptrace_abi as abi  # noqa: E402
from collectors.ptrace_loop import Tracer  # noqa: E402
from collectors.ptracer import trace_null_calls  # noqa: E402
from collectors.syscall_names import syscall_table  # noqa: E402

GETPPID = {name: nr for nr, name in syscall_table().items()}["getppid"]


def traced(loop: str, poll: bool, pin: bool) -> Callable[[int], tuple[float, float]]:
    """One way of tracing: N calls -> (seconds per call, median entry-to-exit)."""

    def run(calls: int) -> tuple[float, float]:
        saved = os.environ.get("STPROF_PTRACE_LOOP")
        if loop == "python":
            os.environ["STPROF_PTRACE_LOOP"] = "python"
        cpus = os.sched_getaffinity(0)
        if pin:
            os.sched_setaffinity(0, {min(cpus)})
        try:
            tracer = Tracer(follow=False, sample_nr=GETPPID, poll=poll)
            started = time.perf_counter()
            trace_null_calls(tracer, calls)
            elapsed = time.perf_counter() - started
            tracer.close()
        finally:
            os.sched_setaffinity(0, cpus)
            os.environ.pop("STPROF_PTRACE_LOOP", None)
            if saved is not None:
                os.environ["STPROF_PTRACE_LOOP"] = saved
        return elapsed / calls, statistics.median(tracer.samples) / 1e9

    return run


WAYS = {
    "compiled loop, polling (the default)": traced("compiled", True, False),
    "compiled loop, no polling": traced("compiled", False, False),
    "compiled loop, --pin (one CPU, no polling)": traced("compiled", False, True),
    "Python loop, polling": traced("python", True, False),
    "Python loop, no polling": traced("python", False, False),
}


def untraced(calls: int) -> float:
    getppid = os.getppid
    started = time.perf_counter()
    for _ in range(calls):
        getppid()
    return (time.perf_counter() - started) / calls


def ptrace_call_cost(repeat: int = 20_000) -> dict[str, float]:
    """Seconds per PTRACE_GETREGS and per PTRACE_GETEVENTMSG on a stopped tracee
    (through the lean ctypes call the loops use), and per empty ctypes call."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(0)
    binding = abi.load()
    raw = binding.raw
    try:
        binding.call(abi.PTRACE_SEIZE, pid, 0, 0)
        os.waitpid(pid, os.WUNTRACED)
        assert binding.regs is not None
        regs = binding.regs()
        address = abi.pointer_to(regs)
        message = ctypes.c_ulong(0)
        message_address = abi.pointer_to(message)
        costs = {}
        for name, request, argument in (("PTRACE_GETREGS", abi.PTRACE_GETREGS, address),
                                        ("PTRACE_GETEVENTMSG", abi.PTRACE_GETEVENTMSG,
                                         message_address)):
            started = time.perf_counter()
            for _ in range(repeat):
                raw(request, pid, 0, argument)
            costs[name] = (time.perf_counter() - started) / repeat
        getpid = ctypes.CDLL(None).getpid
        started = time.perf_counter()
        for _ in range(repeat):
            getpid()
        costs["getpid through ctypes (the call's own cost)"] = (
            time.perf_counter() - started) / repeat
        return costs
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000,
                        help="getppid calls per run (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    if sys.platform != "linux" or abi.load().regs is None:
        sys.exit("bench/stops.py: needs Linux on x86-64")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in WAYS}
    for _ in range(args.rounds):
        for name, run in WAYS.items():
            results[name].append(run(args.calls))
    rows = []
    for name, runs in results.items():
        per_call = [r[0] * 1e6 for r in runs]
        one_way = [r[1] * 1e6 for r in runs]
        rows.append([name, f"{statistics.median(per_call):.1f} "
                           f"({min(per_call):.1f}-{max(per_call):.1f})",
                     f"{statistics.median(one_way):.1f} "
                     f"({min(one_way):.1f}-{max(one_way):.1f})"])
    print(f"ptrace stops: {args.calls} getppid calls a run, {args.rounds} rounds, "
          "median (min-max) in microseconds")
    print(tabulate(rows, headers=["tracing", "per call (2 stops)", "entry to exit stop"]))
    print()
    costs = ptrace_call_cost()
    costs["getppid untraced"] = untraced(args.calls)
    print(tabulate([[name, f"{seconds * 1e6:.2f}"] for name, seconds in costs.items()],
                   headers=["alone", "us"]))


if __name__ == "__main__":
    main()
