"""The collectors, and the one place that chooses between them.

Each collector module is imported only when asked for, so that a platform's
missing dependencies (bcc, python-ptrace, dtrace) never break the others.
"""

from __future__ import annotations

import importlib
import sys

from collectors.base import Availability, Collector, Options, ProbeMethod
from profiler.errors import CollectorUnavailable, UsageError

# name -> (module, class); the order is auto's order of preference.
_REGISTRY: dict[str, tuple[str, str]] = {
    "ebpf": ("collectors.ebpf", "EbpfCollector"),
    "dtrace": ("collectors.dtrace", "DtraceCollector"),
    "ptrace": ("collectors.ptracer", "PtraceCollector"),
}

NAMES = tuple(_REGISTRY)

__all__ = [
    "NAMES",
    "Availability",
    "Collector",
    "Options",
    "ProbeMethod",
    "choose",
    "collector_class",
]


def collector_class(name: str) -> type[Collector]:
    try:
        module_name, class_name = _REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"unknown collector {name!r} (choose from auto, {', '.join(NAMES)})"
        ) from None
    module = importlib.import_module(module_name)
    cls: type[Collector] = getattr(module, class_name)
    return cls


def choose(name: str) -> tuple[type[Collector], list[str]]:
    """The collector to use for ``--collector NAME`` and why others were passed over.

    ``auto`` takes the first available in order of preference; the reasons
    the better ones could not run come back as one line each, to be shown.
    An explicit name that cannot run here is an error with its fix.
    """
    if name != "auto":
        cls = collector_class(name)
        available = cls.availability()
        if not available.ok:
            raise CollectorUnavailable(f"{name} collector: {available.reason}", available.fix)
        return cls, []
    passed_over: list[str] = []
    for candidate in NAMES:
        cls = collector_class(candidate)
        if not sys.platform.startswith(cls.platforms):
            continue
        available = cls.availability()
        if available.ok:
            return cls, passed_over
        passed_over.append(f"{candidate} collector unavailable: {available.reason}")
    raise CollectorUnavailable("no collector can run here: " + "; ".join(passed_over))
