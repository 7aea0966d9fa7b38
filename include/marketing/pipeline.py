"""The daily job's steps as plain functions: read inputs, call the domain code, write outputs.

Each step takes the run date D (``as_of_date``) and ``Settings``, opens the warehouse for as
short as it can, and returns a small JSON-able dict (the DAG's XCom). Every write replaces
exactly D's partition, so any step can be re-run.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import joblib
import pandas as pd

from marketing import warehouse
from marketing.audience_config import definitions_frame, load_audiences
from marketing.land import land
from marketing.neighbours import interaction_matrix, item_neighbours
from marketing.publish import publish_audience
from marketing.recommend import recommend
from marketing.scoring import score_users, train_response_model
from marketing.segmentation import fit_segments
from marketing.settings import Settings
from marketing.snapshot import publish_analytics_copy

logger = logging.getLogger(__name__)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def land_day(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Land every pending partition up to D into ``raw`` (see ``marketing.land``)."""
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        report = land(con, settings.landing_dir, as_of)
    return {
        "rows_loaded": report.rows_loaded,
        "rows_rejected": report.rows_rejected,
        "rejected_by_rule": report.rejected_by_rule,
    }


def _metrics_frame(model: str, metrics: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"metric": list(metrics), "value": [float(v) for v in metrics.values()]}
    ).assign(model=model)


def build_segments(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Cluster D's user profiles into named segments (``ml.user_segments``, ``ml.segments``)."""
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        profiles = warehouse.read_frame(
            con, "select * from marts.user_profiles where as_of_date = ? order by user_id", [as_of]
        )
        result = fit_segments(
            profiles.drop(columns=["as_of_date"]),
            k_min=settings.segment_k_range[0],
            k_max=settings.segment_k_range[1],
            sample_size=settings.silhouette_sample_size,
            random_state=settings.random_state,
        )
        warehouse.replace_partition(con, "ml.user_segments", result.assignments, as_of)
        warehouse.replace_partition(con, "ml.segments", result.segments, as_of)
        warehouse.replace_partition(con, "ml.segment_model_selection", result.model_selection, as_of)
        metrics = {"k": len(result.segments), "silhouette": result.silhouette}
        warehouse.replace_partition(
            con, "ml.model_runs", _metrics_frame("segments", metrics), as_of, {"model": "segments"}
        )
    return {"segments": int(len(result.segments)), "silhouette": round(result.silhouette, 4)}


def build_recommendations(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Item neighbours (``ml.item_neighbours``) and per-user picks (``ml.user_recommendations``)."""
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        interactions = warehouse.read_frame(
            con,
            "select user_id, item_id, strength, has_purchased from marts.user_item_interactions "
            "where as_of_date = ? order by user_id, item_id",
            [as_of],
        )
        users = warehouse.read_frame(
            con,
            "select user_id from marts.user_profiles where as_of_date = ? order by user_id",
            [as_of],
        )
        matrix = interaction_matrix(interactions)
        neighbours = item_neighbours(matrix, k=settings.neighbours_k)
        picks = recommend(
            matrix, neighbours, n=settings.recommendations_n, user_ids=users["user_id"].to_numpy()
        )
        warehouse.replace_partition(con, "ml.item_neighbours", neighbours, as_of)
        warehouse.replace_partition(con, "ml.user_recommendations", picks, as_of)
    return {"item_neighbours": int(len(neighbours)), "recommendations": int(len(picks))}


def score_campaigns(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Train the response model on sends closed by D; score every user for every campaign."""
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        sends = warehouse.read_frame(
            con, "select * from marts.fct_campaign_sends order by sent_at, send_id"
        )
        model = train_response_model(sends, random_state=settings.random_state)
        if model is None:
            logger.warning("no response model for %s: not enough labelled sends", as_of)
            warehouse.replace_partition(
                con, "ml.campaign_scores",
                pd.DataFrame({"user_id": pd.Series(dtype="int64"),
                              "campaign_id": pd.Series(dtype="int64"),
                              "response_probability": pd.Series(dtype="float64")}),
                as_of,
            )
            return {"scored": 0, "auc": None}
        profiles = warehouse.read_frame(
            con, "select * from marts.user_profiles where as_of_date = ? order by user_id", [as_of]
        )
        campaign_ids = [
            row[0]
            for row in con.execute(
                "select campaign_id from staging.stg_shop__campaigns "
                "where starts_at < ?::DATE + interval 1 day order by campaign_id",
                [as_of],
            ).fetchall()
        ]
        scores = score_users(model, profiles, campaign_ids)
        warehouse.replace_partition(con, "ml.campaign_scores", scores, as_of)
        warehouse.replace_partition(
            con, "ml.model_runs", _metrics_frame("response", model.metrics), as_of,
            {"model": "response"},
        )
    _save_model(settings.models_dir / "response" / as_of.isoformat(), model)
    return {"scored": int(len(scores)), "auc": round(model.metrics.get("auc", float("nan")), 4)}


def _save_model(folder: Path, model) -> None:
    """Persist the fitted pipeline and its model card (metrics, coefficients) for this run."""
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model.pipeline, folder / "model.joblib")
    card = json.dumps(model.model_card(), indent=2, sort_keys=True) + "\n"
    (folder / "model_card.json").write_text(card)


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
# mart with plain contact details would end up in the analysts' copy.
_MEMBERS_SQL = """
with members as (
    select * from marts.audience_members where as_of_date = ?
),
definitions as (
    select distinct audience_name, campaign_id from ml.audience_definitions where as_of_date = ?
),
top_items as (
    select r.user_id, string_agg(i.name, ' | ' order by r.rank) as recommended_items
    from ml.user_recommendations as r
    join staging.stg_shop__items as i on i.item_id = r.item_id
    where r.as_of_date = ? and r.rank <= 3
    group by r.user_id
)
select
    m.audience_name,
    m.channel,
    m.user_id,
    u.email,
    u.phone,
    u.country,
    u.first_name,
    u.is_email_opt_in,
    u.is_ads_opt_in,
    u.is_email_suppressed,
    u.is_erased,
    s.segment_name,
    t.recommended_items,
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
    """Write every audience x channel file under ``outbox/`` and record it in ``ml.publish_log``."""
    settings = settings or Settings.from_env()
    as_of = _as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        members = warehouse.read_frame(con, _MEMBERS_SQL, [as_of, as_of, as_of])
        pairs = [
            (a.name, channel)
            for a in load_audiences(settings.audiences_path)
            for channel in a.channels
        ]
        results = []
        for audience_name, channel in pairs:
            subset = members[
                (members["audience_name"] == audience_name) & (members["channel"] == channel)
            ]
            results.append(
                publish_audience(
                    audience_name, channel, subset, as_of, run_id, settings.outbox_dir
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
                }
                for r in results
            ]
        )
        warehouse.replace_partition(con, "ml.publish_log", log, as_of)
    return {f"{r.channel}/{r.audience_name}": r.rows for r in results}


def publish_snapshot(settings: Settings | None = None) -> dict:
    """Republish the analysts' read-only copy (``data/analytics.duckdb``) atomically."""
    settings = settings or Settings.from_env()
    tables = publish_analytics_copy(settings.warehouse_path, settings.analytics_path)
    return {"path": str(settings.analytics_path), "tables": len(tables)}
