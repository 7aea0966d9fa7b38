"""Refit cadence (``Settings.model_refit_days``): the segments step reuses a recent fit.

``marketing.segment_model`` applies a saved segmentation to a later date's profiles; the
step fits on the first date of a cycle and assigns users on the dates after it. The scoring
models' cadence is tested on a generated shop in ``test_scoring_quality``.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from test_segment_stability import next_day
from test_segmentation import make_profiles

from marketing import warehouse
from marketing.pipeline import build_segments
from marketing.segment_model import assign_segments, segment_model
from marketing.segmentation import align_segment_ids, fit_segments, nearest
from marketing.settings import Settings

D1 = date(2024, 3, 10)
DAYS = [D1 + timedelta(days=i) for i in range(4)]


@pytest.fixture(scope="module")
def profiles() -> pd.DataFrame:
    return make_profiles().drop(columns="persona")


@pytest.fixture(scope="module")
def fitted(profiles):
    return fit_segments(profiles, k_min=3, k_max=8, sample_size=200)


def test_assigning_the_fit_to_its_own_profiles_reproduces_the_fit(profiles, fitted):
    again = assign_segments(segment_model(fitted), profiles.sample(frac=1.0, random_state=3),
                            sample_size=200)
    pd.testing.assert_frame_equal(again.assignments, fitted.assignments)
    pd.testing.assert_frame_equal(again.segments, fitted.segments)
    pd.testing.assert_frame_equal(again.model_selection, fitted.model_selection)
    assert again.silhouette == pytest.approx(fitted.silhouette, abs=1e-12)
    np.testing.assert_array_equal(again.centroids, fitted.centroids)


def test_later_profiles_go_to_the_nearest_fitted_centroid(profiles, fitted):
    later = next_day(next_day(profiles, seed=1), seed=2)
    result = assign_segments(segment_model(fitted), later, sample_size=200)
    brute = [
        int(np.argmin(((fitted.centroids - row) ** 2).sum(axis=1))) + 1
        for row in fitted.features.transform(later.sort_values("user_id"))
    ]
    assert result.assignments["segment_id"].tolist() == brute
    assert result.segments["size"].tolist() == np.bincount(brute, minlength=fitted.k + 1)[1:]\
        .tolist()
    assert result.segments["segment_name"].tolist() == fitted.segments["segment_name"].tolist()
    labels, _ = nearest(fitted.features.transform(later.sort_values("user_id")),
                         fitted.centroids)
    assert (labels + 1).tolist() == brute


def test_other_feature_columns_are_refused(profiles, fitted):
    model = segment_model(fitted)
    with_new_category = profiles.assign(share_garden=0.1)
    assert not model.fits(with_new_category)
    with pytest.raises(ValueError, match="refit the segments"):
        assign_segments(model, with_new_category)
    aligned = align_segment_ids(fitted, fitted.segments.assign(
        segment_id=fitted.segments["segment_id"] + 10))
    with pytest.raises(ValueError, match="before align_segment_ids"):
        segment_model(aligned)


def _run(tmp_path, profiles, refit_days: int, days=DAYS):
    settings = Settings(data_dir=tmp_path, warehouse_path=tmp_path / "warehouse.duckdb",
                        analytics_path=tmp_path / "analytics.duckdb", segment_k_range=(3, 8),
                        silhouette_sample_size=200, model_refit_days=refit_days)
    frames, frame = {}, profiles
    with warehouse.connect(settings.warehouse_path) as con:
        for i, day in enumerate(DAYS):
            frames[day] = frame
            warehouse.replace_partition(con, "marts.user_profiles", frame, day)
            frame = next_day(frame, seed=i + 1)
    outputs = {day: build_segments(day, settings) for day in days}
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        runs = warehouse.read_frame(
            con, "select as_of_date, value from ml.model_runs "
            "where model = 'segments' and metric = 'model_age_days' order by as_of_date")
        users = warehouse.read_frame(
            con, "select as_of_date, user_id, segment_id from ml.user_segments order by all")
    return settings, frames, outputs, runs, users


def test_cadence_fits_on_the_first_day_and_assigns_until_the_fit_is_n_days_old(
        tmp_path, profiles):
    settings, frames, outputs, runs, users = _run(tmp_path, profiles, refit_days=3)
    assert runs["value"].tolist() == [0.0, 1.0, 2.0, 0.0]
    fits = sorted(p.name for p in (settings.models_dir / "segments").iterdir())
    assert fits == [DAYS[0].isoformat(), DAYS[3].isoformat()]
    day1 = fit_segments(frames[DAYS[0]], k_min=3, k_max=8, sample_size=200)
    for day in DAYS[1:3]:
        expected = assign_segments(segment_model(day1), frames[day], sample_size=200)
        got = users[pd.to_datetime(users["as_of_date"]).dt.date == day]
        # ids carried over from day 1 (aligned), so compare the cut of users into groups
        pairs = set(zip(expected.assignments["segment_id"], got["segment_id"], strict=True))
        assert len(pairs) == expected.k == len({a for a, _ in pairs}) == len({b for _, b in pairs})
        assert outputs[day]["kept"] == expected.k and outputs[day]["new"] == 0
    # re-running a reused date repeats its decision and its outputs
    assert build_segments(DAYS[1], settings) == outputs[DAYS[1]]
    # a date fitted before (cadence 1) and re-run under the cadence drops its own fit
    daily = dataclasses.replace(settings, model_refit_days=1)
    build_segments(DAYS[2], daily)
    assert (settings.models_dir / "segments" / DAYS[2].isoformat()).is_dir()
    assert build_segments(DAYS[2], settings) == outputs[DAYS[2]]
    fits = sorted(p.name for p in (settings.models_dir / "segments").iterdir())
    assert fits == [DAYS[0].isoformat(), DAYS[3].isoformat()]


def test_cadence_one_fits_every_date(tmp_path, profiles):
    settings, _, _, runs, _ = _run(tmp_path, profiles, refit_days=1, days=DAYS[:2])
    assert runs["value"].tolist() == [0.0, 0.0]
    assert len(list((settings.models_dir / "segments").iterdir())) == 2


def test_refit_days_must_be_a_positive_integer(tmp_path, monkeypatch):
    monkeypatch.setenv("MARKETING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MARKETING_MODEL_REFIT_DAYS", "7")
    assert Settings.from_env().model_refit_days == 7
    for bad in ("0", "weekly", "-1"):
        monkeypatch.setenv("MARKETING_MODEL_REFIT_DAYS", bad)
        with pytest.raises(ValueError, match="MARKETING_MODEL_REFIT_DAYS must be an integer"):
            Settings.from_env()
    monkeypatch.delenv("MARKETING_MODEL_REFIT_DAYS")
    assert Settings.from_env().model_refit_days == 1
    with pytest.raises(ValueError, match="model_refit_days must be an integer >= 1"):
        dataclasses.replace(Settings.from_env(), model_refit_days=0)


def test_a_fit_without_silhouette_is_saved(tmp_path, profiles):
    """Identical users: no silhouette (NaN) for any k; the card stores null, not NaN."""
    same = pd.concat([profiles.iloc[[0]]] * 6, ignore_index=True).assign(user_id=range(1, 7))
    settings = Settings(data_dir=tmp_path, warehouse_path=tmp_path / "warehouse.duckdb",
                        analytics_path=tmp_path / "analytics.duckdb", segment_k_range=(2, 3),
                        silhouette_sample_size=6, model_refit_days=2)
    with warehouse.connect(settings.warehouse_path) as con:
        for day in DAYS[:2]:
            warehouse.replace_partition(con, "marts.user_profiles", same, day)
    first = build_segments(DAYS[0], settings)
    assert first["silhouette"] != first["silhouette"]  # NaN
    card = (settings.models_dir / "segments" / DAYS[0].isoformat() / "model_card.json")
    assert '"silhouette": null' in card.read_text()
    assert build_segments(DAYS[1], settings)["segments"] == first["segments"]
