"""The fallback chain: named strategies tried in order until a list has n items.

The chain is data (`serving.chain`, default blend -> segment_popular -> category_popular ->
trending -> popular; `new_item` may be added), then every item by popularity as the last
resort, so a list is always full when the catalogue allows, whatever the filters took away.
Before the chain, a user's portrait tier may let lead strategies take their shares of the list
(`serving.tier_leads`: win-back, new arrivals, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from recsys.blend import NO_EVENTS, SOURCES, Candidates, Events, Ranked, visitor_history
from recsys.filters import Picker
from recsys.models.content import ContentModel
from recsys.models.popularity import PopularityModel
from recsys.models.repurchase import Due
from recsys.models.segments import SegmentPopularity
from recsys.ranker import features
from recsys.served import ServedModel

_NO_SESSION = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Visit:
    """What is known about the visitor in this call, as model indices."""

    user: int  # -1: not in the model
    session: np.ndarray  # item indices of this visit, newest last
    segment: int  # -1: no segment
    now: int
    new_item_share: float
    # the user's favourite category codes (from their portrait), best first.
    favourites: tuple[int, ...] = ()
    # the visitor's own events since the model's data ended (the live store's).
    earlier: Events = NO_EVENTS


def run_chain(
    model: ServedModel, visit: Visit, picker: Picker, chain: tuple[str, ...]
) -> Ranked | None:
    """Fill the picker from each strategy of the chain in turn, then from every item.

    Returns the blend's ranked list when the blend ran (its repurchase facts explain items).
    """
    blended = None
    for name in chain:
        if picker.full:
            break
        ranked = _STRATEGIES[name](model, visit, picker)
        if ranked is not None:
            blended = ranked
    if not picker.full:
        # The last resort: any item, most popular first (filters still apply).
        order = model.items_by_rank
        picker.offer(order, np.zeros(len(order), dtype=np.float32), "popular")
    return blended


def _blend(model: ServedModel, visit: Visit, picker: Picker) -> Ranked | None:
    if visit.user < 0 and len(visit.session) == 0 and len(visit.earlier) == 0:
        return None
    if visit.new_item_share > 0:
        _new_items(model, visit, picker, share=visit.new_item_share)
    # The blend leaves out excluded and filtered items itself; only the category cap may
    # refuse its items, so only then does it need to propose more than the gap.
    gap = picker.n - len(picker.items)
    wanted = 3 * picker.n if picker.cap else gap
    if model.ranker is not None and visit.user >= 0 and ranks(model, visit.user, visit.earlier):
        # The ranker is trained and scored on known users' lists; a visitor the model does not
        # know is answered by the blend, as evaluated on visits.
        return _ranked(model, visit, picker, wanted)
    ranked = model.blender.rank(
        visit.user,
        visit.now,
        wanted,
        session=visit.session,
        exclude=picker.excluded,
        keep=picker.keep,
        # The picker's exclude set already holds the user's not-rebought purchases when the
        # call excludes purchases; the blend need not work them out a second time.
        exclude_bought=False,
        earlier=visit.earlier,
    )
    names = _SOURCE_NAMES[ranked.sources]
    picker.offer(ranked.items, ranked.scores, names, ranked.seeds, filtered=True)
    return ranked


def _ranked(model: ServedModel, visit: Visit, picker: Picker, wanted: int) -> Ranked:
    """The blend's parts' candidates, ordered by the learned ranker."""
    assert model.ranker is not None
    depth = max(model.ranker_candidates, wanted)
    found = ranker_candidates(
        model, visit.user, visit.now, depth, picker, visit.session, visit.earlier
    )
    if len(found) == 0:
        return Ranked(found.items, np.zeros(0), found.sources, found.seeds, found.due)
    rows = ranker_features(model, found, visit.user, visit.now, len(visit.session))
    scores = model.ranker.predict(rows)
    # Best first; ties by item index, so that every process orders them alike.
    order = np.lexsort((found.items, -scores))[:wanted]
    ranked = Ranked(found.items[order], scores[order], found.sources[order], found.seeds[order],
                    found.due)  # fmt: skip
    picker.offer(
        ranked.items, ranked.scores, _SOURCE_NAMES[ranked.sources], ranked.seeds, filtered=True
    )
    return ranked


def ranks(model: ServedModel, user: int, earlier: Events = NO_EVENTS) -> bool:
    """Whether the learned ranker orders a known user's list (else the blend does): their
    history, live events included, holds at least `ranker.min_items` distinct items."""
    need = model.ranker_min_items
    if need <= 1:
        return True
    items = visitor_history(model.blender.strategies.history, user, earlier)[0]
    if len(items) < need:
        return False
    if need == 2:
        return bool((items != items[0]).any())
    return len(np.unique(items)) >= need


def ranker_candidates(
    model: ServedModel,
    user: int,
    now: int,
    depth: int,
    picker: Picker,
    session: np.ndarray = _NO_SESSION,
    earlier: Events = NO_EVENTS,
) -> Candidates:
    """A known user's candidates for the ranker, the picker's exclusions and filters applied:
    what serving ranks and what the ranker is trained on."""
    found = model.blender.candidates(
        user,
        now,
        depth,
        session=session,
        exclude=picker.excluded,
        keep=picker.keep,
        # The picker's exclude set already holds the user's not-rebought purchases.
        exclude_bought=False,
        earlier=earlier,
    )
    rows = model.ranker_max_rows
    if rows is None or len(found) <= rows:
        return found
    # The blend's best `rows`, ties by item index, in item order as every candidate table is.
    blended = found.parts @ model.blender.slot_weights
    kept = np.sort(np.lexsort((found.items, -blended))[:rows])
    return Candidates(
        found.items[kept], found.parts[kept], found.sources[kept], found.seeds[kept], found.due
    )


def ranker_features(
    model: ServedModel, found: Candidates, user: int, now: int, visit_items: int = 0
) -> np.ndarray:
    """The feature rows of a known user's ranker candidates."""
    assert model.facts is not None
    history = model.blender.strategies.history
    tier = int(model.user_tier[user])
    return features(found, history, model.facts, user, tier, now, visit_items)


