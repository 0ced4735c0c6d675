"""Numbers with units a person reads at a glance."""

from __future__ import annotations

_TIME_UNITS = ((1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us"))


def fmt_ns(value: float | None) -> str:
    """1234567 -> '1.23 ms'; None -> '-' (not measured)."""
    if value is None:
        return "-"
    for scale, unit in _TIME_UNITS:
        if abs(value) >= scale:
            return f"{_three_digits(value / scale)} {unit}"
    return f"{value:.0f} ns"


def _three_digits(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_count(value: int | None) -> str:
    """12345 -> '12,345'."""
    if value is None:
        return "-"
    return f"{value:,}"


def fmt_pct(part: float, whole: float) -> str:
    if not whole:
        return "-"
    return f"{100.0 * part / whole:.1f}%"
