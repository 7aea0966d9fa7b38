"""The compiled CF loops against scipy and numpy, including rows wider than their first buffer."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from marketing.cf_kernels import reason_candidates, row_candidates
from marketing.top_k import RELATIVE_TIE_TOLERANCE


def _csr(dense: np.ndarray) -> sp.csr_matrix:
    matrix = sp.csr_matrix(dense)
    return sp.csr_matrix((matrix.data.astype(np.float64), matrix.indices.astype(np.int64),
                          matrix.indptr.astype(np.int64)), shape=matrix.shape)


def test_row_candidates_equal_the_sparse_product_and_the_tie_rule():
    rng = np.random.default_rng(3)
    left = (rng.random((6, 300)) < 0.3) * rng.choice([1.0, 2.0, 0.5], (6, 300))
    left[5] = 0.0
    left[5, :3] = 1.0  # row 5: 3 history items, each leading to all 300 columns equally
    right = (rng.random((300, 300)) < 0.2) * rng.choice([0.25, 0.5, 0.5 + 1e-12], (300, 300))
    right[:3] = 0.5
    excluded = _csr(rng.random((6, 300)) < 0.1).astype(bool)
    rows, k = np.array([5, 0, 2, 4], dtype=np.int64), 2
    got = row_candidates(*_arrays(_csr(left)), rows, *_arrays(_csr(right)), excluded.indptr,
                         excluded.indices.astype(np.int64), excluded.data, 300, k)
    product = (_csr(left) @ _csr(right)).toarray()
    product[excluded.toarray()] = 0.0
    expected = []
    for p, r in enumerate(rows):
        values = product[r]
        positive = np.flatnonzero(values > 0)
        kth = np.sort(values[positive])[::-1][k - 1] if len(positive) > k else -np.inf
        bound = kth - RELATIVE_TIE_TOLERANCE * abs(kth)
        expected += [(p, j, values[j]) for j in positive if values[j] >= bound]
    order = np.lexsort((got[1], got[0]))
    assert [(int(a), int(b), float(c)) for a, b, c in
            zip(got[0][order], got[1][order], got[2][order], strict=True)] == expected
    assert (got[0] == 0).sum() > 64  # row 5 ties everywhere: more than the first buffer holds


def _arrays(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return matrix.indptr, matrix.indices, matrix.data


def test_reason_candidates_keep_every_contribution_within_rounding_of_the_largest():
    # one pick whose 100 history items all lead to column 0 with nearly equal contributions,
    # and one pick where a later, clearly larger contribution drops the earlier ones
    history = np.zeros((2, 101))
    history[0, :100] = 1.0
    history[1, [3, 50, 100]] = [1.0, 1.0, 3.0]
    similarity = np.zeros((101, 2))
    similarity[:100, 0] = 0.5 + np.arange(100) * 1e-12
    similarity[[3, 50, 100], 1] = 0.5
    pick, item, value = reason_candidates(*_arrays(_csr(history)), np.array([0, 1]),
                                          np.array([0, 1]), *_arrays(_csr(similarity)))
    assert pick.tolist() == [0] * 100 + [1]
    assert item.tolist() == [*range(100), 100]
    np.testing.assert_array_equal(value[:100], similarity[:100, 0])
    assert value[100] == 1.5
