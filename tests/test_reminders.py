"""Reminders: what a shopper viewed, carted or saved comes back until they buy it, with a reason.

The blend's `reminder` part scores each item the user showed interest in and has not bought
since: the sum over its events of the event type's weight (view 1, favourite 3, cart 4) halved
every 48 hours of age. The served reason says what they did and when, in the shop's time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.blend import SOURCES, Blender, Ranked, Strategies
from recsys.config import BlendConfig, config_from_dict
from recsys.models.popularity import PopularityModel
from recsys.reasons import day_words
from recsys.schema import EventType as E
from serving import Recommendation, Recommender
from tests.models_fixtures import DAY, T0, fit_data
from training.job import train

ME = 0  # "me" is the first user of every log below
OTHERS = [("other", 5, E.VIEW, 0), ("other", 5, E.PURCHASE, 0)]


def blender(rows: list[tuple[Any, ...]], config: BlendConfig | None = None) -> Blender:
    """A blend over "me" and the rows' other users, items 0..5: history and popularity only."""
    data = fit_data(rows + OTHERS, users=["me", "other"], items=list(range(6)))
    strategies = Strategies(history=data.history, popularity=PopularityModel().fit(data))
    return Blender(strategies, config)


def reminders(blend: Blender, now: int) -> dict[int, float]:
    """The reminder part alone for "me": item -> score (the part's best scores 1)."""
    ranked = blend.rank(ME, now, 6, only="reminder")
    assert {SOURCES[s] for s in ranked.sources} <= {"reminder"}
    return dict(zip(ranked.items.tolist(), ranked.scores.tolist(), strict=True))


def end_of(rows: list[tuple[Any, ...]]) -> int:
    """The data's end: the time of the latest row (fit_data counts days from T0)."""
    return T0 + int(max(r[3] for r in rows) * DAY)


def sources(ranked: Ranked) -> list[str]:
    return [SOURCES[s] for s in ranked.sources]


def test_an_item_bought_after_the_last_look_is_not_reminded_until_looked_at_again() -> None:
    rows = [
        ("me", 0, E.VIEW, 0),
        ("me", 0, E.PURCHASE, 1),  # viewed, then bought: done
        ("me", 1, E.PURCHASE, 0),
        ("me", 1, E.VIEW, 1),  # bought, then looked at again: back
        ("me", 2, E.CART, 1),
    ]
    got = reminders(blender(rows), end_of(rows))
    assert set(got) == {1, 2}


def test_a_cart_outranks_a_saved_item_which_outranks_a_view_of_the_same_age() -> None:
    rows = [("me", 0, E.VIEW, 2), ("me", 1, E.FAVOURITE, 2), ("me", 2, E.CART, 2)]
    blend = blender(rows)
    ranked = blend.rank(ME, end_of(rows), 6, only="reminder")
    assert ranked.items.tolist() == [2, 1, 0]
    # cart 4, favourite 3, view 1: scaled to the best.
    assert ranked.scores.tolist() == pytest.approx([1.0, 0.75, 0.25])


def test_interest_counts_half_as_much_after_48_hours() -> None:
    rows = [("me", 0, E.VIEW, 0), ("me", 1, E.VIEW, 2)]  # 0 was viewed two days earlier
    assert reminders(blender(rows), end_of(rows)) == pytest.approx({1: 1.0, 0: 0.5})


def test_interest_older_than_the_reminder_horizon_is_no_longer_a_reminder() -> None:
    # Carted 40 days before the data's end, viewed 10 days before it: the default horizon
    # (30 days) keeps the view and lets the cart go.
    rows = [("me", 0, E.CART, 0), ("me", 1, E.VIEW, 30), ("me", 2, E.VIEW, 40)]
    assert set(reminders(blender(rows), end_of(rows))) == {1, 2}
    longer = blender(rows, BlendConfig(reminder_max_days=60.0))
    assert set(reminders(longer, end_of(rows))) == {0, 1, 2}


