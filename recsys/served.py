"""A published model version, verified and loaded into memory; immutable once built."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recsys.blend import Blender, Strategies
from recsys.candidates import ALSCandidates
from recsys.config import BlendConfig, ExperimentConfig, ServingConfig, section_from_dict
from recsys.errors import ModelDirError
from recsys.experiments import (
    active_experiment,
    experiments_from_manifest,
    variant_blend,
    variant_serving,
)
from recsys.history import UserHistory
from recsys.ids import IdMap
from recsys.modeldir import VerifiedVersion, VersionContent, current_path
from recsys.models.als import ALSModel
from recsys.models.base import Model
from recsys.models.content import ContentModel
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours
from recsys.models.popularity import PopularityModel
from recsys.models.repurchase import RepurchaseModel
from recsys.models.segments import SegmentPopularity
from recsys.models.tifu import TifuKNN
from recsys.ranker import ItemFacts, LearnedRanker

log = logging.getLogger(__name__)
# What a model is built from: a version verified on disk, or one the trainer holds in memory.
VersionFiles = VerifiedVersion | VersionContent

# Blend settings a model trained before they existed is served with: what that trainer's
# lists did (no reminders, a visit's steps decaying by 0.85), not today's defaults.
_LEGACY_BLEND: dict[str, Any] = {"reminder": 0.0, "session_decay": 0.85}

_MODEL_CLASSES: dict[str, type[Model]] = {
    "als": ALSModel,
    "neighbours": ItemNeighbours,
    "copurchase": CoPurchase,
    "popularity": PopularityModel,
    "repurchase": RepurchaseModel,
    "content": ContentModel,
    "segments": SegmentPopularity,
    "tifu": TifuKNN,
}


@dataclass(frozen=True)
class ServedModel:
    """Everything one model version needs to answer calls, loaded and checked."""

    version: str
    path: Path
    manifest: dict[str, Any]
    users: IdMap
    items: IdMap
    # the shop's item id of every index, for building answers without pandas.
    item_ids: np.ndarray
    blender: Blender
    models: dict[str, Model]
    item_category: np.ndarray
    category_ids: np.ndarray
    item_available: np.ndarray
    # every item, most popular first: the last resort that fills a list when filters bite.
    items_by_rank: np.ndarray
    segment_users: IdMap | None
    segment_codes: np.ndarray
    segment_labels: list[str]
    # every user's portrait (RFM, tier, favourites), in user index order; None for old models.
    portraits: pa.Table | None
    # per user: portrait tier code (index into recsys.config.TIERS, -1: none) and favourite
    # category codes (users x k, -1: none).
    user_tier: np.ndarray
    user_favourites: np.ndarray
    data_end: int
    created: float
    serving: ServingConfig
    # the learned ranking stage (None: the hand-weighted blend orders the lists) and the item
    # facts its features read.
    ranker: LearnedRanker | None = None
    facts: ItemFacts | None = None
    # how many candidates each part proposes for the ranker, and how many distinct items a
    # known user's history must hold for the ranker to order their list.
    ranker_candidates: int = 40
    ranker_min_items: int = 1
    ranker_max_rows: int | None = None
    # The running A/B experiment (None: none) and, per variant name, this model as that
    # variant serves it (its blend weights and serving settings; the arrays are shared).
    experiment: ExperimentConfig | None = None
    variants: dict[str, ServedModel] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ServedModel:
        """Load a version folder, or the current version of a model root, after verifying it."""
        path = Path(path)
        if not path.exists():
            raise ModelDirError(f"{path}: no such model directory; run `recsys train` first")
        version_dir = path if (path / "manifest.json").exists() else current_path(path)
        started = time.perf_counter()
        try:
            model = cls.from_files(VerifiedVersion.read(version_dir))
            # A first answer, known and anonymous: arrays that check out but cannot answer
            # (an index past the catalogue, a short array) fail here, not on a shop's page.
            from recsys.answer import check_servable

            check_servable(model)
        except ModelDirError:
            raise
        except Exception as exc:
            # One error class for every bad directory, whatever broke inside it.
            raise ModelDirError(
                f"{version_dir}: cannot be served ({type(exc).__name__}: {exc}); publish another "
                "version or run `recsys train` again"
            ) from exc
        log.info(
            "loaded model %s (%d users, %d items) in %.2fs",
            model.version,
            len(model.users),
            len(model.items),
            time.perf_counter() - started,
        )
        return model

    @classmethod
    def from_files(cls, files: VersionFiles) -> ServedModel:
        """Build the model from a version's files: verified from disk, or the trainer's own
        in memory (evaluation scores a model exactly as serving would load it)."""
        _one_thread_per_call()
        version_dir = files.path
        manifest = files.manifest
        users = IdMap.from_table(files.table("users"), name="user")
        items = IdMap.from_table(files.table("items"), name="item")
        history = UserHistory.from_arrays(files.arrays("history"))
        attributes = files.arrays("item_attributes")
        models: dict[str, Model] = {}
        for name, model_cls in _MODEL_CLASSES.items():
            if f"{name}.npz" in manifest["files"]:
                try:
                    models[name] = model_cls().load_arrays(files.arrays(name))
                except KeyError as exc:
                    raise ModelDirError(
                        f"{version_dir}: {name}.npz lacks {exc.args[0]}; it was written by another "
                        f"version of recsys (engine {manifest.get('engine_version')}); "
                        "run `recsys train` again"
                    ) from None
        if "popularity" not in models:
            raise ModelDirError(f"{version_dir}: has no popularity.npz; run `recsys train` again")
        blend_config = section_from_dict(
            BlendConfig, _LEGACY_BLEND | _known(manifest["blend"], BlendConfig), "blend"
        )
        serving = section_from_dict(ServingConfig, manifest.get("serving") or {}, "serving")
        candidates = None
        if "als_candidates.npz" in manifest["files"]:
            candidates = ALSCandidates(files.arrays("als_candidates"))
        elif "als" in models:
            raise ModelDirError(
                f"{version_dir}: has an ALS model but no als_candidates.npz; it was written by "
                f"another version of recsys (engine {manifest.get('engine_version')}); "
                "run `recsys train` again"
            )
        strategies = Strategies.from_models(
            history, models, candidates, item_category=attributes["category"].astype(np.int64)
        )
        categories = (
            np.asarray(files.table("categories").column("id").to_pylist(), dtype=object)
            if "categories.parquet" in manifest["files"]
            else np.zeros(0, dtype=object)
        )
        segment_users, segment_codes, labels = None, np.zeros(0, np.int32), []
        if "user_segments.parquet" in manifest["files"]:
            table = files.table("user_segments")
            segment_users = IdMap.from_table(table.select(["id"]), name="user")
            segment_codes = table.column("segment").to_numpy().astype(np.int32)
            labels = files.table("segments").column("label").to_pylist()
        codes = files.arrays("portrait_codes") if files.has("portrait_codes.npz") else {}
        popularity = models["popularity"]
        assert isinstance(popularity, PopularityModel)
        rank = popularity.rank_
        ranker = None
        ranker_config = (manifest.get("config") or {}).get("ranker", {})
        if files.has("ranker.txt"):
            ranker = LearnedRanker.from_text(files.text("ranker.txt"), str(version_dir))
        facts = ItemFacts.of(
            rank,
            popularity.trending_,
            popularity.trending_scores_,
            attributes["price"],
            attributes["first_seen"],
            attributes["category"],
        )
        created = dt.datetime.fromisoformat(manifest["created"].replace("Z", "+00:00"))
        model = cls(
            version=version_dir.name,
            path=version_dir,
            manifest=manifest,
            users=users,
            items=items,
            item_ids=items.ids,
            blender=Blender(strategies, blend_config),
            models=models,
            item_category=attributes["category"].astype(np.int64),
            category_ids=categories,
            item_available=attributes["available"].astype(bool),
            items_by_rank=np.argsort(rank, kind="stable").astype(np.int64),
            segment_users=segment_users,
            segment_codes=segment_codes,
            segment_labels=list(labels),
            portraits=files.table("portraits") if files.has("portraits.parquet") else None,
            user_tier=codes["tier"] if codes else np.full(len(users), -1, dtype=np.int8),
            user_favourites=codes["categories"] if codes else np.full((len(users), 0), -1),
            data_end=int(manifest["data_end"]),
            created=created.timestamp(),
            serving=serving,
            ranker=ranker,
            facts=facts,
            ranker_candidates=int(ranker_config.get("candidates", 40)),
            ranker_min_items=int(ranker_config.get("min_items", 1)),
            # A model from before ranker.max_rows ranked (and was measured on) every candidate.
            ranker_max_rows=(
                None if ranker_config.get("max_rows") is None else int(ranker_config["max_rows"])
            ),
        )
        experiments = experiments_from_manifest(
            manifest.get("experiments") or [], blend_config, serving
        )
        return model.with_experiment(active_experiment(experiments))

    def with_blend(self, config: BlendConfig) -> ServedModel:
        """This model with other blend weights (its experiment's variants rebuilt over them)."""
        changed = dataclasses.replace(self, blender=Blender(self.blender.strategies, config))
        return changed.with_experiment(self.experiment)

    def with_ranker(self, ranker: LearnedRanker | None) -> ServedModel:
        """This model with another ranker (None: the blend orders the lists)."""
        return dataclasses.replace(self, ranker=ranker).with_experiment(self.experiment)

    def with_serving(self, serving: ServingConfig) -> ServedModel:
        """This model with other serving settings (its experiment's variants rebuilt over them)."""
        return dataclasses.replace(self, serving=serving).with_experiment(self.experiment)

    def with_experiment(self, experiment: ExperimentConfig | None) -> ServedModel:
        """This model running `experiment` (None: none), with a view of itself per variant."""
        if experiment is None:
            return dataclasses.replace(self, experiment=None, variants={})
        base = self.blender.config
        variants = {
            variant.name: dataclasses.replace(
                self,
                blender=Blender(self.blender.strategies, variant_blend(base, variant)),
                serving=variant_serving(self.serving, variant),
                experiment=experiment,
                variants={},
            )
            for variant in experiment.variants
        }
        return dataclasses.replace(self, experiment=experiment, variants=variants)

    def now(self) -> int:
        """The model's clock: the end of its data plus the time since it was trained.

        For a nightly model this is the wall clock; for a model of an old log it stays as far
        after the log's end as the model is old, so "due again" still means something.
        """
        return self.data_end + max(int(time.time() - self.created), 0)

    def category_label(self, code: int) -> Any:
        """The shop's category id of a category code."""
        if 0 <= code < len(self.category_ids):
            return self.category_ids[code]
        return None


def _one_thread_per_call() -> None:
    """Keep faiss at one thread: a call searches one vector, where waking a second thread
    costs more than it saves (0.27 against 0.20 ms on a 20k pool), and a shop serves
    concurrent page views on its own threads."""
    import faiss

    faiss.omp_set_num_threads(1)


def _known(data: dict[str, Any], cls: type) -> dict[str, Any]:
    """Keep the keys a configuration section knows (the manifest adds informational ones)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}
