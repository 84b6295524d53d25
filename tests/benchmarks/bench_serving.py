"""Benchmark: in-process serving on the model trained from the shop-scale synthetic log.

    python -m tests.benchmarks.bench_serving            # trains the model first if needed
    python -m tests.benchmarks.bench_serving --calls 10000

Single thread, `--calls` calls each: random known users, random sessions of 1-5 items,
unknown users, and similar_items; then calls/s with 2 threads. Targets (issue 3): known users
p50 <= 0.2 ms and p99 <= 0.5 ms, with a session p99 <= 1 ms, similar_items p99 <= 0.3 ms,
load <= 2 s.
"""

from __future__ import annotations

import os

# Before numpy loads: a serving process should keep BLAS at one thread, or concurrent calls
# fight over cores (the README says so too).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from tests.benchmarks.common import ROOT, ensure_synthetic, peak_rss_mb, with_inputs

MODELS = ROOT / "data" / "synthetic" / "models"


def _ensure_model() -> Path:
    from recsys.config import load_config
    from recsys.modeldir import current_version
    from training.job import train

    if MODELS.exists() and current_version(MODELS) is not None:
        return MODELS
    folder = ensure_synthetic("parquet")
    config = with_inputs(
        load_config(ROOT / "data" / "configs" / "retailrocket.toml"),
        str(folder / "events.parquet"),
        str(folder / "item_properties.parquet"),
    )
    print("training the shop-scale model ...", flush=True)
    train(config, out=MODELS)
    return MODELS


def _percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return (
        f"p50 {np.percentile(ms, 50):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms, "
        f"mean {ms.mean():.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    from serving import Recommender

    root = _ensure_model()
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    rec = Recommender.load(root)
    load_s = time.perf_counter() - started
    model = rec.model
    rng = np.random.default_rng(0)
    history = model.blender.strategies.history
    known = model.users.ids[rng.integers(0, len(model.users), args.calls)]
    popular = model.models["popularity"].popular_[:50_000]  # type: ignore[attr-defined]
    item_ids = model.items.lookup(popular)
    sessions = [list(rng.choice(item_ids, size=int(rng.integers(1, 6)))) for _ in range(args.calls)]
    del history

    def timed(call: object, inputs: list[object]) -> list[float]:
        out = []
        for x in inputs:
            t = time.perf_counter()
            call(x)  # type: ignore[operator]
            out.append(time.perf_counter() - t)
        return out

    rec.recommend(int(known[0]), 10)  # warm up
    rows = {
        "recommend, known user": timed(lambda u: rec.recommend(int(u), 10), list(known)),
        "recommend, anonymous session of 1-5 items": timed(
            lambda s: rec.recommend(None, 10, session_items=s), sessions
        ),
        "recommend, known user + session": timed(
            lambda us: rec.recommend(int(us[0]), 10, session_items=us[1]),
            list(zip(known, sessions, strict=True)),
        ),
        "recommend, unknown user": timed(lambda u: rec.recommend(-1 - int(u), 10), list(known)),
        "similar_items": timed(lambda i: rec.similar_items(i, 10), list(item_ids[: args.calls])),
    }
    print(f"model {model.version}: {len(model.users):,} users, {len(model.items):,} items")
    print(
        f"Recommender.load: {load_s:.2f} s; peak RSS {peak_rss_mb():,.0f} MB "
        f"(process before load {rss_before:,.0f} MB)"
    )
    print("| call | single thread |\n|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {_percentiles(seconds)} |")

    count = [0, 0]
    stop = time.perf_counter() + 10.0

    def worker(slot: int) -> None:
        i = slot
        while time.perf_counter() < stop:
            rec.recommend(int(known[i % len(known)]), 10)
            count[slot] += 1
            i += 2

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"2 threads, known users: {sum(count) / (time.perf_counter() - t0):,.0f} calls/s")


if __name__ == "__main__":
    main()
