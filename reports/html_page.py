"""What every HTML page of stprof shares: the Jinja2 environment and the inlined assets.

A page is one self-contained file: the template's CSS and JavaScript and the
vendored libraries are read from ``reports/html_assets/`` and written into
the page itself, so it opens offline with no request of any kind (the page's
Content-Security-Policy forbids every fetch as well).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from reports.units import fmt_count, fmt_ns

ASSETS = "html_assets"


@cache
def asset(name: str) -> str:
    """The text of one asset file (``vendor/uPlot.iife.min.js``, ``report.css``...)."""
    return resources.files("reports").joinpath(ASSETS, name).read_text(encoding="utf-8")


def inline_script(text: str) -> Markup:
    """Script text safe inside <script>: no '</script' can end it early."""
    return Markup(text.replace("</", "<\\/"))


def inline_json(text: str) -> Markup:
    """JSON text safe inside <script type="application/json">.

    Every '<' becomes its JSON escape (it can only occur inside strings), so
    the browser's JSON.parse gives back exactly the same data.
    """
    return Markup(text.replace("<", "\\u003c"))


def json_data(value: Any) -> Markup:
    """Python data as JSON for a <script type="application/json"> block."""
    return inline_json(json.dumps(value))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", ASSETS),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["asset"] = asset
    env.filters["script"] = inline_script
    env.filters["fmt_count"] = fmt_count
    env.filters["fmt_ns"] = fmt_ns
    return env


def render_page(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
