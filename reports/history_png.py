"""A history's trend charts as one PNG image (matplotlib, Agg backend).

The same charts as the web page, stacked: one panel per metric, counts
first, each with its own y axis and unit; every run a dot, the median per
commit a line, a changed level marked by a red dashed line between the
commits and the new commit named.  Nothing is clipped: the y range covers
every run.  matplotlib is imported here only, when a PNG is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from profiler.changepoint import Change
from profiler.compare import Kind
from profiler.history import Series
from profiler.stats import median
from reports.units import fmt_ns

SPREAD = 0.3  # how far apart the runs of one commit are drawn, in commits
LEVEL_HALF = 0.3  # half the width of a commit's median level
WIDTH_IN = 9.0
PANEL_IN = 2.4
DPI = 100


def render_history_png(series: Sequence[Series], changes: dict[str, list[Change]],
                       path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    ordered = sorted(series, key=lambda s: s.kind is not Kind.COUNT)
    figure, axes = pyplot.subplots(len(ordered), 1, squeeze=False, sharex=True,
                                   figsize=(WIDTH_IN, 0.9 + PANEL_IN * len(ordered)), dpi=DPI)
    for panel, one in zip(axes[:, 0], ordered):
        _draw(panel, one, changes.get(one.metric))
    commits = ordered[0].commits if ordered else []
    last = axes[-1, 0]
    last.set_xticks(range(len(commits)))
    last.set_xticklabels([c.commit[:7] for c in commits], rotation=45, ha="right",
                         fontsize=8)
    last.set_xlabel("commit (oldest first)")
    name = ordered[0].name if ordered else ""
    figure.suptitle(f"stprof history: {name} ({len(commits)} commits)", fontsize=11)
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, format="png")
    pyplot.close(figure)
    tmp.replace(path)


def _draw(panel: Any, series: Series, judged: Sequence[Change] | None) -> None:
    changes = judged or []
    xs, ys = [], []
    for index, commit in enumerate(series.commits):
        count = len(commit.values)
        for j, value in enumerate(commit.values):
            offset = -SPREAD / 2 + SPREAD * j / (count - 1) if count > 1 else 0.0
            xs.append(index + offset)
            ys.append(value)
    line_x, line_y = [], []  # the median as a level across each commit's runs
    for index, commit in enumerate(series.commits):
        level = median(commit.values) if commit.values else float("nan")
        line_x += [index - LEVEL_HALF, index + LEVEL_HALF]
        line_y += [level, level]
    panel.plot(line_x, line_y, color="#ff7f0e", linewidth=1.8, label="median per commit",
               zorder=2)
    panel.scatter(xs, ys, s=14, color="#1f77b4", label="run", zorder=3)
    for number, change in enumerate(changes):
        panel.axvline(change.index - 0.5, color="#d00020", linestyle="--", linewidth=1.5,
                      label="detected change" if number == 0 else None)
        panel.annotate(f"change: {series.commits[change.index].commit[:7]}",
                       xy=(change.index - 0.5, 1.0), xycoords=("data", "axes fraction"),
                       xytext=(4, -12), textcoords="offset points", color="#d00020",
                       fontsize=8)
    top = max(ys, default=1.0)
    panel.set_ylim(min(0.0, min(ys, default=0.0)), top * 1.1 if top > 0 else 1.0)
    panel.set_xlim(-0.6, len(series.commits) - 0.4)
    kind = "time" if series.kind is Kind.TIME else "count"
    panel.set_title(f"{series.metric} ({kind}): {_summary(series, judged)}", fontsize=10,
                    loc="left")
    panel.yaxis.set_major_formatter(_formatter(series.kind))
    panel.grid(axis="y", color="#ddd", linewidth=0.6)
    panel.legend(loc="lower right", fontsize=7, frameon=False)


def _summary(series: Series, changes: Sequence[Change] | None) -> str:
    if changes is None:
        return "changes not marked (times; --time-changes PCT)"
    if not changes:
        return "no change detected"
    words = []
    for change in changes:
        relative = "" if change.relative is None else f" ({change.relative:+.1%})"
        words.append(f"changed at {series.commits[change.index].commit[:7]}: "
                     f"{_value(series.kind, change.before)} -> "
                     f"{_value(series.kind, change.after)}{relative}")
    return "; ".join(words)


def _value(kind: Kind, value: float) -> str:
    return fmt_ns(value) if kind is Kind.TIME else f"{value:,.0f}"


def _formatter(kind: Kind) -> Any:
    from matplotlib.ticker import FuncFormatter

    if kind is Kind.TIME:
        return FuncFormatter(lambda value, _pos: fmt_ns(value))
    return FuncFormatter(lambda value, _pos: f"{value:,.0f}")
