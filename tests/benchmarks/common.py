"""Shared parts of the benchmark scripts: the synthetic log on disk, timing in a fresh process."""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "data" / "synthetic" / "retailrocket"


def ensure_synthetic(fmt: str, scale: float = 1.0, seed: int = 0, activity: str = "light") -> Path:
    """Return the folder of the seeded synthetic RetailRocket log, generating it if absent.

    `activity="heavy"` is the heavy-tailed shop (some visitors with thousands of events)."""
    import dataclasses

    from training.synthetic import SyntheticShape, generate_retailrocket

    folder = (
        SYNTHETIC
        if scale == 1.0 and seed == 0
        else SYNTHETIC.with_name(f"retailrocket-x{scale:g}-s{seed}")
    )
    if activity != "light":
        folder = folder.with_name(folder.name + f"-{activity}")
    suffix = {"csv": "csv", "csv.gz": "csv.gz", "parquet": "parquet"}[fmt]
    if not (folder / f"events.{suffix}").exists():
        print(f"generating the synthetic log ({fmt}, scale {scale:g}) in {folder} ...", flush=True)
        shape = dataclasses.replace(SyntheticShape().scaled(scale), activity=activity)
        generate_retailrocket(folder, shape, seed=seed, fmt=fmt)
    return folder


def with_inputs(config: Any, events: str | None, items: str | None) -> Any:
    """Return the config reading the given events (and item properties) files instead."""
    if events is None:
        return config
    items_src = config.items
    if items_src is not None:
        items_src = dataclasses.replace(items_src, path=(Path(items),)) if items else None
    return dataclasses.replace(
        config, events=dataclasses.replace(config.events, path=(Path(events),)), items=items_src
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(module: str, *args: str) -> dict[str, Any]:
    """Run `python -m module --one ...` in a fresh process and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--one", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def median_run(repeat: int, module: str, *args: str) -> dict[str, Any]:
    """Run an isolated measurement `repeat` times; return the median-time run with the peak RSS."""
    runs = sorted((run_isolated(module, *args) for _ in range(repeat)), key=lambda r: r["seconds"])
    chosen = runs[len(runs) // 2]
    chosen["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    chosen["all_seconds"] = [r["seconds"] for r in runs]
    return chosen
