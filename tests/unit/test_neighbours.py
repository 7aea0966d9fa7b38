"""Item-item cosine neighbours: known answers and a dense brute-force cross-check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketing.interactions import count_duplicates, dense_codes, interaction_matrix
from marketing.neighbours import (
    content_neighbours,
    item_neighbours,
    user_neighbours,
)
from marketing.top_k import product_blocks, round_significant, top_k_per_row

METHODS = ["sparse_dot_topn", "blocked"]


def _interactions(pairs: list[tuple[int, int, float]], purchased=()) -> pd.DataFrame:
    users, items, strength = zip(*pairs, strict=True)
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "strength": strength,
            "has_purchased": [(u, i) in set(purchased) for u, i, _ in pairs],
        }
    )


def _random_interactions(seed: int, binary: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dense = rng.random((40, 18)) < 0.2
    users, items = np.nonzero(dense)
    strength = np.ones(len(users)) if binary else rng.uniform(0.1, 5.0, len(users))
    return pd.DataFrame(
        {
            "user_id": users * 11 + 5,
            "item_id": items * 7 + 100,
            "strength": strength,
            "has_purchased": rng.random(len(users)) < 0.3,
        }
    )


def _brute_force(interactions: pd.DataFrame, k: int, min_support: int = 1) -> pd.DataFrame:
    """Dense cosine over all item pairs (tests only), same rounding and tie rule."""
    matrix = interaction_matrix(interactions)
    dense = matrix.strength.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    similarity = (dense.T @ dense) / np.outer(norms, norms)
    support = (dense > 0).astype(int).T @ (dense > 0).astype(int)
    rows = []
    for i in range(len(matrix.item_ids)):
        candidates = [
            (round_significant(np.array([similarity[i, j]]))[0], j)
            for j in range(len(matrix.item_ids))
            if j != i and support[i, j] >= min_support and similarity[i, j] > 0
        ]
        candidates.sort(key=lambda pair: (-pair[0], pair[1]))
        for rank, (value, j) in enumerate(candidates[:k], start=1):
            rows.append((matrix.item_ids[i], matrix.item_ids[j], rank, value))
    return pd.DataFrame(rows, columns=["item_id", "neighbour_item_id", "rank", "similarity"])


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    key = ["item_id", "neighbour_item_id", "rank"]
    assert len(got) == len(expected)
    np.testing.assert_array_equal(got[key].to_numpy(), expected[key].to_numpy(dtype=np.int64))
    np.testing.assert_allclose(
        got["similarity"].to_numpy(), expected["similarity"].to_numpy(dtype=float), atol=1e-6
    )


def test_interaction_matrix_labels_strength_and_purchases():
    interactions = _interactions([(20, 7, 1.5), (10, 9, 2.0), (10, 7, 3.0)], purchased=[(10, 9)])
    matrix = interaction_matrix(interactions)
    np.testing.assert_array_equal(matrix.user_ids, [10, 20])
    np.testing.assert_array_equal(matrix.item_ids, [7, 9])
    assert matrix.strength.dtype == np.float32
    np.testing.assert_array_equal(matrix.strength.toarray(), [[3.0, 2.0], [1.5, 0.0]])
    np.testing.assert_array_equal(matrix.purchased.toarray(), [[False, True], [False, False]])
    assert matrix.shape == (2, 2)


def test_interaction_matrix_does_not_depend_on_row_order():
    """The warehouse hands rows over unsorted: any order gives the same matrix, and repeated
    pairs are counted wherever they sit (the CSR conversion sums them)."""
    rng = np.random.default_rng(5)
    pairs = {(int(u), int(i)) for u, i in rng.integers(0, 60, size=(400, 2))}
    rows = [(u * 7 + 3, i * 5, float(rng.uniform(0.1, 4.0))) for u, i in sorted(pairs)]
    bought = [(u, i) for u, i, _ in rows[::3]]
    ordered = interaction_matrix(_interactions(rows, purchased=bought))
    shuffled = _interactions(rows, purchased=bought).sample(frac=1.0, random_state=3)
    matrix = interaction_matrix(shuffled)
    np.testing.assert_array_equal(matrix.user_ids, ordered.user_ids)
    np.testing.assert_array_equal(matrix.item_ids, ordered.item_ids)
    for got, expected in ((matrix.strength, ordered.strength),
                          (matrix.purchased, ordered.purchased)):
        assert got.has_sorted_indices
        np.testing.assert_array_equal(got.indptr, expected.indptr)
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_array_equal(got.data, expected.data)
    repeated = pd.concat([shuffled, shuffled.iloc[[4, 9, 4]]])
    with pytest.raises(ValueError, match="got 3 duplicated pairs"):
        interaction_matrix(repeated)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="has_purchased"), "lack required columns"),
        (lambda df: df.assign(user_id=[1.0, None]), "user_id must not be null"),
        (lambda df: df.assign(strength=[1.0, 0.0]), "finite and > 0"),
        (lambda df: df.assign(strength=[1.0, float("nan")]), "must not be null"),
        (lambda df: df.assign(strength=[1.0, float("inf")]), "finite and > 0"),
        (lambda df: df.assign(item_id=[5, 5], user_id=[1, 1]), "one row per"),
    ],
)
def test_interaction_matrix_rejects_bad_input(change, message):
    interactions = _interactions([(1, 5, 1.0), (2, 6, 2.0)])
    with pytest.raises(ValueError, match=message):
        interaction_matrix(change(interactions))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("k", [1, 3, 25])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_dense_brute_force(method, binary, k, seed):
    interactions = _random_interactions(seed, binary)
    got = item_neighbours(interaction_matrix(interactions), k=k, method=method)
    _assert_same(got, _brute_force(interactions, k))


@pytest.mark.parametrize("min_support", [2, 3])
def test_min_support_matches_brute_force(min_support):
    interactions = _random_interactions(3, binary=False)
    got = item_neighbours(interaction_matrix(interactions), k=4, min_support=min_support)
    expected = _brute_force(interactions, 4, min_support)
    _assert_same(got, expected)
    assert len(expected) > 0


@pytest.mark.parametrize("method", METHODS)
def test_binary_ties_are_broken_by_item_id(method):
    # Items 2, 3 and 4 each share user 1 with item 1 and have one user: all tie at 1/sqrt(2).
    interactions = _interactions([(1, 1, 1.0), (2, 1, 1.0), (1, 4, 1.0), (1, 3, 1.0), (1, 2, 1.0)])
    got = item_neighbours(interaction_matrix(interactions), k=2, method=method)
    item_1 = got[got["item_id"] == 1]
    assert item_1["neighbour_item_id"].tolist() == [2, 3]
    assert item_1["rank"].tolist() == [1, 2]
    assert item_1["similarity"].tolist() == [0.7071068, 0.7071068]
    # Item 2: item 3 and 4 are identical to it (similarity 1), item 1 is 0.7071068.
    assert got[got["item_id"] == 2]["neighbour_item_id"].tolist() == [3, 4]


@pytest.mark.parametrize("method", METHODS)
def test_large_tie_beyond_sentinel_and_self_excluded(method):
    # One user, ten items: every pair has similarity 1, self included; k=2 -> lowest ids.
    interactions = _interactions([(1, item, 1.0) for item in range(10, 0, -1)])
    got = item_neighbours(interaction_matrix(interactions), k=2, method=method)
    assert len(got) == 20
    assert (got["item_id"] != got["neighbour_item_id"]).all()
    assert got[got["item_id"] == 1]["neighbour_item_id"].tolist() == [2, 3]
    assert got[got["item_id"] == 5]["neighbour_item_id"].tolist() == [1, 2]
    assert (got["similarity"] == 1.0).all()


@pytest.mark.parametrize("method", METHODS)
def test_items_without_co_occurrence_get_no_rows(method):
    # Item 30 is only seen by user 3, who saw nothing else.
    interactions = _interactions([(1, 10, 1.0), (1, 20, 2.0), (2, 20, 1.0), (3, 30, 4.0)])
    got = item_neighbours(interaction_matrix(interactions), k=5, method=method)
    assert 30 not in set(got["item_id"]) | set(got["neighbour_item_id"])
    assert got["item_id"].tolist() == [10, 20]
    assert got["similarity"].tolist() == [pytest.approx(2 / np.sqrt(5), abs=1e-7)] * 2
    assert got.dtypes.to_dict() == {
        "item_id": np.dtype("int64"),
        "neighbour_item_id": np.dtype("int64"),
        "rank": np.dtype("int32"),
        "similarity": np.dtype("float64"),
    }


def test_blocks_threads_and_reruns_do_not_change_the_result():
    matrix = interaction_matrix(_random_interactions(4, binary=True))
    reference = item_neighbours(matrix, k=3, method="blocked")
    for kwargs in (
        {"method": "blocked", "max_block_products": 1},
        {"method": "sparse_dot_topn", "n_threads": 1},
        {"method": "sparse_dot_topn", "n_threads": 2, "max_block_products": 1},
        {"method": "auto"},
    ):
        pd.testing.assert_frame_equal(item_neighbours(matrix, k=3, **kwargs), reference)


def test_empty_interactions_give_an_empty_typed_frame():
    empty = pd.DataFrame(
        {"user_id": [], "item_id": [], "strength": [], "has_purchased": []}
    ).astype({"user_id": "int64", "item_id": "int64", "strength": "float64", "has_purchased": bool})
    got = item_neighbours(interaction_matrix(empty))
    assert got.empty
    assert list(got.columns) == ["item_id", "neighbour_item_id", "rank", "similarity"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be >= 1"),
        ({"min_support": 0}, "min_support must be >= 1"),
        ({"method": "dense"}, "method must be one of"),
        ({"method": "sparse_dot_topn", "min_support": 2}, "cannot filter by min_support"),
    ],
)
def test_rejects_bad_parameters(kwargs, message):
    matrix = interaction_matrix(_interactions([(1, 1, 1.0), (1, 2, 1.0)]))
    with pytest.raises(ValueError, match=message):
        item_neighbours(matrix, **kwargs)


def test_round_significant_known_values():
    values = np.array([1 / 3, 123.456789, 0.0, 1.23456789e-9, 0.09999999999999999, 2 / 3])
    expected = [0.3333333, 123.4568, 0.0, 1.234568e-9, 0.1, 0.6666667]
    assert round_significant(values).tolist() == expected


def test_top_k_per_row_matches_sorting_everything():
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 30, 2000)
    cols = np.arange(2000) % 97 + 1000 * rows  # unique (row, col) pairs
    values = rng.integers(1, 6, 2000) / 7.0  # many ties
    for k in (1, 4, 200):
        selected, rank, rounded = top_k_per_row(rows, cols, values, k)
        keys = round_significant(values)
        order = np.lexsort((cols, -keys, rows))
        seen: dict[int, int] = {}
        expected = []
        for i in order:
            seen[rows[i]] = seen.get(rows[i], 0) + 1
            if seen[rows[i]] <= k:
                expected.append(i)
        np.testing.assert_array_equal(selected, expected)
        np.testing.assert_array_equal(rounded, keys[expected])
        assert rank.min() == 1 and rank.max() == min(k, np.bincount(rows).max())


def test_product_blocks_cover_rows_once_within_bound():
    blocks = product_blocks(np.array([3, 3, 10, 1, 1, 1]), max_block_products=6)
    assert [block.tolist() for block in blocks] == [[0, 1], [2], [3, 4, 5]]


def _brute_force_cooccurrence(interactions, k, similarity, min_support=1):
    """Dense SAR-style Jaccard / lift over all item pairs (tests only)."""
    matrix = interaction_matrix(interactions)
    binary = (matrix.strength.toarray() > 0).astype(float)
    counts = binary.T @ binary
    occurrences = np.diag(counts)
    rows = []
    for i in range(len(matrix.item_ids)):
        candidates = []
        for j in range(len(matrix.item_ids)):
            if j == i or counts[i, j] < max(min_support, 1):
                continue
            if similarity == "jaccard":
                value = counts[i, j] / (occurrences[i] + occurrences[j] - counts[i, j])
            else:
                value = counts[i, j] / (occurrences[i] * occurrences[j])
            candidates.append((round_significant(np.array([value]))[0], j))
        candidates.sort(key=lambda pair: (-pair[0], pair[1]))
        for rank, (value, j) in enumerate(candidates[:k], start=1):
            rows.append((matrix.item_ids[i], matrix.item_ids[j], rank, value))
    return pd.DataFrame(rows, columns=["item_id", "neighbour_item_id", "rank", "similarity"])


@pytest.mark.parametrize("similarity", ["jaccard", "lift"])
@pytest.mark.parametrize(("seed", "k", "min_support"), [(0, 3, 1), (1, 5, 2), (2, 1, 1)])
def test_jaccard_and_lift_match_brute_force(similarity, seed, k, min_support):
    interactions = _random_interactions(seed, binary=False)
    expected = _brute_force_cooccurrence(interactions, k, similarity, min_support)
    for max_block_products in (1, 10**8):
        got = item_neighbours(
            interaction_matrix(interactions),
            k=k,
            min_support=min_support,
            similarity=similarity,
            max_block_products=max_block_products,
        )
        _assert_same(got, expected)


def test_jaccard_and_lift_known_answer():
    # A seen by users 1,2,3; B by 1,2; C by 3. c_AB = 2, c_AC = 1.
    interactions = _interactions([(1, 1, 2.0), (1, 2, 1.0), (2, 1, 1.0), (2, 2, 4.0), (3, 1, 1.0),
                                  (3, 3, 1.0)])
    jaccard = item_neighbours(interaction_matrix(interactions), k=5, similarity="jaccard")
    lift = item_neighbours(interaction_matrix(interactions), k=5, similarity="lift")
    as_tuples = lambda frame: [  # noqa: E731
        (int(r.item_id), int(r.neighbour_item_id), int(r.rank), round(r.similarity, 6))
        for r in frame.itertuples()
    ]
    # Jaccard A-B = 2/(3+2-2) = 2/3, A-C = 1/3; lift A-B = 2/6, A-C = 1/3 (tie -> id).
    assert as_tuples(jaccard) == [
        (1, 2, 1, 0.666667), (1, 3, 2, 0.333333), (2, 1, 1, 0.666667), (3, 1, 1, 0.333333)
    ]
    assert as_tuples(lift) == [
        (1, 2, 1, 0.333333), (1, 3, 2, 0.333333), (2, 1, 1, 0.333333), (3, 1, 1, 0.333333)
    ]


def test_unknown_similarity_and_cosine_only_engine_are_rejected():
    matrix = interaction_matrix(_interactions([(1, 1, 1.0), (1, 2, 1.0)]))
    with pytest.raises(ValueError, match="similarity must be one of"):
        item_neighbours(matrix, similarity="pearson")
    with pytest.raises(ValueError, match="cosine only"):
        item_neighbours(matrix, similarity="lift", method="sparse_dot_topn")


@pytest.mark.parametrize("seed", [0, 3])
def test_user_neighbours_match_brute_force_on_transposed_data(seed):
    interactions = _random_interactions(seed, binary=False)
    swapped = interactions.rename(columns={"user_id": "item_id", "item_id": "user_id"})
    expected = _brute_force(swapped, k=4).rename(
        columns={"item_id": "user_id", "neighbour_item_id": "neighbour_user_id"}
    )
    got = user_neighbours(interaction_matrix(interactions), k=4)
    assert list(got.columns) == ["user_id", "neighbour_user_id", "rank", "similarity"]
    np.testing.assert_array_equal(
        got[["user_id", "neighbour_user_id", "rank"]].to_numpy(),
        expected[["user_id", "neighbour_user_id", "rank"]].to_numpy(dtype=np.int64),
    )
    np.testing.assert_allclose(got["similarity"], expected["similarity"].astype(float), atol=1e-6)


def test_content_neighbours_same_category_nearest_price_ties_by_id():
    items = pd.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 5, 6, 7],
            "category": ["a", "a", "a", "a", "b", "b", "a"],
            "price": [10.0, 20.0, 5.0, 10.0, 10.0, 0.0, 40.0],
        }
    )
    got = content_neighbours(items, [1, 6, 99], k=2)
    rows = [(int(r.item_id), int(r.neighbour_item_id), int(r.rank), r.similarity)
            for r in got.itertuples()]
    # item 1 (a, 10): 4 (10, sim 1), then 3 (5, 0.5) and 2 (20, 0.5) tie -> 2 by id.
    # item 6 (b, price 0): its only category peer costs 10 -> similarity 0, dropped.
    assert rows == [(1, 4, 1, 1.0), (1, 2, 2, 0.5)]
    with pytest.raises(ValueError, match="k must be"):
        content_neighbours(items, [1], k=0)
    with pytest.raises(ValueError, match="one row per item_id"):
        content_neighbours(pd.concat([items, items]), [1])


@pytest.mark.parametrize(
    "ids",
    [
        np.array([], dtype=np.int64),
        np.array([5], dtype=np.int64),
        np.array([1, 1, 2, 7, 7, 7, 9], dtype=np.int64),  # sorted: one pass
        np.random.default_rng(0).integers(-50, 50, 1_000),  # compact range
        np.random.default_rng(1).integers(0, 10**15, 1_000),  # sparse range: np.unique
        np.array([3, 3, 3], dtype=np.int64),
    ],
    ids=["empty", "one", "sorted", "compact", "sparse", "constant"],
)
def test_dense_codes_equals_numpy_unique(ids):
    distinct, codes = dense_codes(ids)
    want_distinct, want_codes = np.unique(ids, return_inverse=True)
    np.testing.assert_array_equal(distinct, want_distinct)
    np.testing.assert_array_equal(codes, want_codes)
    assert codes.dtype == np.int64


@pytest.mark.parametrize(
    ("keys", "expected"),
    [([], 0), ([4], 0), ([1, 2, 9], 0), ([1, 1, 2, 2, 2], 3), ([5, 1, 5, 2], 1), ([2, 1], 0)],
)
def test_count_duplicates(keys, expected):
    assert count_duplicates(np.array(keys, dtype=np.int64)) == expected
