"""Drive the live Airflow services of ``make airflow`` from tests: start, REST, screenshot, stop.

Used by test_live_backfill.py. Everything runs in a throwaway AIRFLOW_HOME and data dir on a
free loopback port; :meth:`LiveAirflow.stop` stops exactly the started processes (pid files).
"""

from __future__ import annotations

import html
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL_STATES = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(airflow_home: Path, data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of one isolated deployment (scripts/airflow_env.sh fills in the rest)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW__") and not k.startswith("MARKETING_")
    }
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW_API_PORT=str(port),
        MARKETING_DATA_DIR=str(data_dir),
        MARKETING_WAREHOUSE=str(data_dir / "warehouse.duckdb"),
        MARKETING_ANALYTICS=str(data_dir / "analytics.duckdb"),
        **extra,
    )
    return env


class LiveAirflow:
    """The four services of ``scripts/airflow_up.sh`` plus a small REST client."""

    def __init__(self, airflow_home: Path, data_dir: Path, **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.airflow_home = airflow_home
        self.env = service_env(airflow_home, data_dir, self.port, **extra_env)
        self._token: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        result = subprocess.run(
            [str(REPO_ROOT / "scripts" / "airflow_up.sh")],
            env=self.env, capture_output=True, text=True, timeout=400,
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow_up.sh failed:\n{result.stdout}\n{result.stderr}")

    def stop(self) -> str:
        result = subprocess.run(
            [str(REPO_ROOT / "scripts" / "airflow_down.sh")],
            env=self.env, capture_output=True, text=True, timeout=120,
        )
        return result.stdout + result.stderr

    def pids(self) -> dict[str, int]:
        run_dir = self.airflow_home / "run"
        return {p.stem: int(p.read_text()) for p in run_dir.glob("*.pid")}

    def log(self, service: str) -> Path:
        return self.airflow_home / "service-logs" / f"{service}.log"

    def check_alive(self) -> None:
        """Raise, with the end of its log, if a service (and its supervisor) has exited."""
        for service, pid in self.pids().items():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                tail = "\n".join(self.log(service).read_text(errors="replace").splitlines()[-40:])
                raise RuntimeError(
                    f"Airflow {service} exited; last lines of {self.log(service)}:\n{tail}"
                ) from None

    def restarts(self) -> list[str]:
        """The supervisor's restart lines (scripts/airflow_supervise.sh), all services."""
        return [
            f"{path.stem}: {line}"
            for path in sorted((self.airflow_home / "service-logs").glob("*.log"))
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith("supervisor: ")
        ]

    # -- REST --------------------------------------------------------------------------------
    def password(self) -> str:
        path = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text())["admin"]

    def token(self) -> str:
        if self._token is None:
            body = json.dumps({"username": "admin", "password": self.password()}).encode()
            request = urllib.request.Request(
                f"{self.url}/auth/token", data=body, method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self._token = json.load(response)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token()}",
                     "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def wait_for_dag(self, dag_id: str, timeout: float = 600) -> dict:
        """Wait until the dag-processor has parsed ``dag_id`` (Cosmos runs dbt ls on parse)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.api("GET", f"/dags/{dag_id}")
            if status == 200:
                return body
            time.sleep(3)
        errors = self.api("GET", "/importErrors")[1]
        raise TimeoutError(f"{dag_id} not parsed in {timeout}s; import errors: {errors}")

    def pause(self, dag_id: str, paused: bool) -> None:
        status, body = self.api("PATCH", f"/dags/{dag_id}", {"is_paused": paused})
        assert status == 200, body

    def backfill(self, dag_id: str, from_date: str, to_date: str) -> dict:
        """What the UI's backfill button posts (one run per logical date, one at a time), posted
        while the DAG is paused; the DAG is unpaused afterwards, so the runs start.

        The safe order on SQLite (README "Live services"): when SQLite is busy, Airflow 3.3
        answers 503 and deletes the runs of the backfill it had already committed; a scheduler
        that is scheduling one of them exits (ObjectDeletedError). The scheduler leaves a
        paused DAG's runs alone, so clicking again is harmless.
        """
        payload = {
            "dag_id": dag_id,
            "from_date": f"{from_date}T00:00:00Z",
            "to_date": f"{to_date}T00:00:00Z",
            "max_active_runs": 1,
            "reprocess_behavior": "none",
        }
        self.pause(dag_id, True)
        for _ in range(60):
            status, body = self.api("POST", "/backfills", payload)
            # 503: SQLite was busy (scheduler writing); 409: the scheduler has not yet marked
            # the previous backfill complete. A person would click again a little later.
            if status not in (503, 409):
                break
            time.sleep(3)
        if status != 200:
            raise RuntimeError(f"backfill {from_date}..{to_date} refused: {status} {body}")
        self.pause(dag_id, False)
        return body

    def runs(self, dag_id: str) -> list[dict]:
        status, body = self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")
        assert status == 200, body
        return body["dag_runs"]

    def wait_for_runs(self, dag_id: str, logical_dates: list[str], timeout: float) -> dict:
        """Poll until a run of every date ends; returns ``{date: run}``.

        Fails at once, naming the log, when a service is gone for good (a crash on start or a
        stop); a crash the supervisor restarted from only shows in :meth:`restarts`.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            found = {r["logical_date"][:10]: r for r in self.runs(dag_id)}
            wanted = {d: found.get(d) for d in logical_dates}
            if all(r and r["state"] in TERMINAL_STATES for r in wanted.values()):
                return wanted
            if time.monotonic() > deadline:
                states = {d: r and r["state"] for d, r in wanted.items()}
                raise TimeoutError(f"runs not finished in {timeout}s: {states}")
            time.sleep(5)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        quoted = urllib.request.quote(run_id, safe="")
        status, body = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=200"
        )
        assert status == 200, body
        return body["task_instances"]

    # -- a person's view ---------------------------------------------------------------------
    def browse(self, path: str, screenshot: Path | None = None) -> str:
        """Open ``path`` in headless Chromium, logged in; return the rendered page text.

        The UI keeps its JWT in the ``_token`` cookie (what the simple auth manager's login form
        sets). Cookies are per host, not per port, so a one-shot local page on another loopback
        port sets that cookie and redirects to the UI: Chromium then opens the page logged in.
        """
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise FileNotFoundError("chromium not found: apt-get install -y chromium")
        target = f"{self.url}{path}"
        login = _CookieLogin(self.token(), target)
        with login:
            flags = [
                chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-default-apps", "--disable-sync",
                "--no-first-run", "--hide-scrollbars", "--mute-audio",
                "--window-size=1600,1000", "--virtual-time-budget=20000",
                f"--user-data-dir={self.airflow_home / 'chromium-profile'}",
            ]
            dom = subprocess.run(
                flags + ["--dump-dom", login.url], capture_output=True, text=True, timeout=180
            )
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                shot = subprocess.run(
                    flags + [f"--screenshot={screenshot}", login.url],
                    capture_output=True, text=True, timeout=180,
                )
                if shot.returncode != 0 or not screenshot.is_file():
                    raise RuntimeError(f"screenshot failed: {shot.stderr[-2000:]}")
        if dom.returncode != 0:
            raise RuntimeError(f"chromium failed: {dom.stderr[-2000:]}")
        return page_text(dom.stdout)


def page_text(dom: str) -> str:
    """Visible text of an HTML document (scripts and styles dropped, whitespace collapsed)."""
    dom = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", dom)
    text = html.unescape(re.sub(r"(?s)<[^>]+>", " ", dom))
    return re.sub(r"\s+", " ", text).strip()


class _CookieLogin:
    """A one-request local server: sets the ``_token`` cookie, redirects to the target."""

    def __init__(self, token: str, target: str) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                outer.hits += 1
                self.send_response(302)
                self.send_header("Set-Cookie", f"_token={token}; Path=/; SameSite=Lax")
                self.send_header("Location", target)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.hits = 0
        self._server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/login"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> _CookieLogin:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
