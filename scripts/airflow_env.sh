# Source me: Airflow settings for this project (SQLite metadata DB, LocalExecutor, small
# parallelism, everything under a git-ignored AIRFLOW_HOME). Used by make demo/airflow and tests.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
# Every writing task shares the one-slot pool duckdb_writer anyway: 2 workers are plenty.
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-2}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
# Four services share that file: writers wait for each other instead of failing after 5 s.
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=sqlite_busy_timeout.CONNECT_ARGS
export AIRFLOW__OPENLINEAGE__DISABLED=True
# Offline by design: Cosmos must not phone home (its usage metrics) from every dbt task.
export AIRFLOW__COSMOS__ENABLE_TELEMETRY=False
# OpenMP threads spin-wait by default; on 2 shared cores that made K-Means 10x slower (bench/).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export DO_NOT_TRACK=1
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}"
# Live services (make airflow): API server and UI on loopback only; tasks reach the execution
# API there. The simple auth manager's one user is admin; its password is generated on first
# start into $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated.
export AIRFLOW_API_PORT="${AIRFLOW_API_PORT:-8080}"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$AIRFLOW_API_PORT"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$AIRFLOW_API_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW_API_PORT/execution/"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
# dbt ls runs when the DAG file is parsed (Cosmos): re-parse every 2 minutes, one process.
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=120
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1
# Parsing runs dbt ls twice (Cosmos): allow it time on a busy 2-core machine.
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=180
export AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT=240
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
export MARKETING_DATA_DIR="${MARKETING_DATA_DIR:-$REPO_ROOT/data}"
export MARKETING_WAREHOUSE="${MARKETING_WAREHOUSE:-$MARKETING_DATA_DIR/warehouse.duckdb}"
export PATH="$REPO_ROOT/.venv/bin:$PATH"
# The domain package of *this* checkout (also when another one is pip-installed -e) and
# plugins/, which Airflow needs before it opens its DB (sqlite_busy_timeout below).
export PYTHONPATH="$REPO_ROOT/include:$REPO_ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
# Secrets shared by the services (JWT signing, session key), generated once per AIRFLOW_HOME.
if [[ -f "$AIRFLOW_HOME/secrets.env" ]]; then
    # shellcheck disable=SC1091
    source "$AIRFLOW_HOME/secrets.env"
fi

airflow_secrets() {
    # Never committed, never printed: a file readable by its owner only.
    [[ -f "$AIRFLOW_HOME/secrets.env" ]] && return 0
    mkdir -p "$AIRFLOW_HOME"
    (
        umask 077
        python - >"$AIRFLOW_HOME/secrets.env" <<'PY'
import secrets
from cryptography.fernet import Fernet
print(f"export AIRFLOW__API_AUTH__JWT_SECRET={secrets.token_urlsafe(48)}")
print(f"export AIRFLOW__API__SECRET_KEY={secrets.token_urlsafe(32)}")
print(f"export AIRFLOW__CORE__FERNET_KEY={Fernet.generate_key().decode()}")
PY
    )
    # shellcheck disable=SC1091
    source "$AIRFLOW_HOME/secrets.env"
}

airflow_init() {
    # Metadata DB, secrets and the project's pool: nothing in Airflow is set up by hand.
    # (No Airflow connections are needed: every path comes from MARKETING_* variables.)
    mkdir -p "$AIRFLOW_HOME"
    airflow_secrets
    airflow db migrate >"$AIRFLOW_HOME/db_migrate.log" 2>&1 \
        || { cat "$AIRFLOW_HOME/db_migrate.log"; return 1; }
    airflow pools set duckdb_writer 1 "DuckDB allows one writing process" >/dev/null
}
