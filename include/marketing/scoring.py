"""Campaign-response scoring: a logistic regression trained on past sends.

Pure functions on DataFrames; reading ``marts.fct_campaign_sends`` / ``marts.user_profiles``,
writing ``ml.campaign_scores`` / ``ml.model_runs`` and saving the model happen elsewhere.

Training (:func:`train_response_model`):

1. keep treated sends only (``is_control`` false: control users were never contacted);
2. split by time on whole send days: the latest ~25% of sends are the test set, and no
   test day is earlier than any training day (:func:`split_by_send_day`);
3. choose ``C`` of the logistic regression from :data:`C_GRID` by ROC AUC in a
   time-series cross-validation over the training days (again on whole days);
4. report AUC, PR AUC, Brier score, ECE and top-decile lift on the test set;
5. refit the same pipeline, same ``C``, on all treated sends for scoring.

The pipeline takes the raw feature columns (:data:`FEATURES`) of either table, so the
model trained on sends scores ``user_profiles`` rows directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

logger = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = (
    "recency_days",
    "count_orders_lifetime",
    "monetary_lifetime",
    "average_order_value",
    "count_views_30d",
    "count_carts_30d",
    "count_purchases_30d",
    "count_sessions_30d",
    "count_views_90d",
    "count_carts_90d",
    "count_purchases_90d",
    "count_sessions_90d",
    "conversion_rate_90d",
    "tenure_days",
)
"""Point-in-time numeric features shared by ``user_profiles`` and ``fct_campaign_sends``."""

NEVER_ORDERED = "is_never_ordered"
"""Indicator derived from ``recency_days`` being NULL, appended after :data:`FEATURES`."""

MODEL_FEATURES: tuple[str, ...] = (*FEATURES, NEVER_ORDERED)
"""Columns of the model matrix, in order (the names of the coefficients)."""

LOG1P_FEATURES: tuple[str, ...] = tuple(
    f for f in FEATURES if f.startswith("count_") or f in {"monetary_lifetime",
                                                            "average_order_value"}
)
"""Counts and money: transformed with ``log1p`` (after clipping at 0)."""

C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
"""Inverse regularisation strengths tried; ties go to the smaller (simpler) value."""

TEST_FRACTION = 0.25
CV_SPLITS = 3
ECE_BINS = 10
SEND_COLUMNS = ("send_id", "campaign_id", "user_id", "sent_at", "is_control", "has_responded")

_LOG1P_INDEX = np.array([MODEL_FEATURES.index(f) for f in LOG1P_FEATURES])


def feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Select :data:`FEATURES` (in order) as float64 columns, NULL -> NaN.

    The pipeline is always fitted and applied on this frame, so sends and profiles (which
    carry different extra columns) present the same feature names.
    """
    missing = [f for f in FEATURES if f not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing: {missing}")
    return pd.DataFrame(
        {f: frame[f].to_numpy(dtype="float64", na_value=np.nan) for f in FEATURES},
        index=frame.index,
    )


def _model_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Turn a :func:`feature_frame` into a matrix and append the never-ordered flag."""
    x = np.asarray(frame, dtype="float64").reshape(-1, len(FEATURES))
    never_ordered = np.isnan(x[:, 0]).astype("float64")[:, None]
    return np.hstack([x, never_ordered])


def _log1p_counts(x: np.ndarray) -> np.ndarray:
    """``log1p`` of the count and money columns (clipped at 0 first)."""
    out = np.array(x, dtype="float64", copy=True)
    out[:, _LOG1P_INDEX] = np.log1p(np.maximum(out[:, _LOG1P_INDEX], 0.0))
    return out


def make_pipeline(c: float = 1.0, random_state: int = 7) -> Pipeline:
    """Build the (unfitted) response pipeline.

    Parameters
    ----------
    c : float, default 1.0
        Inverse L2 regularisation strength of the logistic regression.
    random_state : int, default 7
        Passed to the logistic regression (lbfgs is deterministic anyway).

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``features`` (select + never-ordered flag) -> ``impute`` (median; recency of
        never-ordered users, NULL rates) -> ``log1p`` -> ``scale`` -> ``model``.
    """
    return Pipeline([
        ("features", FunctionTransformer(_model_matrix)),
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("log1p", FunctionTransformer(_log1p_counts)),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(C=c, max_iter=1000, random_state=random_state)),
    ])


@dataclass(frozen=True, eq=False)
class ResponseModel:
    """A fitted response model and how well it did on held-out later sends.

    Attributes
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted on all treated sends; ``predict_proba`` takes ``feature_frame(rows)``.
    metrics : dict of str to float
        Test-set ``auc``, ``pr_auc``, ``brier``, ``ece``, ``lift_decile_1``,
        ``base_rate``; plus ``cv_auc`` and the chosen ``c``. NaN when undefined
        (e.g. a test set with one class).
    coefficients : pandas.DataFrame
        ``feature``, ``coefficient`` (standardised units) of the final model, sorted by
        absolute value, largest first.
    n_train, n_test : int
        Treated sends in the training and test parts of the time split.
    """

    pipeline: Pipeline
    metrics: dict[str, float]
    coefficients: pd.DataFrame
    n_train: int
    n_test: int

    def model_card(self) -> dict:
        """Return a JSON-serialisable summary (metrics, coefficients, sizes, features)."""
        return {
            "model": "campaign_response_logistic_regression",
            "features": list(MODEL_FEATURES),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "metrics": {k: (None if np.isnan(v) else v) for k, v in self.metrics.items()},
            "intercept": float(self.pipeline.named_steps["model"].intercept_[0]),
            "coefficients": dict(zip(self.coefficients["feature"],
                                     self.coefficients["coefficient"].astype(float),
                                     strict=True)),
        }


def expected_calibration_error(
    y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Expected calibration error over equal-width probability bins.

    ``sum_b (n_b / n) * |mean(y_prob in b) - mean(y_true in b)|``; bins are
    ``[0, 1/n_bins), ..., [1 - 1/n_bins, 1]``.

    Parameters
    ----------
    y_true : array-like of {0, 1}
    y_prob : array-like of float in [0, 1]
    n_bins : int, default 10

    Returns
    -------
    float
        NaN for empty input.
    """
    y_true = np.asarray(y_true, dtype="float64")
    y_prob = np.asarray(y_prob, dtype="float64")
    if y_true.shape != y_prob.shape:
        raise ValueError(f"y_true and y_prob differ in shape, got {y_true.shape} and "
                         f"{y_prob.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if len(y_true) == 0:
        return float("nan")
    if ((y_prob < 0) | (y_prob > 1)).any():
        raise ValueError("y_prob must lie in [0, 1]")
    bins = np.minimum((y_prob * n_bins).astype(np.int64), n_bins - 1)
    sum_prob = np.bincount(bins, weights=y_prob, minlength=n_bins)
    sum_true = np.bincount(bins, weights=y_true, minlength=n_bins)
    return float(np.abs(sum_prob - sum_true).sum() / len(y_true))


def lift_at_top(y_true: np.ndarray, y_prob: np.ndarray, fraction: float = 0.1) -> float:
    """Response rate in the top ``fraction`` by score divided by the overall rate.

    The top group is the first ``ceil(fraction * n)`` rows by descending score; ties are
    broken by row order (stable sort), so the result is deterministic.

    Returns
    -------
    float
        NaN when there are no rows or no positives.
    """
    y_true = np.asarray(y_true, dtype="float64")
    y_prob = np.asarray(y_prob, dtype="float64")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if len(y_true) == 0 or y_true.sum() == 0:
        return float("nan")
    n_top = int(np.ceil(fraction * len(y_true)))
    top = np.argsort(-y_prob, kind="stable")[:n_top]
    return float(y_true[top].mean() / y_true.mean())


def _safe(metric, y_true: np.ndarray, y_prob: np.ndarray) -> float:
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(metric(y_true, y_prob))


def evaluate(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """Return ``auc``, ``pr_auc``, ``brier``, ``ece``, ``lift_decile_1`` and ``base_rate``."""
    y_true = np.asarray(y_true, dtype="int64")
    y_prob = np.asarray(y_prob, dtype="float64")
    return {
        "auc": _safe(roc_auc_score, y_true, y_prob),
        "pr_auc": _safe(average_precision_score, y_true, y_prob),
        "brier": float(brier_score_loss(y_true, y_prob)) if len(y_true) else float("nan"),
        "ece": expected_calibration_error(y_true, y_prob),
        "lift_decile_1": lift_at_top(y_true, y_prob, 0.1),
        "base_rate": float(y_true.mean()) if len(y_true) else float("nan"),
    }


def split_by_send_day(
    sent_at: pd.Series, test_fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Split sends into train/test on whole days, the latest days being the test set.

    The cut is the day boundary that makes the test share closest to ``test_fraction``
    (ties -> the smaller test set), with at least one day on each side.

    Parameters
    ----------
    sent_at : pandas.Series of datetime
    test_fraction : float, default 0.25

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Boolean masks ``is_train``, ``is_test`` aligned with ``sent_at``.

    Raises
    ------
    ValueError
        If there are fewer than two distinct send days, or NULL timestamps.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    days = pd.to_datetime(sent_at).dt.floor("D")
    if days.isna().any():
        raise ValueError("sent_at has NULL values")
    unique_days, counts = np.unique(days.to_numpy(), return_counts=True)
    if len(unique_days) < 2:
        raise ValueError(f"a time split needs sends on at least 2 days, got {len(unique_days)}")
    test_share = counts[::-1].cumsum()[::-1] / counts.sum()  # share of days[i:] for cut i
    cuts = np.arange(1, len(unique_days))
    gaps = np.abs(test_share[cuts] - test_fraction)
    # among equal gaps prefer the latest cut (smaller test set)
    best = cuts[len(gaps) - 1 - np.argmin(gaps[::-1])]
    is_test = (days >= unique_days[best]).to_numpy()
    return ~is_test, is_test


def _day_folds(days: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Time-series CV folds over whole days (``days`` sorted ascending)."""
    unique_days = np.unique(days)
    n_splits = min(n_splits, len(unique_days) - 1)
    if n_splits < 2:
        return []
    folds = []
    for train_days, test_days in TimeSeriesSplit(n_splits=n_splits).split(unique_days):
        train = np.flatnonzero(np.isin(days, unique_days[train_days]))
        test = np.flatnonzero(np.isin(days, unique_days[test_days]))
        folds.append((train, test))
    return folds


def _choose_c(
    x: pd.DataFrame, y: np.ndarray, days: np.ndarray, random_state: int
) -> tuple[float, float]:
    """Pick C from :data:`C_GRID` by mean ROC AUC over day-based time-series folds."""
    folds = [
        (tr, te) for tr, te in _day_folds(days, CV_SPLITS)
        if len(np.unique(y[tr])) == 2 and len(np.unique(y[te])) == 2
    ]
    if not folds:
        logger.warning("no usable time-series CV fold; using C=1.0")
        return 1.0, float("nan")
    best_c, best_auc = C_GRID[0], -np.inf
    for c in C_GRID:
        aucs = []
        for train, test in folds:
            pipe = make_pipeline(c, random_state).fit(x.iloc[train], y[train])
            aucs.append(roc_auc_score(y[test], pipe.predict_proba(x.iloc[test])[:, 1]))
        mean_auc = float(np.mean(aucs))
        logger.info("C=%g cv_auc=%.4f (%d folds)", c, mean_auc, len(folds))
        if mean_auc > best_auc + 1e-12:
            best_c, best_auc = c, mean_auc
    return best_c, best_auc


def _validate_sends(sends: pd.DataFrame) -> None:
    missing = [c for c in (*SEND_COLUMNS, *FEATURES) if c not in sends.columns]
    if missing:
        raise ValueError(f"sends is missing columns {missing}")
    for column in ("sent_at", "is_control", "has_responded"):
        if sends[column].isna().any():
            raise ValueError(f"sends.{column} has NULL values")


def train_response_model(
    sends: pd.DataFrame,
    random_state: int = 7,
    min_positives: int = 100,
    min_negatives: int = 100,
) -> ResponseModel | None:
    """Train the pooled campaign-response model on past treated sends.

    Parameters
    ----------
    sends : pandas.DataFrame
        Rows of ``marts.fct_campaign_sends``: ``send_id``, ``campaign_id``, ``user_id``,
        ``sent_at``, ``is_control``, ``has_responded`` and :data:`FEATURES`.
        Row order does not matter (rows are sorted by ``sent_at``, ``send_id``).
    random_state : int, default 7
    min_positives, min_negatives : int, default 100
        Least responders / non-responders among treated sends needed to train.

    Returns
    -------
    ResponseModel or None
        None (with a warning saying why) when there are too few positives or negatives,
        or sends on fewer than two days.

    Raises
    ------
    ValueError
        On missing columns or NULL ``sent_at`` / ``is_control`` / ``has_responded``.
    """
    _validate_sends(sends)
    treated = sends.loc[~sends["is_control"].astype(bool)]
    treated = treated.assign(sent_at=pd.to_datetime(treated["sent_at"]))
    treated = treated.sort_values(["sent_at", "send_id"], kind="stable").reset_index(drop=True)
    y = treated["has_responded"].astype(bool).to_numpy().astype("int64")
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos < min_positives or n_neg < min_negatives:
        logger.warning(
            "not training the response model: %d responders and %d non-responders among "
            "%d treated sends (need >= %d and >= %d)",
            n_pos, n_neg, len(y), min_positives, min_negatives,
        )
        return None
    try:
        is_train, is_test = split_by_send_day(treated["sent_at"])
    except ValueError as error:
        logger.warning("not training the response model: %s", error)
        return None
    y_train = y[is_train]
    if len(np.unique(y_train)) < 2:
        logger.warning("not training the response model: the training days hold one class")
        return None

    x = feature_frame(treated)
    x_train, x_test = x.loc[is_train], x.loc[is_test]
    days = treated.loc[is_train, "sent_at"].dt.floor("D").to_numpy()
    c, cv_auc = _choose_c(x_train, y_train, days, random_state)

    holdout = make_pipeline(c, random_state).fit(x_train, y_train)
    metrics = evaluate(y[is_test], holdout.predict_proba(x_test)[:, 1])
    metrics["cv_auc"] = cv_auc
    metrics["c"] = float(c)

    final = make_pipeline(c, random_state).fit(x, y)
    coefficients = pd.DataFrame({
        "feature": pd.array(MODEL_FEATURES, dtype="str"),
        "coefficient": final.named_steps["model"].coef_[0].astype("float64"),
    })
    order = np.lexsort((coefficients["feature"].to_numpy(),
                        -np.abs(coefficients["coefficient"].to_numpy())))
    coefficients = coefficients.iloc[order].reset_index(drop=True)
    logger.info(
        "response model: C=%g train=%d test=%d auc=%.4f lift_decile_1=%.2f",
        c, int(is_train.sum()), int(is_test.sum()), metrics["auc"], metrics["lift_decile_1"],
    )
    return ResponseModel(
        pipeline=final,
        metrics=metrics,
        coefficients=coefficients,
        n_train=int(is_train.sum()),
        n_test=int(is_test.sum()),
    )


def score_users(
    model: ResponseModel, profiles: pd.DataFrame, campaign_ids: Iterable[int]
) -> pd.DataFrame:
    """Score every user for every campaign.

    This version uses the pooled model, so a user's probability is the same for every
    campaign; the output shape already allows per-campaign models later.

    Parameters
    ----------
    model : ResponseModel
    profiles : pandas.DataFrame
        Rows of ``marts.user_profiles``: ``user_id`` and :data:`FEATURES`.
    campaign_ids : iterable of int
        Campaigns to score (duplicates dropped).

    Returns
    -------
    pandas.DataFrame
        ``user_id``, ``campaign_id``, ``response_probability``: one row per user x
        campaign, sorted by ``user_id`` then ``campaign_id``.
    """
    if not isinstance(model, ResponseModel):
        raise ValueError(f"model must be a ResponseModel, got {type(model).__name__}")
    if "user_id" not in profiles.columns:
        raise ValueError("profiles must have a user_id column")
    campaigns = np.unique(np.asarray(list(campaign_ids), dtype="int64"))
    users = profiles.sort_values("user_id", kind="stable")
    user_ids = users["user_id"].to_numpy(dtype="int64")
    if len(users) and len(campaigns):
        probability = model.pipeline.predict_proba(feature_frame(users))[:, 1]
    else:
        probability = np.zeros(len(users))
    return pd.DataFrame({
        "user_id": np.repeat(user_ids, len(campaigns)),
        "campaign_id": np.tile(campaigns, len(users)),
        "response_probability": np.repeat(probability, len(campaigns)).astype("float64"),
    })
