"""Compiled loops of the CF scoring: one pass per user instead of a sparse product plus sorts.

Recommendations score ``X[users] @ S`` and keep each user's top n. As array operations that
is a sparse product holding every (user, candidate item) entry, a masked subtraction for
purchased items, a sort of ~90M entries and a hash lookup per (pick, history item) for the
"because you ..." reason: 17 s on one core at a million users. The loops here (numba) walk
each user once with a dense accumulator of one row, so nothing larger than a user's own
candidates is ever held.

They are exact replacements, not approximations:

- :func:`row_candidates` adds ``X[u, i] * S[i, j]`` in the order of scipy's CSR product
  (history entries in storage order, then each neighbour row in storage order), so every sum
  is bit-identical to ``(X @ S)[u, j]``; it keeps the entries that can round
  (:func:`marketing.top_k.round_significant`) to at least the row's k-th largest value, as
  :func:`marketing.top_k.top_k_per_row` does.
- :func:`top_k_in_rows` orders those few candidates by rounded value descending, then column.
- :func:`reason_candidates` finds, for each pick, the history items whose contribution can
  round to the largest one.

Rounding stays in numpy (:func:`marketing.top_k.round_significant`) so ties are decided by
one definition everywhere. Every function releases the GIL (``nogil``): threads score
blocks of users at once. Compiled code is cached next to this file (or in numba's per-user
cache when that is read-only), so only a process that finds no cache compiles (a few
seconds).
"""

from __future__ import annotations

import numba
import numpy as np

from marketing.top_k import RELATIVE_TIE_TOLERANCE


@numba.njit(nogil=True, cache=True)
def _sift_down(heap, size, start):
    """Restore the min-heap property of ``heap[:size]`` below ``start``."""
    i = start
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] < heap[i]:
            heap[i], heap[child] = heap[child], heap[i]
            i = child
        else:
            return


@numba.njit(nogil=True, cache=True)
def _room(ints, values, n, more):
    """Copies of ``ints`` (rows x columns) and ``values`` with room for ``more`` rows after
    the first ``n``: at least doubled.

    Callers check the room themselves and call this only when short: a call that returns
    arrays costs reference counting, which once per entry written took half the time of
    :func:`row_candidates` (1.37 vs 0.78 s for 200,000 users at L).
    """
    size = max(2 * len(values), n + more)
    more_ints = np.empty((size, ints.shape[1]), ints.dtype)
    more_ints[:n] = ints[:n]
    more_values = np.empty(size, values.dtype)
    more_values[:n] = values[:n]
    return more_ints, more_values


