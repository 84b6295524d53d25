"""A Spark session for the engine's optional Spark jobs; pyspark is imported only when asked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from recsys.errors import RecsysError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkUnavailableError(RecsysError):
    """pyspark (or Java) is missing for a Spark job."""


def spark_session(master: str | None = None, conf: Mapping[str, str] | None = None) -> SparkSession:
    """A Spark session for the engine's jobs: Arrow on, the given master and options.

    Without a master, the one `spark-submit` was given is used (local[*] outside it).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailableError(
            'Spark jobs need pyspark: pip install "recsys-shop[spark]" (and Java 17)'
        ) from None
    builder = SparkSession.builder.appName("recsys")
    if master is not None:
        builder = builder.master(master)
    builder = builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
