"""The answer path: a visitor's list from a loaded model, as serving, export and evaluation see it.

`Recommender.recommend`, batch export, `recsys evaluate`, `recsys tune` and the nightly gate all
answer through `answer_columns` (or `pick`, its item indices), so what is measured is what is
served: tier leads, the fallback chain, the serving filters and the learned ranker included.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from recsys.blend import NO_EVENTS, Events, visitor_history
from recsys.config import TIERS, VariantConfig
from recsys.experiments import assign
from recsys.fallback import Visit, run_chain, run_leads
from recsys.filters import Filters, Picker, keep_mask
from recsys.models.repurchase import Due
from recsys.reasons import day_words, reason
from recsys.schema import EventType
from recsys.served import ServedModel

NO_SESSION = np.zeros(0, dtype=np.int64)
NO_SESSION.flags.writeable = False


class Recommendation(NamedTuple):
    """One recommended item: the shop's item id, a score, the strategy it came from, and why."""

    item_id: Any
    score: float
    source: str
    reason: str


class RecommendationList(list[Recommendation]):
    """A list of Recommendation, with what the call knew and ignored."""

    model_version: str = ""
    user_known: bool = False
    unknown_session_items: tuple[Any, ...] = ()
    # the A/B experiment the visitor is in and the variant they saw (None: no experiment).
    experiment: str | None = None
    variant: str | None = None

    @property
    def item_ids(self) -> list[Any]:
        """The recommended item ids, in order."""
        return [r.item_id for r in self]


# A list as four columns: item ids, scores, sources, reasons.
Columns = tuple[list[Any], list[float], list[str], list[str]]


def answer(
    model: ServedModel,
    user: int,
    user_id: Any,
    n: int,
    filters: Filters,
    now: int,
    session: np.ndarray = NO_SESSION,
    earlier: Events = NO_EVENTS,
) -> RecommendationList:
    """The list for a visitor already resolved to model indices (user -1: not in the model).

    `filters` must be resolved against the serving defaults; `earlier` are the visitor's live
    events since the model's data ended.
    """
    result = RecommendationList()
    result.model_version = model.version
    columns = answer_columns(model, user, user_id, n, filters, now, session, earlier)
    result.extend(map(Recommendation, *columns))
    result.user_known = user >= 0
    return result


def variant_of(model: ServedModel, unit: Any) -> tuple[ServedModel, VariantConfig | None]:
    """The model as a visitor's A/B variant serves it (unit: the user id, else the visitor's);
    the model itself and None outside an experiment."""
    if model.experiment is None or unit is None:
        return model, None
    if isinstance(unit, float | np.floating):
        raise ValueError(
            f"visitor ids must be whole numbers or text, not {unit!r} (17850.0 and "
            "17850 would land in different variants)"
        )
    variant = assign(model.experiment, unit)
    return model.variants[variant.name], variant


def for_visitor(
    model: ServedModel, unit: Any, n: int
) -> tuple[ServedModel, VariantConfig | None, int]:
    """variant_of, with the list length the variant allows: its n caps the caller's (it never
    asks for more than the page has room for)."""
    view, variant = variant_of(model, unit)
    if variant is not None and variant.n is not None:
        n = min(n, variant.n)
    return view, variant, n


def answer_columns(
    model: ServedModel,
    user: int,
    user_id: Any,
    n: int,
    filters: Filters,
    now: int,
    session: np.ndarray = NO_SESSION,
    earlier: Events = NO_EVENTS,
) -> Columns:
    """answer() as columns. Recommender.recommend and batch export both answer through here,
    so they agree by construction."""
    picker, visit, due = pick(model, user, user_id, n, filters, now, session, earlier)
    return explain_columns(model, visit, picker, due)


