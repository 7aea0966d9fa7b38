"""Analysts' copy: tables copied, PII dropped, swapped atomically under open readers."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from marketing.snapshot import publish_analytics_copy


def _make_warehouse(path: Path, users: int = 3) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema marts")
        con.execute("create schema ml")
        con.execute("create schema raw")
        con.execute(
            "create table marts.dim_users as select range as user_id, "
            "'u' || range || '@example.com' as email, '+1415555' || range as phone, "
            "'First' as first_name, 'Last' as last_name, 'US' as country, 'SF' as city, "
            "'94100' as postal_code, true as is_email_opt_in from range(?)",
            [users],
        )
        con.execute("create table marts.user_profiles as select range as user_id from range(5)")
        con.execute("create table ml.segments as select 1 as segment_id, 'loyal' as segment_name")
        con.execute("create view marts.v_users as select user_id from marts.dim_users")
        con.execute("create table raw.users as select 'secret@example.com' as email")
    finally:
        con.close()


def _tables(path: Path) -> dict[str, list[str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "select schema_name || '.' || table_name, column_name from duckdb_columns() "
            "where database_name = current_database() order by 1, column_index"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def test_copy_has_tables_rows_and_no_pii(tmp_path):
    warehouse, analytics = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    _make_warehouse(warehouse)
    counts = publish_analytics_copy(warehouse, analytics)
    assert counts == {"marts.dim_users": 3, "marts.user_profiles": 5, "ml.segments": 1}
    tables = _tables(analytics)
    assert set(tables) == set(counts)  # no views, no other schemas
    assert tables["marts.dim_users"] == ["user_id", "country", "city", "is_email_opt_in"]
    assert b"@example.com" not in analytics.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analytics.duckdb", "warehouse.duckdb"]


def test_open_reader_keeps_working_across_swap(tmp_path):
    warehouse, analytics = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    _make_warehouse(warehouse, users=3)
    publish_analytics_copy(warehouse, analytics)

    reader = duckdb.connect(str(analytics), read_only=True)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, duckdb
                con = duckdb.connect(sys.argv[1], read_only=True)
                q = "select count(*) from marts.dim_users"
                print(con.execute(q).fetchone()[0], flush=True)
                sys.stdin.readline()  # wait for the swap
                print(con.execute(q).fetchone()[0], flush=True)
                """
            ),
            str(analytics),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "3"

        warehouse.unlink()
        _make_warehouse(warehouse, users=7)
        publish_analytics_copy(warehouse, analytics)

        # Old readers still see the old copy, intact; new readers see the new one.
        assert reader.execute("select count(*) from marts.dim_users").fetchone()[0] == 3
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "3"
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
        reader.close()
    fresh = duckdb.connect(str(analytics), read_only=True)
    try:
        assert fresh.execute("select count(*) from marts.dim_users").fetchone()[0] == 7
    finally:
        fresh.close()


def test_failure_mid_copy_keeps_previous_file(tmp_path):
    warehouse, analytics = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    _make_warehouse(warehouse)
    publish_analytics_copy(warehouse, analytics)
    before = analytics.read_bytes()

    con = duckdb.connect(str(warehouse))
    con.execute("alter table ml.segments add column bad integer")
    con.execute("insert into ml.segments values (2, 'new', 1)")
    con.close()
    with pytest.raises(ValueError, match="every column of ml.segments"):
        # Fails on the last table, after the others were copied into the temp file.
        publish_analytics_copy(
            warehouse,
            analytics,
            drop_columns={"ml.segments": ("segment_id", "segment_name", "bad")},
        )
    assert analytics.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["analytics.duckdb", "warehouse.duckdb"]


def test_failure_at_swap_keeps_previous_file(tmp_path, monkeypatch):
    warehouse, analytics = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    _make_warehouse(warehouse)
    publish_analytics_copy(warehouse, analytics)
    before = analytics.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        publish_analytics_copy(warehouse, analytics, drop_columns={})
    monkeypatch.undo()
    assert analytics.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["analytics.duckdb", "warehouse.duckdb"]


def test_missing_warehouse(tmp_path):
    with pytest.raises(FileNotFoundError, match="warehouse not found"):
        publish_analytics_copy(tmp_path / "nope.duckdb", tmp_path / "analytics.duckdb")
