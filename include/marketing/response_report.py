"""The response model's picture per run: calibration curve and lift by decile.

``data/reports/<YYYY-MM-DD>/response.png``: left, mean predicted probability against the
observed response rate per probability bin on the test sends (the diagonal is perfect
calibration; marker area ~ sends in the bin); right, the test response rate of each score
decile divided by the overall rate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from marketing.response_metrics import ECE_BINS, lift_by_decile
from marketing.scoring import ResponseModel

logger = logging.getLogger(__name__)


def calibration_bins(
    y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin: mean predicted, observed rate, count (as for ECE)."""
    y_true = np.asarray(y_true, dtype="float64")
    y_prob = np.asarray(y_prob, dtype="float64")
    bins = np.minimum((y_prob * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    keep = counts > 0
    mean_prob = np.bincount(bins, weights=y_prob, minlength=n_bins)[keep] / counts[keep]
    rate = np.bincount(bins, weights=y_true, minlength=n_bins)[keep] / counts[keep]
    return mean_prob, rate, counts[keep]


def write_response_png(model: ResponseModel, path: Path, title: str) -> Path:
    """Draw the calibration curve and lift by decile of ``model``'s test set to ``path``."""
    import matplotlib  # noqa: PLC0415 (heavy; only needed here)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    if len(model.test_y):
        mean_prob, rate, counts = calibration_bins(model.test_y, model.test_probability)
        top = float(max(mean_prob.max(), rate.max(), 0.05)) * 1.1
        left.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1,
                  label="perfect calibration")
        left.scatter(mean_prob, rate, s=20 + 200 * counts / counts.max(), zorder=3)
        left.plot(mean_prob, rate, marker="", linewidth=1.5, label="model (test sends)")
        left.set_xlim(0, top)
        left.set_ylim(0, top)
        lifts = lift_by_decile(model.test_y, model.test_probability)
        right.bar(np.arange(1, len(lifts) + 1), np.nan_to_num(lifts))
    left.set_xlabel("mean predicted probability")
    left.set_ylabel("observed response rate")
    left.set_title(f"Calibration (ECE {model.metrics.get('ece', float('nan')):.3f})")
    left.legend(loc="upper left", fontsize=8)
    right.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    right.set_xticks(range(1, 11))
    right.set_xlabel("score decile (1 = highest)")
    right.set_ylabel("lift (decile rate / overall rate)")
    right.set_title(f"Lift by decile (AUC {model.metrics.get('auc', float('nan')):.3f})")
    fig.suptitle(title)
    fig.tight_layout()
    # no timestamps in the file: the same run gives the same bytes
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    logger.info("wrote %s", path)
    return path
