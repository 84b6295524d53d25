"""User portraits: RFM, tiers at their boundaries, favourite categories and purchase rhythm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.config import PortraitsConfig
from recsys.errors import ConfigError
from recsys.portraits import build_portraits
from recsys.schema import EventType as E
from tests.models_fixtures import DAY, T0, fit_data

P, V, R = E.PURCHASE, E.VIEW, E.RETURN
NOW = T0 + 200 * DAY
PRICES = np.array([1.0, 2.0, 3.0, 50.0, 100.0, 200.0])
CATEGORIES = np.array([0, 0, 1, 1, 2, 2], dtype=np.int32)
ROWS = [
    ("new", 0, P, 190, "n1"),
    ("active", 0, P, 150, "a1"),
    ("active", 1, P, 180, "a2"),
    ("active", 1, P, 180, "a2"),  # the same order twice: still one order
    ("high", 5, P, 100, "h1"),
    ("high", 4, P, 150, "h2"),
    ("high", 5, P, 195, "h3"),
    ("high", 0, V, 199),
    ("potential", 5, P, 10, "p1"),
    ("potential", 5, P, 100, "p2"),
    ("risk", 2, P, 100, "r1"),
    ("churned", 1, P, 5, "c1"),
    ("churned", 3, P, 6, "c2"),
    ("churned", 3, R, 7),  # returned: the spend drops by its price
    ("browser", 4, V, 50),
    ("browser", 4, V, 60),
    ("browser", 2, V, 70),
]


def _portraits(config: PortraitsConfig | None = None):  # type: ignore[no-untyped-def]
    data = fit_data(ROWS, items=list(range(6)))
    users = ["active", "browser", "churned", "high", "new", "potential", "risk"]
    portraits = build_portraits(
        data.history, CATEGORIES, PRICES, NOW, config, np.array(["toys", "food", "tools"])
    )
    frame = portraits.frame
    frame.index = users  # fit_data's id map sorts the user ids
    return portraits, frame


def test_recency_frequency_and_spend_follow_orders_and_returns() -> None:
    _, frame = _portraits()
    assert frame.loc["active", "frequency"] == 2  # two rows of one order count once
    assert frame.loc["active", "recency_days"] == 20
    assert frame.loc["high", "monetary"] == 500.0
    assert frame.loc["churned", "monetary"] == 2.0  # 2 + 50 - 50 returned
    assert np.isnan(frame.loc["browser", "recency_days"]) and frame.loc["browser", "frequency"] == 0


def test_rfm_scores_are_quantiles_among_customers_with_ties_sharing_a_score() -> None:
    _, frame = _portraits()
    # Six customers, five scores: one plus the whole fifths of customers below each.
    assert frame.loc["high", "m_score"] == 5 and frame.loc["potential", "m_score"] == 4
    assert frame.loc["churned", "r_score"] == 1 and frame.loc["new", "r_score"] == 4
    assert frame.loc["high", "r_score"] == 5
    # Frequencies 1,1,1,2,2,3: the three one-order customers tie at the bottom.
    assert frame.loc[["new", "risk"], "f_score"].tolist() == [1, 1]
    assert frame.loc["high", "rfm"] == "555" and frame.loc["browser", "rfm"] == ""
    assert frame.loc["browser", ["r_score", "f_score", "m_score"]].tolist() == [0, 0, 0]


def test_each_tier_rule_in_its_order() -> None:
    _, frame = _portraits()
    assert frame["tier"].to_dict() == {
        "active": "active",
        "browser": "browser",
        "churned": "churned",
        "high": "high_value",
        "new": "new",
        "potential": "potential",
        "risk": "at_risk",
    }
    assert frame.loc["risk", "stage"] == "lapsed" and frame.loc["browser", "stage"] == "prospect"
    assert frame.loc["new", "stage"] == "first_purchase" and frame.loc["high", "stage"] == "repeat"


@pytest.mark.parametrize(
    ("at_risk_days", "expected"), [(99.0, "at_risk"), (100.0, "active"), (101.0, "active")]
)
def test_at_risk_starts_strictly_after_its_threshold(at_risk_days: float, expected: str) -> None:
    config = PortraitsConfig(lapsing_days=45.0, at_risk_days=at_risk_days)
    _, frame = _portraits(config)
    assert frame.loc["risk", "tier"] == expected  # quiet for exactly 100 days


def test_favourite_categories_price_band_and_rhythm() -> None:
    _, frame = _portraits()
    assert frame.loc["high", "category_1"] == "tools" and pd.isna(frame.loc["high", "category_2"])
    assert frame.loc["active", ["category_1", "category_1_share"]].tolist() == ["toys", 1.0]
    # A browser's favourites come from what they looked at.
    assert frame.loc["browser", "category_1"] == "tools"
    assert frame.loc["browser", "category_1_share"] == pytest.approx(2 / 3)
    assert frame.loc["high", "interval_days"] == 47.5  # gaps of 50 and 45 days
    assert np.isnan(frame.loc["new", "interval_days"])
    assert frame.loc["high", "price_band"] == "high" and frame.loc["new", "price_band"] == "low"
    assert frame.loc["high", "last_activity"] == T0 + 199 * DAY


def test_the_tier_summary_adds_up() -> None:
    portraits, _ = _portraits()
    table = portraits.summary()
    assert table["users"].sum() == 7 and table.loc["high_value", "users"] == 1
    assert table["revenue_share"].sum() == pytest.approx(1.0)
    assert "high_value" in portraits.format_summary()


def test_thresholds_out_of_order_are_refused() -> None:
    with pytest.raises(ConfigError, match="lapsing_days <= at_risk_days < churned_days"):
        PortraitsConfig(at_risk_days=200.0, churned_days=180.0)


@pytest.mark.parametrize(("new_days", "expected"), [(10.0, "new"), (9.99, "active")])
def test_new_means_one_order_within_new_days_inclusive(new_days: float, expected: str) -> None:
    _, frame = _portraits(PortraitsConfig(new_days=new_days))
    assert frame.loc["new", "tier"] == expected  # one order, 10 days ago


@pytest.mark.parametrize(("churned_days", "expected"), [(194.0, "at_risk"), (193.99, "churned")])
def test_churned_starts_strictly_after_churned_days(churned_days: float, expected: str) -> None:
    _, frame = _portraits(PortraitsConfig(churned_days=churned_days))
    assert (
        frame.loc["churned", "tier"] == expected
    )  # last order on day 6: quiet for exactly 194 days
