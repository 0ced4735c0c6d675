"""The whole comparison as JSON (schema "stprof-comparison/1")."""

from __future__ import annotations

import json

from profiler.compare import Comparison, ComparisonRenderer


class CompareJsonRenderer(ComparisonRenderer):
    name = "json"

    def render(self, comparison: Comparison) -> str:
        return json.dumps(comparison.to_dict(), indent=1) + "\n"
