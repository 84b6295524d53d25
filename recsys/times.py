"""Turning the shop's time columns (epoch numbers, date-time text or types) into Unix seconds."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, SchemaError
from recsys.tables import to_numbers

log = logging.getLogger(__name__)

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
NAT = np.iinfo(np.int64).min


def parse_times(
    values: pd.Series, unit: str, timezone: str, fmt: str | None = None, *, column: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Return (int64 Unix seconds, mask of rows whose time is missing or not a time).

    Naive date-times are read in the shop's time zone; numbers are epoch counts in `unit`.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if fmt:
            # The file itself stores times (Parquet): there is no text for the format to read.
            log.warning("column %r holds times already; timestamp_format %r does not apply",
                        column, fmt)  # fmt: skip
        return _datetimes_to_seconds(pd.Series(values), timezone)
    if unit in _PER_SECOND:
        if pd.api.types.is_integer_dtype(values.dtype):
            # Whole epoch counts divide exactly; float64 would round nanosecond stamps.
            bad = values.isna().to_numpy()
            ints = values.to_numpy(dtype=np.int64, na_value=0) // _PER_SECOND[unit]
            return np.where(bad, NAT, ints), bad
        numbers, _ = to_numbers(values)
        bad = ~np.isfinite(numbers)
        seconds = np.full(len(numbers), NAT, dtype=np.int64)
        seconds[~bad] = np.floor(numbers[~bad] / _PER_SECOND[unit]).astype(np.int64)
        return seconds, bad
    if pd.api.types.is_numeric_dtype(values.dtype):
        raise SchemaError(
            f"column {column!r} holds numbers but timestamp_unit is 'datetime'; "
            "set timestamp_unit to 's', 'ms', 'us' or 'ns'"
        )
    text = values.astype("str").where(values.notna())
    try:
        parsed = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce")
    except ValueError:
        return _mixed_to_seconds(text, fmt, timezone)
    return _datetimes_to_seconds(pd.Series(parsed), timezone)


# An offset after a time of day ("10:00+01:00", "10:00:00Z"); a bare date's "-01" is not one.
_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _mixed_to_seconds(
    text: pd.Series, fmt: str | None, timezone: str
) -> tuple[np.ndarray, np.ndarray]:
    """Times with different UTC offsets, or some with and some without: each read as written.

    Those with an offset are instants; those without are wall-clock times of the shop.
    """
    aware = text.str.contains(_OFFSET, regex=True, na=False).to_numpy()
    seconds = np.full(len(text), NAT, dtype=np.int64)
    bad = np.ones(len(text), dtype=bool)
    for mask, utc in ((aware, True), (~aware, False)):
        if mask.any():
            part = pd.to_datetime(text[mask], format=fmt or "ISO8601", errors="coerce", utc=utc)
            seconds[mask], bad[mask] = _datetimes_to_seconds(pd.Series(part), timezone)
    return seconds, bad


def _datetimes_to_seconds(values: pd.Series, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    bad = values.isna().to_numpy()
    if values.dt.tz is None and timezone != "UTC":
        # Ambiguous wall times (the hour repeated when clocks go back) are read as standard
        # time and non-existent ones (skipped hour) shifted forward, rather than rejected.
        values = values.dt.tz_localize(
            timezone, ambiguous=np.zeros(len(values), dtype=bool), nonexistent="shift_forward"
        )
        bad = values.isna().to_numpy()
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    raw = values.to_numpy(dtype="datetime64[s]", na_value=np.datetime64("NaT"))
    seconds = raw.astype(np.int64)
    seconds[bad] = NAT
    return seconds, bad


def parse_instant(text: str, timezone: str, key: str) -> int:
    """Return Unix seconds of an ISO date or date-time from the config (naive means shop time)."""
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not an ISO date or date-time") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=ZoneInfo(timezone))
    return int(stamp.timestamp())


def format_instant(seconds: int, timezone: str) -> str:
    """Return a Unix time as an ISO date-time in the shop's time zone."""
    return dt.datetime.fromtimestamp(int(seconds), ZoneInfo(timezone)).isoformat()
