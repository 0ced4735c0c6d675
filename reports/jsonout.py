"""The Profile as its documented JSON (docs/schema.md)."""

from __future__ import annotations

from profiler.model import Profile
from reports.base import Renderer


class JsonRenderer(Renderer):
    name = "json"

    def render(self, profile: Profile) -> str:
        return profile.to_json() + "\n"
