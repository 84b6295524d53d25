"""Seeded synthetic clickstream in RetailRocket's original file format, for speed/memory benchmarks.

The log is realistic in shape only (counts, heavy tails, sessions, cart/purchase funnels); it must
never be used to claim accuracy. Everything is vectorised numpy: no Python loop per event/visitor.

How a log is built:

1. A category forest (~3 levels below the roots); items are spread over its leaves.
2. Item view counts (every item >= 1, Zipf-like tail) and visitor view counts (every visitor >= 1,
   heavy tail) are fixed first, so distinct items, distinct visitors and views are exact.
3. Each visitor's views are cut into sessions; sessions are laid end to end in an order that keeps
   most of a visitor's sessions together, item "tokens" are laid end to end sorted by category in
   tree (depth-first) order, and the two sequences are zipped. So a session browses one category,
   a visitor mostly stays in one corner of the tree, and popular items get more views.
4. Purchases are built from baskets of a buyer's viewed items, mostly with a cart in between, plus
   some later repurchases; the remaining add-to-carts are abandoned carts of viewed items.
5. Events are written in a seeded random row order (the original file is not sorted either).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["FORMATS", "SyntheticPaths", "SyntheticShape", "generate_retailrocket"]

FORMATS = ("csv", "csv.gz", "parquet")
EVENT_NAMES = ("view", "addtocart", "transaction")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_SECOND_MS = 1_000
_MINUTE_MS = 60 * _SECOND_MS
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS
_WEEK_MS = 7 * _DAY_MS

# Shape knobs. They were chosen to look like RetailRocket, not fitted to it.
_COUNT_FIELDS = ("visitors", "items", "views", "carts", "transactions", "categories")
_LEVEL_SHARES = (0.015, 0.215, 0.715, 1.0)  # cumulative share of categories per tree level
_ITEM_ZIPF_OFFSET = 1e-3  # Zipf rank offset as a share of items: flattens the very top, keeps tail
_VISITOR_ACTIVITY_SIGMA = 2.0  # lognormal spread of visitor activity; ~70% end up with one event
_HEAVY_TAIL = 1.1  # Pareto shape of visitor activity in the heavy-tailed shop
_LEAF_POPULARITY_SIGMA = 1.5  # lognormal spread of how many items a leaf category holds
_NEW_SESSION_PROB = 0.3  # chance that a visitor's next view opens a new session
_STAY_PROB = 0.7  # chance that a session stays in the visitor's corner of the category tree
_REVIEW_PAIR_PROB = 0.5  # chance a view joins its item's twin view: gives back-to-back re-views
_VIEW_GAP_MEDIAN_MS = 45 * _SECOND_MS
_RETURN_DAYS_MEAN = 7.0  # how long after their first session visitors come back, on average
_REPURCHASE_SHARE = 0.03  # share of purchase rows that rebuy an item bought before
_ITEMS_PER_TRANSACTION = 1.27  # RetailRocket: 22,457 purchase rows in 17,672 transactions
_CART_BEFORE_PURCHASE_PROB = 0.9
_UNVIEWED_PURCHASE_PROB = 0.05  # purchases of an item the buyer never viewed (logging gaps)
_UNVIEWED_CART_PROB = 0.03
_IN_STOCK_FIRST_PROB = 0.75  # share of items available at the first snapshot
_PRICE_STEP = 120  # prices are rounded to this step and written like the original: "n12000.000"


@dataclass(frozen=True)
class SyntheticShape:
    """Target counts and time span of a synthetic log; defaults are RetailRocket's figures."""

    visitors: int = 1_407_580
    items: int = 235_061
    views: int = 2_664_312
    carts: int = 69_332
    transactions: int = 22_457
    categories: int = 1_669
    start: str = "2015-05-03"
    days: float = 138.0
    # "light": lognormal visitor activity (most visitors one event, the busiest a few hundred);
    # "heavy": Pareto activity, as real shops have bots, resellers and power users: some
    # visitors with thousands of events, capped at `max_visitor_views`.
    activity: str = "light"
    max_visitor_views: int = 2_000

    def scaled(self, factor: float) -> SyntheticShape:
        """Return this shape with every count multiplied by factor and rounded."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"scale factor must be a positive finite number (got {factor!r})")
        counts = {name: round(getattr(self, name) * factor) for name in _COUNT_FIELDS}
        return replace(self, **counts)


@dataclass(frozen=True)
class SyntheticPaths:
    """Paths of the three files written by generate_retailrocket."""

    events: Path
    item_properties: Path
    category_tree: Path


def generate_retailrocket(
    out_dir: str | Path,
    shape: SyntheticShape = SyntheticShape(),
    seed: int = 0,
    fmt: str = "csv",
) -> SyntheticPaths:
    """Write a seeded synthetic log in RetailRocket's original format."""
    start_ms = _check_arguments(shape, seed, fmt)
    end_ms = start_ms + round(shape.days * _DAY_MS)
    # One independent stream per step, so tuning one step never reshuffles the others.
    tree_rng, item_rng, view_rng, buy_rng, cart_rng, prop_rng, order_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(7)
    )

    tree = _build_category_tree(tree_rng, shape.categories)
    catalog = _build_catalog(item_rng, shape, tree)
    views = _build_views(view_rng, shape, catalog, tree, start_ms)
    buys = _build_purchases(buy_rng, shape, views, catalog, end_ms)
    carts = _build_abandoned_carts(cart_rng, shape.carts - len(buys.cart_time), views, catalog)

    events = _events_table(order_rng, views, buys, carts, catalog, end_ms)
    properties = _item_properties_table(prop_rng, catalog, tree, start_ms, end_ms)
    categories = _category_tree_table(order_rng, tree)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = SyntheticPaths(
        events=out / f"events.{fmt}",
        item_properties=out / f"item_properties.{fmt}",
        category_tree=out / f"category_tree.{fmt}",
    )
    _write_table(events, paths.events, fmt)
    _write_table(properties, paths.item_properties, fmt)
    _write_table(categories, paths.category_tree, fmt)
    return paths


