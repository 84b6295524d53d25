"""Shared fixtures: small hand-built logs written to real files, and the shared real datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys.config import Config, config_from_dict

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def shared_file(relative: str) -> Path:
    """Return a file of ../shared/datasets, skipping the test cleanly when it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared dataset not present: {path}")
    return path


def write_csv(path: Path, text: str) -> Path:
    """Write a small CSV (leading indentation and blank lines removed) and return its path."""
    lines = [line.strip() for line in text.strip().splitlines()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_config(tmp_path: Path, events: dict[str, Any], **sections: Any) -> Config:
    """Build a Config whose relative paths resolve in tmp_path; rejects go to tmp_path/rejects."""
    data: dict[str, Any] = {"events": events, **sections}
    data.setdefault("output", {"models": "models", "rejects": "rejects"})
    return config_from_dict(data, base_dir=tmp_path)


CLICKS = {
    "path": "events.csv",
    "timestamp_unit": "s",
    "columns": {"user": "user", "item": "item", "timestamp": "ts", "event": "event"},
}


@pytest.fixture(scope="session")
def shop_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serving shop of tests/serving_shop.py, trained once (read it, never change it)."""
    from tests.serving_shop import build_shop_model

    return build_shop_model(tmp_path_factory.mktemp("serving-shop"))
