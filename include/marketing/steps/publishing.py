"""Steps ``audience_definitions``, ``publish`` and ``snapshot``: audiences out, analysts' copy."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers

from marketing import warehouse
from marketing.audience_config import definitions_frame, load_audiences
from marketing.history import prune_dated_folders, prune_history
from marketing.identifiers import merge_parsed_phones, parsed_phones_used, seed_parsed_phones
from marketing.processes import process_map
from marketing.publish import PublishResult, latest_publish, publish_audience
from marketing.settings import Settings
from marketing.snapshot import publish_analytics_copy
from marketing.steps.common import as_date

logger = logging.getLogger(__name__)


def load_audience_definitions(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Validate ``include/audiences.yml`` and write it to ``ml.audience_definitions`` for dbt."""
    settings = settings or Settings.from_env()
    as_of = as_date(as_of_date)
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
    where r.as_of_date = ? and r.rank <= 3 and r.user_id in (select user_id from members)
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
    as_of = as_date(as_of_date)
    audiences = load_audiences(settings.audiences_path)
    with warehouse.connect(settings.warehouse_path) as con:
        seed_parsed_phones(_earlier_phone_parses(con))
        members = warehouse.read_frame(con, _MEMBERS_SQL, [as_of, as_of, as_of])
        history = _email_history(con, as_of)
        erased_lines = _erased_lines(con)
    exports = []
    for audience in audiences:
        for channel in audience.channels:
            subset = members[
                (members["audience_name"] == audience.name) & (members["channel"] == channel)
            ]
            if channel == "email" and audience.frequency_cap_days:
                capped = _recently_emailed(history, as_of, audience.frequency_cap_days)
                subset = subset[~subset["user_id"].isin(capped)]
            exports.append({
                "audience_name": audience.name, "channel": channel, "members": subset,
                "as_of_date": as_of, "run_id": run_id, "outbox_dir": settings.outbox_dir,
                "min_size": audience.min_size, "max_size": audience.max_size,
                "withhold_lines": erased_lines,
            })
    # the files are independent and their work is Python-level: one forked process per core
    # (the connection above is closed; 4 files at 1M users: 7.8 s in one process, 5.2 s in two)
    done = process_map(_export, exports, settings.publish_processes,
                       cost=lambda export: len(export["members"]))
    results = [result for result, _ in done]
    with warehouse.connect(settings.warehouse_path) as con:
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
        counts = [len(r.user_ids) for r in results]
        exported = pd.DataFrame({
            "channel": pd.array(np.repeat([r.channel for r in results], counts).tolist(),
                                dtype="string"),
            "audience_name": pd.array(
                np.repeat([r.audience_name for r in results], counts).tolist(), dtype="string"),
            "user_id": np.fromiter(
                (u for r in results for u in r.user_ids), dtype=np.int64, count=sum(counts)),
            "row_sha256": pd.array([h for r in results for h in r.row_hashes], dtype="string"),
        })
        warehouse.replace_partition(con, "ml.published_members", exported, as_of)
        _forget_erased(con)
        warehouse.replace_partition(con, "ml.publish_log", log, as_of)
        _keep_phone_parses(con, merge_parsed_phones(used for _, used in done))
    return {f"{r.channel}/{r.audience_name}": r.rows for r in results}


def _export(export: dict) -> tuple[PublishResult, list[tuple[str, str | None, str | None]]]:
    """One audience x channel publish and the phone parses its process has used so far."""
    return publish_audience(**export), parsed_phones_used()


PHONE_PARSES = "cache.phone_parses"
"""Numbers this publish parsed (raw, region, E.164 or NULL, libphonenumber version): the next
publish parses only numbers it has not seen. Replaced by every publish with exactly the
numbers it used, so the numbers of users erased (or gone) since drop out; schema ``cache``
is not part of the analysts' copy."""


def _earlier_phone_parses(con) -> list[tuple[str, str | None, str | None]]:
    """The previous publish's parses made by the running libphonenumber version."""
    if not warehouse.table_exists(con, PHONE_PARSES):
        return []
    return con.execute(
        f"select phone, region, e164 from {PHONE_PARSES} where phonenumbers_version = ?",
        [phonenumbers.__version__],
    ).fetchall()


def _keep_phone_parses(con, parsed: list[tuple[str, str | None, str | None]]) -> None:
    frame = pd.DataFrame(parsed, columns=["phone", "region", "e164"]).astype("string")
    frame["phonenumbers_version"] = pd.Series([phonenumbers.__version__] * len(frame),
                                              dtype="string")
    con.execute("create schema if not exists cache")
    with warehouse.registered(con, "phone_parses_frame", frame) as view:
        con.execute(f"create or replace table {PHONE_PARSES} as select * from {view}")


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
    for table in warehouse.tables_with_columns(con, ["ml"], ["user_id"]):
        con.execute(
            f"delete from {table} where user_id in "
            "(select user_id from marts.dim_users where is_erased)"
        )


def publish_snapshot(settings: Settings | None = None,
                     as_of_date: date | str | None = None) -> dict:
    """Republish the analysts' read-only copy (``data/analytics.duckdb``) atomically.

    With ``settings.history_days`` N, per-user history older than N days before the newest
    run date is deleted from the warehouse first (:func:`marketing.history.prune_history`),
    so neither the warehouse nor the copy grows with every day run, and so are the runs'
    dated folders under ``outbox/``, ``models/`` and ``reports/`` (:func:`_prune_folders`).
    ``as_of_date``: the run's date, whose own folders are kept whatever their age (a
    backfill's files stay until a later run prunes them; ``deliver`` may still be reading
    them).
    """
    settings = settings or Settings.from_env()
    as_of = None if as_of_date is None else as_date(as_of_date)
    pruned, folders = {}, 0
    if settings.history_days is not None:
        with warehouse.connect(settings.warehouse_path) as con:
            pruned = prune_history(con, settings.history_days)
        folders = _prune_folders(settings, as_of)
    tables = publish_analytics_copy(settings.warehouse_path, settings.analytics_path)
    return {"path": str(settings.analytics_path), "tables": len(tables),
            "history_rows_deleted": sum(pruned.values()), "history_folders_deleted": folders}


def _prune_folders(settings: Settings, as_of: date | None) -> int:
    """Delete the runs' dated folders older than ``settings.history_days`` days before the
    newest of their series; returns how many.

    Kept whatever their age: the run date's own folders; per audience x channel, the latest
    successful publish (the next run's adds and removes are computed against its files); and
    under ``models/`` at least ``settings.model_refit_days`` days (the fits a refit cadence
    reuses).
    """
    keep_days = settings.history_days
    deleted = []
    for audience_dir in sorted(p for p in settings.outbox_dir.glob("*/*") if p.is_dir()):
        latest = latest_publish(audience_dir)
        last_good = None if latest is None else date.fromisoformat(latest[0])
        deleted += prune_dated_folders(audience_dir, keep_days, keep=(as_of, last_good))
    for model_dir in sorted(p for p in settings.models_dir.glob("*") if p.is_dir()):
        deleted += prune_dated_folders(
            model_dir, max(keep_days, settings.model_refit_days), keep=(as_of,))
    deleted += prune_dated_folders(settings.reports_dir, keep_days, keep=(as_of,))
    if deleted:
        logger.info("%d run folders older than %d days deleted (outbox, models, reports)",
                    len(deleted), keep_days)
    return len(deleted)
