"""Loading the event log on Spark with the single-machine loader's own rules, row for row.

Spark only reads and moves rows; every rule runs in `recsys.ingest._map_and_validate`, called
on each partition through `mapInPandas`, so the canonical columns and the reasons are those of
`recsys.ingest.load_events` by construction. Three things in that function look at a whole
column rather than one row, and are decided for the whole log here before it runs:

- the type each CSV column is read as (pyarrow infers it per file, falling back to text) and
  the dtype a column gets when several files are concatenated: a first "profile" pass infers
  types per partition and combines them as pyarrow and `pd.concat` would;
- whether an id column is integers or text (`normalize_ids`): a partition whose ids all look
  like integers gets one extra text row before the call, so that it reads them as text when
  the whole log is text, and the row is dropped after;
- exact duplicates, which need every earlier row: the per-partition call keeps duplicates and
  a window over the same key ordered by (file, row) marks them afterwards.

Row numbers: each file is read on its own (`spark.read.text` for CSV, so one line is one row
like pyarrow's reader, which rejects newlines inside values; `spark.read.parquet` in file
order) and numbered with `monotonically_increasing_id` plus per-partition offsets from one
count job, as `zipWithIndex` does but without moving rows through Python. This relies on Spark
keeping a single file's splits in offset order, which it does. Cost: the input is scanned three
times (count, profile, validate); the validated rows are cached once.

Rejected rows are collected to the driver and written by `recsys.ingest.write_rejects` into
the same single CSV as the local loader: fine while rejects are a small share of the log. For
logs with many rejects, write `SparkEventLog.rejects` as a folder instead.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recsys.config import Config, EventsSource
from recsys.errors import EventsSchemaError, InputFileError, SchemaError
from recsys.ingest import (
    EventLog,
    LoadReport,
    _map_and_validate,
    _names,
    _raise_first_fatal,
    raw_text_columns,
    remove_stale_rejects,
    write_rejects,
)
from recsys.schema import EVENT_TYPES, REASON_CODES, REASONS, EventType
from recsys.tables import file_label as report_label
from recsys.tables import normalize_ids
from recsys.times import format_instant

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Not a whole number and not blank, so normalize_ids reads a column holding it as text.
_TEXT_MARK = "x"
_NUMERIC_ARROW = {"int64", "double"}
# The dtypes of the canonical columns that do not depend on the log (recsys.ingest.EventLog).
_FIXED_DTYPES = {
    "event": "int8",
    "timestamp": "int64",
    "quantity": "float64",
    "price": "float64",
}
_PARQUET_OK = ("byte", "short", "int", "bigint", "long", "float", "double", "string", "boolean")


@dataclass
class SparkEventLog:
    """Accepted events, rejected rows and the load report of an event log read on Spark."""

    # accepted rows in the canonical columns of recsys.ingest.EventLog.frame.
    frame: DataFrame
    # rejected rows: reason, file, row, then the raw columns (as recsys.ingest.write_rejects).
    rejects: DataFrame
    report: LoadReport
    # the accepted rows with their place in the log first: __file (index), __row (1-based).
    positioned: DataFrame
    timezone: str = "UTC"


@dataclass(frozen=True)
class _FileSpec:
    """How one input file is read: its format, header and raw column names."""

    index: int
    name: str
    kind: str
    # raw column name -> the Spark column carrying it (Parquet) or the CSV column name.
    columns: dict[str, str]
    header: str = ""


def load_events_spark(
    config: Config,
    spark: SparkSession,
    *,
    on_error: str | None = None,
    rejects_dir: Path | None = None,
) -> SparkEventLog:
    """Read, map and validate the configured event log on Spark, as `load_events` does."""
    from pyspark.sql import functions as F

    started = time.perf_counter()
    src = config.events
    policy = on_error or config.validation.on_error
    if policy not in ("strict", "quarantine"):
        raise ValueError(f"on_error must be 'strict' or 'quarantine' (got {policy!r})")
    if src.encoding.lower().replace("-", "") != "utf8":
        raise InputFileError(
            f"{_names(src.path)}: the Spark loader reads UTF-8 only (events.encoding is "
            f"{src.encoding!r}); re-save the files as UTF-8 or use the single-machine loader"
        )
    required, optional, text = _wanted_columns(src)
    specs, parts, counts = [], [], []
    for i, path in enumerate(src.path):
        spec, rows, part = _read_file(spark, src, i, path, required, optional)
        specs.append(spec)
        counts.append(rows)
        parts.append(part)
    files: dict[str, int] = {}
    for path, n in zip(src.path, counts, strict=True):
        files[report_label(path, files)] = n
    report = LoadReport(source="events", files=files, rows_read=sum(counts))
    if report.rows_read == 0:
        raise EventsSchemaError(
            f"{_names(src.path)}: the event log has no data rows; nothing to train on"
        )
    data = parts[0]
    for part in parts[1:]:
        data = data.unionByName(part, allowMissingColumns=True)

    raw_names = list(dict.fromkeys(c for s in specs for c in s.columns))
    plan = _plan(data, specs, src, set(text))
    validated = data.mapInPandas(
        _validator(specs, plan, raw_names, config), _output_schema(plan, raw_names, src)
    )
    key = ["user", "item", "event", "timestamp", "quantity", "price"]
    key += ["session"] if src.columns.session in plan.dtypes else []
    if config.validation.duplicates == "drop":
        from pyspark.sql import Window

        ok = F.col("__reason") == 0
        first = Window.partitionBy(*key, ok).orderBy("__file", "__row")
        dup_code = REASON_CODES.index("duplicate") + 1
        validated = validated.withColumn(
            "__reason",
            F.when(ok & (F.row_number().over(first) > 1), F.lit(dup_code))
            .otherwise(F.col("__reason"))
            .cast("byte"),
        )
    validated = validated.cache()

    totals = _totals(validated)
    rejected = {
        code: totals[f"reason{i}"]
        for i, code in enumerate(REASON_CODES, start=1)
        if totals[f"reason{i}"]
    }
    if policy == "strict":
        _raise_strict(validated, rejected, raw_names, src)
    accepted = validated.filter(F.col("__reason") == 0)
    canonical = [c for c in _canonical(src, plan) if c in validated.columns]
    positioned = accepted.select("__file", "__row", *canonical)
    frame = positioned.drop("__file", "__row")
    _fill_report(report, totals, rejected, config.timezone)
    reason_label = F.element_at(
        F.array(*[F.lit(c) for c in REASON_CODES]), F.col("__reason").cast("int")
    )
    file_label = F.element_at(
        F.array(*[F.lit(s.name) for s in specs]), (F.col("__file") + 1).cast("int")
    )
    bad = validated.filter(F.col("__reason") > 0)
    rejects = bad.select(
        reason_label.alias("rejected_reason" if "reason" in raw_names else "reason"),
        file_label.alias("rejected_file" if "file" in raw_names else "file"),
        F.col("__row").alias("rejected_row" if "row" in raw_names else "row"),
        *[F.col(f"_raw{j}").alias(name) for j, name in enumerate(raw_names)],
    )
    target = rejects_dir if rejects_dir is not None else config.output.rejects
    if report.rejected_total:
        report.rejects_path = str(_write_rejects(bad, raw_names, src, target))
    else:
        remove_stale_rejects(target / "events.rejects.csv")
    if report.accepted == 0:
        reasons_text = ", ".join(f"{k} {v:,}" for k, v in rejected.items())
        raise EventsSchemaError(
            f"{_names(src.path)}: no row was accepted ({report.rows_read:,} rows: {reasons_text}); "
            f"see {report.rejects_path} and check the column names and event types in the config"
        )
    report.seconds = round(time.perf_counter() - started, 3)
    report.check()
    return SparkEventLog(
        frame=frame,
        rejects=rejects,
        report=report,
        positioned=positioned,
        timezone=config.timezone,
    )


def to_event_log(spark_log: SparkEventLog) -> EventLog:
    """Collect the accepted rows as `load_events` returns them: file-then-row order, its dtypes.

    The single-machine frame keeps the log's order (UserHistory breaks ties in time by it), so
    the rows are sorted by their place in the log on Spark and collected in that order.
    """
    names = spark_log.frame.columns
    spark_types = dict(spark_log.frame.dtypes)
    table = spark_log.positioned.orderBy("__file", "__row").select(*names).toArrow()
    frame = pd.DataFrame(
        {name: _local_column(name, table.column(name), spark_types[name]) for name in names}
    )
    return EventLog(frame=frame, report=spark_log.report, timezone=spark_log.timezone)


def _local_column(name: str, values: pa.ChunkedArray, spark_type: str) -> pd.Series:
    """One collected column in the dtype recsys.ingest._map_and_validate gives it."""
    if name in ("user", "item", "session", "category"):
        if spark_type == "string":
            return values.to_pandas().astype("str")
        ids = values.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        # Session ids stay nullable; the others are plain int64 (recsys.ingest._plain_ids).
        return ids if name == "session" else ids.fillna(0).astype("int64")
    return values.to_pandas().astype(_FIXED_DTYPES[name])


def _wanted_columns(src: EventsSource) -> tuple[list[str], list[str], list[str]]:
    """Return (required, optional, text) raw columns, as recsys.ingest._read_sources asks."""
    # A copy of _read_sources' lists: the two must name the same columns in the same order.
    cols = src.columns
    required = [cols.user, cols.item, cols.timestamp] + ([cols.event] if cols.event else [])
    required += [r.column for r in src.return_rules]
    optional = [c for c in (cols.quantity, cols.price, cols.session, cols.category) if c]
    optional += [r.column for r in src.skip_rules]
    text = raw_text_columns(src)
    return list(dict.fromkeys(required)), list(dict.fromkeys(optional)), text


def _read_file(
    spark: SparkSession,
    src: EventsSource,
    index: int,
    path: Path,
    required: list[str],
    optional: list[str],
) -> tuple[_FileSpec, int, DataFrame]:
    """Return one file's spec, its number of data rows and its rows with file index and row."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    uri = str(path)
    kind = src.format if src.format != "auto" else _kind_from_name(path)
    try:
        source = spark.read.parquet(uri) if kind == "parquet" else spark.read.text(uri)
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc):
            raise InputFileError(f"{path}: events file not found") from None
        raise
    if kind == "csv":
        # pyarrow's reader skips empty lines; they get no row number there either.
        source = source.filter(F.length("value") > 0)
    numbered, total, first = _number_rows(spark, source)
    if kind == "csv":
        if total == 0:
            raise InputFileError(f"{path}: events file is empty (0 bytes)")
        header = str(first)
        names = list(_parse_csv(header, [], None, None).column_names)
        rows = total - 1
    else:
        header, names, rows = "", list(source.columns), total
    wanted = _check_columns(path, names, required, optional, src)
    if kind == "parquet":
        types = dict(source.dtypes)
        for column in wanted:
            if types[column] not in _PARQUET_OK:
                raise SchemaError(
                    f"{path.name}: column {column!r} is a Parquet {types[column]}; the Spark "
                    "loader reads numbers and text only (Spark would change dates and times "
                    "to its session time zone): store epoch seconds or text, or use the "
                    "single-machine loader"
                )
        carried = {c: f"_f{index}c{j}" for j, c in enumerate(wanted)}
        part = numbered.select(
            F.lit(index).cast("int").alias("__file"),
            (F.col("__pos") + 1).alias("__row"),
            *[F.col(f"`{c}`").alias(carried[c]) for c in wanted],
        )
        spec = _FileSpec(index, path.name, kind, carried)
    else:
        part = numbered.filter(F.col("__pos") > 0).select(
            F.lit(index).cast("int").alias("__file"),
            F.col("__pos").alias("__row"),
            F.col("value").alias("__line"),
        )
        spec = _FileSpec(index, path.name, kind, {c: c for c in wanted}, header)
    return spec, rows, part


