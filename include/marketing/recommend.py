"""Per-user recommendations from item-to-item neighbours (item-based CF), sparse only.

The score of item ``j`` for user ``u`` sums, over the items ``i`` the user interacted with,
``strength(u, i) * sim(i, j)`` where ``j`` is one of ``i``'s top-k neighbours. For a block
of users this is one sparse product ``X[users] @ S`` (``S`` = items x items neighbour matrix
with at most k entries per row), so memory is bounded by the block, never users x items.

Per user: items the user purchased are dropped (``exclude_purchased``, default) and
optionally every item already interacted with (``exclude_interacted``); the best ``n``
remain, ordered by score descending (rounded to
:data:`marketing.neighbours.SIGNIFICANT_DIGITS` significant digits, ties by item id).

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
import scipy.sparse as sp

from marketing.neighbours import (
    MAX_BLOCK_PRODUCTS,
    InteractionMatrix,
    product_blocks,
    top_k_per_row,
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
    keys = rows * n_items + cols
    duplicates = len(keys) - len(np.unique(keys))
    if duplicates:
        raise ValueError(f"neighbours must have one row per item pair, got {duplicates} duplicates")
    result = sp.csr_matrix((similarity, (rows, cols)), shape=(n_items, n_items))
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
    values = pd.Series(list(user_ids), dtype="object")
    nulls = int(values.isna().sum())
    if nulls:
        raise ValueError(f"user_ids must not contain nulls, got {nulls}")
    return np.unique(values.to_numpy(dtype=np.int64))


def _collaborative(
    strength: sp.csr_matrix,
    similarity: sp.csr_matrix,
    excluded: sp.csr_matrix | None,
    user_rows: np.ndarray,
    n: int,
    max_block_products: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-n CF items of the matrix rows ``user_rows``: (position in user_rows, item, rank, score)."""
    n_items = similarity.shape[0]
    neighbours_per_item = np.diff(similarity.indptr).astype(np.float64)
    rows = strength[user_rows]
    pattern = sp.csr_matrix((np.ones(rows.nnz), rows.indices, rows.indptr), shape=rows.shape)
    # Scalar products of a user's row = sum of neighbour-list lengths of the user's items.
    costs = pattern @ neighbours_per_item
    parts: list[tuple[np.ndarray, ...]] = []
    for block in product_blocks(costs, max_block_products):
        rows_b = user_rows[block]
        scores = strength[rows_b].astype(np.float64) @ similarity
        local = np.repeat(np.arange(len(block), dtype=np.int64), np.diff(scores.indptr))
        cols = scores.indices.astype(np.int64)
        values = scores.data
        keep = values > 0
        if excluded is not None:
            drop = excluded[rows_b].tocoo()
            drop_keys = np.sort(drop.row.astype(np.int64) * n_items + drop.col)
            keys = local * n_items + cols
            found = np.searchsorted(drop_keys, keys)
            if len(drop_keys):
                keep &= drop_keys[np.minimum(found, len(drop_keys) - 1)] != keys
        local, cols, values = local[keep], cols[keep], values[keep]
        selected, rank, rounded = top_k_per_row(local, cols, values, n)
        parts.append((block[local[selected]], cols[selected], rank, rounded))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int32), empty.astype(np.float64)
    return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))


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
    position_of = np.empty(n_popular, dtype=np.int64)
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


def recommend(
    matrix: InteractionMatrix,
    neighbours: pd.DataFrame,
    n: int = 10,
    exclude_purchased: bool = True,
    user_ids: Iterable[int] | None = None,
    *,
    exclude_interacted: bool = False,
    max_block_products: int = MAX_BLOCK_PRODUCTS,
) -> pd.DataFrame:
    """Top-``n`` item recommendations per user from item neighbours, popularity-filled.

    Parameters
    ----------
    matrix : InteractionMatrix
        From :func:`marketing.neighbours.interaction_matrix`.
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
    max_block_products : int, default :data:`marketing.neighbours.MAX_BLOCK_PRODUCTS`
        Memory bound: scalar products (entries held) per block of users.

    Returns
    -------
    pandas.DataFrame
        ``user_id`` (int64), ``rank`` (int32, 1..n), ``item_id`` (int64), ``score``
        (float64) sorted by user_id then rank. CF rows first (score > 0, descending, ties by
        item id), then popularity-fill rows with score 0 (see the module docstring).

    Raises
    ------
    ValueError
        On ``n < 1``, null user ids, or an invalid neighbour table
        (see :func:`neighbour_matrix`).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    similarity = neighbour_matrix(matrix, neighbours)
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

    cf_local, cf_items, cf_rank, cf_score = _collaborative(
        strength, similarity, cf_excluded, known_rows, n, max_block_products
    )
    cf_targets = known_targets[cf_local]

    cf_count = np.bincount(cf_targets, minlength=len(targets))
    fill_targets = np.flatnonzero(cf_count < n)
    fill_parts: tuple[np.ndarray, ...] = (np.zeros(0, dtype=np.int64),) * 3
    if len(fill_targets) and n_items:
        popularity = np.diff(strength.tocsc().indptr)
        popular = np.lexsort((np.arange(n_items), -popularity))
        fill_row_of_target = np.full(len(targets), -1, dtype=np.int64)
        fill_row_of_target[fill_targets] = np.arange(len(fill_targets))
        # Items to skip per fill user: excluded by history, or already recommended by CF.
        known_fill = fill_targets[known[fill_targets]]
        history = fill_excluded[positions[known_fill]].tocoo()
        in_cf = fill_row_of_target[cf_targets] >= 0
        excluded_rows = np.concatenate(
            [fill_row_of_target[known_fill][history.row], fill_row_of_target[cf_targets[in_cf]]]
        )
        excluded_items = np.concatenate([history.col.astype(np.int64), cf_items[in_cf]])
        rows, items, rank = _popular_fill(
            popular,
            (n - cf_count[fill_targets]).astype(np.int64),
            cf_count[fill_targets].astype(np.int64),
            excluded_rows.astype(np.int64),
            excluded_items,
            max_block_products,
        )
        fill_parts = (fill_targets[rows], items, rank)

    target_index = np.concatenate([cf_targets, fill_parts[0]])
    order = np.lexsort((np.concatenate([cf_rank, fill_parts[2]]), target_index))
    result = pd.DataFrame(
        {
            "user_id": targets[target_index[order]],
            "rank": np.concatenate([cf_rank, fill_parts[2]]).astype(np.int32)[order],
            "item_id": matrix.item_ids[np.concatenate([cf_items, fill_parts[1]])[order]],
            "score": np.concatenate([cf_score, np.zeros(len(fill_parts[0]))])[order],
        }
    )
    logger.info(
        "recommendations: %d users (%d cold-start), %d rows, %d popularity-filled",
        len(targets),
        len(targets) - len(known_targets),
        len(result),
        len(fill_parts[0]),
    )
    return result