def new_picker(
    model: ServedModel, user: int, n: int, filters: Filters, earlier: Events = NO_EVENTS
) -> Picker:
    """An empty list for a visitor, with the call's exclusions and filters in place."""
    excluded: list[int] = []
    if filters.exclude:
        found = model.items.index(list(filters.exclude))
        excluded += found[found >= 0].tolist()
    if filters.exclude_purchased and user >= 0:
        excluded += _not_rebought(model, user).tolist()
    if filters.exclude_purchased and len(earlier):
        excluded += _not_rebought_live(model, earlier).tolist()
    return Picker(
        n,
        excluded,
        keep_mask(
            model.item_available,
            model.item_category,
            _category_codes(model, filters.categories),
            bool(filters.available_only),
        ),
        model.item_category,
        int(filters.max_per_category or 0),
    )


def pick(
    model: ServedModel,
    user: int,
    user_id: Any,
    n: int,
    filters: Filters,
    now: int,
    session: np.ndarray = NO_SESSION,
    earlier: Events = NO_EVENTS,
) -> tuple[Picker, Visit, Due | None]:
    """The served list as item indices (in the picker), before it is explained.

    Evaluation scores `picker.items`; answer_columns explains the same picker. `earlier` are
    the visitor's events since the model's data ended (the live store's).
    """
    segment = -1
    if user_id is not None and model.segment_users is not None:
        where = model.segment_users.index_of(user_id)
        segment = int(model.segment_codes[where]) if where >= 0 else -1
    picker = new_picker(model, user, n, filters, earlier)
    tier = int(model.user_tier[user]) if user >= 0 else -1
    favourites = model.user_favourites[user] if user >= 0 else ()
    visit = Visit(
        user=user,
        session=session,
        segment=segment,
        now=now,
        new_item_share=model.serving.new_item_boost,
        favourites=tuple(int(c) for c in favourites if c >= 0),
        earlier=earlier,
    )
    # The user's tier (from their portrait) may let some strategies lead the list.
    leads = model.serving.tier_leads.get(TIERS[tier], {}) if tier >= 0 else {}
    lead_due = run_leads(model, visit, picker, leads) if leads else None
    ranked = run_chain(model, visit, picker, model.serving.chain)
    # The blend's due items include the lead's (the same ranking, deeper): either explains.
    due = ranked.due if ranked is not None and ranked.due is not None else lead_due
    return picker, visit, due


def explain(
    model: ServedModel, visit: Visit | None, picker: Picker, due: Due | None = None
) -> RecommendationList:
    """The picked items as the shop's ids, with scores, sources and reasons."""
    result = RecommendationList()
    result.model_version = model.version
    result.extend(map(Recommendation, *explain_columns(model, visit, picker, due)))
    return result


def explain_columns(
    model: ServedModel, visit: Visit | None, picker: Picker, due: Due | None = None
) -> Columns:
    """explain() as columns: item ids, scores, sources, reasons."""
    if not picker.items:
        return [], [], [], []
    items, sources, seeds = picker.items, picker.sources, picker.seeds
    ids = model.item_ids[items].tolist()
    # Scores are shown to 6 decimals: more says nothing and bloats every export.
    scores = np.array(picker.scores).round(6).tolist()
    seed_ids = model.item_ids[np.maximum(np.asarray(seeds, dtype=np.int64), 0)].tolist()
    facts_of: dict[int, dict[str, Any]] = {}
    if due is not None and len(due) and "repurchase" in sources:
        cycles, since = due.cycle_days.tolist(), due.days_since.tolist()
        facts_of = {
            item: {"cycle_days": cycles[i], "days_since": since[i]}
            for i, item in enumerate(due.items.tolist())
        }
    texts: list[str] = []
    for position, source in enumerate(sources):
        seed = seed_ids[position] if seeds[position] >= 0 else None
        if source in _WITH_FACTS:
            texts.append(
                reason(source, seed, **_facts(model, visit, source, items[position], facts_of))
            )
            continue
        texts.append(reason(source, seed))
    return ids, scores, list(sources), texts


_WITH_FACTS = frozenset(
    {
        "repurchase",
        "category_popular",
        "favourite_category",
        "new_item",
        "segment_popular",
        "reminder",
        "category_reach",
    }
)
_CART, _SAVED, _VIEW, _BUY = (
    int(EventType.CART),
    int(EventType.FAVOURITE),
    int(EventType.VIEW),
    int(EventType.PURCHASE),
)
_INTEREST = {_CART: "cart", _SAVED: "favourite", _VIEW: "view"}


