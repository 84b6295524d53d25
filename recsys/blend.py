"""The blend: one ranked list for a known user from every strategy's candidates.

Each strategy proposes candidates with raw scores; the scores are scaled to [0, 1] per strategy
and user, weighted by the blend configuration, and summed per item. An item's source is the
strategy that contributed most to it, which serving turns into its reason. Training evaluates
this same blend, and serving and batch export call it, so all three agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.config import BlendConfig
from recsys.history import UserHistory
from recsys.models.als import ALSModel
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours, sum_rows
from recsys.models.popularity import PopularityModel
from recsys.models.repurchase import RepurchaseModel
from recsys.schema import EventType

SOURCES: tuple[str, ...] = ("personal", "neighbours", "repurchase", "complementary", "popular")
_DAY = 86_400.0
# Purchases and carts seed complementary items ("bought X -> needs Y").
_COMPLEMENT_SEEDS = np.array([EventType.PURCHASE, EventType.CART], dtype=np.int8)


@dataclass
class Strategies:
    """The fitted models a blend draws on; any may be missing (None)."""

    history: UserHistory
    popularity: PopularityModel
    als: ALSModel | None = None
    neighbours: ItemNeighbours | None = None
    copurchase: CoPurchase | None = None
    repurchase: RepurchaseModel | None = None


@dataclass(frozen=True)
class Ranked:
    """A ranked list: item indices, blended scores, and each item's source (index in SOURCES)."""

    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


class Blender:
    """Ranks items for known users by blending every available strategy."""

    def __init__(
        self, strategies: Strategies, config: BlendConfig | None = None, personal_pool: int = 20_000
    ) -> None:
        self.strategies = strategies
        self.config = config or BlendConfig()
        pop = strategies.popularity
        # ALS is scored against the most popular items only: the long tail's factors are noise,
        # and scoring a bounded pool keeps a call well under a millisecond on large catalogues.
        self.pool = np.sort(pop.popular_[:personal_pool]).astype(np.int64)
        # Gathered once: indexing the factors per call would copy the whole pool each time.
        self.pool_factors = (
            np.ascontiguousarray(strategies.als.item_factors_[self.pool])
            if strategies.als is not None
            else None
        )
        self.weights = np.array([getattr(self.config, name) for name in _CONFIG_NAMES])

    def rank(
        self,
        user: int,
        now: int,
        n: int,
        *,
        exclude: np.ndarray | None = None,
        only: str | None = None,
    ) -> Ranked:
        """Return the top-n items for a user index (-1: unknown) at time `now`.

        `only` restricts the blend to one strategy (for evaluation); items in `exclude` and
        items the user bought that are never bought twice are left out.
        """
        if only is not None and only not in SOURCES:
            raise ValueError(f"unknown strategy {only!r} (expected one of {SOURCES})")
        parts = self._candidates(user, now, n, only)
        items = np.concatenate([p[0] for p in parts]).astype(np.int64)
        scores = np.concatenate([p[1] for p in parts]).astype(np.float64)
        sources = np.concatenate([np.full(len(p[0]), p[2], dtype=np.int8) for p in parts])
        drop = self._excluded(user, exclude)
        if len(drop):
            keep = ~np.isin(items, drop)
            items, scores, sources = items[keep], scores[keep], sources[keep]
        return _aggregate(items, scores, sources, n)

    def _candidates(
        self, user: int, now: int, n: int, only: str | None
    ) -> list[tuple[np.ndarray, np.ndarray, int]]:
        s = self.strategies
        cfg = self.config
        wanted = max(4 * n, 100)
        known = 0 <= user < s.history.n_users
        parts: list[tuple[np.ndarray, np.ndarray, int]] = []

        def add(source: int, items: np.ndarray, raw: np.ndarray) -> None:
            if len(items) and (only is None or SOURCES[source] == only):
                weight = 1.0 if only is not None else self.weights[source]
                top = float(np.max(raw))
                if weight > 0 and top > 0:
                    parts.append((items, weight * np.clip(raw, 0, None) / top, source))

        if known:
            h_items, h_events, h_times = s.history.of(user)
            recent, recency = _recent(h_items, h_times, now, cfg)
            if s.als is not None and self.pool_factors is not None and only in (None, "personal"):
                vector = s.als.user_vector(user)
                if vector is not None:
                    raw = self.pool_factors @ vector
                    top = _top(raw, wanted)
                    add(0, self.pool[top], raw[top])
            if s.neighbours is not None and len(recent) and only in (None, "neighbours"):
                add(1, *sum_rows(s.neighbours.similarity_, recent, recency))
            if s.repurchase is not None and only in (None, "repurchase"):
                due = s.repurchase.due(user, now, wanted)
                add(2, due.items, due.scores)
            if s.copurchase is not None and only in (None, "complementary"):
                seeds = np.isin(h_events, _COMPLEMENT_SEEDS)
                c_items, c_weights = _recent(h_items[seeds], h_times[seeds], now, cfg)
                if len(c_items):
                    add(3, *sum_rows(s.copurchase.complements_, c_items, c_weights))
        if only in (None, "popular"):
            pop_items, pop_scores = s.popularity.top(wanted)
            add(4, pop_items, pop_scores)
        if not parts:
            parts.append((np.zeros(0, np.int64), np.zeros(0), 4))
        return parts

    def _excluded(self, user: int, exclude: np.ndarray | None) -> np.ndarray:
        drop = [] if exclude is None else [np.asarray(exclude, dtype=np.int64)]
        s = self.strategies
        if s.repurchase is not None and 0 <= user < s.history.n_users:
            bought, _, _ = s.repurchase.purchases(user)
            # Bought items come back only if people rebuy them (coffee yes, a fridge no).
            drop.append(bought[~s.repurchase.rebuyable_[bought]].astype(np.int64))
        return np.concatenate(drop) if drop else np.zeros(0, dtype=np.int64)


_CONFIG_NAMES = ("personal", "neighbours", "repurchase", "complementary", "popular")


def _recent(
    items: np.ndarray, times: np.ndarray, now: int, cfg: BlendConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The user's most recent distinct items, newest first, with recency weights in (0, 1]."""
    if len(items) == 0:
        return items.astype(np.int64), np.zeros(0)
    newest_first = np.argsort(-times, kind="stable")
    ordered = items[newest_first]
    _, first = np.unique(ordered, return_index=True)
    first = np.sort(first)[: cfg.recent_items]
    age_days = np.maximum(now - times[newest_first][first], 0) / _DAY
    return ordered[first].astype(np.int64), np.exp2(-age_days / cfg.recency_half_life_days)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _aggregate(items: np.ndarray, scores: np.ndarray, sources: np.ndarray, n: int) -> Ranked:
    if len(items) == 0:
        return Ranked(np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int8))
    uniq, inverse = np.unique(items, return_inverse=True)
    total = np.bincount(inverse, weights=scores)
    # The item's source is the strategy that contributed the largest share of its score.
    order = np.lexsort((-scores, inverse))
    first = np.r_[True, inverse[order][1:] != inverse[order][:-1]]
    best_source = np.empty(len(uniq), dtype=np.int8)
    best_source[inverse[order][first]] = sources[order][first]
    ranked = np.lexsort((uniq, -total))[:n]
    return Ranked(
        items=uniq[ranked].astype(np.int32),
        scores=total[ranked].astype(np.float32),
        sources=best_source[ranked],
    )
