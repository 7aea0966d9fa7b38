"""Bounded history: delete per-user and per-item rows older than N days.

Every run adds a partition of each per-user table (at a million users ~20M rows a day:
recommendations, scores, segments, predictions, profiles, audience members) and the analysts'
copy is rebuilt from all of them, so without a bound the warehouse, the copy and the snapshot
step grow with every day run. :func:`prune_history` keeps the last N days of those tables,
counted back from each table's newest ``as_of_date`` (a backfill of an old date therefore
never deletes recent partitions).

Kept whatever their age: per-run summaries (``ml.model_runs``, ``ml.segments``,
``ml.segment_changes``, ``ml.publish_log``, ...: a few rows per run, no ``user_id`` or
``item_id``), and ``ml.published_members``, the publish history that deltas, e-mail frequency
caps and ``marts.audience_lift`` are computed from.

The runs' files are dated folders (``outbox/<channel>/<audience>/<D>/``,
``models/<model>/<D>/``, ``reports/<D>/``); :func:`prune_dated_folders` bounds them the same
way, one series of dated folders at a time (:func:`marketing.run_folders.dated_folders`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

import duckdb

from marketing import warehouse
from marketing.run_folders import dated_folders

logger = logging.getLogger(__name__)

SCHEMAS = ("ml", "marts")
KEEP_ALWAYS = frozenset({"ml.published_members"})


def history_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables of :data:`SCHEMAS` with ``as_of_date`` and ``user_id`` or ``item_id``, minus
    :data:`KEEP_ALWAYS`."""
    tables = {
        *warehouse.tables_with_columns(con, SCHEMAS, ["as_of_date", "user_id"]),
        *warehouse.tables_with_columns(con, SCHEMAS, ["as_of_date", "item_id"]),
    }
    return sorted(tables - KEEP_ALWAYS)


def prune_history(con: duckdb.DuckDBPyConnection, keep_days: int) -> dict[str, int]:
    """Delete rows dated ``keep_days`` or more days before their table's newest date.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A writing connection to the warehouse.
    keep_days : int
        Days of history kept per table: ``as_of_date > newest - keep_days``; 1 keeps the
        newest date only.

    Returns
    -------
    dict of str to int
        Rows deleted per table (tables with nothing to delete are left out).
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be >= 1, got {keep_days}")
    deleted: dict[str, int] = {}
    for table in history_tables(con):
        row = con.execute(
            f"delete from {table} where as_of_date <= "
            f"(select max(as_of_date) from {table}) - ?::INTEGER",
            [keep_days],
        ).fetchone()
        if row and row[0]:
            deleted[table] = int(row[0])
    if deleted:
        logger.info("history older than %d days deleted: %s", keep_days, deleted)
    return deleted


def prune_dated_folders(series: Path | str, keep_days: int,
                        keep: Iterable[date | None] = ()) -> list[Path]:
    """Delete the dated subfolders of ``series`` older than ``keep_days`` days before its
    newest one, as :func:`prune_history` does with a table's partitions.

    Parameters
    ----------
    series : Path or str
        A folder of ``YYYY-MM-DD`` subfolders, one per run date (missing: nothing to do).
    keep_days : int
        Dated folders kept: ``date > newest - keep_days``; 1 keeps the newest only.
    keep : iterable of date or None
        Dates kept whatever their age (the run's own date, a folder later runs read; None
        entries are ignored).

    Returns
    -------
    list of Path
        The folders deleted, oldest first.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be >= 1, got {keep_days}")
    folders = dated_folders(series)
    if not folders:
        return []
    cutoff = max(folders) - timedelta(days=keep_days)
    kept = set(keep)
    deleted = []
    for day, folder in sorted(folders.items()):
        if day <= cutoff and day not in kept:
            shutil.rmtree(folder)
            deleted.append(folder)
    return deleted
