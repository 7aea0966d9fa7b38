# Source me: Airflow settings for this project (SQLite metadata DB, LocalExecutor, small
# parallelism, everything under a git-ignored AIRFLOW_HOME). Used by make demo/airflow and tests.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__OPENLINEAGE__DISABLED=True
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}"
export MARKETING_DATA_DIR="${MARKETING_DATA_DIR:-$REPO_ROOT/data}"
export MARKETING_WAREHOUSE="${MARKETING_WAREHOUSE:-$MARKETING_DATA_DIR/warehouse.duckdb}"
export PATH="$REPO_ROOT/.venv/bin:$PATH"

airflow_init() {
    mkdir -p "$AIRFLOW_HOME"
    airflow db migrate >"$AIRFLOW_HOME/db_migrate.log" 2>&1 \
        || { cat "$AIRFLOW_HOME/db_migrate.log"; return 1; }
    airflow pools set duckdb_writer 1 "DuckDB allows one writing process" >/dev/null
}
