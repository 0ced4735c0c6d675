"""The renderer interface: a Renderer turns a Profile into text of one format."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from profiler.model import Profile


@dataclass
class ViewOptions:
    """What part of a profile to show and in which order."""

    sort: str = "time"
    top: int | None = None
    only: set[str] = field(default_factory=set)
    # under the syscall table, each shown syscall's latency histogram
    histograms: bool = False


class Renderer(ABC):
    name: str

    def __init__(self, view: ViewOptions | None = None) -> None:
        self.view = view or ViewOptions()

    @abstractmethod
    def render(self, profile: Profile) -> str:
        """The whole report as text."""
