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
from typing import TypeVar

import numpy as np

from recsys.candidates import ALSCandidates, PoolSearch, popular_pool
from recsys.config import BlendConfig
from recsys.history import UserHistory
from recsys.models.als import ALSModel
from recsys.models.base import Model, member_mask
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours, sum_rows
from recsys.models.popularity import PopularityModel
from recsys.models.repurchase import Due, RepurchaseModel
from recsys.models.tifu import TifuKNN
from recsys.schema import EventType

T = TypeVar("T", bound=Model)
SOURCES: tuple[str, ...] = (
    "personal",
    "neighbours",
    "repurchase",
    "complementary",
    "session",
    "popular",
    "reminder",
    "category_reach",
    "baskets",
)
(
    PERSONAL,
    NEIGHBOURS,
    REPURCHASE,
    COMPLEMENTARY,
    SESSION,
    POPULAR,
    REMINDER,
    CATEGORY_REACH,
    BASKETS,
) = range(len(SOURCES))
# Every part of the blend as its own column for a learned ranker: where two parts share a
# source (due repurchases and "bought before"; a visit's neighbours and its complements) the
# ranker sees them apart.
SLOTS: tuple[str, ...] = (
    "repurchase_due",
    "bought_before",
    "reminder",
    "complementary",
    "visit_reminder",
    "session",
    "session_complements",
    "neighbours",
    "personal",
    "category_reach",
    "popular",
    "baskets",
)
_SLOT = {name: position for position, name in enumerate(SLOTS)}
# The source each slot's items are named by.
_SLOT_SOURCE = np.array(
    [SOURCES.index({"repurchase_due": "repurchase", "bought_before": "repurchase",
                    "visit_reminder": "reminder", "session_complements": "session"}.get(slot, slot))
     for slot in SLOTS],
    dtype=np.int8,
)  # fmt: skip
# `only` value asking for every part with a weight of 1 (a ranker's candidates and features).
EVERY_PART = "*"
_DAY = 86_400.0
_HOUR = 3_600.0
# Purchases and carts seed complementary items ("bought X -> needs Y").
_PURCHASE, _CART = int(EventType.PURCHASE), int(EventType.CART)
_NO_ITEMS = np.zeros(0, dtype=np.int64)
_ONE = np.ones(1)
# A visit's complements count half as much as its neighbours.
_SESSION_COMPLEMENTS = 0.5


@dataclass
class Strategies:
    """The fitted models a blend draws on; any but popularity may be missing (None).

    `candidates` are the trainer's stored ALS lists; without them ALS is searched live.
    `item_category` holds each item's category code (-1: none), for category reach.
    """

    history: UserHistory
    popularity: PopularityModel
    als: ALSModel | None = None
    neighbours: ItemNeighbours | None = None
    copurchase: CoPurchase | None = None
    repurchase: RepurchaseModel | None = None
    candidates: ALSCandidates | None = None
    item_category: np.ndarray | None = None
    tifu: TifuKNN | None = None

    @classmethod
    def from_models(
        cls,
        history: UserHistory,
        models: Mapping[str, Model],
        candidates: ALSCandidates | None = None,
        item_category: np.ndarray | None = None,
    ) -> Strategies:
        """Pick the blend's strategies out of fitted models keyed by model name."""

        def get(name: str, kind: type[T]) -> T | None:
            model = models.get(name)
            if model is not None and not isinstance(model, kind):
                raise TypeError(f"model {name!r} is a {type(model).__name__}, not {kind.__name__}")
            return model

        popularity = get("popularity", PopularityModel)
        if popularity is None:
            raise ValueError("a blend needs the popularity model, its last fallback")
        als = get("als", ALSModel)
        return cls(
            history=history,
            popularity=popularity,
            als=als,
            neighbours=get("neighbours", ItemNeighbours),
            copurchase=get("copurchase", CoPurchase),
            repurchase=get("repurchase", RepurchaseModel),
            candidates=candidates if als is not None else None,
            item_category=item_category,
            tifu=get("tifu", TifuKNN),
        )


@dataclass(frozen=True)
class Events:
    """A visitor's own events the model has not seen (item indices, event codes, Unix seconds),
    oldest first: what the live store holds of them since the model's data ended."""

    items: np.ndarray
    events: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


