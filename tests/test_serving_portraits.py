"""Portraits reach serving: Recommender.profile and the portraits export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from serving import Recommender
from serving.export import export_profiles
from tests.serving_shop import DAY, T0, build_shop_model


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shop_model(tmp_path_factory.mktemp("portraits-shop"))


def test_a_customers_profile_shows_their_rhythm_and_tier(shop: Path) -> None:
    rec = Recommender.load(shop)
    coffee = rec.profile(100)  # buys coffee every 10 days, last on day 60 of 70
    assert coffee is not None
    assert coffee["id"] == 100 and coffee["frequency"] == 7
    last_coffee = T0 + 60 * DAY
    assert coffee["interval_days"] == 10.0
    assert coffee["recency_days"] == pytest.approx((rec.model.data_end - last_coffee) / DAY)
    assert coffee["tier"] in {"active", "high_value"} and coffee["stage"] == "repeat"
    assert coffee["category_1"] is not None and coffee["rfm"]


def test_an_unknown_user_has_no_profile_and_a_wrong_id_type_is_an_error(shop: Path) -> None:
    rec = Recommender.load(shop)
    assert rec.profile(424242) is None
    with pytest.raises(ValueError, match="whole numbers"):
        rec.profile("100")


def test_every_portrait_is_exported_with_the_users_id(shop: Path, tmp_path: Path) -> None:
    rec = Recommender.load(shop)
    path = export_profiles(shop, tmp_path / "profiles.csv")
    frame = pd.read_csv(path)
    assert len(frame) == len(rec.model.users)
    assert frame["id"].tolist() == rec.model.users.ids.tolist()
    assert {"recency_days", "frequency", "monetary", "rfm", "tier", "stage"} <= set(frame.columns)
    assert frame.set_index("id").loc[100, "frequency"] == 7
