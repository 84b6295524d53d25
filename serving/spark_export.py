"""Batch export on Apache Spark: `recsys export`'s own chunk function, run on the executors.

Users are spread over Spark partitions; each executor's Python worker loads the published
model version once (from a path every executor can read) and answers its partitions with
`serving.export.recommend_chunk`, the pure function the single-machine export runs. The rows
are therefore the same, user for user. Output is Parquet in the export's columns, written by
Spark's committer into a folder that gets a `_SUCCESS` marker when complete; for a local path
the folder appears under its final name only then.

pyspark is imported only here, and only when a Spark export is asked for
(`pip install "recsys-shop[spark]"`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.answer import check_n
from recsys.filters import Filters
from recsys.served import ServedModel
from recsys.spark import spark_session
from serving.export import (
    ExportError,
    export_user_ids,
    grouped_order,
    recommend_chunk,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# One loaded model per Python worker process, keyed by its version folder: Spark reuses
# workers across tasks, so a model is read once per worker, not once per partition.
_LOADED: dict[str, ServedModel] = {}


@dataclass
class SparkExportSummary:
    """What a Spark export wrote."""

    path: str
    model_version: str
    users: int
    rows: int
    partitions: int
    seconds: float

    def format_text(self) -> str:
        """A short report for the terminal."""
        rate = self.users / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"exported {self.users:,} users, {self.rows:,} rows, on Spark ({self.partitions} "
            f"partitions) to {self.path} in {self.seconds:.1f} s, {rate:,.0f} users/s"
        )


def export_spark(
    models: str | Path,
    out: str,
    n: int = 20,
    *,
    users: str | Path | list[Any] | None = None,
    filters: Filters | None = None,
    now: int | None = None,
    partitions: int | None = None,
    spark: SparkSession | None = None,
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
) -> SparkExportSummary:
    """Write every user's top-n list (or those of `users`) to the Parquet folder `out`.

    `models` must be a path the executors can read too (a shared file system in a cluster).
    `filters`, `n` and `now` mean what they mean to `recsys export`; `partitions` defaults to
    Spark's default parallelism.
    """
    started = time.perf_counter()
    filters = filters or Filters()
    model = ServedModel.load(Path(models))
    n = check_n(n, model.serving.max_n)
    local = _local_path(out)
    if local is not None and local.exists():
        raise ExportError(f"{out}: already exists; remove it or choose another output folder")
    ids = export_user_ids(model, users, None)
    indices = model.users.index(ids).astype(np.int64)
    # Users that share a list are kept together, so that each partition shares as the
    # single-machine export's chunks do (the rows do not depend on it, the speed does).
    clock = model.now() if now is None else int(now)
    ids = ids[grouped_order(model, ids, indices, clock)]
    session = spark or spark_session(master, conf)
    count = partitions or session.sparkContext.defaultParallelism
    # Ranges of positions in that order: each partition is a run of neighbouring users.
    frame = pd.DataFrame({"position": np.arange(len(ids)), "user_id": ids})
    users_df = session.createDataFrame(frame).repartitionByRange(count, "position")
    version_dir = str(model.path.resolve())
    schema = _spark_schema(model)

    def answer(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        served = _LOADED.get(version_dir)
        if served is None:
            served = _LOADED[version_dir] = ServedModel.load(Path(version_dir))
        for batch in batches:
            table = recommend_chunk(served, batch["user_id"].to_numpy(), n, filters, clock)
            yield _plain_table(table).to_pandas()

    rows = users_df.mapInPandas(answer, schema=schema)
    target = out if local is None else str(local.with_name(f".{local.name}.tmp-{os.getpid()}"))
    try:
        rows.write.mode("error").parquet(target)
        if local is not None:
            os.replace(target, local)
    except BaseException:
        if local is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise
    written = session.read.parquet(out).count()
    return SparkExportSummary(
        path=out,
        model_version=model.version,
        users=len(ids),
        rows=written,
        partitions=count,
        seconds=time.perf_counter() - started,
    )


def _local_path(out: str) -> Path | None:
    """The output as a local path, or None for a URI Spark resolves (hdfs://, s3a://, ...)."""
    scheme = urlparse(out).scheme
    if scheme in ("", "file"):
        return Path(urlparse(out).path if scheme == "file" else out).resolve()
    return None


def _plain_table(table: pa.Table) -> pa.Table:
    """The chunk's table with text columns decoded (Spark reads plain strings, not categories)."""
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _spark_schema(model: ServedModel) -> str:
    """The export's columns as a Spark DDL schema."""
    ids = {"int64": "bigint", "str": "string"}
    user = ids.get(model.users.dtype, "string")
    item = ids.get(model.items.dtype, "string")
    fields = [
        f"user_id {user}",
        "rank smallint",
        f"item_id {item}",
        "score double",
        "source string",
        "reason string",
        "model_version string",
    ]
    if model.experiment is not None:
        fields.append("variant string")
    return ", ".join(fields)
