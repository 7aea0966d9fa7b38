"""Stable segments: ids and names survive a day with unchanged behaviour; hierarchy; Ward.

The pipeline-level tests write a tiny ``marts.user_profiles`` into a temporary warehouse and
run :func:`marketing.pipeline.build_segments` on consecutive dates, as the DAG would.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import linkage
from sklearn.metrics import adjusted_rand_score
from test_segmentation import make_profiles

from marketing import warehouse
from marketing.pipeline import build_segments
from marketing.segmentation import (
    STATUS_KEPT,
    STATUS_NEW,
    STATUS_VANISHED,
    align_segment_ids,
    fit_segments,
    parent_groups,
    weighted_ward_linkage,
)
from marketing.settings import Settings

D1, D2, D3 = date(2024, 3, 10), date(2024, 3, 11), date(2024, 3, 12)


def next_day(profiles: pd.DataFrame, seed: int, jitter_users: float = 0.05) -> pd.DataFrame:
    """The same users one day later: one day older, and a few with a little more activity."""
    rng = np.random.default_rng(seed)
    later = profiles.copy()
    later["tenure_days"] = later["tenure_days"] + 1
    later["recency_days"] = later["recency_days"] + 1
    touched = rng.random(len(later)) < jitter_users
    later.loc[touched, "count_views_90d"] += 1
    later.loc[touched, "count_sessions_30d"] += 1
    return later


def _segment(profiles: pd.DataFrame, previous: pd.DataFrame | None = None):
    result = fit_segments(profiles, k_min=3, k_max=8, sample_size=200,
                          prefer_k=None if previous is None else len(previous))
    if previous is None:
        return result
    return align_segment_ids(result, previous, max_distance=1.0)


@pytest.fixture(scope="module")
def day1_profiles() -> pd.DataFrame:
    return make_profiles().drop(columns="persona")


@pytest.fixture(scope="module")
def day1(day1_profiles):
    return _segment(day1_profiles)


def test_unchanged_behaviour_keeps_ids_and_names(day1_profiles, day1):
    # ids renumbered on day 1 (as after many runs) so a fresh 1..k could not pass by luck
    previous = day1.segments.assign(segment_id=day1.segments["segment_id"] + 40)
    before = day1.assignments.assign(segment_id=day1.assignments["segment_id"] + 40)
    day2 = _segment(next_day(day1_profiles, seed=1), previous)
    both = day2.assignments.merge(before, on="user_id", suffixes=("", "_before"))
    assert (both["segment_id"] == both["segment_id_before"]).mean() >= 0.95
    assert set(day2.changes["status"]) == {STATUS_KEPT}
    names_before = dict(zip(previous["segment_id"], previous["segment_name"], strict=True))
    names_after = dict(zip(day2.segments["segment_id"], day2.segments["segment_name"],
                           strict=True))
    assert names_after == names_before
    assert (day2.changes["distance"] < 0.5).all()


def test_names_stay_with_ids_even_when_today_would_name_differently(day1_profiles, day1):
    previous = day1.segments.assign(segment_name=[f"Named {i}" for i in range(day1.k)])
    aligned = _segment(day1_profiles, previous)
    assert aligned.segments["segment_name"].tolist() == previous["segment_name"].tolist()
    lookup = dict(zip(aligned.segments["segment_id"], aligned.segments["segment_name"],
                      strict=True))
    assert (aligned.assignments["segment_name"]
            == aligned.assignments["segment_id"].map(lookup)).all()


def test_new_and_vanished_segments_are_recorded(day1_profiles, day1):
    # a previous run that had a segment far from anything today, and lacked one of today's
    far = day1.segments.iloc[[0]].assign(segment_id=99, segment_name="Gone")
    # shares are never winsorised, so this centroid stays far away after the transform
    for column in [c for c in far.columns if c.startswith("centroid__share_")]:
        far[column] = 1.0
    previous = pd.concat([day1.segments.iloc[1:], far], ignore_index=True)
    aligned = align_segment_ids(day1, previous, max_distance=1.0)
    changes = aligned.changes.set_index("status")
    assert changes.loc[STATUS_VANISHED, "segment_id"] == 99
    assert changes.loc[STATUS_VANISHED, "segment_name"] == "Gone"
    new = aligned.changes[aligned.changes["status"] == STATUS_NEW]
    assert new["segment_id"].tolist() == [100]  # above every previous id
    kept = aligned.changes[aligned.changes["status"] == STATUS_KEPT]
    assert sorted(kept["segment_id"]) == sorted(day1.segments["segment_id"].iloc[1:])
    assert aligned.segments["segment_name"].is_unique
    # without a threshold the far one is matched, nothing is new
    loose = align_segment_ids(day1, previous, max_distance=None)
    assert STATUS_NEW not in set(loose.changes["status"])
    with pytest.raises(ValueError, match="max_distance"):
        align_segment_ids(day1, previous, max_distance=0)


def test_alignment_reorders_centroids_and_hierarchy_consistently(day1_profiles, day1):
    previous = day1.segments.assign(segment_id=day1.segments["segment_id"][::-1].to_numpy())
    aligned = align_segment_ids(day1, previous)
    x = aligned.features.transform(day1_profiles.sort_values("user_id"))
    dist = ((x[:, None, :] - aligned.centroids[None, :, :]) ** 2).sum(axis=2)
    nearest = aligned.segments["segment_id"].to_numpy()[dist.argmin(axis=1)]
    assert (nearest == aligned.assignments["segment_id"].to_numpy()).all()
    # same parent grouping (as sets of segments) before and after renumbering
    def groups(result):
        ids = result.segments["segment_id"].to_numpy()
        renamed = dict(zip(ids, result.segments["size"], strict=True))
        return sorted(
            sorted(renamed[i] for i in ids[result.segments["parent_segment_id"] == p])
            for p in set(result.segments["parent_segment_id"])
        )
    assert groups(aligned) == groups(day1)


def test_weighted_ward_equals_scipy_on_unit_sizes_and_weights_matter():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(7, 3))
    ours = weighted_ward_linkage(points, np.ones(7))
    np.testing.assert_allclose(ours[:, 2], linkage(points, "ward")[:, 2])
    # brute force: a cluster of size n at c is n coincident points -> plain Ward on those
    sizes = np.array([3, 1, 2, 1, 1, 2, 1])
    expanded = np.repeat(points, sizes, axis=0) + rng.normal(scale=1e-9, size=(sizes.sum(), 3))
    heights = linkage(expanded, "ward")[:, 2]
    np.testing.assert_allclose(weighted_ward_linkage(points, sizes)[:, 2],
                               heights[-6:], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="positive size"):
        weighted_ward_linkage(points, np.zeros(7))


def test_parent_groups_cut_at_largest_gap():
    # two tight pairs far apart plus a middle point: 2 groups
    points = np.array([[0, 0], [0, 0.1], [10, 10], [10, 10.1], [10, 11.0]])
    tree = weighted_ward_linkage(points, np.ones(5))
    assert parent_groups(tree, 5).tolist() == [0, 0, 1, 1, 1]
    assert parent_groups(np.empty((0, 4)), 1).tolist() == [0]


def test_segments_carry_parents(day1):
    segments = day1.segments
    assert {"parent_segment_id", "parent_name"} <= set(segments.columns)
    for parent, members in segments.groupby("parent_segment_id"):
        assert members["segment_id"].min() == parent
        assert members["parent_name"].nunique() == 1
    assert 2 <= segments["parent_segment_id"].nunique() <= max(2, day1.k // 2)
    assert day1.linkage.shape == (day1.k - 1, 4)


def test_ward_as_primary_recovers_personas(day1_profiles):
    personas = make_profiles()[["user_id", "persona"]]
    ward = fit_segments(day1_profiles, k_min=3, k_max=8, sample_size=200, algorithm="ward",
                        ward_sample_size=150)
    merged = ward.assignments.merge(personas, on="user_id")
    assert adjusted_rand_score(merged["persona"], merged["segment_id"]) >= 0.9
    assert ward.k == 5
    again = fit_segments(day1_profiles.sample(frac=1.0, random_state=2), k_min=3, k_max=8,
                         sample_size=200, algorithm="ward", ward_sample_size=150)
    pd.testing.assert_frame_equal(again.assignments, ward.assignments)
    with pytest.raises(ValueError, match="algorithm"):
        fit_segments(day1_profiles, algorithm="dbscan")


def test_previous_k_is_kept_within_stickiness(day1_profiles, day1):
    selection = day1.model_selection.set_index("k")["silhouette"]
    other = int(selection.drop(day1.k).idxmax())
    gap = float(selection[day1.k] - selection[other])
    sticky = fit_segments(day1_profiles, k_min=3, k_max=8, sample_size=200, prefer_k=other,
                          k_stickiness=gap + 1e-9)
    assert sticky.k == other
    strict = fit_segments(day1_profiles, k_min=3, k_max=8, sample_size=200, prefer_k=other,
                          k_stickiness=gap / 2)
    assert strict.k == day1.k


# --- the pipeline step on consecutive days ------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_runs(tmp_path_factory, day1_profiles):
    data_dir = tmp_path_factory.mktemp("segments_pipeline")
    settings = Settings(data_dir=data_dir, warehouse_path=data_dir / "warehouse.duckdb",
                        analytics_path=data_dir / "analytics.duckdb",
                        segment_k_range=(3, 8), silhouette_sample_size=200)
    day2_profiles = next_day(day1_profiles, seed=1)
    day3_profiles = next_day(day2_profiles, seed=2)
    with warehouse.connect(settings.warehouse_path) as con:
        for day, frame in ((D1, day1_profiles), (D2, day2_profiles), (D3, day3_profiles)):
            warehouse.replace_partition(con, "marts.user_profiles", frame, day)
    outputs = {day: build_segments(day, settings) for day in (D1, D3, D2)}
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        tables = {
            table: warehouse.read_frame(con, f"select * from ml.{table} order by all")
            for table in ("user_segments", "segments", "segment_changes", "model_runs")
        }
    for frame in tables.values():
        for column in ("as_of_date", "previous_as_of_date"):
            if column in frame.columns:
                frame[column] = pd.to_datetime(frame[column]).dt.date
    return settings, outputs, tables


def test_pipeline_keeps_ids_across_days(pipeline_runs):
    settings, outputs, tables = pipeline_runs
    users = tables["user_segments"]
    wide = users.pivot(index="user_id", columns="as_of_date", values="segment_id")
    assert (wide[D1] == wide[D2]).mean() >= 0.95
    assert (wide[D1] == wide[D3]).mean() >= 0.95
    segments = tables["segments"]
    names = segments.pivot(index="segment_id", columns="as_of_date", values="segment_name")
    assert (names[D1] == names[D2]).all() and (names[D1] == names[D3]).all()
    assert outputs[D1]["new"] == outputs[D1]["segments"]
    assert outputs[D1]["share_users_kept_segment"] is None
    assert outputs[D2]["kept"] == outputs[D2]["segments"]
    assert outputs[D2]["share_users_kept_segment"] >= 0.95
    changes = tables["segment_changes"]
    # D3 ran before D2 existed: it compared with D1; D2 (a backfill) compares with D1 too
    assert set(changes.loc[changes["as_of_date"] == D3, "previous_as_of_date"]) == {D1}
    assert set(changes.loc[changes["as_of_date"] == D2, "previous_as_of_date"]) == {D1}
    runs = tables["model_runs"]
    kept = runs[(runs["metric"] == "share_users_kept_segment") & (runs["as_of_date"] == D2)]
    assert kept["value"].iloc[0] == pytest.approx(outputs[D2]["share_users_kept_segment"],
                                                  abs=1e-4)


def test_pipeline_writes_the_picture_and_reruns_identically(pipeline_runs):
    settings, outputs, tables = pipeline_runs
    picture = settings.reports_dir / D2.isoformat() / "segments.png"
    assert outputs[D2]["picture"] == str(picture)
    first = picture.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and len(first) > 20_000
    again = build_segments(D2, settings)
    assert again == outputs[D2]
    assert picture.read_bytes() == first
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        rerun = warehouse.read_frame(con, "select * from ml.user_segments order by all")
    rerun["as_of_date"] = pd.to_datetime(rerun["as_of_date"]).dt.date
    pd.testing.assert_frame_equal(rerun, tables["user_segments"])
