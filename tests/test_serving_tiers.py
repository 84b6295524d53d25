"""Portrait tiers shape the lists: win-back for lapsing customers, new arrivals for the best."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving import Recommender
from tests.serving_shop import DAY, END_DAY, T0, build_shop_model

NOW = T0 + END_DAY * DAY
# In this 70-day shop, customers quiet for more than two days count as lapsing.
QUICK_TIERS = {"new_days": 0.01, "lapsing_days": 1.0, "at_risk_days": 2.0, "churned_days": 1000.0}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shop_model(
        tmp_path_factory.mktemp("tiers-shop"),
        portraits=QUICK_TIERS,
        serving={"segment_by": ["region"]},  # the default tier rules
        # served as configured: these tests are of what each rule does, not whether it pays.
        training={"check_rules": False},
    )


def test_a_lapsing_customer_gets_a_win_back_list_led_by_rebuys_and_favourites(
    shop: Path,
) -> None:
    rec = Recommender.load(shop)
    profile = rec.profile(100)  # coffee every 10 days, last on day 60
    assert profile is not None and profile["tier"] in {"at_risk", "potential"}
    items = rec.recommend(100, n=10, now=NOW)
    assert len(items) == 10 and len(set(items.item_ids)) == 10
    # 40% for what they rebuy (only the coffee is due), then 30% of favourite categories.
    assert items[0].source == "repurchase" and items[0].item_id == "sku5"
    assert items[0].reason.startswith("bought every ~10 days")
    assert [r.source for r in items[1:4]] == ["favourite_category"] * 3
    favourite = profile["category_1"]
    assert items[1].reason == f"popular in {favourite}, one of your favourite categories"
    assert {r.source for r in items[4:]} <= {
        "personal",
        "neighbours",
        "complementary",
        "repurchase",
    }


def test_the_best_customers_see_new_arrivals_first(shop: Path) -> None:
    rec = Recommender.load(shop)
    best = [u for u in range(60) if (rec.profile(u) or {}).get("tier") == "high_value"]
    if not best:
        pytest.skip("no high-value customer in this shop at these thresholds")
    items = rec.recommend(best[0], n=10, now=NOW)
    assert items[0].source == "new_item" and items[0].item_id == "sku-new"
    assert items[0].reason.startswith("new arrival")


def test_tier_rules_are_configuration(tmp_path: Path) -> None:
    root = build_shop_model(
        tmp_path, portraits=QUICK_TIERS, serving={"segment_by": ["region"], "tier_leads": {}}
    )
    items = Recommender.load(root).recommend(100, n=10, now=NOW)
    assert "favourite_category" not in {r.source for r in items}


def test_an_unknown_tier_or_strategy_in_the_rules_is_refused(tmp_path: Path) -> None:
    from recsys.errors import ConfigError
    from tests.serving_shop import shop_config, write_shop

    write_shop(tmp_path)
    with pytest.raises(ConfigError, match="unknown tier 'vip'"):
        shop_config(tmp_path, serving={"tier_leads": {"vip": {"trending": 0.5}}})
    with pytest.raises(ConfigError, match="unknown strategy 'coupons'"):
        shop_config(tmp_path, serving={"tier_leads": {"new": {"coupons": 0.5}}})
    with pytest.raises(ConfigError, match=r"share in \(0, 1\]"):
        shop_config(tmp_path, serving={"tier_leads": {"new": {"trending": 1.5}}})
