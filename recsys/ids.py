"""Id maps: the shop's own user and item ids <-> contiguous int32 indices, both directions."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import InputFileError, UnknownIdError


class IdMap:
    """A vocabulary of ids: index i holds the i-th id; unknown ids map to -1 on request.

    Ids keep the type they had in the logs: int64 for whole-number ids, str otherwise.
    """

    def __init__(self, ids: Iterable[Any], name: str = "id") -> None:
        index = pd.Index(
            np.asarray(list(ids) if not isinstance(ids, np.ndarray | pd.Index | pd.Series) else ids)
        )
        if index.has_duplicates:
            first = index[index.duplicated()][0]
            raise ValueError(f"{name} map: id {first!r} appears more than once")
        if index.hasnans:
            raise ValueError(f"{name} map: ids must not be missing")
        self.name = name
        self._index = index

    @classmethod
    def from_values(cls, values: Iterable[Any], name: str = "id") -> IdMap:
        """Build a map of the distinct values, sorted, so that the same ids give the same map."""
        series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(list(values)))
        uniques = pd.unique(series.dropna())
        return cls(np.sort(np.asarray(uniques)), name=name)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._index.equals(other._index)

    def __repr__(self) -> str:
        return f"IdMap({self.name!r}, {len(self)} ids, dtype={self.dtype})"

    @property
    def dtype(self) -> str:
        """'int64' or 'str', the type of the shop's ids."""
        return "int64" if pd.api.types.is_integer_dtype(self._index.dtype) else "str"

    @property
    def ids(self) -> np.ndarray:
        """All ids, in index order."""
        return self._index.to_numpy()

    def index(self, ids: Iterable[Any], *, strict: bool = False) -> np.ndarray:
        """Return int32 indices of ids; unknown ids give -1, or raise UnknownIdError if strict."""
        values = ids if isinstance(ids, np.ndarray | pd.Index | pd.Series) else list(ids)
        found = self._index.get_indexer(values).astype(np.int32)
        if strict and (found < 0).any():
            missing = np.asarray(values)[found < 0]
            first = missing[0].item()  # a numpy scalar would print as np.str_('...')
            raise UnknownIdError(
                f"{len(missing):,} {self.name} ids are not known to the model (first: {first!r})"
            )
        return found

    def index_of(self, external_id: Any) -> int:
        """Return the index of one id, or -1 if it is unknown."""
        try:
            loc = self._index.get_loc(external_id)
        except (KeyError, TypeError):
            return -1
        return int(loc) if isinstance(loc, int | np.integer) else -1

    def lookup(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """Return the ids at the given indices."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = idx[(idx < 0) | (idx >= len(self))][0]
            raise IndexError(f"{self.name} map: index {bad} is outside 0..{len(self) - 1}")
        return self._index.to_numpy()[idx]

    def to_table(self) -> pa.Table:
        """Return the map as an Arrow table with one column `id`, in index order."""
        arr = pa.array(self.ids, type=pa.int64() if self.dtype == "int64" else pa.string())
        return pa.table({"id": arr})

    @classmethod
    def from_table(cls, table: pa.Table, name: str = "id") -> IdMap:
        """Rebuild a map from to_table()'s table."""
        column = table.column("id")
        values = (
            column.to_numpy()
            if pa.types.is_integer(column.type)
            else np.asarray(column.to_pylist(), dtype=object)
        )
        return cls(values, name=name)

    def save(self, path: str | Path) -> None:
        """Write the map to a Parquet file with one column `id`."""
        pq.write_table(self.to_table(), path)

    @classmethod
    def load(cls, path: str | Path, name: str = "id") -> IdMap:
        """Read a map written by save()."""
        try:
            table = pq.read_table(path, columns=["id"])
        except (OSError, pa.ArrowInvalid, KeyError) as exc:
            raise InputFileError(f"{path}: not a readable id map ({exc})") from None
        return cls.from_table(table, name=name)
