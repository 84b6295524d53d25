"""Benchmark: user portraits for every user, on the synthetic log and on Online Retail.

    python -m tests.benchmarks.bench_portraits

Target (issue 5): all ~1.4M visitors of the shop-scale synthetic log in <= 5 s. On the real
Online Retail log it also prints the tier table (sizes and revenue shares), which is the
report the issue asks for; the synthetic log's tiers say nothing about a real shop.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import tempfile
import time
from pathlib import Path

from tests.benchmarks.common import ROOT, ensure_synthetic, with_inputs


def _run(label: str, config_path: Path, events: str | None, items: str | None) -> None:
    from recsys.config import load_config
    from recsys.portraits import portraits_of
    from training.dataset import build_dataset, fit_data

    config = with_inputs(load_config(config_path), events, items)
    with tempfile.TemporaryDirectory() as rejects:
        dataset = build_dataset(config, rejects_dir=Path(rejects))
    data = fit_data(dataset, config)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        portraits = portraits_of(data, config.portraits)
        times.append(time.perf_counter() - started)
    print(
        f"\n{label}: {data.n_users:,} users, portraits in {sorted(times)[1]:.2f} s "
        f"(median of 3: {', '.join(f'{t:.2f}' for t in times)})"
    )
    print(portraits.format_summary())


def main() -> None:
    folder = ensure_synthetic("parquet")
    _run(
        "synthetic shop-scale log",
        ROOT / "data" / "configs" / "retailrocket.toml",
        str(folder / "events.parquet"),
        str(folder / "item_properties.parquet"),
    )
    retail = ROOT.parent / "shared" / "datasets" / "online-retail" / "online_retail.parquet"
    if retail.exists():
        _run(
            "UCI Online Retail (real)", ROOT / "data" / "configs" / "online-retail.toml", None, None
        )
    else:
        print(f"skipping Online Retail: {retail} not found")


if __name__ == "__main__":
    main()
