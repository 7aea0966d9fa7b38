"""Saved models carry library versions; loading under other versions is refused."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from marketing import model_registry
from marketing.model_registry import (
    ModelVersionError,
    latest_run_before,
    library_versions,
    load_model,
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
