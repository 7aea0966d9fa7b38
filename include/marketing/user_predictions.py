"""Per-user churn probability and 90-day spend (``ml.user_predictions``).

Both are learned from ``marts.fct_user_snapshots`` rows whose 90-day outcome window has
closed (snapshot date T = D - 90): features as of the end of T, labels from the 90 days after
T. The fitted models are then applied to D's ``user_profiles``.

- ``churn_probability``: logistic regression (the response pipeline with country as the only
  categorical) for "no order in the next 90 days".
- ``predicted_spend_90d``: Poisson regression (log link, so predictions are never negative and
  zero-spend users are part of the fit) of the 90-day order total on the same inputs.

Above :data:`TRAIN_MAX_ROWS` closed snapshot rows both fit on a seeded random sample of that
many: two dozen coefficients need no million rows (at 1M users the fits took 7 s of the
scoring step; the sample's coefficients differ in the third decimal). The mart itself holds
at most dbt var ``training_max_users`` (300,000) users, a fixed md5-chosen subset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import PoissonRegressor
from sklearn.pipeline import Pipeline

from marketing.sampling import seeded_sample
from marketing.scoring import feature_frame, make_pipeline
from marketing.threads import one_blas_thread, parallel_map

logger = logging.getLogger(__name__)

CATEGORICAL = ("country",)
SPEND_ALPHA = 1e-3
"""L2 penalty of the spend regression (features are standardised)."""
TRAIN_MAX_ROWS = 250_000
"""Closed snapshot rows above which a seeded random sample of this many trains both models."""


@dataclass(frozen=True, eq=False)
class UserPredictionModels:
    """Fitted churn and spend models with their training summary.

    Attributes
    ----------
    churn : sklearn.pipeline.Pipeline
    spend : sklearn.pipeline.Pipeline
    metrics : dict of str to float
        ``n_train``, ``churn_rate`` and ``mean_spend_90d`` of the training rows, and
        ``n_closed`` (closed rows available; ``n_train`` is at most :data:`TRAIN_MAX_ROWS`).
    """

    churn: Pipeline
    spend: Pipeline
    metrics: dict[str, float]


@one_blas_thread
def train_user_prediction_models(
    snapshots: pd.DataFrame, random_state: int = 7, min_per_class: int = 30,
    max_rows: int = TRAIN_MAX_ROWS,
) -> UserPredictionModels | None:
    """Fit churn and spend on snapshots with a closed 90-day window.

    Parameters
    ----------
    snapshots : pandas.DataFrame
        Rows of ``marts.fct_user_snapshots``; rows with NULL ``churned_next_90d`` are skipped.
    random_state : int, default 7
    min_per_class : int, default 30
        Least churned and least retained users needed.
    max_rows : int, default :data:`TRAIN_MAX_ROWS`
        Fit on a sample of this many closed rows (seeded by ``random_state``) when there
        are more.

    Returns
    -------
    UserPredictionModels or None
        None (with a warning) when too few users of either class.
    """
    needed = ["churned_next_90d", "spend_next_90d", "country"]
    missing = [c for c in needed if c not in snapshots.columns]
    if missing:
        raise ValueError(f"snapshots is missing columns {missing}")
    rows = snapshots.loc[snapshots["churned_next_90d"].notna()]
    if "snapshot_date" in rows.columns:
        rows = rows.sort_values(["snapshot_date", "user_id"], kind="stable")
    rows = rows.reset_index(drop=True)
    n_closed = len(rows)
    if n_closed > max_rows:
        rows = rows.iloc[seeded_sample(n_closed, max_rows, random_state)].reset_index(drop=True)
    churned = rows["churned_next_90d"].astype(bool).to_numpy().astype("int64")
    n_churned = int(churned.sum())
    if n_churned < min_per_class or len(churned) - n_churned < min_per_class:
        logger.warning(
            "no user predictions: %d churned and %d retained users in closed 90-day windows "
            "(need >= %d of each)", n_churned, len(churned) - n_churned, min_per_class,
        )
        return None
    x = feature_frame(rows, CATEGORICAL)
    spend_target = rows["spend_next_90d"].to_numpy(dtype="float64")
    if np.isnan(spend_target).any() or (spend_target < 0).any():
        raise ValueError("snapshots.spend_next_90d must be >= 0 where churned_next_90d is set")
    churn = make_pipeline(1.0, random_state, CATEGORICAL)
    spend = make_pipeline(1.0, random_state, CATEGORICAL)
    spend.steps[-1] = ("model", PoissonRegressor(alpha=SPEND_ALPHA, max_iter=1000))
    # independent fits: side by side, each on one BLAS thread
    parallel_map(lambda model_target: model_target[0].fit(x, model_target[1]),
                 [(churn, churned), (spend, spend_target)])
    metrics = {
        "n_train": float(len(rows)),
        "n_closed": float(n_closed),
        "churn_rate": float(churned.mean()),
        "mean_spend_90d": float(spend_target.mean()),
    }
    return UserPredictionModels(churn=churn, spend=spend, metrics=metrics)


def predict_users(models: UserPredictionModels, profiles: pd.DataFrame) -> pd.DataFrame:
    """``user_id``, ``churn_probability``, ``predicted_spend_90d`` per profile, by user_id."""
    if "user_id" not in profiles.columns:
        raise ValueError("profiles must have a user_id column")
    users = profiles.sort_values("user_id", kind="stable").reset_index(drop=True)
    if users.empty:
        return pd.DataFrame({"user_id": pd.Series(dtype="int64"),
                             "churn_probability": pd.Series(dtype="float64"),
                             "predicted_spend_90d": pd.Series(dtype="float64")})
    x = feature_frame(users, CATEGORICAL)
    return pd.DataFrame({
        "user_id": users["user_id"].to_numpy(dtype="int64"),
        "churn_probability": models.churn.predict_proba(x)[:, 1].astype("float64"),
        "predicted_spend_90d": models.spend.predict(x).astype("float64"),
    })
