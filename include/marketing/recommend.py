"""Per-user recommendations from item-to-item neighbours (item-based CF), sparse only.

The score of item ``j`` for user ``u`` sums, over the items ``i`` the user interacted with,
``strength(u, i) * sim(i, j)`` where ``j`` is one of ``i``'s top-k neighbours. For a block
of users this is one sparse product ``X[users] @ S`` (``S`` = items x items neighbour matrix
with at most k entries per row), so memory is bounded by the block, never users x items.

Per user: items the user purchased are dropped (``exclude_purchased``, default) and
optionally every item already interacted with (``exclude_interacted``); the best ``n``
remain, ordered by score descending (rounded to
:data:`marketing.top_k.SIGNIFICANT_DIGITS` significant digits, ties by item id).

Fallback. A user with fewer than ``n`` CF candidates (a cold-start user, unknown to the
matrix, has none) is filled up to ``n`` with the globally most popular items (number of
distinct users who interacted, ties by item id), skipping items already recommended to
them and items they purchased (always, whatever ``exclude_purchased``) or, with
``exclude_interacted``, interacted with. Fallback rows come after the CF rows and carry
**score 0** (CF scores are > 0), so ``score = 0`` marks a popularity fill. A user gets fewer
than ``n`` rows only when the catalogue runs out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from marketing import cf_kernels
from marketing.interactions import (
    InteractionMatrix,
    count_duplicates,
    is_increasing,
    sorted_unique,
)
from marketing.threads import parallel_map, thread_count
from marketing.top_k import (
    MAX_BLOCK_PRODUCTS,
    product_blocks,
    round_significant,
)

logger = logging.getLogger(__name__)

RECOMMENDATION_COLUMNS = ("user_id", "rank", "item_id", "score")


def neighbour_matrix(matrix: InteractionMatrix, neighbours: pd.DataFrame) -> sp.csr_matrix:
    """Turn a neighbour table into the sparse items x items similarity matrix ``S``.

    Parameters
    ----------
    matrix : InteractionMatrix
        Gives the item order (``matrix.item_ids``) of rows and columns.
    neighbours : pandas.DataFrame
        ``item_id``, ``neighbour_item_id``, ``similarity`` (> 0), one row per pair, as
        returned by :func:`marketing.neighbours.item_neighbours` on the same matrix.

    Returns
    -------
    scipy.sparse.csr_matrix
        float64 ``(n_items, n_items)``; ``S[i, j]`` = similarity of neighbour ``j`` of ``i``.

    Raises
    ------
    ValueError
        On a missing column, null values, a non-positive similarity, an item id absent
        from ``matrix`` or a duplicated pair.
    """
    required = ("item_id", "neighbour_item_id", "similarity")
    missing = [column for column in required if column not in neighbours.columns]
    if missing:
        raise ValueError(
            f"neighbours lack required columns {missing}, got {list(neighbours.columns)}"
        )
    if neighbours[list(required)].isna().any().any():
        raise ValueError(
            "neighbours must not contain nulls in item_id/neighbour_item_id/similarity"
        )
    n_items = len(matrix.item_ids)
    rows = _item_positions(matrix.item_ids, neighbours["item_id"].to_numpy(dtype=np.int64))
    cols = _item_positions(
        matrix.item_ids, neighbours["neighbour_item_id"].to_numpy(dtype=np.int64)
    )
    similarity = neighbours["similarity"].to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(similarity) & (similarity > 0))
    if bad.any():
        raise ValueError(
            f"neighbours.similarity must be finite and > 0, got {int(bad.sum())} bad rows"
        )
    # COO -> CSR sums repeated pairs into one entry, so the stored count reveals them
    result = sp.csr_matrix((similarity, (rows, cols)), shape=(n_items, n_items))
    duplicates = len(rows) - result.nnz
    if duplicates:
        raise ValueError(f"neighbours must have one row per item pair, got {duplicates} duplicates")
    result.sort_indices()
    return result


def _positions(sorted_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of every value in ``sorted_ids`` and whether it is there at all."""
    positions = np.searchsorted(sorted_ids, values).astype(np.int64)
    if len(sorted_ids) == 0:
        return positions, np.zeros(len(values), dtype=bool)
    found = sorted_ids[np.minimum(positions, len(sorted_ids) - 1)] == values
    return positions, found