def _check_arguments(shape: SyntheticShape, seed: int, fmt: str) -> int:
    """Raise ValueError on arguments that cannot give a log; return the start in Unix ms."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    for name in _COUNT_FIELDS:
        value = getattr(shape, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"shape.{name} must be a positive integer (got {value!r})")
    if shape.activity not in ("light", "heavy"):
        raise ValueError(f"shape.activity must be 'light' or 'heavy' (got {shape.activity!r})")
    for name in ("visitors", "items"):
        if getattr(shape, name) > shape.views:
            raise ValueError(
                f"shape.{name} ({getattr(shape, name)}) must not exceed shape.views "
                f"({shape.views}): every {name[:-1]} needs at least one view"
            )
    days = shape.days
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 1 <= days < 1e5:
        raise ValueError(f"shape.days must be a number from 1 to 100000 (got {days!r})")
    try:
        return int(np.datetime64(shape.start, "ms").astype(np.int64))
    except (TypeError, ValueError):
        raise ValueError(
            f"shape.start must be an ISO date such as '2015-05-03' (got {shape.start!r})"
        ) from None


@dataclass(frozen=True)
class _Tree:
    """Category forest: node i has raw id raw_id[i] and parent index parent[i] (-1 for roots)."""

    raw_id: IntArray
    parent: IntArray
    leaves: IntArray  # node indices without children; only these hold items
    dfs_rank: IntArray  # position of each node in a depth-first walk with shuffled siblings


@dataclass(frozen=True)
class _Catalog:
    """Items in events: raw id, category node, and view tokens (item index once per view)."""

    raw_id: IntArray
    category: IntArray
    tokens: IntArray  # sorted by item; drawing a token uniformly draws an item by popularity


@dataclass(frozen=True)
class _Views:
    """All view events, grouped by visitor (visitor v owns rows first[v] .. first[v]+count[v])."""

    visitor: IntArray
    item: IntArray
    time: IntArray
    first: IntArray
    count: IntArray
    visitor_raw_id: IntArray


@dataclass(frozen=True)
class _Purchases:
    """Transaction rows and the add-to-carts that lead to them."""

    visitor: IntArray
    item: IntArray
    time: IntArray
    transaction_id: IntArray
    cart_visitor: IntArray
    cart_item: IntArray
    cart_time: IntArray


@dataclass(frozen=True)
class _Carts:
    """Add-to-carts that never turn into a purchase."""

    visitor: IntArray
    item: IntArray
    time: IntArray


def _build_category_tree(rng: np.random.Generator, n: int) -> _Tree:
    """Build a forest of n categories, few roots widening to ~3 levels, heavy-tailed fan-out."""
    # End index of each level; clipping keeps at least one root and tiny trees well formed.
    shares = np.asarray(_LEVEL_SHARES)
    bounds = np.maximum.accumulate(np.clip(np.rint(shares * n), 1, n)).astype(np.int64)
    parent = np.full(n, -1, dtype=np.int64)
    # Sort key of each node's ancestors, root first: lexsort of it gives a depth-first order.
    path_keys = np.full((n, len(bounds)), -1.0)
    path_keys[: bounds[0], 0] = rng.random(int(bounds[0]))
    parents_lo, parents_hi = 0, int(bounds[0])
    for level in range(1, len(bounds)):
        lo, hi = int(bounds[level - 1]), int(bounds[level])
        if hi == lo:
            continue
        # Lognormal weights: a few parents get many children, as in real shop trees.
        weights = rng.lognormal(0.0, 1.0, parents_hi - parents_lo)
        parent[lo:hi] = parents_lo + _draw(rng, weights, hi - lo)
        path_keys[lo:hi] = path_keys[parent[lo:hi]]
        path_keys[lo:hi, level] = rng.random(hi - lo)
        parents_lo, parents_hi = lo, hi
    dfs_order = np.lexsort(path_keys.T[::-1])
    has_child = np.bincount(parent[parent >= 0], minlength=n) > 0
    return _Tree(
        raw_id=rng.permutation(n).astype(np.int64),
        parent=parent,
        leaves=np.flatnonzero(~has_child).astype(np.int64),
        dfs_rank=_inverse(dfs_order),
    )


def _build_catalog(rng: np.random.Generator, shape: SyntheticShape, tree: _Tree) -> _Catalog:
    """Pick item ids, their leaf categories and exact per-item view counts (all >= 1)."""
    n = shape.items
    # Sparse ids like the original (itemids up to ~2x the item count).
    raw_id = np.sort(rng.choice(2 * n, size=n, replace=False)).astype(np.int64)
    leaf_weights = rng.lognormal(0.0, _LEAF_POPULARITY_SIGMA, len(tree.leaves))
    category = tree.leaves[_draw(rng, leaf_weights, n)]
    # Zipf with exponent 1 integrated over each rank's bin: exact tail, finite head at any scale.
    offset = _ITEM_ZIPF_OFFSET * n
    rank = rng.permutation(n).astype(np.float64)
    popularity = np.log((rank + 1 + offset) / (rank + offset))
    views_per_item = 1 + rng.multinomial(shape.views - n, popularity / popularity.sum())
    tokens = np.repeat(np.arange(n, dtype=np.int64), views_per_item)
    return _Catalog(raw_id=raw_id, category=category, tokens=tokens)


def _build_views(
    rng: np.random.Generator,
    shape: SyntheticShape,
    catalog: _Catalog,
    tree: _Tree,
    start_ms: int,
) -> _Views:
    """Give every visitor >= 1 view, cut them into sessions and fill sessions with items."""
    n_views = shape.views
    count = 1 + _activity_counts(rng, shape, n_views - shape.visitors)
    first = np.cumsum(count) - count
    visitor = np.repeat(np.arange(shape.visitors, dtype=np.int64), count)
    position = np.arange(n_views) - first[visitor]

    opens = (position == 0) | (rng.random(n_views) < _NEW_SESSION_PROB)
    session = np.cumsum(opens) - 1
    session_start_row = np.flatnonzero(opens)
    session_visitor = visitor[session_start_row]
    n_sessions = len(session_start_row)

    # Sessions that "stay" share their visitor's key, so they sit side by side in the stream
    # and land in the same or a neighbouring category; the others go anywhere.
    visitor_key = rng.random(shape.visitors)
    stays = rng.random(n_sessions) < _STAY_PROB
    session_key = np.where(stays, visitor_key[session_visitor], rng.random(n_sessions))
    session_order = np.argsort(session_key, kind="stable")
    # Where each session begins in the stream: running total of session lengths in stream order.
    length = np.diff(np.r_[session_start_row, n_views])[session_order]
    stream_start = np.empty(n_sessions, dtype=np.int64)
    stream_start[session_order] = np.cumsum(length) - length
    slot = stream_start[session] + np.arange(n_views) - session_start_row[session]
    item = _token_stream(rng, catalog, tree)[slot]

    time = _session_times(rng, shape, session, session_start_row, session_visitor, start_ms)
    return _Views(
        visitor=visitor,
        item=item,
        time=time,
        first=first,
        count=count,
        visitor_raw_id=rng.permutation(shape.visitors).astype(np.int64),
    )


def _activity_counts(rng: np.random.Generator, shape: SyntheticShape, extra: int) -> IntArray:
    """How many views beyond the first each visitor has (summing to `extra` exactly)."""
    if shape.activity == "light":
        weights = rng.lognormal(0.0, _VISITOR_ACTIVITY_SIGMA, shape.visitors)
        return rng.multinomial(extra, weights / weights.sum()).astype(np.int64)
    # Pareto tail (shape 1.1: a handful of visitors hold a large share), then capped: a visitor
    # over the cap gets exactly the cap's share, the others share the rest by their weights.
    weights = rng.pareto(_HEAVY_TAIL, shape.visitors) + 1e-3
    cap = max(shape.max_visitor_views - 1, 1)
    if cap * shape.visitors < extra:
        raise ValueError(
            f"shape.max_visitor_views {shape.max_visitor_views} is too small for "
            f"{shape.views:,} views over {shape.visitors:,} visitors"
        )
    capped = np.zeros(shape.visitors, dtype=bool)
    share = weights / weights.sum()
    for _ in range(100):
        free_mass = 1.0 - capped.sum() * cap / extra
        share = np.where(capped, cap / extra, weights / weights[~capped].sum() * free_mass)
        newly = ~capped & (share * extra > cap)
        if not newly.any():
            break
        capped |= newly
    weights = share
    counts = rng.multinomial(extra, weights / weights.sum()).astype(np.int64)
    # A multinomial draw can land a little above the cap: the surplus moves to random visitors
    # under it, so the total stays exact.
    surplus = int(np.maximum(counts - cap, 0).sum())
    counts = np.minimum(counts, cap)
    while surplus:
        room = np.flatnonzero(counts < cap)
        picks = rng.choice(room, size=min(surplus, len(room)), replace=False)
        counts[picks] += 1
        surplus -= len(picks)
    return counts


def _token_stream(rng: np.random.Generator, catalog: _Catalog, tree: _Tree) -> IntArray:
    """Order view tokens by category in depth-first order, shuffled within each category."""
    tokens = catalog.tokens
    n = len(tokens)
    per_item = np.bincount(tokens, minlength=len(catalog.raw_id))
    occurrence = np.arange(n) - (np.cumsum(per_item) - per_item)[tokens]
    # Tokens of an item are paired up; a token that takes its pair's key sorts next to its twin,
    # which gives the back-to-back re-views of one item that real logs are full of.
    pairs_per_item = (per_item + 1) // 2
    pair = (np.cumsum(pairs_per_item) - pairs_per_item)[tokens] + occurrence // 2
    pair_key = rng.random(int(pairs_per_item.sum()))
    key = np.where(rng.random(n) < _REVIEW_PAIR_PROB, pair_key[pair], rng.random(n))
    # Category rank plus a key in [0, 1) sorts like (rank, key) but with one fast argsort; equal
    # keys only ever belong to the same item, so the sort needs no stability.
    order = np.argsort(tree.dfs_rank[catalog.category[tokens]] + key)
    return tokens[order]


def _session_times(
    rng: np.random.Generator,
    shape: SyntheticShape,
    session: IntArray,
    session_start_row: IntArray,
    session_visitor: IntArray,
    start_ms: int,
) -> IntArray:
    """Time every view: sessions on some day of the span, views seconds to minutes apart."""
    n_sessions = len(session_start_row)
    # The last day is left free so carts and purchases after late views still fit in the span.
    usable_days = max(1, math.floor(shape.days) - 1)
    first_day = rng.integers(0, usable_days, shape.visitors)
    is_first = np.r_[True, session_visitor[1:] != session_visitor[:-1]]
    return_after = np.floor(rng.exponential(_RETURN_DAYS_MEAN, n_sessions)).astype(np.int64)
    day = (first_day[session_visitor] + np.where(is_first, 0, return_after)) % usable_days
    session_start = start_ms + day * _DAY_MS + _time_of_day(rng, n_sessions)

    gap = _lognormal_ms(rng, _VIEW_GAP_MEDIAN_MS, 1.0, len(session), _SECOND_MS, 30 * _MINUTE_MS)
    gap[session_start_row] = 0
    elapsed = np.cumsum(gap)
    return session_start[session] + elapsed - elapsed[session_start_row][session]


def _time_of_day(rng: np.random.Generator, n: int) -> IntArray:
    """Draw n times of day in ms from a daily cycle peaking in the evening (UTC)."""
    minutes = np.arange(24 * 60)
    density = 1.0 + 0.7 * np.cos(2 * np.pi * (minutes / 60 - 18) / 24)
    cdf = np.r_[0.0, np.cumsum(density)] / density.sum()
    edges = np.arange(24 * 60 + 1) * float(_MINUTE_MS)
    tod: FloatArray = np.minimum(np.interp(rng.random(n), cdf, edges), _DAY_MS - 1)
    return tod.astype(np.int64)


def _build_purchases(
    rng: np.random.Generator,
    shape: SyntheticShape,
    views: _Views,
    catalog: _Catalog,
    end_ms: int,
) -> _Purchases:
    """Build baskets of a buyer's viewed items, the carts before them and later repurchases."""
    n_rows = shape.transactions
    n_repurchases = min(round(_REPURCHASE_SHARE * n_rows), n_rows - 1)
    n_basket_rows = n_rows - n_repurchases
    n_baskets = max(1, round(n_basket_rows / _ITEMS_PER_TRANSACTION))
    size_weights = rng.lognormal(0.0, 1.2, n_baskets)
    size = 1 + rng.multinomial(n_basket_rows - n_baskets, size_weights / size_weights.sum())
    buyer = _draw_buyers(rng, views.count, size)

    # A basket holds consecutive views of its buyer (mostly one session), from a random start.
    basket = np.repeat(np.arange(n_baskets), size)
    basket_first = np.cumsum(size) - size
    slot = np.arange(n_basket_rows) - basket_first[basket]
    visitor = buyer[basket]
    start = rng.integers(0, views.count[buyer])[basket]
    view_row = views.first[visitor] + (start + slot) % views.count[visitor]
    item = views.item[view_row].copy()
    unviewed = rng.random(n_basket_rows) < _UNVIEWED_PURCHASE_PROB
    item[unviewed] = _popular_items(rng, catalog, int(unviewed.sum()))
    viewed_at = views.time[view_row]

    delay = _lognormal_ms(rng, 10 * _MINUTE_MS, 1.3, n_baskets, 30 * _SECOND_MS, 5 * _DAY_MS)
    paid_at = np.maximum.reduceat(viewed_at, basket_first) + delay
    time = np.minimum(paid_at, end_ms - 1)[basket]

    # Repurchase: same visitor and item as an earlier row, sometime later in the span.
    source = rng.integers(0, n_basket_rows, n_repurchases)
    earlier = time[source]
    later = earlier + 1 + (rng.random(n_repurchases) ** 2 * (end_ms - 2 - earlier)).astype(np.int64)
    visitor = np.r_[visitor, visitor[source]]
    item = np.r_[item, item[source]]
    before = np.r_[viewed_at, earlier]  # the cart must come after this
    time = np.r_[time, np.maximum(later, earlier)]
    transaction_id = rng.permutation(n_baskets + n_repurchases).astype(np.int64)
    transaction_id = np.r_[transaction_id[basket], transaction_id[n_baskets:]]

    has_cart = rng.random(n_rows) < _CART_BEFORE_PURCHASE_PROB
    # Never use more carts than the shape has (only matters for odd hand-made shapes).
    has_cart &= np.cumsum(has_cart) <= shape.carts
    lead = _lognormal_ms(rng, 3 * _MINUTE_MS, 1.0, n_rows, _SECOND_MS, _DAY_MS)
    cart_time = np.minimum(np.maximum(time - lead, before + 1), time)
    return _Purchases(
        visitor=visitor,
        item=item,
        time=time,
        transaction_id=transaction_id,
        cart_visitor=visitor[has_cart],
        cart_item=item[has_cart],
        cart_time=cart_time[has_cart],
    )


