"""Benchmark: the nightly batch on Spark beside the single-machine path, on the synthetic log.

    python -m tests.benchmarks.bench_spark                  # local[2]: load, train, export
    python -m tests.benchmarks.bench_spark --steps load,export

Each step runs in a fresh process, single-machine first, then on Spark with `--master`
(default local[2]); it prints seconds, peak RSS of the driver process and, for Spark,
rows per second per partition (the figure to size executors from). The synthetic log says
nothing about accuracy. Needs pyspark (`pip install ".[spark]"`) and Java 17.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.benchmarks.common import ROOT, ensure_synthetic, peak_rss_mb, run_isolated, with_inputs

if TYPE_CHECKING:
    from recsys.config import Config

MODELS = ROOT / "data" / "synthetic" / "models"


def _config(tmp: Path) -> Config:
    from recsys.config import load_config

    folder = ensure_synthetic("parquet")
    config = with_inputs(
        load_config(ROOT / "data" / "configs" / "retailrocket.toml"),
        str(folder / "events.parquet"),
        str(folder / "item_properties.parquet"),
    )
    return dataclasses.replace(
        config,
        output=dataclasses.replace(config.output, rejects=tmp / "rejects"),
    )


def _one(step: str, engine: str, master: str) -> None:
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = _config(tmp)
        started = time.perf_counter()
        extra: dict[str, object] = {}
        if step == "load":
            if engine == "local":
                from recsys.ingest import load_events

                report = load_events(config).report
            else:
                from recsys.spark import spark_session
                from training.spark.spark_ingest import load_events_spark

                spark = spark_session(master, {"spark.ui.enabled": "false"})
                report = load_events_spark(config, spark).report
                extra["partitions"] = spark.sparkContext.defaultParallelism
            extra["rows"] = report.rows_read
        elif step == "train":
            if engine == "local":
                from training.job import train

                train(config, out=tmp / "models", force=True)
            else:
                from training.spark.spark_train import train_spark

                train_spark(
                    config,
                    out=tmp / "models",
                    force=True,
                    master=master,
                    conf={"spark.ui.enabled": "false", "spark.driver.memory": "8g"},
                )
        elif step == "export":
            if engine == "local":
                from serving.export import export

                summary = export(MODELS, tmp / "recs.parquet", 20, progress=False)
                extra["rows"] = summary.rows
            else:
                from serving.spark_export import export_spark

                spark_summary = export_spark(
                    MODELS,
                    str(tmp / "recs"),
                    20,
                    master=master,
                    conf={"spark.ui.enabled": "false", "spark.driver.memory": "6g"},
                )
                extra["rows"] = spark_summary.rows
                extra["partitions"] = spark_summary.partitions
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb()), **extra}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", default="load,train,export")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(*args.one)
        return
    for step in args.steps.split(","):
        for engine in ("local", "spark"):
            run = run_isolated("tests.benchmarks.bench_spark", step, engine, args.master)
            line = f"{step:<7}{engine:<7}{run['seconds']:>8.1f} s"
            line += f"  driver RSS {run['peak_rss_mb']:,} MB"
            if engine == "spark" and "rows" in run and "partitions" in run:
                per = run["rows"] / run["seconds"] / run["partitions"]
                line += f"  {per:,.0f} rows/s per partition ({run['partitions']} partitions)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
