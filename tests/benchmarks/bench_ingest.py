"""Benchmark: load, validate, ids, matrix and histories, on the synthetic log and Online Retail.

    python -m tests.benchmarks.bench_ingest            # synthetic (Parquet, CSV) and Online Retail
    python -m tests.benchmarks.bench_ingest --scale 0.1

Each measurement runs in a fresh process so that its peak RSS is its own; each input is run
--repeat times and the run with the median time is shown (times vary by about 2x between runs
on the shared 2-core machine). Targets for the
2.76M-event synthetic log on a 2-core machine: <= 5 s from Parquet, <= 15 s from CSV, peak RSS
<= 2 GB. The synthetic log is for speed and memory only: never make accuracy claims on it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from tests.benchmarks.common import (
    ROOT,
    ensure_synthetic,
    median_run,
    peak_rss_mb,
    with_inputs,
)


def _one(config_path: str, events: str | None, items: str | None) -> None:
    from recsys.config import load_config
    from training.dataset import build_dataset

    config = load_config(config_path)
    config = with_inputs(config, events, items)
    with tempfile.TemporaryDirectory() as rejects:
        started = time.perf_counter()
        data = build_dataset(config, rejects_dir=Path(rejects))
        seconds = time.perf_counter() - started
    report = data.events.report
    print(
        json.dumps(
            {
                "rows": report.rows_read,
                "accepted": report.accepted,
                "rejected": report.rejected_total,
                "seconds": round(seconds, 2),
                "rows_per_s": round(report.rows_read / seconds),
                "peak_rss_mb": round(peak_rss_mb()),
                "steps": data.timings,
                "catalogue_rows": data.catalogue.report.rows_read if data.catalogue else 0,
                "nnz": data.matrix.nnz,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config")
    parser.add_argument("--events")
    parser.add_argument("--items")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--formats", default="parquet,csv")
    parser.add_argument("--repeat", type=int, default=3, help="runs per input; the median is shown")
    args = parser.parse_args()
    if args.one:
        _one(args.config, args.events, args.items)
        return

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    rr = str(ROOT / "data" / "configs" / "retailrocket.toml")
    rows = []
    for fmt in args.formats.split(","):
        folder = ensure_synthetic(fmt, args.scale)
        suffix = "parquet" if fmt == "parquet" else fmt
        for with_items in (False, True):
            extra = ["--items", str(folder / f"item_properties.{suffix}")] if with_items else []
            result = median_run(
                args.repeat,
                "tests.benchmarks.bench_ingest",
                "--config",
                rr,
                "--events",
                str(folder / f"events.{suffix}"),
                *extra,
            )
            label = f"synthetic x{args.scale:g} {fmt}" + (
                " + item properties" if with_items else ""
            )
            rows.append((label, result))
    retail = ROOT.parent / "shared" / "datasets" / "online-retail" / "online_retail.parquet"
    if retail.exists():
        config = str(ROOT / "data" / "configs" / "online-retail.toml")
        rows.append(
            (
                "Online Retail (real, Parquet)",
                median_run(args.repeat, "tests.benchmarks.bench_ingest", "--config", config),
            )
        )
    else:
        print(f"skipping Online Retail: {retail} not found")

    print()
    print("| input | rows | seconds | rows/s | peak RSS | steps |")
    print("|---|---:|---:|---:|---:|---|")
    for label, r in rows:
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in r["steps"].items())
        print(
            f"| {label} | {r['rows']:,} | {r['seconds']:.2f} | {r['rows_per_s']:,} "
            f"| {r['peak_rss_mb']:,} MB | {steps} (runs: {r.get('all_seconds')}) |"
        )


if __name__ == "__main__":
    main()
