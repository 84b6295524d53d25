"""Statistics of values split into integer groups, without a loop over groups."""

from __future__ import annotations

import numpy as np


def grouped_median(
    groups: np.ndarray, values: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (median of values per group, NaN for empty groups; count per group)."""
    order = np.lexsort((values, groups))
    sorted_values = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    has = np.flatnonzero(counts)
    median = np.full(n_groups, np.nan)
    low = starts[has] + (counts[has] - 1) // 2
    high = starts[has] + counts[has] // 2
    median[has] = (sorted_values[low] + sorted_values[high]) / 2
    return median, counts
