"""The DAG folder imports cleanly and the daily DAG is wired as the README says."""

from pathlib import Path

import pytest

from marketing.settings import AS_OF_DATE_ENV, TRAINING_MARTS_FROM_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_segment_refresh_structure(dagbag):
    dag = dagbag.get_dag("segment_refresh")
    assert dag is not None
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert {"marketing", "segments"} <= set(dag.tags)
    assert dag.doc_md and "point in time" in dag.doc_md
    task_ids = set(dag.task_ids)
    for expected in ("land", "segments", "recommendations", "response_scores",
                     "audience_definitions", "publish", "analytics_snapshot", "deliver"):
        assert expected in task_ids
    # Cosmos renders one task per dbt table; the views share one (test below).
    assert any(t.startswith("dbt_profiles.user_profiles") for t in task_ids)
    assert any(t.startswith("dbt_audiences.audience_members") for t in task_ids)
    for task in dag.tasks:
        assert task.pool == "duckdb_writer", f"{task.task_id} writes DuckDB outside the pool"
        assert task.retries >= 1
        assert task.owner == "marketing-data"


def test_order_land_dbt_ml_audiences_publish(dagbag):
    dag = dagbag.get_dag("segment_refresh")
    land = dag.get_task("land")
    downstream = {t.task_id for t in land.get_flat_relatives(upstream=False)}
    assert {"segments", "recommendations", "response_scores", "publish",
            "analytics_snapshot"} <= downstream
    publish = dag.get_task("publish")
    upstream = {t.task_id for t in publish.get_flat_relatives(upstream=True)}
    assert any(t.startswith("dbt_audiences.") for t in upstream)
    assert {"segments", "recommendations", "response_scores", "audience_definitions"} <= upstream
    assert dag.get_task("deliver").upstream_task_ids == {"publish"}


def test_views_build_in_one_task_before_the_tables(dagbag):
    """A view costs an Airflow task (3-5 s live) and no build time: the staging and
    intermediate views and their tests run in one `dbt build` (dbt_views); every table,
    incremental intermediate models included, keeps its own task after it."""
    dag = dagbag.get_dag("segment_refresh")
    views = dag.get_task("dbt_views")
    assert type(views).__name__ == "DbtBuildLocalOperator"
    assert views.select == ["tag:profiles,config.materialized:view"]
    assert views.upstream_task_ids == {"source_freshness"}
    group = [t for t in dag.tasks if t.task_id.startswith("dbt_profiles.")]
    names = {t.task_id.removeprefix("dbt_profiles.") for t in group}
    assert not any(name.startswith(("stg_", "int_events_as_of", "int_users_as_of"))
                   for name in names), names
    assert "int_user_daily_activity_model_build" in names  # incremental: a table
    roots = [t for t in group if not any(u.startswith("dbt_profiles.")
                                         for u in t.upstream_task_ids)]
    assert roots and all(t.upstream_task_ids == {"dbt_views"} for t in roots)
    assert views.downstream_task_ids == {t.task_id for t in roots}


def test_dbt_tasks_get_the_refit_plan(dagbag):
    """dbt keeps the training marts of the date plan_models names (refit cadence)."""
    dag = dagbag.get_dag("segment_refresh")
    dbt_tasks = [t for t in dag.tasks if t.task_id.startswith(("dbt_views", "dbt_profiles."))]
    assert dbt_tasks
    for task in dbt_tasks:
        assert task.env[TRAINING_MARTS_FROM_ENV] == (
            "{{ ti.xcom_pull(task_ids='plan_models') or '' }}")
        assert "env" in task.template_fields


def test_dbt_tasks_get_the_run_date_from_the_environment(dagbag):
    """D reaches the build tasks as MARKETING_AS_OF_DATE (templated) and no var at all: a var
    that changes every day would make every dbt task re-parse the whole project. Source
    freshness renders D while parsing (_shop__sources.yml), so it also gets the var."""
    dag = dagbag.get_dag("segment_refresh")
    dbt_tasks = [t for t in dag.tasks
                 if t.task_id.startswith(("dbt_views", "dbt_profiles.", "dbt_audiences."))]
    assert dbt_tasks
    for task in dbt_tasks:
        assert task.env[AS_OF_DATE_ENV] == "{{ ds }}"
        assert not task.vars
    freshness = dag.get_task("source_freshness")
    assert freshness.vars == {"as_of_date": "{{ ds }}"}
    assert freshness.env == dbt_tasks[0].env


def test_scheduled_dbt_tasks_skip_unit_tests_but_not_data_tests(dagbag):
    """Unit tests run in the test suite (tests/unit/test_dbt_project.py builds everything)."""
    dag = dagbag.get_dag("segment_refresh")
    dbt_tasks = [t for t in dag.tasks
                 if t.task_id.startswith(("dbt_views", "dbt_profiles.", "dbt_audiences."))]
    assert dbt_tasks
    for task in dbt_tasks:
        assert task.dbt_cmd_flags == ["--exclude-resource-type", "unit_test"]
    assert not dag.get_task("source_freshness").dbt_cmd_flags
    # models still run `dbt build`, so their data tests gate their children
    assert {type(t).__name__ for t in dbt_tasks} == {"DbtBuildLocalOperator",
                                                     "DbtTestLocalOperator"}


def test_domain_package_never_imports_airflow():
    offenders = [
        str(p)
        for p in (REPO_ROOT / "include" / "marketing").rglob("*.py")
        if any(line.strip().startswith(("import airflow", "from airflow"))
               for line in p.read_text().splitlines())
    ]
    assert offenders == []


def test_quality_gates_come_before_publish(dagbag):
    """Every dbt model/test task and the freshness check must succeed before anything is published."""
    dag = dagbag.get_dag("segment_refresh")
    publish = dag.get_task("publish")
    upstream = {t.task_id for t in publish.get_flat_relatives(upstream=True)}
    gates = [t.task_id for t in dag.tasks
             if t.task_id in ("source_freshness", "dbt_views")
             or t.task_id.startswith("dbt_profiles.")]
    assert {"source_freshness", "dbt_views"} <= set(gates) and len(gates) > 5
    assert set(gates) <= upstream
    freshness = dag.get_task("source_freshness")
    assert freshness.upstream_task_ids == {"plan_models"}
    assert dag.get_task("plan_models").upstream_task_ids == {"land"}
    assert {t.trigger_rule for t in dag.tasks} == {"all_success"}
    # Tests on two models run after both (not inside one parent's dbt build).
    detached = [t for t in dag.tasks if "relationships" in t.task_id]
    assert detached and all(len(t.upstream_task_ids) >= 2 for t in detached)


def test_every_task_records_its_failures(dagbag):
    dag = dagbag.get_dag("segment_refresh")
    for task in dag.tasks:
        names = {getattr(cb, "__name__", "") for cb in (task.on_failure_callback or [])}
        retry = {getattr(cb, "__name__", "") for cb in (task.on_retry_callback or [])}
        assert "record_failed" in names, task.task_id
        assert "record_up_for_retry" in retry, task.task_id
