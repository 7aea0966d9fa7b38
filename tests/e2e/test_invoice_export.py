"""The daily pipeline on a retailer's invoice-lines export, with only a mapping file.

The fixture (``tests/fixtures/invoice_export/``: three daily CSVs shaped like a real export,
with cancellations, guests, a zero-price line, an exact duplicate, a negative quantity on a
sale and a late line) is mapped by ``mapping.yml`` alone: no code, no native landing zone.
Every step of the DAG runs as plain functions plus dbt (``dbtRunner``), three days in a row.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from marketing import pipeline
from marketing.land import LandingError
from marketing.settings import Settings
from marketing.summary import render
from marketing.warehouse import connect

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "invoice_export"
DAYS = (date(2026, 9, 28), date(2026, 9, 29), date(2026, 9, 30))
D = DAYS[-1]


def _dbt(settings: Settings, as_of: date, select: list[str]) -> None:
    # a separate process, as each Airflow task is: dbt-duckdb keeps its connection open for the
    # life of the process, and DuckDB refuses a read-only connection next to it (the summary's)
    dbt = Path(sys.executable).parent / "dbt"
    result = subprocess.run(
        [
            str(dbt), "build", "--select", *select,
            "--vars", f"{{as_of_date: {as_of.isoformat()}}}",
            "--project-dir", str(settings.dbt_project_dir),
            "--profiles-dir", str(settings.dbt_project_dir),
            "--target-path", str(settings.data_dir / "target"),
            "--log-path", str(settings.data_dir / "logs"),
            # dbt unit tests are CI tests on fixed fixtures (sample categories such as
            # share_books): they belong to `make test`, not to a run on a shop's own data
            "--exclude-resource-type", "unit_test",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]


def _run_day(settings: Settings, as_of: date) -> dict:
    landed = pipeline.land_day(as_of, settings)
    _dbt(settings, as_of, ["tag:profiles"])
    pipeline.build_segments(as_of, settings)
    pipeline.build_recommendations(as_of, settings)
    pipeline.score_campaigns(as_of, settings)
    pipeline.load_audience_definitions(as_of, settings)
    _dbt(settings, as_of, ["tag:audiences", "tag:post_ml"])
    pipeline.publish_audiences(as_of, f"test__{as_of.isoformat()}", settings)
    pipeline.publish_snapshot(settings)
    return landed


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("invoice_shop")
    exports = root / "exports"
    shutil.copytree(FIXTURE, exports)
    saved = {k: os.environ.get(k) for k in ("MARKETING_DATA_DIR", "MARKETING_WAREHOUSE",
                                            "MARKETING_SOURCE_MAPPING", "MARKETING_ANALYTICS")}
    os.environ.update(
        MARKETING_DATA_DIR=str(root / "data"),
        MARKETING_WAREHOUSE=str(root / "data" / "warehouse.duckdb"),
        MARKETING_ANALYTICS=str(root / "data" / "analytics.duckdb"),
        MARKETING_SOURCE_MAPPING=str(exports / "mapping.yml"),
    )
    try:
        settings = Settings.from_env()
        (root / "data").mkdir()
        landed = {day: _run_day(settings, day) for day in DAYS}
        yield settings, landed, exports
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _rows(settings: Settings, sql: str, params=None):
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()



def test_only_the_mapping_was_needed(shop):
    settings, landed, _ = shop
    assert settings.source_mapping_path is not None
    assert not settings.landing_dir.exists()  # no native landing zone
    assert landed[D]["mapped_rows"] > 0 and landed[D]["rows_loaded"] > 0


def test_real_world_semantics_reach_the_marts(shop):
    settings, _, _ = shop
    customers = {r[0] for r in _rows(settings, "select distinct user_id from raw.users")}
    profiled = {
        r[0]
        for r in _rows(settings, "select user_id from marts.user_profiles where as_of_date = ?", [D])
    }
    assert profiled == customers and None not in profiled  # guests never get a profile
    guests, cancelled = _rows(
        settings,
        "select count(*) filter (where is_guest), count(*) filter (where is_cancelled) "
        "from raw.orders",
    )[0]
    assert guests > 0 and cancelled == 1
    # guest orders stay for revenue / item statistics, with no user
    assert _rows(settings, "select count(*) from marts.fct_orders where user_id is null")[0][0] >= guests


def test_net_spend_subtracts_the_cancellation(shop):
    settings, _, _ = shop
    schema = [
        s for (s,) in _rows(
            settings,
            "select table_schema from information_schema.tables "
            "where table_name = 'int_orders_with_totals'",
        )
    ][0]
    (net, gross, cancelled_total) = _rows(
        settings,
        f"select sum(net_order_total), sum(order_total), "
        f"sum(order_total) filter (where is_cancelled) from {schema}.int_orders_with_totals",
    )[0]
    assert cancelled_total > 0
    assert net == gross - 2 * cancelled_total


def test_bad_lines_are_quarantined_with_the_shops_file_row_and_rule(shop):
    settings, landed, _ = shop
    rejected = set(
        _rows(settings, "select table_name, source_file, rule from raw.rejected_rows")
    )
    assert ("order_lines", "invoices_2026-09-30.csv", "negative_quantity") in rejected
    assert ("order_lines", "invoices_2026-09-29.csv", "duplicate_order_id_line_number") in rejected
    assert landed[D]["rejected_by_rule"]["negative_quantity"] == 1


def test_the_late_line_is_not_lost(shop):
    settings, _, _ = shop
    # invoice 536999 was made on 28 Sep (London) but arrived in the 29 Sep file
    assert _rows(settings, "select _partition_date, cast(ordered_at as date) from raw.orders "
                           "where order_id = 536999") == [(DAYS[1], DAYS[0])]
    assert _rows(settings, "select count(*) from marts.fct_orders where order_id = 536999") == [(1,)]


def test_ml_steps_and_publish_ran(shop):
    settings, _, _ = shop
    assert _rows(settings, "select count(*) from ml.segments where as_of_date = ?", [D])[0][0] >= 2
    assert _rows(settings, "select count(*) from ml.item_neighbours where as_of_date = ?", [D])[0][0] > 0
    assert _rows(settings, "select count(*) from ml.publish_log where as_of_date = ?", [D])[0][0] > 0


def test_summary_shows_rejected_rows_by_rule(shop):
    settings, _, _ = shop
    text = render(D, settings)
    assert "negative_quantity" in text and "guest orders" in text
    assert "absent sources (empty tables): campaigns, campaign_sends" in text


def test_a_broken_export_refuses_the_run_and_keeps_the_last_publish(shop):
    settings, _, exports = shop
    outbox = sorted(p for p in settings.outbox_dir.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in outbox}
    raw_before = _rows(settings, "select count(*) from raw.order_lines")
    broken = exports / "invoices_2026-10-01.csv"
    good = (exports / "invoices_2026-09-30.csv").read_text(encoding="utf-8")
    broken.write_text(good.replace("CustomerID", "Customer ID", 1), encoding="utf-8")
    try:
        with pytest.raises(LandingError, match=r"invoices_2026-10-01.csv.*'Customer ID' looks like"):
            pipeline.land_day(date(2026, 10, 1), settings)
    finally:
        broken.unlink()
    assert {p: p.read_bytes() for p in outbox} == before
    assert _rows(settings, "select count(*) from raw.order_lines") == raw_before
