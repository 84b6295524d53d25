"""Ranking metrics over top-k lists, beyond-accuracy measures, and bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

RANKING_METRICS = ("recall", "precision", "ndcg", "map", "hit_rate", "mrr")


def hits(recommended: np.ndarray, relevant: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Return a users x k bool matrix: is the item at each rank one of the user's relevant items.

    `recommended` holds item indices per row, padded with -1; a relevant item index < 0 (an item
    the model cannot know) never matches but still counts as relevant.
    """
    recommended = np.asarray(recommended, dtype=np.int64)
    n_users = recommended.shape[0]
    if len(relevant) != n_users:
        raise ValueError(f"{n_users} recommendation lists but {len(relevant)} relevant sets")
    lengths = np.array([len(r) for r in relevant], dtype=np.int64)
    rows = np.repeat(np.arange(n_users), lengths)
    cols = np.concatenate([np.asarray(r, dtype=np.int64) for r in relevant]) if n_users else rows
    known = cols >= 0
    truth = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.int8), (rows[known], cols[known])),
        shape=(n_users, max(n_items, 1)),
    )
    truth.data[:] = 1
    valid = recommended >= 0
    r_idx, c_idx = np.nonzero(valid)
    found = np.zeros(recommended.shape, dtype=bool)
    if len(r_idx):
        values = np.asarray(truth[r_idx, recommended[r_idx, c_idx]]).ravel()
        found[r_idx, c_idx] = values > 0
    return found


def ranking_metrics(
    recommended: np.ndarray, relevant: Sequence[np.ndarray], n_items: int, k: int
) -> dict[str, np.ndarray]:
    """Return per-user arrays of each metric at k (binary relevance; users with none are NaN).

    recall = hits / |relevant|; precision = hits / k; NDCG = DCG / ideal DCG over min(|rel|, k);
    MAP = sum of precision at each hit / min(|rel|, k); hit_rate = any hit; MRR = 1 / first hit.
    Relevant items are distinct item indices (duplicates are counted once).
    """
    if k <= 0:
        raise ValueError(f"k must be > 0 (got {k})")
    relevant = [np.unique(np.asarray(r, dtype=np.int64)) for r in relevant]
    top = np.asarray(recommended, dtype=np.int64)[:, :k]
    if top.shape[1] < k:
        pad = np.full((top.shape[0], k - top.shape[1]), -1, dtype=np.int64)
        top = np.hstack([top, pad])
    found = hits(top, relevant, n_items)
    n_rel = np.array([len(r) for r in relevant], dtype=np.float64)
    n_hit = found.sum(axis=1).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (found * discounts).sum(axis=1)
    ideal_len = np.minimum(n_rel, k).astype(np.int64)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_len]
    ranks = np.arange(1, k + 1)
    precision_at_hit = np.cumsum(found, axis=1) / ranks * found
    first = np.where(found.any(axis=1), found.argmax(axis=1) + 1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "recall": n_hit / n_rel,
            "precision": n_hit / k,
            "ndcg": dcg / ideal,
            "map": precision_at_hit.sum(axis=1) / np.minimum(n_rel, k),
            "hit_rate": (n_hit > 0).astype(np.float64),
            "mrr": np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0),
        }
    empty = n_rel == 0
    for values in out.values():
        values[empty] = np.nan
    return out


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Average per-user metric arrays over users that have relevant items."""
    return {
        name: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        for name, v in per_user.items()
    }


def coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    items = np.asarray(recommended)
    distinct = np.unique(items[items >= 0])
    return len(distinct) / n_items if n_items else 0.0


def popularity_rank(recommended: np.ndarray, item_rank: np.ndarray) -> float:
    """Mean popularity rank (1 = most popular) of the recommended items: lower is more mainstream.

    `item_rank` holds each item index's 0-based rank among the training items.
    """
    items = np.asarray(recommended)
    items = items[items >= 0]
    if len(items) == 0:
        return float("nan")
    return float(np.asarray(item_rank)[items].mean() + 1)


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    level: float

    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of zero."""
        return self.low > 0 or self.high < 0


def bootstrap_interval(
    values: np.ndarray, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean of per-user values (NaN users left out).

    For a paired comparison of two strategies, pass the per-user differences.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")
    if resamples <= 0:
        raise ValueError(f"resamples must be > 0 (got {resamples})")
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, level)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    # In blocks, so that a million users x a thousand resamples never sits in memory at once.
    block = max(1, 2_000_000 // len(values))
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        picks = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[picks].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high), level)


def relevance_codes(indices: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Item indices to score against, each item unknown to the model as a negative code of its own.

    Items first seen in the test period still count as relevant (they lower recall, as they
    should); one shared -1 would count many new items as one.
    """
    codes = np.asarray(indices, dtype=np.int64).copy()
    unknown = codes < 0
    if unknown.any():
        factor, _ = pd.factorize(np.asarray(ids)[unknown])
        codes[unknown] = -1 - factor
    return codes
