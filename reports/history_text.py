"""The terminal view of a history: one row per commit (oldest first), the changes below."""

from __future__ import annotations

from collections.abc import Sequence

from profiler.changepoint import Change
from profiler.history import Series
from profiler.stats import median
from reports.compare_text import fmt_value

NOT_JUDGED = ("changes not marked: times move with the machine's load "
              "(history --time-changes PCT marks them)")


def render_history_table(series: Sequence[Series], changes: dict[str, list[Change]]) -> str:
    """Medians per commit and metric; a commit where a metric changed is marked."""
    if not series or not series[0].commits:
        return "no runs\n"
    commits = series[0].commits
    headers = ["commit", "branch", "runs", *(s.metric for s in series), "change"]
    rows = [headers]
    for index, commit in enumerate(commits):
        changed = [s.metric for s in series
                   if any(c.index == index for c in changes.get(s.metric, []))]
        cells = [commit.commit[:10], commit.branch, str(len(commit.runs))]
        cells += [_median(s, index) for s in series]
        cells.append(f"<- {', '.join(changed)}" if changed else "")
        rows.append(cells)
    lines = _aligned(rows, numeric_from=2)
    lines.append("")
    lines += _change_lines(series, changes)
    return "\n".join(lines) + "\n"


def _median(series: Series, index: int) -> str:
    values = series.commits[index].values
    return fmt_value(series.kind, median(values)) if values else "-"


def _change_lines(series: Sequence[Series], changes: dict[str, list[Change]]) -> list[str]:
    found = []
    for s in series:
        if s.metric not in changes:
            found.append(f"{s.metric}: {NOT_JUDGED}")
        for change in changes.get(s.metric, []):
            commit = s.commits[change.index]
            relative = "" if change.relative is None else f" ({change.relative:+.1%})"
            found.append(f"change: {s.metric} at commit {commit.commit[:10]} "
                         f"({change.index + 1} of {len(s.commits)}): "
                         f"{fmt_value(s.kind, change.before)} -> "
                         f"{fmt_value(s.kind, change.after)}{relative}")
    if not any(line.startswith("change:") for line in found):
        found.append("no change detected")
    return found


def _aligned(rows: Sequence[Sequence[str]], numeric_from: int) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1
    lines = []
    for row in rows:
        cells = [cell.rjust(widths[i]) if numeric_from <= i < last else cell.ljust(widths[i])
                 for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines
