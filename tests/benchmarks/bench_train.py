"""Benchmark: the nightly job end to end (load, fit, evaluation gate, refit, write, publish).

    python -m tests.benchmarks.bench_train              # synthetic shop-scale log, Online Retail
    python -m tests.benchmarks.bench_train --repeat 3
    python -m tests.benchmarks.bench_train --activity heavy   # heavy-tailed visitors

Targets on a 2-core machine: the 2.76M-event synthetic log end to end <= 90 s with peak RSS
<= 6 GB; the real Online Retail log <= 15 s. The synthetic log says nothing about accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    from training.job import train

    config = load_config(config_path)
    config = with_inputs(config, events, items)
    with tempfile.TemporaryDirectory() as tmp:
        config = dataclasses.replace(
            config, output=dataclasses.replace(config.output, rejects=Path(tmp) / "rejects")
        )
        started = time.perf_counter()
        # force: the synthetic log has nothing to learn, and the gate may say so.
        result = train(config, out=Path(tmp) / "models", force=True)
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (result.path or Path(tmp)).iterdir())
    evaluation = result.evaluation
    gate = result.gate
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_rss_mb()),
                "steps": result.timings,
                "model_mb": round(size / 2**20, 1),
                "gate": gate.message if gate else None,
                "eval_users": evaluation.users if evaluation else None,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config")
    parser.add_argument("--events")
    parser.add_argument("--items")
    parser.add_argument("--format", default="parquet", choices=["parquet", "csv"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--activity", choices=["light", "heavy"], default="light",
        help="the synthetic shop's visitor activity (heavy: some visitors with thousands)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.one:
        _one(args.config, args.events, args.items)
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    rows = []
    folder = ensure_synthetic(args.format, activity=args.activity)
    rows.append(
        (
            f"synthetic shop-scale log ({args.format}, {args.activity} activity, with item "
            "properties)",
            median_run(
                args.repeat,
                "tests.benchmarks.bench_train",
                "--config",
                str(ROOT / "data" / "configs" / "retailrocket.toml"),
                "--events",
                str(folder / f"events.{args.format}"),
                "--items",
                str(folder / f"item_properties.{args.format}"),
            ),
        )
    )
    retail = ROOT.parent / "shared" / "datasets" / "online-retail" / "online_retail.parquet"
    if retail.exists():
        config = str(ROOT / "data" / "configs" / "online-retail.toml")
        rows.append(
            (
                "UCI Online Retail (real)",
                median_run(args.repeat, "tests.benchmarks.bench_train", "--config", config),
            )
        )
    else:
        print(f"skipping Online Retail: {retail} not found")
    for label, r in rows:
        print(
            f"\n{label}: {r['seconds']:.1f} s end to end (runs: {r['all_seconds']}), "
            f"peak RSS {r['peak_rss_mb']:,} MB, model {r['model_mb']} MB"
        )
        print(f"  evaluated users: {r['eval_users']}; {r['gate']}")
        print("  | step | seconds |\n  |---|---:|")
        for step, seconds in r["steps"].items():
            print(f"  | {step} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
