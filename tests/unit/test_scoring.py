"""Response scoring: near-oracle AUC on a known logistic truth, honest time split, metrics."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from marketing.response_metrics import (
    decile_of_rank,
    expected_calibration_error,
    lift_at_top,
    lift_by_decile,
)
from marketing.scoring import (
    FEATURES,
    LOG1P_FEATURES,
    MODEL_FEATURES,
    ResponseModel,
    _log1p_counts,
    score_users,
    split_by_send_day,
    train_response_model,
)

CAMPAIGNS = pd.DataFrame({"campaign_id": [1, 2, 3], "channel": ["email", "meta_ads", "email"]})


def true_probability(frame: pd.DataFrame) -> np.ndarray:
    """The planted response function (logistic in log-counts, recency and never-ordered)."""
    recency = frame["recency_days"].to_numpy(dtype="float64", na_value=np.nan)
    never = np.isnan(recency)
    logit = (
        -2.2
        + 0.9 * np.log1p(frame["count_sessions_30d"].to_numpy(dtype="float64"))
        + 0.6 * np.log1p(frame["count_orders_lifetime"].to_numpy(dtype="float64"))
        - 0.012 * np.where(never, 0.0, recency)
        - 1.0 * never
    )
    return 1.0 / (1.0 + np.exp(-logit))


def make_users(n: int, rng: np.random.Generator) -> pd.DataFrame:
    never = rng.random(n) < 0.3
    orders = np.where(never, 0, rng.poisson(3, n) + 1)
    monetary = orders * rng.lognormal(4.0, 0.5, n)
    views_90 = rng.poisson(30, n)
    purchases_90 = np.minimum(rng.poisson(1, n) * (~never), views_90)
    return pd.DataFrame({
        "recency_days": pd.array(np.where(never, -1, rng.integers(0, 300, n)),
                                 dtype="Int64").astype("Int64"),
        "count_orders_lifetime": orders,
        "monetary_lifetime": monetary,
        "average_order_value": np.where(orders > 0, monetary / np.maximum(orders, 1), np.nan),
        "count_views_30d": rng.poisson(10, n),
        "count_carts_30d": rng.poisson(2, n),
        "count_purchases_30d": rng.poisson(0.3, n),
        "count_sessions_30d": rng.poisson(rng.choice([1, 4, 12], n)),
        "count_views_90d": views_90,
        "count_carts_90d": rng.poisson(6, n),
        "count_purchases_90d": purchases_90,
        "count_sessions_90d": rng.poisson(12, n),
        "conversion_rate_90d": np.where(views_90 > 0, purchases_90 / np.maximum(views_90, 1),
                                        np.nan),
        "tenure_days": rng.integers(1, 1000, n),
        "country": rng.choice(["DE", "FR", "NL"], n),
    }).assign(recency_days=lambda f: f["recency_days"].mask(never))


def make_sends(n_days: int = 24, per_day: int = 250, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_days * per_day
    sends = make_users(n, rng)
    day = np.repeat(np.arange(n_days), per_day)
    sends.insert(0, "send_id", np.arange(n, dtype="int64") + 1)
    sends.insert(1, "campaign_id", (day // 8 + 1).astype("int64"))
    sends.insert(2, "user_id", rng.integers(1, 3000, n).astype("int64"))
    sends.insert(3, "sent_at", pd.Timestamp("2024-03-01")
                 + pd.to_timedelta(day, unit="D")
                 + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"))
    sends.insert(4, "is_control", rng.random(n) < 0.1)
    sends.insert(5, "channel", np.where(sends["campaign_id"] == 2, "meta_ads", "email"))
    sends["true_probability"] = true_probability(sends)
    sends["has_responded"] = rng.random(n) < sends["true_probability"]
    return sends


@pytest.fixture(scope="module")
def sends() -> pd.DataFrame:
    return make_sends()


@pytest.fixture(scope="module")
def model(sends) -> ResponseModel:
    return train_response_model(sends.drop(columns="true_probability"))


def _treated_sorted(sends: pd.DataFrame) -> pd.DataFrame:
    treated = sends.loc[~sends["is_control"]]
    return treated.sort_values(["sent_at", "send_id"]).reset_index(drop=True)


def test_auc_close_to_oracle(sends, model):
    assert model is not None
    treated = _treated_sorted(sends)
    _, is_test = split_by_send_day(treated["sent_at"])
    test = treated.loc[is_test]
    oracle_auc = roc_auc_score(test["has_responded"], test["true_probability"])
    assert model.n_test == len(test)
    assert model.n_train + model.n_test == len(treated)
    assert abs(model.metrics["auc"] - oracle_auc) <= 0.03
    assert model.metrics["lift_decile_1"] > 1.5
    assert model.metrics["ece"] < 0.05
    assert set(model.metrics) >= {"auc", "pr_auc", "brier", "ece", "lift_decile_1", "cv_auc",
                                  "c", "base_rate"}
    assert all(isinstance(v, float) for v in model.metrics.values())


def test_coefficients(model):
    coefficients = model.coefficients
    assert list(coefficients.columns) == ["feature", "coefficient"]
    assert set(MODEL_FEATURES) <= set(coefficients["feature"])
    assert {"country=DE", "channel=email", "campaign_id=1", "campaign_id=3"} <= set(
        coefficients["feature"])
    magnitude = coefficients["coefficient"].abs().to_numpy()
    assert (np.diff(magnitude) <= 0).all()
    by_feature = coefficients.set_index("feature")["coefficient"]
    assert by_feature["count_sessions_30d"] > 0.3
    assert by_feature["recency_days"] < 0
    # the two planted strong effects lead; the unused features stay small
    assert set(coefficients["feature"].iloc[:2]) == {"count_sessions_30d", "recency_days"}
    unused = by_feature.drop(["count_sessions_30d", "recency_days", "count_orders_lifetime",
                              "is_never_ordered"])
    numeric = unused.index.isin(MODEL_FEATURES)
    assert unused[numeric].abs().max() < 0.15
    # country / channel / campaign have no planted effect: one-hot offsets stay small
    assert unused[~numeric].abs().max() < 0.25
    card = model.model_card()
    assert card["n_test"] == model.n_test
    assert set(card["coefficients"]) == set(coefficients["feature"])
    assert card["top_positive_drivers"][0]["feature"] == "count_sessions_30d"
    assert card["top_negative_drivers"][0]["feature"] == "recency_days"
    assert all(d["coefficient"] > 0 for d in card["top_positive_drivers"])
    assert all(d["coefficient"] < 0 for d in card["top_negative_drivers"])


def test_score_users(sends, model):
    profiles = make_users(7, np.random.default_rng(5))
    profiles.insert(0, "user_id", np.array([30, 10, 20, 70, 50, 60, 40], dtype="int64"))
    profiles["share_books"] = 0.5  # extra columns are ignored
    campaigns = pd.DataFrame({"campaign_id": [9, 2, 2], "channel": ["email", "meta_ads",
                                                                      "meta_ads"]})
    scores = score_users(model, profiles, campaigns)
    assert list(scores.columns) == ["user_id", "campaign_id", "response_probability", "decile",
                                    "uplift"]
    assert len(scores) == 7 * 2
    assert scores["user_id"].tolist() == sorted([10, 20, 30, 40, 50, 60, 70] * 2)
    assert scores["campaign_id"].tolist() == [2, 9] * 7
    assert scores["response_probability"].between(0, 1).all()
    # per-campaign scores: campaign 2 (seen, meta_ads) differs from unseen campaign 9 (email)
    wide = scores.pivot(index="user_id", columns="campaign_id", values="response_probability")
    assert (wide[2] != wide[9]).all()
    # the ranking within a campaign matches the pipeline's probabilities
    for campaign_id, channel in ((2, "meta_ads"), (9, "email")):
        rows = profiles.assign(campaign_id=campaign_id, channel=channel).sort_values("user_id")
        from marketing.scoring import feature_frame
        expected = model.pipeline.predict_proba(feature_frame(rows))[:, 1]
        np.testing.assert_allclose(wide[campaign_id].to_numpy(), expected)
    assert score_users(model, profiles, campaigns.iloc[0:0]).empty
    empty = score_users(model, profiles.iloc[0:0], campaigns)
    assert list(empty.columns) == list(scores.columns) and empty.empty
    with pytest.raises(ValueError, match="ResponseModel"):
        score_users(None, profiles, campaigns)
    with pytest.raises(ValueError, match="campaigns is missing columns"):
        score_users(model, profiles, campaigns[["campaign_id"]])
    twice = pd.concat([profiles, profiles.iloc[[3]]])
    with pytest.raises(ValueError, match="user_id must be unique"):
        score_users(model, twice, campaigns)
    # empty frames keep the table's column types
    assert empty.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64", "float64"]
    no_campaigns = score_users(model, profiles, campaigns.iloc[0:0])
    assert no_campaigns.dtypes.astype(str).tolist() == empty.dtypes.astype(str).tolist()


def test_deciles_match_brute_force(model):
    profiles = make_users(23, np.random.default_rng(9))
    profiles.insert(0, "user_id", np.arange(100, 123, dtype="int64")[::-1])
    scores = score_users(model, profiles, CAMPAIGNS)
    for _, group in scores.groupby("campaign_id"):
        ranked = sorted(zip(-group["response_probability"], group["user_id"], strict=True))
        n = len(ranked)
        expected = {user: r * 10 // n + 1 for r, (_, user) in enumerate(ranked)}
        assert group.set_index("user_id")["decile"].to_dict() == expected
        assert group["decile"].value_counts().max() - group["decile"].value_counts().min() <= 1


def test_walk_forward_campaign_auc(model, sends):
    metrics = model.campaign_metrics.set_index("campaign_id")
    assert list(metrics.index) == [1, 2, 3]
    treated = sends.loc[~sends["is_control"]]
    assert metrics["n_sends"].to_dict() == treated.groupby("campaign_id").size().to_dict()
    assert np.isnan(metrics.loc[1, "auc"])  # nothing was sent before the first campaign
    for campaign_id in (2, 3):
        group = treated[treated["campaign_id"] == campaign_id]
        oracle = roc_auc_score(group["has_responded"], group["true_probability"])
        assert abs(metrics.loc[campaign_id, "auc"] - oracle) < 0.05


def _count_pipeline_fit_rows(monkeypatch) -> list[int]:
    """Patch ``Pipeline.fit`` to record the rows of every fit; returns the (growing) list."""
    from sklearn.pipeline import Pipeline

    fitted_rows: list[int] = []
    fit = Pipeline.fit

    def counting_fit(self, x, y=None, **params):
        fitted_rows.append(len(x))
        return fit(self, x, y, **params)

    monkeypatch.setattr(Pipeline, "fit", counting_fit)
    return fitted_rows


def test_walk_forward_reuses_the_holdout_fit_when_the_split_starts_a_campaign(sends, monkeypatch):
    day = (sends["sent_at"].dt.floor("D") - pd.Timestamp("2024-03-01")).dt.days
    # six days per campaign: the time split's test days (the last 6 of 24) are campaign 4
    frame = sends.drop(columns="true_probability").assign(campaign_id=day // 6 + 1)
    fitted_rows = _count_pipeline_fit_rows(monkeypatch)
    model = train_response_model(frame)
    metrics = model.campaign_metrics.set_index("campaign_id")
    assert metrics.loc[4, "n_sends"] == model.n_test
    # campaign 4's walk-forward model is the hold-out model (the same rows, C and seed) ...
    assert metrics.loc[4, "auc"] == model.metrics["auc"]
    # ... fitted once; campaigns 2 and 3 get their own fits, on the sends before them
    assert fitted_rows.count(model.n_train) == 1
    before_2, before_3 = metrics.loc[1, "n_sends"], metrics.loc[[1, 2], "n_sends"].sum()
    assert fitted_rows.count(before_2) == 1 and fitted_rows.count(before_3) == 1


def test_deterministic(sends, model):
    shuffled = sends.drop(columns="true_probability").sample(frac=1.0, random_state=1)
    again = train_response_model(shuffled)
    assert again.metrics == model.metrics
    pd.testing.assert_frame_equal(again.coefficients, model.coefficients)
    profiles = sends.drop(columns="user_id").rename(columns={"send_id": "user_id"}).head(300)
    pd.testing.assert_frame_equal(
        score_users(again, profiles, CAMPAIGNS), score_users(model, profiles, CAMPAIGNS)
    )


def test_too_few_positives_returns_none(sends, caplog):
    none_responded = sends.assign(has_responded=False).drop(columns="true_probability")
    with caplog.at_level(logging.WARNING, logger="marketing.scoring"):
        assert train_response_model(none_responded) is None
    assert "0 responders" in caplog.text
    few = sends.drop(columns="true_probability")
    positives = int((few["has_responded"] & ~few["is_control"]).sum())
    assert train_response_model(few, min_positives=positives + 1) is None
    # control sends never count as training data
    all_control = few.assign(is_control=True)
    assert train_response_model(all_control) is None


def test_single_day_returns_none(sends, caplog):
    one_day = sends.drop(columns="true_probability").assign(
        sent_at=pd.Timestamp("2024-03-01 12:00"))
    with caplog.at_level(logging.WARNING, logger="marketing.scoring"):
        assert train_response_model(one_day) is None
    assert "2 days" in caplog.text


def test_bad_input_raises(sends):
    with pytest.raises(ValueError, match="missing columns"):
        train_response_model(sends.drop(columns=["tenure_days"]))
    with pytest.raises(ValueError, match="is_control has NULL"):
        train_response_model(sends.assign(is_control=pd.array([None] * len(sends),
                                                                dtype="boolean")))


# --- time split ---------------------------------------------------------------------------


def test_time_split_whole_days_and_order(sends):
    treated = _treated_sorted(sends)
    is_train, is_test = split_by_send_day(treated["sent_at"])
    assert (is_train ^ is_test).all()
    days = treated["sent_at"].dt.floor("D")
    assert days[is_train].max() < days[is_test].min()
    assert treated["sent_at"][is_train].max() < treated["sent_at"][is_test].min()
    assert 0.2 <= is_test.mean() <= 0.3


@pytest.mark.parametrize("seed", range(5))
def test_time_split_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_days = int(rng.integers(2, 9))
    counts = rng.integers(1, 50, n_days)
    day_of_row = rng.permutation(np.repeat(np.arange(n_days), counts))  # unsorted input
    sent_at = pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(day_of_row, unit="D")
                        + pd.Timedelta(hours=5))
    is_train, is_test = split_by_send_day(sent_at)
    # brute force: try every cut, keep the test share closest to 25% (ties: smaller test)
    best = None
    for cut in range(1, n_days):
        share = counts[cut:].sum() / counts.sum()
        key = (abs(share - 0.25), share)
        if best is None or key < best[0]:
            best = (key, cut)
    cut = best[1]
    np.testing.assert_array_equal(is_test, day_of_row >= cut)
    np.testing.assert_array_equal(is_train, day_of_row < cut)


def test_time_split_needs_two_days():
    with pytest.raises(ValueError, match="at least 2 days"):
        split_by_send_day(pd.Series(pd.to_datetime(["2024-01-01 01:00", "2024-01-01 23:00"])))


# --- metrics ------------------------------------------------------------------------------


def test_ece_perfectly_calibrated_is_zero():
    y_prob = np.array([0.25] * 4 + [0.75] * 4 + [0.05] * 20)
    y_true = np.array([1, 0, 0, 0] + [1, 1, 1, 0] + [1] + [0] * 19)
    assert expected_calibration_error(y_true, y_prob) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(200_000) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    # a constant miscalibration of +0.1 gives ECE 0.1
    assert expected_calibration_error(y_true, np.clip(y_prob + 0.1, 0, 1)) == pytest.approx(0.1)


def test_ece_matches_brute_force():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(500), [0.0, 1.0, 0.1, 0.9999]])
    y = (rng.random(len(p)) < 0.4).astype(int)
    total = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        in_bin = (p >= lo) & ((p < hi) if b < 9 else (p <= hi))
        if in_bin.any():
            total += in_bin.sum() / len(p) * abs(p[in_bin].mean() - y[in_bin].mean())
    assert expected_calibration_error(y, p) == pytest.approx(total, rel=1e-9)


def test_lift_at_top():
    y_prob = np.arange(20)[::-1] / 20
    y_true = np.array([1, 1] + [0] * 8 + [1, 1] + [0] * 8)
    # top 10% = 2 best rows, both responders; base rate 4/20
    assert lift_at_top(y_true, y_prob) == pytest.approx(1.0 / 0.2)
    assert np.isnan(lift_at_top(np.zeros(5), np.ones(5)))


def test_lift_by_decile_matches_brute_force():
    rng = np.random.default_rng(3)
    for n in (10, 37, 200):
        p = rng.random(n).round(1)  # many ties: broken by row order
        y = (rng.random(n) < p).astype(int)
        y[0] = 1
        order = sorted(range(n), key=lambda i: (-p[i], i))
        expected = []
        for d in range(10):
            members = [order[r] for r in range(n) if r * 10 // n == d]
            expected.append(np.mean(y[members]) / y.mean())
        np.testing.assert_allclose(lift_by_decile(y, p), expected)
        assert lift_by_decile(y, p)[0] == pytest.approx(lift_at_top(y, p, 0.1))
    assert decile_of_rank(5).tolist() == [1, 3, 5, 7, 9]
    assert np.isnan(lift_by_decile(np.zeros(4), np.ones(4))).all()


def test_features_constant():
    assert MODEL_FEATURES[:-1] == FEATURES and MODEL_FEATURES[-1] == "is_never_ordered"


def test_log1p_counts_match_a_column_by_column_version():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 50, (40, len(MODEL_FEATURES)))
    x[::3] = np.nan
    x[1, :] = [-np.inf, np.inf] * (len(MODEL_FEATURES) // 2) + [np.inf] * (len(MODEL_FEATURES) % 2)
    expected = x.copy()
    for index, name in enumerate(MODEL_FEATURES):
        if name in LOG1P_FEATURES:
            expected[:, index] = np.log1p(np.maximum(x[:, index], 0.0))
    got = _log1p_counts(x)
    np.testing.assert_array_equal(got, expected)  # NaN in the same places, negatives kept
    assert got is not x and not np.shares_memory(got, x)
    assert 0 < sum(name in LOG1P_FEATURES for name in MODEL_FEATURES) < len(MODEL_FEATURES)


def test_model_pickles(sends, model):
    restored = pickle.loads(pickle.dumps(model))
    profiles = sends.drop(columns="user_id").rename(columns={"send_id": "user_id"}).head(50)
    pd.testing.assert_frame_equal(
        score_users(restored, profiles, CAMPAIGNS), score_users(model, profiles, CAMPAIGNS)
    )


def test_c_search_on_a_sample_above_cv_max_rows(sends, model, monkeypatch):
    from marketing import scoring

    monkeypatch.setattr(scoring, "CV_MAX_ROWS", 1_500)
    first = train_response_model(sends.drop(columns="true_probability"))
    again = train_response_model(sends.drop(columns="true_probability"))
    # Seeded: the same sample, so the same C and metrics; still a useful model.
    assert first.metrics == again.metrics
    assert first.metrics["c"] in scoring.C_GRID
    assert first.metrics["auc"] > model.metrics["auc"] - 0.02
    # The C search ran on the sample; the CV metrics differ from the full search's.
    assert first.metrics["cv_log_loss"] != model.metrics["cv_log_loss"]


def test_fits_use_a_seeded_sample_above_fit_max_rows(sends, model, monkeypatch):
    from marketing import scoring

    monkeypatch.setattr(scoring, "FIT_MAX_ROWS", 1_000)
    fitted_rows = _count_pipeline_fit_rows(monkeypatch)
    capped = train_response_model(sends.drop(columns="true_probability"))
    count = len(fitted_rows)
    # every fit (hold-out, walk-forward, final, control arm) on at most 1,000 rows ...
    assert fitted_rows and max(fitted_rows) == 1_000
    # ... the final one on exactly the seeded sample of all treated sends
    treated = _treated_sorted(sends.drop(columns="true_probability"))
    y = treated["has_responded"].to_numpy().astype("int64")
    rows = scoring.fit_rows(np.ones(len(y), dtype=bool), 7)
    assert len(rows) == 1_000 and len(np.unique(rows)) == 1_000
    expected = scoring.make_pipeline(capped.metrics["c"], 7).fit(
        scoring.feature_frame(treated.iloc[rows]), y[rows])
    np.testing.assert_array_equal(capped.pipeline.named_steps["model"].coef_,
                                  expected.named_steps["model"].coef_)
    assert len(fitted_rows) == count + 1  # the brute-force fit above, nothing else
    # the metrics still cover every test send, and the model is still useful
    assert capped.n_test == model.n_test == len(capped.test_probability)
    assert capped.metrics["auc"] > model.metrics["auc"] - 0.05
    assert capped.metrics["auc"] != model.metrics["auc"]


def test_campaign_probabilities_equal_predict_proba(sends, model):
    from marketing.scoring import campaign_probabilities, feature_frame

    users = sends.drop(columns="user_id").rename(columns={"send_id": "user_id"}).head(500)
    # known campaigns and channels, an unseen campaign (ignored by the one-hot) and channel
    pairs = [(1, "email"), (2, "meta_ads"), (3, "email"), (99, "sms")]
    got = campaign_probabilities(model.pipeline, users, model.categorical, pairs)
    for (campaign_id, channel), probability in zip(pairs, got, strict=True):
        x = feature_frame(users.assign(campaign_id=campaign_id, channel=channel),
                          model.categorical)
        want = model.pipeline.predict_proba(x)[:, 1]
        np.testing.assert_allclose(probability, want, rtol=0, atol=1e-12)
    assert not np.allclose(got[0], got[1])  # the campaign terms do change the scores
    # a feature frame built for another campaign (shared by the treated and control models
    # in score_users) gives the same probabilities, bit for bit
    other = feature_frame(users.assign(campaign_id=3, channel="email"), model.categorical)
    shared = campaign_probabilities(model.pipeline, users, model.categorical, pairs, other)
    for mine, theirs in zip(shared, got, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert campaign_probabilities(model.pipeline, users.head(0), model.categorical, pairs[:1])[
        0
    ].shape == (0,)


def test_feature_frame_formats_categories_as_strings_with_nulls_unknown():
    from marketing.scoring import MISSING_CATEGORY, feature_frame

    frame = pd.DataFrame({f: np.arange(5, dtype="float64") for f in FEATURES}).assign(
        country=pd.array(["DE", None, "FR", "DE", None], dtype="str"),
        channel=pd.Series(["email", "sms", None, "email", "sms"], dtype="object"),
        campaign_id=pd.array([3, 12, None, 3, 7], dtype="Int64"),
    )
    got = feature_frame(frame)
    unknown = MISSING_CATEGORY
    assert got["country"].tolist() == ["DE", unknown, "FR", "DE", unknown]
    assert got["channel"].tolist() == ["email", "sms", unknown, "email", "sms"]
    assert got["campaign_id"].tolist() == ["3", "12", unknown, "3", "7"]
    # what one-hot encoding sees is what str() of each value gives, row by row
    for column in ("country", "channel", "campaign_id"):
        values = frame[column].astype("object")
        want = [unknown if pd.isna(v) else str(v) for v in values]
        assert got[column].tolist() == want
    assert feature_frame(frame.head(0))["campaign_id"].tolist() == []