def _draw_buyers(rng: np.random.Generator, view_count: IntArray, size: IntArray) -> IntArray:
    """Draw one buyer per basket, weighted by activity, with at least as many views as items."""
    buyer = np.empty(len(size), dtype=np.int64)
    # One pass per distinct basket size (a handful), so a buyer can fill the basket with
    # distinct views; a size larger than anyone's history falls back to the busiest visitors.
    for basket_size in np.unique(size):
        baskets = np.flatnonzero(size == basket_size)
        eligible = np.flatnonzero(view_count >= min(basket_size, view_count.max()))
        buyer[baskets] = eligible[_draw(rng, view_count[eligible], len(baskets))]
    return buyer


def _build_abandoned_carts(
    rng: np.random.Generator, n: int, views: _Views, catalog: _Catalog
) -> _Carts:
    """Add n carts of viewed items shortly after the view (a few of unviewed items)."""
    row = rng.integers(0, len(views.item), n)
    item = views.item[row].copy()
    unviewed = rng.random(n) < _UNVIEWED_CART_PROB
    item[unviewed] = _popular_items(rng, catalog, int(unviewed.sum()))
    delay = _lognormal_ms(rng, _MINUTE_MS, 1.2, n, _SECOND_MS, _DAY_MS)
    return _Carts(visitor=views.visitor[row], item=item, time=views.time[row] + delay)


