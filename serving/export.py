"""Batch export: every user's list exactly as `Recommender.recommend` gives it, in bulk.

`recommend_chunk(model, user_ids, n, filters, now)` is a pure function of a loaded model and a
chunk of users, returning an Arrow table; `export()` runs it over every user in worker
processes and streams the tables into one Parquet, CSV or JSON-lines file. A shop that
outgrows one machine can run the same chunk function on Spark or Ray partitions.

Speed comes from sharing, not from a second recommender: a user whose whole history is one
item (and no purchase) gets a list that depends only on that item, whether they carted it and
their segment, so users sharing those are answered once per chunk. Where the learned ranker
orders them, it also reads their tier, event counts and how many days ago they touched the
item; users alike in those, with days between the same two thresholds of the ranker's trees,
get the same scores and share too. Users are ordered so that such users sit next to each other.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsys.answer import Columns, answer_columns, check_n
from recsys.config import TIERS
from recsys.errors import RecsysError
from recsys.experiments import assign_many
from recsys.filters import Filters
from recsys.ranker import HISTORY_TAIL
from recsys.reasons import day_words, reason
from recsys.schema import EventType
from recsys.served import ServedModel

log = logging.getLogger(__name__)

COLUMNS = ("user_id", "rank", "item_id", "score", "source", "reason", "model_version")
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
_PURCHASE, _CART = int(EventType.PURCHASE), int(EventType.CART)
_FAVOURITE, _VIEW = int(EventType.FAVOURITE), int(EventType.VIEW)
_KINDS = ("view", "favourite", "cart", "none")


class ExportError(RecsysError):
    """The export cannot start: a bad output path, users file or option."""


@dataclass
class ExportSummary:
    """What an export wrote, and how long each phase took."""

    path: Path
    format: str
    model_version: str
    users: int
    unknown_users: int
    rows: int
    by_source: dict[str, int]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    # under an A/B experiment: users per variant, and those in holdout variants (no rows).
    by_variant: dict[str, int] = field(default_factory=dict)
    held_out_users: int = 0

    @property
    def users_per_second(self) -> float:
        """Users exported per second of the whole run."""
        return self.users / self.seconds if self.seconds > 0 else float("inf")

    def format_text(self) -> str:
        """A short report for the terminal."""
        lines = [
            f"exported {self.users:,} users ({self.unknown_users:,} unknown to model "
            f"{self.model_version}, given fallback lists), {self.rows:,} rows, to {self.path} "
            f"({self.format}) in {self.seconds:.1f} s, {self.users_per_second:,.0f} users/s",
            "  rows by source: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(self.by_source.items(), key=_by_count)),
            "  phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.phases.items()),
        ]
        if self.by_variant:
            lines.append(
                "  users by variant: "
                + ", ".join(f"{k} {v:,}" for k, v in self.by_variant.items())
                + f" ({self.held_out_users:,} in holdout variants: no rows)"
            )
        return "\n".join(lines)


def _by_count(pair: tuple[str, int]) -> tuple[int, str]:
    return -pair[1], pair[0]


def recommend_chunk(
    model: ServedModel,
    user_ids: Sequence[Any] | np.ndarray,
    n: int,
    filters: Filters,
    now: int,
    with_tier: bool = False,
) -> pa.Table:
    """The rows of `COLUMNS` for a chunk of users: for each, what recommend(user, n) gives.

    `filters` are resolved against the model's serving defaults here; `now` is the model
    clock for the whole export, so that every chunk answers at the same time. `with_tier`
    adds each user's portrait tier (null for users the model does not know).
    """
    if with_tier and model.portraits is None:
        raise ExportError(f"{model.path}: this model has no portraits; run `recsys train` again")
    n = check_n(n, model.serving.max_n)
    # A chunk keeps tens of thousands of answers alive until its table is built; the cyclic
    # garbage collector would walk them again and again (about a fifth of the time), and
    # answering creates no reference cycles to collect.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _chunk_table(model, user_ids, n, filters, now, with_tier)
    finally:
        if collecting:
            gc.enable()


def _chunk_table(
    model: ServedModel,
    user_ids: Sequence[Any] | np.ndarray,
    n: int,
    filters: Filters,
    now: int,
    with_tier: bool,
) -> pa.Table:
    ids = np.asarray(user_ids)
    users = model.users.index(ids).astype(np.int64) if len(ids) else np.zeros(0, np.int64)
    share = sharing(model, users, ids, now)
    keys = share.keys
    # Under an A/B experiment each user is answered as their variant serves them (its
    # weights, filters and n; a holdout variant: no rows); users share only within a variant.
    plans = _variant_plans(model, n, filters)
    variant_of = np.zeros(len(ids), dtype=np.int64)
    if model.experiment is not None and len(ids):
        variant_of = assign_many(model.experiment, ids).astype(np.int64)
        keys = np.where(keys >= 0, keys * len(plans) + variant_of, -1)
    # Each distinct answer is kept once; users point at theirs, and the rows are gathered in
    # one vectorised step (users sharing a key share an answer).
    columns: Columns = ([], [], [], [])
    lengths_list: list[int] = []
    answer_of = np.empty(len(ids), dtype=np.int64)
    shared: dict[int, int] = {}
    # Where a shared answer reminds its users of their one item (the row whose reason each
    # user gets dated on their own), by answer; -1: no such row.
    reminder_at: dict[int, int] = {}
    for position, (user_id, user, key, variant) in enumerate(
        zip(ids.tolist(), users.tolist(), keys.tolist(), variant_of.tolist(), strict=True)
    ):
        found = shared.get(key, -1) if key >= 0 else -1
        if found < 0:
            found = len(lengths_list)
            plan = plans[variant]
            answered: Columns = ([], [], [], [])
            if not plan.holdout:
                answered = answer_columns(plan.model, user, user_id, plan.n, plan.filters, now)
            item_ids, scores, sources, reasons = answered
            columns[0].extend(item_ids)
            columns[1].extend(scores)
            columns[2].extend(sources)
            columns[3].extend(reasons)
            lengths_list.append(len(item_ids))
            if key >= 0:
                shared[key] = found
                reminder_at[found] = _reminder_row(sources)
        answer_of[position] = found
    lengths = np.array(lengths_list, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    counts = lengths[answer_of] if len(ids) else np.zeros(0, dtype=np.int64)
    total = int(counts.sum())
    # Row r of the output is row `offset` of its user's answer.
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = pa.array(np.repeat(starts[answer_of], counts) + offset)
    table = pa.table(
        {
            "user_id": pa.array(np.repeat(ids, counts), type=_id_type(model.users.dtype)),
            "rank": pa.array((offset + 1).astype(np.int16)),
            "item_id": pa.array(columns[0], type=_id_type(model.items.dtype)).take(rows),
            "score": pa.array(columns[1], type=pa.float64()).take(rows),
            # Few distinct texts over many rows: dictionary-encoded, which keeps the tables
            # that travel from the workers and the file small (pandas reads categoricals).
            "source": _texts(columns[2]).take(rows),
            "reason": _reasons(model, columns[3], rows, share, answer_of, counts, reminder_at, now),
            "model_version": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(total, dtype=np.int32)), pa.array([model.version])
            ),
        }
    )
    if model.experiment is not None:
        names = pa.array([v.name for v in model.experiment.variants], pa.string())
        codes = pa.array(variant_of.repeat(counts).astype(np.int32))
        table = table.append_column("variant", pa.DictionaryArray.from_arrays(codes, names))
    if with_tier:
        # The tier codes serving loaded, per user, repeated over the user's rows.
        tier = np.where(users >= 0, model.user_tier[np.maximum(users, 0)], -1).repeat(counts)
        codes = pa.array(tier.astype(np.int32), mask=tier < 0)
        table = table.append_column(
            "tier", pa.DictionaryArray.from_arrays(codes, pa.array(list(TIERS)))
        )
    return table


@dataclass(frozen=True)
class Sharing:
    """Which users share one list, and what dates each one's reminder reason.

    `keys[i]` is shared by users who get the same list, or -1 (answered alone); `kind[i]`
    (0 view, 1 favourite, 2 cart) and `dated[i]` say how user i's reminder of their one item
    reads ("in your cart since Tuesday"): the one line that differs between them.
    """

    keys: np.ndarray
    kind: np.ndarray
    dated: np.ndarray


def share_keys(
    model: ServedModel, users: np.ndarray, user_ids: np.ndarray, now: int | None = None
) -> np.ndarray:
    """Per user, a key shared by users who must get the same list, or -1 (answer alone)."""
    return sharing(model, users, user_ids, now).keys


@dataclass(frozen=True)
class _Plan:
    """How one variant answers: its view of the model, list length and resolved filters."""

    model: ServedModel
    n: int
    filters: Filters
    holdout: bool


def _variant_plans(model: ServedModel, n: int, filters: Filters) -> list[_Plan]:
    """One plan per variant of the running experiment (one plan when there is none)."""
    if model.experiment is None:
        return [_Plan(model, n, filters.resolved(model.serving), False)]
    plans = []
    for variant in model.experiment.variants:
        view = model.variants[variant.name]
        length = min(n, variant.n) if variant.n is not None else n
        plans.append(_Plan(view, length, filters.resolved(view.serving), variant.holdout))
    return plans


def _reminder_row(sources: list[str]) -> int:
    """The row of a one-item user's answer that reminds them of their item (-1: none)."""
    for position, source in enumerate(sources):
        if source == "reminder":
            return position
    return -1


