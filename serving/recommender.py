"""The in-process recommender: load a published model, answer every page view, hot-reload."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from recsys.config import TIERS, ExperimentConfig, VariantConfig, check_experiments
from recsys.experiments import active_experiment, assign
from recsys.ids import IdMap
from recsys.models.repurchase import Due
from recsys.schema import EventType
from serving.exposures import Exposure, ExposureSink
from serving.fallback import Visit, run_chain, run_leads
from serving.filters import Filters, Picker, keep_mask
from serving.model import ServedModel
from serving.reasons import day_words, reason

log = logging.getLogger(__name__)
_NO_SESSION = np.zeros(0, dtype=np.int64)


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


class Recommender:
    """Recommends the shop's products from the published model in `root`; thread-safe."""

    def __init__(
        self,
        root: Path,
        model: ServedModel,
        *,
        exposures: ExposureSink | None = None,
        experiments: Sequence[ExperimentConfig] | None = None,
    ) -> None:
        self.root = root
        # Experiments given here replace the model's own (from its training config), also
        # across reloads: a shop can start or stop one without retraining.
        self._experiments = None if experiments is None else tuple(experiments)
        self._model = self._running(model)
        self._reload_lock = threading.Lock()
        self.exposures = exposures
        # Records a custom sink raised on (the JSON-lines log never raises): counted, not lost
        # from sight, and never the page's problem.
        self.exposure_errors = 0

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        exposures: ExposureSink | None = None,
        experiments: Sequence[ExperimentConfig] | None = None,
    ) -> Recommender:
        """Load the current published model of a model directory (or one version folder).

        `exposures` records every list returned (e.g. a JsonlExposureLog, for A/B analysis);
        `experiments` replace the ones the model was trained with.
        """
        root = Path(path)
        return cls(root, ServedModel.load(root), exposures=exposures, experiments=experiments)

    def _running(self, model: ServedModel) -> ServedModel:
        if self._experiments is None:
            return model
        # Checked as a config file's would be: shares, names, forced ids, overrides.
        check_experiments(self._experiments, model.blender.config, model.serving)
        return model.with_experiment(active_experiment(self._experiments))

    @property
    def version(self) -> str:
        """The version being served."""
        return self._model.version

    @property
    def model(self) -> ServedModel:
        """The loaded model being served."""
        return self._model

    def reload(self) -> bool:
        """Switch to the newly published version, if any; return whether it switched.

        The new version is loaded and verified completely before the swap; calls in flight
        finish on the old one. A corrupt or partial version raises ModelDirError and the old
        model keeps serving.
        """
        with self._reload_lock:
            fresh = ServedModel.load(self.root)
            if fresh.version == self._model.version and fresh.path == self._model.path:
                return False
            self._model = self._running(fresh)  # one assignment: atomic for concurrent readers
            log.info("now serving model %s", fresh.version)
            return True

    def recommend(
        self,
        user_id: Any,
        n: int = 10,
        *,
        session_items: Sequence[Any] | None = None,
        exclude: Iterable[Any] = (),
        categories: Iterable[Any] | None = None,
        available_only: bool | None = None,
        exclude_purchased: bool | None = None,
        max_per_category: int | None = None,
        now: int | None = None,
        visitor_id: Any = None,
    ) -> RecommendationList:
        """Return the top-n items for a visitor (user_id None: anonymous), always n if possible.

        `session_items` are the item ids of this visit, newest last. Unknown users, session
        items and excluded ids are not errors: they fall back or are reported on the result.
        Under an A/B experiment the visitor (by user id, else `visitor_id`) sees their variant,
        named on the result; a holdout variant gets an empty list.
        """
        model = self._model  # one model for the whole call, even if reload() swaps meanwhile
        n = _check_n(n, model.serving.max_n)
        # Checked before the variant is chosen, so that every visitor's bad id fails alike.
        checked = None if user_id is None else _check_id(user_id, model.users)
        variant = None
        unit = user_id if user_id is not None else visitor_id
        if model.experiment is not None and unit is not None:
            if isinstance(unit, float | np.floating):
                raise ValueError(
                    f"visitor ids must be whole numbers or text, not {unit!r} (17850.0 and "
                    "17850 would land in different variants)"
                )
            variant = assign(model.experiment, unit)
            model = model.variants[variant.name]
            # A variant's n caps the list: it never asks for more than the page has room for.
            if variant.n is not None:
                n = min(n, variant.n)
        cfg = model.serving
        clock = model.now() if now is None else int(now)
        # Exposures are joined with the shop's own event times: stamped by the wall clock
        # (the model's clock runs from the end of its data), unless the caller sets `now`.
        shown_at = int(time.time()) if now is None else int(now)
        if variant is not None and variant.holdout:
            held = RecommendationList()
            held.model_version = model.version
            self._label_and_record(held, model, variant, user_id, visitor_id, shown_at)
            return held
        filters = Filters(
            exclude=tuple(exclude),
            categories=tuple(categories) if categories is not None else None,
            available_only=available_only,
            exclude_purchased=exclude_purchased,
            max_per_category=max_per_category,
        ).resolved(cfg)
        user = -1 if checked is None else model.users.index_of(checked)
        session_ids = list(session_items or ())
        for item in session_ids:
            _check_id(item, model.items)
        # A handful of ids: one lookup each beats building a pandas index for the list.
        session = np.array([model.items.index_of(i) for i in session_ids], dtype=np.int64)
        unknown = tuple(i for i, idx in zip(session_ids, session, strict=True) if idx < 0)
        result = answer(
            model, user, user_id, n, filters, clock, session[session >= 0].astype(np.int64)
        )
        result.unknown_session_items = unknown
        self._label_and_record(result, model, variant, user_id, visitor_id, shown_at)
        return result

    def _label_and_record(
        self,
        result: RecommendationList,
        model: ServedModel,
        variant: VariantConfig | None,
        user_id: Any,
        visitor_id: Any,
        now: int,
    ) -> None:
        """Name the experiment and variant on the result; hand the list to the exposure log."""
        if variant is not None and model.experiment is not None:
            result.experiment, result.variant = model.experiment.name, variant.name
        sink = self.exposures
        if sink is None:
            return
        exposure = Exposure(
            time=now,
            experiment=result.experiment,
            variant=result.variant,
            user_id=user_id,
            visitor_id=visitor_id,
            model_version=result.model_version,
            items=tuple(r.item_id for r in result),
            sources=tuple(r.source for r in result),
        )
        try:
            sink.record(exposure)
        except Exception as exc:  # a shop's own sink failing must not cost the page its list
            self.exposure_errors += 1
            if self.exposure_errors == 1:
                log.warning("exposure sink failed (%s); counting failures in exposure_errors", exc)

    def profile(self, user_id: Any) -> dict[str, Any] | None:
        """The user's portrait (recency, orders, spend, RFM, tier, favourites), None if unknown."""
        model = self._model
        user = model.users.index_of(_check_id(user_id, model.users))
        if user < 0 or model.portraits is None:
            return None
        row: dict[str, Any] = model.portraits.slice(user, 1).to_pylist()[0]
        return row

    def similar_items(self, item_id: Any, n: int = 10) -> RecommendationList:
        """'People who viewed this also viewed': neighbours, then same-category/brand items."""
        model, item, picker = self._product_page(item_id, n)
        neighbours = model.models.get("neighbours")
        if item >= 0 and neighbours is not None:
            items, scores = neighbours.similar(item, n)  # type: ignore[attr-defined]
            picker.offer(items, scores, "similar", np.full(len(items), item))
        content = model.models.get("content")
        if item >= 0 and content is not None and not picker.full:
            # New items have no co-occurrence yet: their catalogue neighbours stand in.
            items, scores = content.similar(item, n + 1)  # type: ignore[attr-defined]
            picker.offer(items, scores, "content", np.full(len(items), item))
        return explain(model, None, picker)

    def complementary_items(self, item_id: Any, n: int = 10) -> RecommendationList:
        """'Frequently bought together': the item's complements (may be fewer than n)."""
        model, item, picker = self._product_page(item_id, n)
        copurchase = model.models.get("copurchase")
        if item >= 0 and copurchase is not None:
            items, scores = copurchase.complements(item, n)  # type: ignore[attr-defined]
            picker.offer(items, scores, "complements", np.full(len(items), item))
        return explain(model, None, picker)

    def _product_page(self, item_id: Any, n: int) -> tuple[ServedModel, int, Picker]:
        """The model, the item's index (-1: unknown) and a picker that leaves the item out."""
        model = self._model
        n = _check_n(n, model.serving.max_n)
        item = model.items.index_of(_check_id(item_id, model.items))
        return model, item, Picker(n, [item] if item >= 0 else [], None, model.item_category, 0)


