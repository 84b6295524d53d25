"""Benchmark: `recsys evaluate` on the real logs, as the README reports it.

    python -m tests.benchmarks.bench_evaluate           # Online Retail and MovieLens
    python -m tests.benchmarks.bench_evaluate --only movielens

Online Retail holds out its last 30 days, MovieLens (ratings >= 4) the last 10% of its time
span, the Taobao browse-log sample its last 24 hours. Each run writes its report to
reports/<name>/ and prints its time and peak memory. Targets on a 2-core machine: each
evaluation <= 5 minutes (Taobao <= 2). Skips a dataset whose files under ../shared/datasets
are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tests.benchmarks.common import ROOT, peak_rss_mb, run_isolated

RUNS: dict[str, tuple[str, dict[str, float]]] = {
    "online-retail": ("data/configs/online-retail.toml", {"holdout_days": 30.0}),
    "movielens": ("data/configs/movielens.toml", {}),
    "taobao": ("data/configs/taobao.toml", {}),
}


def _one(name: str) -> None:
    from recsys.config import load_config
    from training.evaluation.evaluate import evaluate, format_summary
    from training.evaluation.report import write_report

    path, holdout = RUNS[name]
    config = load_config(ROOT / path)
    started = time.perf_counter()
    results = evaluate([config], progress=False, **holdout)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    files = write_report(results, ROOT / "reports" / name)
    print(format_summary(results))
    print(
        json.dumps(
            {
                "seconds": round(seconds, 1),
                "peak_rss_mb": round(peak_rss_mb()),
                "steps": results["timings"],
                "report": str(files.markdown),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(RUNS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one)
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    for name in [args.only] if args.only else list(RUNS):
        config = ROOT / RUNS[name][0]
        try:
            from recsys.config import load_config

            sources = load_config(config).events.path
        except Exception as exc:  # an unreadable config is a real failure, not a skip
            raise SystemExit(f"{config}: {exc}") from exc
        if not all(Path(p).exists() for p in sources):
            print(f"{name}: skipped, {sources[0]} is absent")
            continue
        run = run_isolated("tests.benchmarks.bench_evaluate", name)
        print(f"{name}: {run['seconds']} s, peak RSS {run['peak_rss_mb']} MB, {run['report']}")


if __name__ == "__main__":
    main()
