"""The model directory: versioned, checksummed, pickle-free model files for trainer and serving.

Layout of ROOT:

- `CURRENT`: a text file holding the name of the published version.
- `000001/`, `000002/`, ...: complete versions, each with `manifest.json` (format version, version,
  creation time, the trainer's own fields, and the size and sha256 of every file) and its files.
- `.tmp-*`: work folders of runs in progress, or left by runs that crashed.

A version is written into a `.tmp-*` folder, every file and the folder are fsynced, and only then
is the folder renamed to its version number; publishing is a second, separate atomic step that
switches `CURRENT`. A crash at any point therefore leaves the previously published model current
and loadable. Arrays are stored as `.npz` without pickle, tables as Parquet, small data as JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import struct
import uuid
import zipfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import ModelDirError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
TMP_PREFIX = ".tmp-"

# Keys commit() fills in itself; a trainer's manifest must not set them.
_RESERVED_KEYS = ("format_version", "version", "created", "files")
# Six digits at least, so that names sort like numbers for years of nightly runs.
_VERSION_RE = re.compile(r"\d{6,}")
# Plain file names only: no folders, no "..", nothing a shell or another OS would trip over.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_CORRUPT = "publish another version or run `recsys train` again"


class VersionWriter:
    """Write one model version into a work folder; commit() moves it into place, complete.

    Use it as a context manager: an exception inside the `with` block removes the work folder and
    changes nothing else. Committing does not publish; call publish() for that.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._work: Path | None = None
        self._files: list[str] = []
        self._committed: Path | None = None

    def __enter__(self) -> VersionWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        # os.mkdir rather than tempfile.mkdtemp: mkdtemp makes the folder private (0o700), and it
        # becomes the version folder, which serving may read as another user.
        work = self.root / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        work.mkdir()
        self._work = work
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        work, self._work = self._work, None
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        if exc_type is None and self._committed is None:
            raise ModelDirError(
                f"{self.root}: a model version was written but never committed, so it was "
                "discarded; call commit(manifest) before the end of the `with` block"
            )

    def add_arrays(self, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Store named arrays as `{name}.npz`; refuse arrays that need pickle (object dtype)."""
        file_name = self._new_file(f"{name}.npz")
        checked: dict[str, np.ndarray] = {}
        for key, value in arrays.items():
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise ModelDirError(
                    f"{file_name}: array {key!r} has dtype {array.dtype}, which only pickle can "
                    "store, and model files never hold pickles; convert it to numbers or "
                    "fixed-width strings (.astype(str)), or store it with add_table"
                )
            _check_name(key, what=f"{file_name}: array name")
            checked[key] = array
        # The same zip of .npy members that np.savez writes, but with allow_pickle=False on every
        # member and without savez's keyword arguments clashing with array names like "file".
        with (
            open(self._path(file_name), "wb") as fh,
            zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive,
        ):
            for key, array in checked.items():
                info = _aligned_member(f"{key}.npy", fh.tell())
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        self._files.append(file_name)

    def add_table(self, name: str, table: pa.Table) -> None:
        """Store a table as `{name}.parquet`."""
        file_name = self._new_file(f"{name}.parquet")
        if not isinstance(table, pa.Table):
            raise ModelDirError(
                f"{file_name}: expected a pyarrow.Table, got {type(table).__name__}; "
                "convert it with pyarrow.Table.from_pandas(frame, preserve_index=False)"
            )
        pq.write_table(table, self._path(file_name))
        self._files.append(file_name)

    def add_json(self, name: str, data: Any) -> None:
        """Store plain data (dicts, lists, strings, numbers) as `{name}.json`."""
        file_name = self._new_file(f"{name}.json")
        text = _to_json(data, where=file_name)
        self._path(file_name).write_text(text, encoding="utf-8")
        self._files.append(file_name)

    def add_text(self, name: str, text: str) -> None:
        """Store text another library reads in its own format (e.g. a LightGBM model) as `name`."""
        file_name = self._new_file(name)
        self._path(file_name).write_text(text, encoding="utf-8")
        self._files.append(file_name)

    def add_file(self, name: str, source: Path) -> None:
        """Copy a file another library wrote (e.g. a faiss index) into the version as `name`."""
        file_name = self._new_file(name)
        source = Path(source)
        if not source.is_file():
            raise ModelDirError(
                f"{source}: not a file, so it cannot be added to the model as {file_name!r}; "
                "write it first"
            )
        shutil.copyfile(source, self._path(file_name))
        self._files.append(file_name)

    def commit(self, manifest: Mapping[str, Any]) -> Path:
        """Write manifest.json, make every file durable, move the version into place; return it.

        The version is not published: CURRENT still names the previous version until publish().
        """
        work = self._require_open()
        clash = [key for key in _RESERVED_KEYS if key in manifest]
        if clash:
            raise ModelDirError(
                f"{self.root}: the manifest must not set {', '.join(map(repr, clash))}; "
                "commit() fills those in itself"
            )
        files: dict[str, dict[str, Any]] = {}
        for file_name in sorted(self._files):
            path = work / file_name
            _fsync_file(path)
            files[file_name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
        version = _next_version(self.root)
        document = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "created": _utc_now(),
            **manifest,
            "files": files,
        }
        (work / MANIFEST).write_text(_to_json(document, where=MANIFEST), encoding="utf-8")
        _fsync_file(work / MANIFEST)
        _fsync_dir(work)
        target = self.root / version
        try:
            # One rename: readers see either no version folder or a complete one.
            os.rename(work, target)
        except OSError:
            if target.exists():
                raise ModelDirError(
                    f"{target}: appeared while this run was committing it; is another run "
                    f"writing to {self.root} without the run lock? Nothing was published; "
                    "run again"
                ) from None
            raise
        self._work = None
        self._committed = target
        _fsync_dir(self.root)
        logger.info("%s: wrote model version %s (%d files)", self.root, version, len(files))
        return target

    def _new_file(self, file_name: str) -> str:
        """Check that a file name is plain, not reserved and not yet used; return it."""
        self._require_open()
        _check_name(file_name, what="model file name")
        if file_name == MANIFEST:
            raise ModelDirError(
                f"{MANIFEST} is written by commit(); store your data under another name"
            )
        if file_name in self._files:
            raise ModelDirError(
                f"{file_name}: already added to this model version; give each file its own name"
            )
        return file_name

    def _path(self, file_name: str) -> Path:
        return self._require_open() / file_name

    def _require_open(self) -> Path:
        if self._committed is not None:
            raise ModelDirError(
                f"{self._committed}: already committed; start a new VersionWriter for a new version"
            )
        if self._work is None:
            raise ModelDirError(
                "VersionWriter is not open; use it as `with VersionWriter(root) as writer:`"
            )
        return self._work


def publish(root: Path, version: str) -> None:
    """Verify a committed version, then atomically make it the one CURRENT names."""
    root = Path(root)
    _check_version_name(version, where=str(root))
    manifest = verify(root / version)
    if manifest.get("version") != version:
        raise ModelDirError(
            f"{root / version}: {MANIFEST} says version {manifest.get('version')!r}; version "
            "folders must not be renamed or copied over each other; run `recsys train` again"
        )
    staged = root / f"{CURRENT}.tmp"
    with open(staged, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    # os.replace is atomic: a reader sees the old name or the new one, never a half-written file.
    os.replace(staged, root / CURRENT)
    _fsync_dir(root)
    logger.info("%s: published model version %s", root, version)


def current_version(root: Path) -> str | None:
    """Return the published version's name, or None if nothing was published yet."""
    path = Path(root) / CURRENT
    try:
        name = path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    if not _VERSION_RE.fullmatch(name):
        raise ModelDirError(
            f"{path}: holds {name[:40]!r}, not a version name like '000001'; "
            f"publish one of the versions in {root} again, or run `recsys train`"
        )
    return name


def current_path(root: Path) -> Path:
    """Return the folder of the published version."""
    root = Path(root)
    version = current_version(root)
    if version is None:
        raise ModelDirError(
            f"{root}: no published model (no {CURRENT} file); run `recsys train` first"
        )
    path = root / version
    if not path.is_dir():
        raise ModelDirError(
            f"{root / CURRENT}: names version {version}, but {path} is missing; "
            "publish a version that exists, or run `recsys train`"
        )
    return path


def read_manifest(version_dir: Path) -> dict[str, Any]:
    """Read a version's manifest.json, checking that this code can read its format."""
    version_dir = Path(version_dir)
    path = version_dir / MANIFEST
    if not version_dir.is_dir():
        raise ModelDirError(f"{version_dir}: no such model version folder; {_CORRUPT}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(
            f"{version_dir}: no {MANIFEST}, so this is not a complete model version; {_CORRUPT}"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: not valid JSON ({exc}); {_CORRUPT}") from None
    if not isinstance(manifest, dict):
        raise ModelDirError(
            f"{path}: holds a JSON {type(manifest).__name__}, not an object; {_CORRUPT}"
        )
    found = manifest.get("format_version")
    if found != FORMAT_VERSION:
        raise ModelDirError(
            f"{path}: format_version {found!r} is not supported (this recsys reads "
            f"{FORMAT_VERSION}); upgrade recsys, or run `recsys train` to rewrite the model"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("bytes"), int)
        for entry in files.values()
    ):
        raise ModelDirError(
            f"{path}: 'files' must map each file name to its sha256 and bytes; {_CORRUPT}"
        )
    return manifest


def verify(version_dir: Path) -> dict[str, Any]:
    """Check every file the manifest lists for presence, size and sha256; return the manifest."""
    version_dir = Path(version_dir)
    manifest = read_manifest(version_dir)
    for file_name, entry in manifest["files"].items():
        path = _checked_path(version_dir, file_name, entry)
        _check_digest(path, _sha256(path), entry)
    return manifest


class VerifiedVersion:
    """A model version read into memory once, every file checked against the manifest.

    Reading, checking and loading take one pass over the files (hashes are computed in a
    second thread while the next file is read), and arrays are views of the bytes read, not
    copies: loading costs about one read of the model. Arrays are read-only.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], blobs: dict[str, np.ndarray]) -> None:
        self.path = path
        self.manifest = manifest
        self._blobs = blobs

    @classmethod
    def read(cls, version_dir: Path) -> VerifiedVersion:
        """Read and verify every listed file; ModelDirError names the first bad one."""
        version_dir = Path(version_dir)
        manifest = read_manifest(version_dir)
        blobs: dict[str, np.ndarray] = {}
        with ThreadPoolExecutor(max_workers=1) as hasher:
            # hashlib releases the GIL on large buffers: hashing overlaps the next read.
            digests = {}
            for file_name, entry in manifest["files"].items():
                path = _checked_path(version_dir, file_name, entry)
                blobs[file_name] = _read_file(path)
                digests[file_name] = hasher.submit(_sha256_bytes, blobs[file_name].data)
            for file_name, entry in manifest["files"].items():
                _check_digest(version_dir / file_name, digests[file_name].result(), entry)
        return cls(version_dir, manifest, blobs)

    def has(self, file_name: str) -> bool:
        """Whether the version holds this file (e.g. 'als.npz')."""
        return file_name in self._blobs

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of `{name}.npz`, as read-only views of the bytes read."""
        file_name = f"{name}.npz"
        path = self.path / file_name
        if file_name not in self._blobs:
            raise ModelDirError(f"{path}: not listed in {MANIFEST}; {_CORRUPT}")
        try:
            arrays = _npz_arrays(self._blobs[file_name])
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelDirError(f"{path}: cannot be read as arrays ({exc}); {_CORRUPT}") from None
        return checked_arrays(path, arrays)

    def table(self, name: str) -> pa.Table:
        """The table of `{name}.parquet`."""
        file_name = f"{name}.parquet"
        path = self.path / file_name
        if file_name not in self._blobs:
            raise ModelDirError(f"{path}: not listed in {MANIFEST}; {_CORRUPT}")
        try:
            # Read on this thread only, never through pq.read_table: its dataset reader finishes
            # on an Arrow worker thread, which may drop the last reference to these
            # Python-owned bytes after read_table has returned. Doing so takes the GIL; if the
            # interpreter is ending by then, CPython exits that thread mid-destructor and C++
            # aborts the process ("terminate called without an active exception", exit 134).
            # ParquetFile.read without threads or pre-buffering decodes here and close() drops
            # the bytes here.
            source = pa.BufferReader(pa.py_buffer(self._blobs[file_name]))
            with pq.ParquetFile(source, pre_buffer=False) as parquet:
                return parquet.read(use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise ModelDirError(f"{path}: cannot be read as a table ({exc}); {_CORRUPT}") from None

    def text(self, file_name: str) -> str:
        """The text of a listed file (e.g. 'ranker.txt'), checked like every other."""
        path = self.path / file_name
        if file_name not in self._blobs:
            raise ModelDirError(f"{path}: not listed in {MANIFEST}; {_CORRUPT}")
        try:
            return self._blobs[file_name].tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelDirError(f"{path}: is not UTF-8 text ({exc}); {_CORRUPT}") from None


class VersionContent:
    """A model version in memory: the arrays, tables and texts a VersionWriter would write.

    The trainer builds one, then writes it (`write`) or hands it straight to serving's loader
    (evaluation scores a model exactly as it would be published, without a round trip to disk).
    It answers `has`, `arrays`, `table` and `text` as a VerifiedVersion does.
    """

    def __init__(self, name: str = "in-memory") -> None:
        self.path = Path(name)
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._tables: dict[str, pa.Table] = {}
        self._texts: dict[str, str] = {}
        self.fields: dict[str, Any] = {}

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as serving reads it: the trainer's fields and the files listed."""
        files = [*(f"{n}.npz" for n in self._arrays), *(f"{n}.parquet" for n in self._tables)]
        return {
            "format_version": FORMAT_VERSION,
            "version": self.path.name,
            "created": _utc_now(),
            **self.fields,
            "files": {name: {} for name in [*files, *self._texts]},
        }

    def add_arrays(self, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Hold named arrays, as `{name}.npz` would."""
        self._arrays[name] = {key: np.asarray(value) for key, value in arrays.items()}

    def add_table(self, name: str, table: pa.Table) -> None:
        """Hold a table, as `{name}.parquet` would."""
        self._tables[name] = table

    def add_text(self, name: str, text: str) -> None:
        """Hold a text file by its full name."""
        self._texts[name] = text

    def has(self, file_name: str) -> bool:
        """Whether the version holds this file (e.g. 'als.npz')."""
        stem, _, kind = file_name.rpartition(".")
        if kind == "npz":
            return stem in self._arrays
        if kind == "parquet":
            return stem in self._tables
        return file_name in self._texts

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of `{name}.npz`."""
        if name not in self._arrays:
            raise ModelDirError(f"{self.path}: holds no {name}.npz")
        return self._arrays[name]

    def table(self, name: str) -> pa.Table:
        """The table of `{name}.parquet`."""
        if name not in self._tables:
            raise ModelDirError(f"{self.path}: holds no {name}.parquet")
        return self._tables[name]

    def text(self, file_name: str) -> str:
        """The text of a file added with add_text."""
        if file_name not in self._texts:
            raise ModelDirError(f"{self.path}: holds no {file_name}")
        return self._texts[file_name]

    def write(self, root: Path) -> Path:
        """Write every file and the manifest as a new version under `root`; return its folder."""
        with VersionWriter(root) as writer:
            for name, arrays in self._arrays.items():
                writer.add_arrays(name, arrays)
            for name, table in self._tables.items():
                writer.add_table(name, table)
            for name, text in self._texts.items():
                writer.add_text(name, text)
            return writer.commit(self.fields)


def checked_arrays(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Refuse arrays no model writes: text or object dtypes, and CSR row pointers that do not
    start at 0, run backwards or point past their entries (ModelDirError names the array)."""
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise ModelDirError(
                f"{path}: array {key!r} holds {array.dtype} values, not numbers; {_CORRUPT}"
            )
    for key, indptr in arrays.items():
        if not key.endswith("indptr"):
            continue
        stem = key[: -len("indptr")]
        entries = next(
            (arrays[k] for k in (f"{stem}indices", f"{stem}items", f"{stem}item") if k in arrays),
            None,
        )
        bad = indptr.ndim != 1 or len(indptr) == 0 or int(indptr[0]) != 0
        bad = bad or bool(np.any(np.diff(indptr.astype(np.int64)) < 0))
        if entries is not None and not bad:
            bad = int(indptr[-1]) > len(entries)
        if bad:
            raise ModelDirError(
                f"{path}: array {key!r} is not a valid row pointer (it must start at 0, never "
                f"decrease and end within its entries); {_CORRUPT}"
            )
    return arrays


def _checked_path(version_dir: Path, file_name: str, entry: dict[str, Any]) -> Path:
    """The path of a listed file, after checking its name, presence and size."""
    if not _NAME_RE.fullmatch(file_name) or file_name == MANIFEST:
        # A name like "../CURRENT" would make verify and load reach outside the version.
        raise ModelDirError(
            f"{version_dir / MANIFEST}: lists {file_name!r}, which is not a plain file "
            f"name; {_CORRUPT}"
        )
    path = version_dir / file_name
    if path.is_symlink():
        # A link may point anywhere (another version, /etc): a version holds its own files.
        raise ModelDirError(f"{path}: is a symbolic link, not a file of this version; {_CORRUPT}")
    if not path.is_file():
        raise ModelDirError(f"{path}: listed in {MANIFEST} but missing; {_CORRUPT}")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ModelDirError(
            f"{path}: {size:,} bytes, but {MANIFEST} says {entry['bytes']:,}; "
            f"the file is truncated or was changed; {_CORRUPT}"
        )
    return path


def _check_digest(path: Path, digest: str, entry: dict[str, Any]) -> None:
    if digest != entry["sha256"]:
        raise ModelDirError(
            f"{path}: sha256 {digest} does not match {MANIFEST} ({entry['sha256']}); "
            f"the file is damaged or was changed; {_CORRUPT}"
        )


def load_arrays(version_dir: Path, name: str) -> dict[str, np.ndarray]:
    """Read `{name}.npz` into memory (read-only arrays), never unpickling anything."""
    path = _listed_file(version_dir, f"{name}.npz")
    try:
        return _npz_arrays(_read_file(path))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelDirError(f"{path}: cannot be read as arrays ({exc}); {_CORRUPT}") from None


def _read_file(path: Path) -> np.ndarray:
    """A file's bytes in a numpy buffer: aligned, and in huge pages where the OS allows,
    which keeps serving's random reads into large arrays fast."""
    size = path.stat().st_size
    buffer = np.empty(size, dtype=np.uint8)
    with open(path, "rb") as fh:
        if fh.readinto(buffer.data) != size:
            raise OSError(f"{path}: changed size while being read")
    buffer.flags.writeable = False
    return buffer


class _BufferFile(io.RawIOBase):
    """A read-only, seekable file over a buffer, without copying it (io.BytesIO would)."""

    def __init__(self, buffer: np.ndarray) -> None:
        self._view = buffer.data.cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        count = max(min(len(target), len(self._view) - self._position), 0)
        target[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = base[whence] + offset
        return self._position

    def tell(self) -> int:
        return self._position


def _npz_arrays(blob: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of an npz file's bytes: views of the bytes for stored members.

    np.load reads stored members through zipfile in small chunks, checking CRCs on the way:
    several times slower on a model of hundreds of MB, and the checksums were already
    verified against the manifest. Compressed members use np.load.
    """
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(_BufferFile(blob)) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                with np.load(io.BytesIO(blob.tobytes()), allow_pickle=False) as fallback:
                    return {k: fallback[k] for k in fallback.files}
            local = blob[info.header_offset : info.header_offset + 30].tobytes()
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            header = _BufferFile(blob)
            header.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(header)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
            if dtype.hasobject:
                raise ValueError(
                    f"member {key!r} holds Python objects, which would need pickle "
                    "(allow_pickle is off)"
                )
            count = int(np.prod(shape, dtype=np.int64))
            offset = header.tell()
            data = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
            if offset % dtype.alignment:
                data = data.copy()  # an unaligned view would slow every operation on it
                data.flags.writeable = False
            out[key] = data.reshape(shape, order="F" if fortran else "C")
    return out


def load_table(version_dir: Path, name: str) -> pa.Table:
    """Read `{name}.parquet` fully into memory."""
    path = _listed_file(version_dir, f"{name}.parquet")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ModelDirError(f"{path}: cannot be read as a table ({exc}); {_CORRUPT}") from None


def load_json(version_dir: Path, name: str) -> Any:
    """Read `{name}.json`."""
    path = _listed_file(version_dir, f"{name}.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: not valid JSON ({exc}); {_CORRUPT}") from None


def versions(root: Path) -> list[str]:
    """Return the complete versions (folders with a manifest), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    names = [
        entry.name
        for entry in root.iterdir()
        if _VERSION_RE.fullmatch(entry.name) and (entry / MANIFEST).is_file()
    ]
    return sorted(names, key=int)


def prune(root: Path, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions, never the published one; return what went."""
    root = Path(root)
    if keep < 1:
        # Keeping the newest version is what keeps version numbers increasing.
        raise ValueError(f"prune: keep must be at least 1 (got {keep})")
    present = versions(root)
    kept = set(present[-keep:])
    current = current_version(root)
    if current is not None:
        kept.add(current)
    deleted: list[str] = []
    for name in present:
        if name in kept:
            continue
        # Renamed out of the way first: a crash during rmtree then leaves a .tmp-* folder for
        # clean_stale, never a half-deleted version that still looks complete.
        doomed = root / f"{TMP_PREFIX}prune-{name}-{uuid.uuid4().hex[:12]}"
        os.rename(root / name, doomed)
        shutil.rmtree(doomed)
        deleted.append(name)
    if deleted:
        _fsync_dir(root)
        logger.info("%s: deleted old model versions %s", root, ", ".join(deleted))
    return deleted


def clean_stale(root: Path) -> list[Path]:
    """Remove work folders left by crashed runs; call it only while holding the run lock."""
    root = Path(root)
    if not root.is_dir():
        return []
    stale = sorted(
        entry
        for entry in root.iterdir()
        if entry.name.startswith(TMP_PREFIX) or entry.name == f"{CURRENT}.tmp"
    )
    for entry in stale:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        logger.warning("%s: removed %s, left by a run that did not finish", root, entry.name)
    return stale


def _listed_file(version_dir: Path, file_name: str) -> Path:
    """Return the path of a file the manifest lists; only files it vouches for are loaded."""
    version_dir = Path(version_dir)
    listed = read_manifest(version_dir)["files"]
    if file_name not in listed:
        held = ", ".join(sorted(listed)) or "nothing"
        raise ModelDirError(
            f"{version_dir}: has no {file_name} (it holds {held}); "
            "the model was written by another version of recsys; run `recsys train` again"
        )
    return version_dir / file_name


def _next_version(root: Path) -> str:
    """Return the number after every version present, complete or not, and after CURRENT."""
    numbers = [int(entry.name) for entry in root.iterdir() if _VERSION_RE.fullmatch(entry.name)]
    # A damaged CURRENT must not stop the run that will publish over it.
    with contextlib.suppress(ModelDirError):
        numbers.append(int(current_version(root) or 0))
    return f"{max(numbers, default=0) + 1:06d}"


def _check_version_name(version: str, where: str) -> None:
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise ModelDirError(
            f"{where}: {version!r} is not a version name like '000001'; "
            "pass a name returned by commit() or versions()"
        )


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ModelDirError(
            f"{what} {name!r} is not allowed; use letters, digits, '_', '-' and '.' only, "
            "not starting with '.' or '-'"
        )


def _to_json(data: Any, where: str) -> str:
    """Serialise plain data strictly: no NaN or infinity, which other JSON readers reject."""
    try:
        return (
            json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
            + "\n"
        )
    except (TypeError, ValueError) as exc:
        raise ModelDirError(
            f"{where}: cannot be stored as JSON ({exc}); store dicts, lists, strings, numbers, "
            "booleans and None (None for a missing or NaN value)"
        ) from None


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays convert without loss; anything else is the caller's to convert.
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# Array data starts at a multiple of this many bytes in an .npz, so that loading can use the
# file's bytes in place (an unaligned array must be copied to be usable at full speed).
_ALIGN = 64
_PADDING_ID = 0xD935  # the extra-field id zipalign uses for padding; readers skip it


def _aligned_member(name: str, offset: int) -> zipfile.ZipInfo:
    """A zip member starting at `offset` whose data starts at a multiple of _ALIGN.

    The local header is 30 bytes, the name, the extra field (our padding record, then the
    20-byte zip64 record that force_zip64 adds); .npy then pads its own header to 64 bytes.
    """
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    fixed = offset + 30 + len(name.encode("utf-8")) + 4 + 20
    pad = -fixed % _ALIGN
    info.extra = struct.pack("<HH", _PADDING_ID, pad) + bytes(pad)
    return info


def _sha256_bytes(data: memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    """Flush a file's contents to disk, so that a power cut cannot leave it half written."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (files created, renamed or removed in it) to disk."""
    if os.name == "nt":  # Windows cannot open a folder to fsync it.
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
