#!/usr/bin/env bash
# make airflow: start the real Airflow 3 services (api-server, scheduler, dag-processor,
# triggerer) on LocalExecutor + SQLite, bound to 127.0.0.1, no log servers. Each runs in its own
# process group with a pid file under $AIRFLOW_HOME/run/, so scripts/airflow_down.sh stops
# exactly these processes. A service that crashes after starting is restarted
# (scripts/airflow_supervise.sh). Waits until the API answers and the scheduler is healthy.
set -euo pipefail
source "$(dirname "$0")/airflow_env.sh"
cd "$REPO_ROOT"
RUN_DIR="$AIRFLOW_HOME/run"
LOG_DIR="$AIRFLOW_HOME/service-logs"
SERVICES=(api-server scheduler dag-processor triggerer)
mkdir -p "$RUN_DIR" "$LOG_DIR" "$MARKETING_DATA_DIR"

for name in "${SERVICES[@]}"; do
    pid_file="$RUN_DIR/$name.pid"
    if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "Airflow $name is already running (pid $(cat "$pid_file")); make airflow-stop first." >&2
        exit 1
    fi
done
if (exec 3<>"/dev/tcp/127.0.0.1/$AIRFLOW_API_PORT") 2>/dev/null; then
    echo "port $AIRFLOW_API_PORT on 127.0.0.1 is in use; set AIRFLOW_API_PORT" >&2
    exit 1
fi

airflow_init

start() {
    local name="$1"
    shift
    # setsid: the service, its workers and its supervisor (restarts it after a crash, like
    # compose's `restart: always`) form one process group led by the recorded pid.
    setsid "$REPO_ROOT/scripts/airflow_supervise.sh" "$name" airflow "$@" \
        >"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
}
start api-server api-server --host 127.0.0.1 --port "$AIRFLOW_API_PORT" --workers 1
start scheduler scheduler --skip-serve-logs
start dag-processor dag-processor
start triggerer triggerer --skip-serve-logs

URL="http://127.0.0.1:$AIRFLOW_API_PORT"
deadline=$((SECONDS + ${AIRFLOW_START_TIMEOUT:-180}))
until python - "$URL" <<'PY' 2>/dev/null
import json, sys, urllib.request
health = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v2/monitor/health", timeout=5))
sys.exit(0 if health["scheduler"]["status"] == "healthy" else 1)
PY
do
    for name in "${SERVICES[@]}"; do
        if ! kill -0 "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null; then
            echo "Airflow $name exited; last log lines ($LOG_DIR/$name.log):" >&2
            tail -n 40 "$LOG_DIR/$name.log" >&2
            "$REPO_ROOT/scripts/airflow_down.sh" >/dev/null || true
            exit 1
        fi
    done
    if ((SECONDS > deadline)); then
        echo "Airflow did not become healthy in time; logs in $LOG_DIR" >&2
        "$REPO_ROOT/scripts/airflow_down.sh" >/dev/null || true
        exit 1
    fi
    sleep 2
done

cat <<MSG
Airflow is up: $URL  (DAG: $URL/dags/segment_refresh)
  user:     admin
  password: in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
  logs:     $LOG_DIR (services), $AIRFLOW_HOME/logs (tasks)
  data:     $MARKETING_DATA_DIR
Stop with: make airflow-stop
MSG
