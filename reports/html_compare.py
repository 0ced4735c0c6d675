"""The comparison as one self-contained HTML page.

Drawn from the Comparison alone: the verdict, coloured; both time budgets
(their medians) one above the other on one scale; the rows `compare` prints
(the same cells, from reports/compare_text.py); per-syscall changes in
counts and time; the notes; and the comparison's JSON, to save back out.
A refused comparison (another command, another collector) is still drawn,
with the refusal in place of the verdict.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace

from profiler.compare import (
    BUDGET_METRICS,
    SYSCALL_METRICS,
    TOTAL_METRICS,
    Comparison,
    ComparisonRenderer,
    Kind,
    Result,
    Verdict,
)
from profiler.model import Budget
from reports.compare_text import (
    CompareTextRenderer,
    fmt_budget_value,
    fmt_change,
    fmt_evidence,
    fmt_value,
    fmt_values,
    headline,
    sides,
)
from reports.html_bars import Bar, time_bar
from reports.html_page import inline_json, render_page
from reports.text import BUDGET_LABELS

SIDES = ("baseline", "current")

_LABELS = {
    Verdict.REGRESSION: "REGRESSION",
    Verdict.SLOWER: "slower",
    Verdict.IMPROVEMENT: "improvement",
    Verdict.SAME: "same",
}


@dataclass(frozen=True)
class VerdictRow:
    verdict: str  # css class: regression, slower, improvement, same, budget
    label: str
    metric: str
    values: str
    change: str
    evidence: str


@dataclass(frozen=True)
class Delta:
    """One metric's two medians and their change, formatted."""

    before: str
    after: str
    change: str
    verdict: str
    title: str
    direction: str  # 'up', 'down' or ''


@dataclass(frozen=True)
class SyscallDelta:
    name: str
    metrics: dict[str, Delta | None]  # calls, errors, total_ns


def _delta(result: Result | None) -> Delta | None:
    if result is None:
        return None
    before, after = fmt_values(result)
    change = result.change
    direction = "up" if change > 0 else "down" if change < 0 else ""
    signed = fmt_value(result.kind, abs(change))
    sign = "+" if change > 0 else "-" if change < 0 else ""
    relative = fmt_change(result)
    text = f"{sign}{signed}" + (f" ({relative})" if relative and change else "")
    return Delta(before, after, text if change else "0", result.verdict.value,
                 f"{_LABELS[result.verdict]}: {fmt_evidence(result)}", direction)


def verdict_rows(comparison: Comparison) -> list[VerdictRow]:
    """The rows `compare --format text` prints, in its order."""
    rows = [_result_row(r) for r in comparison.regressions]
    for budget in comparison.failed_budgets:
        value, limit = fmt_budget_value(budget)
        rows.append(VerdictRow("regression", "OVER BUDGET", budget.text, f"median {value}", "",
                               f"limit {limit}"))
    rows += [_result_row(r) for r in comparison.slower]
    rows += [_result_row(r) for r in comparison.improvements]
    return rows


def _result_row(result: Result) -> VerdictRow:
    before, after = fmt_values(result)
    return VerdictRow(result.verdict.value, _LABELS[result.verdict], result.metric,
                      f"{before} -> {after}", fmt_change(result), fmt_evidence(result))


def budget_bars(comparison: Comparison) -> tuple[Bar, Bar] | None:
    """Both sides' budgets from the medians of their budget.* metrics, on one scale."""
    by_metric = {r.metric: r for r in comparison.results if r.metric in BUDGET_METRICS}
    if not by_metric:
        return None
    lifetimes = [median_of(by_metric.get("budget.lifetime_ns"), side) for side in SIDES]
    longest = max(lifetimes)
    bars = []
    for side, lifetime in zip(SIDES, lifetimes):
        parts = [(part, BUDGET_LABELS[part], median_of(by_metric.get(f"budget.{part}"), side))
                 for part in Budget.PARTS]
        bar = time_bar(parts, "threads' lifetime", lifetime)
        bars.append(replace(bar, scale=100.0 * lifetime / longest if longest else 100.0))
    return bars[0], bars[1]


def median_of(result: Result | None, side: str) -> int:
    """One side's median of a metric (0 when it was left out as all-zero)."""
    return 0 if result is None else round(getattr(result, side).median)


def syscall_deltas(comparison: Comparison) -> list[SyscallDelta]:
    """Per syscall, its calls, errors and time on both sides, in the comparison's order."""
    found: dict[str, dict[str, Result]] = {}
    for result in comparison.results:
        if result.metric in TOTAL_METRICS or "." not in result.metric:
            continue
        name, _, suffix = result.metric.rpartition(".")
        if suffix in SYSCALL_METRICS:
            found.setdefault(name, {})[suffix] = result
    return [SyscallDelta(name, {suffix: _delta(metrics.get(suffix))
                                for suffix in SYSCALL_METRICS})
            for name, metrics in found.items()]


def total_deltas(comparison: Comparison) -> list[tuple[str, Delta]]:
    rows = []
    for result in comparison.results:
        if (result.metric in TOTAL_METRICS and result.metric not in BUDGET_METRICS) \
                or result.kind is Kind.STATUS:
            delta = _delta(result)
            if delta is not None:
                rows.append((result.metric, delta))
    return rows


class CompareHtmlRenderer(ComparisonRenderer):
    """``refusal``: why compare refused these two (the page then shows no verdict)."""

    name = "html"

    def __init__(self, refusal: str = "") -> None:
        self.refusal = refusal

    def render(self, comparison: Comparison) -> str:
        command = shlex.join(comparison.command)
        state = ("refused" if self.refusal
                 else "regression" if comparison.regressed else "ok")
        return render_page(
            "compare.html.j2",
            title=f"stprof compare: {command}",
            command=command,
            comparison=comparison,
            state=state,
            refusal=self.refusal,
            headline=headline(comparison),
            sides=sides(comparison),
            verdict_rows=verdict_rows(comparison),
            budgets=budget_bars(comparison),
            syscalls=syscall_deltas(comparison),
            totals=total_deltas(comparison),
            text_view=CompareTextRenderer().render(comparison),
            comparison_json=inline_json(json.dumps(comparison.to_dict(), indent=1)),
        )
