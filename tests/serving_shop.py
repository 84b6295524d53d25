"""A small shop for serving tests: a log, a catalogue and user attributes, trained into a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.config import Config, config_from_dict
from training.job import train

DAY = 86_400
T0 = 1_700_000_000
END_DAY = 70  # the log covers days 0..69


def write_shop(folder: Path, prefix: str = "sku") -> dict[str, Path]:
    """Write events.csv, items.csv and users.csv; item ids start with `prefix`."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[Any, ...]] = []
    for user in range(60):
        staples = rng.choice(20, size=3, replace=False)
        for day in range(int(rng.integers(0, 5)), END_DAY - 2, 10):
            for item in staples[: int(rng.integers(1, 4))]:
                rows.append(
                    (user, f"{prefix}{item}", "buy", T0 + day * DAY + user, f"o{user}-{day}")
                )
            for item in rng.choice(20, size=3):
                rows.append((user, f"{prefix}{item}", "view", T0 + day * DAY + user - 99, ""))
    # Users 0-3 bought the fridge once each; nobody buys a fridge twice.
    for user in range(4):
        rows.append((user, f"{prefix}-fridge", "buy", T0 + 20 * DAY + user, f"f{user}"))
    # Customer 100 buys coffee (item 5) every 10 days, last on day 60.
    for day in range(0, 61, 10):
        rows.append((100, f"{prefix}5", "buy", T0 + day * DAY, f"c{day}"))
    events = pd.DataFrame(rows, columns=["customer", "sku", "type", "ts", "order"])
    items = pd.DataFrame(
        {
            "sku": [f"{prefix}{i}" for i in range(20)] + [f"{prefix}-fridge", f"{prefix}-new"],
            "cat": [f"c{i % 4}" for i in range(20)] + ["appliances", "c0"],
            "brand": [f"b{i % 3}" for i in range(20)] + ["acme", "b0"],
            "price": [float(5 + i) for i in range(20)] + [499.0, 5.5],
            # sku1 is out of stock
            "in_stock": [0 if i == 1 else 1 for i in range(20)] + [1, 1],
            "added": ["2023-01-01"] * 21 + ["2024-01-20"],
        }
    )
    users = pd.DataFrame(
        {
            "id": [*range(60), 100, 9999],
            "region": ["north" if u % 2 else "south" for u in range(60)] + ["south", "north"],
        }
    )
    paths = {
        "events": folder / "events.csv",
        "items": folder / "items.csv",
        "users": folder / "users.csv",
    }
    events.to_csv(paths["events"], index=False)
    items.to_csv(paths["items"], index=False)
    users.to_csv(paths["users"], index=False)
    return paths


def shop_config(folder: Path, **overrides: Any) -> Config:
    """The config of the shop written by write_shop()."""
    data: dict[str, Any] = {
        "seed": 3,
        "events": {
            "path": "events.csv",
            "timestamp_unit": "s",
            "event_types": {"buy": "purchase", "view": "view"},
            "columns": {
                "user": "customer",
                "item": "sku",
                "event": "type",
                "timestamp": "ts",
                "session": "order",
            },
        },
        "items": {
            "path": "items.csv",
            "timestamp_unit": "datetime",
            "columns": {
                "item": "sku",
                "category": "cat",
                "brand": "brand",
                "price": "price",
                "available": "in_stock",
                "created": "added",
            },
        },
        "users": {"path": "users.csv", "user": "id"},
        # the blend's own lists: tests of the learned ranker turn it on.
        "ranker": {"enabled": False},
        "models": {
            "als": {"factors": 8, "iterations": 5},
            "repurchase": {"one_off_min_buyers": 3, "min_intervals": 2},
            "content": {"new_item_days": 30},
        },
        # The serving stories test the blend and the chain; tier rules have their own tests.
        "serving": {"segment_by": ["region"], "tier_leads": {}},
        "output": {"models": "models", "rejects": "rejects"},
    }
    data.update(overrides)
    return config_from_dict(data, base_dir=folder)


def build_shop_model(folder: Path, prefix: str = "sku", **overrides: Any) -> Path:
    """Write the shop, train it (force: the tiny holdout is noisy) and return the model root."""
    write_shop(folder, prefix)
    config = shop_config(folder, **overrides)
    train(config, force=True)
    return config.output.models
