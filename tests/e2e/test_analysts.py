"""Analysts query data/analytics.duckdb while the pipeline runs, and never get in its way.

An analyst's read-only connection stays open through a whole DAG run (``airflow dags test``
on tiny data): every query answers, without error, from the copy published before the run; the
run itself succeeds; after reconnecting the analyst sees the new date. DuckDB allows one
writer per file, so this holds only because the pipeline never writes the analysts' file in
place: it builds a new copy and swaps it in with a rename.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from datetime import date

import duckdb
import pytest

from marketing.sample_data import generate
from marketing.warehouse import CONNECTION_CONFIG, connect

pytestmark = pytest.mark.e2e

SAMPLE = {"n_users": 600, "n_items": 120, "n_days": 30, "seed": 7, "end_date": date(2026, 9, 30)}
FIRST, SECOND = date(2026, 9, 29), date(2026, 9, 30)
# Tables every run fills even on this tiny sample (too few responders to train a response
# model, so campaign scores and score-based audiences may be empty here).
QUERIES = (
    "select max(as_of_date) from ml.segments",
    "select max(as_of_date) from ml.user_recommendations",
    "select max(as_of_date) from marts.user_profiles",
    "select max(as_of_date) from ml.item_neighbours",
)


def _dag_test(env: dict[str, str], as_of: date) -> subprocess.Popen:
    # Output goes to a file, not a pipe: the test polls the reader while the run goes on and
    # does not drain a pipe meanwhile, and a run blocks once a pipe's 64 KiB buffer is full.
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(
        ["airflow", "dags", "test", "segment_refresh", as_of.isoformat()],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    process.log = log  # type: ignore[attr-defined]
    return process


def _finished_ok(process: subprocess.Popen, timeout: float = 600) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # never leave a stalled run behind
        raise
    process.log.seek(0)  # type: ignore[attr-defined]
    output = process.log.read()  # type: ignore[attr-defined]
    process.log.close()  # type: ignore[attr-defined]
    # `airflow dags test` exits 1 and prints "DagRun failed" when any task fails.
    assert process.returncode == 0 and "DagRun failed" not in output, output[-6000:]


@pytest.fixture(scope="module")
def env(airflow_db, tmp_path_factory) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("analysts")
    generate(out_dir=data_dir, **SAMPLE)
    return dict(
        os.environ,
        MARKETING_DATA_DIR=str(data_dir),
        MARKETING_WAREHOUSE=str(data_dir / "warehouse.duckdb"),
        MARKETING_ANALYTICS=str(data_dir / "analytics.duckdb"),
        AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",
    )


def test_open_reader_survives_a_whole_run_and_sees_new_date_after_reconnect(env):
    analytics = env["MARKETING_ANALYTICS"]
    _finished_ok(_dag_test(env, FIRST))

    analyst = duckdb.connect(analytics, read_only=True, config=dict(CONNECTION_CONFIG))
    try:
        seen, errors = set(), []
        run = _dag_test(env, SECOND)
        deadline = time.monotonic() + 600
        while run.poll() is None and time.monotonic() < deadline:
            for sql in QUERIES:
                try:
                    seen.add(analyst.execute(sql).fetchone()[0])
                except duckdb.Error as exc:  # an analyst would see this
                    errors.append(f"{sql}: {exc}")
            time.sleep(0.5)
        _finished_ok(run, timeout=60)  # the loop above already waited up to 600 s
        # The open connection still reads the copy it opened, consistently, after the swap.
        after = {analyst.execute(sql).fetchone()[0] for sql in QUERIES}
    finally:
        analyst.close()

    assert errors == []
    assert seen == {FIRST} and after == {FIRST}
    with connect(analytics, read_only=True) as reconnected:
        latest = {reconnected.execute(sql).fetchone()[0] for sql in QUERIES}
        columns = {r[0] for r in reconnected.execute("describe marts.dim_users").fetchall()}
    assert latest == {SECOND}
    assert "email" not in columns