def _reasons(
    model: ServedModel,
    texts: list[str],
    rows: pa.Array,
    share: Sharing,
    answer_of: np.ndarray,
    counts: np.ndarray,
    reminder_at: dict[int, int],
    now: int,
) -> pa.Array:
    """The reason column: each answer's texts, with every sharing user's own reminder date."""
    reasons = _texts(texts).take(rows)
    if not reminder_at:
        return reasons
    offset = np.array([reminder_at.get(a, -1) for a in answer_of.tolist()], dtype=np.int64)
    users = np.flatnonzero((share.keys >= 0) & (offset >= 0))
    if len(users) == 0:
        return reasons
    out_rows = (np.cumsum(counts) - counts)[users] + offset[users]
    zone = model.manifest.get("timezone") or "UTC"
    # Patched in the dictionary encoding: new texts join the dictionary, rows point at them.
    dictionary = reasons.dictionary.to_pylist()
    position = {text: i for i, text in enumerate(dictionary)}
    indices = reasons.indices.to_numpy(zero_copy_only=False).copy()
    words: dict[tuple[int, int], int] = {}
    kinds, dated = share.kind[users].tolist(), share.dated[users]
    # Reasons read in the shop's calendar days: users dated on one local day share the text.
    local = pd.to_datetime(dated, unit="s", utc=True).tz_convert(zone).tz_localize(None)
    days = local.normalize().to_numpy().astype("datetime64[D]").astype(np.int64).tolist()
    for row, kind, when, day in zip(out_rows.tolist(), kinds, dated.tolist(), days, strict=True):
        code = words.get((kind, day))
        if code is None:
            text = reason("reminder", kind=_KINDS[kind], day=day_words(when, now, zone))
            code = position.get(text, -1)
            if code < 0:
                code = position[text] = len(dictionary)
                dictionary.append(text)
            words[(kind, day)] = code
        indices[row] = code
    patched = pa.DictionaryArray.from_arrays(
        pa.array(indices, type=reasons.indices.type), pa.array(dictionary, pa.string())
    )
    # Encoded afresh, in order of appearance (unused texts dropped), as every other chunk is.
    return patched.dictionary_decode().dictionary_encode()


