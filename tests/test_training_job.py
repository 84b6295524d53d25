"""The nightly job: trains, evaluates on a time split, and publishes only what is not worse."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.config import Config, config_from_dict
from recsys.errors import GateRefusedError, LockedError
from recsys.modeldir import current_path, current_version, load_arrays, read_manifest, verify
from training import job
from training.cli import EXIT_GATE_REFUSED, EXIT_LOCKED, EXIT_OK, main
from training.job import Evaluation, decide, train
from training.lock import RunLock

DAY = 86_400
T0 = 1_700_000_000


def _shop(tmp_path: Path) -> Path:
    """A small shop: 80 customers rebuying from 3 staples every ~10 days, plus browsing."""
    rng = np.random.default_rng(5)
    rows = []
    for user in range(80):
        staples = rng.choice(30, size=3, replace=False)
        for day in range(int(rng.integers(0, 5)), 60, 10):
            basket = f"b{user}-{day}"
            for item in staples[: int(rng.integers(1, 4))]:
                rows.append((user, f"sku{item}", "buy", T0 + day * DAY + user, basket))
            for item in rng.choice(30, size=2):
                rows.append((user, f"sku{item}", "view", T0 + day * DAY + user - 60, ""))
    frame = pd.DataFrame(rows, columns=["customer", "sku", "type", "ts", "order"])
    path = tmp_path / "events.csv"
    frame.to_csv(path, index=False)
    return path


def _config(tmp_path: Path, **overrides: Any) -> Config:
    events = {
        "path": str(_shop(tmp_path)),
        "timestamp_unit": "s",
        "event_types": {"buy": "purchase", "view": "view"},
        "columns": {
            "user": "customer",
            "item": "sku",
            "event": "type",
            "timestamp": "ts",
            "session": "order",
        },
    }
    data: dict[str, Any] = {
        "events": events,
        "seed": 11,
        "models": {"als": {"factors": 8, "iterations": 4}, "neighbours": {"k": 10}},
        "ranker": {"enabled": False},
        # these tests are of publishing; the gate's baselines have tests of their own below.
        "training": {"gate_baselines": ["popular"]},
        "output": {"models": str(tmp_path / "models"), "rejects": str(tmp_path / "rejects")},
    }
    training = {**data["training"], **overrides.pop("training", {})}
    data.update(overrides, training=training)
    return config_from_dict(data, base_dir=tmp_path)


def test_a_run_publishes_a_verified_version_with_a_complete_manifest(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = train(config)
    root = tmp_path / "models"
    assert result.published and result.version == "000001"
    assert current_version(root) == "000001"
    manifest = verify(current_path(root))
    assert manifest["config_hash"] == config.hash()
    counts = manifest["counts"]["events"]
    assert counts["rows_read"] == counts["accepted"] + counts["rejected_total"]
    [source] = manifest["inputs"]
    assert source["sha256"] == hashlib.sha256(Path(source["path"]).read_bytes()).hexdigest()
    assert {"als", "neighbours", "copurchase", "popularity", "repurchase", "content"} <= set(
        manifest["models"]
    )
    assert manifest["metrics"]["k"] == 20
    assert manifest["gate"]["passed"] is True
    assert manifest["forced"] is False
    assert set(manifest["timings"]) >= {"load events", "fit on train split", "evaluate", "write"}
    files = set(manifest["files"])
    assert {"users.parquet", "items.parquet", "history.npz", "als.npz", "neighbours.npz"} <= files
    assert result.evaluation is not None
    blend = result.evaluation.metrics["conversion"]["blend"]["ndcg"]
    assert blend > result.evaluation.metrics["conversion"]["popular"]["ndcg"]


def test_the_same_seed_gives_the_same_model_and_metrics(tmp_path: Path) -> None:
    one = train(_config(tmp_path), out=tmp_path / "a")
    two = train(_config(tmp_path), out=tmp_path / "b")
    assert one.evaluation is not None and two.evaluation is not None
    assert one.evaluation.metrics == two.evaluation.metrics
    for name in ("als", "neighbours", "popularity", "repurchase"):
        a = load_arrays(tmp_path / "a" / "000001", name)
        b = load_arrays(tmp_path / "b" / "000001", name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}.{key}")


def _pretend_published_metric(root: Path, value: float) -> None:
    path = current_path(root) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["gate"]["value"] = value
    path.write_text(json.dumps(manifest))


def test_a_model_worse_than_the_published_one_is_refused_and_the_old_one_stays(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    train(config)
    root = tmp_path / "models"
    _pretend_published_metric(root, 0.99)
    with pytest.raises(GateRefusedError) as err:
        train(config)
    assert "is more than 5% below the published model's 0.9900" in str(err.value)
    assert "(pass --force to publish anyway)" in str(err.value)
    assert current_version(root) == "000001"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "000001",
        "CURRENT",
    ]


def test_force_publishes_a_refused_model_and_says_so_in_the_manifest(tmp_path: Path) -> None:
    config = _config(tmp_path)
    train(config)
    root = tmp_path / "models"
    _pretend_published_metric(root, 0.99)
    result = train(config, force=True)
    assert result.version == "000002" and current_version(root) == "000002"
    manifest = read_manifest(current_path(root))
    assert manifest["forced"] is True
    assert manifest["gate"]["message"].startswith("gate overridden by --force")


def test_the_gate_refuses_a_model_whose_served_answers_lose_to_the_best_baseline() -> None:
    config = config_from_dict(
        {"events": {"path": "x.csv", "columns": {"user": "u", "item": "i", "timestamp": "t"}}}
    )
    evaluation = Evaluation(
        cut=0,
        k=20,
        users={"conversion": 10},
        metrics={
            "conversion": {
                "engine": {"ndcg": 0.20},
                "popular": {"ndcg": 0.12},
                "buy_again": {"ndcg": 0.25},
                "recent_items": {"ndcg": 0.18},
            }
        },
        gate_target="conversion",
    )
    decision = decide(evaluation, None, config, force=False)
    assert not decision.passed and decision.baseline_name == "buy_again"
    assert decision.message == (
        "gate refused on conversion targets: ndcg@20 0.2000 of the answers as served is below "
        "the buy_again baseline's 0.2500"
    )
    assert decide(evaluation, None, config, force=True).passed
    only_popular = _replace_training(config, gate_baselines=("popular",))
    assert decide(evaluation, None, only_popular, force=False).message == (
        "gate passed on conversion targets: ndcg@20 0.2000 as served >= the best baseline "
        "(popular) 0.1200"
    )


def test_a_shop_of_staples_refuses_the_blend_alone_and_publishes_the_learned_ranker(
    tmp_path: Path,
) -> None:
    # Customers rebuy three staples every ten days: "buy again" is nearly perfect, and the
    # hand-weighted blend (0.57) is far from it. The gate refuses what the blend serves ...
    blend_only = _config(
        tmp_path, training={"gate_baselines": ["popular", "buy_again", "recent_items"]}
    )
    with pytest.raises(GateRefusedError, match="below the buy_again baseline"):
        train(blend_only)
    # ... and the learned ranker, trained on the weeks before the holdout, learns to put the
    # staples first: it is served, and scored as served.
    ranked = _config(tmp_path, ranker={"enabled": True})
    result = train(ranked)
    assert result.evaluation is not None and result.evaluation.ranker["served"]
    metrics = result.evaluation.metrics["conversion"]
    assert metrics["engine"]["ndcg"] > 0.95 > 0.6 > metrics["blend"]["ndcg"]
    manifest = verify(current_path(tmp_path / "models"))
    assert "ranker.txt" in manifest["files"]


def test_the_evaluations_als_starts_from_the_rankers_period_which_saw_no_held_out_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One full ALS fit fewer a night: the holdout's fit starts from the item factors of the
    # ranker's newest label period (fitted on the days before its labels) and runs the refit's
    # few iterations; with warm_start_holdout off, it fits from scratch.
    seen: list[tuple[int, bool]] = []
    fit_models = job.fit_models

    def recording(data: Any, config: Config, als_warm_start: Any = None) -> Any:
        seen.append((data.matrix.shape[0], als_warm_start is not None))
        return fit_models(data, config, als_warm_start)

    monkeypatch.setattr(job, "fit_models", recording)
    for warm in (True, False):
        seen.clear()
        (tmp_path / str(warm)).mkdir()
        config = _replace_training(
            _config(tmp_path / str(warm), ranker={"enabled": True}), warm_start_holdout=warm
        )
        train(config)
        # the ranker's period (from scratch), the holdout's fit, the refit on every event
        assert [started for _, started in seen[-2:]] == [warm, True]
        assert seen[0][1] is False


def _replace_training(config: Config, **changes: Any) -> Config:
    import dataclasses

    return dataclasses.replace(config, training=dataclasses.replace(config.training, **changes))


def test_only_the_last_k_versions_are_kept(tmp_path: Path) -> None:
    config = _config(tmp_path, training={"keep_versions": 2})
    for _ in range(3):
        train(config)
    root = tmp_path / "models"
    assert sorted(p.name for p in root.iterdir() if p.name[0].isdigit()) == ["000002", "000003"]
    assert current_version(root) == "000003"


def test_a_crash_while_publishing_leaves_the_old_model_current_and_a_rerun_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    train(config)
    root = tmp_path / "models"

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed between writing and publishing")

    monkeypatch.setattr(job, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    assert current_version(root) == "000001"
    verify(current_path(root))
    assert load_arrays(current_path(root), "als")["item_factors"].shape[1] == 8
    monkeypatch.undo()
    assert train(config).version == "000003"
    assert current_version(root) == "000003"


def test_no_file_in_a_model_directory_is_a_pickle_and_loading_never_unpickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(_config(tmp_path))
    version = current_path(tmp_path / "models")
    for path in version.iterdir():
        assert not path.read_bytes().startswith(b"\x80"), path.name
        assert path.suffix in {".npz", ".parquet", ".json"}, path.name

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle was called while loading a model")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    manifest = verify(version)
    for name in manifest["files"]:
        if name.endswith(".npz"):
            load_arrays(version, name.removesuffix(".npz"))


def test_a_second_run_while_one_holds_the_lock_exits_at_once(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with RunLock(tmp_path / "models"), pytest.raises(LockedError, match="another run holds"):
        train(config)


def test_exit_codes_tell_a_scheduler_what_happened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    toml = tmp_path / "shop.toml"
    toml.write_text(
        f"""seed = 11
