"""Where a metric's level changed over the commits: a robust step test.

The series is one group of run values per commit, oldest first.  Each commit
is reduced to its median (so one odd run cannot move it), and the commits are
split by binary segmentation under an L1 cost:

1. the split point is the k that minimises the sum of absolute deviations of
   the commit medians from their side's median (left of k, from k on) -- the
   L1 fit of one step, which an outlier commit cannot drag far;
2. the step is the difference of the two sides' medians; it is accepted only
   when it is at least the minimum effect (``relative`` of the level before,
   and ``absolute``) and at least ``noise_factor`` times the noise, the
   commits' scatter around their side's median (1.4826 x MAD, a robust
   standard deviation);
3. each side must hold at least ``min_commits`` commits, so a single odd
   commit at either end is never a change: a new level is confirmed by a
   second commit;
4. accepted splits are searched again on both sides.

The minimum effects are the check's own thresholds (``profiler.compare.Threshold``):
a count must move by 3 % and 2, a time by 25 % and 200 us; times also need the
noise test, since on a shared machine whole commits run slower under load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.compare import Kind, Threshold
from profiler.stats import median

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class StepRule:
    """What a step must reach to be called a change."""

    relative: float
    absolute: float
    noise_factor: float = 4.0
    min_commits: int = 2

    @classmethod
    def for_kind(cls, kind: Kind, threshold: Threshold | None = None) -> StepRule:
        limits = threshold or Threshold()
        if kind is Kind.TIME:
            return cls(relative=limits.time_relative, absolute=limits.time_absolute_ns)
        return cls(relative=limits.count_relative, absolute=limits.count_absolute)


@dataclass(frozen=True)
class Change:
    """A new level from commit ``index`` on."""

    index: int
    before: float  # median level of the segment before
    after: float  # median level from ``index`` on

    @property
    def relative(self) -> float | None:
        return None if self.before == 0 else (self.after - self.before) / abs(self.before)


def change_points(groups: Sequence[Sequence[float]], rule: StepRule) -> list[Change]:
    """The commits (indices into ``groups``) where a new level starts, in order.

    A commit without values (the metric not measured there) is left out.
    """
    measured = [index for index, group in enumerate(groups) if group]
    levels = [median(groups[index]) for index in measured]
    found = sorted(_segment(levels, 0, len(levels), rule), key=lambda change: change.index)
    return [Change(measured[change.index], change.before, change.after) for change in found]


def _segment(levels: list[float], low: int, high: int, rule: StepRule) -> list[Change]:
    split = _best_split(levels, low, high, rule.min_commits)
    if split is None:
        return []
    left, right = levels[low:split], levels[split:high]
    before, after = median(left), median(right)
    step = abs(after - before)
    noise = MAD_TO_SIGMA * median([abs(v - before) for v in left]
                                  + [abs(v - after) for v in right])
    large_enough = step >= max(rule.absolute, rule.relative * abs(before))
    above_noise = step >= rule.noise_factor * noise
    if not (large_enough and above_noise):
        return []
    return [*_segment(levels, low, split, rule), Change(split, before, after),
            *_segment(levels, split, high, rule)]


def _best_split(levels: list[float], low: int, high: int, min_commits: int) -> int | None:
    """The k in (low, high) minimising the L1 cost of one step; None when too short."""
    best: tuple[float, int] | None = None
    for k in range(low + min_commits, high - min_commits + 1):
        cost = _l1_cost(levels[low:k]) + _l1_cost(levels[k:high])
        if best is None or cost < best[0]:
            best = (cost, k)
    return None if best is None else best[1]


def _l1_cost(values: Sequence[float]) -> float:
    centre = median(values)
    return sum(abs(v - centre) for v in values)
