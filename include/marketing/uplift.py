"""Two-model uplift: P(respond | contacted) - P(respond | held out as control).

Campaign sends flagged ``is_control`` were recorded but never contacted. A model fitted on the
treated sends (the response model) and one fitted on the control sends, both with the same
pipeline and regularisation, estimate the two potential outcomes per user; their difference is
the uplift, the extra response a contact causes. Targeting high uplift reaches *persuadable*
users rather than those who would buy anyway ("sure things").
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from marketing.scoring import CATEGORICAL_FEATURES, feature_frame, fit_rows, make_pipeline

logger = logging.getLogger(__name__)


def fit_control_model(
    control_sends: pd.DataFrame,
    c: float,
    random_state: int = 7,
    min_positives: int = 30,
) -> Pipeline | None:
    """Fit the control arm on control sends (``is_control`` true).

    Parameters
    ----------
    control_sends : pandas.DataFrame
        Control rows of ``marts.fct_campaign_sends`` (features, ``country``, ``channel``,
        ``campaign_id``, ``has_responded``).
    c : float
        Regularisation of the treated model (chosen by time-series CV there), reused so both
        arms are shrunk alike.
    random_state : int, default 7
    min_positives : int, default 30
        Least responders and least non-responders among control sends.

    Returns
    -------
    sklearn.pipeline.Pipeline or None
        None (logged) when the control group is too small to fit.
    """
    y = control_sends["has_responded"].astype(bool).to_numpy().astype("int64")
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos < min_positives or n_neg < min_positives:
        logger.warning(
            "no uplift model: %d responders and %d non-responders among %d control sends "
            "(need >= %d of each)", n_pos, n_neg, len(y), min_positives,
        )
        return None
    rows = fit_rows(np.ones(len(y), dtype=bool), random_state)
    x = feature_frame(control_sends.iloc[rows], CATEGORICAL_FEATURES)
    return make_pipeline(c, random_state, CATEGORICAL_FEATURES).fit(x, y[rows])


def uplift_scores(treated: Pipeline, control: Pipeline, x: pd.DataFrame) -> np.ndarray:
    """Return ``treated.predict_proba(x) - control.predict_proba(x)`` (class 1), in [-1, 1].

    ``x`` is a :func:`marketing.scoring.feature_frame` of the users to score.
    """
    return (treated.predict_proba(x)[:, 1] - control.predict_proba(x)[:, 1]).astype("float64")
