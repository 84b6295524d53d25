"""A log in RetailRocket's original format loads through the shipped config alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from recsys.config import load_config
from tests.conftest import ROOT
from training.dataset import build_dataset
from training.synthetic import SyntheticShape, generate_retailrocket


def test_retailrocket_events_and_item_properties_load_with_the_shipped_config(
    tmp_path: Path,
) -> None:
    shape = SyntheticShape().scaled(0.002)
    paths = generate_retailrocket(tmp_path / "rr", shape, seed=3, fmt="csv")
    config = load_config(ROOT / "data" / "configs" / "retailrocket.toml")
    config = dataclasses.replace(
        config,
        events=dataclasses.replace(config.events, path=(paths.events,)),
        items=dataclasses.replace(config.items, path=(paths.item_properties,)),  # type: ignore[arg-type]
    )
    data = build_dataset(config, rejects_dir=tmp_path / "rejects")
    report = data.events.report
    assert report.rows_read == shape.views + shape.carts + shape.transactions
    assert report.accepted + report.rejected_total == report.rows_read
    assert set(report.rejected) <= {"duplicate"}
    assert sum(report.by_event.values()) == report.accepted
    assert report.by_event["purchase"] > 0 and report.by_event["cart"] > 0
    assert data.users.dtype == "int64" and data.items.dtype == "int64"
    # Timestamps were milliseconds: the log spans 2015.
    assert report.first_time is not None and report.first_time.startswith("2015-05")
    assert data.catalogue is not None
    assert {"category", "available"} <= set(data.catalogue.frame.columns)
    assert data.catalogue.frame.index.isin(data.items.ids).mean() > 0.99
    assert data.matrix.shape == (len(data.users), len(data.items))