@numba.njit(nogil=True, cache=True)
def row_candidates(left_indptr, left_indices, left_data, rows, right_indptr, right_indices,
                   right_data, excluded_indptr, excluded_indices, excluded_data, n_cols,
                   k):
    """Candidates for the top ``k`` of every row ``rows[p]`` of ``left @ right``.

    ``left`` and ``right`` are CSR arrays (int64 indices, float64 data); ``excluded`` is a CSR
    matrix with the rows of ``left`` (empty ``excluded_indptr``: none) whose True entries
    drop that column from the row. Entries that are not > 0 are dropped too.

    Returns (p, column, value, reason, reason_is_tied) of the entries whose value is at least
    ``kth - RELATIVE_TIE_TOLERANCE * |kth|`` (``kth`` = the row's k-th largest value; every
    entry when the row has at most k), grouped by p in increasing order. ``reason`` is the
    first ``left`` column ``i`` (in storage order) with the largest single contribution
    ``left[r, i] * right[i, column]``; ``reason_is_tied`` says that another contribution came
    within the tolerance of it, so that only rounding can decide
    (:func:`reason_candidates`).
    """
    n_rows = len(rows)
    accumulator = np.zeros(n_cols)
    best = np.zeros(n_cols)
    best_from = np.zeros(n_cols, np.int64)
    tied = np.zeros(n_cols, np.bool_)
    seen = np.zeros(n_cols, np.bool_)
    touched = np.empty(n_cols, np.int64)
    heap = np.empty(k)
    out = np.empty((n_rows * (k + 2) + 64, 4), np.int64)  # p, column, reason, tied
    out_value = np.empty(len(out), np.float64)
    n_out = 0
    has_excluded = len(excluded_indptr) > 0
    for p in range(n_rows):
        r = rows[p]
        n_touched = 0
        for a in range(left_indptr[r], left_indptr[r + 1]):
            i = left_indices[a]
            weight = left_data[a]
            for b in range(right_indptr[i], right_indptr[i + 1]):
                j = right_indices[b]
                contribution = weight * right_data[b]
                if not seen[j]:
                    seen[j] = True
                    touched[n_touched] = j
                    n_touched += 1
                    accumulator[j] = 0.0
                    best[j] = contribution
                    best_from[j] = i
                    tied[j] = False
                elif contribution > best[j]:
                    # the old best stays in the running only if it is within the tolerance
                    tied[j] = best[j] >= contribution - RELATIVE_TIE_TOLERANCE * contribution
                    best[j] = contribution
                    best_from[j] = i
                elif contribution >= best[j] - RELATIVE_TIE_TOLERANCE * best[j]:
                    tied[j] = True
                accumulator[j] += contribution
        if has_excluded:
            for e in range(excluded_indptr[r], excluded_indptr[r + 1]):
                if excluded_data[e] and seen[excluded_indices[e]]:
                    accumulator[excluded_indices[e]] = 0.0
        size = 0
        for t in range(n_touched):
            value = accumulator[touched[t]]
            if value > 0.0:
                if size < k:
                    heap[size] = value
                    size += 1
                    if size == k:
                        for s in range(k // 2 - 1, -1, -1):
                            _sift_down(heap, k, s)
                elif value > heap[0]:
                    heap[0] = value
                    _sift_down(heap, k, 0)
        n_positive = 0
        for t in range(n_touched):
            if accumulator[touched[t]] > 0.0:
                n_positive += 1
        bound = -np.inf
        if n_positive > k:
            bound = heap[0] - RELATIVE_TIE_TOLERANCE * abs(heap[0])
        if n_out + n_touched > len(out_value):
            out, out_value = _room(out, out_value, n_out, n_touched)
        for t in range(n_touched):
            j = touched[t]
            value = accumulator[j]
            seen[j] = False
            if value > 0.0 and value >= bound:
                out[n_out, 0] = p
                out[n_out, 1] = j
                out[n_out, 2] = best_from[j]
                out[n_out, 3] = tied[j]
                out_value[n_out] = value
                n_out += 1
    return (out[:n_out, 0].copy(), out[:n_out, 1].copy(), out_value[:n_out].copy(),
            out[:n_out, 2].copy(), out[:n_out, 3] != 0)


@numba.njit(nogil=True, cache=True)
def top_k_in_rows(rows, cols, keys, k):
    """The first ``k`` entries of each row (``rows`` grouped, non-decreasing) ordered by
    ``keys`` descending, then ``cols`` ascending.

    Returns (positions into the inputs, sorted by row then rank; int32 rank 1..k).
    """
    n = len(rows)
    selected = np.empty(n, np.int64)
    rank = np.empty(n, np.int32)
    n_out = 0
    start = 0
    while start < n:
        stop = start + 1
        while stop < n and rows[stop] == rows[start]:
            stop += 1
        order = np.arange(start, stop)
        for a in range(1, stop - start):  # insertion sort: a row has about k candidates
            current = order[a]
            b = a - 1
            while b >= 0 and (keys[order[b]] < keys[current]
                              or (keys[order[b]] == keys[current]
                                  and cols[order[b]] > cols[current])):
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = current
        for a in range(min(k, stop - start)):
            selected[n_out] = order[a]
            rank[n_out] = a + 1
            n_out += 1
        start = stop
    return selected[:n_out].copy(), rank[:n_out].copy()


@numba.njit(nogil=True, cache=True)
def reason_candidates(left_indptr, left_indices, left_data, pick_rows, pick_cols, right_indptr,
                      right_indices, right_data):
    """For each pick (row ``pick_rows[q]`` of ``left``, column ``pick_cols[q]``): the history
    entries ``i`` of the row with ``right[i, column]`` stored whose contribution
    ``left[row, i] * right[i, column]`` can round to the pick's largest contribution.

    ``right``'s rows must have sorted indices. Returns (pick q, history column i,
    contribution), grouped by q, history columns in storage order.
    """
    n_picks = len(pick_rows)
    out = np.empty((n_picks + 64, 2), np.int64)  # pick, history column
    out_value = np.empty(len(out), np.float64)
    n_out = 0
    for q in range(n_picks):
        r = pick_rows[q]
        j = pick_cols[q]
        best = -np.inf
        first = n_out
        n_history = left_indptr[r + 1] - left_indptr[r]
        if n_out + n_history > len(out_value):
            out, out_value = _room(out, out_value, n_out, n_history)
        for a in range(left_indptr[r], left_indptr[r + 1]):
            i = left_indices[a]
            low = right_indptr[i]
            high = right_indptr[i + 1]
            while low < high:  # binary search of j among row i's sorted columns
                middle = (low + high) // 2
                if right_indices[middle] < j:
                    low = middle + 1
                else:
                    high = middle
            if low == right_indptr[i + 1] or right_indices[low] != j:
                continue
            value = left_data[a] * right_data[low]
            if value > best:
                best = value
            if value >= best - RELATIVE_TIE_TOLERANCE * abs(best):
                out[n_out, 0] = q
                out[n_out, 1] = i
                out_value[n_out] = value
                n_out += 1
        # drop the entries kept before a later, larger contribution raised the bound
        bound = best - RELATIVE_TIE_TOLERANCE * abs(best)
        kept = first
        for e in range(first, n_out):
            if out_value[e] >= bound:
                out[kept] = out[e]
                out_value[kept] = out_value[e]
                kept += 1
        n_out = kept
    return out[:n_out, 0].copy(), out[:n_out, 1].copy(), out_value[:n_out].copy()
