#!/usr/bin/env bash
# make demo: generate the default sample shop, run the daily DAG for its last day with
# `airflow dags test`, then print what it built and where.
set -euo pipefail
source "$(dirname "$0")/airflow_env.sh"
cd "$REPO_ROOT"

echo "==> generating the sample shop under $MARKETING_DATA_DIR/landing"
python -m marketing.sample_data --quiet
RUN_DATE="$(python -c 'import json,os; print(json.load(open(os.path.join(os.environ["MARKETING_DATA_DIR"], "landing", "_sample.json")))["end_date"])')"

echo "==> initialising Airflow (SQLite) in $AIRFLOW_HOME"
airflow_init

echo "==> running segment_refresh for $RUN_DATE (airflow dags test)"
airflow dags test segment_refresh "$RUN_DATE" >"$AIRFLOW_HOME/demo_run.log" 2>&1 \
    || { tail -n 80 "$AIRFLOW_HOME/demo_run.log"; echo "DAG run failed; full log: $AIRFLOW_HOME/demo_run.log"; exit 1; }

python -m marketing.summary "$RUN_DATE"
