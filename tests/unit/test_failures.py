"""The failure log behind the DAG's failure callback (marketing.failures)."""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import pytest

from marketing import failures, warehouse
from marketing.failures import TaskFailure, read_failures, record_failure
from marketing.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        warehouse_path=tmp_path / "warehouse.duckdb",
        analytics_path=tmp_path / "analytics.duckdb",
    )


def _failure(state="failed", try_number=2, exception=None) -> TaskFailure:
    return TaskFailure.from_exception(
        dag_id="segment_refresh", run_id="backfill__2026-09-29", task_id="dbt_profiles.x",
        as_of_date="2026-09-28", try_number=try_number, state=state,
        exception=exception if exception is not None else ValueError("unique test failed"),
    )


def test_records_task_date_and_error(settings):
    record_failure(_failure("up_for_retry", 1), settings, recorded_at=datetime(2026, 9, 29, 1))
    record_failure(_failure("failed", 2), settings, recorded_at=datetime(2026, 9, 29, 2))
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select task_id, as_of_date, try_number, state, error_type, error "
            "from ops.task_failures order by try_number"
        ).fetchall()
    assert rows == [
        ("dbt_profiles.x", date(2026, 9, 28), 1, "up_for_retry", "ValueError",
         "unique test failed"),
        ("dbt_profiles.x", date(2026, 9, 28), 2, "failed", "ValueError", "unique test failed"),
    ]
    latest = read_failures(settings.warehouse_path)
    assert list(latest["try_number"]) == [2, 1]


def test_long_errors_are_cut_and_states_checked():
    failure = _failure(exception=RuntimeError("x" * 10_000))
    assert len(failure.error) == failures.MAX_ERROR_CHARS and failure.error.endswith("...")
    assert _failure(exception="plain text").error_type is None
    with pytest.raises(ValueError, match="state must be"):
        _failure(state="success")


def test_no_failures_reads_empty(settings):
    warehouse.connect(settings.warehouse_path).__enter__().close()
    assert read_failures(settings.warehouse_path).empty


def test_locked_warehouse_is_retried_then_raises(settings, monkeypatch):
    calls = []

    def locked(*args, **kwargs):
        calls.append(1)
        raise duckdb.IOException("Could not set lock on file")

    monkeypatch.setattr(failures.warehouse, "connect", locked)
    monkeypatch.setattr(failures, "_LOCK_BACKOFF_SECONDS", 0.0)
    with pytest.raises(duckdb.IOException):
        record_failure(_failure(), settings)
    assert len(calls) == failures._LOCK_RETRIES
