"""Offline evaluation of recommendations on a temporal hold-out.

Train on the interactions known at T = D - h (``marts.user_item_interactions_train``, h = 7
days by default), test on what users did in T+1..D. Per evaluated user the *relevant* items
are the items the user interacted with in the test window but never before T: the
"you may also like" question is which **new** items a user will turn to, so repeats of items
already seen would only reward recommending a user's own history. Accordingly, both models
recommend with ``exclude_interacted=True`` here.

Evaluated users: users with training history (CF has nothing to say about others) and at
least one relevant item; above :data:`EVAL_MAX_USERS` such users, a seeded random sample of
that many (the metrics are means over users, so a 50,000-user sample estimates HR@10 within
about +-0.003; catalogue coverage is then the sample's). Models:

* ``item_cf`` - item neighbours fitted on the training matrix, :func:`marketing.recommend.recommend`;
* ``popularity`` - the same function with no neighbours: globally most popular items in
  training (distinct users), the baseline every recommender must beat.

Metrics at cut-off ``k`` (default 10), averaged over evaluated users:

* hit rate ``HR@k`` - share of users with at least one relevant item in their top k;
* ``NDCG@k`` - binary-relevance DCG ``sum 1/log2(rank + 1)`` over hits, divided by the ideal
  DCG for ``min(#relevant, k)`` hits;
* catalogue coverage - distinct items recommended to evaluated users / items in training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from marketing.interactions import dense_codes, interaction_matrix
from marketing.neighbours import item_neighbours
from marketing.recommend import recommend
from marketing.sampling import seeded_sample

logger = logging.getLogger(__name__)

MODELS = ("item_cf", "popularity")
EVAL_MAX_USERS = 50_000
"""Evaluated users above which a seeded random sample of this many is evaluated."""


@dataclass(frozen=True)
class Evaluation:
    """Hold-out metrics of both models.

    Attributes
    ----------
    metrics : dict of str to float
        ``<model>_hr_at_<k>``, ``<model>_ndcg_at_<k>``, ``<model>_coverage`` for every model
        in :data:`MODELS`, plus ``users_evaluated`` (of ``users_eligible``), ``relevant_pairs`` and
        ``hr_ratio`` (item-CF HR over popularity HR; NaN when popularity scores 0).
    recommendations : dict of str to pandas.DataFrame
        The top-k lists each model produced for the evaluated users.
    """

    metrics: dict[str, float]
    recommendations: dict[str, pd.DataFrame]


def relevant_items(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Test-window (user_id, item_id) pairs new to the user, for users with training history.

    Parameters
    ----------
    train : pandas.DataFrame
        Training interactions (``user_id``, ``item_id``, ...), one row per pair.
    test : pandas.DataFrame
        ``user_id``, ``item_id`` pairs interacted with in the test window (duplicates ok).

    Returns
    -------
    pandas.DataFrame
        ``user_id``, ``item_id`` sorted, unique.
    """
    _require_pairs("train", train)
    user_ids, rows = dense_codes(train["user_id"].to_numpy(dtype=np.int64))
    item_ids, cols = dense_codes(train["item_id"].to_numpy(dtype=np.int64))
    seen = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)),
                         shape=(len(user_ids), len(item_ids)))
    seen.sum_duplicates()  # canonical: sorted column indices, one entry per pair
    return _new_pairs(user_ids, item_ids, seen, test)


