#!/usr/bin/env bash
# Run one Airflow service and restart it when it exits with an error, like the compose file's
# `restart: always`. scripts/airflow_up.sh starts each service through this script.
#
#   airflow_supervise.sh NAME COMMAND [ARGS...]
#
# - A service that fails within AIRFLOW_RESTART_MIN_UPTIME seconds (default 30) of its start is
#   not restarted: that is a configuration error, and the script exits with its code.
# - A service that ran longer is restarted after AIRFLOW_RESTART_DELAY seconds (default 5).
#   Example: the Airflow 3.3 scheduler can exit on SQLite with `ObjectDeletedError ... DagRun
#   ... has been deleted`; queued runs go on once it is back.
# - SIGTERM/SIGINT (scripts/airflow_down.sh signals the whole process group) wait for the
#   service to shut down gracefully. The script then exits without a restart.
# Each restart is logged on stderr as "supervisor: NAME exited with CODE after S s; restarting".
set -uo pipefail
name="$1"
shift
min_uptime="${AIRFLOW_RESTART_MIN_UPTIME:-30}"
delay="${AIRFLOW_RESTART_DELAY:-5}"
stopping=0
child=""
trap 'stopping=1' TERM INT

while true; do
    started=$SECONDS
    "$@" </dev/null &
    child=$!
    # `wait` returns early when a trapped signal arrives: wait until the service has exited.
    while true; do
        wait "$child"
        code=$?
        kill -0 "$child" 2>/dev/null || break
    done
    uptime=$((SECONDS - started))
    if ((stopping)); then
        exit "$code"
    fi
    if ((code == 0)); then
        exit 0
    fi
    if ((uptime < min_uptime)); then
        echo "supervisor: $name exited with $code after $uptime s (under ${min_uptime} s);" \
            "not restarting" >&2
        exit "$code"
    fi
    echo "supervisor: $name exited with $code after $uptime s; restarting in $delay s" >&2
    sleep "$delay" &
    wait $! || true
    ((stopping)) && exit "$code"
done
