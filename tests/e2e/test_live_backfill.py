"""Backfills from the live services are point-in-time correct, visible, and gated.

One module-scoped session on tiny generated data (600 users, 120 items, 30 days):

1. reference: each date D1..D3 is run once on its own fresh warehouse (``airflow dags test``
   on the suite's own metadata DB, which no scheduler uses);
2. live: ``scripts/airflow_up.sh`` starts api-server, scheduler, dag-processor and triggerer in
   a tmp AIRFLOW_HOME on a free port; the test posts ``/api/v2/backfills`` for D1..D3 (what the
   UI's backfill button posts) and waits;
3. every date's tables and files must equal its reference run (``run_equivalence``): the
   first date in everything but the run id; later dates in everything but the outputs that are
   relative to the previous run by design (segment ids compared as the same cut of users,
   inherited names, migrations, publish deltas), and those must follow from the backfill's own
   previous date;
4. a headless Chromium screenshot of the DAG's runs page goes to ``data/reports/``;
5. a planted violation of a dbt test stops a run before anything is published, and the
   failure callback records it in ``ops.task_failures``.

The services are stopped afterwards, also when a test fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path

import pytest
from dbt_docs_check import undocumented
from live_airflow import LiveAirflow
from run_equivalence import (
    assert_follows_previous,
    assert_matches_reference,
    erased_users,
    snapshot,
)

from marketing.sample_data import generate
from marketing.warehouse import connect

pytestmark = [pytest.mark.e2e, pytest.mark.live]

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "segment_refresh"
SAMPLE = {"n_users": 600, "n_items": 120, "n_days": 30, "seed": 7, "end_date": date(2026, 9, 30)}
DATES = ["2026-09-28", "2026-09-29", "2026-09-30"]
PLANTED_DATE = "2026-10-01"
SCREENSHOT = REPO_ROOT / "data" / "reports" / "airflow_backfill_runs.png"
LOCK_ERRORS = re.compile(r"Could not set lock|Conflicting lock|database is locked", re.I)


def dates_in(data_dir: Path, table: str) -> int:
    with connect(data_dir / "warehouse.duckdb", read_only=True) as con:
        return con.execute(f"select count(distinct as_of_date) from {table}").fetchone()[0]


def copy_landing(sample: Path, data_dir: Path) -> Path:
    shutil.copytree(sample / "landing", data_dir / "landing")
    return data_dir


def run_reference(data_dir: Path, as_of: str) -> None:
    env = dict(os.environ, MARKETING_DATA_DIR=str(data_dir),
               MARKETING_WAREHOUSE=str(data_dir / "warehouse.duckdb"),
               MARKETING_ANALYTICS=str(data_dir / "analytics.duckdb"),
               AIRFLOW__COSMOS__ENABLE_TELEMETRY="False")
    result = subprocess.run(
        ["airflow", "dags", "test", DAG_ID, as_of],
        env=env, capture_output=True, text=True, timeout=1200,
    )
    output = result.stdout + result.stderr
    # `airflow dags test` exits 1 and prints "DagRun failed" when any task fails.
    assert result.returncode == 0 and "DagRun failed" not in output, output[-6000:]


@pytest.fixture(scope="module")
def live(airflow_db, tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    sample = root / "sample"
    generate(out_dir=sample, **SAMPLE)

    references = {}
    for as_of in DATES:
        data_dir = copy_landing(sample, root / f"reference-{as_of}")
        run_reference(data_dir, as_of)
        references[as_of] = snapshot(data_dir, as_of)

    data_dir = copy_landing(sample, root / "live-data")
    services = LiveAirflow(root / "airflow", data_dir, MARKETING_RETRY_DELAY_SECONDS="5")
    try:
        services.start()
        services.wait_for_dag(DAG_ID)
        started = time.monotonic()
        # Posted while the DAG is paused, then unpaused (LiveAirflow.backfill). Unpausing also
        # queues the latest scheduled interval (today): its data is weeks past the sample, so
        # the freshness gate fails it right after `land`, before anything is built or published.
        services.backfill(DAG_ID, DATES[0], DATES[-1])
        runs = services.wait_for_runs(DAG_ID, DATES, timeout=3600)
        wall_seconds = time.monotonic() - started
        print(f"\nlive backfill of {len(DATES)} dates: {wall_seconds:.0f} s")
        print("\n".join(services.restarts()) or "no service restarts")
        yield {
            "services": services,
            "data_dir": data_dir,
            "references": references,
            "runs": runs,
            "wall_seconds": wall_seconds,
            "live": {as_of: snapshot(data_dir, as_of) for as_of in DATES},
        }
    finally:
        print(services.stop())


def test_backfill_runs_all_succeed(live):
    states = {as_of: run["state"] for as_of, run in live["runs"].items()}
    assert states == dict.fromkeys(DATES, "success")
    assert all(run["run_type"] == "backfill" for run in live["runs"].values())


def test_no_duckdb_lock_errors(live):
    services = live["services"]
    hits = []
    for path in (services.airflow_home / "logs").rglob("*"):
        if path.is_file() and "run_id=backfill" in str(path):
            hits += [f"{path}: {line[:200]}" for line in path.read_text(errors="replace")
                     .splitlines() if LOCK_ERRORS.search(line)]
    assert hits == []
    with connect(live["data_dir"] / "warehouse.duckdb", read_only=True) as con:
        failed = con.execute(
            "select task_id, as_of_date, error from ops.task_failures "
            "where as_of_date between ? and ?",
            [date.fromisoformat(DATES[0]), date.fromisoformat(DATES[-1])],
        ).fetchall() if con.execute(
            "select count(*) from information_schema.tables where table_schema = 'ops'"
        ).fetchone()[0] else []
    assert failed == [], "backfill tasks failed (and were retried)"


@pytest.mark.parametrize("as_of", DATES)
def test_each_date_equals_a_single_run_on_a_fresh_warehouse(live, as_of):
    data_dir = live["data_dir"]
    reference = live["references"][as_of]
    # Tables rebuilt each run hold only the latest date: compare them for the last date only.
    current_state = set() if as_of == DATES[-1] else {
        t for t in reference.tables if dates_in(data_dir, t) == 1
    }
    # (Tiny sample: too few responders to train, so campaign scores may be empty.)
    core = ("marts.user_profiles", "ml.user_segments", "ml.item_neighbours",
            "ml.user_recommendations")
    assert all(len(reference.tables[t]) for t in core if t not in current_state)
    assert reference.files
    position = DATES.index(as_of)
    state = live["live"][as_of]
    assert_matches_reference(state, reference, first=position == 0, skip_tables=current_state,
                             erased=erased_users(data_dir))
    if position:
        assert_follows_previous(state, live["live"][DATES[position - 1]])


def test_runs_page_screenshot(live):
    services = live["services"]
    text = services.browse(f"/dags/{DAG_ID}/runs", screenshot=SCREENSHOT)
    assert DAG_ID in text
    for run in live["runs"].values():
        assert run["dag_run_id"] in text or run["logical_date"][:10] in text, text[:3000]
    assert SCREENSHOT.stat().st_size > 20_000  # a rendered page, not a blank one
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_make_docs_describes_every_mart_and_column(live):
    # What `make docs` runs, on the backfilled warehouse (idle now), into its data/reports/.
    env = dict(live["services"].env, AS_OF_DATE=DATES[-1])
    result = subprocess.run([str(REPO_ROOT / "scripts" / "dbt_docs.sh")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    docs = live["data_dir"] / "reports" / "dbt_docs"
    site = docs / "static_index.html"
    assert site.stat().st_size > 100_000 and b"user_profiles" in site.read_bytes()
    catalog = json.loads((docs / "catalog.json").read_text())
    assert any(k.endswith(".user_profiles") for k in catalog["nodes"])
    assert undocumented(docs) == []


def test_docs_check_reports_missing_descriptions(tmp_path):
    node = {"resource_type": "model", "original_file_path": "models/marts/x.sql", "name": "x",
            "description": "One row per user; a share_<category> column per category.",
            "columns": {"user_id": {"description": "Key."}, "spend": {"description": ""}}}
    (tmp_path / "manifest.json").write_text(json.dumps({"nodes": {"model.m.x": node}}))
    columns = {c: {} for c in ("user_id", "spend", "share_books", "extra")}
    (tmp_path / "catalog.json").write_text(
        json.dumps({"nodes": {"model.m.x": {"columns": columns}}})
    )
    assert undocumented(tmp_path) == ["x.extra", "x.spend"]


def test_failing_dbt_test_stops_run_before_publish(live):
    services, data_dir = live["services"], live["data_dir"]
    analytics = data_dir / "analytics.duckdb"
    before = hashlib.sha256(analytics.read_bytes()).hexdigest()
    # Plant a violation the land contract cannot see (it is already landed): a second row for
    # an existing user breaks stg_shop__users' unique test.
    with connect(data_dir / "warehouse.duckdb") as con:
        con.execute("insert into raw.users select * from raw.users order by user_id limit 1")
    services.backfill(DAG_ID, PLANTED_DATE, PLANTED_DATE)
    run = services.wait_for_runs(DAG_ID, [PLANTED_DATE], timeout=900)[PLANTED_DATE]
    assert run["state"] == "failed"
    tasks = {t["task_id"]: t["state"] for t in services.task_instances(DAG_ID, run["dag_run_id"])}
    failed = [t for t, s in tasks.items() if s == "failed"]
    # the staging views and their tests build in one task (dags/segment_refresh.py)
    assert failed == ["dbt_views"], tasks
    for step in ("segments", "publish", "analytics_snapshot"):
        assert tasks[step] in ("upstream_failed", None), (step, tasks[step])
    assert not list((data_dir / "outbox").rglob(f"*{PLANTED_DATE}*"))
    assert hashlib.sha256(analytics.read_bytes()).hexdigest() == before
    with connect(data_dir / "warehouse.duckdb", read_only=True) as con:
        recorded = con.execute(
            "select task_id, state, try_number, error from ops.task_failures "
            "where as_of_date = ? order by try_number",
            [date.fromisoformat(PLANTED_DATE)],
        ).fetchall()
    assert [(r[0], r[1]) for r in recorded] == [
        (failed[0], "up_for_retry"), (failed[0], "failed")
    ]
    assert all(r[3] for r in recorded)  # the error text is kept
