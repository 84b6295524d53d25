"""Benchmark: batch export of every user's top-20 from the shop-scale synthetic model.

    python -m tests.benchmarks.bench_export              # trains the model first if needed
    python -m tests.benchmarks.bench_export --format csv --n 10

Target (issue 4) on this 2-core machine: all ~1.4M visitors, top-20, >= 25,000 users/s and
peak RSS <= 4 GB (the largest of the parent and its workers).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import resource
import tempfile
from pathlib import Path

from tests.benchmarks.bench_serving import add_model_arguments, model_of
from tests.benchmarks.common import peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl"])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument(
        "--sample", type=int, default=None,
        help="export a seeded random sample of this many users (a rate in less time)",
    )  # fmt: skip
    add_model_arguments(parser)
    args = parser.parse_args()
    from serving.export import export

    root = model_of(args)
    users = None
    if args.sample is not None:
        import numpy as np

        from recsys.served import ServedModel

        ids = ServedModel.load(root).users.ids
        users = np.random.default_rng(0).choice(ids, min(args.sample, len(ids)), replace=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"recs.{args.format}"
        summary = export(
            root,
            out,
            args.n,
            users=users,
            fmt=args.format,
            workers=args.workers,
            chunk_size=args.chunk_size,
            progress=False,
        )
        size = out.stat().st_size
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(summary.format_text())
    print(
        f"output {size / 2**20:,.0f} MB; peak RSS: parent {peak_rss_mb():,.0f} MB, "
        f"largest worker {children:,.0f} MB"
    )


if __name__ == "__main__":
    main()
