#!/usr/bin/env bash
# make airflow-stop: stop exactly the services scripts/airflow_up.sh started, by their pid
# files (each pid leads a process group holding that service's workers).
set -uo pipefail
source "$(dirname "$0")/airflow_env.sh"
RUN_DIR="$AIRFLOW_HOME/run"
stopped=0
for name in triggerer dag-processor scheduler api-server; do
    pid_file="$RUN_DIR/$name.pid"
    [[ -f "$pid_file" ]] || continue
    pid="$(cat "$pid_file")"
    # Only signal a live process that is still one of ours (a pid can be reused).
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "airflow"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
        fi
        # Workers of the group that outlived their leader.
        kill -KILL -- "-$pid" 2>/dev/null || true
        echo "stopped Airflow $name (pid $pid)"
        stopped=$((stopped + 1))
    fi
    rm -f "$pid_file"
done
((stopped)) || echo "no Airflow services were running for $AIRFLOW_HOME"
exit 0
