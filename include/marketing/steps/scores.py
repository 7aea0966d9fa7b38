"""Step ``scores``: campaign response scores (with uplift), churn and 90-day spend."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

import pandas as pd

from marketing import model_registry, warehouse
from marketing.response_report import write_response_png
from marketing.scoring import (
    CV_MAX_ROWS,
    FIT_MAX_ROWS,
    TRAINING_COLUMNS,
    ResponseModel,
    score_users,
    train_purchase_model,
    train_response_model,
)
from marketing.settings import Settings
from marketing.steps.common import (
    as_date,
    metrics_frame,
    read_profiles,
    require_built_for,
    write_partition,
)
from marketing.steps.recommendations import neighbours_settings_key
from marketing.user_predictions import (
    TRAIN_MAX_ROWS,
    predict_users,
    train_user_prediction_models,
)

logger = logging.getLogger(__name__)


def score_campaigns(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Score every user for every campaign started by D; predict churn and 90-day spend.

    The response model trains on sends closed by D (``marts.fct_campaign_sends``). With too
    few responders/non-responders it keeps the newest earlier model (``data/models/response/``,
    strictly before D, refused under other library versions); with no campaign history at all
    it falls back to a purchase-in-the-next-30-days propensity (``marts.fct_user_snapshots``);
    with none of these it skips scoring and says why. Writes ``ml.campaign_scores``,
    ``ml.user_predictions``, ``ml.model_runs`` (models ``response``, ``user_predictions``), the
    model and card under ``models/response/<D>/`` and ``reports/<D>/response.png``.

    With ``settings.model_refit_days`` N > 1, both models are loaded from the newest fit of
    the N - 1 days before D (:func:`marketing.model_registry.recent_fit`) instead of being
    refitted; their metrics are that fit's, and ``model_age_days`` in ``ml.model_runs`` says
    how old it is (0 = fitted for D).
    """
    settings = settings or Settings.from_env()
    as_of = as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        # the training sends are read only if D fits (or looks for an identical fit)
        n_sends = con.execute("select count(*) from marts.fct_campaign_sends").fetchone()[0]
        profiles = read_profiles(con, as_of)
        campaigns = warehouse.read_frame(
            con,
            "select campaign_id, channel from staging.stg_shop__campaigns "
            "where starts_at < ?::DATE + interval 1 day order by campaign_id",
            [as_of],
        )
        # Churn/spend train on closed 90-day windows only; the purchase-in-30-days fallback
        # (no campaign history) needs every snapshot, so it reads them only when it runs.
        model, source, fingerprint = _response_model_for(
            as_of, n_sends,
            lambda: warehouse.read_frame(
                con, "select * from marts.fct_campaign_sends order by sent_at, send_id"),
            lambda: _read_snapshots(con, closed_only=False), settings,
        )
        predictions = _user_predictions(
            con, as_of, lambda: _read_snapshots(con, closed_only=True), profiles, settings
        )
        if model is None:
            scores = score_users_empty()
        else:
            scores = score_users(model, profiles, campaigns)
        write_partition(con, "ml.campaign_scores", scores, as_of)
        metrics = {} if model is None else dict(model.metrics)
        if model is not None:
            for row in model.campaign_metrics.itertuples(index=False):
                metrics[f"auc_campaign_{row.campaign_id}"] = row.auc
                metrics[f"n_sends_campaign_{row.campaign_id}"] = row.n_sends
            metrics["is_purchase_fallback"] = float(model.kind == "purchase_30d")
            metrics["is_last_good_model"] = float(source.startswith("last_good"))
            metrics["has_uplift"] = float(model.control_pipeline is not None)
            metrics["model_age_days"] = float(_model_age_days(as_of, source))
        write_partition(con, "ml.model_runs", metrics_frame("response", metrics), as_of,
                         {"model": "response"})
    if model is not None and (source == "trained" or source.startswith("same_training")):
        _save_model(settings, as_of, model, fingerprint)
    auc = None if model is None else model.metrics.get("auc")
    return {
        "scored": int(len(scores)),
        "model_source": source,
        "auc": None if auc is None or auc != auc else round(float(auc), 4),
        "user_predictions": predictions,
    }


def score_users_empty() -> pd.DataFrame:
    """An empty ``ml.campaign_scores`` frame (scoring skipped)."""
    return pd.DataFrame({
        "user_id": pd.Series(dtype="int64"), "campaign_id": pd.Series(dtype="int64"),
        "response_probability": pd.Series(dtype="float64"), "decile": pd.Series(dtype="int64"),
        "uplift": pd.Series(dtype="float64"),
    })


