"""Budgets: limits on metrics, written in a small TOML file.

::

    # stprof budget (stprof check --budget FILE)
    [max]                          # the current median must be <= the limit
    read.calls = 10                # absolute: at most 10 calls
    total.syscall_ns = "+10%"      # relative: at most 10% above the baseline's median
    faults.count = "+5%"
    total.wall_ns = "2s"           # durations take ns, us, ms or s
    openat.total_ns = "+500us"     # relative by an amount: baseline median + 500 us

    [min]                          # the current median must be >= the limit
    write.calls = 1

    [tolerance]                    # optional: the comparison's thresholds
    counts = "3%"                  # a count may leave the baseline's range by 3%...
    count_slack = 2                # ...and by at least 2
    times = "25%"                  # a significant time change of 25%...
    time_floor = "200us"           # ...and 200 us is reported as slower/faster
    fail_on_times = "100%"         # a slower time fails from +100% (default: never)
    alpha = 0.05                   # the rank test's significance level

Keys are metric names (TOML's dotted keys give ``read.calls`` naturally;
quoted keys such as ``"read.calls"`` work too).  A limit with a sign is
relative to the baseline's median; without one it is absolute.  The value a
limit is checked against is the median over the current runs.  A malformed
file is one ``InputError`` line (exit status 2).
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from profiler import stats
from profiler.compare import BudgetResult, Kind, Threshold, metric_kind, metric_series
from profiler.errors import InputError, shown
from profiler.model import MIB, Profile, read_input_file

_OPERATORS = {"max": "<=", "min": ">="}
_TIME_UNITS = {"ns": 1.0, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9}
_LIMIT = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*(%|ns|us|µs|ms|s)?\s*$")


@dataclass(frozen=True)
class Limit:
    """One budget line: ``metric <= written`` (or ``>=``), parsed."""

    metric: str
    operator: str
    written: str
    amount: float  # in the metric's unit (count or ns), or a percentage
    relative: bool  # to the baseline's median
    percent: bool

    def resolve(self, baseline_median: float) -> float:
        """The limit as a number, given the baseline's median of the metric."""
        if not self.relative:
            return self.amount
        if self.percent:
            return baseline_median * (1.0 + self.amount / 100.0)
        return baseline_median + self.amount


@dataclass(frozen=True)
class BudgetFile:
    limits: list[Limit] = field(default_factory=list)
    tolerance: dict[str, float] = field(default_factory=dict)

    def threshold(self, base: Threshold) -> Threshold:
        """``base`` with the file's [tolerance] values put in."""
        return replace(base, **self.tolerance)


# ------------------------------------------------------------------ parsing
# The most stprof reads of a budget file: a few lines of limits are a few
# hundred bytes, so a file of a megabyte is no budget (README: "Input files").
BUDGET_LIMIT = 1 * MIB


def load_budget(path: str | os.PathLike[str]) -> BudgetFile:
    return parse_budget(read_input_file(path, BUDGET_LIMIT, "budget file"), shown(path))


def parse_budget(text: str, source: str = "budget") -> BudgetFile:
    data = _parse_toml(text, source)
    unknown = sorted(set(data) - {"max", "min", "tolerance"})
    if unknown:
        raise InputError(f"{source}: unknown table [{unknown[0]}] (use [max], [min], [tolerance])")
    limits: list[Limit] = []
    for table, operator in _OPERATORS.items():
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise InputError(f"{source}: {table} must be a table ([{table}])")
        limits.extend(_limit(name, value, operator, source) for name, value in _flatten(section))
    if not limits and "tolerance" not in data:
        raise InputError(f"{source}: no budget in it (expected a [max] or [min] table)")
    return BudgetFile(limits, _tolerance(data.get("tolerance", {}), source))


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    toml = _toml_module()
    try:
        data: dict[str, Any] = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML ({exc})") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InputError(f"{source}: not valid TOML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise InputError(f"{source}: not valid TOML (nested too deeply)") from None
    return data


def _toml_module() -> ModuleType:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    else:  # pragma: no cover - Python < 3.11
        try:
            import tomli
        except ImportError:
            raise InputError("reading a budget file needs Python 3.11+ or the tomli package "
                             "(pip install tomli)") from None
        return tomli


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """TOML dotted keys nest (read.calls -> {read: {calls: ...}}): join them again."""
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _limit(metric: str, value: Any, operator: str, source: str) -> Limit:
    kind = metric_kind(metric)
    if kind is None:
        raise InputError(
            f"{source}: unknown metric {metric!r} (e.g. read.calls, read.errors, "
            "read.total_ns, total.syscall_ns, total.wall_ns, faults.count, budget.user_ns)"
        )
    where = f"{source}: {metric}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: limit must be a number or a string like \"+10%\"")
    if isinstance(value, (int, float)):
        if not _finite(value):
            raise InputError(f"{where}: limit {_short(value)} is not a finite number")
        if value < 0:
            raise InputError(f"{where}: limit {_short(value)} is negative")
        return Limit(metric, operator, str(value), float(value), relative=False, percent=False)
    return _limit_from_text(metric, value, operator, kind, where)


