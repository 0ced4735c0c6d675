"""Log2 histograms as text, in the layout of bcc's print_log2_hist.

A profile's ``hist`` lists counts per log2 bucket of nanoseconds: bucket 0
holds 0 ns, bucket i holds [2**(i-1), 2**i) ns (profiler.model.log2_bucket).
"""

from __future__ import annotations

BAR_WIDTH = 40


def bucket_range(index: int) -> tuple[int, int]:
    """The inclusive [low, high] of bucket ``index`` in ns."""
    if index == 0:
        return 0, 0
    return 1 << (index - 1), (1 << index) - 1


def log2_hist_lines(hist: list[int], unit: str = "nsecs") -> list[str]:
    """One line per bucket from the first to the last non-empty one, with a bar
    scaled to the largest count; no lines for an empty histogram."""
    used = [index for index, count in enumerate(hist) if count]
    if not used:
        return []
    first, last = used[0], used[-1]
    peak = max(hist)
    width = len(str(bucket_range(last)[1]))
    lines = [f"{unit:>{2 * width + 4}} : count     distribution"]
    for index in range(first, last + 1):
        low, high = bucket_range(index)
        count = hist[index]
        bar = "*" * round(BAR_WIDTH * count / peak)
        lines.append(f"{low:>{width}} -> {high:<{width}} : {count:<9} |{bar:<{BAR_WIDTH}}|")
    return lines
