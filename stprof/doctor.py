"""``stprof doctor``: which collectors and probe methods work here, and the fix when not."""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import dataclass, field

from tabulate import tabulate

from collectors import NAMES, Availability, ProbeMethod, collector_class
from profiler.errors import EXIT_UNAVAILABLE
from stprof.options import Subparsers


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("doctor", help="say which collectors and probe methods work here")
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    diagnosis = diagnose()
    sys.stdout.write(render_diagnosis(diagnosis))
    return 0 if diagnosis.usable else EXIT_UNAVAILABLE



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
