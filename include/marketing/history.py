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
"""

from __future__ import annotations

import logging

import duckdb

from marketing import warehouse

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
