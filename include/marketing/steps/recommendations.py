"""Step ``recommendations``: item neighbours, per-user picks and their hold-out evaluation."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import numpy as np
import pandas as pd

from marketing import warehouse
from marketing.interactions import interaction_matrix
from marketing.neighbours import content_neighbours, item_neighbours, user_neighbours
from marketing.recommend import recommend
from marketing.recommend_eval import evaluate_holdout
from marketing.settings import Settings
from marketing.steps.common import as_date, metrics_frame, rounded_metric

logger = logging.getLogger(__name__)


def build_recommendations(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Item neighbours, per-user picks and their offline evaluation for D.

    Writes ``ml.item_neighbours`` (CF neighbours, plus content-based ones for catalogue
    items without interactions, ``method`` = ``cf`` / ``content``), ``ml.user_recommendations``
    (with ``reason_item_id`` and ``method``; users without CF picks get their segment's
    popular items from ``ml.user_segments`` of D, then global ones) and the hold-out
    metrics of item-CF and popularity (train up to D-7, test D-6..D) into ``ml.model_runs``
    (model ``recommendations``).
    """
    settings = settings or Settings.from_env()
    as_of = as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        interactions = read_interactions(con, as_of)
        users = warehouse.read_frame(
            con,
            "select user_id from marts.user_profiles where as_of_date = ? order by user_id",
            [as_of],
        )
        segments = _read_segments(con, as_of)
        catalogue = warehouse.read_frame(
            con,
            "select item_id, category, price from staging.stg_shop__items "
            "where partition_date <= ? order by item_id",
            [as_of],
        )
    matrix = interaction_matrix(interactions)
    del interactions  # the matrix holds it; a million users' rows are a few hundred MB
    neighbours = item_neighbours(
        matrix,
        k=settings.neighbours_k,
        min_support=settings.neighbours_min_support,
        similarity=settings.neighbours_similarity,
    )
    similar_users = None
    if settings.recommendations_method == "user_cf":
        similar_users = user_neighbours(matrix, k=settings.user_neighbours_k)
    elif settings.recommendations_method != "item_cf":
        raise ValueError(
            "settings.recommendations_method must be 'item_cf' or 'user_cf', got "
            f"{settings.recommendations_method!r}"
        )
    picks = recommend(
        matrix,
        neighbours,
        n=settings.recommendations_n,
        exclude_purchased=settings.recommendations_exclude_purchased,
        user_ids=users["user_id"].to_numpy(),
        segments=segments,
        user_neighbours=similar_users,
    )
    cold_items = np.setdiff1d(catalogue["item_id"].to_numpy(dtype=np.int64), matrix.item_ids)
    content = content_neighbours(catalogue, cold_items, k=settings.neighbours_k)
    all_neighbours = pd.concat(
        [neighbours.assign(method="cf"), content.assign(method="content")], ignore_index=True
    )
    # The picks are stored before the hold-out frames are read, so the two never share memory
    # (re-running D replaces the whole partition, so a failure in between leaves nothing half).
    with warehouse.connect(settings.warehouse_path) as con:
        warehouse.replace_partition(con, "ml.item_neighbours", all_neighbours, as_of)
        warehouse.replace_partition(con, "ml.user_recommendations", picks, as_of)
    n_picks = int(len(picks))
    del picks
    with warehouse.connect(settings.warehouse_path) as con:
        train, test = _read_holdout(con, as_of, settings.evaluation_holdout_days)
    evaluation = evaluate_holdout(
        train,
        test,
        k=settings.recommendations_n,
        neighbours_k=settings.neighbours_k,
        min_support=settings.neighbours_min_support,
        similarity=settings.neighbours_similarity,
        random_state=settings.random_state,
    )
    with warehouse.connect(settings.warehouse_path) as con:
        warehouse.replace_partition(
            con,
            "ml.model_runs",
            metrics_frame("recommendations", evaluation.metrics),
            as_of,
            {"model": "recommendations"},
        )
    n = settings.recommendations_n
    return {
        "item_neighbours": int(len(neighbours)),
        "content_neighbours": int(len(content)),
        "recommendations": n_picks,
        f"item_cf_hr_at_{n}": rounded_metric(evaluation.metrics[f"item_cf_hr_at_{n}"]),
        f"popularity_hr_at_{n}": rounded_metric(evaluation.metrics[f"popularity_hr_at_{n}"]),
    }


def read_interactions(con, as_of: date) -> pd.DataFrame:
    """D's ``marts.user_item_interactions`` rows, sorted as ``interaction_matrix`` reads fastest."""
    return warehouse.read_frame(
        con,
        "select user_id, item_id, strength, has_purchased from marts.user_item_interactions "
        "where as_of_date = ? order by user_id, item_id",
        [as_of],
    )


def _read_segments(con, as_of: date) -> pd.DataFrame | None:
    """D's user -> segment assignments, or None (global popularity only) when absent."""
    if not warehouse.table_exists(con, "ml.user_segments"):
        logger.warning("ml.user_segments missing: cold-start users get global popular items")
        return None
    frame = warehouse.read_frame(
        con,
        "select user_id, segment_id from ml.user_segments where as_of_date = ? order by user_id",
        [as_of],
    )
    if frame.empty:
        logger.warning("no segments for %s: cold-start users get global popular items", as_of)
        return None
    return frame


def _read_holdout(con, as_of: date, holdout_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training interactions as of D - h and the (user, item) pairs active in D-h+1..D."""
    train_date = as_of - timedelta(days=holdout_days)
    train = warehouse.read_frame(
        con,
        "select user_id, item_id, strength, has_purchased "
        "from marts.user_item_interactions_train where as_of_date = ? order by user_id, item_id",
        [train_date],
    )
    if train.empty:
        logger.warning(
            "marts.user_item_interactions_train has no rows as of %s (dbt var "
            "evaluation_holdout_days must equal settings.evaluation_holdout_days = %d)",
            train_date,
            holdout_days,
        )
    test = warehouse.read_frame(
        con,
        "select user_id, item_id from marts.user_item_interactions "
        "where as_of_date = ? and last_interacted_at >= ? order by user_id, item_id",
        [as_of, train_date + timedelta(days=1)],
    )
    return train, test
