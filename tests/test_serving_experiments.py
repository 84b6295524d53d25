"""A/B experiments in serving and export: a shop shows variant B to part of its visitors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.config import ExperimentConfig, VariantConfig
from recsys.experiments import assign
from serving import Recommender
from serving.export import export
from serving.exposures import MemoryExposureLog
from tests.serving_shop import DAY, END_DAY, T0, build_shop_model

NOW = T0 + END_DAY * DAY
# B leads with popular items only: its lists visibly differ from A's.
EXPERIMENT = {
    "name": "popular-first",
    "salt": "2026-12",
    "variants": [
        {"name": "A", "share": 0.5},
        {"name": "B", "share": 0.4, "blend": {"popular": 50.0}, "n": 3},
        {"name": "holdout", "share": 0.1, "holdout": True},
    ],
    "forced": {"7": "B"},
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shop_model(tmp_path_factory.mktemp("ab-shop"), experiments=[EXPERIMENT])


@pytest.fixture(scope="module")
def rec(shop: Path) -> Recommender:
    return Recommender.load(shop)


def variant_of(rec: Recommender, unit: Any) -> str:
    assert rec.model.experiment is not None
    return assign(rec.model.experiment, unit).name


def users_in(rec: Recommender, name: str) -> list[int]:
    return [u for u in range(60) if variant_of(rec, u) == name]


def test_every_visitor_sees_their_variant_named_on_the_result(rec: Recommender) -> None:
    for user in range(60):
        result = rec.recommend(user, 5, now=NOW)
        assert (result.experiment, result.variant) == ("popular-first", variant_of(rec, user))
        again = rec.recommend(user, 5, now=NOW)
        assert again.variant == result.variant and again.item_ids == result.item_ids


def test_variant_b_serves_its_own_weights_and_list_length(rec: Recommender) -> None:
    [user, *_] = users_in(rec, "B")
    result = rec.recommend(user, 5, now=NOW)
    assert len(result) == 3  # B's n
    assert {r.source for r in result} == {"popular"}


def test_a_holdout_visitor_gets_no_recommendations(rec: Recommender) -> None:
    held = users_in(rec, "holdout")
    assert held, "the 10% holdout should hold some of 60 users"
    result = rec.recommend(held[0], 5, now=NOW)
    assert result.variant == "holdout" and len(result) == 0


def test_a_forced_id_sees_its_variant_for_qa(rec: Recommender) -> None:
    assert rec.recommend(7, 5, now=NOW).variant == "B"


def test_anonymous_visitors_are_assigned_by_visitor_id(rec: Recommender) -> None:
    first = rec.recommend(None, 5, session_items=["sku3"], visitor_id="v-123", now=NOW)
    second = rec.recommend(None, 5, session_items=["sku4"], visitor_id="v-123", now=NOW)
    assert first.variant == second.variant == variant_of(rec, "v-123")
    plain = rec.recommend(None, 5, session_items=["sku3"], now=NOW)
    assert plain.variant is None  # no id to assign by: the default lists, outside the test


def test_experiments_given_at_load_replace_the_models_own(shop: Path) -> None:
    other = ExperimentConfig(
        name="all-b",
        salt="x",
        variants=(
            VariantConfig(name="A", share=0.5),
            VariantConfig(name="B", share=0.5, n=2),
        ),
        forced={str(u): "B" for u in range(60)},
    )
    rec = Recommender.load(shop, experiments=[other])
    assert rec.recommend(3, 5, now=NOW).variant == "B"
    assert len(rec.recommend(3, 5, now=NOW)) == 2
    rec.reload()  # the same version: nothing to switch, the override stays
    assert rec.model.experiment is not None and rec.model.experiment.name == "all-b"
    assert Recommender.load(shop, experiments=[]).recommend(3, 5, now=NOW).variant is None


def test_every_list_shown_is_recorded_in_the_exposure_log(shop: Path) -> None:
    log = MemoryExposureLog()
    rec = Recommender.load(shop, exposures=log)
    shown = rec.recommend(5, 4, now=NOW)
    rec.recommend(None, 4, session_items=["sku2"], visitor_id="v-9", now=NOW)
    first, second = log.exposures
    assert first.experiment == "popular-first" and first.variant == shown.variant
    assert first.user_id == 5 and first.visitor_id is None and first.time == NOW
    assert list(first.items) == shown.item_ids and first.model_version == shown.model_version
    assert list(first.sources) == [r.source for r in shown]
    assert second.user_id is None and second.visitor_id == "v-9"


def test_a_failing_exposure_log_never_breaks_recommend(shop: Path) -> None:
    class Broken:
        def record(self, exposure: Any) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            return None

    rec = Recommender.load(shop, exposures=Broken())
    [user, *_] = users_in(rec, "A")
    assert len(rec.recommend(user, 4, now=NOW)) == 4
    assert len(rec.recommend(None, 4, session_items=["sku2"], now=NOW)) == 4
    assert rec.exposure_errors == 2


def test_the_export_writes_each_users_variant_and_leaves_out_the_holdout(
    shop: Path, rec: Recommender, tmp_path: Path
) -> None:
    summary = export(shop, tmp_path / "recs.parquet", 5, now=NOW, progress=False)
    frame = pd.read_parquet(tmp_path / "recs.parquet")
    assert "variant" in frame.columns
    held = set(users_in(rec, "holdout"))
    assert held and not held & set(frame["user_id"])
    for user, rows in frame.groupby("user_id"):
        served = rec.recommend(int(user), 5, now=NOW)
        assert set(rows["variant"]) == {served.variant}
        assert rows.sort_values("rank")["item_id"].tolist() == served.item_ids
    counts = {name: len(users_in(rec, name)) for name in ("A", "B", "holdout")}
    everyone = len(rec.model.users)
    assert sum(summary.by_variant.values()) == everyone
    assert summary.held_out_users == summary.by_variant["holdout"] >= counts["holdout"]
    assert "users by variant" in summary.format_text()
    assert np.isin(frame["variant"].unique(), ["A", "B"]).all()


def test_exposures_are_stamped_by_the_wall_clock_unless_the_caller_sets_now(shop: Path) -> None:
    import time

    log = MemoryExposureLog()
    rec = Recommender.load(shop, exposures=log)
    before = int(time.time())
    rec.recommend(5, 4)
    rec.recommend(5, 4, now=NOW)
    stamped, given = log.exposures
    assert before <= stamped.time <= int(time.time())  # not the model's clock
    assert given.time == NOW


def test_experiments_given_at_load_are_checked_like_a_config_files(shop: Path) -> None:
    from recsys.errors import ConfigError

    bad = ExperimentConfig(
        name="x",
        salt="x",
        variants=(VariantConfig(name="A", share=0.3), VariantConfig(name="B", share=0.3)),
    )
    with pytest.raises(ConfigError, match="sum"):
        Recommender.load(shop, experiments=[bad])


def test_a_variants_n_caps_the_list_and_never_lengthens_it(rec: Recommender) -> None:
    [user, *_] = users_in(rec, "B")  # B: n = 3
    assert len(rec.recommend(user, 2, now=NOW)) == 2
    assert len(rec.recommend(user, 10, now=NOW)) == 3
    with pytest.raises(ValueError, match="n must be between"):
        rec.recommend(user, 0, now=NOW)


def test_ids_are_checked_before_the_variant_whatever_the_variant(rec: Recommender) -> None:
    held = users_in(rec, "holdout")
    with pytest.raises(ValueError, match="whole numbers"):
        rec.recommend(str(held[0]), 5, now=NOW)  # this model's user ids are numbers
    with pytest.raises(ValueError, match="visitor ids must be whole numbers or text"):
        rec.recommend(None, 5, visitor_id=12.0, now=NOW)