[events]
path = {json.dumps(str(config.events.path[0]))}
timestamp_unit = "s"
event_types = {{ buy = "purchase", view = "view" }}
[events.columns]
user = "customer"
item = "sku"
event = "type"
timestamp = "ts"
session = "order"
[models.als]
factors = 8
iterations = 4
[ranker]
enabled = false
[training]
gate_baselines = ["popular"]
[output]
models = "models"
rejects = "rejects"
""",
        encoding="utf-8",
    )
    assert main(["-q", "train", "--config", str(toml)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "holdout evaluation (k=20" in out and "published version 000001" in out
    _pretend_published_metric(tmp_path / "models", 0.99)
    assert main(["-q", "train", "--config", str(toml)]) == EXIT_GATE_REFUSED
    assert "recsys: refused:" in capsys.readouterr().err
    with RunLock(tmp_path / "models"):
        assert main(["-q", "train", "--config", str(toml)]) == EXIT_LOCKED
    assert main(["-q", "train", "--config", str(toml), "--force"]) == EXIT_OK


def test_without_a_refit_the_evaluated_models_are_published_with_their_own_id_maps(
    tmp_path: Path,
) -> None:
    from serving import Recommender

    train(_config(tmp_path, training={"retrain_on_all": False}))
    rec = Recommender.load(tmp_path / "models")
    model = rec.model
    candidates = model.blender.strategies.candidates
    assert candidates is not None and candidates.user_slot.shape[0] == len(model.users)
    assert model.models["als"].item_factors_.shape[0] == len(model.items)  # type: ignore[attr-defined]
    assert model.models["popularity"].rank_.shape[0] == len(model.items)  # type: ignore[attr-defined]
    assert len(rec.recommend(int(model.users.ids[0]), n=5)) == 5


def test_a_log_shorter_than_the_holdout_is_published_without_a_gate(tmp_path: Path) -> None:
    result = train(_config(tmp_path, training={"holdout_days": 365}))
    assert result.published and result.evaluation is None
    assert result.gate is not None and "gate skipped" in result.gate.message


def test_the_job_breaks_the_blends_metrics_down_by_portrait_tier_and_stores_portraits(
    tmp_path: Path,
) -> None:
    result = train(_config(tmp_path))
    evaluation = result.evaluation
    assert evaluation is not None and result.portraits is not None
    for target, by_tier in evaluation.by_tier.items():
        assert sum(evaluation.tier_users[target].values()) == evaluation.users[target]
        assert set(by_tier) <= {"browser", "new", "active", "high_value", "potential",
                                "at_risk", "churned"}  # fmt: skip
    assert "by portrait tier" in evaluation.format()
    assert result.path is not None and (result.path / "portraits.parquet").exists()
    assert "portraits" in json.loads((result.path / "manifest.json").read_text())["timings"]
