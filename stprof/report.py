"""``stprof report``: render a profile saved with ``stprof run --json``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from profiler.errors import UsageError, shown
from profiler.model import Profile, write_text_atomically
from stprof.options import (
    Subparsers,
    add_view_options,
    check_writable,
    say,
    trace_spec_of,
    view_of,
)
from stprof.outputs import emit


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("report", help="show a saved profile (from run --json)",
                            description="Render a profile saved with `stprof run --json`.")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--format", choices=("text", "json", "folded", "html", "timeline"),
                        default="text",
                        help="text (default), the profile's JSON, folded stacks, or one "
                             "self-contained HTML page (to -o FILE, else stdout); timeline: "
                             "only `stprof run --timeline FILE` can write one")
    add_view_options(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    if trace_spec_of(args) is not None:
        raise UsageError("-e trace=SET chooses what stprof run traces; a report can only "
                         "filter its table: -e NAME,...")
    view = view_of(args)
    if args.format == "timeline":
        raise UsageError("a timeline cannot be made from a saved profile: it holds totals, "
                         "not events; record one with `stprof run --timeline FILE -- COMMAND`")
    check_writable(args.output, args.json, args.stacks, args.html)
    profile = Profile.load(args.file)
    if args.format == "html":
        _write_html(profile, args)
        return 0
    if args.format != "text":
        from reports import RENDERERS

        if args.format == "folded" and profile.stacks is None:
            say(f"{shown(args.file)} holds no kernel stacks "
                f"(the {profile.collector} collector sampled none)")
        sys.stdout.write(RENDERERS[args.format](view).render(profile))
        return 0
    emit(profile, args, view, default_stream=sys.stdout)
    return 0


def _write_html(profile: Profile, args: argparse.Namespace) -> None:
    """--format html: the page to -o FILE and/or --html FILE, else to stdout."""
    from reports.html import HtmlRenderer

    page = HtmlRenderer(view_of(args)).render(profile)
    for path in (args.output, args.html):
        if path:
            write_text_atomically(Path(path), page)
    if not args.output and not args.html:
        sys.stdout.write(page)
