"""What every model is fitted on, and the small protocol every model follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.errors import NotFittedError
from recsys.history import UserHistory


@dataclass(frozen=True)
class FitData:
    """Indexed interactions and item attributes, aligned to the id maps' dense indices.

    Item attributes are per item index: `item_category` / `item_brand` are int32 codes with -1
    for unknown, `item_price` float64 with NaN for unknown, `item_available` bool (True when
    unknown), `item_first_seen` int64 Unix seconds of the item's creation or first event.
    `now` is the end of the data (Unix seconds): models that age things measure from it.
    """

    matrix: sp.csr_matrix
    history: UserHistory
    item_category: np.ndarray
    n_categories: int
    item_brand: np.ndarray
    item_price: np.ndarray
    item_available: np.ndarray
    item_first_seen: np.ndarray
    now: int
    timezone: str = "UTC"
    # segment code of each user (-1: none), from the user attributes named in serving.segment_by.
    user_segment: np.ndarray | None = None
    n_segments: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        """Number of users."""
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.matrix.shape[1])

    @classmethod
    def from_matrix(
        cls, matrix: sp.csr_matrix, history: UserHistory, now: int, **attributes: Any
    ) -> FitData:
        """Build FitData with unknown item attributes wherever none are given."""
        n_items = int(matrix.shape[1])
        category = np.asarray(attributes.pop("item_category", np.full(n_items, -1)), np.int32)
        defaults: dict[str, Any] = {
            "item_category": category,
            "n_categories": int(category.max()) + 1 if len(category) else 0,
            "item_brand": np.full(n_items, -1, dtype=np.int32),
            "item_price": np.full(n_items, np.nan),
            "item_available": np.ones(n_items, dtype=bool),
            "item_first_seen": np.zeros(n_items, dtype=np.int64),
        }
        defaults.update(attributes)
        return cls(matrix=matrix, history=history, now=int(now), **defaults)


class Model:
    """A model: `__init__` stores configuration, `fit` learns plain arrays (trailing underscore).

    `arrays()` names every learned array for saving (no pickle); `load_arrays()` restores them.
    """

    name: ClassVar[str] = "model"
    # learned attributes, in the order arrays() returns them.
    learned: ClassVar[tuple[str, ...]] = ()

    def fit(self, data: FitData) -> Self:
        """Learn from data; return self."""
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        """Whether fit() (or load_arrays()) has run."""
        return all(hasattr(self, attr) for attr in self.learned)

    def check_fitted(self) -> None:
        """Raise NotFittedError unless the model has been fitted."""
        # Serving calls this on every request; once fitted, a model stays fitted.
        if self.__dict__.get("_fitted_checked"):
            return
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call fit() or load its arrays first"
            )
        self._fitted_checked = True

    def arrays(self) -> dict[str, np.ndarray]:
        """Every learned array by name, for saving without pickle."""
        self.check_fitted()
        out: dict[str, np.ndarray] = {}
        for attr in self.learned:
            value = getattr(self, attr)
            if sp.issparse(value):
                csr = sp.csr_matrix(value)
                key = attr.rstrip("_")
                out[f"{key}.data"] = csr.data
                out[f"{key}.indices"] = csr.indices
                out[f"{key}.indptr"] = csr.indptr
                out[f"{key}.shape"] = np.asarray(csr.shape, dtype=np.int64)
            else:
                out[attr.rstrip("_")] = np.asarray(value)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> Self:
        """Restore learned state from arrays(); return self."""
        for attr in self.learned:
            key = attr.rstrip("_")
            if key in arrays:
                setattr(self, attr, np.asarray(arrays[key]))
            elif f"{key}.data" in arrays:
                shape = tuple(int(x) for x in arrays[f"{key}.shape"])
                matrix = sp.csr_matrix(
                    (arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"]),
                    shape=shape,
                )
                setattr(self, attr, matrix)
            else:
                raise KeyError(f"{type(self).__name__}: array {key!r} is missing")
        return self


def take_ranked(
    items: np.ndarray, scores: np.ndarray, n: int, exclude: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the first n of a ranked list, skipping excluded items."""
    n = max(int(n), 0)
    if exclude is None or len(exclude) == 0:
        return items[:n], scores[:n]
    exclude = np.asarray(exclude).ravel()
    # At most len(exclude) of the list can be skipped, so only that much more is looked at.
    head = items[: n + len(exclude)]
    keep = member_mask(head, exclude, invert=True)
    return head[keep][:n], scores[: len(head)][keep][:n]


def member_mask(values: np.ndarray, among: np.ndarray, invert: bool = False) -> np.ndarray:
    """Return which values are in `among` (or are not, with invert), like np.isin."""
    if len(values) * len(among) <= 4096:
        # For a few items a direct comparison is several times faster than np.isin.
        equal = values[:, None] == among[None, :]
        return ~equal.any(axis=1) if invert else equal.any(axis=1)
    # np.isin's set-up costs more than the work at the sizes a call sees: one sort of `among`
    # and a binary search per value.
    ordered = np.sort(among)
    where = np.searchsorted(ordered, values)
    np.minimum(where, len(ordered) - 1, out=where)
    found = ordered[where] == values
    return ~found if invert else found
