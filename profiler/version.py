"""stprof's own version, as installed (``unknown`` when run from a bare checkout)."""

from __future__ import annotations


def stprof_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python without importlib.metadata
        return "unknown"
    try:
        return version("stprof")
    except PackageNotFoundError:
        return "unknown"
