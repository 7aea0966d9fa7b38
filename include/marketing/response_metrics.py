"""Test-set metrics of the response models: ranking, calibration and lift.

Pure functions of labels and predicted probabilities, used by :mod:`marketing.scoring` (the
hold-out metrics in ``ml.model_runs``, deciles of the scores) and
:mod:`marketing.response_report` (the calibration curve and lift chart).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

ECE_BINS = 10
N_DECILES = 10


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


def decile_of_rank(n: int, n_groups: int = N_DECILES) -> np.ndarray:
    """Decile (1 = best) of ranks ``0 .. n-1``: rank r goes to ``floor(r * n_groups / n) + 1``."""
    return (np.arange(n, dtype="int64") * n_groups // max(n, 1) + 1).astype("int64")


def lift_by_decile(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """Response rate of each score decile (1 = highest scores) divided by the overall rate.

    Rows are ranked by descending score (ties by row order) and cut with
    :func:`decile_of_rank`. Returns 10 values; NaN for an empty decile or no positives.
    """
    y_true = np.asarray(y_true, dtype="float64")
    y_prob = np.asarray(y_prob, dtype="float64")
    if len(y_true) == 0 or y_true.sum() == 0:
        return np.full(N_DECILES, np.nan)
    order = np.argsort(-y_prob, kind="stable")
    deciles = decile_of_rank(len(y_true))
    hits = np.bincount(deciles, weights=y_true[order], minlength=N_DECILES + 1)[1:]
    sizes = np.bincount(deciles, minlength=N_DECILES + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, hits / np.maximum(sizes, 1), np.nan) / y_true.mean()


def _safe(metric, y_true: np.ndarray, y_prob: np.ndarray) -> float:
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(metric(y_true, y_prob))


def evaluate(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """Return ``auc``, ``pr_auc``, ``brier``, ``ece``, ``lift_decile_1..10``, ``base_rate``."""
    y_true = np.asarray(y_true, dtype="int64")
    y_prob = np.asarray(y_prob, dtype="float64")
    metrics = {
        "auc": _safe(roc_auc_score, y_true, y_prob),
        "pr_auc": _safe(average_precision_score, y_true, y_prob),
        "brier": float(brier_score_loss(y_true, y_prob)) if len(y_true) else float("nan"),
        "ece": expected_calibration_error(y_true, y_prob),
        "base_rate": float(y_true.mean()) if len(y_true) else float("nan"),
    }
    for decile, lift in enumerate(lift_by_decile(y_true, y_prob), start=1):
        metrics[f"lift_decile_{decile}"] = float(lift)
    return metrics
