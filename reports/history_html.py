"""A history's trend charts as one self-contained web page (uPlot, inlined).

One chart per metric: every run a point (repetitions of a commit side by
side), the median per commit a line, the commit where the level changed
marked, and a tooltip with the commit and its values.  Counts and times are
never on one axis: each metric has its own chart and its own unit, the count
charts first, then the time charts.  The y range always covers every run, so
no outlier is clipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from profiler.changepoint import Change
from profiler.compare import Kind
from profiler.history import Series
from profiler.stats import median
from reports.compare_text import fmt_value
from reports.history_text import NOT_JUDGED

TEMPLATE = "history.html.j2"


def render_history_html(series: Sequence[Series], changes: dict[str, list[Change]]) -> str:
    import jinja2

    assets = resources.files("reports") / "html_assets"
    environment = jinja2.Environment(autoescape=True, keep_trailing_newline=True)
    template = environment.from_string((assets / TEMPLATE).read_text(encoding="utf-8"))
    ordered = sorted(series, key=lambda s: s.kind is not Kind.COUNT)
    return template.render(
        name=series[0].name if series else "",
        commits=len(series[0].commits) if series else 0,
        runs=sum(len(c.runs) for c in series[0].commits) if series else 0,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        charts=[_chart(s, changes.get(s.metric)) for s in ordered],
        data_json=_script_safe(json.dumps([_chart_data(s, changes.get(s.metric, []))
                                           for s in ordered])),
        uplot_js=_script_safe((assets / "vendor" / "uPlot.iife.min.js").read_text("utf-8")),
        uplot_css=(assets / "vendor" / "uPlot.min.css").read_text("utf-8"),
    )


def _chart(series: Series, changes: Sequence[Change] | None) -> dict[str, Any]:
    """What the page says in words above a chart."""
    if changes is None:
        return {"metric": series.metric, "kind": series.kind.value, "changes": [NOT_JUDGED]}
    found = []
    for change in changes:
        commit = series.commits[change.index]
        relative = "" if change.relative is None else f" ({change.relative:+.1%})"
        found.append(f"changed at commit {commit.commit[:10]} ({change.index + 1} of "
                     f"{len(series.commits)}): {fmt_value(series.kind, change.before)} -> "
                     f"{fmt_value(series.kind, change.after)}{relative}")
    return {"metric": series.metric, "kind": series.kind.value,
            "changes": found or ["no change detected"]}


def _chart_data(series: Series, changes: Sequence[Change]) -> dict[str, Any]:
    """The points of one chart, as the page's script reads them."""
    return {
        "metric": series.metric,
        "kind": series.kind.value,
        "commits": [{"sha": c.commit, "branch": c.branch, "recorded": c.first_recorded,
                     "values": c.values, "median": median(c.values) if c.values else None}
                    for c in series.commits],
        "changes": [change.index for change in changes],
    }


def _script_safe(text: str) -> str:
    """Text that cannot end the <script> element it is inlined into."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")
