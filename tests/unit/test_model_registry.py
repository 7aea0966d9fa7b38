"""Saved models carry library versions; loading under other versions is refused."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from marketing import model_registry
from marketing.model_registry import (
    ModelVersionError,
    frame_fingerprint,
    latest_run_before,
    library_versions,
    load_model,
    same_training_before,
    save_model,
)


@pytest.fixture
def fitted():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    return LogisticRegression().fit(x, [0, 0, 1, 1])


def test_round_trip_with_versions(tmp_path, fitted):
    folder = save_model(tmp_path / "response" / "2026-09-30", fitted, {"metrics": {"auc": 0.8}})
    card = json.loads((folder / "model_card.json").read_text())
    assert card["library_versions"] == library_versions()
    assert set(card["library_versions"]) == {"python", "scikit-learn", "numpy", "pandas"}
    assert card["metrics"] == {"auc": 0.8}
    model, loaded_card = load_model(folder)
    np.testing.assert_allclose(model.predict_proba([[1.5]]), fitted.predict_proba([[1.5]]))
    assert loaded_card == card
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize("library", ["scikit-learn", "numpy", "pandas", "python"])
def test_other_versions_are_refused(tmp_path, fitted, library):
    folder = save_model(tmp_path / "m", fitted, {})
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text())
    card["library_versions"][library] = "0.0.1"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelVersionError, match=rf"{library} 0\.0\.1 \(running "):
        load_model(folder)


def test_refused_before_unpickling(tmp_path, fitted, monkeypatch):
    folder = save_model(tmp_path / "m", fitted, {})
    (folder / "model.joblib").write_bytes(b"not a pickle")
    monkeypatch.setattr(model_registry, "library_versions",
                        lambda: {**library_versions(), "numpy": "9.9"})
    with pytest.raises(ModelVersionError, match="numpy"):
        load_model(folder)


def test_missing_files(tmp_path, fitted):
    with pytest.raises(FileNotFoundError, match="no model card"):
        load_model(tmp_path)
    folder = save_model(tmp_path / "m", fitted, {})
    (folder / "model.joblib").unlink()
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(folder)


def test_latest_run_before_is_strictly_earlier(tmp_path, fitted):
    root = tmp_path / "response"
    assert latest_run_before(root, date(2026, 9, 30)) is None
    for day in ("2026-09-01", "2026-09-20", "2026-09-30", "2026-10-05"):
        save_model(root / day, fitted, {})
    (root / "notes").mkdir()
    (root / "2026-09-25").mkdir()  # no model inside: ignored
    assert latest_run_before(root, date(2026, 9, 30)).name == "2026-09-20"
    assert latest_run_before(root, date(2026, 9, 21)).name == "2026-09-20"
    assert latest_run_before(root, date(2026, 9, 20)).name == "2026-09-01"
    assert latest_run_before(root, date(2026, 9, 1)) is None


def test_frame_fingerprint_follows_values_order_columns_and_params():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    same = frame_fingerprint(frame.copy(), seed=7)
    assert frame_fingerprint(frame.set_axis([5, 6, 7]), seed=7) == same  # index ignored
    changed = frame.copy()
    changed.loc[2, "a"] = 4
    others = [
        frame_fingerprint(changed, seed=7),
        frame_fingerprint(frame.iloc[::-1], seed=7),
        frame_fingerprint(frame.rename(columns={"b": "c"}), seed=7),
        frame_fingerprint(frame.astype({"a": "float64"}), seed=7),
        frame_fingerprint(frame, seed=8),
        frame_fingerprint(frame.iloc[:2], seed=7),
    ]
    assert len({same, *others}) == len(others) + 1


def test_same_training_before_needs_the_newest_earlier_run_to_match(tmp_path, fitted):
    root = tmp_path / "response"
    save_model(root / "2026-09-28", fitted, {"training_fingerprint": "a"})
    save_model(root / "2026-09-29", fitted, {"training_fingerprint": "b"})
    save_model(root / "2026-09-30", fitted, {"training_fingerprint": "c"})
    assert same_training_before(root, date(2026, 9, 30), "b") == root / "2026-09-29"
    assert same_training_before(root, date(2026, 9, 30), "a") is None  # not the newest
    assert same_training_before(root, date(2026, 9, 29), "b") is None  # not strictly earlier
    save_model(root / "2026-09-27", fitted, {})
    assert same_training_before(root, date(2026, 9, 28), "x") is None  # no fingerprint


def test_settings_key_covers_params_and_versions(monkeypatch):
    key = model_registry.settings_key(model="segments", random_state=7)
    assert len(key) == 64
    assert key == model_registry.settings_key(random_state=7, model="segments")
    assert key != model_registry.settings_key(model="segments", random_state=8)
    monkeypatch.setattr(model_registry, "library_versions", lambda: {"scikit-learn": "0.1"})
    assert key != model_registry.settings_key(model="segments", random_state=7)


def test_recent_fit_is_the_newest_earlier_fit_younger_than_the_cadence(tmp_path, fitted):
    root = tmp_path / "segments"
    save_model(root / "2026-09-20", fitted, {"settings_key": "k"})
    save_model(root / "2026-09-24", fitted, {"settings_key": "k"})
    recent = model_registry.recent_fit
    assert recent(root, date(2026, 9, 25), 7, "k") == root / "2026-09-24"
    assert recent(root, date(2026, 9, 30), 7, "k") == root / "2026-09-24"  # 6 days old
    assert recent(root, date(2026, 10, 1), 7, "k") is None  # 7 days old: refit
    assert recent(root, date(2026, 9, 24), 7, "k") == root / "2026-09-20"  # never D's own
    assert recent(root, date(2026, 9, 22), 7, "k") == root / "2026-09-20"  # never a later one
    assert recent(root, date(2026, 9, 20), 7, "k") is None
    assert recent(root, date(2026, 9, 25), 1, "k") is None  # cadence 1: always refit
    assert recent(root, date(2026, 9, 25), 7, "other settings") is None  # newest must match
    assert recent(tmp_path / "none", date(2026, 9, 25), 7, "k") is None
    with pytest.raises(ValueError, match="refit_days must be >= 1"):
        recent(root, date(2026, 9, 25), 0, "k")


def test_reuse_recent_fit_loads_it_and_drops_what_d_saved_before(tmp_path, fitted):
    root = tmp_path / "recommendations"
    save_model(root / "2026-09-24", fitted, {"settings_key": "k", "metrics": {"hr": 0.5}})
    save_model(root / "2026-09-26", fitted, {"settings_key": "k"})  # an earlier run of D
    reuse = model_registry.reuse_recent_fit
    refused = reuse(root, date(2026, 9, 26), 7, "k", accept=lambda fit: False)
    assert refused is None and (root / "2026-09-26").is_dir()  # D fits: its folder stays
    fit = reuse(root, date(2026, 9, 26), 7, "k",
                accept=lambda fit: fit.card["metrics"] == {"hr": 0.5})
    assert (fit.fit_date, fit.age_days) == (date(2026, 9, 24), 2)
    np.testing.assert_array_equal(fit.model.coef_, fitted.coef_)
    assert not (root / "2026-09-26").exists()
    assert reuse(root, date(2026, 10, 1), 7, "k") is None  # 7 days old
    assert reuse(root, date(2026, 9, 26), 7, "other settings") is None
