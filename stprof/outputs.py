"""Writing one profile where the user asked: report, JSON, folded stacks, HTML."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from profiler.errors import StprofError, shown
from profiler.model import Profile, write_text_atomically
from reports import ViewOptions
from stprof.options import say


def emit(profile: Profile, args: argparse.Namespace, view: ViewOptions,
         default_stream: TextIO | None = None) -> None:
    """Write the JSON, the folded stacks and the report where the user asked.

    Each output is tried; the report reaches the terminal even when its file
    cannot be written.  The first failure is raised once all were tried.
    """
    from reports import FoldedRenderer, JsonRenderer, TextRenderer

    failures: list[StprofError] = []
    if args.json:
        json_text = JsonRenderer().render(profile)
        _try_write(failures, lambda: write_text_atomically(Path(args.json), json_text))
    if args.stacks:
        if profile.stacks is None:
            say(f"no kernel stacks were sampled by this collector; "
                f"{shown(args.stacks)} not written")
        else:
            folded = FoldedRenderer().render(profile)
            _try_write(failures, lambda: write_text_atomically(Path(args.stacks), folded))
    if args.html:
        from reports.html import HtmlRenderer  # Jinja2 only when a page is asked for

        page = HtmlRenderer(view).render(profile)
        _try_write(failures, lambda: write_text_atomically(Path(args.html), page))
    text = TextRenderer(view).render(profile)
    if not (args.output and _try_write(
            failures, lambda: write_text_atomically(Path(args.output), text))):
        stream = default_stream or sys.stderr
        stream.write(text)
        stream.flush()
    if failures:
        raise failures[0]


def _try_write(failures: list[StprofError], write: Callable[[], None]) -> bool:
    try:
        write()
    except StprofError as exc:
        failures.append(exc)
        return False
    return True
