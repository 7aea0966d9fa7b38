"""Segmentation: planted personas are recovered, named, and the fit is deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from marketing.segment_naming import DEFAULT_NAME, make_unique, name_segment
from marketing.segmentation import (
    CENTROID_PREFIX,
    FEATURE_SPEC,
    ProfileFeatures,
    align_segment_ids,
    fit_segments,
)

CATEGORIES = ("books", "electronics", "fashion", "home")

# persona -> (tenure range, recency range or None = never ordered, mean orders, order value,
#             mean sessions 90d, mean views 90d, category weights)
PERSONAS = {
    "vip": ((500, 900), (1, 15), 25, 150.0, 40, 150, (1, 20, 1, 1)),
    "lapsed": ((600, 1000), (250, 360), 3, 50.0, 1, 2, (5, 5, 5, 5)),
    "browser": ((200, 400), None, 0, 0.0, 30, 200, (1, 1, 20, 1)),
    "new": ((1, 10), None, 0, 0.0, 3, 8, (5, 5, 5, 5)),
    "regular": ((300, 600), (10, 40), 8, 60.0, 12, 40, (1, 1, 1, 20)),
}


def make_profiles(n_per_persona: int = 60, seed: int = 0) -> pd.DataFrame:
    """Synthetic ``user_profiles`` rows with a planted ``persona`` column."""
    rng = np.random.default_rng(seed)
    frames = []
    for persona, (tenure, recency, orders, aov, sessions, views, weights) in PERSONAS.items():
        n = n_per_persona
        n_orders = rng.poisson(orders, n) + (1 if recency is not None else 0)
        if recency is None:
            n_orders = np.zeros(n, dtype=np.int64)
        monetary = n_orders * aov * rng.lognormal(0.0, 0.2, n)
        views_90 = rng.poisson(views, n)
        purchases_90 = np.minimum(rng.poisson(max(orders, 0) / 2, n), views_90)
        shares = rng.dirichlet(np.asarray(weights, dtype=float), n)
        frame = pd.DataFrame({
            "persona": persona,
            "tenure_days": rng.integers(*tenure, n),
            "recency_days": (
                pd.array([pd.NA] * n, dtype="Int64") if recency is None
                else pd.array(rng.integers(*recency, n), dtype="Int64")
            ),
            "count_orders_lifetime": n_orders,
            "monetary_lifetime": monetary,
            "average_order_value": np.where(n_orders > 0, monetary / np.maximum(n_orders, 1),
                                            np.nan),
            "count_sessions_30d": rng.poisson(sessions / 3, n),
            "count_sessions_90d": rng.poisson(sessions, n),
            "count_views_30d": rng.poisson(views / 3, n),
            "count_views_90d": views_90,
            "count_carts_30d": rng.poisson(views / 30, n),
            "count_carts_90d": rng.poisson(views / 10, n),
            "count_purchases_30d": rng.poisson(orders / 6, n),
            "count_purchases_90d": purchases_90,
            "conversion_rate_90d": np.where(views_90 > 0, purchases_90 / np.maximum(views_90, 1),
                                            np.nan),
            "country": "DE",
            "is_email_opt_in": True,
            "is_ads_opt_in": False,
        })
        for category, column in zip(CATEGORIES, shares.T, strict=True):
            frame[f"share_{category}"] = column
        frames.append(frame)
    profiles = pd.concat(frames, ignore_index=True)
    # user ids shuffled so that persona order is not id order
    profiles.insert(0, "user_id", rng.permutation(len(profiles)).astype("int64") + 1000)
    return profiles


@pytest.fixture(scope="module")
def profiles() -> pd.DataFrame:
    return make_profiles()


@pytest.fixture(scope="module")
def result(profiles):
    return fit_segments(profiles.drop(columns="persona"), k_min=3, k_max=8, sample_size=200)


def _persona_of_segment(profiles, result) -> dict[str, str]:
    merged = result.assignments.merge(profiles[["user_id", "persona"]], on="user_id")
    top = merged.groupby("persona")["segment_name"].agg(lambda s: s.mode().iloc[0])
    return top.to_dict()


def test_recovers_planted_personas_and_k(profiles, result):
    merged = result.assignments.merge(profiles[["user_id", "persona"]], on="user_id")
    assert len(merged) == len(profiles)
    assert adjusted_rand_score(merged["persona"], merged["segment_id"]) >= 0.9
    assert result.k == 5
    best = result.model_selection.loc[result.model_selection["silhouette"].idxmax(), "k"]
    assert best == 5
    assert list(result.model_selection["k"]) == list(range(3, 9))
    assert result.silhouette == pytest.approx(result.model_selection["silhouette"].max())
    assert 0.0 < result.silhouette <= 1.0


def test_names_describe_personas(profiles, result):
    names = _persona_of_segment(profiles, result)
    assert names["vip"].startswith("High spend, frequent")
    assert "electronics" in names["vip"]
    assert names["lapsed"].startswith("Lapsed")
    assert "Browsers, rarely buy" in names["browser"]
    assert "fashion" in names["browser"]
    assert names["new"].startswith("New")
    assert "home" in names["regular"]
    assert result.segments["segment_name"].is_unique


def test_output_shapes_and_ids(profiles, result):
    segments, assignments = result.segments, result.assignments
    assert list(assignments.columns) == ["user_id", "segment_id", "segment_name"]
    assert assignments["user_id"].is_monotonic_increasing
    assert list(segments["segment_id"]) == list(range(1, result.k + 1))
    assert segments["size"].is_monotonic_decreasing
    assert segments["size"].sum() == len(profiles)
    counts = assignments["segment_id"].value_counts().sort_index()
    assert counts.tolist() == segments["size"].tolist()
    expected = [CENTROID_PREFIX + s.column for s in FEATURE_SPEC] + [
        f"{CENTROID_PREFIX}share_{c}" for c in CATEGORIES
    ]
    assert list(segments.columns[:5]) == [
        "segment_id", "segment_name", "size", "parent_segment_id", "parent_name"]
    assert list(segments.columns[5:]) == expected
    assert segments["segment_id"].dtype == "int64"
    # names in assignments agree with segments
    pairs = assignments[["segment_id", "segment_name"]].drop_duplicates().sort_values("segment_id")
    assert pairs["segment_name"].tolist() == segments["segment_name"].tolist()


def test_centroids_in_original_units(profiles, result):
    names = _persona_of_segment(profiles, result)
    seg = result.segments.set_index("segment_name")
    lapsed = seg.loc[names["lapsed"]]
    vip = seg.loc[names["vip"]]
    assert 250 <= lapsed[CENTROID_PREFIX + "recency_days"] <= 365
    assert vip[CENTROID_PREFIX + "recency_days"] < 20
    assert 15 <= vip[CENTROID_PREFIX + "count_orders_lifetime"] <= 35
    assert vip[CENTROID_PREFIX + "share_electronics"] > 0.6
    # browsers never ordered: recency at the cap
    assert seg.loc[names["browser"], CENTROID_PREFIX + "recency_days"] == pytest.approx(365)


def test_assignment_is_nearest_centroid_brute_force(profiles, result):
    x = result.features.transform(profiles.sort_values("user_id").drop(columns="persona"))
    dist = ((x[:, None, :] - result.centroids[None, :, :]) ** 2).sum(axis=2)
    nearest = result.segments["segment_id"].to_numpy()[dist.argmin(axis=1)]
    assert (nearest == result.assignments["segment_id"].to_numpy()).all()


def test_deterministic_and_order_independent(profiles, result):
    shuffled = profiles.drop(columns="persona").sample(frac=1.0, random_state=3)
    again = fit_segments(shuffled, k_min=3, k_max=8, sample_size=200)
    pd.testing.assert_frame_equal(again.assignments, result.assignments)
    pd.testing.assert_frame_equal(again.segments, result.segments)
    pd.testing.assert_frame_equal(again.model_selection, result.model_selection)


def test_feature_transforms_brute_force():
    frame = pd.DataFrame({
        "user_id": range(200),
        "recency_days": pd.array([None, 400] + list(range(198)), dtype="Int64"),
        "share_a": np.linspace(0.0, 1.0, 200),
    })
    for spec in FEATURE_SPEC:
        if spec.column != "recency_days":
            frame[spec.column] = np.arange(200, dtype=float) ** 2
    features = ProfileFeatures().fit(frame)
    x = features.transform(frame)
    names = features.feature_names_
    assert names[-1] == "share_a"
    # recency: NULL and 400 -> 365, then winsorised at the percentiles of the capped values
    recency = np.array([365.0, 365.0] + list(range(198)))
    low, high = np.percentile(recency, [1, 99])
    expected = np.clip(recency, low, high)
    expected = (expected - expected.mean()) / expected.std()
    np.testing.assert_allclose(x[:, names.index("recency_days")], expected)
    # money: log1p then winsorised
    money = np.log1p(np.arange(200, dtype=float) ** 2)
    low, high = np.percentile(money, [1, 99])
    expected = np.clip(money, low, high)
    expected = (expected - expected.mean()) / expected.std()
    np.testing.assert_allclose(x[:, names.index("monetary_lifetime")], expected)
    # shares as is (only standardised, never winsorised)
    share = frame["share_a"].to_numpy()
    np.testing.assert_allclose(x[:, -1], (share - share.mean()) / share.std())
    # round trip of points inside the winsorising bounds
    np.testing.assert_allclose(
        features.transform(pd.DataFrame(features.inverse_transform(x[50:60]), columns=names)),
        x[50:60],
    )


def test_few_users_caps_k():
    small = make_profiles(n_per_persona=1, seed=1).drop(columns="persona")
    result = fit_segments(small, k_min=3, k_max=10)
    assert result.model_selection["k"].max() == 4
    assert 2 <= result.k <= 4
    assert result.assignments["segment_name"].nunique() == result.k


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_users_raise(n):
    small = make_profiles(n_per_persona=1, seed=1).drop(columns="persona").head(n)
    with pytest.raises(ValueError, match="at least 3 users"):
        fit_segments(small)


def test_bad_input_raises(profiles):
    with pytest.raises(ValueError, match="missing feature columns"):
        fit_segments(profiles.drop(columns=["persona", "tenure_days"]))
    with pytest.raises(ValueError, match="unique"):
        fit_segments(pd.concat([profiles, profiles.head(1)]).drop(columns="persona"))
    with pytest.raises(ValueError, match="k_min must be <= k_max"):
        fit_segments(profiles, k_min=5, k_max=4)


def test_align_keeps_previous_ids(profiles, result):
    previous = result.segments.assign(segment_id=result.segments["segment_id"] * 10)
    aligned = align_segment_ids(result, previous)
    assert sorted(aligned.segments["segment_id"]) == sorted(previous["segment_id"])
    merged = aligned.assignments.merge(result.assignments, on="user_id")
    assert (merged["segment_id_x"] == merged["segment_id_y"] * 10).all()
    # a previous run with fewer segments: the unmatched one gets a fresh id
    aligned = align_segment_ids(result, previous.head(result.k - 1))
    assert aligned.segments["segment_id"].max() == previous["segment_id"].head(
        result.k - 1).max() + 1
    assert aligned.segments["segment_id"].is_unique
    assert align_segment_ids(result, previous.iloc[0:0]) is result


# --- naming -------------------------------------------------------------------------------


def test_name_segment_rules():
    z = pd.Series
    assert name_segment(z({"monetary_lifetime": 1.5, "count_orders_lifetime": 1.2,
                           "share_electronics": 2.0, "share_books": -0.3})) == (
        "High spend, frequent, electronics")
    assert name_segment(z({"recency_days": 1.8, "count_orders_lifetime": -0.2})) == "Lapsed"
    assert name_segment(z({"count_sessions_90d": 1.4, "conversion_rate_90d": -1.0,
                           "monetary_lifetime": -0.9})) == "Browsers, rarely buy"
    # never-ordered users sit at the recency cap but are not "lapsed"
    assert "Lapsed" not in name_segment(z({"recency_days": 1.0, "count_orders_lifetime": -1.0}))
    assert name_segment(z({"tenure_days": -2.0, "monetary_lifetime": -0.8})) == "New"
    assert name_segment(z({"recency_days": 0.1, "tenure_days": 0.2})) == DEFAULT_NAME
    assert name_segment(z({"count_sessions_90d": 0.9})) == "Engaged"
    assert name_segment(z({"monetary_lifetime": -0.9})) == "Low spend"
    # top two interests, strongest first; underscores become spaces
    assert name_segment(z({"share_home_garden": 0.9, "share_books": 1.5, "share_toys": 0.6})) == (
        "Books, home garden")
    assert name_segment(z({"recency_days": float("nan")})) == DEFAULT_NAME
    # activity dropping in the last 30 days among buyers: lapsing (not for non-buyers)
    assert name_segment(z({"count_sessions_30d": -1.5, "count_sessions_90d": -0.3,
                           "share_books": 1.6})) == "Lapsing, books"
    assert "Lapsing" not in name_segment(z({"count_sessions_30d": -1.5,
                                            "count_sessions_90d": -1.4}))
    assert "Lapsing" not in name_segment(z({"count_sessions_30d": -1.5,
                                            "count_orders_lifetime": -1.0}))
    with pytest.raises(ValueError, match="threshold"):
        name_segment(z({}), threshold=0)


def test_fit_on_a_sample_above_fit_max_users(profiles, result, monkeypatch):
    from marketing import segmentation

    monkeypatch.setattr(segmentation, "K_SEARCH_MAX_USERS", 150)
    monkeypatch.setattr(segmentation, "FIT_MAX_USERS", 200)
    final_fit_rows = []
    kmeans_from = segmentation._kmeans_from

    def recording(centers, n_rows, random_state):
        final_fit_rows.append(n_rows)
        return kmeans_from(centers, n_rows, random_state)

    monkeypatch.setattr(segmentation, "_kmeans_from", recording)
    users = profiles.drop(columns="persona")
    sampled = fit_segments(users, k_min=3, k_max=8, sample_size=200)
    # the final K-Means saw the 200-user sample; bounds and scaler come from it too ...
    assert final_fit_rows == [200] and len(users) == 300
    full = ProfileFeatures().fit(users.sort_values("user_id"))
    assert not np.array_equal(sampled.features.scaler_.mean_, full.scaler_.mean_)
    # ... yet every user is assigned, to the nearest final centroid
    merged = sampled.assignments.merge(profiles[["user_id", "persona"]], on="user_id")
    assert len(merged) == len(profiles)
    assert adjusted_rand_score(merged["persona"], merged["segment_id"]) >= 0.9
    x = sampled.features.transform(users.sort_values("user_id"))
    dist = ((x[:, None, :] - sampled.centroids[None, :, :]) ** 2).sum(axis=2)
    nearest = sampled.segments["segment_id"].to_numpy()[dist.argmin(axis=1)]
    assert (nearest == sampled.assignments["segment_id"].to_numpy()).all()
    assert sampled.segments["size"].sum() == len(profiles)
    again = fit_segments(users.sample(frac=1.0, random_state=5), k_min=3, k_max=8,
                         sample_size=200)
    pd.testing.assert_frame_equal(again.assignments, sampled.assignments)


def test_make_unique():
    assert make_unique(["A", "B", "A", "A", "A (2)"]) == ["A", "B", "A (2)", "A (3)", "A (2) (2)"]


def test_k_search_on_a_sample_above_k_search_max_users(profiles, result, monkeypatch):
    from marketing import segmentation

    monkeypatch.setattr(segmentation, "K_SEARCH_MAX_USERS", 150)
    users = profiles.drop(columns="persona")
    sampled = fit_segments(users, k_min=3, k_max=8, sample_size=200)
    assert sampled.k == result.k == 5
    merged = sampled.assignments.merge(profiles[["user_id", "persona"]], on="user_id")
    assert len(merged) == len(profiles)  # everyone is assigned, not only the search sample
    assert adjusted_rand_score(merged["persona"], merged["segment_id"]) >= 0.9
    # The chosen k is refitted on all users: assignments are the nearest final centroid.
    x = sampled.features.transform(users.sort_values("user_id"))
    dist = ((x[:, None, :] - sampled.centroids[None, :, :]) ** 2).sum(axis=2)
    nearest = sampled.segments["segment_id"].to_numpy()[dist.argmin(axis=1)]
    assert (nearest == sampled.assignments["segment_id"].to_numpy()).all()
    # Inertia is scaled from the sample to all users: same order as the full search's.
    ratio = sampled.model_selection["inertia"] / result.model_selection["inertia"]
    assert ratio.between(0.7, 1.3).all()
    again = fit_segments(users.sample(frac=1.0, random_state=5), k_min=3, k_max=8,
                         sample_size=200)
    pd.testing.assert_frame_equal(again.assignments, sampled.assignments)
