"""Batch export: every user's list, exactly as serving gives it, streamed safely to a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import serving.export as export_module
from recsys.config import Config
from recsys.errors import ModelDirError
from recsys.filters import Filters
from serving import Recommender
from serving.export import COLUMNS, ExportError, export, recommend_chunk, share_keys
from tests.serving_shop import DAY, END_DAY, T0, shop_config, write_shop
from training.job import train

NOW = T0 + END_DAY * DAY
# Browsing visitors: each touched one item only (some carted it); they share lists.
BROWSERS = range(200, 240)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = _browsing_shop(tmp_path_factory.mktemp("export-shop"))
    train(config, force=True)
    return config.output.models


@pytest.fixture(scope="module")
def ranked_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same shop with the learned ranker served to customers of two items or more."""
    config = _browsing_shop(
        tmp_path_factory.mktemp("export-ranked-shop"),
        ranker={"enabled": True, "label_days": 7, "serve": "always", "min_items": 2},
        training={"holdout_days": 7},
    )
    train(config, force=True)
    return config.output.models


@pytest.fixture(scope="module")
def ranked_for_all(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same shop with the learned ranker served to every known customer."""
    config = _browsing_shop(
        tmp_path_factory.mktemp("export-ranked-all"),
        ranker={"enabled": True, "label_days": 7, "serve": "always"},
        training={"holdout_days": 7},
    )
    train(config, force=True)
    return config.output.models


def _browsing_shop(folder: Path, **overrides: Any) -> Config:
    paths = write_shop(folder)
    events = pd.read_csv(paths["events"])
    extra = [
        (user, f"sku{user % 3}", "cart" if user % 4 == 0 else "view", T0 + (50 + user % 7) * DAY)
        for user in BROWSERS
    ]
    extra += [(240, "sku0", "view", T0 + 60 * DAY), (240, "sku7", "view", T0 + 61 * DAY)]
    # One-item users whose reminder depends on more than the item: a view then a return
    # (dated by the view), and a view older than the reminder horizon (no reminder at all).
    extra += [(241, "sku3", "view", T0 + 55 * DAY), (241, "sku3", "return", T0 + 57 * DAY)]
    extra += [(242, "sku3", "view", T0 + 10 * DAY), (243, "sku3", "view", T0 + 56 * DAY)]
    events = pd.concat([events, pd.DataFrame(extra, columns=events.columns[:4])])
    events.to_csv(paths["events"], index=False)
    columns = {
        "user": "customer",
        "item": "sku",
        "event": "type",
        "timestamp": "ts",
        "session": "order",
    }
    config = shop_config(
        folder,
        events={
            "path": "events.csv",
            "timestamp_unit": "s",
            "event_types": {
                "buy": "purchase",
                "view": "view",
                "cart": "cart",
                "return": "return",
            },
            "columns": columns,
        },
        **overrides,
    )
    return config


@pytest.fixture(scope="module")
def rec(shop: Path) -> Recommender:
    return Recommender.load(shop)


def _lists(frame: pd.DataFrame) -> dict[object, list[tuple[object, ...]]]:
    return {
        user: list(zip(g["item_id"], g["score"], g["source"], g["reason"], strict=True))
        for user, g in frame.sort_values(["user_id", "rank"]).groupby("user_id", sort=False)
    }


def _served(rec: Recommender, user: object, n: int) -> list[tuple[object, ...]]:
    return [(r.item_id, r.score, r.source, r.reason) for r in rec.recommend(user, n, now=NOW)]


def test_every_exported_list_is_what_recommend_gives_that_user(
    shop: Path, rec: Recommender, tmp_path: Path
) -> None:
    summary = export(shop, tmp_path / "recs.parquet", 8, now=NOW, progress=False)
    frame = pd.read_parquet(tmp_path / "recs.parquet")
    lists = _lists(frame)
    assert summary.users == len(rec.model.users) == len(lists)
    for user in rec.model.users.ids.tolist():
        assert lists[user] == _served(rec, user, 8), user
    assert summary.rows == len(frame) == 8 * summary.users
    assert set(frame["model_version"]) == {rec.version}
    assert frame.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, 9))).all()


def test_browsers_with_one_item_share_a_list_and_still_get_their_own_answer(
    rec: Recommender,
) -> None:
    model = rec.model
    ids = np.array([*BROWSERS, 240, 0])
    keys = share_keys(model, model.users.index(ids).astype(np.int64), ids)
    assert (keys[:-2] >= 0).all() and keys[-2] == -1 and keys[-1] == -1  # 240: two items
    # Same item, both only viewed (on other days: each reminder is dated on its own): one key;
    # carted or another item: another key.
    assert keys[1] == keys[7] == keys[22]
    assert keys[0] != keys[4] and keys[1] != keys[2]
    table = recommend_chunk(model, ids, 5, Filters(), NOW)
    lists = _lists(table.to_pandas())
    for user in ids.tolist():
        assert lists[user] == _served(rec, user, 5), user


def test_under_a_ranker_for_two_items_or_more_browsers_still_share_and_every_list_is_served(
    ranked_shop: Path, tmp_path: Path
) -> None:
    rec = Recommender.load(ranked_shop)
    model = rec.model
    assert model.ranker is not None
    ids = np.array([*BROWSERS, 240, 0])
    keys = share_keys(model, model.users.index(ids).astype(np.int64), ids)
    assert (keys[:-2] >= 0).all() and keys[-2] == -1 and keys[-1] == -1
    export(ranked_shop, tmp_path / "recs.parquet", 8, now=NOW, progress=False)
    lists = _lists(pd.read_parquet(tmp_path / "recs.parquet"))
    for user in rec.model.users.ids.tolist():
        assert lists[user] == _served(rec, user, 8), user


def test_under_a_ranker_for_everyone_browsers_share_only_what_the_ranker_scores_alike(
    ranked_for_all: Path, tmp_path: Path
) -> None:
    # The ranker reads how many days ago a one-item browser touched the item: users share a
    # list only where no tree of the ranker tells their days apart, and every list is still
    # the one serving gives.
    rec = Recommender.load(ranked_for_all)
    model = rec.model
    assert model.ranker is not None and model.ranker_min_items == 1
    ids = np.array([*BROWSERS, 240, 0])
    keys = share_keys(model, model.users.index(ids).astype(np.int64), ids, NOW)
    assert keys[-2] == -1 and keys[-1] == -1  # two items; a buyer
    assert (keys[:-2] >= 0).all()
    assert len(set(keys[:-2].tolist())) < len(BROWSERS)  # some do share
    # Without a clock nothing can be told about the days: no one shares.
    assert (share_keys(model, model.users.index(ids).astype(np.int64), ids) == -1).all()
    export(ranked_for_all, tmp_path / "recs.parquet", 8, now=NOW, progress=False)
    lists = _lists(pd.read_parquet(tmp_path / "recs.parquet"))
    for user in rec.model.users.ids.tolist():
        assert lists[user] == _served(rec, user, 8), user
    table = recommend_chunk(model, ids, 5, Filters(), NOW)
    chunk = _lists(table.to_pandas())
    for user in ids.tolist():
        assert chunk[user] == _served(rec, user, 5), user


def test_one_item_users_share_only_when_their_reminders_read_alike(rec: Recommender) -> None:
    # 241 viewed then returned sku3 (the view dates the reminder), 242 viewed it 60 days ago
    # (past the reminder horizon: no reminder), 243 viewed it 14 days ago; 201 is a plain
    # viewer of another item. Every list is still the one serving gives.
    model = rec.model
    ids = np.array([241, 242, 243, 201])
    keys = share_keys(model, model.users.index(ids).astype(np.int64), ids, NOW)
    assert keys[1] != keys[2]
    table = recommend_chunk(model, ids, 5, Filters(), NOW)
    lists = _lists(table.to_pandas())
    for user in ids.tolist():
        assert lists[user] == _served(rec, user, 5), user
    assert "reminder" not in {source for _, _, source, _ in lists[242]}
    assert "reminder" in {source for _, _, source, _ in lists[243]}


def test_a_users_file_with_unknown_ids_gives_them_fallback_lists_and_counts_them(
    shop: Path, rec: Recommender, tmp_path: Path
) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id\n100\n424242\n3\n100\n", encoding="utf-8")
    summary = export(shop, tmp_path / "recs.csv", 5, users=users, now=NOW, progress=False)
    frame = pd.read_csv(tmp_path / "recs.csv")
    assert summary.users == 3 and summary.unknown_users == 1  # 100 once
    assert _lists(frame)[424242] == _served(rec, 424242, 5)
    assert set(frame[frame.user_id == 424242]["source"]) <= {"trending", "popular"}


def test_a_tiny_chunk_size_and_one_or_two_workers_write_the_same_rows(
    shop: Path, tmp_path: Path
) -> None:
    frames = []
    for name, chunk, workers in (("a", 1, 1), ("b", 7, 2), ("c", 20_000, 2)):
        out = tmp_path / f"{name}.parquet"
        export(shop, out, 4, now=NOW, chunk_size=chunk, workers=workers, progress=False)
        frames.append(pd.read_parquet(out))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_each_format_is_readable_by_pandas_with_the_documented_columns(
    shop: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"recs.{fmt}"
    export(shop, out, 3, users=[100, 3], now=NOW, progress=False)
    if fmt == "parquet":
        frame = pd.read_parquet(out)
    elif fmt == "csv":
        frame = pd.read_csv(out)
    else:
        frame = pd.read_json(out, lines=True)
        first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
        assert list(first) == list(COLUMNS)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 6 and frame["user_id"].tolist()[:3] in ([100] * 3, [3] * 3)
    assert frame["item_id"].str.startswith("sku").all()


def test_a_crash_midway_leaves_no_file_under_the_final_name(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "recs.parquet"
    calls = {"n": 0}
    real = export_module._Writer.write

    def failing(self: export_module._Writer, table: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        real(self, table)  # type: ignore[arg-type]

    monkeypatch.setattr(export_module._Writer, "write", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        export(shop, out, 3, chunk_size=5, workers=1, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_bad_inputs_are_refused_before_any_work(shop: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="no such model directory"):
        export(tmp_path / "nowhere", tmp_path / "recs.parquet", progress=False)
    with pytest.raises(ExportError, match="no such folder"):
        export(shop, tmp_path / "missing" / "recs.parquet", progress=False)
    with pytest.raises(ExportError, match="cannot tell the format"):
        export(shop, tmp_path / "recs.xlsx", progress=False)
    with pytest.raises(ExportError, match="users file not found"):
        export(shop, tmp_path / "recs.parquet", users=tmp_path / "users.csv", progress=False)
    bad = tmp_path / "users.csv"
    bad.write_text("user_id\n100\nabc\n", encoding="utf-8")
    with pytest.raises(ExportError, match=r"users\.csv: row 3, column 'user_id': 'abc'"):
        export(shop, tmp_path / "recs.parquet", users=bad, progress=False)
    with pytest.raises(ExportError, match="segment 'west' is not one of"):
        export(shop, tmp_path / "recs.parquet", segment="west", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.csv"]  # nothing left behind


def test_a_segment_exports_only_its_users(shop: Path, rec: Recommender, tmp_path: Path) -> None:
    summary = export(shop, tmp_path / "north.parquet", 3, segment="north", progress=False)
    frame = pd.read_parquet(tmp_path / "north.parquet")
    north = {u for u in range(60) if u % 2}
    assert set(frame["user_id"]) == north and summary.users == len(north)


def test_the_export_can_carry_each_users_tier(shop: Path, rec: Recommender, tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    export(shop, out, 3, users=[100, 3, 424242], with_tier=True, now=NOW, progress=False)
    frame = pd.read_parquet(out)
    assert list(frame.columns) == [*COLUMNS, "tier"]
    tiers = frame.groupby("user_id")["tier"].first()
    profile = rec.profile(100)
    assert profile is not None and tiers[100] == profile["tier"]
    assert pd.isna(tiers[424242])  # unknown to the model: no portrait


def test_users_alike_in_every_column_get_one_key_however_wide_the_columns() -> None:
    from serving.export import _row_keys

    rows = np.array([[1, 2, 3], [1, 2, 4], [1, 2, 3], [0, 2, 3]], dtype=np.int64)
    narrow = _row_keys([rows[:, 0], rows[:, 1], rows[:, 2]])
    wide = _row_keys([rows[:, 0] * 2**40, rows[:, 1] * 2**40, rows[:, 2]])  # too wide to pack
    for keys in (narrow, wide):
        assert keys[0] == keys[2] and len({keys[0], keys[1], keys[3]}) == 3
        assert (keys >= 0).all()