def _read_snapshots(con, closed_only: bool) -> pd.DataFrame:
    """``marts.fct_user_snapshots`` (only rows with a closed 90-day window if ``closed_only``)."""
    if not warehouse.table_exists(con, "marts.fct_user_snapshots"):
        return pd.DataFrame()
    where = "where churned_next_90d is not null " if closed_only else ""
    return warehouse.read_frame(
        con, f"select * from marts.fct_user_snapshots {where}order by snapshot_date, user_id"
    )


def training_marts_to_keep(as_of_date: date | str, settings: Settings | None = None) -> str:
    """The date A whose training marts a run for D can keep (dbt var ``training_marts_from``),
    or ``""`` when D must rebuild them.

    Under a refit cadence, D fits nothing from ``marts.fct_campaign_sends``,
    ``marts.fct_user_snapshots`` and ``marts.user_item_interactions_train`` when it reuses
    the response, the churn/spend and the item-neighbours fits, and those were made on the
    same date A: the marts built for A then stay as they are (minus users erased since),
    which saves rebuilding the costliest dbt models.
    """
    settings = settings or Settings.from_env()
    as_of = as_date(as_of_date)
    if settings.model_refit_days == 1:
        return ""
    response = model_registry.recent_fit(settings.models_dir / "response", as_of,
                                         settings.model_refit_days,
                                         _response_settings_key(settings))
    predictions = model_registry.recent_fit(settings.models_dir / "user_predictions", as_of,
                                            settings.model_refit_days,
                                            _predictions_settings_key(settings))
    neighbours = model_registry.recent_fit(settings.models_dir / "recommendations", as_of,
                                           settings.model_refit_days,
                                           neighbours_settings_key(settings))
    if response is None or any(fit is None or fit.name != response.name
                               for fit in (predictions, neighbours)):
        return ""
    return response.name


def _require_built_for(frame: pd.DataFrame, table: str, as_of: date) -> None:
    """A fit for D must read training rows built for D, not rows kept from an earlier date."""
    if "as_of_date" in frame.columns:
        require_built_for(pd.to_datetime(frame["as_of_date"]).dt.date.unique(), table, as_of,
                          use="fits a model on it")


def _predictions_settings_key(settings: Settings) -> str:
    return model_registry.settings_key(model="user_predictions",
                                       random_state=settings.random_state,
                                       max_rows=TRAIN_MAX_ROWS)


REUSED = "refit_cadence"
"""Model source prefix of a fit reused under ``Settings.model_refit_days``."""


def _model_age_days(as_of: date, source: str) -> int:
    """Days between D and the fit a model source names (0 for a fit made for D)."""
    _, _, day = source.partition(":")
    if source.startswith(("last_good", REUSED)) and day:
        return (as_of - date.fromisoformat(day)).days
    return 0


def _response_settings_key(settings: Settings) -> str:
    return model_registry.settings_key(
        model="response", random_state=settings.random_state,
        min_positives=settings.response_min_positives,
        min_negatives=settings.response_min_negatives,
        uplift_min_positives=settings.uplift_min_positives,
        cv_max_rows=CV_MAX_ROWS, fit_max_rows=FIT_MAX_ROWS,
    )


def _training_fingerprint(sends: pd.DataFrame, settings: Settings) -> str:
    """What the response model's fit depends on: the sends' training columns (not, e.g., the
    ``as_of_date`` every run stamps on them), the training settings and the sample sizes."""
    return model_registry.frame_fingerprint(
        sends[[c for c in TRAINING_COLUMNS if c in sends.columns]],
        random_state=settings.random_state,
        min_positives=settings.response_min_positives,
        min_negatives=settings.response_min_negatives,
        uplift_min_positives=settings.uplift_min_positives,
        cv_max_rows=CV_MAX_ROWS,
        fit_max_rows=FIT_MAX_ROWS,
    )


