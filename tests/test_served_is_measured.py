"""What is served is what was measured: evaluated lists are recommend()'s lists, user for user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys.config import Config, load_config
from recsys.modeldir import publish
from recsys.portraits import portraits_of
from recsys.served import ServedModel
from recsys.split import time_split
from serving import Recommender
from tests.serving_shop import shop_config, write_shop
from training.dataset import build_dataset, fit_data, subset
from training.evaluation.evaluate import evaluate
from training.job import fit_models, nightly_model, version_content
from training.scoring import served_ranker
from training.steps import Steps

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "configs" / "sample.toml"


def _evaluated_and_served(config: Config, root: Path) -> tuple[list[Any], list[Any], list[Any]]:
    """Every user's evaluated list and recommend()'s list of the same model at the cut."""
    dataset = build_dataset(config)
    split = time_split(dataset.events.frame, config.training.holdout_days)
    # The model the nightly job would publish at the cut: rules and ranker decided before it.
    served, _evaluation, train, data, models = nightly_model(
        subset(dataset, split.train, config), config, Steps()
    )
    # ... and the same fitted models published to disk, then loaded as a shop loads it.
    content = version_content(
        config,
        train,
        data,
        models,
        portraits_of(data, config.portraits),
        serving=served.serving,
        ranker=served.ranker,
    )
    path = content.write(root)
    publish(root, path.name)
    rec = Recommender.load(root)
    rank = served_ranker(served)
    ids = train.users.ids.tolist()
    evaluated, recommended = [], []
    for user, user_id in enumerate(ids):
        items = rank(user, user_id, 20, None, split.cut)
        evaluated.append(served.item_ids[items].tolist())
        recommended.append(rec.recommend(user_id, n=20, now=split.cut).item_ids)
    return ids, evaluated, recommended


@pytest.mark.parametrize("ranker", [False, True])
def test_every_user_of_a_shop_is_evaluated_on_the_list_recommend_serves(
    tmp_path: Path, ranker: bool
) -> None:
    write_shop(tmp_path)
    config = shop_config(
        tmp_path,
        ranker={"enabled": ranker, "label_days": 7, "periods": 2},
        training={"holdout_days": 7, "rule_min_users": 1},
        serving={"segment_by": ["region"]},  # the default tier rules, checked by the job
    )
    ids, evaluated, recommended = _evaluated_and_served(config, tmp_path / "models")
    assert len(ids) > 30
    for user_id, a, b in zip(ids, evaluated, recommended, strict=True):
        assert a == b, user_id


@pytest.mark.slow
def test_every_customer_of_the_bundled_sample_is_evaluated_on_the_list_recommend_serves(
    tmp_path: Path,
) -> None:
    config = load_config(SAMPLE)
    ids, evaluated, recommended = _evaluated_and_served(config, tmp_path / "models")
    assert len(ids) > 200
    mismatched = [u for u, a, b in zip(ids, evaluated, recommended, strict=True) if a != b]
    assert mismatched == []


def test_recsys_evaluate_scores_the_engine_as_served_with_its_checked_rules(
    tmp_path: Path,
) -> None:
    write_shop(tmp_path)
    config = shop_config(
        tmp_path,
        training={"holdout_days": 7, "rule_min_users": 1},
        evaluation={"holdout_days": 7, "baselines": ["popular", "buy_again"]},
        # customers quiet for two days count as lapsing: the win-back rules have users.
        portraits={"new_days": 0.01, "lapsing_days": 1.0, "at_risk_days": 2.0},
        serving={"segment_by": ["region"]},  # the default tier rules
    )
    results = evaluate([config], progress=False, sessions=False)
    assert any("what Recommender.recommend serves" in note for note in results["notes"])
    nightly = results["nightly"]
    assert nightly is not None and nightly["rules"], "the job's rule checks are reported"
    # every tier rule the job checked is reported with its users, both scores, the interval of
    # the gain, and the rule's own target (win-back: bought from the list; discovery: new items).
    for rule in nightly["rules"]:
        assert {"tier", "lead", "users", "with_rule", "without_rule", "kept"} <= set(rule)
        assert {"low", "high", "target", "target_with", "target_without"} <= set(rule)
        if rule["users"] > 0 and rule["low"] == rule["low"]:
            assert rule["low"] <= rule["high"]
    targets = {rule["lead"]: rule["target"] for rule in nightly["rules"]}
    assert targets.get("repurchase", "bought from the list (hit rate)").startswith("bought")
    assert results["global"]["targets"]["conversion"]["groups"]["known"]["users"] > 0


def test_a_model_loaded_from_memory_answers_as_the_one_loaded_from_disk(tmp_path: Path) -> None:
    write_shop(tmp_path)
    config = shop_config(tmp_path)
    dataset = build_dataset(config)
    data = fit_data(dataset, config)
    models = fit_models(data, config)
    content = version_content(config, dataset, data, models, portraits_of(data, config.portraits))
    in_memory = ServedModel.from_files(content)
    path = content.write(tmp_path / "models")
    on_disk = ServedModel.load(path)
    assert in_memory.manifest["blend"] == on_disk.manifest["blend"]
    rank_a, rank_b = served_ranker(in_memory), served_ranker(on_disk)
    for user, user_id in enumerate(dataset.users.ids.tolist()):
        a = rank_a(user, user_id, 10, None, data.now)
        b = rank_b(user, user_id, 10, None, data.now)
        assert a.tolist() == b.tolist(), user_id
