"""Folded stacks ("root;child;leaf count" a line) for flamegraph.pl, inferno, speedscope."""

from __future__ import annotations

from profiler.model import Profile
from reports.base import Renderer


class FoldedRenderer(Renderer):
    name = "folded"

    def render(self, profile: Profile) -> str:
        if profile.stacks is None:
            return ""
        lines = [
            f"{stack} {count}"
            for stack, count in sorted(profile.stacks.folded.items(), key=lambda i: (-i[1], i[0]))
        ]
        return "".join(line + "\n" for line in lines)
