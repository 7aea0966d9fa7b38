"""Fitted models on disk: ``<models_dir>/<model>/<YYYY-MM-DD>/`` with their library versions.

Each saved run holds ``model.joblib`` (the fitted object) and ``model_card.json`` (metrics,
drivers, sizes and ``library_versions``: python, scikit-learn, numpy, pandas). A pickle
loaded under other library versions can predict silently wrong numbers, so
:func:`load_model` reads the card first and refuses a mismatch with :class:`ModelVersionError`
before unpickling anything. Only load folders this pipeline wrote: joblib files are pickles.

A card may also carry a ``training_fingerprint`` (:func:`frame_fingerprint` of the training
rows, the training parameters and the library versions): training is deterministic, so a
later date whose fingerprint equals the newest earlier run's can load that fit instead of
repeating it (:func:`same_training_before`) and get the very same model.

With a refit cadence of N days (``Settings.model_refit_days``) a card carries a
``settings_key`` (:func:`settings_key`: the fit's parameters and library versions) and
:func:`recent_fit` finds the newest fit of the N - 1 days before a date that a run may reuse;
:func:`reuse_recent_fit` loads it for a step (the one way every step reuses a fit).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn

from marketing.run_folders import dated_folders

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"


class ModelVersionError(RuntimeError):
    """A saved model was written under library versions other than the running ones."""


def library_versions() -> dict[str, str]:
    """Versions that must match for a saved model to be loaded."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def save_model(folder: Path, model: object, card: dict) -> Path:
    """Write ``model`` and ``card`` (plus ``library_versions``) into ``folder``.

    Files are written to temporary names and renamed, so a crash never leaves a card that
    describes a half-written model. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = {**card, "library_versions": library_versions()}
    tmp_model = folder / f".{MODEL_FILE}.tmp"
    tmp_card = folder / f".{CARD_FILE}.tmp"
    joblib.dump(model, tmp_model)
    tmp_card.write_text(json.dumps(card, indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp_model.replace(folder / MODEL_FILE)
    tmp_card.replace(folder / CARD_FILE)
    logger.info("saved model to %s", folder)
    return folder


def read_card(folder: Path) -> dict:
    """The model card of a saved run (raises ``FileNotFoundError`` naming the file)."""
    path = Path(folder) / CARD_FILE
    if not path.exists():
        raise FileNotFoundError(f"no model card at {path}")
    return json.loads(path.read_text())


def load_model(folder: Path) -> tuple[object, dict]:
    """Load ``(model, card)`` from ``folder``, refusing other library versions.

    Raises
    ------
    ModelVersionError
        If any of :func:`library_versions` differs from the saved ones (naming each).
    FileNotFoundError
        If the card or the model file is missing.
    """
    folder = Path(folder)
    card = read_card(folder)
    saved = card.get("library_versions") or {}
    running = library_versions()
    differences = [
        f"{name} {saved.get(name, 'unknown')} (running {version})"
        for name, version in running.items()
        if saved.get(name) != version
    ]
    if differences:
        raise ModelVersionError(
            f"refusing to load the model in {folder}: it was saved under "
            + ", ".join(differences)
            + "; retrain it under the running versions"
        )
    path = folder / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    return joblib.load(path), card


def frame_fingerprint(frame: pd.DataFrame, **params: object) -> str:
    """Hex SHA-256 of a frame's columns, dtypes and values, ``params`` and library versions.

    Row order counts (callers read their training rows in a fixed order); the index does not.
    Values are hashed per row with ``pandas.util.hash_pandas_object`` (64 bits a row).
    """
    digest = hashlib.sha256()
    header = {
        "columns": [str(c) for c in frame.columns],
        "dtypes": [str(t) for t in frame.dtypes],
        "rows": len(frame),
        "params": params,
        "library_versions": library_versions(),
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def settings_key(**params: object) -> str:
    """Hex SHA-256 of a fit's parameters and the library versions: two fits with the same key
    were made the same way (on possibly different data)."""
    header = {"params": params, "library_versions": library_versions()}
    return hashlib.sha256(
        json.dumps(header, sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()


def recent_fit(model_dir: Path, as_of: date, refit_days: int, key: str) -> Path | None:
    """The newest fit a run for ``as_of`` may reuse under a refit cadence of ``refit_days``.

    That is the newest ``<model_dir>/<YYYY-MM-DD>/`` dated in
    ``[as_of - (refit_days - 1) days, as_of)`` whose card's ``settings_key`` equals ``key``.
    Never a later fit (point in time), never D's own folder (re-running D repeats D's
    decision), never an older one (a fit is at most ``refit_days - 1`` days old when used).
    ``refit_days == 1`` always returns None: every date fits its own models.
    """
    if refit_days < 1:
        raise ValueError(f"refit_days must be >= 1, got {refit_days}")
    folder = latest_run_before(model_dir, as_of)
    if folder is None or (as_of - date.fromisoformat(folder.name)).days >= refit_days:
        return None
    return folder if read_card(folder).get("settings_key") == key else None


@dataclass(frozen=True)
class RecentFit:
    """A fit loaded for reuse: the model, its card, the date it was made and its age on D."""

    model: object
    card: dict
    fit_date: date
    age_days: int


def reuse_recent_fit(model_dir: Path, as_of: date, refit_days: int, key: str,
                     accept: Callable[[RecentFit], bool] | None = None) -> RecentFit | None:
    """Load the fit D reuses under a refit cadence (:func:`recent_fit`), or None.

    ``accept`` may still refuse the loaded fit (e.g. its features no longer match D's
    data); D then fits its own. When the fit is reused, what an earlier run of D saved in
    ``<model_dir>/<as_of>/`` is removed (:func:`remove_run`), so later dates never take it
    for D's fit.
    """
    folder = recent_fit(model_dir, as_of, refit_days, key)
    if folder is None:
        return None
    model, card = load_model(folder)
    fit_date = date.fromisoformat(folder.name)
    fit = RecentFit(model=model, card=card, fit_date=fit_date,
                    age_days=(as_of - fit_date).days)
    if accept is not None and not accept(fit):
        return None
    remove_run(model_dir, as_of)
    logger.info("refit cadence %d days: %s reuses the fit of %s (%d days old)", refit_days,
                Path(model_dir).name, fit_date, fit.age_days)
    return fit


def remove_run(model_dir: Path, as_of: date) -> None:
    """Delete ``<model_dir>/<as_of>/`` if present: a re-run of D that reuses an earlier fit
    replaces what an earlier run of D saved, so later dates do not take it for D's fit."""
    folder = Path(model_dir) / as_of.isoformat()
    if folder.is_dir():
        shutil.rmtree(folder)
        logger.info("removed %s (D now reuses an earlier fit)", folder)


def same_training_before(model_dir: Path, as_of: date, fingerprint: str) -> Path | None:
    """The newest run strictly before ``as_of`` (:func:`latest_run_before`) if its card
    carries ``fingerprint``, else None."""
    folder = latest_run_before(model_dir, as_of)
    if folder is None or read_card(folder).get("training_fingerprint") != fingerprint:
        return None
    return folder


def latest_run_before(model_dir: Path, as_of: date) -> Path | None:
    """The newest ``<model_dir>/<YYYY-MM-DD>/`` strictly before ``as_of`` holding a model.

    A backfill of D must not use a model trained on later data, so later folders are never
    returned. Folders whose name is not a date are ignored.
    """
    candidates = [
        (day, child) for day, child in dated_folders(model_dir).items()
        if day < as_of and (child / MODEL_FILE).exists() and (child / CARD_FILE).exists()
    ]
    return max(candidates)[1] if candidates else None
