"""The optional item catalogue and user attributes: loaded, validated and accounted like events."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import Config, ItemsSource, UsersSource
from recsys.errors import CatalogueSchemaError
from recsys.ingest import LoadReport, remove_stale_rejects, write_rejects
from recsys.tables import file_label, normalize_ids, read_columns, to_numbers
from recsys.times import parse_times

_TRUE = {"1", "true", "yes", "y", "t", "in_stock", "instock", "available"}
_FALSE = {"0", "false", "no", "n", "f", "out_of_stock", "outofstock", "unavailable"}


@dataclass
class Catalogue:
    """One row per item, indexed by the shop's item id: category, brand, price, available, created.

    Missing fields are absent columns; `available` is a nullable boolean, `created` Unix seconds.
    """

    frame: pd.DataFrame
    report: LoadReport

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class UserAttributes:
    """One row per user, indexed by the shop's user id, with the configured attribute columns."""

    frame: pd.DataFrame
    report: LoadReport


def load_catalogue(
    config: Config, events: pd.DataFrame | None = None, rejects_dir: Path | None = None
) -> Catalogue | None:
    """Load the configured catalogue, or derive categories from the event log if it has them."""
    target = rejects_dir or config.output.rejects
    if config.items is not None:
        src = config.items
        if src.layout == "properties":
            return _load_properties(src, config.timezone, target)
        return _load_wide(src, config.timezone, target)
    if events is not None and "category" in events:
        return catalogue_from_events(events)
    return None


def catalogue_from_events(events: pd.DataFrame) -> Catalogue:
    """Derive each item's category from its most recent event that names one."""
    started = time.perf_counter()
    has = events["category"].notna()
    latest = (
        events.loc[has, ["item", "category", "timestamp"]]
        .sort_values("timestamp", kind="stable")
        .drop_duplicates("item", keep="last")
        .set_index("item")[["category"]]
    )
    report = LoadReport(source="items (from events)", files={"events": len(events)})
    report.rows_read = report.accepted = len(latest)
    report.items = len(latest)
    report.seconds = round(time.perf_counter() - started, 3)
    return Catalogue(frame=latest.sort_index(), report=report)


def _load_wide(src: ItemsSource, timezone: str, rejects_dir: Path) -> Catalogue:
    started = time.perf_counter()
    cols = src.columns
    assert cols is not None  # checked when the config was loaded
    fields = {
        name: getattr(cols, name)
        for name in ("category", "brand", "price", "available", "created")
        if getattr(cols, name)
    }
    raw, files = _read_all(
        src.path,
        [cols.item],
        list(fields.values()),
        "items",
        src.format,
        src.encoding,
        [cols.item, *(fields[k] for k in ("category", "brand") if k in fields)],
        "items.columns",
    )
    report = LoadReport(source="items", files=files, rows_read=len(raw))
    item = normalize_ids(raw[cols.item])
    frame = pd.DataFrame({"item": item})
    reasons = np.where(item.isna().to_numpy(), "missing_item", "")
    for name, column in fields.items():
        values = raw[column] if column in raw else pd.Series([None] * len(raw))
        if name in ("category", "brand"):
            frame[name] = normalize_ids(values) if name == "category" else values
        elif name == "price":
            price, bad = to_numbers(values)
            frame[name] = price
            reasons = np.where((reasons == "") & bad, "bad_price", reasons)
            reasons = np.where((reasons == "") & (price < 0), "negative_price", reasons)
        elif name == "available":
            frame[name] = _to_bool(values)
        elif name == "created":
            # Creation dates are usually written as dates even when property times are epochs.
            unit = src.timestamp_unit if pd.api.types.is_numeric_dtype(values.dtype) else "datetime"
            seconds, bad = parse_times(values, unit, timezone, column=column)
            frame[name] = pd.array(np.where(bad, 0, seconds), dtype="Int64")
            # An unreadable creation time is unknown, not a reason to drop the item.
            frame.loc[bad, name] = pd.NA
    return _finish(frame, raw, reasons, report, started, src.path, rejects_dir)


def _load_properties(src: ItemsSource, timezone: str, rejects_dir: Path) -> Catalogue:
    started = time.perf_counter()
    pc = src.property_columns
    required = [pc.item, pc.property, pc.value] + ([pc.timestamp] if pc.timestamp else [])
    raw, files = _read_all(
        src.path,
        required,
        [],
        "items",
        src.format,
        src.encoding,
        [pc.item, pc.property, pc.value],
        "items.property_columns",
    )
    report = LoadReport(source="items", files=files, rows_read=len(raw))
    item = normalize_ids(raw[pc.item])
    prop = raw[pc.property].astype("str")
    wanted = {v: k for k, v in src.properties.items()}
    reasons = np.where(item.isna().to_numpy(), "missing_item", "")
    if pc.timestamp:
        seconds, bad = parse_times(
            raw[pc.timestamp], src.timestamp_unit, timezone, column=pc.timestamp
        )
    else:
        seconds, bad = np.arange(len(raw), dtype=np.int64), np.zeros(len(raw), dtype=bool)
    reasons = np.where((reasons == "") & bad, "bad_timestamp", reasons)
    # Properties the engine does not use are read and counted, not loaded.
    other = ~prop.isin(list(wanted)).to_numpy()
    reasons = np.where((reasons == "") & other, "other_property", reasons)
    long = pd.DataFrame(
        {"item": item, "field": prop.map(wanted), "value": raw[pc.value], "t": seconds}
    )
    ok = reasons == ""
    ordered = long.loc[ok].sort_values("t", kind="stable")
    # A property has many values over time; the latest one describes the item now.
    superseded = ordered.duplicated(["item", "field"], keep="last")
    reasons[superseded.index[superseded.to_numpy()]] = "superseded"
    latest = ordered.loc[~superseded]
    wide = latest.pivot(index="item", columns="field", values="value")
    frame = pd.DataFrame({"item": wide.index})
    for name in src.properties:
        values = (
            wide[name].reset_index(drop=True) if name in wide else pd.Series([None] * len(wide))
        )
        if name == "available":
            frame[name] = _to_bool(values)
        elif name == "price":
            frame[name] = to_numbers(values.astype("str").str.lstrip("n"))[0]
        elif name == "category":
            frame[name] = normalize_ids(values)
        else:
            frame[name] = values
    report.rejected = _counts(reasons)
    report.accepted = int((reasons == "").sum())
    report.items = len(frame)
    _set_aside(raw, reasons, src.path, rejects_dir, report)
    report.seconds = round(time.perf_counter() - started, 3)
    report.check()
    return Catalogue(frame=frame.set_index("item").sort_index(), report=report)


