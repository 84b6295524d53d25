"""The in-process recommender: load a published model, answer every page view, hot-reload."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.answer import (
    Recommendation,
    RecommendationList,
    answer,
    check_n,
    explain,
    for_visitor,
)
from recsys.blend import NO_EVENTS, Events
from recsys.config import ExperimentConfig, VariantConfig, check_experiments
from recsys.experiments import active_experiment
from recsys.filters import Filters, Picker
from recsys.ids import IdMap
from recsys.served import ServedModel
from serving.exposures import Exposure, ExposureSink
from serving.live import LiveEventStore, LiveStore, events_for, live_event, store_key

log = logging.getLogger(__name__)

__all__ = ["Recommendation", "RecommendationList", "Recommender"]


class Recommender:
    """Recommends the shop's products from the published model in `root`; thread-safe."""

    def __init__(
        self,
        root: Path,
        model: ServedModel,
        *,
        exposures: ExposureSink | None = None,
        experiments: Sequence[ExperimentConfig] | None = None,
        live: LiveEventStore | None = None,
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
        # What visitors did since the model's data ended; it outlives reloads.
        self.live: LiveEventStore = live if live is not None else LiveStore(model.serving.live)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        exposures: ExposureSink | None = None,
        experiments: Sequence[ExperimentConfig] | None = None,
        redis_url: str | None = None,
    ) -> Recommender:
        """Load the current published model of a model directory (or one version folder).

        `exposures` records every list returned (e.g. a JsonlExposureLog, for A/B analysis);
        `experiments` replace the ones the model was trained with; `redis_url` keeps live events
        in Redis, shared by every process that serves the shop (default: in this process).
        """
        root = Path(path)
        model = ServedModel.load(root)
        live = None
        if redis_url:
            from serving.live import RedisLiveStore

            live = RedisLiveStore(redis_url, model.serving.live)
        return cls(root, model, exposures=exposures, experiments=experiments, live=live)

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

    def record_event(
        self,
        user_id: Any,
        item_id: Any,
        event_type: str,
        timestamp: Any = None,
        *,
        visitor_id: Any = None,
        quantity: Any = None,
    ) -> None:
        """Record what a visitor just did (view, cart, favourite, purchase, return); the next
        answer for them reads it. `timestamp`: Unix seconds or an aware datetime (None: now).

        Bad fields raise ValueError naming the field; nothing is recorded then.
        """
        self.record_events(
            [
                {
                    "user_id": user_id,
                    "item_id": item_id,
                    "event_type": event_type,
                    "timestamp": timestamp,
                    "visitor_id": visitor_id,
                    "quantity": quantity,
                }
            ]
        )

    def record_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Record many events (dicts with record_event's fields); all are checked before any is
        recorded. Returns how many were recorded."""
        model = self._model
        if not model.serving.live.enabled:
            raise ValueError("live events are off (serving.live.enabled = false)")
        by_key: dict[Any, list[Any]] = {}
        for position, fields in enumerate(events):
            try:
                user_id = fields.get("user_id")
                visitor_id = fields.get("visitor_id")
                if user_id is not None:
                    user_id = _check_id(user_id, model.users)
                key = store_key(user_id, visitor_id)
                event = live_event(
                    _check_id(fields.get("item_id"), model.items),
                    fields.get("event_type"),
                    fields.get("timestamp"),
                    fields.get("quantity"),
                )
            except (ValueError, AttributeError) as error:
                raise ValueError(f"event {position}: {error}") from None
            by_key.setdefault(key, []).append(event)
        for key, found in by_key.items():
            self.live.add(key, found)
        return sum(len(found) for found in by_key.values())

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
        n = check_n(n, model.serving.max_n)
        session_items = _id_list("session_items", session_items)
        exclude = _id_list("exclude", exclude) or ()
        categories = _id_list("categories", categories)
        if max_per_category is not None and (
            isinstance(max_per_category, bool)
            or not isinstance(max_per_category, int)
            or max_per_category < 0
        ):
            raise ValueError(
                "max_per_category must be a whole number >= 0 (0: no cap; "
                f"got {max_per_category!r})"
            )
        if now is not None:
            now = _check_now(now)
        # Checked before the variant is chosen, so that every visitor's bad id fails alike.
        checked = None if user_id is None else _check_id(user_id, model.users)
        model, variant, n = for_visitor(model, user_id if user_id is not None else visitor_id, n)
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
        earlier = self._earlier(model, checked, visitor_id, clock)
        result = answer(
            model,
            user,
            user_id,
            n,
            filters,
            clock,
            session[session >= 0].astype(np.int64),
            earlier,
        )
        result.unknown_session_items = unknown
        self._label_and_record(result, model, variant, user_id, visitor_id, shown_at)
        return result

    def _earlier(self, model: ServedModel, user_id: Any, visitor_id: Any, now: int) -> Events:
        """The visitor's live events since the model's data ended, as model indices."""
        if not model.serving.live.enabled or (user_id is None and visitor_id is None):
            return NO_EVENTS
        found = self.live.of(store_key(user_id, visitor_id), now)
        return events_for(found, model.items, model.data_end, now) if found else NO_EVENTS

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
        n = check_n(n, model.serving.max_n)
        item = model.items.index_of(_check_id(item_id, model.items))
        return model, item, Picker(n, [item] if item >= 0 else [], None, model.item_category, 0)


def _id_list(name: str, values: Any) -> list[Any] | None:
    """A list argument of ids; a lone string would be read letter by letter, so it is refused."""
    if values is None:
        return None
    if isinstance(values, str | bytes):
        raise ValueError(f"{name} must be a list of ids, not one string ({values!r}); "
                         f"pass [{values!r}]")  # fmt: skip
    try:
        return list(values)
    except TypeError:
        raise ValueError(f"{name} must be a list of ids (got {type(values).__name__})") from None


# Unix seconds a call may ask about: year 1970 to about 2286 (int64 nanoseconds hold them all).
_MAX_NOW = 10**10


def _check_now(now: Any) -> int:
    if isinstance(now, bool) or not isinstance(now, int | float | np.integer | np.floating):
        raise ValueError(f"now must be Unix seconds (got {type(now).__name__} {now!r})")
    # (a comparison, not np.isfinite: a Python int may be too big for any numpy type)
    if not 0 <= now < _MAX_NOW:  # NaN fails it too
        raise ValueError(f"now must be Unix seconds between 0 and {_MAX_NOW:.0e} (got {now!r})")
    return int(now)


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
