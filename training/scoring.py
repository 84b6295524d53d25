"""Served answers, scored: lists exactly as Recommender.recommend gives them, and their metrics.

The nightly gate, the tier-rule check, `recsys evaluate` and `recsys tune` all ask the model
through `recsys.answer.pick` (what `recommend()` and batch export call) with the serving
defaults, so what they measure is what a shop's pages show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recsys.answer import NO_SESSION, for_visitor, pick
from recsys.filters import Filters
from recsys.metrics import ranking_metrics
from recsys.served import ServedModel

# A ranker answers (user index or -1, the user's id or None, n, visit item indices or None,
# now) -> item indices.
Ranker = Callable[[int, Any, int, np.ndarray | None, int], np.ndarray]


def served_ranker(model: ServedModel) -> Ranker:
    """The engine as served: each visitor's answer from recommend()'s own function, with the
    serving defaults (filters, tier leads, fallback chain, ranker) and their A/B variant."""
    filters = Filters()

    def rank(user: int, user_id: Any, n: int, visit: np.ndarray | None, now: int) -> np.ndarray:
        view, _variant, n = for_visitor(model, user_id, n)
        picker, _visit, _due = pick(
            view,
            user,
            user_id,
            n,
            filters.resolved(view.serving),
            now,
            NO_SESSION if visit is None else visit,
        )
        return np.asarray(picker.items, dtype=np.int64)

    return rank


def served_lists(
    model: ServedModel,
    users: np.ndarray,
    user_ids: Sequence[Any],
    k: int,
    now: int | np.ndarray,
    visits: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """Each user's served top-k as item indices, padded with -1 (users x k)."""
    rank = served_ranker(model)
    times = np.broadcast_to(np.asarray(now, dtype=np.int64), (len(users),)).tolist()
    lists = np.full((len(users), k), -1, dtype=np.int64)
    for row, (user, user_id) in enumerate(zip(users.tolist(), user_ids, strict=True)):
        found = rank(user, user_id, k, None if visits is None else visits[row], times[row])[:k]
        lists[row, : len(found)] = found
    return lists


def per_user(
    lists: np.ndarray, relevant: Sequence[np.ndarray], n_items: int, k: int, metric: str = "ndcg"
) -> np.ndarray:
    """One metric at k for each user's list (NaN where nothing is relevant)."""
    return ranking_metrics(lists, relevant, n_items, k)[metric]