def run_leads(
    model: ServedModel, visit: Visit, picker: Picker, leads: Mapping[str, float]
) -> Due | None:
    """Let a tier's lead strategies fill their shares of the list, in order, before the chain.

    Returns the due repurchases when the `repurchase` lead ran (their facts explain items).
    """
    due = None
    for name, share in leads.items():
        if picker.full:
            break
        picker.ceiling = min(len(picker.items) + max(round(picker.n * share), 1), picker.n)
        try:
            found = _LEADS[name](model, visit, picker)
        finally:
            picker.ceiling = None
        if isinstance(found, Due):
            due = found
    return due


def _repurchase(model: ServedModel, visit: Visit, picker: Picker) -> Due | None:
    repurchase = model.blender.strategies.repurchase
    if repurchase is None or visit.user < 0:
        return None
    due = repurchase.due(visit.user, visit.now, picker.n + len(picker.seen))
    picker.offer(due.items, due.scores, "repurchase", due.items)
    return due


def _favourite_categories(model: ServedModel, visit: Visit, picker: Picker) -> None:
    popularity = model.models["popularity"]
    assert isinstance(popularity, PopularityModel)
    for category in visit.favourites:
        items, scores = popularity.top_in_category(category, _ask(picker), exclude=picker.excluded)
        picker.offer(items, scores, "favourite_category")
        if picker.ceiling is not None and len(picker.items) >= picker.ceiling:
            return


def _segment_popular(model: ServedModel, visit: Visit, picker: Picker) -> None:
    segments = model.models.get("segments")
    if visit.segment < 0 or not isinstance(segments, SegmentPopularity):
        return
    items, scores = segments.top(visit.segment, _ask(picker), exclude=picker.excluded)
    picker.offer(items, scores, "segment_popular")


def _category_popular(model: ServedModel, visit: Visit, picker: Picker) -> None:
    popularity = model.models["popularity"]
    assert isinstance(popularity, PopularityModel)
    for category in _categories_of_interest(model, visit):
        items, scores = popularity.top_in_category(category, _ask(picker), exclude=picker.excluded)
        picker.offer(items, scores, "category_popular")
        if picker.full:
            return


def _new_items(model: ServedModel, visit: Visit, picker: Picker, share: float = 1.0) -> None:
    content = model.models.get("content")
    if not isinstance(content, ContentModel):
        return
    limit = picker.n if share >= 1.0 else max(round(picker.n * share), 1)
    target = min(len(picker.items) + limit, picker.n)
    for category in [*_categories_of_interest(model, visit), None]:
        if len(picker.items) >= target:
            return
        items = content.new_items(category, n=_ask(picker), exclude=picker.excluded)
        picker.offer(items, np.ones(len(items), dtype=np.float32), "new_item", upto=target)


def _trending(model: ServedModel, visit: Visit, picker: Picker) -> None:
    popularity = model.models["popularity"]
    assert isinstance(popularity, PopularityModel)
    items, scores = popularity.trending(_ask(picker), exclude=picker.excluded)
    picker.offer(items, scores, "trending")


def _popular(model: ServedModel, visit: Visit, picker: Picker) -> None:
    popularity = model.models["popularity"]
    assert isinstance(popularity, PopularityModel)
    items, scores = popularity.top(_ask(picker), exclude=picker.excluded)
    picker.offer(items, scores, "popular")


def _ask(picker: Picker) -> int:
    # Filters may reject candidates: ask for more than the gap, bounded.
    return max(3 * (picker.n - len(picker.items)), 20)


def _categories_of_interest(model: ServedModel, visit: Visit) -> list[int]:
    """Categories of the visit's items (newest first), else of the user's recent history."""
    items = visit.session[::-1]
    if len(items) == 0 and visit.user >= 0:
        history = model.blender.strategies.history
        items = history.of(visit.user)[0][::-1][:20]
    categories = model.item_category[items] if len(items) else np.zeros(0, dtype=np.int64)
    seen: list[int] = []
    for category in categories.tolist():
        if category >= 0 and category not in seen:
            seen.append(category)
    return seen[:5]


_LEADS: dict[str, Callable[[ServedModel, Visit, Picker], Due | None]] = {
    "repurchase": _repurchase,
    "favourite_categories": _favourite_categories,
    "segment_popular": _segment_popular,
    "category_popular": _category_popular,
    "new_item": _new_items,
    "trending": _trending,
}
_SOURCE_NAMES = np.asarray(SOURCES)
_STRATEGIES: dict[str, Callable[[ServedModel, Visit, Picker], Ranked | None]] = {
    "blend": _blend,
    "segment_popular": _segment_popular,
    "category_popular": _category_popular,
    "new_item": _new_items,
    "trending": _trending,
    "popular": _popular,
}