def _events_table(
    rng: np.random.Generator,
    views: _Views,
    buys: _Purchases,
    carts: _Carts,
    catalog: _Catalog,
    end_ms: int,
) -> pa.Table:
    """Stack views, carts and purchases into one table in a seeded random row order."""
    n_views, n_carts = len(views.item), len(buys.cart_item) + len(carts.item)
    time = np.r_[views.time, buys.cart_time, carts.time, buys.time]
    visitor = np.r_[views.visitor, buys.cart_visitor, carts.visitor, buys.visitor]
    item = np.r_[views.item, buys.cart_item, carts.item, buys.item]
    event = np.repeat(np.arange(3, dtype=np.int8), [n_views, n_carts, len(buys.item)])
    transaction_id = np.r_[np.full(n_views + n_carts, -1, dtype=np.int64), buys.transaction_id]

    order = rng.permutation(len(time))
    transaction_id = transaction_id[order]
    return pa.table(
        {
            "timestamp": pa.array(np.minimum(time, end_ms - 1)[order]),
            "visitorid": pa.array(views.visitor_raw_id[visitor[order]]),
            "event": pc.take(pa.array(EVENT_NAMES), pa.array(event[order])),
            "itemid": pa.array(catalog.raw_id[item[order]]),
            "transactionid": pa.array(transaction_id, mask=transaction_id < 0),
        }
    )


