"""The model directory: versions written whole, published atomically, verified, never pickled."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from recsys import modeldir
from recsys.errors import ModelDirError
from recsys.modeldir import (
    VerifiedVersion,
    VersionWriter,
    clean_stale,
    current_path,
    current_version,
    load_arrays,
    load_json,
    load_table,
    prune,
    publish,
    read_manifest,
    verify,
    versions,
)

CORRUPT = "publish another version or run `recsys train` again"


def write_version(root: Path, seed: int = 0) -> Path:
    """Commit a small model version with arrays, a table and JSON; return its folder."""
    rng = np.random.default_rng(seed)
    with VersionWriter(root) as writer:
        writer.add_arrays(
            "als",
            {
                "user_factors": rng.random((4, 3), dtype=np.float32),
                "item_factors": rng.random((5, 3), dtype=np.float32),
            },
        )
        writer.add_table("items", pa.table({"id": ["85123A", "22423"], "price": [2.55, 12.75]}))
        writer.add_json("params", {"factors": 3, "seed": seed})
        return writer.commit({"config_hash": f"hash-{seed}"})


def publish_new(root: Path, seed: int = 0) -> str:
    """Commit and publish a version; return its name."""
    version = write_version(root, seed).name
    publish(root, version)
    return version


def load_everything(folder: Path) -> tuple[dict[str, np.ndarray], pa.Table, Any]:
    """Load every file write_version() writes, as serving would."""
    verify(folder)
    return load_arrays(folder, "als"), load_table(folder, "items"), load_json(folder, "params")


def test_a_published_model_loads_back_exactly_as_written(tmp_path: Path) -> None:
    root = tmp_path / "models"
    index = tmp_path / "items.faiss"
    index.write_bytes(b"FAISS-INDEX-BYTES")
    users = np.arange(12, dtype=np.float32).reshape(4, 3)
    strided = np.arange(20, dtype=np.int64)[::2]
    with VersionWriter(root) as writer:
        # "file" is a keyword of np.savez; here it is just another array name.
        writer.add_arrays("als", {"user_factors": users, "file": np.array(["a", "b"])})
        writer.add_arrays("seen", {"strided": strided, "empty": np.zeros((0, 3))})
        writer.add_table("items", pa.table({"id": [1, 2], "title": ["mug", "lamp"]}))
        writer.add_json("metrics", {"ndcg@10": np.float32(0.25), "users": np.int64(40)})
        writer.add_file("items.faiss", index)
        folder = writer.commit({"config_hash": "abc", "counts": {"users": 4}})

    assert folder == root / "000001"
    assert current_version(root) is None  # committed, not yet published
    publish(root, "000001")
    assert current_version(root) == "000001"
    assert current_path(root) == folder
    assert (root / "CURRENT").read_text(encoding="utf-8") == "000001\n"
    assert sorted(entry.name for entry in root.iterdir()) == ["000001", "CURRENT"]

    arrays = load_arrays(folder, "als")
    assert arrays["user_factors"].dtype == np.float32
    np.testing.assert_array_equal(arrays["user_factors"], users)
    assert arrays["file"].tolist() == ["a", "b"]
    seen = load_arrays(folder, "seen")
    np.testing.assert_array_equal(seen["strided"], strided)
    assert seen["empty"].shape == (0, 3)
    assert load_table(folder, "items").to_pydict() == {"id": [1, 2], "title": ["mug", "lamp"]}
    assert load_json(folder, "metrics") == {"ndcg@10": 0.25, "users": 40}
    assert (folder / "items.faiss").read_bytes() == b"FAISS-INDEX-BYTES"

    manifest = verify(folder)
    assert manifest == read_manifest(folder)
    assert list(manifest) == [
        "format_version",
        "version",
        "created",
        "config_hash",
        "counts",
        "files",
    ]
    assert manifest["format_version"] == modeldir.FORMAT_VERSION == 1
    assert manifest["version"] == "000001"
    assert manifest["created"].endswith("Z")
    assert manifest["counts"] == {"users": 4}
    assert sorted(manifest["files"]) == [
        "als.npz",
        "items.faiss",
        "items.parquet",
        "metrics.json",
        "seen.npz",
    ]
    assert manifest["files"]["items.faiss"] == {
        "sha256": hashlib.sha256(b"FAISS-INDEX-BYTES").hexdigest(),
        "bytes": 17,
    }


def test_versions_are_zero_padded_and_only_increase_even_after_pruning(tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert versions(root) == []
    assert [publish_new(root, seed) for seed in range(3)] == ["000001", "000002", "000003"]
    publish(root, "000001")  # a rollback: CURRENT names an older version
    assert prune(root, keep=1) == ["000002"]
    assert versions(root) == ["000001", "000003"]
    assert write_version(root).name == "000004"
    # Even with the newest folder gone by hand, a number CURRENT names is never reused.
    (root / "CURRENT").write_text("000009\n", encoding="utf-8")
    assert write_version(root).name == "000010"


def test_an_exception_while_writing_leaves_the_old_model_current_and_no_trace(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    publish_new(root)
    before = sorted(entry.name for entry in root.iterdir())
    with pytest.raises(RuntimeError, match="ALS diverged"), VersionWriter(root) as writer:
        writer.add_arrays("als", {"user_factors": np.ones((2, 2))})
        raise RuntimeError("ALS diverged")
    assert sorted(entry.name for entry in root.iterdir()) == before
    assert current_version(root) == "000001"
    load_everything(current_path(root))


def test_a_crash_between_writing_and_publishing_leaves_the_old_model_current(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    publish_new(root, seed=1)
    unpublished = write_version(root, seed=2)  # the process dies before publish()
    assert unpublished.name == "000002"
    assert current_version(root) == "000001"
    assert load_json(current_path(root), "params") == {"factors": 3, "seed": 1}
    # The next night's run needs no cleanup and takes the next number.
    assert publish_new(root, seed=3) == "000003"
    assert load_json(current_path(root), "params") == {"factors": 3, "seed": 3}


def test_a_run_killed_mid_write_leaves_a_work_folder_that_the_next_run_ignores_and_clears(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    publish_new(root)
    killed = VersionWriter(root).__enter__()  # never committed, never exited: a killed process
    killed.add_arrays("als", {"user_factors": np.ones((2, 2))})
    (stale,) = [entry for entry in root.iterdir() if entry.name.startswith(".tmp-")]
    assert versions(root) == ["000001"]
    assert current_version(root) == "000001"
    load_everything(current_path(root))

    assert publish_new(root, seed=5) == "000002"
    assert clean_stale(root) == [stale]
    assert sorted(entry.name for entry in root.iterdir()) == ["000001", "000002", "CURRENT"]
    assert clean_stale(root) == []


def test_a_writer_left_without_commit_keeps_nothing_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "models"
    with pytest.raises(ModelDirError) as err, VersionWriter(root) as writer:
        writer.add_json("params", {"factors": 3})
    assert str(err.value) == (
        f"{root}: a model version was written but never committed, so it was discarded; "
        "call commit(manifest) before the end of the `with` block"
    )
    assert list(root.iterdir()) == []


def test_commit_flushes_every_file_the_version_folder_and_the_root_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    synced: set[int] = set()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.add(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    folder = write_version(root)
    expected = {path.stat().st_ino for path in folder.iterdir()}
    expected |= {folder.stat().st_ino, root.stat().st_ino}
    assert expected <= synced

    synced.clear()
    publish(root, folder.name)
    assert {(root / "CURRENT").stat().st_ino, root.stat().st_ino} <= synced


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def list_an_absent_file(manifest_path: Path) -> None:
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"]["faiss.index"] = {"sha256": "0" * 64, "bytes": 10}
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


def test_verify_names_a_flipped_byte(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models")
    path = folder / "als.npz"
    flip_a_byte(path)
    expected = read_manifest(folder)["files"]["als.npz"]["sha256"]
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelDirError) as err:
        verify(folder)
    assert str(err.value) == (
        f"{path}: sha256 {actual} does not match manifest.json ({expected}); "
        f"the file is damaged or was changed; {CORRUPT}"
    )


def test_verify_names_a_truncated_file(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models")
    path = folder / "items.parquet"
    size = path.stat().st_size
    truncate(path)
    with pytest.raises(ModelDirError) as err:
        verify(folder)
    assert str(err.value) == (
        f"{path}: {size - 10:,} bytes, but manifest.json says {size:,}; "
        f"the file is truncated or was changed; {CORRUPT}"
    )


@pytest.mark.parametrize("how", ["deleted", "never written"])
def test_verify_names_a_missing_file(tmp_path: Path, how: str) -> None:
    folder = write_version(tmp_path / "models")
    if how == "deleted":
        (folder / "params.json").unlink()
        missing = folder / "params.json"
    else:
        list_an_absent_file(folder / "manifest.json")
        missing = folder / "faiss.index"
    with pytest.raises(ModelDirError) as err:
        verify(folder)
    assert str(err.value) == f"{missing}: listed in manifest.json but missing; {CORRUPT}"


def test_verify_refuses_a_version_without_manifest_or_with_a_broken_one(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models")
    manifest_path = folder / "manifest.json"
    text = manifest_path.read_text(encoding="utf-8")

    manifest_path.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(ModelDirError, match=r"manifest\.json: not valid JSON \("):
        verify(folder)

    manifest_path.write_text(text.replace('"format_version": 1', '"format_version": 2'))
    with pytest.raises(ModelDirError) as err:
        verify(folder)
    assert str(err.value) == (
        f"{manifest_path}: format_version 2 is not supported (this recsys reads 1); "
        "upgrade recsys, or run `recsys train` to rewrite the model"
    )

    manifest = json.loads(text)
    manifest["files"]["../CURRENT"] = manifest["files"].pop("params.json")
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelDirError) as err:
        verify(folder)
    assert str(err.value) == (
        f"{manifest_path}: lists '../CURRENT', which is not a plain file name; {CORRUPT}"
    )

    manifest_path.unlink()
    with pytest.raises(ModelDirError) as err:
        verify(folder)
    assert str(err.value) == (
        f"{folder}: no manifest.json, so this is not a complete model version; {CORRUPT}"
    )
    assert versions(folder.parent) == []  # without its manifest it is not a version at all


@pytest.mark.parametrize("damage", [flip_a_byte, truncate, os.remove])
def test_publish_refuses_a_corrupt_version_and_keeps_the_old_one_current(
    tmp_path: Path, damage: Any
) -> None:
    root = tmp_path / "models"
    publish_new(root, seed=1)
    folder = write_version(root, seed=2)
    damage(folder / "als.npz")
    with pytest.raises(ModelDirError, match=r"als\.npz: "):
        publish(root, folder.name)
    assert current_version(root) == "000001"
    assert not (root / "CURRENT.tmp").exists()
    load_everything(current_path(root))


def test_publish_refuses_names_that_are_not_versions_of_this_directory(tmp_path: Path) -> None:
    root = tmp_path / "models"
    publish_new(root)
    with pytest.raises(ModelDirError) as err:
        publish(root, "../elsewhere")
    assert str(err.value) == (
        f"{root}: '../elsewhere' is not a version name like '000001'; "
        "pass a name returned by commit() or versions()"
    )
    with pytest.raises(ModelDirError) as err:
        publish(root, "000007")
    assert str(err.value) == f"{root / '000007'}: no such model version folder; {CORRUPT}"
    # A version folder copied under another number is refused too.
    os.rename(write_version(root), root / "000008")
    with pytest.raises(ModelDirError) as err:
        publish(root, "000008")
    assert str(err.value) == (
        f"{root / '000008'}: manifest.json says version '000002'; version folders must not be "
        "renamed or copied over each other; run `recsys train` again"
    )
    assert current_version(root) == "000001"


def test_serving_without_a_published_model_is_told_to_train_first(tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert current_version(root) is None
    with pytest.raises(ModelDirError) as err:
        current_path(root)
    assert str(err.value) == (
        f"{root}: no published model (no CURRENT file); run `recsys train` first"
    )


def test_a_damaged_current_pointer_is_reported_and_the_next_run_repairs_it(tmp_path: Path) -> None:
    root = tmp_path / "models"
    publish_new(root)
    (root / "CURRENT").write_text("../../etc\n", encoding="utf-8")
    with pytest.raises(ModelDirError) as err:
        current_path(root)
    assert str(err.value) == (
        f"{root / 'CURRENT'}: holds '../../etc', not a version name like '000001'; "
        f"publish one of the versions in {root} again, or run `recsys train`"
    )
    (root / "CURRENT").write_text("000005\n", encoding="utf-8")
    with pytest.raises(ModelDirError) as err:
        current_path(root)
    assert str(err.value) == (
        f"{root / 'CURRENT'}: names version 000005, but {root / '000005'} is missing; "
        "publish a version that exists, or run `recsys train`"
    )
    # The next run repairs it by publishing over it.
    assert publish_new(root, seed=4) == "000006"
    assert load_json(current_path(root), "params") == {"factors": 3, "seed": 4}


def test_prune_keeps_the_newest_versions_and_the_published_one(tmp_path: Path) -> None:
    root = tmp_path / "models"
    for seed in range(6):
        write_version(root, seed)
    publish(root, "000002")
    assert prune(root, keep=3) == ["000001", "000003"]
    assert versions(root) == ["000002", "000004", "000005", "000006"]
    assert current_version(root) == "000002"
    load_everything(current_path(root))
    assert prune(root, keep=3) == []
    assert not [entry for entry in root.iterdir() if entry.name.startswith(".tmp-")]
    with pytest.raises(ValueError, match=r"prune: keep must be at least 1 \(got 0\)"):
        prune(root, keep=0)


@pytest.mark.parametrize(
    "array",
    [
        np.array(["a", None], dtype=object),
        np.array([(1, "x")], dtype=[("n", "i4"), ("label", "O")]),
    ],
    ids=["object", "record-with-object-field"],
)
def test_arrays_that_need_pickle_are_refused(tmp_path: Path, array: np.ndarray) -> None:
    root = tmp_path / "models"
    with pytest.raises(ModelDirError) as err, VersionWriter(root) as writer:
        writer.add_arrays("ids", {"item_ids": array})
    assert str(err.value) == (
        f"ids.npz: array 'item_ids' has dtype {array.dtype}, which only pickle can store, and "
        "model files never hold pickles; convert it to numbers or fixed-width strings "
        "(.astype(str)), or store it with add_table"
    )
    assert list(root.iterdir()) == []


def test_no_file_of_a_model_is_a_pickle_and_loading_never_unpickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    index = tmp_path / "items.faiss"
    index.write_bytes(b"IxF2" + bytes(60))
    with VersionWriter(root) as writer:
        writer.add_arrays("als", {"factors": np.ones((3, 2)), "ids": np.array(["x", "y", "z"])})
        writer.add_table("items", pa.table({"id": ["x", "y"], "price": [1.0, None]}))
        writer.add_json("params", {"factors": 2})
        writer.add_file("items.faiss", index)
        folder = writer.commit({"config_hash": "abc"})
    publish(root, folder.name)

    for path in [*root.iterdir(), *folder.iterdir()]:
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"
    with np.load(folder / "als.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["factors", "ids"]
        assert all(archive[key].dtype != object for key in archive.files)

    def no_pickle(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("model loading called pickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    folder = current_path(root)
    verify(folder)
    assert load_arrays(folder, "als")["ids"].tolist() == ["x", "y", "z"]
    assert load_table(folder, "items").column("price").to_pylist() == [1.0, None]
    assert load_json(folder, "params") == {"factors": 2}


def test_an_archive_holding_a_pickle_is_refused_without_unpickling_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_version(tmp_path / "models")
    # An attacker (or an old tool) swaps in an npz with a pickled object array.
    np.savez(folder / "als.npz", user_factors=np.array([{"x": 1}], dtype=object))

    def no_pickle(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("model loading called pickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    with pytest.raises(ModelDirError, match=r"als\.npz: cannot be read as arrays \(.*allow_pickle"):
        load_arrays(folder, "als")


def test_only_files_the_manifest_vouches_for_are_loaded(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models")
    (folder / "extra.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelDirError) as err:
        load_json(folder, "extra")
    assert str(err.value) == (
        f"{folder}: has no extra.json (it holds als.npz, items.parquet, params.json); "
        "the model was written by another version of recsys; run `recsys train` again"
    )


def test_file_names_must_be_plain_unique_and_not_the_manifest(tmp_path: Path) -> None:
    with VersionWriter(tmp_path / "models") as writer:
        with pytest.raises(ModelDirError) as err:
            writer.add_json("../CURRENT", {})
        assert str(err.value) == (
            "model file name '../CURRENT.json' is not allowed; use letters, digits, '_', '-' "
            "and '.' only, not starting with '.' or '-'"
        )
        with pytest.raises(ModelDirError) as err:
            writer.add_json("manifest", {})
        assert str(err.value) == (
            "manifest.json is written by commit(); store your data under another name"
        )
        writer.add_json("params", {})
        with pytest.raises(ModelDirError) as err:
            writer.add_json("params", {})
        assert str(err.value) == (
            "params.json: already added to this model version; give each file its own name"
        )
        with pytest.raises(ModelDirError) as err:
            writer.add_arrays("als", {"a/b": np.ones(2)})
        assert str(err.value).startswith("als.npz: array name 'a/b' is not allowed;")
        with pytest.raises(ModelDirError) as err:
            writer.add_file("items.faiss", tmp_path / "nowhere.faiss")
        assert str(err.value) == (
            f"{tmp_path / 'nowhere.faiss'}: not a file, so it cannot be added to the model as "
            "'items.faiss'; write it first"
        )
        writer.commit({})


def test_the_manifest_cannot_override_what_commit_records(tmp_path: Path) -> None:
    root = tmp_path / "models"
    with pytest.raises(ModelDirError) as err, VersionWriter(root) as writer:
        writer.commit({"version": "999999", "files": {}, "params": {}})
    assert str(err.value) == (
        f"{root}: the manifest must not set 'version', 'files'; commit() fills those in itself"
    )
    assert versions(root) == []


def test_values_json_cannot_hold_faithfully_are_refused(tmp_path: Path) -> None:
    with VersionWriter(tmp_path / "models") as writer:
        with pytest.raises(ModelDirError) as err:
            writer.add_json("metrics", {"ndcg@10": float("nan")})
        assert str(err.value) == (
            "metrics.json: cannot be stored as JSON (Out of range float values are not JSON "
            "compliant: nan); store dicts, lists, strings, numbers, booleans and None "
            "(None for a missing or NaN value)"
        )
        with pytest.raises(ModelDirError, match=r"metrics\.json: .*type \w*Path is not JSON"):
            writer.add_json("metrics", {"path": tmp_path})
        writer.commit({})


def test_a_committed_writer_cannot_be_written_to_again(tmp_path: Path) -> None:
    with VersionWriter(tmp_path / "models") as writer:
        folder = writer.commit({})
        with pytest.raises(ModelDirError) as err:
            writer.add_json("late", {})
    assert str(err.value) == (
        f"{folder}: already committed; start a new VersionWriter for a new version"
    )
    assert read_manifest(folder)["files"] == {}


def test_arrays_are_read_in_place_aligned_and_read_only(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models")
    files = VerifiedVersion.read(folder)
    arrays = files.arrays("als")
    for array in arrays.values():
        assert array.flags.aligned and not array.flags.owndata and not array.flags.writeable
    again = load_arrays(folder, "als")
    np.testing.assert_array_equal(arrays["item_factors"], again["item_factors"])
    assert files.table("items").column("id").to_pylist() == ["85123A", "22423"]


def test_an_npz_written_by_numpy_itself_still_loads(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models")
    values = np.arange(7, dtype=np.int64)
    np.savez(folder / "als.npz", a=np.arange(3, dtype=np.int8), values=values)
    np.testing.assert_array_equal(load_arrays(folder, "als")["values"], values)


def test_a_damaged_file_is_named_when_a_version_is_read_in_one_pass(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models")
    data = bytearray((folder / "als.npz").read_bytes())
    data[-1] ^= 0xFF
    (folder / "als.npz").write_bytes(bytes(data))
    with pytest.raises(ModelDirError, match=r"als\.npz: sha256 .* does not match"):
        VerifiedVersion.read(folder)
