"""scripts/airflow_supervise.sh: restart a crashed service, not a misconfigured one; stop cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SUPERVISE = REPO_ROOT / "scripts" / "airflow_supervise.sh"


def flaky_service(tmp_path: Path, fail_times: int) -> list[str]:
    """A command that exits 3 on its first ``fail_times`` starts and 0 afterwards."""
    script = tmp_path / "service.py"
    script.write_text(
        "import pathlib, sys\n"
        f"counter = pathlib.Path({str(tmp_path / 'starts')!r})\n"
        "starts = int(counter.read_text()) + 1 if counter.exists() else 1\n"
        "counter.write_text(str(starts))\n"
        f"sys.exit(3 if starts <= {fail_times} else 0)\n"
    )
    return [sys.executable, str(script)]


def supervise(command: list[str], min_uptime: str, timeout: float = 60):
    env = dict(os.environ, AIRFLOW_RESTART_MIN_UPTIME=min_uptime, AIRFLOW_RESTART_DELAY="0")
    return subprocess.run([str(SUPERVISE), "scheduler", *command], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_service_that_crashes_after_running_is_restarted(tmp_path):
    result = supervise(flaky_service(tmp_path, fail_times=2), min_uptime="0")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "starts").read_text() == "3"
    restarts = [line for line in result.stderr.splitlines() if "restarting" in line]
    assert len(restarts) == 2
    assert restarts[0].startswith("supervisor: scheduler exited with 3 after ")


def test_a_service_that_fails_on_start_is_not_restarted(tmp_path):
    result = supervise(flaky_service(tmp_path, fail_times=5), min_uptime="60")
    assert result.returncode == 3
    assert (tmp_path / "starts").read_text() == "1"
    assert "not restarting" in result.stderr


def test_sigterm_to_the_group_stops_the_service_without_a_restart(tmp_path):
    # The service traps SIGTERM and needs a moment to shut down: the supervisor waits for it.
    script = tmp_path / "slow_stop.py"
    marker = tmp_path / "stopped"
    script.write_text(
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(1)\n"
        f"    pathlib.Path({str(marker)!r}).write_text('graceful')\n"
        "    sys.exit(1)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, AIRFLOW_RESTART_MIN_UPTIME="0", AIRFLOW_RESTART_DELAY="0")
    process = subprocess.Popen(
        [str(SUPERVISE), "scheduler", sys.executable, str(script)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    stderr = process.communicate(timeout=30)[1]
    assert marker.read_text() == "graceful"  # the supervisor outlived the service's shutdown
    assert time.monotonic() - started >= 1
    assert "restarting" not in stderr
    assert process.returncode == 1