def _response_model_for(
    as_of: date, n_sends: int, load_sends: Callable[[], pd.DataFrame],
    load_snapshots: Callable[[], pd.DataFrame], settings: Settings,
) -> tuple[ResponseModel | None, str, str | None]:
    """Train, else fall back (purchase propensity / last good model), else (None, "none").

    Returns the model, its source and the :func:`_training_fingerprint` of the training
    sends (None when they were not read). ``load_sends`` (``n_sends`` rows) is called only
    when D does not reuse a fit under the refit cadence. With the sends read, a run before D
    trained on the very same rows and settings is loaded instead of refitting: same data,
    same deterministic fit (source ``same_training_data:<date>``). A day that closes no
    campaign window and erases no user with sends reuses the fit; a backfill or a fresh
    warehouse simply trains. The fingerprint covers the library versions, so a reused fit
    always loads.
    """
    minimums = {"min_positives": settings.response_min_positives,
                "min_negatives": settings.response_min_negatives}
    root = settings.models_dir / "response"
    # a purchase-propensity fallback is not reused once campaign history exists
    wanted = "campaign_response" if n_sends else "purchase_30d"
    recent = model_registry.reuse_recent_fit(root, as_of, settings.model_refit_days,
                                             _response_settings_key(settings),
                                             accept=lambda fit: fit.card.get("kind") == wanted)
    if recent is not None:
        (settings.reports_dir / as_of.isoformat() / "response.png").unlink(missing_ok=True)
        return recent.model, f"{REUSED}:{recent.fit_date.isoformat()}", None
    sends = load_sends() if n_sends else None
    fingerprint = None if sends is None else _training_fingerprint(sends, settings)
    same = (None if fingerprint is None
            else model_registry.same_training_before(root, as_of, fingerprint))
    if same is not None:
        model, _ = model_registry.load_model(same)
        logger.info("training sends unchanged since %s: reusing its fit", same.name)
        return model, f"same_training_data:{same.name}", fingerprint
    if sends is not None:
        _require_built_for(sends, "marts.fct_campaign_sends", as_of)
        model = train_response_model(sends, random_state=settings.random_state,
                                     uplift_min_positives=settings.uplift_min_positives,
                                     **minimums)
    else:
        logger.warning("no campaign history by %s: falling back to the purchase-in-30-days "
                       "propensity", as_of)
        snapshots = load_snapshots()
        _require_built_for(snapshots, "marts.fct_user_snapshots", as_of)
        model = (train_purchase_model(snapshots, random_state=settings.random_state, **minimums)
                 if len(snapshots) else None)
    if model is not None:
        return model, "trained", fingerprint
    folder = model_registry.latest_run_before(root, as_of)
    if folder is None:
        logger.warning(
            "skipping campaign scoring for %s: no eligible training data (see above) and no "
            "earlier model under %s", as_of, root,
        )
        return None, "none", fingerprint
    model, _ = model_registry.load_model(folder)  # other library versions: a clear error
    logger.warning("not enough data to retrain on %s: keeping the last good model from %s",
                   as_of, folder.name)
    return model, f"last_good:{folder.name}", fingerprint


def _user_predictions(con, as_of: date, load_snapshots: Callable[[], pd.DataFrame],
                      profiles: pd.DataFrame, settings: Settings) -> int:
    """Fit churn / spend on closed 90-day snapshots (or reuse a recent fit, see
    :func:`score_campaigns`); write ``ml.user_predictions``."""
    root = settings.models_dir / "user_predictions"
    key = _predictions_settings_key(settings)
    recent = model_registry.reuse_recent_fit(root, as_of, settings.model_refit_days, key)
    age = 0
    if recent is not None:
        models, age = recent.model, recent.age_days
    else:
        snapshots = load_snapshots()
        _require_built_for(snapshots, "marts.fct_user_snapshots", as_of)
        models = (train_user_prediction_models(snapshots, random_state=settings.random_state)
                  if len(snapshots) else None)
        if models is not None:
            model_registry.save_model(root / as_of.isoformat(), models,
                                      {"metrics": models.metrics, "settings_key": key})
    if models is None:
        logger.warning("no ml.user_predictions for %s (no closed 90-day snapshot window)", as_of)
        frame = predict_users_empty()
        metrics = {}
    else:
        frame = predict_users(models, profiles)
        metrics = {**models.metrics, "model_age_days": float(age)}
    write_partition(con, "ml.user_predictions", frame, as_of)
    write_partition(con, "ml.model_runs", metrics_frame("user_predictions", metrics), as_of,
                     {"model": "user_predictions"})
    return int(len(frame))


def predict_users_empty() -> pd.DataFrame:
    """An empty ``ml.user_predictions`` frame."""
    return pd.DataFrame({"user_id": pd.Series(dtype="int64"),
                         "churn_probability": pd.Series(dtype="float64"),
                         "predicted_spend_90d": pd.Series(dtype="float64")})


def _save_model(settings: Settings, as_of: date, model: ResponseModel,
                fingerprint: str | None) -> None:
    """Persist the fitted model with its card (library versions, training fingerprint) and
    draw the run's picture."""
    day = as_of.isoformat()
    card = {**model.model_card(), "kind": model.kind,
            "settings_key": _response_settings_key(settings)}
    if fingerprint is not None:
        card["training_fingerprint"] = fingerprint
    model_registry.save_model(settings.models_dir / "response" / day, model, card)
    title = ("Campaign response" if model.kind == "campaign_response"
             else "Purchase in the next 30 days (no campaign history)")
    write_response_png(model, settings.reports_dir / day / "response.png", f"{title}, {day}")
