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
from recsys.blend import NO_EVENTS, Events
from recsys.filters import Filters
from recsys.metrics import ranking_metrics
from recsys.served import ServedModel

# What a visitor brings besides the model's history: this visit's item indices, or their own
# events since the model's data ended (a customer new since the cut, as the live store holds
# them), or nothing.
Asked = np.ndarray | Events | None
# A ranker answers (user index or -1, the user's id or None, n, what they bring, now) -> item
# indices.
Ranker = Callable[[int, Any, int, Asked, int], np.ndarray]


def visit_items(visit: Asked) -> np.ndarray | None:
    """The item indices a visitor brings (a baseline reads no more of them)."""
    return visit.items if isinstance(visit, Events) else visit


def served_ranker(model: ServedModel) -> Ranker:
    """The engine as served: each visitor's answer from recommend()'s own function, with the
    serving defaults (filters, tier leads, fallback chain, ranker) and their A/B variant."""
    filters = Filters()

    def rank(user: int, user_id: Any, n: int, visit: Asked, now: int) -> np.ndarray:
        view, _variant, n = for_visitor(model, user_id, n)
        earlier = visit if isinstance(visit, Events) else NO_EVENTS
        session = visit if isinstance(visit, np.ndarray) else NO_SESSION
        picker, _visit, _due = pick(
            view, user, user_id, n, filters.resolved(view.serving), now, session, earlier
        )
        return np.asarray(picker.items, dtype=np.int64)

    return rank


def served_lists(
    model: ServedModel,
    users: np.ndarray,
    user_ids: Sequence[Any],
    k: int,
    now: int | np.ndarray,
    visits: Sequence[Asked] | None = None,
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
