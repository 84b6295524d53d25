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
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tests.benchmarks.common import ROOT, ensure_synthetic, peak_rss_mb, with_inputs

MODELS = ROOT / "data" / "synthetic" / "models"
# The same log's model with the learned ranker served whatever its holdout says (the synthetic
# log has nothing to learn): what the ranking stage costs a call and an export.
RANKER_MODELS = ROOT / "data" / "synthetic" / "models-ranker"


def _ensure_model(ranker: bool = False, min_items: int = 1, activity: str = "light") -> Path:
    """The synthetic shop's model (with the ranker served to users of `min_items` distinct
    items or more; on the heavy-tailed log with activity "heavy"), trained first if it is not
    there."""
    import dataclasses

    from recsys.config import load_config
    from recsys.modeldir import current_version
    from training.job import train

    root = RANKER_MODELS if ranker else MODELS
    if ranker and min_items != 1:
        root = root.with_name(f"{root.name}-min{min_items}")
    if activity != "light":
        root = root.with_name(f"{root.name}-{activity}")
    if root.exists() and current_version(root) is not None:
        return root
    folder = ensure_synthetic("parquet", activity=activity)
    config = with_inputs(
        load_config(ROOT / "data" / "configs" / "retailrocket.toml"),
        str(folder / "events.parquet"),
        str(folder / "item_properties.parquet"),
    )
    if ranker:
        config = dataclasses.replace(
            config,
            ranker=dataclasses.replace(
                config.ranker, enabled=True, serve="always", min_items=min_items
            ),
        )
    print("training the shop-scale model ...", flush=True)
    # force: the synthetic log has nothing to learn, and the gate may say so; speed is measured.
    train(config, out=root, force=True)
    return root


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose which synthetic model a benchmark runs on."""
    parser.add_argument(
        "--ranker", action="store_true", help="the model with the learned ranker served"
    )
    parser.add_argument(
        "--ranker-min-items", type=int, default=1,
        help="with --ranker: ranker.min_items (the blend answers users with fewer items)",
    )  # fmt: skip
    parser.add_argument(
        "--activity", default="light", choices=["light", "heavy"],
        help="the synthetic log's visitors: light, or heavy-tailed (issue 18)",
    )  # fmt: skip


def model_of(args: argparse.Namespace) -> Path:
    """The model the options of add_model_arguments chose, trained first if it is not there."""
    return _ensure_model(args.ranker, args.ranker_min_items, args.activity)


def _summary(runs: list[list[float]]) -> str:
    """Median over repeats of each repeat's p50, p99 and mean, in ms."""
    ms = [np.asarray(r) * 1000 for r in runs]
    p50 = np.median([np.percentile(r, 50) for r in ms])
    p99 = np.median([np.percentile(r, 99) for r in ms])
    mean = np.median([r.mean() for r in ms])
    return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, mean {mean:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="repeats; medians are reported")
    add_model_arguments(parser)
    args = parser.parse_args()
    from recsys.config import ExperimentConfig, VariantConfig
    from serving import Recommender
    from serving.exposures import JsonlExposureLog

    root = model_of(args)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    rec = Recommender.load(root)
    load_s = time.perf_counter() - started
    rss_loaded = peak_rss_mb()
    model = rec.model
    rng = np.random.default_rng(0)
    known = [int(u) for u in model.users.ids[rng.integers(0, len(model.users), args.calls)]]
    popular = model.models["popularity"].popular_[:50_000]  # type: ignore[attr-defined]
    item_ids = model.items.lookup(popular)

    def visits(low: int, high: int) -> list[list[object]]:
        sizes = rng.integers(low, high + 1, size=args.calls)
        return [list(rng.choice(item_ids, size=int(size))) for size in sizes]

    mixed, single, several = visits(1, 5), visits(1, 1), visits(2, 5)

    def timed(call: object, inputs: list[object]) -> list[float]:
        out = []
        for x in inputs:
            t = time.perf_counter()
            call(x)  # type: ignore[operator]
            out.append(time.perf_counter() - t)
        return out

    first = timed(lambda s: rec.recommend(None, 10, session_items=s), several[:1])[0]
    # The same model in an A/B experiment (B: other weights), every list written to a
    # JSON-lines exposure log: the overhead of experiments on a call.
    experiment = ExperimentConfig(
        name="bench",
        salt="bench",
        variants=(
            VariantConfig(name="A", share=0.5),
            VariantConfig(name="B", share=0.5, blend={"personal": 1.0}),
        ),
    )
    exposures = JsonlExposureLog(Path(tempfile.mkdtemp()) / "exposures.jsonl")
    rec_ab = Recommender(root, model, exposures=exposures, experiments=[experiment])
    cases = {
        "recommend, known user": (lambda u: rec.recommend(u, 10), known),
        "recommend, known user, A/B experiment + exposure log": (
            lambda u: rec_ab.recommend(u, 10),
            known,
        ),
        "recommend, anonymous session of 1-5 items": (
            lambda s: rec.recommend(None, 10, session_items=s),
            mixed,
        ),
        "recommend, anonymous session of 1 item": (
            lambda s: rec.recommend(None, 10, session_items=s),
            single,
        ),
        "recommend, anonymous session of 2-5 items": (
            lambda s: rec.recommend(None, 10, session_items=s),
            several,
        ),
        "recommend, known user + session of 1-5 items": (
            lambda us: rec.recommend(us[0], 10, session_items=us[1]),
            list(zip(known, mixed, strict=True)),
        ),
        "recommend, unknown user": (lambda u: rec.recommend(-1 - u, 10), known),
        "similar_items": (lambda i: rec.similar_items(i, 10), list(item_ids[: args.calls])),
    }
    runs: dict[str, list[list[float]]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, (call, inputs) in cases.items():
            runs[name].append(timed(call, inputs))
    print(f"model {model.version}: {len(model.users):,} users, {len(model.items):,} items")
    print(
        f"Recommender.load: {load_s:.2f} s; first anonymous call after it {first * 1000:.2f} ms; "
        f"RSS of the loaded model {rss_loaded - rss_before:,.0f} MB "
        f"(process {rss_loaded:,.0f} MB)"
    )
    print(f"| call ({args.calls:,} calls, median of {args.repeat} runs) | single thread |")
    print("|---|---|")
    for name, seconds in runs.items():
        print(f"| {name} | {_summary(seconds)} |")
    plain = runs["recommend, known user"]
    ab = runs["recommend, known user, A/B experiment + exposure log"]
    for q in (50, 99):
        extra = np.median(
            [np.percentile(b, q) - np.percentile(a, q) for a, b in zip(plain, ab, strict=True)]
        )
        print(f"experiment + exposure overhead at p{q}: {extra * 1e6:+.1f} µs")
    stats = exposures.close()
    print(
        f"exposure log: {stats.written:,} written, {stats.dropped:,} dropped, {stats.failed} failed"
    )

    count = [0, 0]
    stop = time.perf_counter() + 10.0

    def worker(slot: int) -> None:
        i = slot
        while time.perf_counter() < stop:
            rec.recommend(known[i % len(known)], 10)
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
