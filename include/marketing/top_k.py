"""Exact top-k selection on sparse products, with rounding that makes ties well defined.

Floating-point sums of mathematically equal values can differ in the last bits, so values
are rounded to :data:`SIGNIFICANT_DIGITS` significant decimal digits
(:func:`round_significant`); the rounded value is the sort key and equal rounded values are
ties, broken by column (id) ascending (:func:`top_k_per_row`). :func:`product_blocks` splits
rows into blocks of bounded work so no product is ever held whole.
"""

from __future__ import annotations

import numpy as np

SIGNIFICANT_DIGITS = 7
"""Similarities and scores are rounded to this many significant digits (tie detection)."""

RELATIVE_TIE_TOLERANCE = 2e-6
"""Two values that round to the same :data:`SIGNIFICANT_DIGITS` digits differ by less than
1e-6 of the larger: candidates within twice that of a bound are kept and decided after
rounding."""

MAX_BLOCK_PRODUCTS = 4_000_000
"""Default bound on scalar products (so result entries) held per block (~0.3 GB)."""


def round_significant(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round to ``digits`` significant decimal digits (the tie-detection rule).

    Parameters
    ----------
    values : numpy.ndarray
        Finite floats.
    digits : int, default :data:`SIGNIFICANT_DIGITS`
        Significant digits to keep (>= 1).

    Returns
    -------
    numpy.ndarray
        float64 array; each value is the double nearest to its rounded decimal, so
        ``0.3333333`` prints as such. Zeros stay zero.
    """
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    nonzero = values != 0
    x = values[nonzero]
    scale = digits - 1 - np.floor(np.log10(np.abs(x))).astype(np.int64)
    up = scale >= 0
    factor = 10.0 ** np.abs(scale)  # exact for |scale| <= 22
    out[nonzero] = np.where(up, np.round(x * factor) / factor, np.round(x / factor) * factor)
    return out


def top_k_per_row(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Select the ``k`` best entries of every row of a sparse matrix in coordinate form.

    Order within a row: rounded value (:func:`round_significant`) descending, then column
    ascending. Columns stand for sorted ids, so "column ascending" is "id ascending".
    Linear work per entry: the ``k``-th largest value of each longer row is found with
    :func:`numpy.partition` on rows padded to a power-of-two width (dense chunks of at
    most :data:`PARTITION_CELLS` cells); only entries that can round to at least that value
    are rounded and sorted.

    Parameters
    ----------
    rows, cols : numpy.ndarray
        Integer coordinates of the stored entries (any order, no duplicate pairs).
    values : numpy.ndarray
        Raw (unrounded) finite values of the entries.
    k : int
        Entries to keep per row (>= 1).

    Returns
    -------
    selected : numpy.ndarray
        Positions into the inputs of the kept entries, sorted by row then rank.
    rank : numpy.ndarray
        int32 rank (1..k) of each kept entry within its row.
    rounded : numpy.ndarray
        float64 rounded value of each kept entry.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rows = np.asarray(rows)
    values = np.asarray(values, dtype=np.float64)
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0)
    grouping = np.argsort(rows, kind="stable") if np.any(rows[1:] < rows[:-1]) else None
    grouped_rows = rows if grouping is None else rows[grouping]
    grouped_values = values if grouping is None else values[grouping]
    starts = np.flatnonzero(np.r_[True, grouped_rows[1:] != grouped_rows[:-1]])
    lengths = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), lengths)
    kth = _kth_largest(grouped_values, starts, lengths, k)
    # round() is monotone, so the k-th largest key is the key of the k-th largest value;
    # a value can share that key only within RELATIVE_TIE_TOLERANCE of it.
    bound = kth[group]
    candidates = np.flatnonzero(grouped_values >= bound - RELATIVE_TIE_TOLERANCE * np.abs(bound))
    keys = round_significant(grouped_values[candidates])
    kth_key = np.where(np.isfinite(kth), round_significant(np.nan_to_num(kth, neginf=0.0)), -np.inf)
    candidates, keys = (
        candidates[keys >= kth_key[group[candidates]]],
        keys[keys >= kth_key[group[candidates]]],
    )
    original = candidates if grouping is None else grouping[candidates]
    order = np.lexsort((np.asarray(cols)[original], -keys, group[candidates]))
    rank = rank_in_group(group[candidates][order])
    keep = rank < k
    return original[order][keep], (rank[keep] + 1).astype(np.int32), keys[order][keep]


PARTITION_CELLS = 4_000_000
"""Cells of one dense padded chunk used to find per-row k-th largest values."""


def _kth_largest(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    """k-th largest value of each group of ``values`` (contiguous groups); -inf if shorter."""
    kth = np.full(len(starts), -np.inf)
    long_groups = np.flatnonzero(lengths > k)
    if not len(long_groups):
        return kth
    widths = 2 ** np.ceil(np.log2(lengths[long_groups])).astype(np.int64)
    for width in np.unique(widths):
        members = long_groups[widths == width]
        per_chunk = max(1, PARTITION_CELLS // int(width))
        for begin in range(0, len(members), per_chunk):
            chunk = members[begin : begin + per_chunk]
            counts = lengths[chunk]
            local = np.repeat(np.arange(len(chunk)), counts)
            offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            dense = np.full((len(chunk), int(width)), np.inf)
            dense[local, offsets] = -values[np.repeat(starts[chunk], counts) + offsets]
            kth[chunk] = -np.partition(dense, k - 1, axis=1)[:, k - 1]
    return kth


def rank_in_group(sorted_groups: np.ndarray) -> np.ndarray:
    """0-based position of every element within its run of equal values."""
    n = len(sorted_groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def product_blocks(products: np.ndarray, max_block_products: int) -> list[np.ndarray]:
    """Split ``0..len(products)-1`` into consecutive blocks of bounded total cost.

    Parameters
    ----------
    products : numpy.ndarray
        Cost (scalar products) of each row; a row costlier than the bound is a block alone.
    max_block_products : int
        Bound on the summed cost of a block (>= 1).

    Returns
    -------
    list of numpy.ndarray
        Consecutive index blocks covering every row once.
    """
    if max_block_products < 1:
        raise ValueError(f"max_block_products must be >= 1, got {max_block_products}")
    blocks: list[np.ndarray] = []
    start, n = 0, len(products)
    cumulative = np.cumsum(products, dtype=np.float64)
    while start < n:
        base = cumulative[start - 1] if start else 0.0
        stop = int(np.searchsorted(cumulative, base + max_block_products, side="right"))
        stop = max(stop, start + 1)
        blocks.append(np.arange(start, stop))
        start = stop
    return blocks