def _kind_from_name(path: Path) -> str:
    # The local loader also sniffs the first bytes of an unknown suffix; a URI may not be local.
    return "parquet" if path.suffix.lower() in {".parquet", ".pq", ".parq"} else "csv"


def _number_rows(spark: SparkSession, frame: DataFrame) -> tuple[DataFrame, int, Any]:
    """Add __pos, the 0-based position in the file; return it, the row count, the first value."""
    from pyspark.sql import functions as F

    first_column = frame.columns[0]
    tagged = frame.withColumn("__pid", F.spark_partition_id()).withColumn(
        "__mid", F.monotonically_increasing_id()
    )
    sizes = (
        tagged.groupBy("__pid")
        .agg(F.count("*").alias("n"), F.min_by(F.col(first_column), F.col("__mid")).alias("v"))
        .collect()
    )
    offsets, total, first = [], 0, None
    for row in sorted(sizes, key=lambda r: r["__pid"]):
        if total == 0 and row["n"]:
            first = row["v"]
        offsets.append((int(row["__pid"]), total))
        total += int(row["n"])
    if not offsets:
        return tagged.withColumn("__pos", F.lit(0).cast("long")), 0, None
    table = spark.createDataFrame(offsets, "__pid int, __offset long")
    # monotonically_increasing_id is the partition id in the upper 31 bits, the index below.
    within = F.col("__mid") - F.shiftleft(F.col("__pid").cast("long"), 33)
    numbered = tagged.join(F.broadcast(table), "__pid").withColumn(
        "__pos", F.col("__offset") + within
    )
    return numbered, total, first


