"""
### Daily segment refresh

Turns the day's raw shop data into segments, recommendations, campaign scores and channel
audiences, point in time for the run's date D (`{{ ds }}`): nothing after D is read.

1. **land**: the landing zone's partitions dated on or before D into `raw` (bad rows to
   `raw.rejected_rows`; a structurally unusable file fails the run before anything is written).
   **plan_models** names the date whose fitted models D reuses under a refit cadence
   (`MARKETING_MODEL_REFIT_DAYS` > 1; by default none), so dbt keeps that date's training
   marts instead of rebuilding them. **source_freshness** then runs `dbt source freshness` as
   of D (not as of today, so backfills are judged fairly): D's events must have landed.
2. **dbt_views** builds the staging and intermediate views with their tests in one `dbt build`
   (a view costs nothing to build, a task 3-5 s); **dbt_profiles** then the tables
   (`user_profiles`, `user_item_interactions`, `fct_campaign_sends`, `dim_users`, ...), one
   Airflow task per model (Cosmos, `dbt build`, so each model's tests gate its children).
3. **segments / recommendations / response scores**: Python steps writing schema `ml`.
4. **dbt_audiences**: `audience_members` from `include/audiences.yml`.
5. **publish**: channel files under `data/outbox/`, then the analysts' read-only
   `data/analytics.duckdb` (with `MARKETING_HISTORY_DAYS` set, older per-user history and
   run folders are deleted first); **deliver** POSTs D's publishes to the webhook of connection
   `marketing_audience_webhook` (none defined: the files stay in the outbox for upload).

DuckDB allows one writing process, so every task that writes the warehouse runs in the one-slot
pool `duckdb_writer` and the DAG has `max_active_runs=1`: backfills run date after date.
Domain logic lives in `include/marketing/`; these tasks only call it.

**Quality gates.** Every dbt model runs with its tests (`dbt build` per model) and every task
needs all its upstream tasks to succeed, so a failing test or stale source stops the run before
`publish`: nothing reaches `outbox/` or the analysts' copy, and the last publish stays in place.
**Failures** (and retries) are recorded with task, date and error in `ops.task_failures`
(`python -m marketing.failures`); retry a failed task from the UI with *Clear*.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode, TestBehavior
from cosmos.operators.local import DbtBuildLocalOperator, DbtSourceLocalOperator

from marketing.settings import AS_OF_DATE_ENV, TRAINING_MARTS_FROM_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = Path(os.environ.get("MARKETING_DBT_PROJECT_DIR", REPO_ROOT / "dbt_project"))
DBT_EXECUTABLE = Path(os.environ.get("MARKETING_DBT_EXECUTABLE", REPO_ROOT / ".venv" / "bin" / "dbt"))
WRITER_POOL = "duckdb_writer"
# Seconds before a failed task is retried (the live tests shorten it to keep failures quick).
RETRY_DELAY = timedelta(seconds=int(os.environ.get("MARKETING_RETRY_DELAY_SECONDS", "60")))


def _failure_recorder(state: str):
    """A task callback writing the failed try to ``ops.task_failures`` (marketing.failures)."""

    def record(context) -> None:
        from marketing.failures import TaskFailure, record_failure

        ti = context["ti"]
        record_failure(
            TaskFailure.from_exception(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                as_of_date=context["ds"],
                try_number=ti.try_number,
                state=state,
                exception=context.get("exception"),
            )
        )

    record.__name__ = f"record_{state}"
    return record


DEFAULT_ARGS = {
    "owner": "marketing-data",
    "retries": 1,
    "retry_delay": RETRY_DELAY,
    "pool": WRITER_POOL,
    "on_failure_callback": _failure_recorder("failed"),
    "on_retry_callback": _failure_recorder("up_for_retry"),
}

PROFILE_CONFIG = ProfileConfig(
    profile_name="marketing",
    target_name="dev",
    profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml",
)
DBT_OPERATOR_ARGS = {
    # D and plan_models' date whose training marts D keeps ("" = rebuild them) reach dbt in
    # the environment, not as --vars: a new var value makes dbt re-parse the whole project in
    # every task, while values read at run time keep the saved parse valid across dates.
    "env": {AS_OF_DATE_ENV: "{{ ds }}",
            TRAINING_MARTS_FROM_ENV: "{{ ti.xcom_pull(task_ids='plan_models') or '' }}"},
    "pool": WRITER_POOL,
    "install_deps": False,
}


# The project and how to run dbt, for the operators outside the Cosmos groups.
DBT_COMMAND_ARGS = {
    "project_dir": str(DBT_PROJECT_DIR),
    "profile_config": PROFILE_CONFIG,
    "dbt_executable_path": str(DBT_EXECUTABLE),
    "invocation_mode": InvocationMode.DBT_RUNNER,
}
# Views cost nothing to build but an Airflow task each (a process, dbt's start-up and the
# scheduler's hand-over: 3-5 s on the live LocalExecutor), so they are built together.
VIEWS = "config.materialized:view"
# dbt's advice: unit tests (static inputs) belong in development and CI (`make test` builds
# the project with them), not in every scheduled run; data tests still gate.
DBT_BUILD_FLAGS = ["--exclude-resource-type", "unit_test"]


def _dbt_group(group_id: str, tags: list[str], exclude: list[str] | None = None) -> DbtTaskGroup:
    """One Airflow task per dbt model of ``tags`` (minus ``exclude``), each `dbt build`."""
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(DBT_PROJECT_DIR),
        profile_config=PROFILE_CONFIG,
        execution_config=ExecutionConfig(
            dbt_executable_path=str(DBT_EXECUTABLE), invocation_mode=InvocationMode.DBT_RUNNER
        ),
        render_config=RenderConfig(
            select=[f"tag:{tag}" for tag in tags],
            exclude=exclude or [],
            load_method=LoadMode.DBT_LS,
            test_behavior=TestBehavior.BUILD,
            # A test on two models (relationships) runs in its own task after both: inside one
            # parent's `dbt build` it would query the other before it exists on a fresh
            # warehouse (seen live when each view had its own task).
            should_detach_multiple_parents_tests=True,
            dbt_executable_path=str(DBT_EXECUTABLE),
        ),
        operator_args={**DBT_OPERATOR_ARGS, "dbt_cmd_flags": DBT_BUILD_FLAGS},
    )


@dag(
    dag_id="segment_refresh",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["marketing", "segments", "dbt"],
)
def segment_refresh():
    @task
    def land(ds: str | None = None) -> dict:
        from marketing.pipeline import land_day

        return land_day(ds)

    @task
    def plan_models(ds: str | None = None) -> str:
        # refit cadence: the date whose fits (and so training marts) D reuses, "" = none
        from marketing.pipeline import training_marts_to_keep

        return training_marts_to_keep(ds)

    @task
    def segments(ds: str | None = None) -> dict:
        from marketing.pipeline import build_segments

        return build_segments(ds)

    @task
    def recommendations(ds: str | None = None) -> dict:
        from marketing.pipeline import build_recommendations

        return build_recommendations(ds)

    @task
    def response_scores(ds: str | None = None) -> dict:
        from marketing.pipeline import score_campaigns

        return score_campaigns(ds)

    @task
    def audience_definitions(ds: str | None = None) -> dict:
        from marketing.pipeline import load_audience_definitions

        return load_audience_definitions(ds)

    @task
    def publish(ds: str | None = None, run_id: str | None = None) -> dict:
        from marketing.pipeline import publish_audiences

        return publish_audiences(ds, run_id)

    @task
    def deliver(ds: str | None = None) -> dict:
        # plugins/ is on sys.path in every Airflow process (and PYTHONPATH for make airflow)
        from audience_webhook_hook import AudienceWebhookHook

        from marketing.pipeline import deliver_audiences

        return deliver_audiences(ds, AudienceWebhookHook().get_destination())

    @task
    def analytics_snapshot(ds: str | None = None) -> dict:
        from marketing.pipeline import publish_snapshot

        return publish_snapshot(as_of_date=ds)

    # Point-in-time source freshness as of D (see _shop__sources.yml): error = stale = stop.
    freshness = DbtSourceLocalOperator(
        task_id="source_freshness",
        select=["source:shop"],
        # _shop__sources.yml renders D into the freshness query while parsing: a var here
        # (this task re-parses the project anyway; the build tasks' saved parse stays valid)
        vars={"as_of_date": "{{ ds }}"},
        **DBT_COMMAND_ARGS,
        **DBT_OPERATOR_ARGS,
    )
    # The staging and intermediate views with their data tests, in one `dbt build`: a failing
    # test stops the run here, as it stopped the view's own task before.
    views = DbtBuildLocalOperator(
        task_id="dbt_views",
        select=[f"tag:profiles,{VIEWS}"],
        dbt_cmd_flags=DBT_BUILD_FLAGS,
        **DBT_COMMAND_ARGS,
        **DBT_OPERATOR_ARGS,
    )
    profiles = _dbt_group("dbt_profiles", ["profiles"], exclude=[VIEWS])
    # Marts built on the ML outputs: audiences and anything else tagged post_ml.
    audiences = _dbt_group("dbt_audiences", ["audiences", "post_ml"])
    segment_step = segments()
    recommend_step = recommendations()
    score_step = response_scores()

    land() >> plan_models() >> freshness >> views >> profiles >> [segment_step, score_step]
    # Cold-start users get their segment's popular items: segments before recommendations.
    segment_step >> recommend_step
    [recommend_step, score_step] >> audience_definitions() >> audiences
    # Delivery only reads the outbox; it still takes the pool slot, like every task here.
    audiences >> publish() >> [analytics_snapshot(), deliver()]

segment_refresh()
