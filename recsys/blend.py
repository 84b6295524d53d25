"""The blend: one ranked list for a visitor from every strategy's candidates.

Each strategy proposes candidates with raw scores; the scores are scaled to [0, 1] per strategy
and call, weighted by the blend configuration, and summed per item. An item's source is the
strategy that contributed most to it, and its seed the history or session item that led
there (for "because you viewed ..."). Training evaluates this blend; serving and batch export
call it, so all three agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from recsys.config import BlendConfig
from recsys.history import UserHistory
from recsys.models.als import ALSModel
from recsys.models.base import Model
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours, sum_rows
from recsys.models.popularity import PopularityModel
from recsys.models.repurchase import RepurchaseModel
from recsys.schema import EventType

T = TypeVar("T", bound=Model)
SOURCES: tuple[str, ...] = (
    "personal",
    "neighbours",
    "repurchase",
    "complementary",
    "session",
    "popular",
)
PERSONAL, NEIGHBOURS, REPURCHASE, COMPLEMENTARY, SESSION, POPULAR = range(len(SOURCES))
_DAY = 86_400.0
# Purchases and carts seed complementary items ("bought X -> needs Y").
_COMPLEMENT_SEEDS = np.array([EventType.PURCHASE, EventType.CART], dtype=np.int8)
_NO_SEED = np.zeros(0, dtype=np.int32)
# When two strategies give an item the same share, the more specific reason wins.
_PRIORITY = np.array([4, 3, 0, 1, 2, 5], dtype=np.int8)  # indexed by source


@dataclass
class Strategies:
    """The fitted models a blend draws on; any but popularity may be missing (None)."""

    history: UserHistory
    popularity: PopularityModel
    als: ALSModel | None = None
    neighbours: ItemNeighbours | None = None
    copurchase: CoPurchase | None = None
    repurchase: RepurchaseModel | None = None

    @classmethod
    def from_models(cls, history: UserHistory, models: Mapping[str, Model]) -> Strategies:
        """Pick the blend's strategies out of fitted models keyed by model name."""

        def get(name: str, kind: type[T]) -> T | None:
            model = models.get(name)
            if model is not None and not isinstance(model, kind):
                raise TypeError(f"model {name!r} is a {type(model).__name__}, not {kind.__name__}")
            return model

        popularity = get("popularity", PopularityModel)
        if popularity is None:
            raise ValueError("a blend needs the popularity model, its last fallback")
        return cls(
            history=history,
            popularity=popularity,
            als=get("als", ALSModel),
            neighbours=get("neighbours", ItemNeighbours),
            copurchase=get("copurchase", CoPurchase),
            repurchase=get("repurchase", RepurchaseModel),
        )


@dataclass(frozen=True)
class Ranked:
    """A ranked list of item indices with blended scores, sources and seeds (-1: none)."""

    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class _Part:
    source: int
    items: np.ndarray
    scores: np.ndarray
    seeds: np.ndarray


