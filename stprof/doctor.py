"""``stprof doctor``: which collectors and probe methods work here, and the fix when not."""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import dataclass, field

from tabulate import tabulate

from collectors import NAMES, Availability, ProbeMethod, collector_class
from profiler import phases
from profiler.errors import EXIT_UNAVAILABLE
from stprof.options import Subparsers


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("doctor", help="say which collectors and probe methods work here")
    parser.add_argument("--timing", action="store_true",
                        help="also profile `true` with the collector auto chooses and say "
                             "how long each phase of stprof took (start-up, compile, load, "
                             "attach, the run, teardown, report)")
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    since_exec = phases.since_exec()
    diagnosis = diagnose()
    sys.stdout.write(render_diagnosis(diagnosis))
    if args.timing and diagnosis.chosen is not None:
        sys.stdout.write("\n" + render_timing(time_a_run(diagnosis.chosen), since_exec))
    return 0 if diagnosis.usable else EXIT_UNAVAILABLE


def time_a_run(collector_name: str) -> list[tuple[str, float]]:
    """Profile `true` as `stprof run -o /dev/null -- true` would, each phase timed."""
    from collectors import Options
    from reports import TextRenderer, ViewOptions

    phases.forget()
    cls = collector_class(collector_name)
    with phases.phase("total (after start-up)"):
        with cls(Options(command=["true"])) as collector, phases.phase("run (command) and read"):
            profile = collector.run()
        with phases.phase("report"):
            TextRenderer(ViewOptions()).render(profile)
    return phases.recorded()


def render_timing(timed: list[tuple[str, float]], since_exec: float | None) -> str:
    rows = [("start-up (python, imports, arguments)", f"{since_exec * 1000:.0f}")
            ] if since_exec is not None else []
    rows += [(name, f"{seconds * 1000:.0f}") for name, seconds in timed]
    return ("Timing of a run of `true` (each phase, in order; the compile is bcc's clang):\n"
            + tabulate(rows, headers=["phase", "ms"], colalign=("left", "right")) + "\n")



@dataclass
class CollectorReport:
    name: str
    description: str
    native: bool
    availability: Availability
    methods: list[ProbeMethod] = field(default_factory=list)


@dataclass
class Diagnosis:
    system: str
    collectors: list[CollectorReport]

    @property
    def usable(self) -> bool:
        return any(c.availability.ok for c in self.collectors)

    @property
    def chosen(self) -> str | None:
        """What ``--collector auto`` would take."""
        for report in self.collectors:
            if report.native and report.availability.ok:
                return report.name
        return None


def diagnose() -> Diagnosis:
    reports = []
    for name in NAMES:
        cls = collector_class(name)
        availability = cls.availability()
        reports.append(CollectorReport(
            name=name,
            description=cls.description,
            native=sys.platform.startswith(cls.platforms),
            availability=availability,
            methods=cls.methods(),
        ))
    return Diagnosis(f"{platform.system()} {platform.release()} {platform.machine()}", reports)


def _status(availability: Availability) -> str:
    return "yes" if availability.ok else "no"


def _why(availability: Availability) -> str:
    if availability.ok:
        return availability.reason
    return availability.reason + (f"; fix: {availability.fix}" if availability.fix else "")


def render_diagnosis(diagnosis: Diagnosis) -> str:
    rows = [(c.name, _status(c.availability), c.description, _why(c.availability))
            for c in diagnosis.collectors]
    parts = [f"stprof doctor on {diagnosis.system}", "",
             tabulate(rows, headers=["collector", "works", "what", "details"])]
    for report in diagnosis.collectors:
        if not report.methods:
            continue
        method_rows = [(m.what, m.method, _status(m.availability), _why(m.availability))
                       for m in report.methods]
        parts += ["", f"{report.name} probe methods:",
                  tabulate(method_rows, headers=["measures", "method", "works", "details"])]
    chosen = diagnosis.chosen
    parts += ["", f"--collector auto uses: {chosen}" if chosen
              else "No collector can run here: see the fixes above."]
    return "\n".join(parts) + "\n"