def _new_pairs(
    user_ids: np.ndarray, item_ids: np.ndarray, seen: sp.csr_matrix, test: pd.DataFrame
) -> pd.DataFrame:
    """:func:`relevant_items` against a training matrix: ``seen``, a canonical CSR matrix
    (sorted column indices, no duplicates; rows ``user_ids``, columns ``item_ids``, both
    sorted), has an entry for every training pair.

    One binary search per test pair and nothing hashed: the canonical matrix's (row, column)
    keys are already sorted (a million-user hold-out: 0.2 s instead of 1.3 s for a merge).
    """
    _require_pairs("test", test)
    if not seen.has_canonical_format:
        raise ValueError("seen must be a canonical CSR matrix (sorted indices, no duplicates)")
    users = test["user_id"].to_numpy(dtype=np.int64)
    items = test["item_id"].to_numpy(dtype=np.int64)
    row, has_history = _positions_in(user_ids, users)
    users, items, row = users[has_history], items[has_history], row[has_history]
    col, known_item = _positions_in(item_ids, items)
    n_items = np.int64(len(item_ids))
    seen_keys = (np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
                 * n_items + seen.indices.astype(np.int64))
    _, was_seen = _positions_in(seen_keys, row * n_items + col)
    new = ~(known_item & was_seen)
    users, items = users[new], items[new]
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    first = np.ones(len(users), dtype=bool)
    first[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    return pd.DataFrame({"user_id": users[first], "item_id": items[first]})


def _require_pairs(name: str, frame: pd.DataFrame) -> None:
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks required columns {missing}, got {list(frame.columns)}")


def _positions_in(sorted_values: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each of ``values`` in ``sorted_values`` and whether it is there at all."""
    position = np.searchsorted(sorted_values, values)
    found = position < len(sorted_values)
    found[found] = sorted_values[position[found]] == values[found]
    return np.where(found, position, 0), found


def ranking_metrics(
    recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int, n_catalogue: int
) -> dict[str, float]:
    """HR@k, NDCG@k and catalogue coverage of ``recommendations`` against ``relevant``.

    Parameters
    ----------
    recommendations : pandas.DataFrame
        ``user_id``, ``rank`` (1-based), ``item_id``; ranks above ``k`` are ignored.
    relevant : pandas.DataFrame
        ``user_id``, ``item_id``; its users are the evaluated users.
    k : int
        Cut-off (>= 1).
    n_catalogue : int
        Items that could be recommended (coverage denominator, >= 1).

    Returns
    -------
    dict
        ``hr``, ``ndcg``, ``coverage`` (floats in [0, 1]; NaN hr/ndcg without users).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n_catalogue < 1:
        raise ValueError(f"n_catalogue must be >= 1, got {n_catalogue}")
    users = np.unique(relevant["user_id"].to_numpy(dtype=np.int64))
    top = recommendations[
        (recommendations["rank"] <= k) & recommendations["user_id"].isin(users)
    ][["user_id", "rank", "item_id"]]
    hits = top.merge(relevant[["user_id", "item_id"]], on=["user_id", "item_id"], how="inner")
    gains = (1.0 / np.log2(hits["rank"].to_numpy(dtype=np.float64) + 1.0))
    dcg = pd.Series(gains).groupby(hits["user_id"].to_numpy()).sum()
    n_relevant = relevant.groupby("user_id").size().reindex(users).to_numpy()
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    ideal = discounts[np.minimum(n_relevant, k) - 1]
    per_user = dcg.reindex(users, fill_value=0.0).to_numpy() / ideal
    n_users = len(users)
    return {
        "hr": float(hits["user_id"].nunique() / n_users) if n_users else float("nan"),
        "ndcg": float(per_user.mean()) if n_users else float("nan"),
        "coverage": float(top["item_id"].nunique() / n_catalogue),
    }


def evaluate_holdout(
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 10,
    neighbours_k: int = 20,
    min_support: int = 1,
    similarity: str = "cosine",
    max_users: int = EVAL_MAX_USERS,
    random_state: int = 7,
) -> Evaluation:
    """Fit item-CF on ``train``, score it and the popularity baseline on ``test``.

    Parameters
    ----------
    train : pandas.DataFrame
        ``marts.user_item_interactions_train`` rows (user_id, item_id, strength,
        has_purchased).
    test : pandas.DataFrame
        ``user_id``, ``item_id`` pairs with an event in the test window.
    k : int, default 10
        Recommendations per user and metric cut-off.
    neighbours_k, min_support, similarity
        Passed to :func:`marketing.neighbours.item_neighbours`.
    max_users : int, default :data:`EVAL_MAX_USERS`
        Evaluate a seeded random sample of this many users when there are more.
    random_state : int, default 7
        Seed of that sample.

    Returns
    -------
    Evaluation
        Metrics (see the module docstring) and each model's lists.
    """
    matrix = interaction_matrix(train) if len(train) else None
    relevant = (relevant_items(train, test) if matrix is None
                else _new_pairs(matrix.user_ids, matrix.item_ids, matrix.strength, test))
    users = np.unique(relevant["user_id"].to_numpy(dtype=np.int64))
    eligible = len(users)
    if eligible > max_users:
        users = seeded_sample(users, max_users, random_state)
        relevant = relevant[relevant["user_id"].isin(users)].reset_index(drop=True)
    metrics: dict[str, float] = {
        "users_evaluated": float(len(users)),
        "users_eligible": float(eligible),
        "relevant_pairs": float(len(relevant)),
    }
    lists: dict[str, pd.DataFrame] = {}
    if len(train) == 0:
        for model in MODELS:
            metrics |= {f"{model}_hr_at_{k}": float("nan"), f"{model}_ndcg_at_{k}": float("nan"),
                        f"{model}_coverage": 0.0}
        metrics["hr_ratio"] = float("nan")
        return Evaluation(metrics, lists)
    neighbours = item_neighbours(matrix, k=neighbours_k, min_support=min_support,
                                 similarity=similarity)
    no_neighbours = neighbours.iloc[0:0]
    for model, table in (("item_cf", neighbours), ("popularity", no_neighbours)):
        picks = recommend(matrix, table, n=k, user_ids=users, exclude_interacted=True,
                          with_reasons=False)
        lists[model] = picks
        result = ranking_metrics(picks, relevant, k, len(matrix.item_ids))
        metrics[f"{model}_hr_at_{k}"] = result["hr"]
        metrics[f"{model}_ndcg_at_{k}"] = result["ndcg"]
        metrics[f"{model}_coverage"] = result["coverage"]
    baseline = metrics[f"popularity_hr_at_{k}"]
    metrics["hr_ratio"] = (
        metrics[f"item_cf_hr_at_{k}"] / baseline if baseline > 0 else float("nan")
    )
    logger.info(
        "hold-out: %d users, HR@%d item-CF %.4f vs popularity %.4f",
        len(users), k, metrics[f"item_cf_hr_at_{k}"], baseline,
    )
    return Evaluation(metrics, lists)
