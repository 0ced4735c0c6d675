"""The statistics the comparison needs, on a handful of runs per side.

A baseline and a current record hold a few runs each (typically 5 to 10),
so the tests here are rank tests with exact p-values, not normal
approximations: the Mann-Whitney U test (exact null distribution when the
values have no ties, an exact or seeded Monte-Carlo permutation test when
they do) and Cliff's delta as its effect size.  Stdlib only.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# Above this many ways of splitting the pooled runs, a tied sample is tested
# with this many random splits instead of all of them.
EXACT_PERMUTATION_LIMIT = 20_000
MONTE_CARLO_PERMUTATIONS = 20_000
_SEED = 0x57F


@dataclass(frozen=True)
class RankTest:
    """The outcome of a two-sided Mann-Whitney U test of ``current`` against ``baseline``.

    ``u`` counts the (current, baseline) pairs where the current value is the
    larger, ties counting one half; ``p_value`` is two-sided; ``method`` says
    how it was obtained ("exact", "permutation" or "monte-carlo").
    """

    u: float
    p_value: float
    method: str


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def u_statistic(current: Sequence[float], baseline: Sequence[float]) -> float:
    """Pairs (c, b) with c > b, plus one half for each pair with c == b."""
    total = 0.0
    for c in current:
        for b in baseline:
            if c > b:
                total += 1.0
            elif c == b:
                total += 0.5
    return total


def cliffs_delta(current: Sequence[float], baseline: Sequence[float]) -> float:
    """P(c > b) - P(c < b) over all pairs: +1 every current run is larger, -1 smaller."""
    if not current or not baseline:
        return 0.0
    pairs = len(current) * len(baseline)
    return 2.0 * u_statistic(current, baseline) / pairs - 1.0


def mann_whitney(current: Sequence[float], baseline: Sequence[float]) -> RankTest:
    """Two-sided Mann-Whitney U test with an exact (or permutation) p-value."""
    if not current or not baseline:
        return RankTest(0.0, 1.0, "exact")
    u = u_statistic(current, baseline)
    pooled = [*current, *baseline]
    if len(set(pooled)) == len(pooled):
        return RankTest(u, _exact_p_value(u, len(current), len(baseline)), "exact")
    return _permutation_test(u, current, baseline)


def _exact_p_value(u: float, m: int, n: int) -> float:
    """P(|U - mn/2| >= |u - mn/2|) under the null, from the exact distribution of U."""
    counts = _u_distribution(m, n)
    centre = m * n / 2.0
    distance = abs(u - centre)
    extreme = sum(count for value, count in enumerate(counts)
                  if abs(value - centre) >= distance - 1e-9)
    return min(1.0, extreme / math.comb(m + n, m))


@lru_cache(maxsize=256)
def _u_distribution(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings of m current and n baseline values give U = u.

    The recursion looks at the largest value: if it is a current one it beats
    all n baseline values (U gains n), otherwise it adds nothing.
    """
    if m == 0 or n == 0:
        return (1,)
    with_current_top = _u_distribution(m - 1, n)
    with_baseline_top = _u_distribution(m, n - 1)
    counts = [0] * (m * n + 1)
    for u, count in enumerate(with_current_top):
        counts[u + n] += count
    for u, count in enumerate(with_baseline_top):
        counts[u] += count
    return tuple(counts)


def _permutation_test(u: float, current: Sequence[float], baseline: Sequence[float]) -> RankTest:
    """p-value of U by re-splitting the pooled values (needed when values tie)."""
    pooled = [*current, *baseline]
    m, n = len(current), len(baseline)
    centre = m * n / 2.0
    distance = abs(u - centre) - 1e-9
    total = math.comb(m + n, m)
    splits: Iterable[tuple[int, ...]]
    if total <= EXACT_PERMUTATION_LIMIT:
        splits = itertools.combinations(range(m + n), m)
        method, tries = "permutation", total
    else:
        rng = random.Random(_SEED)
        splits = (tuple(rng.sample(range(m + n), m)) for _ in range(MONTE_CARLO_PERMUTATIONS))
        method, tries = "monte-carlo", MONTE_CARLO_PERMUTATIONS
    extreme = 0
    for chosen in splits:
        picked = set(chosen)
        first = [pooled[i] for i in chosen]
        rest = [pooled[i] for i in range(m + n) if i not in picked]
        if abs(u_statistic(first, rest) - centre) >= distance:
            extreme += 1
    if method == "monte-carlo":  # count the observed split, so p is never 0
        return RankTest(u, (extreme + 1) / (tries + 1), method)
    return RankTest(u, extreme / tries, method)


def smallest_p_value(m: int, n: int) -> float:
    """The smallest two-sided p-value m and n runs can give: the test's resolution."""
    if m == 0 or n == 0:
        return 1.0
    return min(1.0, 2.0 / math.comb(m + n, m))