def _check_columns(
    path: Path, names: list[str], required: list[str], optional: list[str], src: EventsSource
) -> list[str]:
    """Return the raw columns to read, raising as recsys.tables.read_columns does."""
    missing = [c for c in required if c not in names]
    if missing:
        raise SchemaError(
            f"{path.name}: missing required column {missing[0]!r} (columns found: {names}); "
            "set events.columns to the file's column names"
        )
    for rule in src.skip_rules:
        if rule.column not in names:
            raise SchemaError(
                f"{path.name}: missing column {rule.column!r} named by events.skip_rules; "
                "set the rule's column to one of the file's column names or drop the rule"
            )
    return list(dict.fromkeys([*required, *[c for c in optional if c in names]]))


def _parse_csv(
    header: str, lines: Sequence[str], wanted: list[str] | None, types: dict[str, Any] | None
) -> pa.Table:
    """Parse a header and some data lines with recsys.tables._read_csv's options."""
    body = "\n".join([header, *lines]).encode("utf-8") + b"\n"
    # One block, parsed on this thread: an Arrow worker thread must not hold the Python-owned
    # bytes when a Python worker exits (see recsys.modeldir's table reader: exit 134).
    read = pacsv.ReadOptions(block_size=max(len(body) + 1, 1 << 20), use_threads=False)
    convert = pacsv.ConvertOptions(
        include_columns=wanted or [],
        column_types=types or {},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        null_values=[""],
    )
    return pacsv.read_csv(io.BytesIO(body), read_options=read, convert_options=convert)