def _limit_from_text(metric: str, text: str, operator: str, kind: Kind, where: str) -> Limit:
    match = _LIMIT.match(text)
    if match is None:
        raise InputError(f"{where}: cannot read limit {text!r} "
                         "(write 10, \"+10%\", \"-5%\", \"+3\", \"2ms\" or \"+500us\")")
    sign, number, unit = match.groups()
    amount = float(number) * (-1.0 if sign == "-" else 1.0)
    if not math.isfinite(amount * _TIME_UNITS.get(unit, 1.0)):
        raise InputError(f"{where}: limit {_short(text)} is not a finite number")
    if unit == "%":
        if not sign:
            raise InputError(f"{where}: write \"+{number}%\" or \"-{number}%\" "
                             "(a percentage is relative to the baseline)")
        return Limit(metric, operator, text.strip(), amount, relative=True, percent=True)
    if unit is not None:
        if kind is not Kind.TIME:
            raise InputError(f"{where}: a count takes no time unit ({text!r})")
        amount *= _TIME_UNITS[unit]
    return Limit(metric, operator, text.strip(), amount, relative=bool(sign), percent=False)


def _tolerance(table: Any, source: str) -> dict[str, float]:
    """The [tolerance] table as Threshold field values."""
    if not isinstance(table, dict):
        raise InputError(f"{source}: tolerance must be a table ([tolerance])")
    fields = {
        "counts": ("count_relative", _fraction),
        "count_slack": ("count_absolute", _plain_number),
        "times": ("time_relative", _fraction),
        "time_floor": ("time_absolute_ns", _duration_ns),
        "alpha": ("alpha", _probability),
        "fail_on_times": ("time_fail", _fraction),
    }
    values: dict[str, float] = {}
    for key, value in table.items():
        if key not in fields:
            raise InputError(f"{source}: [tolerance] has no {key!r} "
                             f"(use {', '.join(fields)})")
        name, convert = fields[key]
        try:
            values[name] = convert(value)
        except ValueError as exc:
            raise InputError(f"{source}: [tolerance] {key}: {exc}") from None
    return values


def _fraction(value: Any) -> float:
    """ "3%" -> 0.03; a bare number is taken as a fraction already (0.03)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = _plain_number(value.strip()[:-1])
        return number / 100.0
    return _plain_number(value)


def _plain_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected a number, got {_short(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {_short(value)}")
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return number


def _duration_ns(value: Any) -> float:
    if isinstance(value, str):
        match = _LIMIT.match(value)
        if match is None or match.group(1) or match.group(3) == "%":
            raise ValueError(f"expected a duration like \"200us\", got {value!r}")
        duration = float(match.group(2)) * _TIME_UNITS[match.group(3) or "ns"]
        if not math.isfinite(duration):
            raise ValueError(f"expected a finite duration, got {_short(value)}")
        return duration
    return _plain_number(value)


def _probability(value: Any) -> float:
    number = _plain_number(value)
    if not 0 < number < 1:
        raise ValueError(f"must lie between 0 and 1, got {value!r}")
    return number


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _short(value: Any, limit: int = 40) -> str:
    """repr(value), cut to ``limit`` characters: a limit may be a long number."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


# ------------------------------------------------------------------ checking
def check_budgets(limits: Sequence[Limit], baseline: Sequence[Profile],
                  current: Sequence[Profile], alpha: float = Threshold().alpha,
                  source: str = "budget") -> list[BudgetResult]:
    """Each limit against the current runs' median (relative ones from the baseline's).

    A relative limit on a time is exceeded only when the current runs are
    also significantly slower than the baseline's (the rank test at
    ``alpha``): one slow check on a busy machine is not over budget.
    """
    names = [limit.metric for limit in limits]
    before = metric_series(baseline, names)
    after = metric_series(current, names)
    results = []
    for limit in limits:
        values_before, values_after = before[limit.metric], after[limit.metric]
        if values_after is None or (limit.relative and values_before is None):
            raise InputError(f"{source}: {limit.metric} was not measured by this collector")
        base = stats.median(values_before) if values_before else 0.0
        bound = limit.resolve(base)
        value = stats.median(values_after)
        passed = value <= bound if limit.operator == "<=" else value >= bound
        note = "" if passed else _noise_excuse(limit, values_before, values_after, alpha)
        results.append(BudgetResult(limit.metric, limit.operator, limit.written, bound, value,
                                    passed or bool(note), note))
    return results


def _noise_excuse(limit: Limit, before: list[float] | None, after: list[float],
                  alpha: float) -> str:
    """Why a relative time limit is not exceeded after all: the excess is noise."""
    if not limit.relative or not before or metric_kind(limit.metric) is not Kind.TIME:
        return ""
    p_value = stats.mann_whitney(after, before).p_value
    if p_value <= alpha:
        return ""
    return f"beyond the limit but not significantly slower (p={p_value:.3g})"
