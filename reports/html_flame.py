"""The kernel stacks as an icicle: laid out here, drawn as SVG by the template.

Why not a JavaScript flame-graph library: the layout of a few hundred frames
is a dozen lines of Python, the SVG prints and shows without JavaScript,
and the page stays small; the template's script only zooms (recomputing
each box's x and width from the data attributes written here), searches and
shows a frame's samples on hover.

Frames are merged by their path from the root, as flamegraph.pl merges them:
one box per distinct frame of the stacks shown, siblings in name order, each
as wide as its samples.  Only the most sampled stacks are laid out (up to
``MAX_STACKS`` stacks and ``MAX_FRAMES`` boxes); the rest are summed into one
box under the root, named as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from profiler.model import Stacks
from reports.units import fmt_count, fmt_pct

MAX_STACKS = 400
MAX_FRAMES = 4000
ROOT_NAME = "all samples"

# Frame colours by what the frame is (report.css: .frame-<kind>).
_FAULT_WORDS = ("fault", "handle_mm", "do_anonymous", "do_pte", "do_wp", "do_read_fault",
                "trap")
_ZEROING_WORDS = ("clear_page", "pagezero", "zero_page", "clear_user", "memset")
_SYSCALL_WORDS = ("entry_syscall", "do_syscall", "__x64_sys", "__arm64_sys", "sys_", "ksys_",
                  "vfs_", "syscall")


def frame_kind(name: str) -> str:
    """'zeroing', 'fault', 'syscall' or 'other': the frame's colour."""
    lowered = name.lower()
    if any(word in lowered for word in _ZEROING_WORDS):
        return "zeroing"
    if any(word in lowered for word in _FAULT_WORDS):
        return "fault"
    if any(word in lowered for word in _SYSCALL_WORDS):
        return "syscall"
    return "other"


@dataclass
class _Node:
    name: str
    samples: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


@dataclass(frozen=True)
class Frame:
    """One box: its place as fractions of the whole width, its depth, its figures."""

    name: str
    depth: int
    x: float  # 0..1
    width: float  # 0..1
    samples: int
    share: str  # '20.0%' of all samples
    kind: str

    @property
    def x_percent(self) -> str:
        return f"{100.0 * self.x:.4f}%"

    @property
    def width_percent(self) -> str:
        return f"{100.0 * self.width:.4f}%"

    @property
    def tooltip(self) -> str:
        return f"{self.name}: {fmt_count(self.samples)} samples, {self.share}"


@dataclass(frozen=True)
class Icicle:
    frames: list[Frame]
    depth: int  # rows
    samples: int
    stacks_shown: int
    stacks_total: int


def top_stacks(stacks: Stacks, limit: int = MAX_STACKS) -> list[tuple[str, int]]:
    """The most sampled stacks, most first (ties by name): at most ``limit`` of them,
    and no more than ``MAX_FRAMES`` distinct frames in all (the page stays small)."""
    ordered = sorted(stacks.folded.items(), key=lambda item: (-item[1], item[0]))
    chosen: list[tuple[str, int]] = []
    seen: set[tuple[str, ...]] = set()
    for stack, count in ordered[:limit]:
        frames = stack.split(";")
        new = {tuple(frames[:end]) for end in range(1, len(frames) + 1)} - seen
        if chosen and len(seen) + len(new) > MAX_FRAMES:
            break
        seen |= new
        chosen.append((stack, count))
    return chosen


def distinct_frames(stacks: list[tuple[str, int]]) -> set[tuple[str, ...]]:
    """Every distinct path from the root: one box each (the root not counted)."""
    return {tuple(stack.split(";")[:end]) for stack, _ in stacks
            for end in range(1, len(stack.split(";")) + 1)}


def icicle(stacks: Stacks, limit: int = MAX_STACKS) -> Icicle | None:
    shown = top_stacks(stacks, limit)
    total = sum(stacks.folded.values())
    if not shown or total <= 0:
        return None
    root = _Node(ROOT_NAME, total)
    for stack, count in shown:
        node = root
        for name in stack.split(";"):
            node = node.children.setdefault(name, _Node(name))
            node.samples += count
    rest = total - sum(count for _, count in shown)
    if rest > 0:
        others = len(stacks.folded) - len(shown)
        name = f"({fmt_count(others)} less sampled stacks)"
        root.children[name] = _Node(name, rest)
    frames: list[Frame] = []
    _lay_out(root, 0, 0, total, frames)
    return Icicle(frames=frames, depth=1 + max(f.depth for f in frames), samples=total,
                  stacks_shown=len(shown), stacks_total=len(stacks.folded))


def _lay_out(node: _Node, depth: int, start: int, total: int, frames: list[Frame]) -> None:
    frames.append(Frame(name=node.name, depth=depth, x=start / total,
                        width=node.samples / total, samples=node.samples,
                        share=fmt_pct(node.samples, total),
                        kind="root" if depth == 0 else frame_kind(node.name)))
    offset = start
    for name in sorted(node.children):
        child = node.children[name]
        _lay_out(child, depth + 1, offset, total, frames)
        offset += child.samples
