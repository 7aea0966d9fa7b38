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


def _history_warehouse(path: Path) -> None:
    """Two dates of per-user rows, users with an erasure flag, a table without dates."""
    _change(
        path,
        "create schema marts",
        "create schema ml",
        "create table marts.dim_users as select range as user_id, 'u' || range || "
        "'@example.com' as email, range = 99 as is_erased from range(6)",
        "create table ml.user_scores as select d::date as as_of_date, u as user_id, "
        "'note-' || d || '-' || u as note, u * 0.5 as score "
        "from (values ('2026-01-01'), ('2026-01-02')) t(d), range(6) r(u)",
        "create table ml.model_runs as select 'x' as model, 0.5 as auc",
    )


def _rows(path: Path) -> dict[str, list[tuple]]:
    """Every copied table's rows, sorted (the physical order is not part of the contract)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() order by 1"
        ).fetchall()]
        return {t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def _change(path: Path, *statements: str) -> None:
    con = duckdb.connect(str(path))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


@pytest.mark.parametrize(
    ("statements", "replaced"),
    [
        ([], 0),
        # a new day lands; a re-run rewrites one day; history pruning drops one
        (["insert into ml.user_scores select '2026-01-03', user_id, note, score "
          "from ml.user_scores where as_of_date = '2026-01-02'"], 1),
        (["update ml.user_scores set score = -1 where as_of_date = '2026-01-02' "
          "and user_id = 3"], 1),
        (["delete from ml.user_scores where as_of_date = '2026-01-01'"], 1),
        # a table without dates changes as a whole; a table appears, one disappears
        (["insert into ml.model_runs values ('y', 0.7)"], 1),
        (["create table ml.new_table as select 1 as a", "drop table ml.model_runs"], 0),
        # a new column: that table is copied whole
        (["alter table ml.user_scores add column extra integer default 7"], 0),
    ],
)
def test_incremental_copy_equals_a_full_copy(tmp_path, caplog, statements, replaced):
    warehouse, analytics = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    _history_warehouse(warehouse)
    publish_analytics_copy(warehouse, analytics)
    _change(warehouse, *statements)
    caplog.set_level("INFO", logger="marketing.snapshot")
    counts = publish_analytics_copy(warehouse, analytics)
    assert f"{replaced} partitions replaced" in caplog.text
    fresh = tmp_path / "fresh.duckdb"
    assert counts == publish_analytics_copy(warehouse, fresh, incremental=False)
    assert _rows(analytics) == _rows(fresh)
    assert "marts.dim_users" in _rows(analytics)
    assert "email" not in str(_tables(analytics)["marts.dim_users"])


def test_an_erasure_makes_a_fresh_copy_without_the_users_old_rows(tmp_path, caplog):
    warehouse, analytics = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    _history_warehouse(warehouse)
    publish_analytics_copy(warehouse, analytics)
    assert b"note-2026-01-01-4" in analytics.read_bytes()
    # user 4 is erased: the warehouse drops their rows from every date
    _change(warehouse, "update marts.dim_users set is_erased = true where user_id = 4",
            "delete from ml.user_scores where user_id = 4")
    caplog.set_level("INFO", logger="marketing.snapshot")
    publish_analytics_copy(warehouse, analytics)
    assert "erased users changed" in caplog.text
    assert b"note-2026-01-01-4" not in analytics.read_bytes()  # not even in a freed block


def test_an_unreadable_published_copy_is_replaced_by_a_full_copy(tmp_path, caplog):
    warehouse, analytics = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    _history_warehouse(warehouse)
    analytics.write_bytes(b"not a duckdb file")
    counts = publish_analytics_copy(warehouse, analytics)
    assert "unreadable" in caplog.text
    assert counts["ml.user_scores"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analytics.duckdb", "warehouse.duckdb"]
