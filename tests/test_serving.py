"""Serving: every visitor gets n items with a source and a reason, fast and safely."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from recsys.errors import ModelDirError
from recsys.modeldir import current_version, publish
from serving import Recommender
from tests.serving_shop import DAY, END_DAY, T0, build_shop_model, shop_config
from training.job import train

NOW = T0 + END_DAY * DAY


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shop_model(tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="module")
def rec(shop: Path) -> Recommender:
    return Recommender.load(shop)


def test_a_known_customer_gets_n_items_from_the_blend_each_with_a_reason(rec: Recommender) -> None:
    items = rec.recommend(5, n=8, now=NOW)
    assert len(items) == 8
    assert items.user_known and items.model_version == "000001"
    assert len(set(items.item_ids)) == 8
    blend_sources = {"personal", "neighbours", "repurchase", "complementary", "reminder"}
    assert {r.source for r in items} <= blend_sources
    assert all(r.reason for r in items)
    assert [r.score for r in items] == sorted((r.score for r in items), reverse=True)


def test_anonymous_session_gets_items_similar_to_what_it_viewed(rec: Recommender) -> None:
    items = rec.recommend(None, n=3, session_items=["sku3"], now=NOW)
    neighbours = rec.similar_items("sku3", n=10).item_ids
    assert items[0].source == "session"
    assert items[0].reason == "because you viewed sku3 just now"
    assert items[0].item_id in neighbours
    assert "sku3" not in items.item_ids
    assert not items.user_known


def test_a_visitor_who_arrived_after_training_is_folded_in_from_the_session(
    rec: Recommender,
) -> None:
    items = rec.recommend(123456, n=10, session_items=["sku3", "sku4"], now=NOW)
    assert len(items) == 10
    assert not items.user_known
    assert {"session", "personal"} <= {r.source for r in items}


def test_unknown_session_items_are_ignored_and_reported(rec: Recommender) -> None:
    items = rec.recommend(None, n=4, session_items=["sku3", "gone-1", "gone-2"], now=NOW)
    assert items.unknown_session_items == ("gone-1", "gone-2")
    assert items[0].source == "session"


def test_a_visitor_we_know_nothing_about_gets_trending_then_popular(rec: Recommender) -> None:
    items = rec.recommend(None, n=25, now=NOW)
    sources = [r.source for r in items]
    assert sources[0] == "trending"
    order = {"trending": 0, "popular": 1}
    assert [order[s] for s in sources] == sorted(order[s] for s in sources)
    assert len(items) == 21  # every available item: sku1 is out of stock
    assert items[0].reason == "trending now"


def test_a_customer_known_only_by_attributes_gets_popular_in_their_segment(
    rec: Recommender,
) -> None:
    items = rec.recommend(9999, n=4, now=NOW)
    assert [r.source for r in items] == ["segment_popular"] * 4
    assert items[0].reason == "popular with customers like you (region=north)"


def test_coffee_bought_every_10_days_is_due_again_with_its_reason(rec: Recommender) -> None:
    items = rec.recommend(100, n=5, now=NOW)
    assert items[0].item_id == "sku5"
    assert items[0].source == "repurchase"
    assert items[0].reason == "bought every ~10 days, last 10 days ago"


def test_an_item_nobody_buys_twice_is_not_recommended_to_its_buyers(rec: Recommender) -> None:
    everything = rec.recommend(0, n=22, now=NOW, available_only=False)
    assert "sku-fridge" not in everything.item_ids
    again = rec.recommend(0, n=22, now=NOW, available_only=False, exclude_purchased=False)
    assert "sku-fridge" in again.item_ids


def test_excluded_and_unavailable_items_never_appear(rec: Recommender) -> None:
    items = rec.recommend(5, n=21, exclude=["sku17", "unknown-id"], now=NOW)
    assert "sku17" not in items.item_ids
    assert "sku1" not in items.item_ids  # out of stock
    with_stock = rec.recommend(5, n=22, available_only=False, exclude_purchased=False, now=NOW)
    assert "sku1" in with_stock.item_ids


def test_a_category_filter_that_empties_the_blend_falls_through_to_a_full_list(
    rec: Recommender,
) -> None:
    items = rec.recommend(5, n=5, categories=["c2"], now=NOW)
    categories = {
        rec.model.category_label(int(rec.model.item_category[rec.model.items.index_of(i)]))
        for i in items.item_ids
    }
    assert categories == {"c2"}
    assert len(items) == 5  # c2 holds sku2, 6, 10, 14, 18: all five, whatever the blend had
    assert rec.recommend(None, n=1, categories=["appliances"], now=NOW).item_ids == ["sku-fridge"]


def test_a_cap_per_category_keeps_lists_diverse(rec: Recommender) -> None:
    items = rec.recommend(5, n=8, max_per_category=2, now=NOW)
    cats = [int(rec.model.item_category[rec.model.items.index_of(i)]) for i in items.item_ids]
    assert len(items) == 8
    assert max(cats.count(c) for c in set(cats)) <= 2


def test_a_new_item_without_interactions_has_similar_items(rec: Recommender) -> None:
    items = rec.similar_items("sku-new", n=3)
    assert len(items) == 3
    assert items[0].source == "content"
    assert items[0].item_id == "sku0"  # same category, brand and price band
    assert items[0].reason == "similar to sku-new (same category or brand)"


def test_new_arrivals_can_be_boosted_into_lists(tmp_path: Path) -> None:
    root = build_shop_model(tmp_path, serving={"segment_by": ["region"], "new_item_boost": 0.2})
    items = Recommender.load(root).recommend(5, n=5, now=NOW)
    assert items[0].item_id == "sku-new" and items[0].source == "new_item"
    assert items[0].reason == "new arrival in category c0"


def test_complementary_items_come_from_baskets(rec: Recommender) -> None:
    items = rec.complementary_items("sku3", n=3)
    assert all(r.source == "complements" for r in items)
    assert all(r.reason == "frequently bought with sku3" for r in items)
    assert rec.complementary_items("unknown", n=3).item_ids == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda r: r.recommend(5, n=0),
            "n must be between 1 and 500 (got 0); set serving.max_n to allow more",
        ),
        (
            lambda r: r.recommend(5, n=10**6),
            "n must be between 1 and 500 (got 1000000); set serving.max_n to allow more",
        ),
        (lambda r: r.recommend(5, n="3"), "n must be a whole number (got str '3')"),
        (lambda r: r.recommend("5"), "user ids of this model are whole numbers; got str '5'"),
        (lambda r: r.recommend(5.0), "user ids of this model are whole numbers; got float 5.0"),
        (lambda r: r.recommend(True), "user id must be a whole number, not True"),
        (
            lambda r: r.recommend(None, session_items=[3]),
            "item ids of this model are text; got int 3",
        ),
        (lambda r: r.similar_items(7), "item ids of this model are text; got int 7"),
    ],
)
def test_bad_arguments_are_value_errors_with_a_clear_message(
    rec: Recommender, call: object, message: str
) -> None:
    with pytest.raises(ValueError) as err:
        call(rec)  # type: ignore[operator]
    assert str(err.value) == message


def test_an_unknown_user_falls_back_instead_of_failing(rec: Recommender) -> None:
    items = rec.recommend(424242, n=3, now=NOW)
    assert len(items) == 3 and not items.user_known


def _copy_shop(shop: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(shop, root)
    return root


def test_reload_switches_to_a_newly_published_version(shop: Path, tmp_path: Path) -> None:
    root = _copy_shop(shop, tmp_path)
    rec = Recommender.load(root)
    assert rec.reload() is False
    folder = shop.parent
    train(shop_config(folder), out=root, force=True)
    assert rec.reload() is True
    assert rec.version == "000002"
    assert rec.recommend(5, n=3, now=NOW).model_version == "000002"


def test_a_corrupt_version_is_refused_and_the_old_model_keeps_serving(
    shop: Path, tmp_path: Path
) -> None:
    root = _copy_shop(shop, tmp_path)
    rec = Recommender.load(root)
    bad = root / "000002"
    shutil.copytree(root / "000001", bad)
    manifest = (
        (bad / "manifest.json").read_text().replace('"version": "000001"', '"version": "000002"')
    )
    (bad / "manifest.json").write_text(manifest)
    with (bad / "als.npz").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    (root / "CURRENT").write_text("000002\n")
    with pytest.raises(ModelDirError, match=r"als\.npz"):
        rec.reload()
    assert rec.version == "000001"
    assert len(rec.recommend(5, n=3, now=NOW)) == 3


def test_answers_come_wholly_from_one_version_while_reload_swaps_models(tmp_path: Path) -> None:
    root = build_shop_model(tmp_path / "a", prefix="A")
    b_root = build_shop_model(
        tmp_path / "b", prefix="B", output={"models": str(root), "rejects": "rejects"}
    )
    assert b_root == root and current_version(root) == "000002"
    prefix = {"000001": "A", "000002": "B"}
    rec = Recommender.load(root)
    errors: list[BaseException] = []
    answers = 0
    stop = threading.Event()

    def call() -> None:
        nonlocal answers
        while not stop.is_set():
            try:
                items = rec.recommend(5, n=10, now=NOW)
                expected = prefix[items.model_version]
                assert all(i.startswith(expected) for i in items.item_ids), items.item_ids
                answers += 1
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for version in ["000001", "000002"] * 5:
        publish(root, version)
        rec.reload()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert answers > 0


def test_the_fallback_chain_is_configuration(tmp_path: Path) -> None:
    root = build_shop_model(tmp_path, serving={"chain": ["popular"], "tier_leads": {}})
    items = Recommender.load(root).recommend(5, n=4, now=NOW)
    assert [r.source for r in items] == ["popular"] * 4
    assert items[0].reason == "popular in the shop"