def sharing(
    model: ServedModel, users: np.ndarray, user_ids: np.ndarray, now: int | None = None
) -> Sharing:
    """Who shares a list: known users whose history is one item, never bought.

    Their ALS candidates must be the item's list; the key is (item, carted?, favourited?,
    segment). Everything their list depends on is then the same: neighbours and complements of
    the one item (its weight cancels in scaling), the item itself as a reminder, no due
    repurchases, nothing bought to leave out. Only the reminder's date differs.
    """
    keys = np.full(len(users), -1, dtype=np.int64)
    kinds = np.zeros(len(users), dtype=np.int8)
    dates = np.full(len(users), -1, dtype=np.int64)
    found = Sharing(keys, kinds, dates)
    known = np.flatnonzero(users >= 0)
    if len(known) == 0:
        return found
    cells = None
    if model.ranker is not None and model.ranker_min_items < 2:
        # The learned ranker orders one-item users too, and reads more of them than the blend:
        # how many events, views, the last event, their tier, and days since the item was
        # touched (a continuous value). Users alike in all but the days share a list when
        # their days fall between the same two thresholds of the ranker's trees.
        cells = _day_cells(model) if now is not None else None
        if cells is None:
            return found
    history = model.blender.strategies.history
    rows = users[known]
    starts, ends = history.indptr[rows], history.indptr[rows + 1]
    lengths = ends - starts
    has = lengths > 0
    known, rows, starts, lengths = known[has], rows[has], starts[has], lengths[has]
    if len(known) == 0:
        return found
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    first = history.items[starts].astype(np.int64)
    row_starts = np.cumsum(lengths) - lengths
    events = history.events[offsets]
    other = np.add.reduceat(history.items[offsets] != np.repeat(first, lengths), row_starts)
    bought = np.add.reduceat(events == _PURCHASE, row_starts)
    carted = np.add.reduceat(events == _CART, row_starts) > 0
    saved = np.add.reduceat(events == _FAVOURITE, row_starts) > 0
    ok = (other == 0) & (bought == 0)
    candidates = model.blender.strategies.candidates
    if candidates is not None:
        ok &= candidates.user_slot[rows] == -1 - first
    segments = np.full(len(known), -1, dtype=np.int64)
    if model.segment_users is not None:
        where = model.segment_users.index(user_ids[known])
        segments = np.where(where >= 0, model.segment_codes[np.maximum(where, 0)], -1)
    n_segments = len(model.segment_labels) + 1
    viewed = np.add.reduceat(events == _VIEW, row_starts) > 0
    times = history.timestamps[offsets]
    # 3: no reminder: no interest at all (a return, say), or none since the reminder
    # horizon before `now`; such users never share the list of users who get one.
    kind = np.where(carted, 2, np.where(saved, 1, np.where(viewed, 0, 3)))
    if now is not None:
        horizon = now - int(model.blender.config.reminder_max_days * 86_400)
        interest = (events == _VIEW) | (events == _CART) | (events == _FAVOURITE)
        last_interest = np.maximum.reduceat(np.where(interest, times, -1), row_starts)
        kind = np.where(last_interest >= horizon, kind, 3)
    key = (first * 4 + kind) * n_segments + segments + 1
    if cells is not None:
        assert now is not None
        ends = row_starts + lengths - 1
        # The days as the features hold them (float32), compared in double as LightGBM does;
        # 0 days on its own (LightGBM's zero threshold lies just above it).
        days = ((now - times[ends]) / 86_400.0).astype(np.float32).astype(np.float64)
        cell = np.where(days == 0, -1, np.searchsorted(cells, days, side="left"))
        views = np.add.reduceat(events == _VIEW, row_starts)
        ok &= lengths <= HISTORY_TAIL  # the features read a long history's tail alone
        alike = [key, model.user_tier[rows], lengths, views, events[ends], cell]
        key = np.full(len(known), -1, dtype=np.int64)
        key[ok] = _row_keys([np.asarray(column, dtype=np.int64)[ok] for column in alike])
    keys[known[ok]] = key[ok]
    # The reminder is dated as serving dates it: by the first cart, else the first
    # favourite, else the last view.
    never = np.iinfo(np.int64).max
    first_cart = np.minimum.reduceat(np.where(events == _CART, times, never), row_starts)
    first_saved = np.minimum.reduceat(np.where(events == _FAVOURITE, times, never), row_starts)
    last_view = np.maximum.reduceat(np.where(events == _VIEW, times, -1), row_starts)
    kinds[known[ok]] = kind[ok]
    dates[known[ok]] = np.where(carted, first_cart, np.where(saved, first_saved, last_view))[ok]
    return found


