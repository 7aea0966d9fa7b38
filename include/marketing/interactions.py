"""The user x item interaction matrix, indexed in linear time.

:func:`interaction_matrix` turns ``marts.user_item_interactions`` rows into a sparse
:class:`InteractionMatrix` (strength and purchased flags, rows = sorted user ids, columns =
sorted item ids); :func:`dense_codes` maps ids to positions without sorting when the ids
are sorted or compact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger(__name__)

INTERACTION_COLUMNS = ("user_id", "item_id", "strength", "has_purchased")


@dataclass(frozen=True, eq=False)
class InteractionMatrix:
    """A user x item interaction matrix with its row and column labels.

    Attributes
    ----------
    strength : scipy.sparse.csr_matrix
        ``(n_users, n_items)`` float32 interaction strengths, all stored values > 0,
        canonical format (sorted indices, no duplicates).
    user_ids : numpy.ndarray
        int64 user id of each row, sorted ascending, unique.
    item_ids : numpy.ndarray
        int64 item id of each column, sorted ascending, unique.
    purchased : scipy.sparse.csr_matrix
        ``(n_users, n_items)`` bool matrix, True where the user purchased the item.
    """

    strength: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    purchased: sp.csr_matrix

    def __post_init__(self) -> None:
        shape = (len(self.user_ids), len(self.item_ids))
        if self.strength.shape != shape or self.purchased.shape != shape:
            raise ValueError(
                f"strength and purchased must have shape {shape} (users x items), got "
                f"{self.strength.shape} and {self.purchased.shape}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_users, n_items)``."""
        return self.strength.shape


def dense_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ids and each value's position among them, in linear time.

    The result equals ``np.unique(ids, return_inverse=True)``. Sorted input (what an SQL
    ``order by`` returns) and ids in a compact range (at most about twice as wide as the
    input) take one pass; anything else falls back to :func:`numpy.unique` (a sort or hash).

    Parameters
    ----------
    ids : numpy.ndarray
        int64 ids.

    Returns
    -------
    tuple of numpy.ndarray
        ``(distinct, codes)`` with ``distinct[codes] == ids``; codes are int64.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return ids.copy(), np.zeros(0, dtype=np.int64)
    if bool(np.all(ids[1:] >= ids[:-1])):
        starts = np.empty(len(ids), dtype=bool)
        starts[0] = True
        np.not_equal(ids[1:], ids[:-1], out=starts[1:])
        return ids[starts], np.cumsum(starts, dtype=np.int64) - 1
    low = int(ids.min())
    span = int(ids.max()) - low + 1
    if span <= 2 * len(ids) + (1 << 20):
        offsets = ids - low
        present = np.zeros(span, dtype=bool)
        present[offsets] = True
        code_of = np.cumsum(present, dtype=np.int64) - 1
        return np.flatnonzero(present) + low, code_of[offsets]
    distinct, codes = np.unique(ids, return_inverse=True)
    return distinct, codes.astype(np.int64).reshape(-1)


def is_increasing(keys: np.ndarray) -> bool:
    """Whether ``keys`` is strictly increasing (sorted, no repeats), in linear time."""
    return len(keys) < 2 or bool(np.all(keys[1:] > keys[:-1]))


def count_duplicates(keys: np.ndarray) -> int:
    """How many entries of ``keys`` repeat an earlier one (linear when strictly increasing)."""
    return 0 if is_increasing(keys) else len(keys) - len(np.unique(keys))


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique(keys)``, returned as is (linear time) when already strictly increasing."""
    return keys if is_increasing(keys) else np.unique(keys)


def interaction_matrix(interactions: pd.DataFrame) -> InteractionMatrix:
    """Build the sparse user x item matrix from ``marts.user_item_interactions`` rows.

    Parameters
    ----------
    interactions : pandas.DataFrame
        One row per (user_id, item_id) with at least ``user_id``, ``item_id``,
        ``strength`` (finite, > 0) and ``has_purchased`` (bool). Other columns are ignored.
        Pass a single ``as_of_date`` partition.

    Returns
    -------
    InteractionMatrix
        Rows are the distinct users, columns the distinct items, both sorted by id.

    Raises
    ------
    ValueError
        On a missing column, a null id or flag, a non-positive or non-finite strength,
        or a duplicated (user_id, item_id) pair.
    """
    missing = [column for column in INTERACTION_COLUMNS if column not in interactions.columns]
    if missing:
        raise ValueError(
            f"interactions lack required columns {missing}, got {list(interactions.columns)}"
        )
    for column in INTERACTION_COLUMNS:
        nulls = int(interactions[column].isna().sum())
        if nulls:
            raise ValueError(f"interactions.{column} must not be null, got {nulls} null rows")
    users = interactions["user_id"].to_numpy(dtype=np.int64)
    items = interactions["item_id"].to_numpy(dtype=np.int64)
    strength = interactions["strength"].to_numpy(dtype=np.float64)
    has_purchased = interactions["has_purchased"].to_numpy(dtype=bool)
    bad = ~(np.isfinite(strength) & (strength > 0))
    if bad.any():
        raise ValueError(
            f"interactions.strength must be finite and > 0, got {int(bad.sum())} bad rows "
            f"(first: {strength[bad][0]!r})"
        )
    user_ids, rows = dense_codes(users)
    item_ids, cols = dense_codes(items)
    shape = (len(user_ids), len(item_ids))
    # in any row order: the conversion to CSR sums repeated (row, col) pairs, so every
    # duplicate costs one stored entry (strengths are > 0, none cancels), in linear time
    matrix = sp.csr_matrix((strength.astype(np.float32), (rows, cols)), shape=shape)
    duplicates = len(strength) - matrix.nnz
    if duplicates:
        raise ValueError(
            "interactions must have one row per (user_id, item_id) (a single as_of_date), "
            f"got {duplicates} duplicated pairs"
        )
    matrix.sort_indices()
    purchased = sp.csr_matrix(
        (np.ones(int(has_purchased.sum()), dtype=bool), (rows[has_purchased], cols[has_purchased])),
        shape=shape,
    )
    purchased.sort_indices()
    logger.info("interaction matrix: %d users x %d items, %d interactions", *shape, matrix.nnz)
    return InteractionMatrix(
        strength=matrix, user_ids=user_ids, item_ids=item_ids, purchased=purchased
    )