NO_EVENTS = Events(
    np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int64)
)


@dataclass(frozen=True)
class Ranked:
    """A ranked list of item indices with blended scores, sources and seeds (-1: none).

    `due` holds the repurchase facts (cycle, days since) behind its `repurchase` items.
    """

    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    seeds: np.ndarray
    due: Due | None = None

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class _Part:
    source: int
    items: np.ndarray
    scores: np.ndarray
    seeds: np.ndarray
    slot: int = -1


@dataclass(frozen=True)
class Candidates:
    """Every part's candidates for one visitor, item by item: what a learned ranker reads.

    `parts[i, s]` is item i's score from part SLOTS[s], scaled to a maximum of 1 per part
    (0: not proposed by it); `sources` and `seeds` name the part that gave most, as in Ranked.
    """

    items: np.ndarray
    parts: np.ndarray
    sources: np.ndarray
    seeds: np.ndarray
    due: Due | None = None

    def __len__(self) -> int:
        return len(self.items)


class Blender:
    """Ranks items for a visitor by blending every available strategy."""

    def __init__(self, strategies: Strategies, config: BlendConfig | None = None) -> None:
        self.strategies = strategies
        self.config = cfg = config or BlendConfig()
        stored = strategies.candidates
        if stored is not None:
            pool = stored.pool
        else:
            pool = popular_pool(strategies.popularity, cfg.personal_pool)
        self.search = PoolSearch(strategies.als, pool) if strategies.als is not None else None
        self.weights = [float(getattr(cfg, name)) for name in SOURCES]
        self._steps = cfg.session_decay ** np.arange(cfg.recent_items)
        # Reminder weight of each event type code (purchases and returns are not interest).
        self._reminder_weights = np.zeros(len(EventType), dtype=np.float64)
        self._reminder_weights[EventType.VIEW] = cfg.reminder_view
        self._reminder_weights[EventType.CART] = cfg.reminder_cart
        self._reminder_weights[EventType.FAVOURITE] = cfg.reminder_favourite
        categories = strategies.item_category
        self._reach = categories is not None and len(categories) > 0 and int(categories.max()) >= 0
        # The popular part is the same for every call of a given size: built once.
        self._popular: dict[tuple[int, float], _Part] = {}
        self._category_tops: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]] = {}
        # Each SLOTS column's weight in the blend: Candidates.parts @ this is the blended score.
        own = {
            "repurchase_due": self.weights[REPURCHASE],
            "bought_before": cfg.bought_before,
            "visit_reminder": cfg.visit_reminder,
            "session_complements": self.weights[SESSION] * _SESSION_COMPLEMENTS,
        }
        self.slot_weights = np.array(
            [
                own.get(slot, self.weights[source])
                for slot, source in zip(SLOTS, _SLOT_SOURCE, strict=True)
            ]
        )

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
        earlier: Events = NO_EVENTS,
    ) -> Ranked:
        """Return the top-n items for a user index (-1: unknown) at time `now`.

        `session` holds the item indices of this visit, newest last; it shifts the blend
        towards them, and a visitor unknown to the model gets a vector folded in from them.
        `keep(items) -> bool mask` filters candidates (availability, categories); items in
        `exclude`, and items the user bought that nobody rebuys, are left out. `only` restricts
        the blend to one strategy (for evaluation). `earlier` are the visitor's events since the
        model's data ended: they extend a known user's history and are an unknown one's.
        """
        if only is not None and only not in SOURCES and only != EVERY_PART:
            raise ValueError(f"unknown strategy {only!r} (expected one of {SOURCES})")
        session = _NO_ITEMS if session is None else np.asarray(session, dtype=np.int64)
        parts, due = self._candidates(user, now, n, session, only, earlier)
        if not parts:
            return _empty()
        drop = self._excluded(user, exclude, exclude_bought)
        items, scores, sources, seeds = _aggregate(parts, n, drop, keep)
        return Ranked(items, scores, sources, seeds, due)

    def candidates(
        self,
        user: int,
        now: int,
        n: int,
        *,
        session: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
        keep: Callable[[np.ndarray], np.ndarray] | None = None,
        exclude_bought: bool = True,
        earlier: Events = NO_EVENTS,
    ) -> Candidates:
        """Every part's candidates for a visitor (each part proposing about n), with each
        part's scaled score per item: what a learned ranker re-ranks."""
        session = _NO_ITEMS if session is None else np.asarray(session, dtype=np.int64)
        parts, due = self._candidates(user, now, n, session, EVERY_PART, earlier)
        if not parts:
            empty = _empty()
            return Candidates(
                empty.items, np.zeros((0, len(SLOTS))), empty.sources, empty.seeds, due
            )
        drop = self._excluded(user, exclude, exclude_bought)
        return _table(parts, drop, keep, due, n)

    def _candidates(
        self,
        user: int,
        now: int,
        n: int,
        session: np.ndarray,
        only: str | None,
        earlier: Events = NO_EVENTS,
    ) -> tuple[list[_Part], Due | None]:
        s = self.strategies
        cfg = self.config
        known = 0 <= user < s.history.n_users
        # The parts read from a history read the model's and the live one alike; what the
        # model learned per user (due repurchases, stored ALS lists, baskets) needs a known user.
        h_items, h_events, h_times = visitor_history(s.history, user, earlier)
        has_history = len(h_items) > 0
        parts: list[_Part] = []
        due = None

        every = only == EVERY_PART

        def wants(source: int) -> bool:
            return (only is None and self.weights[source] > 0) or only == SOURCES[source] or every

        def wants_own(source: int, weight: float) -> bool:
            # A part with its own weight, under a shared source name.
            return (only is None and weight > 0) or only == SOURCES[source] or every

        def add(
            source: int,
            items: np.ndarray,
            raw: np.ndarray,
            seeds: np.ndarray | None = None,
            scale: float = 1.0,
            own_weight: float | None = None,
            slot: str = "",
        ) -> None:
            # Only ALS scores can be negative (a dislike is not a reason): clipped to 0.
            if len(items) == 0:
                return
            top = float(raw.max())
            if top > 0:
                # Each strategy's scores are scaled to a maximum of 1, then weighted; a part
                # that shares a source with another (bought before, visit reminders) has its
                # own weight.
                base = self.weights[source] if own_weight is None else own_weight
                # Alone (`only`) a part counts fully; among every part (a ranker's features) it
                # counts unscaled too, each part in its own column.
                factor = 1.0 if every else (1.0 if only is not None else base) * scale
                if seeds is None:
                    seeds = _no_seeds(len(items))
                if len(items) == 1:
                    # One item scores exactly the factor (x * (1 / x) is not always 1 in
                    # floating point): visitors whose one reminder differs only in its age
                    # then score alike, and batch export shares their answer.
                    scores = np.full(1, factor, dtype=raw.dtype)
                else:
                    scores = (factor / top) * (np.maximum(raw, 0) if source == PERSONAL else raw)
                parts.append(_Part(source, items, scores, seeds, _SLOT[slot or SOURCES[source]]))

        # Parts are added in priority order (repurchase, complementary, session, neighbours,
        # personal, popular): where two give an item the same share, the earlier names it.
        if has_history:
            if known and s.repurchase is not None and wants(REPURCHASE):
                due = s.repurchase.due(user, now, max(4 * n, 100))
                add(
                    REPURCHASE,
                    due.items.astype(np.int64),
                    due.scores,
                    due.items.astype(np.int32),
                    slot="repurchase_due",
                )
            if wants_own(REPURCHASE, cfg.bought_before):
                bought = h_events == _PURCHASE
                if bought.any():
                    items, raw = _bought_before(h_items[bought], h_times[bought], now, cfg)
                    add(
                        REPURCHASE,
                        items,
                        raw,
                        items.astype(np.int32),
                        own_weight=cfg.bought_before,
                        slot="bought_before",
                    )
            if wants(REMINDER):
                r_items, r_scores = _reminders(
                    h_items, h_events, h_times, now, self._reminder_weights, cfg
                )
                add(REMINDER, r_items, r_scores, r_items.astype(np.int32))
            if s.copurchase is not None and wants(COMPLEMENTARY):
                bought = (h_events == _PURCHASE) | (h_events == _CART)
                if bought.any():
                    c_items, c_weights = _recent(h_items[bought], h_times[bought], now, cfg)
                    add(COMPLEMENTARY, *sum_rows(s.copurchase.complements_, c_items, c_weights))
        if len(session) and wants_own(REMINDER, cfg.visit_reminder):
            seeds = session[::-1][: cfg.recent_items]
            unique, first = np.unique(seeds, return_index=True)
            add(
                REMINDER,
                unique,
                self._steps[first],
                unique.astype(np.int32),
                own_weight=cfg.visit_reminder,
                slot="visit_reminder",
            )
        if len(session) and wants(SESSION):
            seeds = session[::-1][: cfg.recent_items]
            steps = self._steps[: len(seeds)]
            if s.neighbours is not None:
                add(SESSION, *sum_rows(s.neighbours.similarity_, seeds, steps))
            if s.copurchase is not None:
                c_items, c_scores, c_seeds = sum_rows(s.copurchase.complements_, seeds, steps)
                add(
                    SESSION,
                    c_items,
                    c_scores,
                    c_seeds,
                    scale=_SESSION_COMPLEMENTS,
                    slot="session_complements",
                )
        recent, recency = _NO_ITEMS, _ONE[:0]
        if has_history and (wants(NEIGHBOURS) or wants(CATEGORY_REACH)):
            recent, recency = _recent(h_items, h_times, now, cfg)
        if known and s.tifu is not None and wants(BASKETS):
            add(BASKETS, *self._baskets(user, n))
        if has_history and s.neighbours is not None and wants(NEIGHBOURS):
            add(NEIGHBOURS, *sum_rows(s.neighbours.similarity_, recent, recency))
        if self.search is not None and wants(PERSONAL):
            visit = session
            if not known and len(earlier):
                visit = np.unique(np.r_[earlier.items.astype(np.int64), session])
            add(PERSONAL, *self._personal(user, known, visit))
        if self._reach and wants(CATEGORY_REACH) and (len(recent) or len(session)):
            add(CATEGORY_REACH, *self._category_reach(recent, recency, session, n))
        if wants(POPULAR):
            part = self._popular_part(max(2 * n, 20), 1.0 if only else self.weights[POPULAR])
            parts.append(part)
        return parts, due

    def _personal(
        self, user: int, known: bool, session: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """ALS candidates: stored for known users and one-item visits, else searched live."""
        assert self.search is not None
        k = self.config.personal_candidates
        stored = self.strategies.candidates
        if known:
            if stored is not None:
                return stored.of_user(user, k)
            assert self.strategies.als is not None
            return self.search.top(self.strategies.als.user_vector(user), k)
        if len(session) == 0:
            return _NO_ITEMS, np.zeros(0, dtype=np.float32)
        if stored is not None and session.min() == session.max():
            return stored.of_item(int(session[0]), k)
        return self.search.visit(session, k)

    def _baskets(self, user: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user's TIFU-KNN next-basket items; their own past items are their own seeds."""
        tifu = self.strategies.tifu
        assert tifu is not None
        items, scores = tifu.of_user(user, max(2 * n, 20))
        own = tifu.own_items(user)
        seeds = np.where(member_mask(items, own), items, -1).astype(np.int32)
        return items, scores, seeds

    def _category_reach(
        self, recent: np.ndarray, recency: np.ndarray, session: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Popular items of the categories the visitor is browsing now, by how recently."""
        categories = self.strategies.item_category
        assert categories is not None
        seeds = session[::-1][: self.config.recent_items]
        items = np.concatenate([seeds, recent]).astype(np.int64)
        weights = np.concatenate([self._steps[: len(seeds)], recency])
        # A visitor's recent items are a few dozen at most: summed per category in Python, in
        # the order np.bincount would add them (one float sum, the same result), faster than
        # numpy's unique and sort for so few.
        totals: dict[int, float] = {}
        for code, weight in zip(categories[items].tolist(), weights.tolist(), strict=True):
            if code >= 0:
                totals[code] = totals.get(code, 0.0) + weight
        if not totals:
            return _NO_ITEMS, _ONE[:0]
        # The heaviest categories; ties towards the smaller code.
        picked = sorted(totals, key=lambda code: (-totals[code], code))
        depth = max(2 * n, 20)
        found_items, found_scores = [], []
        for code in picked[: self.config.reach_categories]:
            members, scores, top = self._category_top(code, depth)
            if top > 0:
                found_items.append(members)
                # np.float64: a plain float would keep float32 scores in float32.
                found_scores.append(np.float64(totals[code]) * scores / top)
        if not found_items:
            return _NO_ITEMS, _ONE[:0]
        if len(found_items) == 1:
            return found_items[0], found_scores[0]
        return np.concatenate(found_items), np.concatenate(found_scores)

    def _category_top(self, code: int, depth: int) -> tuple[np.ndarray, np.ndarray, float]:
        """A category's `depth` most popular items, their scores and the largest (0: none),
        kept once asked: they are the same for every visitor of a model."""
        found = self._category_tops.get((code, depth))
        if found is None:
            members, scores = self.strategies.popularity.top_in_category(code, depth)
            top = float(scores.max()) if len(members) else 0.0
            found = (members.astype(np.int64), scores, top)
            # At most one entry per category and list depth: bounded by the catalogue.
            self._category_tops[(code, depth)] = found
        return found

    def _popular_part(self, count: int, weight: float) -> _Part:
        part = self._popular.get((count, weight))
        if part is None:
            items, raw = self.strategies.popularity.top(count)
            top = float(raw.max()) if len(raw) else 0.0
            scores = weight * np.maximum(raw, 0) / top if top > 0 else np.zeros(len(raw))
            part = _Part(
                POPULAR, items.astype(np.int64), scores, _no_seeds(len(items)), _SLOT["popular"]
            )
            self._popular[(count, weight)] = part
        return part

    def _excluded(self, user: int, exclude: np.ndarray | None, exclude_bought: bool) -> np.ndarray:
        drop = [] if exclude is None else [np.asarray(exclude, dtype=np.int64)]
        s = self.strategies
        if exclude_bought and s.repurchase is not None and 0 <= user < s.history.n_users:
            # Bought items come back only if people rebuy them (coffee yes, a fridge no).
            drop.append(s.repurchase.not_rebought(user).astype(np.int64))
        if not drop:
            return _NO_ITEMS
        return drop[0] if len(drop) == 1 else np.concatenate(drop)


def visitor_history(
    history: UserHistory, user: int, earlier: Events = NO_EVENTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A visitor's events, oldest first: the model's of a known user, then the live ones."""
    if not 0 <= user < history.n_users:
        return earlier.items, earlier.events, earlier.times
    items, events, times = history.of(user)
    if not len(earlier):
        return items, events, times
    return (
        np.concatenate([items, earlier.items.astype(items.dtype)]),
        np.concatenate([events, earlier.events.astype(events.dtype)]),
        np.concatenate([times, earlier.times.astype(times.dtype)]),
    )


def _bought_before(
    items: np.ndarray, times: np.ndarray, now: int, cfg: BlendConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The user's purchased items, scored by times bought x recency of the last purchase."""
    unique, inverse, counts = np.unique(
        items.astype(np.int64), return_inverse=True, return_counts=True
    )
    last = np.zeros(len(unique), dtype=np.int64)
    np.maximum.at(last, inverse, times)
    age_days = np.maximum(now - last, 0) / _DAY
    return unique, (counts * np.exp2(-age_days / cfg.recency_half_life_days)).astype(np.float32)


def _reminders(
    items: np.ndarray,
    events: np.ndarray,
    times: np.ndarray,
    now: int,
    type_weights: np.ndarray,
    cfg: BlendConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """The user's viewed, carted and favourited items not bought since, by type and recency."""
    # The bounded tail of the history, as for neighbours: recent interest is what reminds.
    start = max(len(items) - 20 * cfg.recent_items, 0)
    items, events, times = items[start:], events[start:], times[start:]
    # Histories are oldest first: interest older than the reminder horizon is a prefix.
    oldest = now - int(cfg.reminder_max_days * _DAY)
    if len(times) and times[0] < oldest:
        fresh = int(np.searchsorted(times, oldest, side="left"))
        # A purchase before the horizon still ends older interest, but that interest is
        # gone anyway: only what follows the horizon can remind.
        items, events, times = items[fresh:], events[fresh:], times[fresh:]
    if len(items) <= 16:
        # Most visitors have a few events: a Python pass is several times faster than numpy.
        return _few_reminders(items, events, times, now, type_weights, cfg)
    weights = type_weights[events]
    interest = weights > 0
    if not interest.any():
        return _NO_ITEMS, _ONE[:0]
    unique, inverse = np.unique(items, return_inverse=True)
    age_hours = np.maximum(now - times, 0) / _HOUR
    scores = np.bincount(
        inverse, weights=weights * np.exp2(-age_hours / cfg.reminder_half_life_hours)
    )
    last_interest = np.full(len(unique), -1, dtype=np.int64)
    np.maximum.at(last_interest, inverse[interest], times[interest])
    last_bought = np.full(len(unique), -1, dtype=np.int64)
    bought = events == _PURCHASE
    np.maximum.at(last_bought, inverse[bought], times[bought])
    # Bought after the last look: the reminder has done its work.
    keep = (scores > 0) & (last_interest > last_bought)
    return unique[keep].astype(np.int64), scores[keep]


def _few_reminders(
    items: np.ndarray,
    events: np.ndarray,
    times: np.ndarray,
    now: int,
    type_weights: np.ndarray,
    cfg: BlendConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """_reminders for a short history, item by item (same result, ordered by item)."""
    scores: dict[int, float] = {}
    last_interest: dict[int, int] = {}
    last_bought: dict[int, int] = {}
    half_life = cfg.reminder_half_life_hours * _HOUR
    weight_of = type_weights.tolist()
    for item, event, when in zip(items.tolist(), events.tolist(), times.tolist(), strict=True):
        weight = weight_of[event]
        if weight > 0:
            age = max(now - when, 0)
            scores[item] = scores.get(item, 0.0) + weight * 2.0 ** (-age / half_life)
            last_interest[item] = max(last_interest.get(item, -1), when)
        elif event == _PURCHASE:
            last_bought[item] = max(last_bought.get(item, -1), when)
    kept = sorted(
        item
        for item, score in scores.items()
        if score > 0 and last_interest[item] > last_bought.get(item, -1)
    )
    if not kept:
        return _NO_ITEMS, _ONE[:0]
    return np.asarray(kept, dtype=np.int64), np.asarray([scores[i] for i in kept])


def _recent(
    items: np.ndarray, times: np.ndarray, now: int, cfg: BlendConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The user's most recent distinct items, newest first, with recency weights in (0, 1]."""
    if len(items) == 0:
        return _NO_ITEMS, np.zeros(0)
    # Histories are time-ordered, so the newest events are the tail: no sort needed, and a
    # bounded tail keeps a call's cost flat for customers with thousands of events.
    start = max(len(items) - 20 * cfg.recent_items, 0)
    if len(items) - start <= 64:
        # A short tail: a Python pass is several times faster than numpy's unique and sort.
        seen: set[int] = set()
        positions: list[int] = []
        for offset, item in enumerate(reversed(items[start:].tolist())):
            if item not in seen:
                seen.add(item)
                positions.append(len(items) - 1 - offset)
                if len(positions) == cfg.recent_items:
                    break
        picked = np.asarray(positions, dtype=np.int64)
        chosen, stamps = items[picked].astype(np.int64), times[picked]
    else:
        ordered, stamps = items[start:][::-1], times[start:][::-1]
        _, first = np.unique(ordered, return_index=True)
        first = np.sort(first)[: cfg.recent_items]
        chosen, stamps = ordered[first].astype(np.int64), stamps[first]
    if len(chosen) == 1:
        # One row's weight cancels when its part is scaled to a maximum of 1; leaving it out
        # makes the part depend on the item alone, which batch export shares between users.
        return chosen, _ONE
    age_days = np.maximum(now - stamps, 0) / _DAY
    return chosen, np.exp2(-age_days / cfg.recency_half_life_days)


_NO_SEEDS = np.full(1024, -1, dtype=np.int32)
_NO_SEEDS.flags.writeable = False


def _no_seeds(count: int) -> np.ndarray:
    """A read-only run of -1 seeds (a slice of one shared array: no allocation per call)."""
    return _NO_SEEDS[:count] if count <= len(_NO_SEEDS) else np.full(count, -1, np.int32)


def _empty() -> Ranked:
    return Ranked(
        np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int8), np.zeros(0, np.int32)
    )


def _by_item(
    parts: list[_Part],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every part's (items, scores, seeds) end to end, the order grouping each item's entries
    with its largest share first, and where each item starts in that order.

    Parts come in priority order, so the stable sort breaks ties between equal shares of an
    item towards the more specific source (and, within a source, the earlier part).
    """
    items = np.concatenate([p.items for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    seeds = np.concatenate([p.seeds for p in parts])
    order = np.lexsort((-scores, items))
    grouped = items[order]
    starts = np.empty(len(order), dtype=bool)
    starts[:1] = True
    np.not_equal(grouped[1:], grouped[:-1], out=starts[1:])
    return items, scores, seeds, order, starts


def _aggregate(
    parts: list[_Part], n: int, drop: np.ndarray, keep: Callable[[np.ndarray], np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum each item's scores over the parts, filter, rank; the best share names the source."""
    ends = np.cumsum([len(p.items) for p in parts])
    items, scores, seeds, order, starts = _by_item(parts)
    first = order[starts]
    unique = items[first]
    total = scores[order].astype(np.float64)
    if len(unique) < len(items):
        total = np.add.reduceat(total, starts.nonzero()[0])
    # Filters run on the distinct items, after aggregation: fewer to test, same result.
    mask = member_mask(unique, drop, invert=True) if len(drop) else None
    if keep is not None:
        kept = keep(unique)
        mask = kept if mask is None else mask & kept
    selected = mask.nonzero()[0] if mask is not None else np.arange(len(unique))
    if len(selected) > 2 * n:
        # Only the top n are ranked: cut at the n-th best total, keeping every tie at the cut.
        totals = total[selected]
        negated = -totals
        negated.partition(n - 1)
        cut = -negated[n - 1]
        selected = selected[totals >= cut]
    ranked = selected[np.lexsort((unique[selected], -total[selected]))[:n]]
    best = first[ranked]
    part_of = np.searchsorted(ends, best, side="right")
    sources = np.array([p.source for p in parts], dtype=np.int8)[part_of]
    return unique[ranked], total[ranked], sources, seeds[best]


def _table(
    parts: list[_Part],
    drop: np.ndarray,
    keep: Callable[[np.ndarray], np.ndarray] | None,
    due: Due | None,
    depth: int,
) -> Candidates:
    """Every distinct candidate with its score per part, filtered, among the `depth` best of
    at least one part; the best part names it."""
    lengths = [len(p.items) for p in parts]
    slots = np.repeat(np.array([p.slot for p in parts], dtype=np.int64), lengths)
    # The part giving an item most names it, as in the blend (np.unique would sort again).
    items, scores, seeds, order, starts = _by_item(parts)
    best = order[starts]
    unique = items[best]
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = starts.cumsum() - 1
    width = len(SLOTS)
    # Each part proposes an item once and has a slot of its own, so every (item, slot) cell
    # gets one score; bincount sums like np.add.at would, several times faster.
    table = np.bincount(
        inverse * width + slots, weights=scores, minlength=len(unique) * width
    ).reshape(len(unique), width)
    mask = member_mask(unique, drop, invert=True) if len(drop) else np.ones(len(unique), bool)
    if keep is not None and len(unique):
        mask &= keep(unique)
    if np.count_nonzero(mask) > depth:
        # A part's long tail adds rows to rank, not answers: keep each part's best `depth`
        # (ties by item index), all parts in one sort.
        offered = np.flatnonzero(mask[inverse] & (scores > 0))
        ranked = offered[np.lexsort((items[offered], -scores[offered], slots[offered]))]
        # Each entry's place within its part: slots are sorted, so a part starts where its
        # slot is first found.
        slot_of = slots[ranked]
        place = np.arange(len(ranked)) - np.searchsorted(slot_of, slot_of)
        mask = np.zeros(len(unique), dtype=bool)
        mask[inverse[ranked[place < depth]]] = True
    named = best[mask]
    return Candidates(unique[mask], table[mask], _SLOT_SOURCE[slots[named]], seeds[named], due)