def _row_keys(columns: list[np.ndarray]) -> np.ndarray:
    """One non-negative key per row of these integer columns, equal where the rows are."""
    if len(columns[0]) == 0:
        return np.zeros(0, dtype=np.int64)
    lows = [int(c.min()) for c in columns]
    widths = [(int(c.max()) - low).bit_length() for c, low in zip(columns, lows, strict=True)]
    if sum(widths) > 62:
        # Too wide to pack into one integer: number the distinct rows instead (slower).
        inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1]
        return np.asarray(inverse, dtype=np.int64).ravel()
    packed = np.zeros(len(columns[0]), dtype=np.int64)
    for column, low, width in zip(columns, lows, widths, strict=True):
        packed = (packed << width) | (column - low)
    return packed


def _day_cells(model: ServedModel) -> np.ndarray | None:
    """The ranker's thresholds on days since the last event (None: users cannot share)."""
    assert model.ranker is not None
    return model.ranker.split_points(("days_since_touched", "days_since_active"))


def export(
    models: str | Path,
    out: str | Path,
    n: int = 20,
    *,
    users: str | Path | Sequence[Any] | None = None,
    fmt: str | None = None,
    filters: Filters | None = None,
    segment: str | None = None,
    now: int | None = None,
    workers: int | None = None,
    chunk_size: int = 20_000,
    progress: bool = True,
    with_tier: bool = False,
) -> ExportSummary:
    """Write every user's top-n list (or those of `users`) to `out`; return a summary.

    `users` is a file of ids (one per line, or a `user_id` column in CSV/Parquet) or a list;
    by default every user the model knows. `with_tier` adds each user's portrait tier. The
    file appears under its name only when complete.
    """
    started = time.perf_counter()
    phases: dict[str, float] = {}
    out = Path(out)
    fmt = _format_of(out, fmt)
    if chunk_size < 1:
        raise ExportError(f"chunk_size must be at least 1 (got {chunk_size})")
    filters = filters or Filters()
    tmp = _writable_temp(out)
    try:
        model = ServedModel.load(Path(models))
        n = check_n(n, model.serving.max_n)
        phases["load model"] = time.perf_counter() - started
        mark = time.perf_counter()
        ids = export_user_ids(model, users, segment)
        if users is None and segment is None:
            indices = np.arange(len(ids), dtype=np.int64)  # the model's own users, in order
        else:
            indices = model.users.index(ids).astype(np.int64)
        unknown = int((indices < 0).sum())
        clock = model.now() if now is None else int(now)
        order = grouped_order(model, ids, indices, clock)
        ids = ids[order]
        phases["users"] = time.perf_counter() - mark
        mark = time.perf_counter()
        options = _Options(n, filters, clock, with_tier)
        rows, by_source = _write_all(model, ids, options, fmt, tmp, workers, chunk_size, progress)
        phases["recommend + write"] = time.perf_counter() - mark
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    by_variant: dict[str, int] = {}
    held_out = 0
    if model.experiment is not None:
        counts = np.bincount(
            assign_many(model.experiment, ids), minlength=len(model.experiment.variants)
        )
        for variant, count in zip(model.experiment.variants, counts.tolist(), strict=True):
            by_variant[variant.name] = count
            held_out += count if variant.holdout else 0
    return ExportSummary(
        path=out.resolve(),
        format=fmt,
        model_version=model.version,
        users=len(ids),
        unknown_users=unknown,
        rows=rows,
        by_source=by_source,
        seconds=time.perf_counter() - started,
        phases=phases,
        by_variant=by_variant,
        held_out_users=held_out,
    )


