"""The daily job's steps as plain functions: read inputs, call the domain code, write outputs.

Each step takes the run date D (``as_of_date``) and ``Settings``, opens the warehouse for as
short as it can, and returns a small JSON-able dict (the DAG's XCom). Every write replaces
exactly D's partition, so any step can be re-run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from marketing import model_registry, warehouse
from marketing.audience_config import definitions_frame, load_audiences
from marketing.land import land
from marketing.neighbours import (
    content_neighbours,
    interaction_matrix,
    item_neighbours,
    user_neighbours,
)
from marketing.publish import publish_audience
from marketing.recommend import recommend
from marketing.recommend_eval import evaluate_holdout
from marketing.response_report import write_response_png
from marketing.scoring import (
    TRAINING_COLUMNS,
    ResponseModel,
    score_users,
    train_purchase_model,
    train_response_model,
)
from marketing.segment_report import write_segments_picture
from marketing.segmentation import align_segment_ids, fit_segments
from marketing.settings import Settings
from marketing.snapshot import publish_analytics_copy
from marketing.source_mapping import load_mapping, materialise
from marketing.user_predictions import predict_users, train_user_prediction_models

logger = logging.getLogger(__name__)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def land_day(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Land every pending partition up to D into ``raw`` (see ``marketing.land``).

    With ``settings.source_mapping_path`` set, the shop's own exports are first mapped onto the
    contract (``marketing.source_mapping``) into ``<data_dir>/landing_mapped``; otherwise the
    native landing zone is read. Partitions dated D - ``reland_days`` .. D are re-landed even
    when unchanged (late data); a structurally unusable file refuses the run before anything
    is written.
    """
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    landing_dir, mapped = _landing_zone(as_of, settings)
    with warehouse.connect(settings.warehouse_path) as con:
        report = land(con, landing_dir, as_of, reland_days=settings.reland_days)
    return {
        "rows_loaded": report.rows_loaded,
        "rows_rejected": report.rows_rejected,
        "rejected_by_rule": report.rejected_by_rule,
        **report.counts,
        "absent_sources": len(report.notes),
        **({"mapped_rows": mapped} if mapped is not None else {}),
    }


def _landing_zone(as_of: date, settings: Settings) -> tuple[Path, int | None]:
    """The landing zone to load: native, or the shop's exports mapped onto the contract."""
    if settings.source_mapping_path is None:
        return settings.landing_dir, None
    mapping_path = Path(settings.source_mapping_path)
    mapping = load_mapping(mapping_path)
    out_dir = settings.data_dir / "landing_mapped"
    written = materialise(mapping, mapping_path.parent, out_dir, as_of)
    return out_dir, sum(written.values())


def _metrics_frame(model: str, metrics: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"metric": list(metrics), "value": [float(v) for v in metrics.values()]}
    ).assign(model=model)