def test_three_views_of_one_item_count_three_times_one_view() -> None:
    rows = [("me", 0, E.VIEW, 1)] * 3 + [("me", 1, E.VIEW, 1)]
    assert reminders(blender(rows), end_of(rows)) == pytest.approx({0: 1.0, 1: 1 / 3})


def test_the_half_life_and_the_type_weights_are_the_blend_configurations() -> None:
    older = [("me", 0, E.VIEW, 0), ("me", 1, E.VIEW, 2)]
    day_half_life = blender(older, BlendConfig(reminder_half_life_hours=24.0))
    assert reminders(day_half_life, end_of(older)) == pytest.approx({1: 1.0, 0: 0.25})

    viewed_and_carted = [("me", 0, E.VIEW, 1), ("me", 2, E.CART, 1)]
    now = end_of(viewed_and_carted)
    # A cart that weighs nothing reminds of nothing ...
    no_carts = blender(viewed_and_carted, BlendConfig(reminder_cart=0.0))
    assert reminders(no_carts, now) == pytest.approx({0: 1.0})
    # ... and views weighing 5 outrank a cart's 4.
    heavy_views = blender(viewed_and_carted, BlendConfig(reminder_view=5.0))
    assert reminders(heavy_views, now) == pytest.approx({0: 1.0, 2: 0.8})


def test_a_customer_who_only_bought_gets_no_reminders() -> None:
    rows = [("me", 0, E.PURCHASE, 0), ("me", 1, E.PURCHASE, 1)]
    assert reminders(blender(rows), end_of(rows)) == {}


def test_reminder_weight_0_turns_the_part_off_in_the_blend_but_it_still_runs_alone() -> None:
    rows = [("me", 0, E.VIEW, 1), ("me", 1, E.CART, 1)]
    now = end_of(rows)
    default = blender(rows).rank(ME, now, 6)
    assert sources(default)[:2] == ["reminder", "reminder"]
    off = blender(rows, BlendConfig(reminder=0.0))
    assert "reminder" not in sources(off.rank(ME, now, 6))
    assert reminders(off, now) == pytest.approx({1: 1.0, 0: 0.25})


# An anonymous visit that looked at item a, then b, then a again; popular items left out, so
# the visit's items can only come back as reminders.
A, B = 1, 2
VISIT = np.array([A, B, A])  # newest last
ANONYMOUS = -1
ONE_VIEW = [("me", 0, E.VIEW, 0)]


def test_with_visit_reminders_a_visits_items_come_back_most_recent_first() -> None:
    blend = blender(ONE_VIEW, BlendConfig(visit_reminder=1.0, popular=0.0))
    ranked = blend.rank(ANONYMOUS, end_of(ONE_VIEW), 6, session=VISIT)
    assert ranked.items.tolist() == [A, B]
    assert sources(ranked) == ["reminder", "reminder"]
    # The weight 1, each step back counting half (session_decay 0.5).
    assert ranked.scores.tolist() == pytest.approx([1.0, 0.5])


def test_by_default_a_visits_items_do_not_come_back() -> None:
    assert BlendConfig().visit_reminder == 0
    blend = blender(ONE_VIEW, BlendConfig(popular=0.0))
    ranked = blend.rank(ANONYMOUS, end_of(ONE_VIEW), 6, session=VISIT)
    assert len(ranked) == 0


def test_visit_reminders_keep_their_own_weight_when_history_reminders_are_off() -> None:
    config = BlendConfig(reminder=0.0, visit_reminder=1.0, popular=0.0)
    blend = blender(ONE_VIEW, config)
    ranked = blend.rank(ANONYMOUS, end_of(ONE_VIEW), 6, session=VISIT)
    assert ranked.items.tolist() == [A, B]


# day_words: how a reason dates an event, in the shop's time zone.
SHANGHAI = "Asia/Shanghai"


