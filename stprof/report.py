"""``stprof report``: render a profile saved with ``stprof run --json``."""

from __future__ import annotations

import argparse
import sys

from profiler.errors import shown
from profiler.model import Profile
from stprof.options import Subparsers, add_view_options, check_writable, say, view_of
from stprof.outputs import emit


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("report", help="show a saved profile (from run --json)",
                            description="Render a profile saved with `stprof run --json`.")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--format", choices=("text", "json", "folded"), default="text",
                        help="text (default), the profile's JSON, or folded stacks")
    add_view_options(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    view = view_of(args)
    check_writable(args.output, args.json, args.stacks)
    profile = Profile.load(args.file)
    if args.format != "text":
        from reports import RENDERERS

        if args.format == "folded" and profile.stacks is None:
            say(f"{shown(args.file)} holds no kernel stacks "
                f"(the {profile.collector} collector sampled none)")
        sys.stdout.write(RENDERERS[args.format](view).render(profile))
        return 0
    emit(profile, args, view, default_stream=sys.stdout)
    return 0