def load_users(config: Config, rejects_dir: Path | None = None) -> UserAttributes | None:
    """Load the configured user attributes, one row per user (a repeated id's last row wins)."""
    src: UsersSource | None = config.users
    if src is None:
        return None
    started = time.perf_counter()
    raw, files = _read_all(
        src.path,
        [src.user, *src.attributes],
        [],
        "users",
        src.format,
        src.encoding,
        [src.user, *src.attributes],
        "users",
        all_columns=not src.attributes,
    )
    report = LoadReport(source="users", files=files, rows_read=len(raw))
    user = normalize_ids(raw[src.user])
    attributes = [c for c in raw.columns if c not in (src.user, "__file", "__row")]
    frame = pd.concat([pd.DataFrame({"user": user}), raw[attributes]], axis=1)
    reasons = np.where(user.isna().to_numpy(), "missing_user", "")
    dup = frame["user"].duplicated(keep="last").to_numpy() & (reasons == "")
    reasons = np.where(dup, "duplicate", reasons)
    kept = frame.loc[reasons == ""].set_index("user").sort_index()
    report.rejected = _counts(reasons)
    report.accepted = len(kept)
    report.users = len(kept)
    _set_aside(raw, reasons, src.path, rejects_dir or config.output.rejects, report)
    report.seconds = round(time.perf_counter() - started, 3)
    report.check()
    return UserAttributes(frame=kept, report=report)


def _read_all(
    paths: tuple[Path, ...],
    required: list[str],
    optional: list[str],
    what: str,
    fmt: str,
    encoding: str,
    text: list[str],
    key: str,
    *,
    all_columns: bool = False,
) -> tuple[pd.DataFrame, dict[str, int]]:
    frames: list[pd.DataFrame] = []
    files: dict[str, int] = {}
    for i, path in enumerate(paths):
        frame = read_columns(
            path,
            required,
            optional,
            what=what,
            fmt=fmt,
            encoding=encoding,
            text_columns=text,
            config_key=key,
            all_columns=all_columns,
        )
        frame["__file"] = np.int16(i)
        frame["__row"] = np.arange(1, len(frame) + 1, dtype=np.int64)
        files[file_label(path, files)] = len(frame)
        frames.append(frame)
    raw = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if len(raw) == 0:
        raise CatalogueSchemaError(
            f"{', '.join(p.name for p in paths)}: the {what} file has no data rows"
        )
    return raw, files


def _finish(
    frame: pd.DataFrame,
    raw: pd.DataFrame,
    reasons: np.ndarray,
    report: LoadReport,
    started: float,
    sources: tuple[Path, ...],
    rejects_dir: Path,
) -> Catalogue:
    # A repeated item row: the last one is the current description of the item.
    # Among valid rows only: a bad last row must not hide the item's good one.
    valid = reasons == ""
    dup = np.zeros(len(frame), dtype=bool)
    dup[valid] = frame.loc[valid, "item"].duplicated(keep="last").to_numpy()
    reasons = np.where(dup, "duplicate", reasons)
    kept = frame.loc[reasons == ""].set_index("item").sort_index()
    report.rejected = _counts(reasons)
    report.accepted = len(kept)
    report.items = len(kept)
    _set_aside(raw, reasons, sources, rejects_dir, report)
    report.seconds = round(time.perf_counter() - started, 3)
    report.check()
    return Catalogue(frame=kept, report=report)


# Reasons that mean a row is wrong, as opposed to unused (other_property, superseded, duplicate).
_BAD = ("missing_item", "missing_user", "bad_timestamp", "bad_price", "negative_price")


def _set_aside(
    raw: pd.DataFrame,
    reasons: np.ndarray,
    sources: tuple[Path, ...],
    rejects_dir: Path,
    report: LoadReport,
) -> None:
    bad = np.isin(reasons, _BAD)
    path = rejects_dir / f"{report.source}.rejects.csv"
    if bad.any():
        report.rejects_path = str(write_rejects(raw, bad, reasons[bad], sources, path))
    else:
        remove_stale_rejects(path)


def _counts(reasons: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(reasons[reasons != ""], return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def _to_bool(values: pd.Series) -> pd.Series:
    text = values.astype("str").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE).to_numpy()] = True
    out[text.isin(_FALSE).to_numpy()] = False
    return out.reset_index(drop=True)