def _facts(
    model: ServedModel,
    visit: Visit | None,
    source: str,
    item: int,
    facts_of: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """What a reason of this source says besides its seed (cycle, category, segment)."""
    if source == "repurchase":
        return facts_of.get(item, {})
    if source == "reminder" and visit is not None and (visit.user >= 0 or len(visit.earlier)):
        return _reminder_facts(model, visit, item)
    if source in ("category_popular", "favourite_category", "new_item", "category_reach"):
        return {"category": model.category_label(int(model.item_category[item]))}
    if source == "segment_popular" and visit is not None:
        return {"segment": model.segment_labels[visit.segment]}
    return {}


def _reminder_facts(model: ServedModel, visit: Visit, item: int) -> dict[str, Any]:
    """What the user did with a reminded item since they last bought it: carted, saved, viewed.

    A cart outranks a favourite, a favourite a view; a cart or favourite is dated from its
    first event since the last purchase ("in your cart since Tuesday"), a view from the last.
    """
    items, events, times = visitor_history(
        model.blender.strategies.history, visit.user, visit.earlier
    )
    mine = np.flatnonzero(items == item)
    kinds, stamps = events[mine].tolist(), times[mine].tolist()
    # Histories are oldest first: what happened after the last purchase is the tail.
    since = 0
    for position, kind in enumerate(kinds):
        if kind == _BUY:
            since = position + 1
    first: dict[int, int] = {}
    last_view = -1
    for kind, when in zip(kinds[since:], stamps[since:], strict=True):
        if kind == _VIEW:
            last_view = when
        elif kind in _INTEREST and kind not in first:
            first[kind] = when
    when = first.get(_CART, first.get(_SAVED, last_view))
    if when < 0:
        return {}
    kind = _CART if _CART in first else _SAVED if _SAVED in first else _VIEW
    day = day_words(when, visit.now, model.manifest.get("timezone") or "UTC")
    return {"kind": _INTEREST[kind], "day": day}


def _not_rebought(model: ServedModel, user: int) -> np.ndarray:
    """Items the user bought that should not come back: those nobody rebuys."""
    repurchase = model.blender.strategies.repurchase
    if repurchase is not None:
        return repurchase.not_rebought(user)
    # Without a repurchase model nothing is known to be rebought: leave out every purchase.
    items, events, _ = model.blender.strategies.history.of(user)
    return np.unique(items[events == EventType.PURCHASE])


def _not_rebought_live(model: ServedModel, earlier: Events) -> np.ndarray:
    """Items bought since the model's data ended that should not come back."""
    bought = np.unique(earlier.items[earlier.events == EventType.PURCHASE])
    repurchase = model.blender.strategies.repurchase
    if repurchase is None or not len(bought):
        return bought
    return bought[~repurchase.rebuyable_[bought]]


def check_servable(model: ServedModel) -> None:
    """Answer once for the first known user and once for an anonymous visit (raises if the
    model cannot)."""
    for user in (0, -1) if len(model.users) else (-1,):
        user_id = model.users.ids[user] if user >= 0 else None
        view, _variant, n = for_visitor(model, user_id, 10)
        session = NO_SESSION if user >= 0 else model.items_by_rank[:1].astype(np.int64)
        pick(view, user, user_id, n, Filters().resolved(view.serving), model.data_end, session)


def check_n(n: Any, max_n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"n must be a whole number (got {type(n).__name__} {n!r})")
    if not 1 <= n <= max_n:
        raise ValueError(
            f"n must be between 1 and {max_n} (got {n}); set serving.max_n to allow more"
        )
    return int(n)


def _category_codes(model: ServedModel, categories: tuple[Any, ...] | None) -> np.ndarray | None:
    if categories is None:
        return None
    wanted = set(categories)
    codes = [code for code, cid in enumerate(model.category_ids.tolist()) if cid in wanted]
    return np.asarray(codes, dtype=np.int64)