@dataclass(frozen=True)
class _Plan:
    """Decisions taken over the whole log before validation: types, dtypes, id kinds."""

    # (file index, raw column) -> the pyarrow type name a CSV column is read as.
    arrow: dict[tuple[int, str], str]
    # (file index, raw column) -> the pandas dtype of that column in that file.
    file_dtypes: dict[tuple[int, str], str]
    # raw column -> its pandas dtype once the files are concatenated.
    dtypes: dict[str, str]
    # raw id column -> True when normalize_ids reads the whole log's column as integers.
    int_ids: dict[str, bool]


def _file_frame(spec: _FileSpec, batch: pd.DataFrame, types: dict[str, Any]) -> pd.DataFrame:
    """Return one file's rows of a batch as read_columns returns them (CSV read with types)."""
    if spec.kind == "parquet":
        return pd.DataFrame({c: batch[s].reset_index(drop=True) for c, s in spec.columns.items()})
    table = _parse_csv(spec.header, batch["__line"].tolist(), list(spec.columns), types)
    return table.to_pandas()


def _plan(data: DataFrame, specs: list[_FileSpec], src: EventsSource, text: set[str]) -> _Plan:
    """Profile every partition and combine: types per file, dtypes across files, id kinds."""
    cols = src.columns
    ids = [c for c in (cols.user, cols.item, cols.session, cols.category) if c]
    by_index = {s.index: s for s in specs}

    def profile(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for batch in batches:
            for index, rows in batch.groupby("__file", sort=False):
                spec = by_index[int(index)]  # type: ignore[arg-type]
                frame, arrow = _profile_frame(spec, rows, text)
                yield pd.DataFrame(
                    {
                        "file": spec.index,
                        "column": list(frame.columns),
                        "arrow": [arrow[c] for c in frame.columns],
                        "dtype": [str(frame[c].dtype) for c in frame.columns],
                        "nulls": [int(frame[c].isna().sum()) for c in frame.columns],
                        "present": [int(frame[c].notna().sum()) for c in frame.columns],
                        "int_id": [
                            c in ids and isinstance(normalize_ids(frame[c]).dtype, pd.Int64Dtype)
                            for c in frame.columns
                        ],
                    }
                )

    schema = "file int, column string, arrow string, dtype string, nulls long, present long, "
    schema += "int_id boolean"
    rows = data.mapInPandas(profile, schema).collect()
    arrow: dict[tuple[int, str], str] = {}
    file_dtypes: dict[tuple[int, str], str] = {}
    for spec in specs:
        for column in spec.columns:
            mine = [r for r in rows if r["file"] == spec.index and r["column"] == column]
            has_null = any(r["nulls"] for r in mine)
            if spec.kind == "csv":
                kind = _combine_arrow({r["arrow"] for r in mine if r["arrow"] != "null"})
                arrow[spec.index, column] = kind
                sample = pa.array([None] if has_null else [], type=pa.type_for_alias(kind))
                file_dtypes[spec.index, column] = str(sample.to_pandas().dtype)
            else:
                file_dtypes[spec.index, column] = _combine_dtypes({r["dtype"] for r in mine})
    dtypes = {
        c: _combine_dtypes({d for (_, name), d in file_dtypes.items() if name == c})
        for c in dict.fromkeys(c for s in specs for c in s.columns)
    }
    int_ids = {}
    for column in ids:
        mine = [r for r in rows if r["column"] == column]
        present = [r for r in mine if r["present"]]
        int_ids[column] = all(r["int_id"] for r in (present or mine))
    return _Plan(arrow, file_dtypes, dtypes, int_ids)


def _profile_frame(
    spec: _FileSpec, rows: pd.DataFrame, text: set[str]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One file's rows of a batch with the types inferred for them alone (text columns text)."""
    if spec.kind == "parquet":
        frame = _file_frame(spec, rows, {})
        return frame, {str(c): str(frame[c].dtype) for c in frame.columns}
    wanted = list(spec.columns)
    types: dict[str, Any] = {c: pa.string() for c in wanted if c in text}
    table = _parse_csv(spec.header, rows["__line"].tolist(), wanted, types)
    return table.to_pandas(), {c: str(table.schema.field(c).type) for c in wanted}


def _combine_arrow(kinds: set[str]) -> str:
    """The type pyarrow infers for a column from the types it infers for its parts."""
    if not kinds:
        return "null"
    if len(kinds) == 1:
        return next(iter(kinds))
    # Integers and reals make reals; any other mix leaves only text to hold them all.
    return "double" if kinds <= _NUMERIC_ARROW else "string"


def _combine_dtypes(dtypes: set[str]) -> str:
    """The dtype pd.concat gives to parts of these dtypes."""
    if len(dtypes) == 1:
        return next(iter(dtypes))
    kinds = [np.dtype(d) if d not in ("str", "string", "object") else None for d in dtypes]
    if all(k is not None and k.kind in "iuf" for k in kinds):
        return str(np.result_type(*[k for k in kinds if k is not None]))
    return "object"


def _canonical(src: EventsSource, plan: _Plan) -> list[str]:
    cols = src.columns
    names = ["user", "item", "event", "timestamp", "quantity", "price"]
    names += ["session"] if cols.session and cols.session in plan.dtypes else []
    names += ["category"] if cols.category and cols.category in plan.dtypes else []
    return names


def _output_schema(plan: _Plan, raw_names: list[str], src: EventsSource) -> str:
    """The Spark schema of validated rows: position, reason, canonical and raw columns."""
    cols = src.columns

    def id_type(column: str | None) -> str:
        return "bigint" if column and plan.int_ids.get(column) else "string"

    fields = ["__file int", "__row bigint", "__reason byte"]
    fields += [f"user {id_type(cols.user)}", f"item {id_type(cols.item)}", "event byte"]
    fields += ["timestamp bigint", "quantity double", "price double"]
    if "session" in _canonical(src, plan):
        fields.append(f"session {id_type(cols.session)}")
    if "category" in _canonical(src, plan):
        fields.append(f"category {id_type(cols.category)}")
    for j, name in enumerate(raw_names):
        fields.append(f"_raw{j} {_transport_type(plan.dtypes[name])}")
    return ", ".join(fields)


def _transport_type(dtype: str) -> str:
    if dtype in ("bool",):
        return "boolean"
    if dtype.startswith(("int", "uint")):
        return "bigint"
    if dtype.startswith("float"):
        return "double"
    return "string"


def _validator(specs: list[_FileSpec], plan: _Plan, raw_names: list[str], config: Config) -> Any:
    """The function mapInPandas runs on every partition: rows in, validated rows out."""
    src = config.events
    # Duplicates need earlier partitions' rows: they are marked by a window afterwards.
    rules = dataclasses.replace(config.validation, duplicates="keep")
    timezone = config.timezone
    by_index = {s.index: s for s in specs}
    text_ids = [c for c, is_int in plan.int_ids.items() if not is_int]
    canonical = _canonical(src, plan)

    def validate(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for batch in batches:
            if len(batch) == 0:
                continue
            frames = []
            for index, rows in batch.groupby("__file", sort=True):
                spec = by_index[int(index)]  # type: ignore[arg-type]
                types = {
                    c: pa.type_for_alias(plan.arrow[spec.index, c])
                    for c in spec.columns
                    if spec.kind == "csv"
                }
                frame = _file_frame(spec, rows, types)
                for column in frame.columns:
                    frame[column] = _as_dtype(frame[column], plan.file_dtypes[spec.index, column])
                frame["__file"] = np.int16(spec.index)
                frame["__row"] = rows["__row"].to_numpy(dtype=np.int64)
                frames.append(frame)
            raw = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            for column in raw_names:
                if column in raw:
                    raw[column] = _as_dtype(raw[column], plan.dtypes[column])
            yield _validate_rows(raw, src, rules, timezone, text_ids, canonical, raw_names)

    return validate


def _as_dtype(values: pd.Series, dtype: str) -> pd.Series:
    if str(values.dtype) == dtype:
        return values
    return values.astype(dtype)  # type: ignore[call-overload]


def _validate_rows(
    raw: pd.DataFrame,
    src: EventsSource,
    rules: Any,
    timezone: str,
    text_ids: list[str],
    canonical: list[str],
    raw_names: list[str],
) -> pd.DataFrame:
    """Run recsys.ingest._map_and_validate on one batch and lay its answer out as rows."""
    n = len(raw)
    padded = raw
    if text_ids:
        # One extra row with a text id makes normalize_ids read these columns as text, as it
        # does for the whole log; the row is dropped from every answer below.
        extra = raw.iloc[:1].copy()
        for column in text_ids:
            if column in extra:
                extra[column] = pd.Series([_TEXT_MARK], index=extra.index, dtype=object)
        padded = pd.concat([raw, extra], ignore_index=True)
    data, reasons = _map_and_validate(padded, src, rules, timezone)
    out = pd.DataFrame(
        {
            "__file": raw["__file"].to_numpy(dtype=np.int32),
            "__row": raw["__row"].to_numpy(dtype=np.int64),
            "__reason": reasons[:n],
        }
    )
    for name in canonical:
        column = data[name]
        values = column.iloc[:n] if isinstance(column, pd.Series) else column[:n]
        out[name] = pd.Series(values).reset_index(drop=True)
    for j, name in enumerate(raw_names):
        out[f"_raw{j}"] = _transport(raw[name]) if name in raw else None
    return out


def _transport(values: pd.Series) -> pd.Series:
    """Raw values as Arrow can carry them: numbers as they are, anything else as its text."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.reset_index(drop=True)
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return values.astype(object).where(values.notna(), None).reset_index(drop=True)
    # str() is what write_rejects' CSV and the strict message show of an object value.
    shown = [None if _missing(v) else str(v) for v in values]
    return pd.Series(shown, dtype=object)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _raise_strict(
    validated: DataFrame, rejected: dict[str, int], raw_names: list[str], src: EventsSource
) -> None:
    """Raise recsys.ingest's strict error, from the first row of each fatal reason present."""
    from pyspark.sql import functions as F

    fatal = [i for i, r in enumerate(REASONS, start=1) if r.fatal and r.code in rejected]
    if not fatal:
        return
    raws = [f"_raw{j}" for j in range(len(raw_names))]
    firsts = (
        validated.filter(F.col("__reason").isin(fatal))
        .groupBy("__reason")
        .agg(F.min(F.struct("__file", "__row", *raws)).alias("first"))
        .collect()
    )
    firsts.sort(key=lambda r: (r["first"]["__file"], r["first"]["__row"]))
    raw = pd.DataFrame(
        {name: [r["first"][f"_raw{j}"] for r in firsts] for j, name in enumerate(raw_names)}
    )
    raw["__file"] = [r["first"]["__file"] for r in firsts]
    raw["__row"] = [r["first"]["__row"] for r in firsts]
    reasons = np.asarray([r["__reason"] for r in firsts], dtype=np.int8)
    _raise_first_fatal(raw, reasons, rejected, src)


def _totals(validated: DataFrame) -> dict[str, Any]:
    """Count rows by reason and the accepted rows by event, users, items and times: one job."""
    from pyspark.sql import functions as F

    reason = F.col("__reason")
    ok = reason == 0

    def accepted(column: str) -> Any:
        return F.when(ok, F.col(column))

    row = validated.agg(
        *[F.count(F.when(reason == i, 1)).alias(f"reason{i}") for i in range(len(REASONS) + 1)],
        *[
            F.count(F.when(ok & (F.col("event") == i), 1)).alias(f"event{i}")
            for i in range(len(EVENT_TYPES))
        ],
        F.countDistinct(accepted("user")).alias("users"),
        F.countDistinct(accepted("item")).alias("items"),
        F.min(accepted("timestamp")).alias("first"),
        F.max(accepted("timestamp")).alias("last"),
    ).first()
    assert row is not None
    return row.asDict()


def _fill_report(
    report: LoadReport, totals: dict[str, Any], rejected: dict[str, int], tz: str
) -> None:
    """Fill in the counts as load_events does: accepted, by event, users, items, time span."""
    report.accepted = int(totals["reason0"])
    report.rejected = rejected
    report.returns = int(totals[f"event{int(EventType.RETURN)}"])
    report.by_event = {name: int(totals[f"event{i}"]) for i, name in enumerate(EVENT_TYPES)}
    report.users = int(totals["users"])
    report.items = int(totals["items"])
    if report.accepted:
        report.first_time = format_instant(int(totals["first"]), tz)
        report.last_time = format_instant(int(totals["last"]), tz)


def _write_rejects(bad: DataFrame, raw_names: list[str], src: EventsSource, target: Path) -> Path:
    """Collect the rejected rows in (file, row) order and write them as load_events does."""
    raws = [f"_raw{j}" for j in range(len(raw_names))]
    rows = bad.select("__file", "__row", "__reason", *raws).orderBy("__file", "__row").toPandas()
    raw = rows[raws].set_axis(raw_names, axis=1)
    raw["__file"] = rows["__file"].to_numpy(dtype=np.int64)
    raw["__row"] = rows["__row"].to_numpy(dtype=np.int64)
    labels = np.asarray(REASON_CODES)[rows["__reason"].to_numpy(dtype=np.int64) - 1]
    everything = np.ones(len(raw), dtype=bool)
    return write_rejects(raw, everything, labels, src.path, target / "events.rejects.csv")