# A list as four columns: item ids, scores, sources, reasons.
Columns = tuple[list[Any], list[float], list[str], list[str]]


def answer(
    model: ServedModel,
    user: int,
    user_id: Any,
    n: int,
    filters: Filters,
    now: int,
    session: np.ndarray = _NO_SESSION,
) -> RecommendationList:
    """The list for a visitor already resolved to model indices (user -1: not in the model).

    `filters` must be resolved against the serving defaults.
    """
    result = RecommendationList()
    result.model_version = model.version
    result.extend(
        map(Recommendation, *answer_columns(model, user, user_id, n, filters, now, session))
    )
    result.user_known = user >= 0
    return result


def answer_columns(
    model: ServedModel,
    user: int,
    user_id: Any,
    n: int,
    filters: Filters,
    now: int,
    session: np.ndarray = _NO_SESSION,
) -> Columns:
    """answer() as columns. Recommender.recommend and batch export both answer through here,
    so they agree by construction."""
    segment = -1
    if user_id is not None and model.segment_users is not None:
        where = model.segment_users.index_of(user_id)
        segment = int(model.segment_codes[where]) if where >= 0 else -1
    excluded: list[int] = []
    if filters.exclude:
        found = model.items.index(list(filters.exclude))
        excluded += found[found >= 0].tolist()
    if filters.exclude_purchased and user >= 0:
        excluded += _not_rebought(model, user).tolist()
    picker = Picker(
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
    tier = int(model.user_tier[user]) if user >= 0 else -1
    favourites = model.user_favourites[user] if user >= 0 else ()
    visit = Visit(
        user=user,
        session=session,
        segment=segment,
        now=now,
        new_item_share=model.serving.new_item_boost,
        favourites=tuple(int(c) for c in favourites if c >= 0),
    )
    # The user's tier (from their portrait) may let some strategies lead the list.
    leads = model.serving.tier_leads.get(TIERS[tier], {}) if tier >= 0 else {}
    lead_due = run_leads(model, visit, picker, leads) if leads else None
    ranked = run_chain(model, visit, picker, model.serving.chain)
    # The blend's due items include the lead's (the same ranking, deeper): either explains.
    due = ranked.due if ranked is not None and ranked.due is not None else lead_due
    return explain_columns(model, visit, picker, due)


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
    if source == "reminder" and visit is not None and visit.user >= 0:
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
    items, events, times = model.blender.strategies.history.of(visit.user)
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


def _check_n(n: Any, max_n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"n must be a whole number (got {type(n).__name__} {n!r})")
    if not 1 <= n <= max_n:
        raise ValueError(
            f"n must be between 1 and {max_n} (got {n}); set serving.max_n to allow more"
        )
    return int(n)


def _check_id(value: Any, ids: IdMap) -> Any:
    """Refuse ids of the wrong type: an int model never matches '17850', and that is a bug."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{ids.name} id must be a {_kind(ids)}, not {value!r}")
    if ids.dtype == "int64":
        if isinstance(value, int | np.integer):
            return int(value)
        raise ValueError(
            f"{ids.name} ids of this model are whole numbers; got {type(value).__name__} {value!r}"
        )
    if isinstance(value, str):
        return value
    raise ValueError(f"{ids.name} ids of this model are text; got {type(value).__name__} {value!r}")


def _kind(ids: IdMap) -> str:
    return "whole number" if ids.dtype == "int64" else "text id"


def _category_codes(model: ServedModel, categories: tuple[Any, ...] | None) -> np.ndarray | None:
    if categories is None:
        return None
    wanted = set(categories)
    codes = [code for code, cid in enumerate(model.category_ids.tolist()) if cid in wanted]
    return np.asarray(codes, dtype=np.int64)
