"""Renderers: one class per output format, each reading a Profile."""

from __future__ import annotations

from reports.base import Renderer, ViewOptions
from reports.folded import FoldedRenderer
from reports.jsonout import JsonRenderer
from reports.text import SORT_KEYS, TextRenderer

RENDERERS: dict[str, type[Renderer]] = {
    "text": TextRenderer,
    "json": JsonRenderer,
    "folded": FoldedRenderer,
}

__all__ = ["RENDERERS", "SORT_KEYS", "FoldedRenderer", "JsonRenderer", "Renderer",
           "TextRenderer", "ViewOptions"]
