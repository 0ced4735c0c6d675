"""The comparison as GitHub-flavoured Markdown, for a job summary or a PR comment."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from profiler.compare import BudgetResult, Comparison, ComparisonRenderer, Result, Verdict
from reports.compare_text import (
    fmt_budget_value,
    fmt_change,
    fmt_evidence,
    fmt_values,
    headline,
    sides,
)

_VERDICT_MARKS = {
    Verdict.REGRESSION: ":x: regression",
    Verdict.SLOWER: ":warning: slower",
    Verdict.IMPROVEMENT: ":white_check_mark: improvement",
    Verdict.SAME: "same",
}


class CompareMarkdownRenderer(ComparisonRenderer):
    name = "markdown"

    def render(self, comparison: Comparison) -> str:
        mark = ":x:" if comparison.regressed else ":white_check_mark:"
        parts = [
            f"### stprof: {mark} {headline(comparison)}",
            f"`{_code(shlex.join(comparison.command))}`: {sides(comparison)}",
        ]
        changed = comparison.regressions + comparison.slower + comparison.improvements
        if changed:
            parts.append(_results_table(changed))
        if comparison.budgets:
            parts.append(_budgets_table(comparison.budgets))
        parts.append(
            f"<details><summary>All {len(comparison.results)} metrics</summary>\n\n"
            f"{_results_table(comparison.results)}\n\n{_thresholds(comparison)}\n\n</details>"
        )
        if comparison.notes:
            parts.append("\n".join(f"> {_cell(note)}" for note in comparison.notes))
        return "\n\n".join(parts) + "\n"


def _results_table(results: Sequence[Result]) -> str:
    rows = []
    for result in results:
        before, after = fmt_values(result)
        rows.append([f"`{result.metric}`", before, after, fmt_change(result),
                     _VERDICT_MARKS[result.verdict], fmt_evidence(result)])
    return _table(["metric", "baseline (median)", "current (median)", "change", "verdict",
                   "evidence"], rows)


def _budgets_table(budgets: Sequence[BudgetResult]) -> str:
    rows = []
    for budget in budgets:
        value, limit = fmt_budget_value(budget)
        result = "ok" if budget.passed else ":x: over budget"
        rows.append([f"`{budget.text}`", limit, value,
                     f"{result} ({budget.note})" if budget.note else result])
    return _table(["budget", "limit", "current (median)", "result"], rows)


def _thresholds(comparison: Comparison) -> str:
    t = comparison.threshold
    failing = ("slower times do not fail" if t.time_fail is None
               else f"a slower time fails from {t.time_fail:.0%}")
    return (f"Counts: the current median may leave the baseline's range by "
            f"{t.count_relative:.0%} (at least {t.count_absolute:g}). Times: slower or faster "
            f"needs p <= {t.alpha:g} (Mann-Whitney U) and a change of at least "
            f"{t.time_relative:.0%} and {t.time_absolute_ns / 1000:g} us; {failing}.")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return text.replace("`", "'")
