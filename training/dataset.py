"""The first steps of the nightly job: load and validate the logs, then build ids and matrices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.catalogue import (
    Catalogue,
    UserAttributes,
    catalogue_from_events,
    load_catalogue,
    load_users,
)
from recsys.config import Config
from recsys.errors import SchemaError
from recsys.history import UserHistory
from recsys.ids import IdMap
from recsys.ingest import EventLog, load_events
from recsys.matrix import MatrixSummary, confidence_matrix
from recsys.models.base import FitData
from training.steps import Steps


@dataclass
class Dataset:
    """Everything the models are fitted on, built from one configuration."""

    events: EventLog
    catalogue: Catalogue | None
    users_attributes: UserAttributes | None
    users: IdMap
    items: IdMap
    matrix: sp.csr_matrix
    matrix_summary: MatrixSummary
    history: UserHistory
    timings: dict[str, float]

    def format(self, timings: bool = True) -> str:
        """Return the load reports and matrix summary (and step timings) as text."""
        parts = [self.events.report.format()]
        if self.catalogue is not None:
            parts.append(self.catalogue.report.format())
        if self.users_attributes is not None:
            parts.append(self.users_attributes.report.format())
        parts.append(self.matrix_summary.format())
        parts.append(
            f"history: {len(self.history):,} events of {self.history.n_users:,} users, time-ordered"
        )
        if timings:
            steps = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
            parts.append(f"timings: {steps}")
        return "\n".join(parts)


def build_dataset(
    config: Config,
    *,
    on_error: str | None = None,
    rejects_dir: Path | None = None,
    load: Callable[..., EventLog] | None = None,
) -> Dataset:
    """Load, validate and index the configured logs and build the confidence matrix.

    `load` replaces `recsys.ingest.load_events` (the Spark trainer's loader); it takes the same
    arguments and returns the same EventLog, rows in file-then-row order.
    """
    steps = Steps()
    events = (load or load_events)(config, on_error=on_error, rejects_dir=rejects_dir)
    steps.done("load events")
    catalogue = load_catalogue(config, events.frame, rejects_dir=rejects_dir)
    users_attributes = load_users(config, rejects_dir=rejects_dir)
    steps.done("load catalogue")
    indexed = _index(events.frame, config, steps, catalogue)
    return Dataset(events=events, catalogue=catalogue, users_attributes=users_attributes, **indexed)


def subset(dataset: Dataset, frame: pd.DataFrame, config: Config) -> Dataset:
    """Return the dataset re-indexed on a subset of its events (e.g. a training split)."""
    steps = Steps()
    events = EventLog(frame=frame, report=dataset.events.report, timezone=config.timezone)
    catalogue = dataset.catalogue
    if catalogue is not None and config.items is None:
        # A catalogue derived from events must come from this subset's events only, or a
        # training split would learn of items that first appear in its holdout.
        catalogue = catalogue_from_events(frame) if "category" in frame else None
    elif catalogue is not None and "created" in catalogue.frame and len(frame):
        # Items created after the subset's last event did not exist yet.
        created = catalogue.frame["created"]
        early = created.isna() | (created <= int(frame["timestamp"].max()))
        catalogue = Catalogue(frame=catalogue.frame.loc[early.to_numpy()], report=catalogue.report)
    indexed = _index(frame, config, steps, catalogue)
    return Dataset(
        events=events,
        catalogue=catalogue,
        users_attributes=dataset.users_attributes,
        **indexed,
    )


def _index(
    frame: pd.DataFrame, config: Config, steps: Steps, catalogue: Catalogue | None
) -> dict[str, Any]:
    users = IdMap.from_values(frame["user"], name="user")
    item_ids = frame["item"]
    if catalogue is not None and len(catalogue.frame):
        # Catalogue items nobody has touched yet are items too: new arrivals must be servable.
        log_type = "int64" if pd.api.types.is_integer_dtype(item_ids.dtype) else "str"
        listed, ok = _ids_as(catalogue.frame.index, log_type)
        item_ids = pd.concat([item_ids, pd.Series(listed[ok])], ignore_index=True)
    items = IdMap.from_values(item_ids, name="item")
    steps.done("id maps")
    matrix, summary = confidence_matrix(frame, users, items, config.matrix, config.timezone)
    steps.done("matrix")
    history = UserHistory.from_events(frame, users, items)
    steps.done("history")
    return {
        "users": users,
        "items": items,
        "matrix": matrix,
        "matrix_summary": summary,
        "history": history,
        "timings": steps.timings,
    }


def fit_data(dataset: Dataset, config: Config) -> FitData:
    """Align the catalogue to the item map and bundle what the models are fitted on."""
    frame = dataset.events.frame
    n_items = len(dataset.items)
    # An item's first event stands in for its creation time when the catalogue has none.
    item_idx = dataset.items.index(frame["item"].to_numpy())
    first_seen = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, item_idx, frame["timestamp"].to_numpy())
    attributes: dict[str, object] = {"item_first_seen": first_seen}
    unseen = first_seen == np.iinfo(np.int64).max
    catalogue = dataset.catalogue.frame if dataset.catalogue is not None else None
    if catalogue is not None:
        aligned = _ids_like(catalogue, dataset.items.dtype).reindex(pd.Index(dataset.items.ids))
        if "category" in aligned:
            codes, uniques = pd.factorize(aligned["category"], use_na_sentinel=True)
            attributes["item_category"] = codes.astype(np.int32)
            attributes["n_categories"] = len(uniques)
            attributes["category_ids"] = np.asarray(uniques)
        if "brand" in aligned:
            attributes["item_brand"] = pd.factorize(aligned["brand"])[0].astype(np.int32)
        if "price" in aligned:
            attributes["item_price"] = aligned["price"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "available" in aligned:
            attributes["item_available"] = aligned["available"].fillna(True).to_numpy(dtype=bool)
        if "created" in aligned:
            created = aligned["created"].to_numpy(dtype=np.float64, na_value=np.nan)
            known = ~np.isnan(created)
            first_seen[known] = np.minimum(first_seen[known], created[known].astype(np.int64))
            unseen &= ~known
    # Neither an event nor a creation time: unknown (-1), never a "new arrival".
    first_seen[unseen] = -1
    if "item_price" not in attributes and frame["price"].notna().any():
        # A purchase log carries prices on its lines: an item's median price describes it.
        prices = frame.loc[frame["price"] > 0].groupby("item")["price"].median()
        attributes["item_price"] = prices.reindex(pd.Index(dataset.items.ids)).to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    now = int(frame["timestamp"].max())
    category_ids = attributes.pop("category_ids", np.asarray([]))
    segment_users, segment_codes, labels = user_segments(dataset, config)
    user_segment = np.full(len(dataset.users), -1, dtype=np.int32)
    if len(labels):
        where = dataset.users.index(segment_users)
        user_segment[where[where >= 0]] = segment_codes[where >= 0]
    data = FitData.from_matrix(dataset.matrix, dataset.history, now, **attributes)
    extra = {"category_ids": category_ids, "segment_labels": labels}
    fields = {**data.__dict__, "timezone": config.timezone, "extra": extra}
    fields.update(user_segment=user_segment, n_segments=len(labels))
    return FitData(**fields)


def _ids_like(catalogue: pd.DataFrame, dtype: str) -> pd.DataFrame:
    """The catalogue indexed by ids of the log's type (int64 or str)."""
    index, ok = _ids_as(catalogue.index, dtype)
    if ok.all() and index.equals(catalogue.index):
        return catalogue
    out = catalogue.loc[ok].copy()
    out.index = index[ok]
    return out


def _ids_as(ids: pd.Index, dtype: str) -> tuple[pd.Index, np.ndarray]:
    """Ids in the log's id type (int64 or str), and the mask of those any log id could equal.

    Catalogues and attribute files may spell ids differently from the log (7 vs "7").
    """
    if dtype == "int64" and not pd.api.types.is_integer_dtype(ids.dtype):
        numeric = _as_int_ids(pd.Series(ids))
        ok = numeric.notna().to_numpy()
        return pd.Index(numeric.fillna(0).astype("int64")), ok
    if dtype == "str" and not pd.api.types.is_string_dtype(ids.dtype):
        return ids.astype("str"), np.ones(len(ids), dtype=bool)
    return ids, np.ones(len(ids), dtype=bool)


def _as_int_ids(ids: pd.Series) -> pd.Series:
    """Whole-number ids as Int64; text that is not a plainly written whole number becomes NA.

    '007' stays apart from 7: the log's integer ids can only have been written as '7'.
    """
    if pd.api.types.is_integer_dtype(ids.dtype):
        return ids.astype("Int64")
    text = ids.astype("str")
    plain = text.str.fullmatch(r"-?(0|[1-9][0-9]{0,17})")
    return pd.to_numeric(text.where(plain), errors="coerce").astype("Int64")


def user_segments(dataset: Dataset, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (user ids, segment codes, segment labels) of users with every segment attribute."""
    names = list(config.serving.segment_by)
    attrs = dataset.users_attributes
    if not names or attrs is None:
        return np.zeros(0), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=object)
    missing = [n for n in names if n not in attrs.frame.columns]
    if missing:
        raise SchemaError(
            f"serving.segment_by names {missing[0]!r}, which the user attributes file does not "
            f"have (columns: {list(attrs.frame.columns)})"
        )
    frame = attrs.frame[names].dropna()
    labels = frame.astype("str").apply(
        lambda row: "|".join(f"{k}={v}" for k, v in zip(names, row, strict=True)), axis=1
    )
    codes, uniques = pd.factorize(labels, sort=True)
    ids, ok = _ids_as(frame.index, dataset.users.dtype)
    return ids[ok].to_numpy(), codes[ok].astype(np.int32), np.asarray(uniques, dtype=object)
