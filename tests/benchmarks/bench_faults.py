"""Fault benchmark (on demand): kills, a full disk, read-only output and damaged model files.

    python -m tests.benchmarks.bench_faults            # 10 kills, every file of a version damaged
    python -m tests.benchmarks.bench_faults --kills 30

Trains the hand-built serving shop (tests/serving_shop.py) in a temporary folder, then:
- kills `recsys train` (SIGKILL) at random moments and checks the model directory still loads
  (the published version, or no version yet) and the next train publishes;
- runs `recsys train` with a file-size limit (a full disk, EFBIG) and with a read-only models
  folder, and checks it exits 2 with one line and CURRENT does not move;
- damages each file of a published version in turn (one byte flipped, truncated, deleted,
  replaced by a symbolic link) and checks serving refuses it with ModelDirError.
Prints the counts of each outcome; every line should read "as expected".
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.benchmarks.common import ROOT

_CONFIG = """seed = 3
[events]
path = "events.csv"
timestamp_unit = "s"
event_types = { buy = "purchase", view = "view" }
[events.columns]
user = "customer"
item = "sku"
event = "type"
timestamp = "ts"
session = "order"
[models.als]
factors = 8
iterations = 5
[ranker]
enabled = false
[output]
models = "models"
rejects = "rejects"
"""


def _shop(folder: Path) -> Path:
    """Write the serving shop and its TOML config; return the config path."""
    from tests.serving_shop import write_shop

    write_shop(folder)
    path = folder / "shop.toml"
    path.write_text(_CONFIG, encoding="utf-8")
    return path


def _train(config: Path, *extra: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training.cli", "-q", "train", "--config", str(config),
         "--force", *extra],
        cwd=ROOT, capture_output=True, text=True, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def _loads(models: Path) -> str:
    from recsys.errors import ModelDirError
    from recsys.modeldir import current_version
    from recsys.served import ServedModel

    if current_version(models) is None:
        return "no version yet"
    try:
        ServedModel.load(models)
    except ModelDirError:
        return "UNLOADABLE"
    return "loads"


def kills(config: Path, models: Path, runs: int, rng: random.Random) -> Counter[str]:
    """SIGKILL `recsys train` at random moments; the directory must still load."""
    outcomes: Counter[str] = Counter()
    for _ in range(runs):
        process = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "-q", "train", "--config", str(config),
             "--force"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.5, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        outcomes[f"after a kill: {_loads(models)}"] += 1
    done = _train(config)
    outcomes[f"next train exits {done.returncode}"] += 1
    outcomes[f"then: {_loads(models)}"] += 1
    return outcomes


def full_disk(config: Path, models: Path) -> Counter[str]:
    """A file-size limit makes every big write fail with EFBIG, as a full disk would."""
    from recsys.modeldir import current_version

    before = current_version(models)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))

    done = _train(config, preexec_fn=limit)
    lines = done.stderr.strip().splitlines()
    return Counter(
        {
            f"full disk: exit {done.returncode}, {len(lines)} line(s), "
            f"{'traceback' if 'Traceback' in done.stderr else 'no traceback'}, "
            f"CURRENT {'unchanged' if current_version(models) == before else 'MOVED'}": 1
        }
    )


def read_only(config: Path, models: Path) -> Counter[str]:
    from recsys.modeldir import current_version

    before = current_version(models)
    mode = models.stat().st_mode
    models.chmod(0o555)
    try:
        done = _train(config)
    finally:
        models.chmod(mode)
    root = os.geteuid() == 0  # root writes through file modes: the case does not apply
    word = "root ignores modes" if root and done.returncode == 0 else f"exit {done.returncode}"
    moved = "unchanged" if current_version(models) == before else "moved"
    return Counter({f"read-only models folder: {word}, CURRENT {moved}": 1})


def damaged(models: Path) -> Counter[str]:
    """Damage each file of the published version in four ways; serving must refuse each."""
    from recsys.errors import ModelDirError
    from recsys.modeldir import current_path
    from recsys.served import ServedModel

    version = current_path(models)
    outcomes: Counter[str] = Counter()
    for file in sorted(p for p in version.iterdir() if p.name != "manifest.json"):
        for how in ("flip a byte", "truncate", "delete", "symlink"):
            backup = file.with_name(file.name + ".bak")
            shutil.copy2(file, backup)
            try:
                if how == "flip a byte":
                    data = bytearray(file.read_bytes())
                    data[len(data) // 2] ^= 0xFF
                    file.write_bytes(bytes(data))
                elif how == "truncate":
                    file.write_bytes(file.read_bytes()[: max(file.stat().st_size // 2, 0)])
                elif how == "delete":
                    file.unlink()
                else:
                    file.unlink()
                    file.symlink_to(backup)
                try:
                    ServedModel.load(models)
                    outcomes[f"{how}: LOADED"] += 1
                except ModelDirError:
                    outcomes[f"{how}: refused (ModelDirError)"] += 1
                except Exception as exc:
                    outcomes[f"{how}: {type(exc).__name__}"] += 1
            finally:
                if file.is_symlink() or file.exists():
                    file.unlink()
                backup.rename(file)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = _shop(folder)
        models = folder / "models"
        first = _train(config)
        if first.returncode != 0:
            raise SystemExit(f"the shop does not train: {first.stderr}")
        results: Counter[str] = Counter()
        started = time.perf_counter()
        results += kills(config, models, args.kills, rng)
        results += full_disk(config, models)
        results += read_only(config, models)
        results += damaged(models)
        for outcome, count in sorted(results.items()):
            print(f"{count:>5}  {outcome}")
        print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
