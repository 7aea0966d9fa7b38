"""Step ``recommendations``: item neighbours, per-user picks and their hold-out evaluation."""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import date, timedelta

import numpy as np
import pandas as pd

from marketing import model_registry, warehouse
from marketing.interactions import interaction_matrix
from marketing.neighbours import content_neighbours, item_neighbours, user_neighbours
from marketing.processes import BackgroundJob, in_background
from marketing.recommend import recommend
from marketing.recommend_eval import evaluate_holdout
from marketing.settings import Settings
from marketing.steps.common import (
    as_date,
    built_dates,
    metrics_frame,
    require_built_for,
    rounded_metric,
)

logger = logging.getLogger(__name__)


def build_recommendations(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Item neighbours, per-user picks and their offline evaluation for D.

    Writes ``ml.item_neighbours`` (CF neighbours, plus content-based ones for catalogue
    items without interactions, ``method`` = ``cf`` / ``content``), ``ml.user_recommendations``
    (with ``reason_item_id`` and ``method``; users without CF picks get their segment's
    popular items from ``ml.user_segments`` of D, then global ones) and the hold-out
    metrics of item-CF and popularity (train up to D-7, test D-6..D) into ``ml.model_runs``
    (model ``recommendations``, with ``model_age_days``).

    The item neighbours are a model like the others: every fit is saved with its hold-out
    metrics under ``models/recommendations/<D>/``. With ``settings.model_refit_days`` N > 1
    the dates after a fit score their users' current histories against its neighbours
    (minus pairs of items no longer interacted with) and report its metrics instead of
    evaluating, until it is N days old. Catalogue items the fit had no interactions for get
    content-based neighbours.

    A fit's hold-out evaluation runs in a forked process (:func:`marketing.processes.
    in_background`) while D's picks are computed and stored: the hold-out frames are read
    first, the two computations share nothing, and the evaluation's log lines appear when its
    metrics are collected. At L this takes ~1 s off the step (12.7 vs 13.6 s, three runs each).
    """
    settings = settings or Settings.from_env()
    as_of = as_date(as_of_date)
    fit = _reuse_neighbours(as_of, settings)
    with warehouse.connect(settings.warehouse_path) as con:
        _require_marts_built_for(con, as_of, settings, evaluating=fit is None)
        holdout = None if fit is not None else _read_holdout(
            con, as_of, settings.evaluation_holdout_days)
    # A fit is evaluated on the hold-out in a forked process while D's picks are computed
    # here: much of the picks' work runs on one core, and the two share no data.
    evaluation = (contextlib.nullcontext() if holdout is None
                  else in_background(functools.partial(_evaluate, *holdout, settings)))
    del holdout  # only the evaluating process keeps the hold-out frames
    with evaluation as evaluating:
        return _recommend_and_store(as_of, settings, fit, evaluating)


def _recommend_and_store(
    as_of: date,
    settings: Settings,
    fit: model_registry.RecentFit | None,
    evaluating: BackgroundJob | None,
) -> dict:
    """D's neighbours and picks (from ``fit``'s neighbours when reused), stored with the
    hold-out metrics (``evaluating``'s when D fits); the summary of
    :func:`build_recommendations`."""
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
    if fit is None:
        neighbours = item_neighbours(
            matrix,
            k=settings.neighbours_k,
            min_support=settings.neighbours_min_support,
            similarity=settings.neighbours_similarity,
        )
        fitted_items = matrix.item_ids
    else:
        neighbours = among_items(fit.model["neighbours"], matrix.item_ids)
        fitted_items = fit.model["item_ids"]
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
    del matrix
    cold_items = np.setdiff1d(catalogue["item_id"].to_numpy(dtype=np.int64), fitted_items)
    content = content_neighbours(catalogue, cold_items, k=settings.neighbours_k)
    all_neighbours = pd.concat(
        [neighbours.assign(method="cf"), content.assign(method="content")], ignore_index=True
    )
    # re-running D replaces both partitions whole, so a failure after this leaves nothing half
    with warehouse.connect(settings.warehouse_path) as con:
        warehouse.replace_partition(con, "ml.item_neighbours", all_neighbours, as_of)
        warehouse.replace_partition(con, "ml.user_recommendations", picks, as_of)
    n_picks = int(len(picks))
    del picks, all_neighbours
    if fit is None:
        metrics = evaluating.result()
        # saved whatever the cadence (like every fit), so switching to a longer cadence
        # reuses it at once
        model_registry.save_model(
            settings.models_dir / "recommendations" / as_of.isoformat(),
            {"neighbours": neighbours, "item_ids": fitted_items},
            # JSON has no NaN (a metric is undefined without test users)
            {"settings_key": neighbours_settings_key(settings),
             "metrics": {name: None if value != value else value
                         for name, value in metrics.items()}},
        )
        age = 0
    else:
        metrics = {name: float("nan") if value is None else value
                   for name, value in fit.card["metrics"].items()}
        age = fit.age_days
    with warehouse.connect(settings.warehouse_path) as con:
        warehouse.replace_partition(
            con,
            "ml.model_runs",
            metrics_frame("recommendations", {**metrics, "model_age_days": age}),
            as_of,
            {"model": "recommendations"},
        )
    n = settings.recommendations_n
    return {
        "item_neighbours": int(len(neighbours)),
        "content_neighbours": int(len(content)),
        "recommendations": n_picks,
        f"item_cf_hr_at_{n}": rounded_metric(metrics[f"item_cf_hr_at_{n}"]),
        f"popularity_hr_at_{n}": rounded_metric(metrics[f"popularity_hr_at_{n}"]),
        "model_age_days": age,
    }


def among_items(neighbours: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """The neighbour pairs whose two items are both in ``item_ids`` (a reused fit may name
    items that no longer have interactions, e.g. when all their users were erased)."""
    keep = (np.isin(neighbours["item_id"].to_numpy(), item_ids)
            & np.isin(neighbours["neighbour_item_id"].to_numpy(), item_ids))
    return neighbours if keep.all() else neighbours[keep].reset_index(drop=True)


def neighbours_settings_key(settings: Settings) -> str:
    """What a saved item-neighbours fit must share with D to be reused (its parameters)."""
    return model_registry.settings_key(
        model="recommendations", k=settings.neighbours_k,
        min_support=settings.neighbours_min_support,
        similarity=settings.neighbours_similarity,
        holdout_days=settings.evaluation_holdout_days, n=settings.recommendations_n,
        random_state=settings.random_state,
    )


def _reuse_neighbours(as_of: date, settings: Settings) -> model_registry.RecentFit | None:
    """Under a refit cadence, the item neighbours (and their hold-out metrics) of a recent
    fit, which D reuses instead of recomputing and re-evaluating them."""
    return model_registry.reuse_recent_fit(
        settings.models_dir / "recommendations", as_of, settings.model_refit_days,
        neighbours_settings_key(settings),
    )


def _require_marts_built_for(con, as_of: date, settings: Settings, evaluating: bool) -> None:
    """Stop before writing anything when the single-date interaction marts hold another date
    (this step of D cleared alone after a later date ran: D's picks would all fall back to
    popular items and D's fit would be evaluated on nothing)."""
    require_built_for(built_dates(con, "marts.user_item_interactions"),
                      "marts.user_item_interactions", as_of)
    if evaluating:
        train_date = as_of - timedelta(days=settings.evaluation_holdout_days)
        require_built_for(
            built_dates(con, "marts.user_item_interactions_train"),
            "marts.user_item_interactions_train", as_of, built_for=train_date,
            use=f"evaluates its fit on it (as of D - {settings.evaluation_holdout_days} days)",
            other_cause="dbt var evaluation_holdout_days differs from "
                        f"settings.evaluation_holdout_days = {settings.evaluation_holdout_days}",
        )


def _evaluate(train: pd.DataFrame, test: pd.DataFrame, settings: Settings) -> dict[str, float]:
    """Hold-out metrics of item-CF and popularity for D (train up to D - h, test after)."""
    evaluation = evaluate_holdout(
        train,
        test,
        k=settings.recommendations_n,
        neighbours_k=settings.neighbours_k,
        min_support=settings.neighbours_min_support,
        similarity=settings.neighbours_similarity,
        random_state=settings.random_state,
    )
    return evaluation.metrics


def read_interactions(con, as_of: date) -> pd.DataFrame:
    """D's ``marts.user_item_interactions`` rows, in no particular order (``interaction_matrix``
    indexes them in linear time either way; sorting 7M rows in SQL cost 0.6 s at L)."""
    return warehouse.read_frame(
        con,
        "select user_id, item_id, strength, has_purchased from marts.user_item_interactions "
        "where as_of_date = ?",
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
    """Training interactions as of D - h and the (user, item) pairs active in D-h+1..D, both in
    no particular order (the evaluation sorts the relevant pairs it derives)."""
    train_date = as_of - timedelta(days=holdout_days)
    train = warehouse.read_frame(
        con,
        "select user_id, item_id, strength, has_purchased "
        "from marts.user_item_interactions_train where as_of_date = ?",
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
        "where as_of_date = ? and last_interacted_at >= ?",
        [as_of, train_date + timedelta(days=1)],
    )
    return train, test
