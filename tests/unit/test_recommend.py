"""Per-user recommendations: hand-computed answers and a dense brute-force cross-check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketing.interactions import interaction_matrix
from marketing.neighbours import item_neighbours, user_neighbours
from marketing.recommend import recommend
from marketing.top_k import round_significant

# Items A=10, B=20, C=30, D=40.
#   user 1: A strength 2 (purchased), B 1      user 2: A 1, C 3 (purchased)
#   user 3: B 1, D 1
# Popularity (distinct users): A 2, B 2, C 1, D 1 -> A, B, C, D.
INTERACTIONS = pd.DataFrame(
    {
        "user_id": [1, 1, 2, 2, 3, 3],
        "item_id": [10, 20, 10, 30, 20, 40],
        "strength": [2.0, 1.0, 1.0, 3.0, 1.0, 1.0],
        "has_purchased": [True, False, False, True, False, False],
    }
)
# Hand-written neighbour lists (item -> neighbour: similarity).
NEIGHBOURS = pd.DataFrame(
    {
        "item_id": [10, 10, 20, 20, 30, 40],
        "neighbour_item_id": [20, 30, 10, 40, 10, 20],
        "rank": [1, 2, 1, 2, 1, 1],
        "similarity": [0.5, 0.25, 0.5, 0.4, 0.25, 0.4],
    }
)


def _rows(result: pd.DataFrame) -> list[tuple[int, int, int, float]]:
    return [
        (int(r.user_id), int(r.rank), int(r.item_id), float(r.score)) for r in result.itertuples()
    ]


@pytest.fixture
def matrix():
    return interaction_matrix(INTERACTIONS)


def test_known_answer_by_hand(matrix):
    # user 1: B 2*0.5=1.0, C 2*0.25=0.5, A 1*0.5 (purchased), D 1*0.4=0.4
    # user 2: A 3*0.25=0.75, B 1*0.5=0.5, C 1*0.25 (purchased)
    # user 3: A 0.5, B 0.4 and D 0.4 tie -> B (id 20) before D (id 40)
    result = recommend(matrix, NEIGHBOURS, n=2)
    assert _rows(result) == [
        (1, 1, 20, 1.0),
        (1, 2, 30, 0.5),
        (2, 1, 10, 0.75),
        (2, 2, 20, 0.5),
        (3, 1, 10, 0.5),
        (3, 2, 20, 0.4),
    ]
    # reasons: u1 B <- A (2*0.5), C <- A; u2 A <- C (3*0.25), B <- A; u3 A <- B, B <- D.
    assert result["reason_item_id"].tolist() == [10, 10, 30, 10, 20, 40]
    assert result["method"].tolist() == ["item_cf"] * 6
    assert result.dtypes.to_dict() == {
        "user_id": np.dtype("int64"),
        "rank": np.dtype("int32"),
        "item_id": np.dtype("int64"),
        "score": np.dtype("float64"),
        "reason_item_id": pd.Int64Dtype(),
        "method": pd.StringDtype(),
    }


def test_reason_ties_are_broken_by_the_smaller_item_id():
    # user 1 saw A and B with strength 1; both have C as neighbour at 0.5: tie -> A.
    interactions = pd.DataFrame(
        {"user_id": [1, 1, 2], "item_id": [10, 20, 30], "strength": [1.0, 1.0, 1.0],
         "has_purchased": [False, False, False]}
    )
    neighbours = pd.DataFrame(
        {"item_id": [20, 10], "neighbour_item_id": [30, 30], "similarity": [0.5, 0.5]}
    )
    result = recommend(interaction_matrix(interactions), neighbours, n=1, user_ids=[1])
    assert result[["item_id", "score"]].values.tolist() == [[30, 1.0]]
    assert result["reason_item_id"].tolist() == [10]


def test_segment_popular_items_come_before_global_ones(matrix):
    # segment 0 = users 1 and 3 (popularity B 2, A 1, D 1); segment 1 = user 2 (A, C).
    segments = pd.DataFrame({"user_id": [1, 2, 3, 50, 60], "segment_id": [0, 1, 0, 0, 1]})
    result = recommend(
        matrix, NEIGHBOURS.iloc[0:0], n=4, user_ids=[50, 60, 70], segments=segments
    )
    rows = [(int(r.user_id), int(r.item_id), r.method) for r in result.itertuples()]
    assert rows == [
        (50, 20, "segment_popular"), (50, 10, "segment_popular"), (50, 40, "segment_popular"),
        (50, 30, "popular"),
        (60, 10, "segment_popular"), (60, 30, "segment_popular"),
        (60, 20, "popular"), (60, 40, "popular"),
        (70, 10, "popular"), (70, 20, "popular"), (70, 30, "popular"), (70, 40, "popular"),
    ]
    assert result["rank"].tolist() == [1, 2, 3, 4] * 3
    assert result["reason_item_id"].isna().all()


def test_purchased_items_are_excluded_unless_asked(matrix):
    kept = recommend(matrix, NEIGHBOURS, n=4, exclude_purchased=False, user_ids=[1])
    # A (purchased) and C tie at 0.5 -> A first by id.
    assert _rows(kept) == [(1, 1, 20, 1.0), (1, 2, 10, 0.5), (1, 3, 30, 0.5), (1, 4, 40, 0.4)]
    excluded = recommend(matrix, NEIGHBOURS, n=4, user_ids=[1])
    assert 10 not in excluded["item_id"].tolist()


def test_exclude_interacted_drops_every_seen_item(matrix):
    result = recommend(matrix, NEIGHBOURS, n=2, user_ids=[1, 3], exclude_interacted=True)
    # user 1: C 0.5, D 0.4 (B seen). user 3: A 0.5 then the fill: C (B, D seen).
    assert _rows(result) == [(1, 1, 30, 0.5), (1, 2, 40, 0.4), (3, 1, 10, 0.5), (3, 2, 30, 0.0)]


def test_cold_start_users_get_popular_items_with_score_zero(matrix):
    result = recommend(matrix, NEIGHBOURS, n=3, user_ids=[99, 3, 99])
    assert _rows(result[result["user_id"] == 99]) == [
        (99, 1, 10, 0.0),
        (99, 2, 20, 0.0),
        (99, 3, 30, 0.0),
    ]
    # user 3 has 3 CF candidates: A 0.5, B 0.4, D 0.4 -> no fill needed.
    assert _rows(result[result["user_id"] == 3]) == [
        (3, 1, 10, 0.5),
        (3, 2, 20, 0.4),
        (3, 3, 40, 0.4),
    ]


def test_fill_skips_recommended_and_purchased_and_stops_at_catalogue_end(matrix):
    result = recommend(matrix, NEIGHBOURS, n=10, user_ids=[1, 2, 99])
    # user 1: CF B, C, D; fill would be A (purchased) -> nothing left.
    # user 2: CF A, B; fill C (purchased) skipped, D added with score 0.
    # user 99: the whole catalogue by popularity.
    assert _rows(result) == [
        (1, 1, 20, 1.0),
        (1, 2, 30, 0.5),
        (1, 3, 40, 0.4),
        (2, 1, 10, 0.75),
        (2, 2, 20, 0.5),
        (2, 3, 40, 0.0),
        (99, 1, 10, 0.0),
        (99, 2, 20, 0.0),
        (99, 3, 30, 0.0),
        (99, 4, 40, 0.0),
    ]


def test_fill_never_recommends_purchased_items(matrix):
    no_neighbours = NEIGHBOURS.iloc[0:0]
    result = recommend(matrix, no_neighbours, n=4, exclude_purchased=False)
    bought = {
        (u, i)
        for u, i, flag in INTERACTIONS[["user_id", "item_id", "has_purchased"]].itertuples(
            index=False
        )
        if flag
    }
    assert not bought & set(zip(result["user_id"], result["item_id"], strict=True))
    assert (result["score"] == 0).all()
    assert result.groupby("user_id").size().tolist() == [3, 3, 4]


def _brute_force(matrix, neighbours, n, exclude_purchased, exclude_interacted, user_ids):
    """Dense users x items scores (tests only) with the documented rules."""
    dense = matrix.strength.toarray().astype(np.float64)
    bought = matrix.purchased.toarray()
    position = {item: j for j, item in enumerate(matrix.item_ids)}
    similarity = np.zeros((len(matrix.item_ids), len(matrix.item_ids)))
    for row in neighbours.itertuples():
        similarity[position[row.item_id], position[row.neighbour_item_id]] = row.similarity
    popularity = (dense > 0).sum(axis=0)
    popular = sorted(range(len(matrix.item_ids)), key=lambda j: (-popularity[j], j))
    rows = []
    for user in sorted(set(user_ids)):
        where = np.flatnonzero(matrix.user_ids == user)
        if len(where):
            u = where[0]
            scores = round_significant(dense[u] @ similarity)
            seen = dense[u] > 0 if exclude_interacted else np.zeros(len(scores), bool)
            cf_excluded = (bought[u] if exclude_purchased else False) | seen
            fill_excluded = bought[u] | seen
        else:
            scores = np.zeros(len(matrix.item_ids))
            cf_excluded = fill_excluded = np.zeros(len(scores), bool)
        chosen = sorted(
            (j for j in range(len(scores)) if scores[j] > 0 and not cf_excluded[j]),
            key=lambda j: (-scores[j], j),
        )[:n]
        if len(where):
            contributions = round_significant(dense[u][:, None] * similarity)
            reasons = {j: int(np.argmax(contributions[:, j])) for j in chosen}
        picks = [(j, scores[j]) for j in chosen]
        for j in popular:
            if len(picks) == n:
                break
            if j not in chosen and not fill_excluded[j]:
                picks.append((j, 0.0))
        rows += [
            (user, rank, matrix.item_ids[j], s,
             matrix.item_ids[reasons[j]] if s > 0 else -1)
            for rank, (j, s) in enumerate(picks, 1)
        ]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "reason"])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 4, 30])
@pytest.mark.parametrize(
    ("exclude_purchased", "exclude_interacted"), [(True, False), (False, True), (False, False)]
)
def test_matches_dense_brute_force(seed, n, exclude_purchased, exclude_interacted):
    rng = np.random.default_rng(seed)
    dense = (rng.random((30, 16)) < 0.2) * rng.uniform(0.1, 5.0, (30, 16))
    users, items = np.nonzero(dense)
    interactions = pd.DataFrame(
        {
            "user_id": users * 3,
            "item_id": items * 5 + 1,
            "strength": dense[users, items],
            "has_purchased": rng.random(len(users)) < 0.3,
        }
    )
    matrix = interaction_matrix(interactions)
    neighbours = item_neighbours(matrix, k=3)
    user_ids = [*matrix.user_ids.tolist(), 1000, 1001, 3]
    expected = _brute_force(matrix, neighbours, n, exclude_purchased, exclude_interacted, user_ids)
    for max_block_products, n_threads in ((1, 1), (1, 3), (40, 2), (10**8, None)):
        options = {"n": n, "exclude_purchased": exclude_purchased, "user_ids": user_ids,
                   "exclude_interacted": exclude_interacted,
                   "max_block_products": max_block_products, "n_threads": n_threads}
        got = recommend(matrix, neighbours, **options)
        key = ["user_id", "rank", "item_id"]
        np.testing.assert_array_equal(got[key].to_numpy(), expected[key].to_numpy(dtype=np.int64))
        np.testing.assert_allclose(got["score"], expected["score"].astype(float), rtol=1e-6)
        np.testing.assert_array_equal(
            got["reason_item_id"].fillna(-1).to_numpy(dtype=np.int64),
            expected["reason"].to_numpy(dtype=np.int64),
        )
        unexplained = recommend(matrix, neighbours, **options, with_reasons=False)
        assert unexplained["reason_item_id"].isna().all()
        pd.testing.assert_frame_equal(
            unexplained.drop(columns="reason_item_id"), got.drop(columns="reason_item_id")
        )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_near_ties_match_dense_brute_force(seed):
    # Strengths and similarities 1e-9 apart: scores and "because you ..." contributions that
    # differ in the last raw bits but round to the same 7 digits are ties, decided by item id
    # (the raw maximum often comes from the larger id), both at the top-n cut and for reasons.
    rng = np.random.default_rng(seed)
    levels = np.array([1.0, 1.0 + 1e-9, 1.0 - 1e-9, 2.0, 0.5])
    dense = (rng.random((40, 12)) < 0.35) * rng.choice(levels, (40, 12))
    users, items = np.nonzero(dense)
    matrix = interaction_matrix(pd.DataFrame({
        "user_id": users + 1, "item_id": items * 10, "strength": dense[users, items],
        "has_purchased": rng.random(len(users)) < 0.2,
    }))
    pairs = [(i, j) for i in matrix.item_ids for j in matrix.item_ids
             if i != j and rng.random() < 0.4]
    neighbours = pd.DataFrame({
        "item_id": [i for i, _ in pairs], "neighbour_item_id": [j for _, j in pairs],
        "similarity": rng.choice([0.5, 0.5 + 5e-10, 0.25, 0.25 - 2e-10, 1.0], len(pairs)),
    })
    user_ids = matrix.user_ids.tolist()
    for n in (1, 3):
        expected = _brute_force(matrix, neighbours, n, True, False, user_ids)
        got = recommend(matrix, neighbours, n=n, user_ids=user_ids, max_block_products=7)
        key = ["user_id", "rank", "item_id"]
        np.testing.assert_array_equal(got[key].to_numpy(), expected[key].to_numpy(dtype=np.int64))
        np.testing.assert_array_equal(got["score"].to_numpy(), expected["score"].to_numpy(float))
        np.testing.assert_array_equal(
            got["reason_item_id"].fillna(-1).to_numpy(dtype=np.int64),
            expected["reason"].to_numpy(dtype=np.int64),
        )


def test_reason_near_tie_goes_to_the_smaller_item_id_only_within_rounding():
    # user 1 saw A (10) and B (20); both lead to C (30). B's contribution is larger by 1e-9
    # (relative): the same after rounding, so A; by 1e-5: B.
    interactions = pd.DataFrame(
        {"user_id": [1, 1, 2], "item_id": [10, 20, 30], "strength": [1.0, 1.0, 1.0],
         "has_purchased": [False, False, False]}
    )
    for gap, reason in ((1e-9, 10), (1e-5, 20)):
        neighbours = pd.DataFrame({"item_id": [10, 20], "neighbour_item_id": [30, 30],
                                   "similarity": [0.5, 0.5 * (1 + gap)]})
        result = recommend(interaction_matrix(interactions), neighbours, n=1, user_ids=[1])
        assert result["item_id"].tolist() == [30]
        assert result["reason_item_id"].tolist() == [reason]


def test_threads_score_blocks_at_once_with_the_same_result(matrix):
    one = recommend(matrix, NEIGHBOURS, n=3, max_block_products=1, n_threads=1)
    four = recommend(matrix, NEIGHBOURS, n=3, max_block_products=1, n_threads=4)
    pd.testing.assert_frame_equal(one, four)
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        recommend(matrix, NEIGHBOURS, n=3, n_threads=0)


def test_default_users_are_all_matrix_users_and_runs_are_identical(matrix):
    first = recommend(matrix, NEIGHBOURS, n=3)
    assert sorted(first["user_id"].unique()) == [1, 2, 3]
    pd.testing.assert_frame_equal(first, recommend(matrix, NEIGHBOURS, n=3))


def test_order_and_repeats_of_user_ids_and_segments_do_not_matter(matrix):
    segments = pd.DataFrame({"user_id": [1, 2, 3, 60], "segment_id": [1, 2, 1, 2]})
    expected = recommend(matrix, NEIGHBOURS, n=4, user_ids=[1, 2, 3, 50, 60],
                         segments=segments)
    shuffled = recommend(matrix, NEIGHBOURS, n=4, user_ids=np.array([60, 3, 1, 50, 2, 3]),
                         segments=segments.iloc[[3, 1, 0, 2]])
    pd.testing.assert_frame_equal(shuffled, expected)
    assert sorted(expected["user_id"].unique()) == [1, 2, 3, 50, 60]


@pytest.mark.parametrize(
    ("neighbours", "kwargs", "message"),
    [
        (NEIGHBOURS, {"n": 0}, "n must be >= 1"),
        (NEIGHBOURS.assign(item_id=[10, 10, 20, 20, 30, 77]), {}, "absent from the interaction"),
        (NEIGHBOURS.assign(similarity=0.0), {}, "finite and > 0"),
        (NEIGHBOURS.drop(columns="similarity"), {}, "lack required columns"),
        (pd.concat([NEIGHBOURS, NEIGHBOURS.iloc[:1]]), {}, "one row per item pair"),
        (NEIGHBOURS, {"user_ids": [1, None]}, "must not contain nulls"),
        (NEIGHBOURS, {"segments": pd.DataFrame({"user_id": [1, 2, 1], "segment_id": [1, 1, 2]})},
         "one row per user_id"),
    ],
)
def test_rejects_bad_input(matrix, neighbours, kwargs, message):
    with pytest.raises(ValueError, match=message):
        recommend(matrix, neighbours, **kwargs)


@pytest.mark.parametrize("seed", [0, 1])
def test_user_based_cf_matches_dense_brute_force(seed):
    rng = np.random.default_rng(seed)
    dense = (rng.random((25, 12)) < 0.25) * rng.uniform(0.1, 5.0, (25, 12))
    users, items = np.nonzero(dense)
    interactions = pd.DataFrame(
        {"user_id": users + 1, "item_id": items + 100, "strength": dense[users, items],
         "has_purchased": rng.random(len(users)) < 0.3}
    )
    matrix = interaction_matrix(interactions)
    similar_users = user_neighbours(matrix, k=3)
    got = recommend(
        matrix, item_neighbours(matrix, k=3), n=3, user_neighbours=similar_users,
        max_block_products=7,
    )
    strength = matrix.strength.toarray().astype(np.float64)
    user_similarity = np.zeros((len(matrix.user_ids), len(matrix.user_ids)))
    for row in similar_users.itertuples():
        u, v = np.searchsorted(matrix.user_ids, [row.user_id, row.neighbour_user_id])
        user_similarity[u, v] = row.similarity
    scores = round_significant(user_similarity @ strength)
    bought = matrix.purchased.toarray()
    cf = got[got["method"] == "user_cf"]
    assert len(cf) > 0 and cf["reason_item_id"].isna().all()
    for user, picks in cf.groupby("user_id"):
        u = int(np.searchsorted(matrix.user_ids, user))
        expected = sorted(
            (j for j in range(len(matrix.item_ids)) if scores[u, j] > 0 and not bought[u, j]),
            key=lambda j: (-scores[u, j], j),
        )[:3]
        assert picks["item_id"].tolist() == [matrix.item_ids[j] for j in expected]
        np.testing.assert_allclose(picks["score"], scores[u, expected], rtol=1e-6)
