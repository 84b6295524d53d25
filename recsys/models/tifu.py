"""TIFU-KNN "neighbour baskets": a customer's decayed item frequencies, blended with neighbours'.

After Hu et al., "Modeling Personalized Item Frequency Information for Next-basket
Recommendation" (SIGIR 2020). Repeat (the customer's own items) and explore (items their nearest
customers bought) come out of one score. Rules (all learned in `fit`, vectorised over the log):

- Baskets. Only events of the configured types count (purchases by default; returns are never a
  basket). Events with a basket code (session / invoice id) form one basket per (user, code).
  Events without one (code -1) are grouped by calendar day in UTC, not the shop's time zone: a
  user's such events on the same UTC day are one basket. Baskets are ordered by their first
  event (ties: coded baskets before day baskets, then by code or day). A basket holds an item or
  not (multi-hot): quantities and repeated lines of one item in one basket count once.
- Own vector. With a user's n baskets oldest to newest, a basket's age is the number of baskets
  newer than it. Group g = age // group_size (0 = newest group; when n is not a multiple of
  group_size the oldest group is the short one) and d = age % group_size (0 = the group's newest
  basket). A group's vector is the average over its baskets of within_decay**d x basket, and the
  user's vector the average over their groups of group_decay**g x group vector. So a short
  oldest group weighs as much as a full one: with 4 baskets in groups of 3 (decays 0.9, 0.7)
  the oldest basket alone weighs 0.7 / 2 = 0.35, the newest 1 / 3 / 2 = 0.17.
  Users with fewer than `min_baskets` baskets have no vector: no list, and nobody's neighbour.
- Neighbours. Cosine similarity of own vectors; a user's k nearest users exclude the user and
  need a positive similarity (at least one shared item), ties go to the lower user index.
- Score. alpha x own vector + (1 - alpha) x the mean of the neighbours' own vectors (the mean over
  the neighbours found, which may be fewer than k). The `candidates` best items per user are kept,
  best first, ties to the lower item index; items scoring 0 are never listed.
- Precision. Vectors, similarities and scores are computed in float64, then rounded to 20
  significant bits (about 6 digits) before ranking, so that values equal but for the order of a
  sum tie, and go to the lower index. Stored scores are float32.

Cost caps (what makes a 1.4M-user log fit in seconds):

- Neighbours are searched through each item's `max_item_users` strongest buyers only (largest
  normalised weight, ties to the lower user index): a user reaches other users through an item
  only if they are among that item's strongest buyers. The searching user keeps all their items
  and similarities are exact where found; what is lost is a user who shares only very popular
  items with the searcher and is not among those items' strongest buyers. For a user with one item
  the strongest buyers are exactly the most similar users, so their neighbours are exact.
- A neighbour lends its `candidates` strongest items to the mean, not all of them: a customer
  with a thousand items would otherwise add a thousand faint items to every list they are in.
- Users whose normalised vectors are identical (very common: everyone who bought one item has the
  same direction) are searched once; users whose own vectors are identical share one stored list
  (`user_list_` points into `lists_*`). Both are exact, not approximations.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from recsys.config import TifuConfig
from recsys.history import UserHistory
from recsys.models.base import FitData, Model
from recsys.schema import EVENT_TYPES

_SECONDS_PER_DAY = 86_400
# Multiply-adds (and so at most that many stored entries) of one block's sparse product.
_BLOCK_BUDGET = 1 << 22
# Rows of one block; also keeps the packed sort key of _top_per_row within 64 bits.
_BLOCK_ROWS = 4096
_EMPTY_ITEMS = np.empty(0, dtype=np.int64)
_EMPTY_SCORES = np.empty(0, dtype=np.float32)


class TifuKNN(Model):
    """Every user's best next-basket items (repeat and explore), precomputed for serving.

    `of_user` is a slice of `lists_*`; `own_vector` tells how much of a score is repeat
    (alpha x own score) and how much explore (the rest).
    """

    name = "tifu"
    learned = (
        "own_indptr_",
        "own_items_",
        "own_scores_",
        "user_list_",
        "lists_indptr_",
        "lists_items_",
        "lists_scores_",
    )

    # Learned state, declared for type checkers; set by fit() or load_arrays().
    own_indptr_: np.ndarray  # int64, n_users + 1: user u's own vector is [indptr[u], indptr[u+1])
    own_items_: np.ndarray  # int32 item indices, ascending within a user
    own_scores_: np.ndarray  # float32 TIFU weights (> 0)
    user_list_: np.ndarray  # int32 per user: their row of lists_*, -1 for no list
    lists_indptr_: np.ndarray  # int64, n_lists + 1
    lists_items_: np.ndarray  # int32 item indices, best first
    lists_scores_: np.ndarray  # float32 scores, descending

    def __init__(self, config: TifuConfig | None = None) -> None:
        self.config = config or TifuConfig()

    def fit(self, data: FitData) -> TifuKNN:
        """Build every user's vector, find their neighbours and store their best items."""
        cfg = self.config
        _check_shapes(data)
        own, n_baskets = own_vectors(data.history, data.n_items, cfg)
        active = np.flatnonzero(n_baskets >= cfg.min_baskets)
        own_active = own[active]
        lists, list_of = _lists(own_active, cfg, cfg.threads or _cores())

        lengths = np.zeros(data.n_users, dtype=np.int64)
        lengths[active] = np.diff(own_active.indptr)
        own_indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(lengths, out=own_indptr[1:])
        user_list = np.full(data.n_users, -1, dtype=np.int32)
        user_list[active] = list_of

        self.own_indptr_ = own_indptr
        self.own_items_ = own_active.indices.astype(np.int32)
        self.own_scores_ = own_active.data.astype(np.float32)
        self.user_list_ = user_list
        self.lists_indptr_ = lists.indptr.astype(np.int64)
        self.lists_items_ = lists.indices.astype(np.int32)
        self.lists_scores_ = lists.data.astype(np.float32)
        return self

    def of_user(self, user: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (int64 items, float32 scores) of the user's k best items, best first.

        Empty for an unknown user (-1, out of range) and for users with no list.
        """
        self.check_fitted()
        if not 0 <= user < len(self.user_list_):
            return _EMPTY_ITEMS, _EMPTY_SCORES
        row = self.user_list_[user]
        if row < 0 or k <= 0:
            return _EMPTY_ITEMS, _EMPTY_SCORES
        lo = self.lists_indptr_[row]
        hi = min(self.lists_indptr_[row + 1], lo + k)
        return self.lists_items_[lo:hi].astype(np.int64), self.lists_scores_[lo:hi].copy()

    def own_items(self, user: int) -> np.ndarray:
        """Return the items of the user's own TIFU vector, in no particular order."""
        self.check_fitted()
        if not 0 <= user < len(self.own_indptr_) - 1:
            return _EMPTY_ITEMS
        return self.own_items_[self.own_indptr_[user] : self.own_indptr_[user + 1]]

    def own_vector(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (int64 items, float32 weights) of the user's own TIFU vector, largest first.

        An item's repeat part in of_user's score is alpha x its weight here; the rest is explore.
        """
        self.check_fitted()
        if not 0 <= user < len(self.own_indptr_) - 1:
            return _EMPTY_ITEMS, _EMPTY_SCORES
        lo, hi = self.own_indptr_[user], self.own_indptr_[user + 1]
        items, scores = self.own_items_[lo:hi], self.own_scores_[lo:hi]
        order = np.lexsort((items, -scores))
        return items[order].astype(np.int64), scores[order]


def own_vectors(
    history: UserHistory, n_items: int, config: TifuConfig
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Return (users x items float64 CSR of TIFU vectors, int64 baskets per user)."""
    n_users = history.n_users
    codes = np.array([EVENT_TYPES.index(e) for e in config.events], dtype=np.int8)
    rows = np.flatnonzero(np.isin(history.events, codes))
    if len(rows) == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.float64), np.zeros(n_users, np.int64)
    user = np.searchsorted(history.indptr, rows, side="right") - 1
    time = history.timestamps[rows]
    code = history.baskets[rows]
    # A basket is (user, code) for coded events, (user, UTC day) for the rest.
    by_day = (code < 0).astype(np.int64)
    key = np.where(code >= 0, code, time // _SECONDS_PER_DAY)
    user_bits = max(n_users - 1, 1).bit_length()
    key_bits = 62 - user_bits
    if len(key) and key.min() >= 0 and int(key.max()) < 1 << key_bits:
        packed = (user << (key_bits + 1)) | (by_day << key_bits) | key
        order = np.argsort(packed, kind="stable")
        packed = packed[order]
        new = np.ones(len(packed), dtype=bool)
        new[1:] = packed[1:] != packed[:-1]
    else:
        order = np.lexsort((key, by_day, user))
        u, d, c = user[order], by_day[order], key[order]
        new = np.ones(len(u), dtype=bool)
        new[1:] = (u[1:] != u[:-1]) | (d[1:] != d[:-1]) | (c[1:] != c[:-1])
    starts = np.flatnonzero(new)
    event_basket = np.cumsum(new) - 1
    first_event = order[starts]
    b_user, b_by_day, b_key = user[first_event], by_day[first_event], key[first_event]
    b_time = np.minimum.reduceat(time[order], starts)

    # Each basket's age: how many of its user's baskets are newer. Baskets are listed by
    # (user, kind, key), so a stable sort by (user, first time) breaks time ties by kind, key.
    span = int(b_time.max() - b_time.min())
    if span < 1 << (62 - user_bits):
        chronological = np.argsort(
            (b_user << (62 - user_bits)) | (b_time - b_time.min()), kind="stable"
        )
    else:
        chronological = np.lexsort((b_key, b_by_day, b_time, b_user))
    n_baskets = np.bincount(b_user, minlength=n_users).astype(np.int64)
    first = np.cumsum(n_baskets) - n_baskets
    rank = np.empty(len(starts), dtype=np.int64)
    rank[chronological] = np.arange(len(starts)) - first[b_user[chronological]]
    n = n_baskets[b_user]
    age = n - 1 - rank
    m = config.group_size
    group, within = age // m, age % m
    n_groups = (n - 1) // m + 1
    group_len = np.where(group == n_groups - 1, n - m * (n_groups - 1), m)
    within_decay = np.power(config.within_decay, np.arange(m, dtype=np.float64))
    group_decay = np.power(config.group_decay, np.arange(int(n_groups.max()), dtype=np.float64))
    weight = within_decay[within] / group_len * group_decay[group] / n_groups

    # Multi-hot: an item counts once per basket.
    pair = np.sort(event_basket * n_items + history.items[rows[order]])
    distinct = np.ones(len(pair), dtype=bool)
    distinct[1:] = pair[1:] != pair[:-1]
    pair = pair[distinct]
    basket, pair_item = pair // n_items, pair % n_items
    own = sp.csr_matrix(
        (weight[basket], (b_user[basket], pair_item)), shape=(n_users, n_items), dtype=np.float64
    )
    own.sum_duplicates()
    return own, n_baskets


def _lists(
    own: sp.csr_matrix, config: TifuConfig, threads: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Return (lists x items CSR of ranked candidates, list of each row of own)."""
    n = own.shape[0]
    alpha = float(config.alpha)
    if alpha < 1 and n > 0:
        lengths = np.diff(own.indptr)
        norms = np.sqrt(np.add.reduceat(np.square(own.data, dtype=np.float64), own.indptr[:-1]))
        unit = sp.csr_matrix(
            (own.data / np.repeat(norms, lengths), own.indices, own.indptr), shape=own.shape
        )
        near, rep_of = _nearest(unit, config.k + 1, config.max_item_users, threads)
    else:
        near = sp.csr_matrix((n, n), dtype=np.float32)
        rep_of = np.arange(n, dtype=np.int64)

    # A user is in their own search's list when they are among its k + 1 nearest; their
    # neighbours are that list without them, everyone else's the list's first k.
    entry_rep = np.repeat(np.arange(near.shape[0]), np.diff(near.indptr))
    self_hit = rep_of[near.indices] == entry_rep
    in_list = np.zeros(n, dtype=bool)
    in_list[near.indices[self_hit]] = True
    # Users with identical own vectors and the same case have identical scores: one list.
    list_first, list_of = _distinct(_first_identical(own) * 2 + in_list)
    list_rep = rep_of[list_first]
    list_in = in_list[list_first]

    # Block the lists by the work of their neighbour sums.
    own_len = np.minimum(np.diff(own.indptr), config.candidates)
    near_work = np.zeros(near.shape[0], dtype=np.int64)
    nonempty = np.diff(near.indptr) > 0
    if nonempty.any():
        near_work[nonempty] = np.add.reduceat(own_len[near.indices], near.indptr[:-1][nonempty])
    work = near_work[list_rep] + own_len[list_first] + 1
    k = config.k
    # Rows ..n of `sources` are what neighbours lend (their `candidates` strongest items), rows
    # n.. the users' whole own vectors, for the repeat part.
    sources = _stack([_strongest(own, config.candidates), own], own.shape[1])

    def block(lo: int, hi: int) -> sp.csr_matrix:
        rep = list_rep[lo:hi]
        starts = near.indptr[rep]
        lens = near.indptr[rep + 1] - starts
        total = int(lens.sum())
        before = np.cumsum(lens) - lens
        offsets = np.repeat(starts - before, lens) + np.arange(total)
        row = np.repeat(np.arange(hi - lo), lens)
        position = np.arange(total) - np.repeat(before, lens)
        neighbour = near.indices[offsets]
        drop = np.where(list_in[lo:hi][row], neighbour == list_first[lo:hi][row], position >= k)
        row, neighbour = row[~drop], neighbour[~drop]
        count = np.bincount(row, minlength=hi - lo)
        # scores = alpha x own + (1 - alpha) x the neighbours' mean: one sparse product.
        mine = np.arange(hi - lo) if alpha > 0 else np.zeros(0, dtype=np.int64)
        weights = sp.csr_matrix(
            (
                np.r_[(1 - alpha) / count[row], np.full(len(mine), alpha)],
                (np.r_[row, mine], np.r_[neighbour, n + list_first[lo:hi][mine]]),
            ),
            shape=(hi - lo, 2 * n),
        )
        return _top_per_row(_settled(weights @ sources), config.candidates)

    parts = _map_blocks(block, _blocks(work), threads)
    return _stack(parts, own.shape[1]), list_of.astype(np.int32)


def _nearest(
    unit: sp.csr_matrix, n_near: int, cap: int, threads: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Return (searches x users CSR of each search's n_near nearest users, each user's search).

    Users with identical unit vectors share one search; users are reached through each item's
    `cap` strongest entries only.
    """
    n = unit.shape[0]
    first = _first_identical(unit)
    reps = np.flatnonzero(first == np.arange(n))
    rep_index = np.empty(n, dtype=np.int64)
    rep_index[reps] = np.arange(len(reps))
    rep_of = rep_index[first]
    # items x users: each item's strongest users.
    reach = _strongest(unit.T.tocsr(), cap)
    queries = unit[reps]
    reach_len = np.diff(reach.indptr)
    work = np.add.reduceat(reach_len[queries.indices], queries.indptr[:-1]) + 1

    def block(lo: int, hi: int) -> sp.csr_matrix:
        return _top_per_row(_settled(queries[lo:hi] @ reach), n_near)

    parts = _map_blocks(block, _blocks(work), threads)
    return _stack(parts, n), rep_of


def _settled(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Return the matrix as float32 rounded to 20 significant bits (about 6 digits).

    Sums of the same terms in another order can differ in their last bits; rounded, values
    that are equal but for that tie, and ties go to the lower index.
    """
    bits = matrix.data.astype(np.float32).view(np.int32)
    bits += 4
    bits &= ~7
    return sp.csr_matrix((bits.view(np.float32), matrix.indices, matrix.indptr), shape=matrix.shape)


def _strongest(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep each row's k largest entries (by their settled values), at full precision."""
    chosen = _top_per_row(_settled(matrix), k, ordered=False)
    chosen.data = np.ones(len(chosen.data), dtype=matrix.dtype)
    return sp.csr_matrix(matrix.multiply(chosen))


def _top_per_row(matrix: sp.csr_matrix, k: int, *, ordered: bool = True) -> sp.csr_matrix:
    """Keep each row's k largest positive entries (ties: the lower column); no duplicate entries.

    With `ordered` each row comes largest first (then by column), so the result is not a
    canonical CSR matrix; without, rows keep an unspecified order.
    """
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    n_rows, n_cols = matrix.shape
    if not (matrix.data > 0).all():
        matrix = sp.csr_matrix(matrix.multiply(matrix > 0), dtype=np.float32)
        matrix.eliminate_zeros()
    indptr, col, val = matrix.indptr.astype(np.int64), matrix.indices, matrix.data
    lengths = np.diff(indptr)
    # A positive float32's bits order like its value.
    bits = val.view(np.int32)
    long = lengths > k
    if long.any() and n_rows * _BUCKETS <= len(val):
        # Most entries of a long row are far below its k-th largest: drop every entry in a
        # coarse value bucket below the one holding the k-th largest, by one histogram.
        bucket = _bucket(bits)
        counts = np.bincount(
            np.repeat(np.arange(n_rows, dtype=np.int64) * _BUCKETS, lengths) + bucket,
            minlength=n_rows * _BUCKETS,
        ).reshape(n_rows, _BUCKETS)
        at_least = np.cumsum(counts[:, ::-1], axis=1)  # entries in the top j + 1 buckets
        top = np.where(long, np.argmax(at_least >= k, axis=1), _BUCKETS - 1)
        keep = bucket >= np.repeat(_BUCKETS - 1 - top, lengths)
        col, bits = col[keep], bits[keep]
        lengths = at_least[np.arange(n_rows), top]
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        long = lengths > k
    if long.any():
        # Each long row's k-th largest value: one partition of packed (row, value) keys.
        key = np.repeat(np.arange(n_rows, dtype=np.int64) << 31, lengths)
        key |= bits
        if not long.all():
            key = key[np.repeat(long, lengths)]
        kth = np.cumsum(lengths[long]) - k
        key.partition(kth)
        threshold = np.full(n_rows, -1, dtype=np.int32)
        threshold[long] = key[kth] & 0x7FFFFFFF
        del key
        per_entry = np.repeat(threshold, lengths)
        above = bits > per_entry
        tied = np.flatnonzero(bits == per_entry)
        del per_entry
        row_of = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
        room = k - np.bincount(row_of[above], minlength=n_rows)
        tied_row = row_of[tied]
        tied_count = np.bincount(tied_row, minlength=n_rows)
        over = tied_count > room
        if over.any():
            # More ties than room: the lowest columns win, by a partition of (row, column).
            in_over = np.flatnonzero(over[tied_row])
            tied_key = (tied_row[in_over] << 32) | col[tied[in_over]]
            kth = np.cumsum(tied_count[over]) - tied_count[over] + room[over] - 1
            tied_key.partition(kth)
            last_col = np.full(n_rows, np.iinfo(np.int64).max)
            last_col[over] = tied_key[kth] & 0xFFFFFFFF
            tied = tied[col[tied] <= last_col[tied_row]]
        above[tied] = True
        row, col, bits = row_of[above], col[above], bits[above]
    else:
        row = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    if ordered and len(row):
        col_bits = max(n_cols - 1, 1).bit_length()
        if max(n_rows - 1, 1).bit_length() + 31 + col_bits <= 64:
            # One sort of packed (row, value descending, column) keys, decoded in place.
            packed = (
                (row.astype(np.uint64) << np.uint64(31 + col_bits))
                | ((0x7FFFFFFF - bits).astype(np.uint64) << np.uint64(col_bits))
                | col.astype(np.uint64)
            )
            packed.sort()
            row = (packed >> np.uint64(31 + col_bits)).astype(np.int64)
            col = (packed & np.uint64((1 << col_bits) - 1)).astype(np.int32)
            high = (packed >> np.uint64(col_bits)) & np.uint64(0x7FFFFFFF)
            bits = (0x7FFFFFFF - high.astype(np.int64)).astype(np.int32)
        else:
            order = np.lexsort((col, -bits, row))
            row, col, bits = row[order], col[order], bits[order]
    out_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n_rows), out=out_indptr[1:])
    return sp.csr_matrix(
        (bits.astype(np.int32).view(np.float32), col.astype(np.int32), out_indptr),
        shape=(n_rows, n_cols),
    )


# Value buckets of _top_per_row's histogram: 8 per octave from 2**-16 to 2 (a bucket spans
# about 9% of its values); smaller values share the lowest bucket, larger ones the highest.
_OCTAVES = 17
_BUCKETS = _OCTAVES * 8 + 1


def _bucket(bits: np.ndarray) -> np.ndarray:
    """Return the histogram bucket of positive float32 values given as their int32 bits."""
    # bits >> 20 is the exponent and the top 3 mantissa bits: 8 steps per octave.
    bucket = (bits >> 20) - ((127 - 16) << 3)
    return np.clip(bucket, 0, _BUCKETS - 1, out=bucket)


def _first_identical(matrix: sp.csr_matrix) -> np.ndarray:
    """Return for each row of a canonical CSR matrix the lowest index of a row equal to it."""
    n = matrix.shape[0]
    lengths = np.diff(matrix.indptr)
    data = np.ascontiguousarray(matrix.data)
    entry = _mix(
        matrix.indices.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        ^ data.view(f"u{data.itemsize}").astype(np.uint64)
    )
    row_hash = _mix(lengths.astype(np.uint64))
    nonempty = lengths > 0
    if nonempty.any():
        row_hash[nonempty] += np.add.reduceat(entry, matrix.indptr[:-1][nonempty])
    order = np.argsort(row_hash, kind="stable")
    ordered = row_hash[order]
    run_start = np.ones(n, dtype=bool)
    run_start[1:] = ordered[1:] != ordered[:-1]
    first = np.empty(n, dtype=np.int64)
    first[order] = order[np.flatnonzero(run_start)[np.cumsum(run_start) - 1]]
    # A hash collision must not merge different rows: check every merged row entry by entry.
    merged = np.flatnonzero(first != np.arange(n))
    if len(merged):
        other = first[merged]
        same = lengths[merged] == lengths[other]
        rows, other = merged[same], other[same]
        lens = lengths[rows]
        before = np.cumsum(lens) - lens
        step = np.arange(int(lens.sum())) - np.repeat(before, lens)
        a = np.repeat(matrix.indptr[rows], lens) + step
        b = np.repeat(matrix.indptr[other], lens) + step
        differs = (matrix.indices[a] != matrix.indices[b]) | (matrix.data[a] != matrix.data[b])
        bad = np.zeros(len(rows), dtype=bool)
        bad[np.repeat(np.arange(len(rows)), lens)[differs]] = True
        first[merged[~same]] = merged[~same]
        first[rows[bad]] = rows[bad]
    return first


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (first index of each distinct value, ascending by value; each value's rank).

    What np.unique(return_index=True, return_inverse=True) returns, by one stable sort.
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.ones(len(values), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.cumsum(new) - 1
    return order[new], rank


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash of each value."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _blocks(work: np.ndarray) -> list[tuple[int, int]]:
    """Split rows into consecutive blocks of about _BLOCK_BUDGET work and _BLOCK_ROWS rows."""
    n = len(work)
    if n == 0:
        return []
    label = (np.cumsum(work) - work) // _BLOCK_BUDGET
    cuts = np.r_[0, np.flatnonzero(np.diff(label)) + 1, n]
    bounds: list[tuple[int, int]] = []
    for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        bounds.extend((a, min(a + _BLOCK_ROWS, hi)) for a in range(lo, hi, _BLOCK_ROWS))
    return bounds


def _map_blocks(
    fn: Callable[[int, int], sp.csr_matrix], bounds: list[tuple[int, int]], threads: int
) -> list[sp.csr_matrix]:
    """Run fn over the blocks, in order; numpy's sorts and scipy's products release the GIL."""
    if threads <= 1 or len(bounds) <= 1:
        return [fn(lo, hi) for lo, hi in bounds]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda b: fn(*b), bounds))


def _stack(parts: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    """Stack row blocks without re-sorting their rows (sp.vstack may canonicalise them)."""
    if not parts:
        return sp.csr_matrix((0, n_cols), dtype=np.float32)
    counts = np.concatenate([np.diff(p.indptr) for p in parts])
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return sp.csr_matrix(
        (
            np.concatenate([p.data for p in parts]),
            np.concatenate([p.indices for p in parts]),
            indptr,
        ),
        shape=(len(counts), n_cols),
    )


def _check_shapes(data: FitData) -> None:
    """Raise ValueError when the history does not line up with the matrix."""
    if data.history.n_users != data.n_users:
        raise ValueError(
            f"tifu: the history has {data.history.n_users} users but the matrix has "
            f"{data.n_users}; build both from the same user id map"
        )
