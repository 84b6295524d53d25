"""Live events between nightly runs: what a visitor does now changes their next answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.blend import Events
from recsys.config import LiveConfig
from recsys.modeldir import publish
from recsys.portraits import portraits_of
from recsys.schema import EVENT_TYPES
from recsys.split import time_split
from serving import Recommender
from serving.live import LiveEvent, LiveStore
from tests.serving_shop import DAY, END_DAY, T0, shop_config, write_shop
from training.dataset import build_dataset, subset
from training.job import nightly_model, version_content
from training.scoring import served_ranker
from training.steps import Steps

NOW = T0 + END_DAY * DAY


@pytest.fixture
def rec(shop_models: Path) -> Recommender:
    return Recommender.load(shop_models)


def test_an_item_nobody_rebuys_is_gone_from_the_next_list_once_bought(rec: Recommender) -> None:
    # customer 9 was never offered... the fridge: nobody buys a fridge twice
    assert "sku-fridge" in rec.recommend(9, n=22, now=NOW, available_only=False).item_ids
    rec.record_event(9, "sku-fridge", "purchase", NOW - 60)
    assert "sku-fridge" not in rec.recommend(9, n=22, now=NOW, available_only=False).item_ids


def test_a_purchase_now_brings_what_goes_with_it(rec: Recommender) -> None:
    before = rec.recommend(555, n=10, now=NOW)
    rec.record_event(555, "sku4", "purchase", NOW - 60)
    after = rec.recommend(555, n=10, now=NOW)
    assert after.item_ids != before.item_ids
    assert not after.user_known
    assert {r.source for r in after} & {"complementary", "neighbours", "personal", "repurchase"}


def test_a_cart_becomes_a_reminder_at_once(rec: Recommender) -> None:
    rec.record_event(3, "sku19", "cart", NOW - 3600)
    found = {r.item_id: r for r in rec.recommend(3, n=10, now=NOW)}
    assert "sku19" in found
    assert found["sku19"].source == "reminder"
    assert "in your cart since" in found["sku19"].reason


def test_a_new_visitors_third_event_changes_their_list(rec: Recommender) -> None:
    user = 4242
    first = rec.recommend(user, n=10, now=NOW)
    assert not first.user_known
    rec.record_event(user, "sku3", "view", NOW - 600)
    rec.record_event(user, "sku3", "view", NOW - 590)
    after_two = rec.recommend(user, n=10, now=NOW)
    assert after_two.item_ids != first.item_ids
    rec.record_event(user, "sku11", "cart", NOW - 580)
    after_three = rec.recommend(user, n=10, now=NOW)
    assert after_three.item_ids != after_two.item_ids
    assert "sku11" in after_three.item_ids  # the cart, as a reminder
    assert {r.source for r in after_three} - {"popular", "trending", "segment_popular"}


def test_an_anonymous_visitor_is_kept_apart_from_a_user_with_the_same_id(rec: Recommender) -> None:
    rec.record_event(None, "sku12", "cart", NOW - 60, visitor_id=8)
    assert "sku12" not in [
        r.item_id for r in rec.recommend(8, n=5, now=NOW) if r.source == "reminder"
    ]
    assert "sku12" in rec.recommend(None, n=10, now=NOW, visitor_id=8).item_ids


def test_events_before_the_models_data_end_or_after_the_call_are_ignored(rec: Recommender) -> None:
    model = rec.model
    before = rec.recommend(11, n=10, now=NOW).item_ids
    rec.record_event(11, "sku18", "cart", model.data_end - 10)  # the model has it already
    rec.record_event(11, "sku17", "cart", NOW + 3600)  # after the moment asked about
    assert rec.recommend(11, n=10, now=NOW).item_ids == before


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item_id": "sku1", "event_type": "click"}, "event_type must be one of"),
        ({"item_id": None, "event_type": "view"}, "item"),
        ({"item_id": "sku1", "event_type": "view", "timestamp": "yesterday"}, "timestamp"),
        ({"item_id": "sku1", "event_type": "view", "timestamp": float("nan")}, "timestamp"),
        ({"item_id": "sku1", "event_type": "purchase", "quantity": 0}, "quantity"),
        ({"item_id": 17, "event_type": "view"}, "item ids of this model are text"),
    ],
)
def test_a_bad_event_is_refused_with_the_field_named(
    rec: Recommender, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rec.record_event(1, **fields)  # type: ignore[arg-type]


def test_a_bulk_record_checks_every_event_before_recording_any(rec: Recommender) -> None:
    recorded = rec.live.stats().recorded
    with pytest.raises(ValueError, match="event 1: "):
        rec.record_events(
            [
                {"user_id": 2, "item_id": "sku1", "event_type": "view", "timestamp": NOW},
                {"user_id": 2, "item_id": "sku1", "event_type": "nope", "timestamp": NOW},
            ]
        )
    assert rec.live.stats().recorded == recorded
    assert (
        rec.record_events(
            [{"visitor_id": "v", "item_id": "sku2", "event_type": "view", "timestamp": NOW}]
        )
        == 1
    )


def test_the_store_is_bounded_per_visitor_in_total_and_in_time() -> None:
    store = LiveStore(LiveConfig(max_events_per_user=3, max_users=2, ttl_hours=1))
    store.add("a", [LiveEvent(i, 0, 1000 + i, None) for i in range(5)])
    assert [e.item_id for e in store.of("a", now=1000)] == [2, 3, 4]
    store.add("b", [LiveEvent(1, 0, 1000, None)])
    store.add("c", [LiveEvent(1, 0, 1000, None)])  # "a" is the longest quiet: forgotten
    assert store.of("a", now=1000) == []
    assert store.of("b", now=1000 + 2 * 3600) == []  # past the TTL
    stats = store.stats()
    assert stats.evicted_users == 1 and stats.recorded == 7
    assert stats.dropped_events == 2 + 3 + 1
    assert stats.users == 1 and stats.events == 1


def test_cold_customers_are_evaluated_on_the_list_recommend_serves_after_their_events(
    tmp_path: Path,
) -> None:
    """The evaluation asks a customer new since the cut with their first visit's events as the
    live store holds them: recording those events and calling recommend() gives that list."""
    paths = write_shop(tmp_path)
    events = pd.read_csv(paths["events"])
    # Five customers new in the last week: a visit (views, then a basket), and a later order.
    new = [
        (900 + u, f"sku{(u + k) % 20}", kind, T0 + (END_DAY - 5) * DAY + u * 60 + k, order)
        for u in range(5)
        for k, kind, order in ((0, "view", ""), (1, "buy", f"n{u}"), (2, "buy", f"n{u}"))
    ] + [(900 + u, f"sku{u + 7}", "buy", T0 + (END_DAY - 2) * DAY + u, f"m{u}") for u in range(5)]
    pd.concat([events, pd.DataFrame(new, columns=events.columns)]).to_csv(
        paths["events"], index=False
    )
    config = shop_config(tmp_path, training={"holdout_days": 7})
    dataset = build_dataset(config)
    split = time_split(dataset.events.frame, 7)
    served, _evaluation, train_set, data, fitted = nightly_model(
        subset(dataset, split.train, config), config, Steps()
    )
    portraits = portraits_of(data, config.portraits)
    content = version_content(
        config, train_set, data, fitted, portraits, serving=served.serving, ranker=served.ranker
    )
    publish(tmp_path / "m", content.write(tmp_path / "m").name)
    rec = Recommender.load(tmp_path / "m")
    rank = served_ranker(served)
    test = split.test
    cold = test[~test["user"].isin(train_set.users.ids)]
    assert cold["user"].nunique() == 5
    for user_id, rows in cold.groupby("user"):
        first = rows.sort_values("timestamp").iloc[:3]
        items = served.items.index(first["item"].to_numpy())
        now = int(first["timestamp"].max())
        asked = Events(items, first["event"].to_numpy().astype(np.int8),
                       first["timestamp"].to_numpy().astype(np.int64))  # fmt: skip
        expected = served.item_ids[rank(-1, user_id, 20, asked, now)].tolist()
        for item_id, code, when in first[["item", "event", "timestamp"]].itertuples(index=False):
            rec.record_event(int(user_id), item_id, EVENT_TYPES[code], int(when))
        assert rec.recommend(int(user_id), n=20, now=now).item_ids == expected, user_id
