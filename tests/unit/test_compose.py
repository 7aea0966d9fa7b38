"""docker-compose.yml: valid against the compose-spec schema (offline) and wired as documented.

There is no Docker engine on the reference machine, so the file is validated, not run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer")


def _validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_spec():
    result = _validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: nginx\n    ports: 80\n    restart: sometimes\n")
    assert _validate(broken).returncode != 0


def test_image_is_official_airflow_plus_requirements():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.M)
    assert "requirements.txt" in dockerfile
    assert re.search(r"pip install .*-r .*requirements\.txt", dockerfile)


def test_services_postgres_and_init(compose):
    services = compose["services"]
    assert {"postgres", "airflow-init", *AIRFLOW_SERVICES} <= set(services)
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == "Dockerfile"
        env = service["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert service["depends_on"]["airflow-init"]["condition"] == (
            "service_completed_successfully"
        )
    commands = {name: services[name]["command"].split()[0] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-api-server": "api-server", "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
    }
    init = " ".join(services["airflow-init"]["command"])
    assert "db migrate" in init and "pools set duckdb_writer 1" in init


def test_project_folders_are_mounted(compose):
    mounts = {
        volume.split(":")[0] for volume in compose["services"]["airflow-scheduler"]["volumes"]
    }
    assert {"./dags", "./plugins", "./include", "./dbt_project", "./data"} <= mounts


def test_secrets_only_through_env_file(compose):
    text = COMPOSE.read_text()
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                "AIRFLOW__API__SECRET_KEY"):
        value = compose["services"]["airflow-scheduler"]["environment"][key]
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), (key, value)
    assert "POSTGRES_PASSWORD:?" in text
    example = (REPO_ROOT / ".env.example").read_text()
    for variable in re.findall(r"\$\{([A-Z_]+):\?", text):
        assert re.search(rf"^{variable}=", example, re.M), f"{variable} missing in .env.example"
    ignored = (REPO_ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored


def test_ui_published_on_loopback_only(compose):
    ports = compose["services"]["airflow-api-server"]["ports"]
    assert ports and all(str(p).startswith("127.0.0.1:") for p in ports)
    assert "ports" not in compose["services"]["postgres"]


def test_pipeline_settings_pass_through_from_env_file(compose):
    """The tunables read from the environment (README "Configuration") reach every Airflow
    container, with the documented defaults, and .env.example names them."""
    example = (REPO_ROOT / ".env.example").read_text()
    environment = compose["services"]["airflow-scheduler"]["environment"]
    for variable, default in (("MARKETING_RELAND_DAYS", "1"),
                              ("MARKETING_MODEL_REFIT_DAYS", "1"),
                              ("MARKETING_HISTORY_DAYS", "")):
        assert environment[variable] == f"${{{variable}:-{default}}}"
        assert re.search(rf"^{variable}={default}$", example, re.M), variable