class Blender:
    """Ranks items for a visitor by blending every available strategy."""

    def __init__(
        self, strategies: Strategies, config: BlendConfig | None = None, personal_pool: int = 20_000
    ) -> None:
        self.strategies = strategies
        self.config = config or BlendConfig()
        pop = strategies.popularity
        # ALS is scored against the most popular items only: the long tail's factors are noise,
        # and scoring a bounded pool keeps a call fast on large catalogues.
        self.pool = np.sort(pop.popular_[:personal_pool]).astype(np.int64)
        # Gathered once into an exact inner-product index: faiss scans the pool about twice as
        # fast as a numpy product plus partial sort, and gives the same top-k.
        self.pool_factors = (
            np.ascontiguousarray(strategies.als.item_factors_[self.pool], dtype=np.float32)
            if strategies.als is not None
            else None
        )
        self.pool_index = _flat_index(self.pool_factors)
        self.weights = np.array([getattr(self.config, name) for name in SOURCES])

    def rank(
        self,
        user: int,
        now: int,
        n: int,
        *,
        session: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
        keep: Callable[[np.ndarray], np.ndarray] | None = None,
        exclude_bought: bool = True,
        only: str | None = None,
    ) -> Ranked:
        """Return the top-n items for a user index (-1: unknown) at time `now`.

        `session` holds the item indices of this visit, newest last; it shifts the blend
        towards them, and a visitor unknown to the model gets a vector folded in from them.
        `keep(items) -> bool mask` filters candidates (availability, categories); items in
        `exclude`, and items the user bought that nobody rebuys, are left out. `only` restricts
        the blend to one strategy (for evaluation).
        """
        if only is not None and only not in SOURCES:
            raise ValueError(f"unknown strategy {only!r} (expected one of {SOURCES})")
        parts = self._candidates(user, now, n, session, only)
        if not parts:
            return _empty()
        items = np.concatenate([p.items for p in parts]).astype(np.int64)
        scores = np.concatenate([p.scores for p in parts])
        sources = np.concatenate([np.full(len(p.items), p.source, dtype=np.int8) for p in parts])
        seeds = np.concatenate([p.seeds for p in parts])
        mask = np.ones(len(items), dtype=bool)
        drop = self._excluded(user, exclude, exclude_bought)
        if len(drop):
            mask &= ~np.isin(items, drop)
        if keep is not None:
            mask &= keep(items)
        if not mask.all():
            items, scores, sources, seeds = items[mask], scores[mask], sources[mask], seeds[mask]
        return _aggregate(items, scores, sources, seeds, n)

    def _candidates(
        self, user: int, now: int, n: int, session: np.ndarray | None, only: str | None
    ) -> list[_Part]:
        s = self.strategies
        cfg = self.config
        wanted = max(4 * n, 100)
        known = 0 <= user < s.history.n_users
        session = np.zeros(0, np.int64) if session is None else np.asarray(session, np.int64)
        parts: list[_Part] = []

        def wants(source: int) -> bool:
            return (only is None and self.weights[source] > 0) or only == SOURCES[source]

        def add(source: int, items: np.ndarray, raw: np.ndarray, seeds: np.ndarray) -> None:
            if len(items) == 0:
                return
            top = float(np.max(raw))
            if top > 0:
                weight = 1.0 if only is not None else float(self.weights[source])
                seeds = seeds if len(seeds) else np.full(len(items), -1, dtype=np.int32)
                parts.append(_Part(source, items, weight * np.clip(raw, 0, None) / top, seeds))

        vector = None
        if s.als is not None and wants(PERSONAL):
            if known:
                vector = s.als.user_vector(user)
            elif len(session):
                # A visitor who arrived after training: fold their visit into a user vector.
                vector = s.als.fold_in(session, np.ones(len(session)))
        if vector is not None and self.pool_index is not None and vector.any():
            k = min(max(3 * n, 30), len(self.pool))
            raw, top = self.pool_index.search(vector.reshape(1, -1).astype(np.float32), k)
            found = top[0] >= 0
            add(PERSONAL, self.pool[top[0][found]], raw[0][found], _NO_SEED)
        if known:
            h_items, h_events, h_times = s.history.of(user)
            if s.neighbours is not None and wants(NEIGHBOURS):
                recent, recency = _recent(h_items, h_times, now, cfg)
                if len(recent):
                    add(NEIGHBOURS, *sum_rows(s.neighbours.similarity_, recent, recency))
            if s.repurchase is not None and wants(REPURCHASE):
                due = s.repurchase.due(user, now, wanted)
                add(REPURCHASE, due.items, due.scores, due.items.astype(np.int32))
            if s.copurchase is not None and wants(COMPLEMENTARY):
                bought = np.isin(h_events, _COMPLEMENT_SEEDS)
                c_items, c_weights = _recent(h_items[bought], h_times[bought], now, cfg)
                if len(c_items):
                    add(COMPLEMENTARY, *sum_rows(s.copurchase.complements_, c_items, c_weights))
        if len(session) and wants(SESSION):
            # Newest first, each step back in the visit counting a little less.
            seeds = session[::-1][: cfg.recent_items]
            steps = 0.85 ** np.arange(len(seeds))
            if s.neighbours is not None:
                add(SESSION, *sum_rows(s.neighbours.similarity_, seeds, steps))
            if s.copurchase is not None:
                c_items, c_scores, c_seeds = sum_rows(s.copurchase.complements_, seeds, steps)
                add(SESSION, c_items, 0.5 * c_scores, c_seeds)
        if wants(POPULAR):
            pop_items, pop_scores = s.popularity.top(max(2 * n, 20))
            add(POPULAR, pop_items, pop_scores, _NO_SEED)
        return parts

    def _excluded(self, user: int, exclude: np.ndarray | None, exclude_bought: bool) -> np.ndarray:
        drop = [] if exclude is None else [np.asarray(exclude, dtype=np.int64)]
        s = self.strategies
        if exclude_bought and s.repurchase is not None and 0 <= user < s.history.n_users:
            bought, _, _ = s.repurchase.purchases(user)
            # Bought items come back only if people rebuy them (coffee yes, a fridge no).
            drop.append(bought[~s.repurchase.rebuyable_[bought]].astype(np.int64))
        return np.concatenate(drop) if drop else np.zeros(0, dtype=np.int64)


def _recent(
    items: np.ndarray, times: np.ndarray, now: int, cfg: BlendConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The user's most recent distinct items, newest first, with recency weights in (0, 1]."""
    if len(items) == 0:
        return items.astype(np.int64), np.zeros(0)
    # Histories are time-ordered, so the newest events are the tail: no sort needed, and a
    # bounded tail keeps a call's cost flat for customers with thousands of events.
    tail = slice(max(len(items) - 20 * cfg.recent_items, 0), None)
    ordered, stamps = items[tail][::-1], times[tail][::-1]
    _, first = np.unique(ordered, return_index=True)
    first = np.sort(first)[: cfg.recent_items]
    age_days = np.maximum(now - stamps[first], 0) / _DAY
    return ordered[first].astype(np.int64), np.exp2(-age_days / cfg.recency_half_life_days)


def _flat_index(factors: np.ndarray | None) -> Any:
    if factors is None or len(factors) == 0:
        return None
    import faiss

    index = faiss.IndexFlatIP(factors.shape[1])
    index.add(factors)
    return index


def _empty() -> Ranked:
    return Ranked(
        np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int8), np.zeros(0, np.int32)
    )


def _aggregate(
    items: np.ndarray, scores: np.ndarray, sources: np.ndarray, seeds: np.ndarray, n: int
) -> Ranked:
    if len(items) == 0:
        return _empty()
    uniq, inverse = np.unique(items, return_inverse=True)
    total = np.bincount(inverse, weights=scores)
    # The item's source is the strategy that contributed the largest share of its score.
    order = np.lexsort((_PRIORITY[sources], -scores, inverse))
    first = order[np.r_[True, inverse[order][1:] != inverse[order][:-1]]]
    best_source = np.empty(len(uniq), dtype=np.int8)
    best_seed = np.empty(len(uniq), dtype=np.int32)
    best_source[inverse[first]] = sources[first]
    best_seed[inverse[first]] = seeds[first]
    ranked = np.lexsort((uniq, -total))[:n]
    return Ranked(
        items=uniq[ranked].astype(np.int32),
        scores=total[ranked].astype(np.float32),
        sources=best_source[ranked],
        seeds=best_seed[ranked],
    )
