"""Bounded history (``marketing.history``): which tables and run folders are pruned, by how
much, and when."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta

import duckdb
import pytest

from marketing import warehouse
from marketing.history import history_tables, prune_dated_folders, prune_history
from marketing.pipeline import publish_snapshot
from marketing.run_folders import dated_folders
from marketing.settings import Settings

D = date(2026, 9, 30)


def _build(path) -> None:
    with warehouse.connect(path) as con:
        con.execute("create schema ml; create schema marts")
        con.execute("create table ml.user_recommendations (user_id bigint, item_id bigint, "
                    "as_of_date date)")
        con.execute("create table ml.item_neighbours (item_id bigint, neighbour_item_id bigint, "
                    "as_of_date date)")
        con.execute("create table ml.model_runs (model varchar, metric varchar, value double, "
                    "as_of_date date)")
        con.execute("create table ml.published_members (channel varchar, user_id bigint, "
                    "as_of_date date)")
        con.execute("create table marts.dim_users (user_id bigint, as_of_date date)")
        con.execute("create table marts.user_profiles (user_id bigint, as_of_date date)")
        con.execute("create view marts.profiles_view as select * from marts.user_profiles")
        for back in range(6):
            day = D - timedelta(days=back)
            for user in range(back + 1):  # a different row count per date
                con.execute("insert into ml.user_recommendations values (?, 1, ?)", [user, day])
                con.execute("insert into ml.published_members values ('email', ?, ?)",
                            [user, day])
            con.execute("insert into ml.item_neighbours values (1, 2, ?)", [day])
            con.execute("insert into ml.model_runs values ('segments', 'k', 4, ?)", [day])
            # an older table: its own newest date counts, not the other tables'
            con.execute("insert into marts.user_profiles values (1, ?)",
                        [day - timedelta(days=30)])
        con.execute("insert into marts.dim_users values (1, ?), (2, ?)", [D, D])


def _dates(con, table: str) -> list[date]:
    return [r[0] for r in con.execute(
        f"select distinct as_of_date from {table} order by 1").fetchall()]


def test_prunes_per_user_and_per_item_tables_relative_to_their_newest_date(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    _build(path)
    with warehouse.connect(path) as con:
        assert history_tables(con) == [
            "marts.dim_users", "marts.user_profiles", "ml.item_neighbours",
            "ml.user_recommendations"]
        deleted = prune_history(con, keep_days=3)
        kept = [D - timedelta(days=back) for back in (2, 1, 0)]
        assert _dates(con, "ml.user_recommendations") == kept
        assert _dates(con, "ml.item_neighbours") == kept
        assert _dates(con, "marts.user_profiles") == [d - timedelta(days=30) for d in kept]
        # rows of dates D-5..D-3: 6 + 5 + 4 recommendations
        assert deleted == {"marts.user_profiles": 3, "ml.item_neighbours": 3,
                           "ml.user_recommendations": 15}
        # summaries and the publish history stay whole; a current-state mart loses nothing
        assert len(_dates(con, "ml.model_runs")) == 6
        assert len(_dates(con, "ml.published_members")) == 6
        assert con.execute("select count(*) from marts.dim_users").fetchone()[0] == 2
        assert prune_history(con, keep_days=3) == {}  # idempotent
        assert prune_history(con, keep_days=1)["ml.user_recommendations"] == 3 + 2
        with pytest.raises(ValueError, match="keep_days must be >= 1"):
            prune_history(con, keep_days=0)


def _built_settings(tmp_path, **overrides) -> Settings:
    """Settings on ``tmp_path`` with the :func:`_build` warehouse."""
    _build(tmp_path / "warehouse.duckdb")
    return Settings(data_dir=tmp_path, warehouse_path=tmp_path / "warehouse.duckdb",
                    analytics_path=tmp_path / "analytics.duckdb", **overrides)


def test_snapshot_prunes_before_copying_only_when_configured(tmp_path):
    settings = _built_settings(tmp_path)
    assert publish_snapshot(settings)["history_rows_deleted"] == 0
    bounded = dataclasses.replace(settings, history_days=2)
    assert publish_snapshot(bounded)["history_rows_deleted"] == 6 + 5 + 4 + 3 + 4 + 4
    with duckdb.connect(str(settings.analytics_path), read_only=True) as con:
        assert _dates(con, "ml.user_recommendations") == [D - timedelta(days=1), D]
        assert len(_dates(con, "ml.model_runs")) == 6


def test_history_days_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MARKETING_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MARKETING_HISTORY_DAYS", raising=False)
    assert Settings.from_env().history_days is None
    monkeypatch.setenv("MARKETING_HISTORY_DAYS", "35")
    assert Settings.from_env().history_days == 35
    monkeypatch.setenv("MARKETING_HISTORY_DAYS", "0")
    with pytest.raises(ValueError, match="MARKETING_HISTORY_DAYS must be an integer >= 1"):
        Settings.from_env()


def _dated(series, days, manifest_status=None) -> None:
    for day in days:
        folder = series / day.isoformat()
        folder.mkdir(parents=True)
        (folder / "file.csv").write_text("x\n")
        if manifest_status is not None:
            status = manifest_status(day)
            (folder / "manifest.json").write_text(json.dumps({"status": status}))


def _left(series) -> list[date]:
    return sorted(dated_folders(series))


def test_prune_dated_folders_counts_back_from_the_series_newest_folder(tmp_path):
    series = tmp_path / "series"
    _dated(series, [D - timedelta(days=back) for back in range(6)])
    (series / ".2026-09-20.tmp-1").mkdir()  # not a date: never touched
    (series / "notes").mkdir()
    (series / "2026-W38-1").mkdir()  # an ISO week date Python would parse
    (series / "2026-02-30").mkdir()
    (series / "2026-09-21").write_text("a file, not a run folder")
    deleted = prune_dated_folders(series, keep_days=3, keep=[D - timedelta(days=4), None])
    assert [p.name for p in deleted] == ["2026-09-25", "2026-09-27"]
    assert _left(series) == [D - timedelta(days=back) for back in (4, 2, 1, 0)]
    assert {p.name for p in series.iterdir()} >= {
        ".2026-09-20.tmp-1", "notes", "2026-09-21", "2026-W38-1", "2026-02-30"}
    assert prune_dated_folders(series, keep_days=3, keep=[D - timedelta(days=4)]) == []
    assert prune_dated_folders(tmp_path / "missing", keep_days=1) == []
    with pytest.raises(ValueError, match="keep_days must be >= 1"):
        prune_dated_folders(series, keep_days=0)


def test_snapshot_prunes_run_folders_but_keeps_what_later_runs_read(tmp_path):
    settings = _built_settings(tmp_path, model_refit_days=4)
    days = [D - timedelta(days=back) for back in range(6)]
    # e-mail: the last two days were below min_size, so D - 2 is the latest good publish
    email = settings.outbox_dir / "email" / "lapsed"
    _dated(email, days, lambda day: "skipped_below_min_size" if day >= D - timedelta(days=1)
           else "published")
    ads = settings.outbox_dir / "meta_ads" / "lapsed"
    _dated(ads, days, lambda day: "published")
    _dated(settings.models_dir / "segments", days)
    _dated(settings.reports_dir, days)
    before = {p for p in tmp_path.rglob("*")}
    assert publish_snapshot(settings, D)["history_folders_deleted"] == 0  # not configured
    assert {p for p in tmp_path.rglob("*")} >= before

    backfill = D - timedelta(days=4)  # a backfill's own folders stay, however old
    bounded = dataclasses.replace(settings, history_days=2)
    result = publish_snapshot(bounded, backfill.isoformat())
    assert _left(email) == [backfill, D - timedelta(days=2), D - timedelta(days=1), D]
    assert _left(ads) == [backfill, D - timedelta(days=1), D]
    # models keep the refit cadence's 4 days (a fit that later days reuse)
    assert _left(settings.models_dir / "segments") == days[:5][::-1]
    assert _left(settings.reports_dir) == [backfill, D - timedelta(days=1), D]
    assert result["history_folders_deleted"] == 2 + 3 + 1 + 3