def _item_properties_table(
    rng: np.random.Generator,
    catalog: _Catalog,
    tree: _Tree,
    start_ms: int,
    end_ms: int,
) -> pa.Table:
    """Weekly snapshots of categoryid (all items), available (toggling) and hashed price 790."""
    n_items = len(catalog.raw_id)
    # Snapshots are taken weekly at 03:00 from the start, like the original dumps.
    n_weeks = max(1, (end_ms - 1 - start_ms - 3 * _HOUR_MS) // _WEEK_MS + 1)

    cat_item, cat_week, _ = _snapshots(rng, n_items, 0.1, n_weeks)
    category_value = pc.cast(pa.array(tree.raw_id[catalog.category[cat_item]]), pa.string())

    avail_item, avail_week, nth = _snapshots(rng, n_items, 0.8, n_weeks)
    # Mostly in stock at first; every later snapshot records a change of availability.
    in_stock_first = rng.random(n_items) < _IN_STOCK_FIRST_PROB
    available = (in_stock_first[avail_item] ^ (nth % 2 == 1)).astype(np.int8)
    available_value = pc.take(pa.array(["0", "1"]), pa.array(available))

    price_item, price_week, nth = _snapshots(rng, n_items, 0.6, n_weeks)
    base_price = rng.lognormal(np.log(12_000), 1.0, n_items)
    change = np.where(nth == 0, 1.0, rng.uniform(0.8, 1.2, len(nth)))
    steps = np.maximum(1, np.rint(base_price[price_item] * change / _PRICE_STEP)).astype(np.int64)
    price_digits = pc.cast(pa.array(steps * _PRICE_STEP), pa.string())
    price_value = pc.binary_join_element_wise("n", price_digits, ".000", "")

    item = np.r_[cat_item, avail_item, price_item]
    week = np.r_[cat_week, avail_week, price_week]
    names = pa.array(["categoryid", "available", "790"])
    which = np.repeat(np.arange(3, dtype=np.int8), [len(cat_item), len(avail_item), len(nth)])
    value = pa.concat_arrays([category_value, available_value, price_value])

    order = rng.permutation(len(item))
    return pa.table(
        {
            "timestamp": pa.array((start_ms + 3 * _HOUR_MS + week * _WEEK_MS)[order]),
            "itemid": pa.array(catalog.raw_id[item[order]]),
            "property": pc.take(names, pa.array(which[order])),
            "value": pc.take(value, pa.array(order)),
        }
    )


def _snapshots(
    rng: np.random.Generator, n_items: int, extra_mean: float, n_weeks: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Return (item, week, nth snapshot of that item): week 0 for all, plus ~extra_mean more."""
    extra = rng.poisson(extra_mean, n_items) if n_weeks > 1 else np.zeros(n_items, np.int64)
    extra_item = np.repeat(np.arange(n_items, dtype=np.int64), extra)
    extra_week = rng.integers(1, max(2, n_weeks), len(extra_item))
    # Encoding (item, week) as one integer lets one sort order them and expose repeated weeks.
    code = np.sort(np.r_[np.arange(n_items) * n_weeks, extra_item * n_weeks + extra_week])
    code = code[np.r_[True, code[1:] != code[:-1]]]
    item, week = code // n_weeks, code % n_weeks
    first_row = np.searchsorted(item, np.arange(n_items))
    return item, week, np.arange(len(code)) - first_row[item]


def _category_tree_table(rng: np.random.Generator, tree: _Tree) -> pa.Table:
    """Return categoryid/parentid rows (parentid null for roots) in a seeded order."""
    order = rng.permutation(len(tree.raw_id))
    parent = tree.parent[order]
    parent_raw = tree.raw_id[np.maximum(parent, 0)]
    return pa.table(
        {
            "categoryid": pa.array(tree.raw_id[order]),
            "parentid": pa.array(parent_raw, mask=parent < 0),
        }
    )


def _write_table(table: pa.Table, path: Path, fmt: str) -> None:
    """Write table as plain CSV, gzip CSV (reproducible header) or Parquet."""
    if fmt == "parquet":
        pq.write_table(table, path)
        return
    # The original files quote nothing; none of our values contain a comma or a quote.
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    if fmt == "csv":
        pacsv.write_csv(table, path, options)
        return
    # mtime=0 and an empty name keep the gzip header, hence the bytes, identical across runs.
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", 6, raw, mtime=0) as zipped:
        pacsv.write_csv(table, zipped, options)


def _draw(rng: np.random.Generator, weights: npt.NDArray[Any], n: int) -> IntArray:
    """Draw n indices with probability proportional to weights (inverse CDF, no float drift)."""
    cumulative = np.cumsum(weights, dtype=np.float64)
    picks = np.searchsorted(cumulative, rng.random(n) * float(cumulative[-1]), side="right")
    # A draw of exactly the total would fall past the end; clip it to the last index.
    picks[picks >= len(weights)] = len(weights) - 1
    return picks.astype(np.int64)


def _popular_items(rng: np.random.Generator, catalog: _Catalog, n: int) -> IntArray:
    """Draw n items by popularity (uniform over view tokens)."""
    return catalog.tokens[rng.integers(0, len(catalog.tokens), n)]


def _lognormal_ms(
    rng: np.random.Generator, median_ms: int, sigma: float, n: int, low_ms: int, high_ms: int
) -> IntArray:
    """Draw n lognormal durations in ms with the given median, clipped to [low_ms, high_ms]."""
    draws = rng.lognormal(np.log(median_ms), sigma, n)
    return np.clip(draws, low_ms, high_ms).astype(np.int64)


def _inverse(permutation: npt.NDArray[Any]) -> IntArray:
    """Return the inverse of a permutation of 0..n-1."""
    inverse = np.empty(len(permutation), dtype=np.int64)
    inverse[permutation] = np.arange(len(permutation))
    return inverse
