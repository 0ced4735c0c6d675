"""The terminal verdict of a comparison: one line when all is well, the culprits when not."""

from __future__ import annotations

from collections.abc import Sequence

from profiler.compare import (
    BudgetResult,
    Comparison,
    ComparisonRenderer,
    Kind,
    Result,
    Verdict,
    metric_kind,
)
from reports.units import fmt_count, fmt_ns


# ------------------------------------------------- shared by the renderers
def fmt_value(kind: Kind, value: float) -> str:
    """A metric's value in its unit: 1,024 calls, 1.23 ms, exit status 0."""
    if kind is Kind.TIME:
        return fmt_ns(value)
    if kind is Kind.STATUS:
        return str(int(value))
    if value == int(value):
        return fmt_count(int(value))
    return f"{value:,.1f}"


def fmt_change(result: Result) -> str:
    """+12.3%, -4.0%, or 'new' when the baseline had none of it."""
    if result.kind is Kind.STATUS:
        return ""
    relative = result.relative_change
    if relative is None:
        return "new"
    return f"{relative:+.1%}"


def fmt_evidence(result: Result) -> str:
    """Why the verdict: the rank test and effect sizes for times, the range for counts."""
    sig = result.significance
    if sig is None:
        return result.reason
    ratio = "" if sig.ratio is None else f", x{sig.ratio:.2f}"
    return f"p={sig.p_value:.3g}, delta={sig.cliffs_delta:+.2f}{ratio}; {result.reason}"


def fmt_values(result: Result) -> tuple[str, str]:
    """The two medians, as shown side by side."""
    return fmt_value(result.kind, result.baseline.median), fmt_value(result.kind,
                                                                     result.current.median)


def fmt_budget_value(budget: BudgetResult) -> tuple[str, str]:
    """The current median and the resolved limit, in the metric's unit."""
    kind = metric_kind(budget.metric) or Kind.COUNT
    return fmt_value(kind, budget.value), fmt_value(kind, round(budget.limit, 1))


def headline(comparison: Comparison) -> str:
    """'no regression' or 'REGRESSION: ...', with what was compared."""
    measured = f"{len(comparison.results)} metrics"
    if comparison.budgets:
        measured += f", {len(comparison.budgets)} budgets"
    if comparison.slower:
        count = len(comparison.slower)
        measured += f"; {count} slower time{'s' if count > 1 else ''}, not failing"
    if not comparison.regressed:
        return f"no regression ({measured})"
    parts = []
    if comparison.regressions:
        parts.append(f"{len(comparison.regressions)} of {len(comparison.results)} metrics "
                     "regressed")
    if comparison.failed_budgets:
        parts.append(f"{len(comparison.failed_budgets)} of {len(comparison.budgets)} budgets "
                     "exceeded")
    return "REGRESSION: " + ", ".join(parts)


def sides(comparison: Comparison) -> str:
    base, current = comparison.baseline, comparison.current
    collectors = (base.collector if base.collector == current.collector
                  else f"{base.collector} -> {current.collector}")
    return (f"baseline {base.source} ({base.runs} runs), current {current.source} "
            f"({current.runs} runs), {collectors}")


# ----------------------------------------------------------------- renderer
_LABELS = {
    Verdict.REGRESSION: "REGRESSION",
    Verdict.SLOWER: "slower",
    Verdict.IMPROVEMENT: "improvement",
    Verdict.SAME: "same",
}


class CompareTextRenderer(ComparisonRenderer):
    name = "text"

    def render(self, comparison: Comparison) -> str:
        lines = [f"stprof: {headline(comparison)}; {sides(comparison)}"]
        rows = [self._result_row(r) for r in comparison.regressions]
        rows += [self._budget_row(b) for b in comparison.failed_budgets]
        rows += [self._result_row(r) for r in comparison.slower]
        rows += [self._result_row(r) for r in comparison.improvements]
        lines += _aligned(rows)
        lines += [f"  note: {note}" for note in comparison.notes]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _result_row(result: Result) -> list[str]:
        before, after = fmt_values(result)
        label = _LABELS[result.verdict]
        return [label, result.metric, f"{before} -> {after}", fmt_change(result),
                fmt_evidence(result)]

    @staticmethod
    def _budget_row(budget: BudgetResult) -> list[str]:
        value, limit = fmt_budget_value(budget)
        return ["OVER BUDGET", budget.text, f"median {value}", "", f"limit {limit}"]


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
            for row in rows]
