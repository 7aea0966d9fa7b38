"""Two-model uplift: brute-force difference of two fits, recovers a planted treatment effect."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from test_scoring import make_users

from marketing.scoring import feature_frame, make_pipeline, score_users, train_response_model
from marketing.uplift import fit_control_model, uplift_scores


def _logistic(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def make_uplift_sends(n: int = 12_000, seed: int = 3) -> pd.DataFrame:
    """Half control; contact helps only users with many sessions (the persuadables)."""
    rng = np.random.default_rng(seed)
    sends = make_users(n, rng)
    day = np.repeat(np.arange(6), n // 6)
    sends.insert(0, "send_id", np.arange(n, dtype="int64") + 1)
    sends.insert(1, "campaign_id", (day // 3 + 1).astype("int64"))
    sends.insert(2, "user_id", np.arange(n, dtype="int64") + 1)
    sends.insert(3, "sent_at", pd.Timestamp("2024-03-01") + pd.to_timedelta(day, unit="D"))
    sends.insert(4, "is_control", rng.random(n) < 0.5)
    sends.insert(5, "channel", "email")
    sessions = np.log1p(sends["count_sessions_30d"].to_numpy(dtype="float64"))
    base = -2.0 + 0.5 * np.log1p(sends["count_orders_lifetime"].to_numpy(dtype="float64"))
    effect = 1.2 * (sessions - sessions.mean())  # negative for few sessions: contact annoys
    p_control, p_treated = _logistic(base), _logistic(base + effect)
    sends["true_uplift"] = p_treated - p_control
    p = np.where(sends["is_control"], p_control, p_treated)
    sends["has_responded"] = rng.random(n) < p
    return sends


@pytest.fixture(scope="module")
def uplift_sends() -> pd.DataFrame:
    return make_uplift_sends()


def test_uplift_is_treated_minus_control_fit(uplift_sends):
    control = uplift_sends[uplift_sends["is_control"]]
    treated = uplift_sends[~uplift_sends["is_control"]]
    control_model = fit_control_model(control, c=1.0, random_state=7)
    treated_model = make_pipeline(1.0, 7).fit(feature_frame(treated),
                                              treated["has_responded"].astype(int))
    x = feature_frame(uplift_sends.head(50))
    brute = (treated_model.predict_proba(x)[:, 1]
             - make_pipeline(1.0, 7).fit(feature_frame(control),
                                         control["has_responded"].astype(int))
             .predict_proba(x)[:, 1])
    np.testing.assert_allclose(uplift_scores(treated_model, control_model, x), brute)


def test_uplift_recovers_planted_effect(uplift_sends):
    model = train_response_model(uplift_sends.drop(columns="true_uplift"))
    assert model.control_pipeline is not None
    assert model.uplift_campaign_ids == (1, 2)
    profiles = uplift_sends.head(3000).drop(columns=["campaign_id", "channel"])
    campaigns = pd.DataFrame({"campaign_id": [1, 2, 7], "channel": ["email"] * 3})
    scores = score_users(model, profiles, campaigns)
    first = scores[scores["campaign_id"] == 1].set_index("user_id")["uplift"]
    truth = profiles.set_index("user_id")["true_uplift"].loc[first.index]
    assert spearmanr(first, truth).statistic > 0.8
    # persuadables (top true-uplift quintile) score far higher than the annoyed
    top = truth >= truth.quantile(0.8)
    bottom = truth <= truth.quantile(0.2)
    assert first[top].mean() > first[bottom].mean() + 0.1
    # ... and contacting the annoyed lowers their response: a response score cannot say that
    assert first[bottom].mean() < 0 < first[top].mean()
    # a campaign that never had control sends gets no uplift
    assert scores.loc[scores["campaign_id"] == 7, "uplift"].isna().all()
    assert scores.loc[scores["campaign_id"] != 7, "uplift"].notna().all()


def test_small_control_group_gives_no_uplift_model(uplift_sends, caplog):
    control = uplift_sends[uplift_sends["is_control"]].head(100)
    with caplog.at_level(logging.WARNING, logger="marketing.uplift"):
        assert fit_control_model(control, c=1.0, min_positives=int(
            control["has_responded"].sum()) + 1) is None
    assert "no uplift model" in caplog.text
    sends = uplift_sends.assign(is_control=False).drop(columns="true_uplift")
    model = train_response_model(sends)
    assert model.control_pipeline is None and model.uplift_campaign_ids == ()
    scores = score_users(model, sends.head(20), pd.DataFrame({"campaign_id": [1],
                                                               "channel": ["email"]}))
    assert scores["uplift"].isna().all()