def export_profiles(models: str | Path, out: str | Path, fmt: str | None = None) -> Path:
    """Write every user's portrait to `out` (Parquet, CSV or JSON lines); return its path."""
    out = Path(out)
    fmt = _format_of(out, fmt)
    tmp = _writable_temp(out)
    try:
        model = ServedModel.load(Path(models))
        if model.portraits is None:
            raise ExportError(
                f"{model.path}: this model has no portraits (written by an older recsys); "
                "run `recsys train` again"
            )
        with _Writer(tmp, fmt, model.portraits.schema) as writer:
            writer.write(model.portraits)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out.resolve()


def read_user_ids(path: str | Path, id_type: str) -> np.ndarray:
    """Read a file of user ids: Parquet or CSV with a `user_id` (or `user`, `id`) column, or
    plain text with one id per line. Whole-number models need whole-number ids."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: users file not found")
    try:
        if path.suffix == ".parquet":
            frame = pq.read_table(path).to_pandas()
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, header=None)
            if len(frame) and str(frame.iloc[0, 0]).strip() in ("user_id", "user", "id"):
                frame.columns = [str(v).strip() for v in frame.iloc[0]]
                frame = frame.iloc[1:].reset_index(drop=True)
            else:
                frame.columns = ["user_id", *map(str, frame.columns[1:])]
    except (OSError, ValueError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: cannot be read as a users file ({exc})") from None
    column = next((c for c in ("user_id", "user", "id") if c in frame.columns), None)
    if column is None:
        raise ExportError(
            f"{path}: no user_id column (columns: {list(frame.columns)}); name the column "
            "user_id, or write one id per line"
        )
    values = frame[column]
    header_rows = 1 if path.suffix != ".parquet" and column in ("user_id", "user", "id") else 0
    if id_type == "int64":
        numbers = pd.to_numeric(values, errors="coerce")
        whole = numbers.notna() & (numbers == np.floor(numbers.fillna(0)))
        if not whole.all():
            row = int(np.flatnonzero(~whole.to_numpy())[0])
            raise ExportError(
                f"{path}: row {row + 1 + header_rows}, column {column!r}: {values.iloc[row]!r} "
                f"is not a whole number, and this model's user ids are "
                f"({int((~whole).sum())} such values); fix the file"
            )
        return numbers.astype(np.int64).to_numpy()
    return values.astype(str).str.strip().to_numpy(dtype=object)


def export_user_ids(model: ServedModel, users: Any, segment: str | None) -> np.ndarray:
    """The ids an export answers: `users` (a file or a list; default every known user),
    each once, limited to a segment if one is named."""
    if users is None:
        ids = model.users.ids
        if segment is None:
            return np.asarray(ids)  # distinct already
    elif isinstance(users, str | Path):
        ids = read_user_ids(users, model.users.dtype)
    else:
        ids = np.asarray(list(users), dtype=np.int64 if model.users.dtype == "int64" else object)
    if len(ids):
        ids = pd.unique(pd.Series(ids)).astype(ids.dtype)  # each user once, first place kept
    if segment is not None:
        # A label ("region=north") or, when that is unambiguous, its value ("north").
        matches = [
            code
            for code, label in enumerate(model.segment_labels)
            if segment in (label, label.split("=", 1)[-1])
        ]
        if len(matches) != 1:
            raise ExportError(
                f"segment {segment!r} is not one of this model's segments "
                f"({model.segment_labels or 'none: set serving.segment_by and retrain'})"
            )
        assert model.segment_users is not None
        code = matches[0]
        where = model.segment_users.index(ids)
        in_segment = (where >= 0) & (model.segment_codes[np.maximum(where, 0)] == code)
        ids = ids[in_segment]
    return np.asarray(ids)


def grouped_order(
    model: ServedModel, ids: np.ndarray, indices: np.ndarray, now: int | None = None
) -> np.ndarray:
    """An order that puts users sharing a list next to each other (so one chunk shares).

    Users answered alone come first: their chunks are the slow ones, and a run that ends on
    quick chunks leaves no worker idle while another finishes a long one.
    """
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    # Keys of -1 (answered alone) sort first, in input order.
    return np.argsort(share_keys(model, indices, ids, now), kind="stable")


# The model of the export in progress, inherited by forked workers (no copy, no reload).
_WORKER_MODEL: ServedModel | None = None


@dataclass(frozen=True)
class _Options:
    """What every chunk of one export is answered with."""

    n: int
    filters: Filters
    now: int
    with_tier: bool


def _work(task: tuple[np.ndarray, _Options]) -> pa.Table:
    ids, o = task
    assert _WORKER_MODEL is not None
    return recommend_chunk(_WORKER_MODEL, ids, o.n, o.filters, o.now, o.with_tier)


def _write_all(
    model: ServedModel,
    ids: np.ndarray,
    options: _Options,
    fmt: str,
    tmp: Path,
    workers: int | None,
    chunk_size: int,
    progress: bool,
) -> tuple[int, dict[str, int]]:
    from tqdm import tqdm

    global _WORKER_MODEL
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    tasks = [(chunk, options) for chunk in chunks]
    workers = min(workers or os.cpu_count() or 1, max(len(chunks), 1))
    rows = 0
    by_source: Counter[str] = Counter()
    schema = recommend_chunk(
        model, ids[:0], options.n, options.filters, options.now, options.with_tier
    ).schema
    bar = tqdm(total=len(ids), unit="users", disable=not progress, desc="export")
    with _Writer(tmp, fmt, schema) as writer:
        _WORKER_MODEL = model
        try:
            for chunk, table in zip(chunks, _results(tasks, workers), strict=True):
                writer.write(table)
                rows += table.num_rows
                by_source.update(_counts(table.column("source")))
                bar.update(len(chunk))
        finally:
            _WORKER_MODEL = None
            bar.close()
    return rows, dict(by_source)


def _results(tasks: list[tuple[np.ndarray, _Options]], workers: int) -> Iterator[pa.Table]:
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(_work, tasks)
        return
    # fork: workers inherit the loaded model's memory copy-on-write instead of loading it.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_work, tasks)


def _counts(column: pa.ChunkedArray) -> dict[str, int]:
    counted = column.value_counts()
    return {
        str(v): int(c)
        for v, c in zip(
            counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True
        )
    }


class _Writer:
    """Streams tables into one file of the chosen format."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema) -> None:
        self.path, self.fmt, self.schema = path, fmt, schema
        self._parquet: pq.ParquetWriter | None = None
        self._csv: pacsv.CSVWriter | None = None
        self._file: Any = None

    def __enter__(self) -> _Writer:
        if self.fmt == "parquet":
            # zstd: smaller than snappy here and faster to write (0.06 against 0.08 s a chunk).
            # Text columns stay dictionary-encoded on disk, but without the Arrow schema stored
            # beside them the file's schema is plain strings: the schema Spark's export writes.
            self._parquet = pq.ParquetWriter(
                self.path, self.schema, compression="zstd", store_schema=False
            )
        elif self.fmt == "csv":
            self._csv = pacsv.CSVWriter(str(self.path), self.schema)
        else:
            self._file = open(self.path, "w", encoding="utf-8")  # closed in __exit__
        return self

    def write(self, table: pa.Table) -> None:
        """Append a table's rows."""
        if self._parquet is not None:
            self._parquet.write_table(table)
        elif self._csv is not None:
            self._csv.write_table(table)
        else:
            for row in table.to_pylist():
                self._file.write(json.dumps(row, ensure_ascii=False) + "\n")

    def __exit__(self, *exc: object) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv is not None:
            self._csv.close()
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def _format_of(out: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS.values():
            raise ExportError(f"format {fmt!r} is not one of {sorted(set(FORMATS.values()))}")
        return fmt
    found = FORMATS.get(out.suffix.lower())
    if found is None:
        raise ExportError(
            f"{out}: cannot tell the format from the suffix {out.suffix!r}; use .parquet, .csv "
            "or .jsonl, or pass the format"
        )
    return found


def _writable_temp(out: Path) -> Path:
    """Create the temporary file the export writes to, next to `out` (so a rename is atomic)."""
    folder = out.parent
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; give a file name such as {out / 'recs.parquet'}")
    if not folder.is_dir():
        raise ExportError(f"{folder}: no such folder for the output {out.name}; create it first")
    _remove_dead_temps(folder, out.name)
    tmp = folder / f".{out.name}.tmp-{os.getpid()}"
    try:
        tmp.touch()
    except OSError as exc:
        raise ExportError(f"{out}: cannot be written ({exc.strerror})") from None
    return tmp


def _remove_dead_temps(folder: Path, name: str) -> None:
    """Remove the temporary files of killed exports to the same output (their process is
    gone); a running export's file is left alone."""
    for stale in folder.glob(f".{name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            stale.unlink()
            log.info("removed %s, left by a killed export (process %s)", stale, pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _texts(values: Sequence[str]) -> pa.Array:
    return pa.array(values, type=pa.string()).dictionary_encode()


def _id_type(dtype: str) -> pa.DataType:
    return pa.int64() if dtype == "int64" else pa.string()


__all__ = [
    "COLUMNS",
    "ExportError",
    "ExportSummary",
    "export",
    "export_profiles",
    "read_user_ids",
    "recommend_chunk",
    "share_keys",
]
