"""Loading the shop's event log: map columns to the canonical schema, validate, count every row."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.config import Config, EventsSource, RowRule, ValidationConfig
from recsys.errors import EventsSchemaError, SchemaError
from recsys.schema import EVENT_TYPES, MAX_AMOUNT, REASON_CODES, REASONS, EventType
from recsys.tables import (
    check_id_column,
    file_label,
    normalize_ids,
    read_columns,
    to_numbers,
    typed_ids,
)
from recsys.times import format_instant, parse_instant, parse_times

log = logging.getLogger(__name__)

_SECONDS_PER_DAY = 86_400


@dataclass
class LoadReport:
    """What happened to every row of one input: rows read = accepted + rejected, by reason."""

    source: str
    files: dict[str, int] = field(default_factory=dict)
    rows_read: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    # accepted rows a return rule turned into returns.
    returns: int = 0
    by_event: dict[str, int] = field(default_factory=dict)
    users: int = 0
    items: int = 0
    first_time: str | None = None
    last_time: str | None = None
    rejects_path: str | None = None
    seconds: float = 0.0

    @property
    def rejected_total(self) -> int:
        """Number of rows rejected, all reasons together."""
        return sum(self.rejected.values())

    def check(self) -> None:
        """Raise AssertionError unless every row read is accounted for."""
        if self.rows_read != self.accepted + self.rejected_total:
            raise AssertionError(
                f"{self.source}: {self.rows_read} rows read but {self.accepted} accepted "
                f"+ {self.rejected_total} rejected"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {k: v for k, v in self.__dict__.items()} | {"rejected_total": self.rejected_total}

    def format(self) -> str:
        """Return the report as a small text table."""
        lines = [f"{self.source}: {self.rows_read:,} rows read from {len(self.files)} file(s)"]
        for name, rows in self.files.items():
            lines.append(f"  {name}: {rows:,} rows")
        lines.append(f"  accepted  {self.accepted:>12,}")
        lines.append(f"  rejected  {self.rejected_total:>12,}")
        for reason, count in self.rejected.items():
            lines.append(f"    {reason:<24}{count:>10,}")
        if self.by_event:
            kinds = ", ".join(f"{k} {v:,}" for k, v in self.by_event.items() if v)
            lines.append(f"  events: {kinds}")
        if self.returns:
            lines.append(f"  returns from return rules: {self.returns:,}")
        if self.users or self.items:
            lines.append(f"  users {self.users:,}, items {self.items:,}")
        if self.first_time:
            lines.append(f"  time span: {self.first_time} .. {self.last_time}")
        if self.rejects_path:
            lines.append(f"  rejected rows written to {self.rejects_path}")
        return "\n".join(lines)


@dataclass
class EventLog:
    """Accepted events in canonical columns, with the report of how they were loaded.

    `frame` columns: user, item (shop's ids: int64 or str), event (int8 EventType code),
    timestamp (int64 Unix seconds, UTC), quantity (float64, returns positive), price (float64,
    NaN when unknown), and session / category when the log has them.
    """

    frame: pd.DataFrame
    report: LoadReport
    timezone: str = "UTC"

    def __len__(self) -> int:
        return len(self.frame)


def load_events(
    config: Config, *, on_error: str | None = None, rejects_dir: Path | None = None
) -> EventLog:
    """Read, map and validate the configured event log; reject bad rows by policy."""
    started = time.perf_counter()
    src = config.events
    policy = on_error or config.validation.on_error
    if policy not in ("strict", "quarantine"):
        raise ValueError(f"on_error must be 'strict' or 'quarantine' (got {policy!r})")
    raw, files = _read_sources(src)
    report = LoadReport(source="events", files=files, rows_read=len(raw))
    if len(raw) == 0:
        raise EventsSchemaError(
            f"{_names(src.path)}: the event log has no data rows; nothing to train on"
        )
    data, reasons = _map_and_validate(raw, src, config.validation, config.timezone)
    counts = {
        code: int(n)
        for code, n in zip(
            REASON_CODES, np.bincount(reasons, minlength=len(REASON_CODES) + 1)[1:], strict=True
        )
        if n
    }
    if policy == "strict":
        _raise_first_fatal(raw, reasons, counts, src)
    ok = reasons == 0
    positions = np.flatnonzero(ok)
    accepted = pd.DataFrame({name: _take(column, positions) for name, column in data.items()})
    report.accepted = len(accepted)
    report.rejected = counts
    report.returns = int((accepted["event"] == EventType.RETURN).sum())
    codes = np.bincount(accepted["event"].to_numpy(), minlength=len(EVENT_TYPES))
    report.by_event = {name: int(n) for name, n in zip(EVENT_TYPES, codes, strict=True)}
    report.users = int(accepted["user"].nunique())
    report.items = int(accepted["item"].nunique())
    if len(accepted):
        report.first_time = format_instant(int(accepted["timestamp"].min()), config.timezone)
        report.last_time = format_instant(int(accepted["timestamp"].max()), config.timezone)
    target = rejects_dir if rejects_dir is not None else config.output.rejects
    if report.rejected_total:
        bad = reasons > 0
        labels = np.asarray(REASON_CODES)[reasons[bad] - 1]
        written = write_rejects(raw, bad, labels, src.path, target / "events.rejects.csv")
        report.rejects_path = str(written)
    else:
        remove_stale_rejects(target / "events.rejects.csv")
    if report.accepted == 0:
        reasons_text = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        raise EventsSchemaError(
            f"{_names(src.path)}: no row was accepted ({report.rows_read:,} rows: {reasons_text}); "
            f"see {report.rejects_path} and check the column names and event types in the config"
        )
    report.seconds = round(time.perf_counter() - started, 3)
    report.check()
    log.info(
        "events: %s rows read, %s accepted, %s rejected in %.2fs",
        report.rows_read,
        report.accepted,
        report.rejected_total,
        report.seconds,
    )
    return EventLog(frame=accepted, report=report, timezone=config.timezone)


def _names(paths: tuple[Path, ...]) -> str:
    return ", ".join(p.name for p in paths)


def _read_sources(src: EventsSource) -> tuple[pd.DataFrame, dict[str, int]]:
    cols = src.columns
    required = [cols.user, cols.item, cols.timestamp] + ([cols.event] if cols.event else [])
    rule_cols = [r.column for r in src.return_rules]
    # Skip rules' columns are checked below rather than made required, so that a missing one is
    # named with the config key that asks for it.
    skip_cols = [r.column for r in src.skip_rules]
    optional = [c for c in (cols.quantity, cols.price, cols.session, cols.category) if c]
    text = raw_text_columns(src)
    frames = []
    files: dict[str, int] = {}
    for i, path in enumerate(src.path):
        frame = read_columns(
            path,
            required=list(dict.fromkeys(required + rule_cols)),
            optional=list(dict.fromkeys(optional + skip_cols)),
            what="events",
            fmt=src.format,
            encoding=src.encoding,
            text_columns=text,
            config_key="events.columns",
        )
        for column in skip_cols:
            if column not in frame:
                raise SchemaError(
                    f"{path.name}: missing column {column!r} named by events.skip_rules; "
                    "set the rule's column to one of the file's column names or drop the rule"
                )
        frame["__file"] = np.int16(i)
        frame["__row"] = np.arange(1, len(frame) + 1, dtype=np.int64)
        files[file_label(path, files)] = len(frame)
        frames.append(frame)
    raw = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return raw, files


def _map_and_validate(
    raw: pd.DataFrame, src: EventsSource, rules: ValidationConfig, timezone: str
) -> tuple[dict[str, Any], np.ndarray]:
    """Return (canonical columns, reason code per row: 0 = accepted, else 1 + index in REASONS)."""
    cols = src.columns
    n = len(raw)
    masks: dict[str, np.ndarray] = {}

    where = ", ".join(p.name for p in src.path)
    check_id_column(raw[cols.user], cols.user, where)
    check_id_column(raw[cols.item], cols.item, where)
    user, bad_user = typed_ids(raw[cols.user], src.user_id_type)
    item, bad_item = typed_ids(raw[cols.item], src.item_id_type)
    masks["missing_user"] = user.isna().to_numpy() & ~bad_user
    masks["missing_item"] = item.isna().to_numpy() & ~bad_item
    masks["bad_user_id"] = bad_user
    masks["bad_item_id"] = bad_item

    seconds, masks["bad_timestamp"] = parse_times(
        raw[cols.timestamp],
        src.timestamp_unit,
        timezone,
        src.timestamp_format,
        column=cols.timestamp,
    )
    low = parse_instant(rules.min_time, timezone, "validation.min_time")
    high = int(time.time() + rules.max_future_days * _SECONDS_PER_DAY)
    valid_time = ~masks["bad_timestamp"]
    masks["timestamp_out_of_range"] = valid_time & ((seconds < low) | (seconds > high))
    window = np.zeros(n, dtype=bool)
    if rules.window_start is not None:
        window |= seconds < parse_instant(rules.window_start, timezone, "validation.window_start")
    if rules.window_end is not None:
        window |= seconds >= parse_instant(rules.window_end, timezone, "validation.window_end")
    masks["out_of_window"] = valid_time & window

    event, masks["unknown_event"] = _event_codes(raw, src)
    is_return = _rule_mask(raw, src.return_rules)
    event[is_return] = EventType.RETURN

    excluded = set(src.exclude_items)
    masks["excluded_item"] = (
        item.astype("str").isin(excluded).to_numpy() & ~masks["missing_item"]
        if excluded
        else np.zeros(n, dtype=bool)
    )
    masks["skipped_by_rule"] = _rule_mask(raw, src.skip_rules)

    if cols.quantity and cols.quantity in raw:
        quantity, masks["bad_quantity"] = to_numbers(raw[cols.quantity])
        quantity = np.where(np.isnan(quantity) & ~masks["bad_quantity"], 1.0, quantity)
    else:
        quantity, masks["bad_quantity"] = np.ones(n), np.zeros(n, dtype=bool)
    # Returns carry negative quantities in many logs, whether a rule or the event column says so.
    masks["negative_quantity"] = (quantity < 0) & ~is_return & (event != EventType.RETURN)
    quantity = np.abs(quantity)
    masks["implausible_quantity"] = ~np.isnan(quantity) & ~(quantity <= MAX_AMOUNT)
    # A purchase of nothing is not a purchase (views and carts may carry any quantity).
    masks["zero_quantity"] = (quantity == 0) & (event == EventType.PURCHASE)

    if cols.price and cols.price in raw:
        price, masks["bad_price"] = to_numbers(raw[cols.price])
    else:
        price, masks["bad_price"] = np.full(n, np.nan), np.zeros(n, dtype=bool)
    masks["negative_price"] = price < 0
    masks["implausible_price"] = ~np.isnan(price) & ~(np.abs(price) <= MAX_AMOUNT)

    data: dict[str, Any] = {
        "user": _plain_ids(user),
        "item": _plain_ids(item),
        "event": event,
        "timestamp": seconds,
        "quantity": quantity,
        "price": price,
    }
    if cols.session and cols.session in raw:
        data["session"] = normalize_ids(raw[cols.session])
    if cols.category and cols.category in raw:
        data["category"] = _plain_ids(normalize_ids(raw[cols.category]))
    reasons = np.zeros(n, dtype=np.int8)
    for code_index, reason in enumerate(REASONS, start=1):
        if reason.code == "duplicate":
            continue
        mask = masks[reason.code]
        reasons[(reasons == 0) & mask] = code_index
    if rules.duplicates == "drop":
        key = ["user", "item", "event", "timestamp", "quantity", "price"]
        key += ["session"] if "session" in data else []
        dup = _duplicates([data[k] for k in key], reasons == 0)
        masks["duplicate"] = dup
        reasons[dup] = REASON_CODES.index("duplicate") + 1
    return data, reasons


def _duplicates(columns: list[Any], candidates: np.ndarray) -> np.ndarray:
    """Mark candidate rows that repeat an earlier candidate row exactly on the given columns."""
    # Comparing millions of rows column by column is slow; a 64-bit row hash narrows the work
    # to the few rows whose hash occurs twice, and only those are compared exactly.
    hashes = _row_hashes(columns)[candidates]
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    dup = np.zeros(len(candidates), dtype=bool)
    if len(repeated) == 0:
        return dup
    repeated = np.unique(repeated)
    found = repeated[np.minimum(np.searchsorted(repeated, hashes), len(repeated) - 1)]
    positions = np.flatnonzero(candidates)[found == hashes]
    rows = pd.DataFrame({i: _take(col, positions) for i, col in enumerate(columns)})
    dup[positions] = rows.duplicated(keep="first").to_numpy()
    return dup


def _row_hashes(columns: list[Any]) -> np.ndarray:
    mixed: np.ndarray = np.zeros(len(columns[0]), dtype=np.uint64)
    for column in columns:
        part: np.ndarray
        if isinstance(column, np.ndarray) and column.dtype.kind in "iuf":
            values = column
            if values.dtype.kind == "f":
                # +0.0/-0.0 and every NaN must hash alike, as they compare alike below.
                values = np.where(np.isnan(values), np.nan, values + 0.0)
            part = values.astype(np.float64 if values.dtype.kind == "f" else np.int64)
            part = part.view(np.uint64)
        else:
            part = pd.util.hash_pandas_object(pd.Series(column), index=False).to_numpy()
        mixed = (mixed ^ part) * np.uint64(0x9E3779B97F4A7C15)
        mixed ^= mixed >> np.uint64(29)
    return mixed


def _take(column: Any, positions: np.ndarray) -> Any:
    if isinstance(column, pd.Series):
        return column.iloc[positions].reset_index(drop=True)
    return np.asarray(column)[positions]


def _plain_ids(ids: pd.Series) -> pd.Series:
    """Nullable ints become plain int64 (nulls, already rejected, become 0) for fast numpy work."""
    if isinstance(ids.dtype, pd.Int64Dtype):
        return ids.fillna(0).astype("int64")
    return ids


def _event_codes(raw: pd.DataFrame, src: EventsSource) -> tuple[np.ndarray, np.ndarray]:
    n = len(raw)
    column = src.columns.event
    if column is None:
        return np.full(n, EVENT_TYPES.index(src.default_event), dtype=np.int8), np.zeros(n, bool)
    mapping = src.event_types or {name: name for name in EVENT_TYPES}
    # Factorize first: a log has millions of rows but a handful of distinct event values.
    codes, uniques = pd.factorize(raw[column], use_na_sentinel=True)
    names = [_event_name(u) for u in uniques]
    lookup = np.array(
        [EVENT_TYPES.index(mapping[u]) if u in mapping else -1 for u in names] + [-1],
        dtype=np.int8,
    )
    event = lookup[codes]  # code -1 (missing) indexes the trailing -1
    unknown = event < 0
    event[unknown] = 0
    return event, unknown


def _event_name(value: Any) -> str:
    # Integer codes read through a nullable column arrive as floats: 1.0 means "1".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _rule_mask(raw: pd.DataFrame, rules: tuple[RowRule, ...]) -> np.ndarray:
    """Mark the rows that match any of the rules; empty and non-numeric values never match."""
    mask = np.zeros(len(raw), dtype=bool)
    for rule in rules:
        values = raw[rule.column]
        if rule.less_than is not None:
            numbers, _ = to_numbers(values)
            mask |= numbers < rule.less_than
            continue
        text = values.astype("str").where(values.notna())
        if rule.starts_with is not None:
            mask |= text.str.startswith(rule.starts_with).fillna(False).to_numpy(dtype=bool)
        elif rule.equals is not None:
            mask |= (text == rule.equals).fillna(False).to_numpy(dtype=bool)
    return mask


def raw_text_columns(src: EventsSource) -> list[str]:
    """The raw columns a CSV reader must keep as text (every reader: local and Spark).

    Ids keep their leading zeros; a timestamp column with a `timestamp_format` is text, so the
    format decides how it reads, not the reader's guess (%Y-%d-%m is not %Y-%m-%d).
    """
    cols = src.columns
    text = [c for c in (cols.user, cols.item, cols.session, cols.event, cols.category) if c]
    text += [r.column for r in src.return_rules + src.skip_rules if r.less_than is None]
    if src.timestamp_format:
        text.append(cols.timestamp)
    return text


def _raise_first_fatal(
    raw: pd.DataFrame,
    reasons: np.ndarray,
    counts: dict[str, int],
    src: EventsSource,
) -> None:
    cols = src.columns
    column_of = {
        "missing_user": cols.user,
        "missing_item": cols.item,
        "bad_user_id": cols.user,
        "bad_item_id": cols.item,
        "bad_timestamp": cols.timestamp,
        "timestamp_out_of_range": cols.timestamp,
        "unknown_event": cols.event,
        "bad_quantity": cols.quantity,
        "negative_quantity": cols.quantity,
        "bad_price": cols.price,
        "negative_price": cols.price,
        "implausible_quantity": cols.quantity,
        "implausible_price": cols.price,
        "zero_quantity": cols.quantity,
    }
    for code_index, reason in enumerate(REASONS, start=1):
        if not reason.fatal or reason.code not in counts:
            continue
        first = int(np.flatnonzero(reasons == code_index)[0])
        column = column_of[reason.code]
        value = raw[column].iloc[first] if column else None
        shown = "" if value is None or (isinstance(value, float) and np.isnan(value)) else value
        file_name = src.path[int(raw["__file"].iloc[first])].name
        row = int(raw["__row"].iloc[first])
        raise EventsSchemaError(
            f"{file_name}: column {column!r} has {counts[reason.code]:,} {reason.what} "
            f"(first at row {row}: {str(shown)!r}); fix them or set "
            "validation.on_error = 'quarantine' to set such rows aside"
        )


def write_rejects(
    raw: pd.DataFrame, bad: np.ndarray, reasons: np.ndarray, sources: tuple[Path, ...], path: Path
) -> Path:
    """Write the raw rows marked bad, with reason, file and 1-based row, to a CSV file.

    The added columns are named reason, file and row; where the shop's file already has a
    column of that name, ours is prefixed with "rejected_" so that neither is lost.
    """
    rejects = raw.loc[bad].drop(columns=["__file", "__row"])

    def name(column: str) -> str:
        return f"rejected_{column}" if column in rejects.columns else column

    rejects.insert(0, name("row"), raw.loc[bad, "__row"].to_numpy())
    rejects.insert(0, name("file"), np.asarray([p.name for p in sources])[raw.loc[bad, "__file"]])
    rejects.insert(0, name("reason"), reasons)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    try:
        rejects.to_csv(tmp, index=False)
        tmp.replace(path)
    except BaseException:
        # A full disk must not leave a half-written .tmp beside last night's file.
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_stale_rejects(path: Path) -> None:
    """A run with nothing rejected leaves no rejects file: an older run's would mislead."""
    for stale in (path, path.with_suffix(".csv.tmp")):
        if stale.is_file():
            stale.unlink()
            log.info("removed %s: this run rejected no row", stale)