def build_segments(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Cluster D's user profiles into named, stable segments and draw them.

    Writes ``ml.user_segments``, ``ml.segments`` (with the parent group of the Ward
    hierarchy), ``ml.segment_model_selection``, ``ml.segment_changes`` and the segments'
    metrics in ``ml.model_runs``; draws ``reports/<D>/segments.png``.

    Ids and names are carried over from the most recent earlier run (``ml.segments`` with
    the largest ``as_of_date < D``) by :func:`marketing.segmentation.align_segment_ids`, so
    the result for D depends on the runs before it: a backfill of D after later dates
    reuses the ids of the latest run *before* D, and ids of dates run out of order can differ
    from a chronological run.
    """
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        profiles = warehouse.read_frame(
            con, "select * from marts.user_profiles where as_of_date = ? order by user_id", [as_of]
        )
        previous, previous_date = _previous_segments(con, as_of)
        algorithm = settings.segment_algorithm
        if algorithm == "auto":
            algorithm = "ward" if len(profiles) <= settings.segment_ward_max_users else "kmeans"
        result = fit_segments(
            profiles.drop(columns=["as_of_date"]),
            k_min=settings.segment_k_range[0],
            k_max=settings.segment_k_range[1],
            sample_size=settings.silhouette_sample_size,
            random_state=settings.random_state,
            algorithm=algorithm,
            # k from D's data alone (no prefer_k from the previous run): a backfilled date
            # must equal a fresh run of it; ids and names still carry over by matching.
        )
        result = align_segment_ids(
            result, previous, max_distance=settings.segment_match_max_distance
        )
        # an Arrow date column keeps the DATE type even when every value is NULL (first run)
        changes = result.changes.assign(
            previous_as_of_date=pd.Series(
                [previous_date] * len(result.changes), dtype=pd.ArrowDtype(pa.date32())
            )
        )
        warehouse.replace_partition(con, "ml.user_segments", result.assignments, as_of)
        warehouse.replace_partition(con, "ml.segments", result.segments, as_of)
        warehouse.replace_partition(con, "ml.segment_model_selection", result.model_selection, as_of)
        warehouse.replace_partition(con, "ml.segment_changes", changes, as_of)
        kept = _share_kept(con, result.assignments, previous_date)
        metrics = {"k": len(result.segments), "silhouette": result.silhouette}
        if kept is not None:
            metrics["share_users_kept_segment"] = kept
        warehouse.replace_partition(
            con, "ml.model_runs", _metrics_frame("segments", metrics), as_of, {"model": "segments"}
        )
    frame = profiles.drop(columns=["as_of_date"]).sort_values("user_id", kind="stable")
    picture = write_segments_picture(
        settings.reports_dir / as_of.isoformat() / "segments.png",
        result.features.transform(frame),
        result.assignments["segment_id"].to_numpy(),
        result.segments,
        result.centroids,
        result.features.feature_names_,
        result.linkage,
        sample_size=settings.segment_picture_sample_size,
        random_state=settings.random_state,
        title=f"Segments on {as_of.isoformat()} ({len(frame):,} users, {algorithm}, "
        f"silhouette {result.silhouette:.3f})",
    )
    status = changes["status"].value_counts()
    return {
        "segments": int(len(result.segments)),
        "silhouette": round(result.silhouette, 4),
        "kept": int(status.get("kept", 0)),
        "new": int(status.get("new", 0)),
        "vanished": int(status.get("vanished", 0)),
        "share_users_kept_segment": None if kept is None else round(kept, 4),
        "picture": str(picture),
    }


def _previous_segments(con, as_of: date) -> tuple[pd.DataFrame, date | None]:
    """The most recent earlier run's ``ml.segments`` rows (empty, None on the first run)."""
    if not warehouse.table_exists(con, "ml.segments"):
        return pd.DataFrame(), None
    row = con.execute(
        "select max(as_of_date) from ml.segments where as_of_date < ?", [as_of]
    ).fetchone()
    if row is None or row[0] is None:
        return pd.DataFrame(), None
    previous = warehouse.read_frame(
        con, "select * from ml.segments where as_of_date = ? order by segment_id", [row[0]]
    )
    return previous.drop(columns=["as_of_date"]), row[0]


def _share_kept(con, assignments: pd.DataFrame, previous_date: date | None) -> float | None:
    """Share of today's users, also segmented last run, whose segment id did not change."""
    if previous_date is None:
        return None
    before = warehouse.read_frame(
        con,
        "select user_id, segment_id from ml.user_segments where as_of_date = ?",
        [previous_date],
    )
    both = assignments.merge(before, on="user_id", suffixes=("", "_before"))
    if both.empty:
        return None
    return float((both["segment_id"] == both["segment_id_before"]).mean())


def build_recommendations(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Item neighbours, per-user picks and their offline evaluation for D.

    Writes ``ml.item_neighbours`` (CF neighbours, plus content-based ones for catalogue
    items without interactions, ``method`` = ``cf`` / ``content``), ``ml.user_recommendations``
    (with ``reason_item_id`` and ``method``; users without CF picks get their segment's
    popular items from ``ml.user_segments`` of D, then global ones) and the hold-out
    metrics of item-CF and popularity (train up to D-7, test D-6..D) into ``ml.model_runs``
    (model ``recommendations``).
    """
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        interactions = read_interactions(con, as_of)
        users = warehouse.read_frame(
            con,
            "select user_id from marts.user_profiles where as_of_date = ? order by user_id",
            [as_of],
        )
        segments = _read_segments(con, as_of)
        catalogue = warehouse.read_frame(
            con,
            "select item_id, category, price from staging.stg_shop__items "
            "where partition_date <= ? order by item_id",
            [as_of],
        )
    matrix = interaction_matrix(interactions)
    del interactions  # the matrix holds it; a million users' rows are a few hundred MB
    neighbours = item_neighbours(
        matrix,
        k=settings.neighbours_k,
        min_support=settings.neighbours_min_support,
        similarity=settings.neighbours_similarity,
    )
    similar_users = None
    if settings.recommendations_method == "user_cf":
        similar_users = user_neighbours(matrix, k=settings.user_neighbours_k)
    elif settings.recommendations_method != "item_cf":
        raise ValueError(
            "settings.recommendations_method must be 'item_cf' or 'user_cf', got "
            f"{settings.recommendations_method!r}"
        )
    picks = recommend(
        matrix,
        neighbours,
        n=settings.recommendations_n,
        exclude_purchased=settings.recommendations_exclude_purchased,
        user_ids=users["user_id"].to_numpy(),
        segments=segments,
        user_neighbours=similar_users,
    )
    cold_items = np.setdiff1d(catalogue["item_id"].to_numpy(dtype=np.int64), matrix.item_ids)
    content = content_neighbours(catalogue, cold_items, k=settings.neighbours_k)
    all_neighbours = pd.concat(
        [neighbours.assign(method="cf"), content.assign(method="content")], ignore_index=True
    )
    # The picks are stored before the hold-out frames are read, so the two never share memory
    # (re-running D replaces the whole partition, so a failure in between leaves nothing half).
    with warehouse.connect(settings.warehouse_path) as con:
        warehouse.replace_partition(con, "ml.item_neighbours", all_neighbours, as_of)
        warehouse.replace_partition(con, "ml.user_recommendations", picks, as_of)
    n_picks = int(len(picks))
    del picks
    with warehouse.connect(settings.warehouse_path) as con:
        train, test = _read_holdout(con, as_of, settings.evaluation_holdout_days)
    evaluation = evaluate_holdout(
        train,
        test,
        k=settings.recommendations_n,
        neighbours_k=settings.neighbours_k,
        min_support=settings.neighbours_min_support,
        similarity=settings.neighbours_similarity,
        random_state=settings.random_state,
    )
    with warehouse.connect(settings.warehouse_path) as con:
        warehouse.replace_partition(
            con,
            "ml.model_runs",
            _metrics_frame("recommendations", evaluation.metrics),
            as_of,
            {"model": "recommendations"},
        )
    n = settings.recommendations_n
    return {
        "item_neighbours": int(len(neighbours)),
        "content_neighbours": int(len(content)),
        "recommendations": n_picks,
        f"item_cf_hr_at_{n}": _rounded(evaluation.metrics[f"item_cf_hr_at_{n}"]),
        f"popularity_hr_at_{n}": _rounded(evaluation.metrics[f"popularity_hr_at_{n}"]),
    }


def read_interactions(con, as_of: date) -> pd.DataFrame:
    """D's ``marts.user_item_interactions`` rows, sorted as ``interaction_matrix`` reads fastest."""
    return warehouse.read_frame(
        con,
        "select user_id, item_id, strength, has_purchased from marts.user_item_interactions "
        "where as_of_date = ? order by user_id, item_id",
        [as_of],
    )


def _rounded(value: float) -> float | None:
    """JSON-able metric for XCom (None for NaN)."""
    return None if value != value else round(float(value), 4)


def _read_segments(con, as_of: date) -> pd.DataFrame | None:
    """D's user -> segment assignments, or None (global popularity only) when absent."""
    if not warehouse.table_exists(con, "ml.user_segments"):
        logger.warning("ml.user_segments missing: cold-start users get global popular items")
        return None
    frame = warehouse.read_frame(
        con,
        "select user_id, segment_id from ml.user_segments where as_of_date = ? order by user_id",
        [as_of],
    )
    if frame.empty:
        logger.warning("no segments for %s: cold-start users get global popular items", as_of)
        return None
    return frame


def _read_holdout(con, as_of: date, holdout_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training interactions as of D - h and the (user, item) pairs active in D-h+1..D."""
    train_date = as_of - timedelta(days=holdout_days)
    train = warehouse.read_frame(
        con,
        "select user_id, item_id, strength, has_purchased "
        "from marts.user_item_interactions_train where as_of_date = ? order by user_id, item_id",
        [train_date],
    )
    if train.empty:
        logger.warning(
            "marts.user_item_interactions_train has no rows as of %s (dbt var "
            "evaluation_holdout_days must equal settings.evaluation_holdout_days = %d)",
            train_date,
            holdout_days,
        )
    test = warehouse.read_frame(
        con,
        "select user_id, item_id from marts.user_item_interactions "
        "where as_of_date = ? and last_interacted_at >= ? order by user_id, item_id",
        [as_of, train_date + timedelta(days=1)],
    )
    return train, test


def score_campaigns(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Score every user for every campaign started by D; predict churn and 90-day spend.

    The response model trains on sends closed by D (``marts.fct_campaign_sends``). With too
    few responders/non-responders it keeps the newest earlier model (``data/models/response/``,
    strictly before D, refused under other library versions); with no campaign history at all
    it falls back to a purchase-in-the-next-30-days propensity (``marts.fct_user_snapshots``);
    with none of these it skips scoring and says why. Writes ``ml.campaign_scores``,
    ``ml.user_predictions``, ``ml.model_runs`` (models ``response``, ``user_predictions``), the
    model and card under ``models/response/<D>/`` and ``reports/<D>/response.png``.
    """
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        sends = warehouse.read_frame(
            con, "select * from marts.fct_campaign_sends order by sent_at, send_id"
        )
        profiles = warehouse.read_frame(
            con, "select * from marts.user_profiles where as_of_date = ? order by user_id", [as_of]
        )
        campaigns = warehouse.read_frame(
            con,
            "select campaign_id, channel from staging.stg_shop__campaigns "
            "where starts_at < ?::DATE + interval 1 day order by campaign_id",
            [as_of],
        )
        # Churn/spend train on closed 90-day windows only; the purchase-in-30-days fallback
        # (no campaign history) needs every snapshot, so it reads them only when it runs.
        fingerprint = _training_fingerprint(sends, settings) if len(sends) else None
        model, source = _response_model_for(
            as_of, sends, lambda: _read_snapshots(con, closed_only=False), settings, fingerprint
        )
        predictions = _user_predictions(
            con, as_of, _read_snapshots(con, closed_only=True), profiles, settings
        )
        if model is None:
            scores = score_users_empty()
        else:
            scores = score_users(model, profiles, campaigns)
        _write_partition(con, "ml.campaign_scores", scores, as_of)
        metrics = {} if model is None else dict(model.metrics)
        if model is not None:
            for row in model.campaign_metrics.itertuples(index=False):
                metrics[f"auc_campaign_{row.campaign_id}"] = row.auc
                metrics[f"n_sends_campaign_{row.campaign_id}"] = row.n_sends
            metrics["is_purchase_fallback"] = float(model.kind == "purchase_30d")
            metrics["is_last_good_model"] = float(source.startswith("last_good"))
            metrics["has_uplift"] = float(model.control_pipeline is not None)
        _write_partition(con, "ml.model_runs", _metrics_frame("response", metrics), as_of,
                         {"model": "response"})
    if model is not None and not source.startswith("last_good"):
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


def _training_fingerprint(sends: pd.DataFrame, settings: Settings) -> str:
    """What the response model's fit depends on: the sends' training columns (not, e.g., the
    ``as_of_date`` every run stamps on them) and the training settings."""
    return model_registry.frame_fingerprint(
        sends[[c for c in TRAINING_COLUMNS if c in sends.columns]],
        random_state=settings.random_state,
        min_positives=settings.response_min_positives,
        min_negatives=settings.response_min_negatives,
        uplift_min_positives=settings.uplift_min_positives,
    )


def _response_model_for(as_of: date, sends: pd.DataFrame,
                        load_snapshots: Callable[[], pd.DataFrame],
                        settings: Settings,
                        fingerprint: str | None = None) -> tuple[ResponseModel | None, str]:
    """Train, else fall back (purchase propensity / last good model), else (None, "none").

    With ``fingerprint`` (:func:`_training_fingerprint` of ``sends``), a run before D trained
    on the very same rows and settings is loaded instead of refitting: same data, same
    deterministic fit (source ``same_training_data:<date>``). A day that closes no campaign
    window and erases no user with sends reuses the fit; a backfill or a fresh warehouse
    simply trains. The fingerprint covers the library versions, so a reused fit always loads.
    """
    minimums = {"min_positives": settings.response_min_positives,
                "min_negatives": settings.response_min_negatives}
    root = settings.models_dir / "response"
    same = (None if fingerprint is None
            else model_registry.same_training_before(root, as_of, fingerprint))
    if same is not None:
        model, _ = model_registry.load_model(same)
        logger.info("training sends unchanged since %s: reusing its fit", same.name)
        return model, f"same_training_data:{same.name}"
    if len(sends):
        model = train_response_model(sends, random_state=settings.random_state,
                                     uplift_min_positives=settings.uplift_min_positives,
                                     **minimums)
    else:
        logger.warning("no campaign history by %s: falling back to the purchase-in-30-days "
                       "propensity", as_of)
        snapshots = load_snapshots()
        model = (train_purchase_model(snapshots, random_state=settings.random_state, **minimums)
                 if len(snapshots) else None)
    if model is not None:
        return model, "trained"
    folder = model_registry.latest_run_before(root, as_of)
    if folder is None:
        logger.warning(
            "skipping campaign scoring for %s: no eligible training data (see above) and no "
            "earlier model under %s", as_of, root,
        )
        return None, "none"
    model, _ = model_registry.load_model(folder)  # other library versions: a clear error
    logger.warning("not enough data to retrain on %s: keeping the last good model from %s",
                   as_of, folder.name)
    return model, f"last_good:{folder.name}"


def _user_predictions(con, as_of: date, snapshots: pd.DataFrame, profiles: pd.DataFrame,
                      settings: Settings) -> int:
    """Fit churn / spend on closed 90-day snapshots; write ``ml.user_predictions``."""
    models = (train_user_prediction_models(snapshots, random_state=settings.random_state)
              if len(snapshots) else None)
    if models is None:
        logger.warning("no ml.user_predictions for %s (no closed 90-day snapshot window)", as_of)
        frame = predict_users_empty()
        metrics = {}
    else:
        frame = predict_users(models, profiles)
        metrics = models.metrics
    _write_partition(con, "ml.user_predictions", frame, as_of)
    _write_partition(con, "ml.model_runs", _metrics_frame("user_predictions", metrics), as_of,
                     {"model": "user_predictions"})
    return int(len(frame))


def predict_users_empty() -> pd.DataFrame:
    """An empty ``ml.user_predictions`` frame."""
    return pd.DataFrame({"user_id": pd.Series(dtype="int64"),
                         "churn_probability": pd.Series(dtype="float64"),
                         "predicted_spend_90d": pd.Series(dtype="float64")})


def _write_partition(con, table: str, frame: pd.DataFrame, as_of: date,
                     also_keyed_by: dict[str, str] | None = None) -> int:
    """``warehouse.replace_partition``, but an empty first write still gets typed columns.

    A table created from an empty frame would get untyped (NULL) ``as_of_date`` and object
    columns; when scoring is skipped on a fresh warehouse the table is created here instead,
    with ``as_of_date DATE`` and text columns as VARCHAR, so later runs can insert.
    """
    if not frame.empty or warehouse.table_exists(con, table):
        return warehouse.replace_partition(con, table, frame, as_of, also_keyed_by)
    typed = frame.astype({c: "str" for c in frame.columns if frame[c].dtype == object})
    if table == "ml.model_runs":
        typed = typed.astype({"metric": "str", "value": "float64", "model": "str"})
    con.execute(f"create schema if not exists {table.split('.')[0]}")
    con.register("_empty_incoming", typed)
    try:
        con.execute(f"create table {table} as select *, cast(null as date) as as_of_date "
                    "from _empty_incoming limit 0")
    finally:
        con.unregister("_empty_incoming")
    return 0


def _save_model(settings: Settings, as_of: date, model: ResponseModel,
                fingerprint: str | None) -> None:
    """Persist the fitted model with its card (library versions, training fingerprint) and
    draw the run's picture."""
    day = as_of.isoformat()
    card = model.model_card()
    if fingerprint is not None:
        card["training_fingerprint"] = fingerprint
    model_registry.save_model(settings.models_dir / "response" / day, model, card)
    title = ("Campaign response" if model.kind == "campaign_response"
             else "Purchase in the next 30 days (no campaign history)")
    write_response_png(model, settings.reports_dir / day / "response.png", f"{title}, {day}")


def load_audience_definitions(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Validate ``include/audiences.yml`` and write it to ``ml.audience_definitions`` for dbt."""
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    audiences = load_audiences(settings.audiences_path)
    frame = definitions_frame(audiences, as_of).drop(columns=["as_of_date"], errors="ignore")
    with warehouse.connect(settings.warehouse_path) as con:
        warehouse.replace_partition(con, "ml.audience_definitions", frame, as_of)
    return {"audiences": len(audiences)}


# Export payload: members joined with contact details, segment, top-3 picks and score. This is
# I/O (reading what the publisher writes out), so it lives here rather than in a dbt model: a
# mart with plain contact details would end up in the analysts' copy. dim_users is as of D, so
# a user erased on or before D reads is_erased and is dropped by the publisher.
_MEMBERS_SQL = """
with members as (
    select * from marts.audience_members where as_of_date = ?
),
definitions as (
    select distinct audience_name, campaign_id from ml.audience_definitions where as_of_date = ?
),
top_items as (
    select
        r.user_id,
        max(case when r.rank = 1 then i.name end) as recommended_item_1,
        max(case when r.rank = 2 then i.name end) as recommended_item_2,
        max(case when r.rank = 3 then i.name end) as recommended_item_3
    from ml.user_recommendations as r
    join staging.stg_shop__items as i on i.item_id = r.item_id
    where r.as_of_date = ? and r.rank <= 3
    group by r.user_id
)
select
    m.audience_name,
    m.channel,
    m.user_id,
    coalesce(m.is_holdout, false) as is_holdout,
    u.email,
    u.phone,
    u.first_name,
    u.last_name,
    u.country,
    u.city,
    u.postal_code,
    u.is_email_opt_in,
    u.is_ads_opt_in,
    u.is_email_suppressed,
    u.is_erased,
    s.segment_name,
    t.recommended_item_1,
    t.recommended_item_2,
    t.recommended_item_3,
    c.response_probability
from members as m
join marts.dim_users as u on u.user_id = m.user_id
left join ml.user_segments as s on s.user_id = m.user_id and s.as_of_date = m.as_of_date
left join top_items as t on t.user_id = m.user_id
left join definitions as d on d.audience_name = m.audience_name
left join ml.campaign_scores as c
    on c.user_id = m.user_id and c.campaign_id = d.campaign_id and c.as_of_date = m.as_of_date
order by m.audience_name, m.channel, m.user_id
"""


def publish_audiences(
    as_of_date: date | str, run_id: str, settings: Settings | None = None
) -> dict:
    """Write every audience x channel file under ``outbox/`` and record it in ``ml.publish_log``.

    The audiences file is validated first: a bad definition raises ``AudienceConfigError``
    before anything is written. Holdout members are never exported; ad audiences under their
    ``min_size`` are recorded as not published; e-mail audiences with ``frequency_cap_days``
    skip users e-mailed (``ml.published_members``) within that many days before D. Users
    erased by D are dropped from the export and from ``ml.published_members`` of every date.
    """
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    audiences = load_audiences(settings.audiences_path)
    with warehouse.connect(settings.warehouse_path) as con:
        members = warehouse.read_frame(con, _MEMBERS_SQL, [as_of, as_of, as_of])
        history = _email_history(con, as_of)
        erased_lines = _erased_lines(con)
        results = []
        for audience in audiences:
            for channel in audience.channels:
                subset = members[
                    (members["audience_name"] == audience.name) & (members["channel"] == channel)
                ]
                if channel == "email" and audience.frequency_cap_days:
                    capped = _recently_emailed(history, as_of, audience.frequency_cap_days)
                    subset = subset[~subset["user_id"].isin(capped)]
                results.append(
                    publish_audience(
                        audience.name,
                        channel,
                        subset,
                        as_of,
                        run_id,
                        settings.outbox_dir,
                        min_size=audience.min_size,
                        max_size=audience.max_size,
                        withhold_lines=erased_lines,
                    )
                )
        log = pd.DataFrame(
            [
                {
                    "run_id": run_id,
                    "channel": r.channel,
                    "audience_name": r.audience_name,
                    "path": str(Path(r.path).relative_to(settings.data_dir)),
                    "rows": r.rows,
                    "sha256": r.sha256,
                    "status": r.status,
                    "adds": r.adds,
                    "removes": r.removes,
                    "holdout": r.holdout,
                    "reason": r.reason or "",
                }
                for r in results
            ]
        )
        exported = pd.DataFrame(
            [
                {"channel": r.channel, "audience_name": r.audience_name, "user_id": user_id,
                 "row_sha256": row_hash}
                for r in results
                for user_id, row_hash in zip(r.user_ids, r.row_hashes, strict=True)
            ],
            columns=["channel", "audience_name", "user_id", "row_sha256"],
        ).astype({"channel": "string", "audience_name": "string", "user_id": "int64",
                  "row_sha256": "string"})
        warehouse.replace_partition(con, "ml.published_members", exported, as_of)
        _forget_erased(con)
        warehouse.replace_partition(con, "ml.publish_log", log, as_of)
    return {f"{r.channel}/{r.audience_name}": r.rows for r in results}


def _email_history(con, as_of: date) -> pd.DataFrame:
    """(as_of_date, user_id) of every e-mail export before D (empty before the first publish)."""
    if not warehouse.table_exists(con, "ml.published_members"):
        return pd.DataFrame({"as_of_date": [], "user_id": []})
    return warehouse.read_frame(
        con,
        "select distinct as_of_date, user_id from ml.published_members "
        "where channel = 'email' and as_of_date < ?",
        [as_of],
    )


def _recently_emailed(history: pd.DataFrame, as_of: date, cap_days: int) -> set[int]:
    """Users e-mailed less than ``cap_days`` days before D: at most one e-mail per cap window."""
    if history.empty:
        return set()
    age = (pd.Timestamp(as_of) - pd.to_datetime(history["as_of_date"])).dt.days
    return set(history.loc[(age < cap_days).to_numpy(), "user_id"].astype(int))


def _erased_lines(con) -> set[str]:
    """Line hashes of earlier exports of users erased by now (kept out of removes files)."""
    if not warehouse.table_exists(con, "ml.published_members"):
        return set()
    columns = {row[0] for row in con.execute("describe ml.published_members").fetchall()}
    if "row_sha256" not in columns:  # history written before line hashes were recorded
        return set()
    return {
        row[0]
        for row in con.execute(
            "select distinct p.row_sha256 from ml.published_members as p "
            "join marts.dim_users as u on u.user_id = p.user_id where u.is_erased"
        ).fetchall()
        if row[0] is not None
    }


def _forget_erased(con) -> None:
    """Erasure is permanent: drop users erased by D from every ``ml`` table, all dates.

    Runs of D only hold users not erased by D (``marts.user_profiles`` leaves them out), but
    partitions written by earlier runs still name users erased since; those rows go here
    (segments, recommendations, scores, predictions, publish history). dbt purges its own marts.
    """
    tables = con.execute(
        "select c.table_schema || '.' || c.table_name from information_schema.columns as c "
        "join information_schema.tables as t using (table_catalog, table_schema, table_name) "
        "where c.table_schema = 'ml' and c.column_name = 'user_id' "
        "and t.table_type = 'BASE TABLE' order by 1"
    ).fetchall()
    for (table,) in tables:
        con.execute(
            f"delete from {table} where user_id in "
            "(select user_id from marts.dim_users where is_erased)"
        )


def publish_snapshot(settings: Settings | None = None) -> dict:
    """Republish the analysts' read-only copy (``data/analytics.duckdb``) atomically."""
    settings = settings or Settings.from_env()
    tables = publish_analytics_copy(settings.warehouse_path, settings.analytics_path)
    return {"path": str(settings.analytics_path), "tables": len(tables)}