def utc(text: str) -> int:
    """Unix seconds of a UTC wall-clock time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# Friday 1 Dec 2017, 01:30 in Shanghai (Thursday 30 Nov, 17:30 UTC).
NOW = utc("2017-11-30 17:30")


@pytest.mark.parametrize(
    ("when", "words"),
    [
        (utc("2017-11-30 16:10"), "earlier today"),  # Fri 00:10 CST
        (utc("2017-11-30 15:50"), "yesterday"),  # Thu 23:50 CST: yesterday, though today in UTC
        (utc("2017-11-29 16:00"), "yesterday"),  # Thu 00:00 CST
        (utc("2017-11-28 17:30"), "Wednesday"),  # Wed 01:30 CST (Tuesday in UTC)
        (utc("2017-11-25 03:00"), "Saturday"),  # six days back: still a weekday
        (utc("2017-11-24 03:00"), "24 Nov"),  # seven days back: a date
        (utc("2017-10-31 17:00"), "1 Nov"),  # a date in Shanghai, 31 Oct in UTC
    ],
)
def test_a_past_moment_is_dated_as_a_shopper_in_shanghai_says_it(when: int, words: str) -> None:
    assert day_words(when, NOW, SHANGHAI) == words


def test_the_same_moments_are_dated_by_the_utc_calendar_in_a_utc_shop() -> None:
    assert day_words(utc("2017-11-30 15:50"), NOW, "UTC") == "earlier today"
    assert day_words(utc("2017-11-28 17:30"), NOW, "UTC") == "Tuesday"
    assert day_words(utc("2017-10-31 17:00"), NOW, "UTC") == "31 Oct"


# Serving: a small Taobao-shaped shop in China Standard Time, trained to a model directory.
SHOPPER = 500
CARTED, SAVED, SAVED_MONDAY, VIEWED, CARTED_AGAIN = 22, 23, 21, 24, 26


def browse_log() -> pd.DataFrame:
    """24 shoppers' views and purchases over six days, then the shopper's own history."""
    rows: list[tuple[int, int, int, str, int]] = []
    for user in range(1, 25):
        for day in range(6):
            at = utc("2017-11-25 02:00") + day * 86_400 + user * 60
            for k in range(3):
                item = (user * 3 + day * 5 + k * 7) % 20 + 1
                rows.append((user, item, item % 3, "pv", at + k * 30))
            if day % 2 == 0:
                item = (user + day) % 20 + 1
                rows.append((user, item, item % 3, "buy", at + 200))
    rows += [
        # Saved on Monday 27 Nov, 10:00 CST, and again on Tuesday: dated by the first.
        (SHOPPER, SAVED_MONDAY, 1, "fav", utc("2017-11-27 02:00")),
        (SHOPPER, SAVED_MONDAY, 1, "fav", utc("2017-11-28 02:00")),
        # Carted on Wednesday 29 Nov, 01:30 CST (still Tuesday in UTC), and again on Thursday.
        (SHOPPER, CARTED, 0, "cart", utc("2017-11-28 17:30")),
        (SHOPPER, CARTED, 0, "cart", utc("2017-11-30 02:00")),
        # Carted on Monday, bought an hour later, carted again on Thursday at 13:00 CST.
        (SHOPPER, CARTED_AGAIN, 2, "cart", utc("2017-11-27 02:00")),
        (SHOPPER, CARTED_AGAIN, 2, "buy", utc("2017-11-27 03:00")),
        (SHOPPER, CARTED_AGAIN, 2, "cart", utc("2017-11-30 05:00")),
        # Saved on Thursday 30 Nov, 11:00 CST.
        (SHOPPER, SAVED, 1, "fav", utc("2017-11-30 03:00")),
        # Viewed on Wednesday evening, and again at 01:00 CST on Friday 1 Dec.
        (SHOPPER, VIEWED, 2, "pv", utc("2017-11-29 10:00")),
        (SHOPPER, VIEWED, 2, "pv", utc("2017-11-30 17:00")),
    ]
    return pd.DataFrame(
        rows, columns=["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    folder = tmp_path_factory.mktemp("taobao_shop")
    browse_log().to_csv(folder / "UserBehavior.csv", index=False)
    config = config_from_dict(
        {
            "timezone": SHANGHAI,
            "seed": 3,
            "events": {
                "path": "UserBehavior.csv",
                "timestamp_unit": "s",
                "event_types": {
                    "pv": "view",
                    "cart": "cart",
                    "fav": "favourite",
                    "buy": "purchase",
                },
                "columns": {
                    "user": "user_id",
                    "item": "item_id",
                    "timestamp": "timestamp",
                    "event": "behavior_type",
                    "category": "category_id",
                },
            },
            "models": {"als": {"factors": 8, "iterations": 5}},
            "blend": {"visit_reminder": 8.0},
            # the blend's reminders are the story here; the learned ranker has its own tests.
            "ranker": {"enabled": False},
            "training": {"holdout_days": 1},
            "serving": {"tier_leads": {}},
            "output": {"models": "models", "rejects": "rejects"},
        },
        base_dir=folder,
    )
    train(config, force=True)
    return Recommender.load(config.output.models)


@pytest.fixture(scope="module")
def shopper_list(shop: Recommender) -> dict[Any, Recommendation]:
    return {r.item_id: r for r in shop.recommend(SHOPPER, n=10, now=NOW)}


@pytest.fixture(scope="module")
def shopper_list_with_purchases(shop: Recommender) -> dict[Any, Recommendation]:
    items = shop.recommend(SHOPPER, n=10, now=NOW, exclude_purchased=False)
    return {r.item_id: r for r in items}


def test_a_carted_item_is_in_your_cart_since_the_shops_day_it_was_first_carted(
    shopper_list: dict[Any, Recommendation],
) -> None:
    carted = shopper_list[CARTED]
    assert carted.source == "reminder"
    # 01:30 on Wednesday in Shanghai (Tuesday in UTC); carted again on Thursday.
    assert carted.reason == "in your cart since Wednesday"


def test_a_cart_before_the_last_purchase_does_not_date_the_reminder(
    shopper_list_with_purchases: dict[Any, Recommendation],
) -> None:
    again = shopper_list_with_purchases[CARTED_AGAIN]
    # Carted on Monday and bought; carted again on Thursday: "since yesterday", not Monday.
    assert (again.source, again.reason) == ("reminder", "in your cart since yesterday")


def test_a_bought_item_nobody_rebuys_stays_out_even_when_carted_again_unless_asked(
    shopper_list: dict[Any, Recommendation],
    shopper_list_with_purchases: dict[Any, Recommendation],
) -> None:
    # The reminder part proposes it, but serving's purchase filter (exclude_purchased, on by
    # default) leaves out bought items without a learned repurchase cycle: a one-week browse
    # log has none. A shop that wants them back turns the filter off.
    assert CARTED_AGAIN not in shopper_list
    assert CARTED_AGAIN in shopper_list_with_purchases


def test_a_saved_item_says_when_you_saved_it(shopper_list: dict[Any, Recommendation]) -> None:
    assert shopper_list[SAVED].reason == "you saved it yesterday"
    assert shopper_list[SAVED_MONDAY].reason == "you saved it on Monday"
    assert {shopper_list[SAVED].source, shopper_list[SAVED_MONDAY].source} == {"reminder"}


def test_a_viewed_item_asks_whether_you_are_still_thinking_about_it(
    shopper_list: dict[Any, Recommendation],
) -> None:
    viewed = shopper_list[VIEWED]
    assert viewed.source == "reminder"
    # Dated by the last look (Friday 01:00 CST), not the first (Wednesday).
    assert viewed.reason == "you looked at it earlier today: still thinking about it?"


def test_reminders_lead_the_shoppers_list_cart_first(
    shopper_list: dict[Any, Recommendation],
) -> None:
    ids = list(shopper_list)
    assert ids[0] == CARTED
    assert set(ids[:4]) == {CARTED, SAVED, SAVED_MONDAY, VIEWED}


def test_an_anonymous_visits_items_come_back_as_reminders_newest_first(shop: Recommender) -> None:
    items = shop.recommend(None, n=5, session_items=[3, 7, 3], now=NOW)
    assert items.item_ids[:2] == [3, 7]
    assert [r.source for r in items[:2]] == ["reminder", "reminder"]
    assert items[0].reason == "still thinking about it?"