def _item_positions(item_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Column index of every id in ``values``; ValueError when one is not in ``item_ids``."""
    positions, found = _positions(item_ids, values)
    if not found.all():
        raise ValueError(
            f"neighbours name {int((~found).sum())} item ids absent from the interaction "
            f"matrix (e.g. {values[~found][0]})"
        )
    return positions


def _target_users(matrix: InteractionMatrix, user_ids: Iterable[int] | None) -> np.ndarray:
    """Sorted unique int64 ids of the users to recommend for."""
    if user_ids is None:
        return matrix.user_ids
    if isinstance(user_ids, np.ndarray) and np.issubdtype(user_ids.dtype, np.integer):
        return sorted_unique(user_ids.astype(np.int64, copy=False))  # no nulls possible
    values = pd.Series(list(user_ids), dtype="object")
    nulls = int(values.isna().sum())
    if nulls:
        raise ValueError(f"user_ids must not contain nulls, got {nulls}")
    return sorted_unique(values.to_numpy(dtype=np.int64))


def _collaborative(
    strength: sp.csr_matrix,
    similarity: sp.csr_matrix,
    excluded: sp.csr_matrix | None,
    user_rows: np.ndarray,
    n: int,
    max_block_products: int,
    user_similarity: sp.csr_matrix | None = None,
    with_reasons: bool = True,
    n_threads: int = 1,
) -> tuple[np.ndarray, ...]:
    """Top-n CF items of the matrix rows ``user_rows``.

    Item-based (``user_similarity`` None): scores ``X[users] @ S``; user-based: scores
    ``U[users] @ X`` (``U`` = users x users neighbour matrix). Returns (position in
    user_rows, item, rank, score, reason item or -1). The reason of an item-based pick
    ``(u, j)`` is the history item ``i`` maximising ``strength(u, i) * S[i, j]`` (rounded,
    ties by item id); user-based picks, and every pick without ``with_reasons``, get -1.

    Each user is scored in one compiled pass (:mod:`marketing.cf_kernels`: the same sums as
    the sparse product, bit for bit). Blocks of users are independent: ``n_threads`` threads
    score them at once (the compiled loops and numpy's rounding release the GIL), each block
    of at most ``max_block_products / n_threads`` scalar products. The result is the same
    for any ``n_threads``.
    """
    if user_similarity is None:
        left, right = _canonical(strength), _canonical(similarity)
    else:
        left, right = _canonical(user_similarity), _canonical(strength)
    if excluded is None:
        excluded_arrays = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))
    else:
        excluded = excluded.tocsr()
        excluded_arrays = (excluded.indptr.astype(np.int64), excluded.indices.astype(np.int64),
                           excluded.data.astype(bool))
    neighbours_per_row = np.diff(right.indptr).astype(np.float64)
    rows = left[user_rows]
    pattern = sp.csr_matrix((np.ones(rows.nnz), rows.indices, rows.indptr), shape=rows.shape)
    # scalar products of a user's row = sum of the right operand's row lengths it touches
    costs = pattern @ neighbours_per_row
    del rows, pattern
    reasons_wanted = user_similarity is None and with_reasons and right.nnz

    def score_block(block: np.ndarray) -> tuple[np.ndarray, ...]:
        rows_b = user_rows[block]
        local, cols, values, reasons, tied = cf_kernels.row_candidates(
            left.indptr, left.indices, left.data, rows_b, right.indptr, right.indices,
            right.data, *excluded_arrays, right.shape[1], n,
        )
        keys = round_significant(values)
        selected, rank = cf_kernels.top_k_in_rows(local, cols, keys, n)
        local, cols, rounded = local[selected], cols[selected], keys[selected]
        if reasons_wanted:
            reasons, tied = reasons[selected], np.flatnonzero(tied[selected])
            if len(tied):  # a contribution within rounding of the largest: round them
                reasons[tied] = _reasons(left, right, rows_b[local[tied]], cols[tied])
        else:
            reasons = np.full(len(local), -1, dtype=np.int64)
        return block[local], cols, rank, rounded, reasons

    blocks = product_blocks(costs, max(1, max_block_products // n_threads))
    parts = parallel_map(score_block, blocks, n_threads)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int32), empty.astype(np.float64), empty
    return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))


def _canonical(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """CSR with sorted indices, int64 index arrays and float64 data (the kernels' types)."""
    matrix = matrix.tocsr()
    result = sp.csr_matrix(
        (matrix.data.astype(np.float64), matrix.indices.astype(np.int64),
         matrix.indptr.astype(np.int64)),
        shape=matrix.shape,
    )
    if not result.has_sorted_indices:
        result.sort_indices()
    return result


def _reasons(
    history: sp.csr_matrix,
    similarity: sp.csr_matrix,
    pick_rows: np.ndarray,
    pick_cols: np.ndarray,
) -> np.ndarray:
    """For each pick (row of ``history``, item j): the history item with the largest contribution.

    Keeps, per pick, the largest contribution ``strength(u, i) * S[i, j]`` after rounding,
    ties by the smaller history item (column) index: the first maximum, as history items
    come in ascending order. :func:`marketing.cf_kernels.reason_candidates` walks each pick's
    history and returns only the contributions that can round to the largest; those are
    rounded here.
    """
    pick, item, value = cf_kernels.reason_candidates(
        history.indptr, history.indices, history.data, pick_rows, pick_cols,
        similarity.indptr, similarity.indices, similarity.data,
    )
    reasons = np.full(len(pick_rows), -1, dtype=np.int64)
    if not len(pick):
        return reasons
    value = round_significant(value)
    first_of_pick = np.flatnonzero(np.r_[True, pick[1:] != pick[:-1]])
    best = np.maximum.reduceat(value, first_of_pick)
    is_best = np.flatnonzero(value == np.repeat(best, np.diff(np.r_[first_of_pick, len(pick)])))
    first_best = is_best[np.r_[True, pick[is_best][1:] != pick[is_best][:-1]]]
    reasons[pick[first_best]] = item[first_best]
    return reasons


def _popular_fill(
    popular: np.ndarray,
    need: np.ndarray,
    first_rank: np.ndarray,
    excluded_rows: np.ndarray,
    excluded_items: np.ndarray,
    max_block_products: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill row r with its first ``need[r]`` popular items not excluded for it.

    ``popular`` lists item indices by popularity; ``(excluded_rows, excluded_items)`` are
    (row, item) pairs to skip. Row r only needs the first ``need[r] + excluded[r]`` places
    of the list; rows are grouped by that width rounded up to a power of two and handled
    as dense rows x width windows of at most ``max_block_products`` cells.
    Returns (row, item, rank) with ranks continuing from ``first_rank``.
    """
    n_rows, n_popular = len(need), len(popular)
    position_of = np.full(int(popular.max()) + 1 if n_popular else 0, -1, dtype=np.int64)
    position_of[popular] = np.arange(n_popular)
    skip = sp.csr_matrix(
        (np.ones(len(excluded_rows), dtype=bool), (excluded_rows, position_of[excluded_items])),
        shape=(n_rows, n_popular),
    )
    skip.sum_duplicates()
    widths = np.minimum(need + np.diff(skip.indptr), n_popular)
    caps = np.minimum(2 ** np.ceil(np.log2(np.maximum(widths, 1))).astype(np.int64), n_popular)
    parts: list[tuple[np.ndarray, ...]] = []
    for cap in np.unique(caps):
        rows_with_cap = np.flatnonzero(caps == cap)
        per_block = max(1, max_block_products // int(cap))
        for start in range(0, len(rows_with_cap), per_block):
            rows = rows_with_cap[start : start + per_block]
            block = skip[rows]
            local = np.repeat(np.arange(len(rows)), np.diff(block.indptr))
            in_window = block.indices < cap
            window = np.ones((len(rows), int(cap)), dtype=bool)
            window[local[in_window], block.indices[in_window]] = False
            taken = np.cumsum(window, axis=1)
            chosen = window & (taken <= need[rows, None])
            row_in_block, position = np.nonzero(chosen)
            filled = rows[row_in_block]
            rank = first_rank[filled] + taken[row_in_block, position]
            parts.append((filled, popular[position], rank.astype(np.int32)))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int32)
    return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))


def user_neighbour_matrix(matrix: InteractionMatrix, user_neighbours: pd.DataFrame) -> sp.csr_matrix:
    """Sparse users x users similarity matrix from a user neighbour table.

    Parameters
    ----------
    matrix : InteractionMatrix
        Gives the user order (``matrix.user_ids``).
    user_neighbours : pandas.DataFrame
        ``user_id``, ``neighbour_user_id``, ``similarity`` as returned by
        :func:`marketing.neighbours.user_neighbours` on the same matrix.

    Returns
    -------
    scipy.sparse.csr_matrix
        float64 ``(n_users, n_users)`` with at most k entries per row.
    """
    renamed = user_neighbours.rename(
        columns={"user_id": "item_id", "neighbour_user_id": "neighbour_item_id"}
    )
    transposed = InteractionMatrix(
        strength=matrix.strength.T.tocsr(),
        user_ids=matrix.item_ids,
        item_ids=matrix.user_ids,
        purchased=matrix.purchased.T.tocsr(),
    )
    return neighbour_matrix(transposed, renamed)


def _popular_order(strength: sp.csr_matrix, rows: np.ndarray | None = None) -> np.ndarray:
    """Item indices with at least one user (among ``rows``), by distinct users desc then index."""
    part = strength if rows is None else strength[rows]
    popularity = np.bincount(part.indices, minlength=strength.shape[1])
    order = np.lexsort((np.arange(strength.shape[1]), -popularity))
    return order[popularity[order] > 0]


def _fill_stage(
    popular: np.ndarray,
    fill_targets: np.ndarray,
    need: np.ndarray,
    first_rank: np.ndarray,
    excluded_targets: np.ndarray,
    excluded_items: np.ndarray,
    n_targets: int,
    n_items: int,
    max_block_products: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill each of ``fill_targets`` with ``need`` items of ``popular`` not excluded for it.

    Returns (target index, item index, rank) with ranks continuing from ``first_rank``.
    """
    empty = np.zeros(0, dtype=np.int64)
    if not len(fill_targets) or not len(popular):
        return empty, empty, empty.astype(np.int32)
    row_of_target = np.full(n_targets, -1, dtype=np.int64)
    row_of_target[fill_targets] = np.arange(len(fill_targets))
    in_popular = np.zeros(n_items, dtype=bool)
    in_popular[popular] = True
    keep = (row_of_target[excluded_targets] >= 0) & in_popular[excluded_items]
    rows, items, rank = _popular_fill(
        popular,
        need.astype(np.int64),
        first_rank.astype(np.int64),
        row_of_target[excluded_targets[keep]],
        excluded_items[keep],
        max_block_products,
    )
    return fill_targets[rows], items, rank


METHOD_ITEM_CF = "item_cf"
METHOD_USER_CF = "user_cf"
METHOD_SEGMENT_POPULAR = "segment_popular"
METHOD_POPULAR = "popular"


def recommend(
    matrix: InteractionMatrix,
    neighbours: pd.DataFrame,
    n: int = 10,
    exclude_purchased: bool = True,
    user_ids: Iterable[int] | None = None,
    *,
    exclude_interacted: bool = False,
    max_block_products: int = MAX_BLOCK_PRODUCTS,
    segments: pd.DataFrame | None = None,
    user_neighbours: pd.DataFrame | None = None,
    with_reasons: bool = True,
    n_threads: int | None = None,
) -> pd.DataFrame:
    """Top-``n`` item recommendations per user from CF neighbours, popularity-filled.

    Parameters
    ----------
    matrix : InteractionMatrix
        From :func:`marketing.interactions.interaction_matrix`.
    neighbours : pandas.DataFrame
        From :func:`marketing.neighbours.item_neighbours` on the same matrix
        (``item_id``, ``neighbour_item_id``, ``similarity``; other columns ignored).
    n : int, default 10
        Recommendations per user (>= 1).
    exclude_purchased : bool, default True
        Never recommend (by CF) an item the user purchased. The popularity fill never
        recommends purchased items regardless.
    user_ids : iterable of int, optional
        Users to recommend for (duplicates ignored); ids unknown to ``matrix`` are cold-start
        users and get popular items only. Default: every user in ``matrix``.
    exclude_interacted : bool, default False
        Also drop every item the user already interacted with.
    max_block_products : int, default :data:`marketing.top_k.MAX_BLOCK_PRODUCTS`
        Memory bound: scalar products (entries held) by the blocks of users in flight.
    segments : pandas.DataFrame, optional
        ``user_id``, ``segment_id``: the fill first takes the items most popular among the
        user's segment (distinct users of the segment in ``matrix``), then global ones.
        Users without a segment go straight to the global list.
    user_neighbours : pandas.DataFrame, optional
        ``user_id``, ``neighbour_user_id``, ``similarity`` from
        :func:`marketing.neighbours.user_neighbours`: switches CF to user-based (score of
        ``j`` = sum over similar users ``v`` of ``sim(u, v) * strength(v, j)``);
        ``neighbours`` is then unused except for validation.
    with_reasons : bool, default True
        Find each item-based pick's ``reason_item_id``; without, it is NULL everywhere and
        the picks are the same (an offline evaluation does not need them).
    n_threads : int, optional
        Threads scoring blocks of users at once; default all CPUs. The result does not
        depend on it (only the time does: 4.2 -> 2.1 s for the CF picks of a million users
        on 2 cores).

    Returns
    -------
    pandas.DataFrame
        ``user_id`` (int64), ``rank`` (int32, 1..n), ``item_id`` (int64), ``score``
        (float64), ``reason_item_id`` (nullable Int64: for item-based CF the history item
        that contributed most to the score; NULL for user-based CF and fills), ``method``
        (``item_cf``, ``user_cf``, ``segment_popular`` or ``popular``), sorted by user_id
        then rank. CF rows first (score > 0, descending, ties by item id), then fill rows
        with score 0 (see the module docstring).

    Raises
    ------
    ValueError
        On ``n < 1``, null user ids, or an invalid neighbour table
        (see :func:`neighbour_matrix`).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    similarity = neighbour_matrix(matrix, neighbours)
    user_similarity = (
        None if user_neighbours is None else user_neighbour_matrix(matrix, user_neighbours)
    )
    targets = _target_users(matrix, user_ids)
    n_items = len(matrix.item_ids)
    positions, known = _positions(matrix.user_ids, targets)
    known_targets = np.flatnonzero(known)
    known_rows = positions[known_targets]

    strength = matrix.strength.tocsr()
    interacted = strength.astype(bool)
    purchased = matrix.purchased.tocsr().astype(bool)
    cf_excluded = None
    if exclude_purchased and exclude_interacted:
        cf_excluded = (purchased + interacted).tocsr()
    elif exclude_purchased:
        cf_excluded = purchased
    elif exclude_interacted:
        cf_excluded = interacted
    fill_excluded = (purchased + interacted).tocsr() if exclude_interacted else purchased

    cf_local, cf_items, cf_rank, cf_score, cf_reason = _collaborative(
        strength, similarity, cf_excluded, known_rows, n, max_block_products, user_similarity,
        with_reasons, thread_count(n_threads),
    )
    cf_targets = known_targets[cf_local]
    cf_method = METHOD_ITEM_CF if user_similarity is None else METHOD_USER_CF

    count = np.bincount(cf_targets, minlength=len(targets)).astype(np.int64)
    history = fill_excluded[known_rows].tocoo()
    excluded_targets = np.concatenate([known_targets[history.row], cf_targets]).astype(np.int64)
    excluded_items = np.concatenate([history.col.astype(np.int64), cf_items])
    fills: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []

    def run_stage(popular: np.ndarray, candidates: np.ndarray, method: str) -> None:
        nonlocal excluded_targets, excluded_items
        fill_targets = candidates[count[candidates] < n]
        got = _fill_stage(
            popular,
            fill_targets,
            n - count[fill_targets],
            count[fill_targets],
            excluded_targets,
            excluded_items,
            len(targets),
            n_items,
            max_block_products,
        )
        if len(got[0]):
            fills.append((*got, method))
            count[:] += np.bincount(got[0], minlength=len(targets))
            excluded_targets = np.concatenate([excluded_targets, got[0]])
            excluded_items = np.concatenate([excluded_items, got[1]])

    if segments is not None and n_items:
        segment_of = _segment_of_targets(targets, segments)
        member_segment = _segment_of_targets(matrix.user_ids, segments)
        for segment in np.unique(segment_of[segment_of >= 0]):
            members = np.flatnonzero(member_segment == segment)
            run_stage(
                _popular_order(strength, members),
                np.flatnonzero(segment_of == segment),
                METHOD_SEGMENT_POPULAR,
            )
    if n_items:
        run_stage(_popular_order(strength), np.arange(len(targets)), METHOD_POPULAR)

    # Assemble in (user, rank) order, one column at a time, so that at 10M rows only one
    # full-length temporary lives beside the result (the method is a dictionary-encoded
    # code until it becomes an Arrow string column).
    order = np.lexsort((
        np.concatenate([cf_rank, *(f[2] for f in fills)]),
        target_index := np.concatenate([cf_targets, *(f[0] for f in fills)]),
    ))
    n_filled = len(order) - len(cf_targets)
    user_column = targets[target_index[order]]
    del target_index
    rank_column = np.concatenate([cf_rank, *(f[2] for f in fills)])[order].astype(np.int32)
    items = np.concatenate([cf_items, *(f[1] for f in fills)])[order]
    item_column = matrix.item_ids[items] if n_items else items.astype(np.int64)
    del items
    score_column = np.concatenate([cf_score, np.zeros(n_filled)])[order]
    reasons = np.concatenate([cf_reason, np.full(n_filled, -1, dtype=np.int64)])[order]
    reason_column = pd.arrays.IntegerArray(
        matrix.item_ids[np.maximum(reasons, 0)] if n_items else reasons.astype(np.int64),
        reasons < 0,
    )
    del reasons
    method_names = list(dict.fromkeys([cf_method, *(f[3] for f in fills)]))
    codes = np.concatenate(
        [np.zeros(len(cf_targets), dtype=np.int8)]
        + [np.full(len(f[0]), method_names.index(f[3]), dtype=np.int8) for f in fills]
    )[order]
    method_column = pd.array(
        pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(method_names)).cast(pa.string()),
        dtype="string",
    )
    del codes, order
    result = pd.DataFrame(
        {
            "user_id": user_column,
            "rank": rank_column,
            "item_id": item_column,
            "score": score_column,
            "reason_item_id": reason_column,
            "method": method_column,
        },
        copy=False,
    )
    logger.info(
        "recommendations: %d users (%d cold-start), %d rows, %d filled",
        len(targets),
        len(targets) - len(known_targets),
        len(result),
        n_filled,
    )
    return result


def _segment_of_targets(user_ids: np.ndarray, segments: pd.DataFrame) -> np.ndarray:
    """Segment id of every user in ``user_ids`` (-1 when the user has none)."""
    missing = [c for c in ("user_id", "segment_id") if c not in segments.columns]
    if missing:
        raise ValueError(f"segments lack required columns {missing}, got {list(segments.columns)}")
    frame = segments.dropna(subset=["user_id", "segment_id"])
    ids = frame["user_id"].to_numpy(dtype=np.int64)
    values = frame["segment_id"].to_numpy(dtype=np.int64)
    if count_duplicates(ids):
        raise ValueError("segments must have one row per user_id")
    if not is_increasing(ids):
        order = np.argsort(ids)
        ids, values = ids[order], values[order]
    position, found = _positions(ids, user_ids.astype(np.int64))
    result = np.full(len(user_ids), -1, dtype=np.int64)
    result[found] = values[position[found]]
    if (values < 0).any():
        raise ValueError("segments.segment_id must be >= 0")
    return result
