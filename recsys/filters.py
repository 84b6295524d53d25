"""Business filters: what may appear in a list, resolved once per call into index sets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.config import ServingConfig


@dataclass(frozen=True)
class Filters:
    """One call's filters; None fields take the model's serving defaults."""

    exclude: tuple[Any, ...] = ()
    categories: tuple[Any, ...] | None = None
    available_only: bool | None = None
    exclude_purchased: bool | None = None
    max_per_category: int | None = None

    def resolved(self, defaults: ServingConfig) -> Filters:
        """Fill unset fields from the serving defaults."""
        return Filters(
            exclude=self.exclude,
            categories=self.categories,
            available_only=_pick(self.available_only, defaults.available_only),
            exclude_purchased=_pick(self.exclude_purchased, defaults.exclude_purchased),
            max_per_category=_pick(self.max_per_category, defaults.max_per_category),
        )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def keep_mask(
    item_available: np.ndarray,
    item_category: np.ndarray,
    allowed_categories: np.ndarray | None,
    available_only: bool,
) -> Callable[[np.ndarray], np.ndarray] | None:
    """Return a function telling which item indices pass availability and category filters."""
    if not available_only and allowed_categories is None:
        return None

    def keep(items: np.ndarray) -> np.ndarray:
        mask = item_available[items] if available_only else np.ones(len(items), dtype=bool)
        if allowed_categories is not None:
            mask &= np.isin(item_category[items], allowed_categories)
        return mask

    return keep


class Picker:
    """Collects a list from several strategies: no duplicates, a shared exclude set, a cap per
    category, and the call's filters; stops at n."""

    def __init__(
        self,
        n: int,
        excluded: Iterable[int],
        keep: Callable[[np.ndarray], np.ndarray] | None,
        item_category: np.ndarray,
        max_per_category: int,
    ) -> None:
        self.n = n
        self.seen: set[int] = set(int(i) for i in excluded)
        self.keep = keep
        self.item_category = item_category
        self.cap = max_per_category
        self.per_category: dict[int, int] = {}
        # while set, strategies fill the list only up to here (a tier's lead takes its share).
        self.ceiling: int | None = None
        self.items: list[int] = []
        self.scores: list[float] = []
        self.sources: list[str] = []
        self.seeds: list[int] = []

    @property
    def full(self) -> bool:
        """Whether the list has n items."""
        return len(self.items) >= self.n

    @property
    def excluded(self) -> np.ndarray:
        """Item indices a strategy need not propose again (already picked or excluded)."""
        return np.fromiter(self.seen, dtype=np.int64, count=len(self.seen))

    def offer(
        self,
        items: np.ndarray,
        scores: np.ndarray,
        source: str | np.ndarray,
        seeds: np.ndarray | None = None,
        *,
        filtered: bool = False,
        upto: int | None = None,
    ) -> None:
        """Add ranked candidates in order until the list has `upto` (default n) items.

        `filtered`: keep() already ran on the candidates, which are distinct and not excluded.
        """
        stop = self.n if upto is None else min(upto, self.n)
        if self.ceiling is not None:
            stop = min(stop, self.ceiling)
        if len(self.items) >= stop or len(items) == 0:
            return
        if self.keep is not None and not filtered:
            mask = self.keep(np.asarray(items, dtype=np.int64))
            items, scores = items[mask], scores[mask]
            if isinstance(source, np.ndarray):
                source = source[mask]
            if seeds is not None:
                seeds = seeds[mask]
        if filtered and not self.cap:
            # Candidates the filters and exclude set already passed, and no cap: take them.
            take = stop - len(self.items)
            picked = items[:take].tolist()
            self.seen.update(picked)
            self.items += picked
            self.scores += np.asarray(scores[:take], dtype=np.float64).tolist()
            self.sources += (
                [source] * len(picked) if isinstance(source, str) else source[:take].tolist()
            )
            self.seeds += [-1] * len(picked) if seeds is None else seeds[:take].tolist()
            return
        # Plain Python values per block, not a numpy scalar conversion per item; blocks, since
        # a long list (every item, as the last resort) is seldom read far.
        block = max(4 * (stop - len(self.items)), 64)
        for start in range(0, len(items), block):
            end = start + block
            item_list = items[start:end].tolist()
            score_list = np.asarray(scores[start:end], dtype=np.float64).tolist()
            if isinstance(source, str):
                source_list = [source] * len(item_list)
            else:
                source_list = source[start:end].tolist()
            seed_list = [-1] * len(item_list) if seeds is None else seeds[start:end].tolist()
            for position, item in enumerate(item_list):
                if item in self.seen:
                    continue
                if self.cap:
                    category = int(self.item_category[item])
                    if category >= 0 and self.per_category.get(category, 0) >= self.cap:
                        continue
                    self.per_category[category] = self.per_category.get(category, 0) + 1
                self.seen.add(item)
                self.items.append(item)
                self.scores.append(score_list[position])
                self.sources.append(source_list[position])
                self.seeds.append(seed_list[position])
                if len(self.items) >= stop:
                    return
