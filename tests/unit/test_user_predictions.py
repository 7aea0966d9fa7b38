"""Churn probability and 90-day spend from closed snapshot windows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from test_scoring import make_users

from marketing.user_predictions import predict_users, train_user_prediction_models


def make_snapshots(n: int = 4000, seed: int = 11) -> pd.DataFrame:
    """Churn driven by recency (never ordered -> likely churn); spend ~ orders."""
    rng = np.random.default_rng(seed)
    users = make_users(n, rng)
    users.insert(0, "user_id", np.arange(n, dtype="int64") + 1)
    recency = users["recency_days"].to_numpy(dtype="float64", na_value=np.nan)
    logit = np.where(np.isnan(recency), 1.5, -2.0 + 0.012 * np.nan_to_num(recency))
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    orders = users["count_orders_lifetime"].to_numpy(dtype="float64")
    spend = np.where(churned, 0.0, rng.gamma(2.0, 20.0 * (1 + orders) / 2.0))
    users["snapshot_date"] = pd.Timestamp("2026-07-02")
    users["churned_next_90d"] = pd.array(churned, dtype="boolean")
    users["spend_next_90d"] = spend
    users["true_churn"] = 1 / (1 + np.exp(-logit))
    users["true_spend"] = (1 - users["true_churn"]) * 20.0 * (1 + orders)
    later = users.head(500).assign(snapshot_date=pd.Timestamp("2026-08-31"),
                                   churned_next_90d=pd.NA, spend_next_90d=np.nan)
    return pd.concat([users, later], ignore_index=True)


def test_churn_and_spend_recover_the_truth():
    snapshots = make_snapshots()
    models = train_user_prediction_models(snapshots.drop(columns=["true_churn", "true_spend"]))
    assert models.metrics["n_train"] == 4000  # rows with an open window are skipped
    profiles = make_snapshots(seed=12).head(3000)
    out = predict_users(models, profiles.drop(columns=["churned_next_90d"]))
    assert list(out.columns) == ["user_id", "churn_probability", "predicted_spend_90d"]
    assert out["user_id"].is_monotonic_increasing
    truth = profiles.set_index("user_id").loc[out["user_id"]]
    assert np.corrcoef(out["churn_probability"], truth["true_churn"])[0, 1] > 0.9
    assert roc_auc_score(truth["churned_next_90d"].astype(bool), out["churn_probability"]) > 0.7
    assert (out["predicted_spend_90d"] >= 0).all()
    assert np.corrcoef(out["predicted_spend_90d"], truth["true_spend"])[0, 1] > 0.8
    assert out["predicted_spend_90d"].mean() == pytest.approx(truth["true_spend"].mean(), rel=0.15)


def test_above_max_rows_a_seeded_sample_trains_and_still_recovers_the_truth():
    snapshots = make_snapshots().drop(columns=["true_churn", "true_spend"])
    models = train_user_prediction_models(snapshots, max_rows=2000)
    assert models.metrics["n_train"] == 2000 and models.metrics["n_closed"] == 4000
    again = train_user_prediction_models(snapshots, max_rows=2000)
    profiles = make_snapshots(seed=12).head(3000)
    out = predict_users(models, profiles.drop(columns=["churned_next_90d"]))
    pd.testing.assert_frame_equal(out, predict_users(again, profiles))  # seeded
    other = predict_users(train_user_prediction_models(snapshots, random_state=8, max_rows=2000),
                          profiles)
    assert not np.allclose(out["churn_probability"], other["churn_probability"])
    truth = profiles.set_index("user_id").loc[out["user_id"]]
    assert np.corrcoef(out["churn_probability"], truth["true_churn"])[0, 1] > 0.9


def test_too_few_closed_windows_gives_none(caplog):
    snapshots = make_snapshots(200).drop(columns=["true_churn", "true_spend"])
    snapshots["churned_next_90d"] = pd.array([False] * len(snapshots), dtype="boolean")
    with caplog.at_level(logging.WARNING, logger="marketing.user_predictions"):
        assert train_user_prediction_models(snapshots) is None
    assert "0 churned" in caplog.text
    with pytest.raises(ValueError, match="missing columns"):
        train_user_prediction_models(snapshots.drop(columns=["spend_next_90d"]))
