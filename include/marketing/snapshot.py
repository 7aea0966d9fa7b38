"""Publish a read-only copy of the warehouse for analysts, swapped in atomically.

DuckDB allows one writing process per file, and a writer locks readers out, so analysts never
open ``warehouse.duckdb``. After each run the tables of the analyst-facing schemas are copied
into a fresh DuckDB file next to ``analytics.duckdb`` (personal contact columns left out) and
renamed over it. On POSIX a rename swaps the directory entry only: connections already open on
the old file keep reading the old inode until they reconnect, and a failed copy never touches
the published file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import duckdb

from marketing import warehouse

logger = logging.getLogger(__name__)

_TARGET = "analytics_copy"

DEFAULT_SCHEMAS: tuple[str, ...] = ("marts", "ml")
DEFAULT_DROP_COLUMNS: Mapping[str, Sequence[str]] = MappingProxyType(
    {"marts.dim_users": ("email", "phone", "first_name", "last_name", "postal_code")}
)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _copy_tables(
    con: duckdb.DuckDBPyConnection,
    source: str,
    schemas: Sequence[str],
    drop_columns: Mapping[str, Sequence[str]],
) -> dict[str, int]:
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() "
        "where database_name = ? and list_contains(?, schema_name) "
        "order by schema_name, table_name",
        [source, list(schemas)],
    ).fetchall()
    found_schemas = {schema for schema, _ in tables}
    for schema in schemas:
        if schema not in found_schemas:
            logger.warning("schema %s has no tables in the warehouse; nothing copied", schema)

    counts: dict[str, int] = {}
    for schema, table in tables:
        qualified = f"{schema}.{table}"
        columns = [
            row[0]
            for row in con.execute(
                "select column_name from duckdb_columns() "
                "where database_name = ? and schema_name = ? and table_name = ? "
                "order by column_index",
                [source, schema, table],
            ).fetchall()
        ]
        dropped = set(drop_columns.get(qualified, ()))
        kept = [c for c in columns if c not in dropped]
        if not kept:
            raise ValueError(
                f"drop_columns removes every column of {qualified}, got {sorted(dropped)}"
            )
        select_list = ", ".join(_quote(c) for c in kept)
        target = f"{_TARGET}.{_quote(schema)}.{_quote(table)}"
        con.execute(f"create schema if not exists {_TARGET}.{_quote(schema)}")
        con.execute(
            f"create table {target} as "
            f"select {select_list} from {_quote(source)}.{_quote(schema)}.{_quote(table)}"
        )
        counts[qualified] = con.execute(f"select count(*) from {target}").fetchone()[0]
    return counts


def publish_analytics_copy(
    warehouse_path: Path | str,
    analytics_path: Path | str,
    schemas: Sequence[str] = DEFAULT_SCHEMAS,
    drop_columns: Mapping[str, Sequence[str]] = DEFAULT_DROP_COLUMNS,
) -> dict[str, int]:
    """Copy the tables of ``schemas`` into a new DuckDB file and swap it onto ``analytics_path``.

    Parameters
    ----------
    warehouse_path : Path or str
        The pipeline's DuckDB file. It is opened with the pipeline's own connection settings
        (the DAG's writer pool guarantees no other writer meanwhile), so this also works in a
        process where dbt still holds the file open (``airflow dags test``); nothing is written
        to it.
    analytics_path : Path or str
        The analysts' copy; replaced atomically with ``os.replace``.
    schemas : sequence of str
        Schemas whose tables (not views) are copied.
    drop_columns : mapping of "schema.table" to column names
        Columns left out of the copy (personal data analysts do not need).

    Returns
    -------
    dict of str to int
        Rows per copied table, keyed ``"schema.table"`` in sorted order.

    Raises
    ------
    FileNotFoundError
        If ``warehouse_path`` does not exist.
    ValueError
        If dropping columns would leave a table with none.
    """
    warehouse_path = Path(warehouse_path).resolve()
    analytics_path = Path(analytics_path).resolve()
    if not warehouse_path.is_file():
        raise FileNotFoundError(f"warehouse not found: {warehouse_path}")
    if warehouse_path == analytics_path:
        raise ValueError(f"analytics_path must differ from warehouse_path, got {analytics_path}")
    analytics_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = analytics_path.with_name(f".{analytics_path.name}.tmp-{os.getpid()}")
    _remove(tmp_path)

    try:
        with warehouse.connect(warehouse_path) as con:
            source = con.execute("select current_database()").fetchone()[0]
            target = str(tmp_path).replace("'", "''")
            con.execute(f"attach '{target}' as {_TARGET}")
            try:
                counts = _copy_tables(con, source, schemas, drop_columns)
                con.execute(f"checkpoint {_TARGET}")
            finally:
                con.execute(f"detach {_TARGET}")
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, analytics_path)
    except BaseException:
        _remove(tmp_path)
        raise
    dir_fd = os.open(analytics_path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    logger.info("published analytics copy: %d tables", len(counts))
    return counts
