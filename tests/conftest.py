"""Test-wide setup: an isolated Airflow home and data dir, set before anything imports airflow."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="marketing-tests-"))

# Same settings as scripts/airflow_env.sh, pointed at a throwaway home.
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow' / 'airflow.db'}",
        "AIRFLOW__OPENLINEAGE__DISABLED": "True",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "OMP_WAIT_POLICY": "PASSIVE",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "MARKETING_DATA_DIR": str(_HOME / "data"),
        "MARKETING_WAREHOUSE": str(_HOME / "data" / "warehouse.duckdb"),
        "PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
)
for _leaky in ("MARKETING_ANALYTICS", "MARKETING_SOURCE_MAPPING", "MARKETING_RELAND_DAYS", "MARKETING_AUDIENCES"):
    os.environ.pop(_leaky, None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB with the project's pool (once per session)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(["airflow", "db", "migrate"], check=True, capture_output=True)
    subprocess.run(
        ["airflow", "pools", "set", "duckdb_writer", "1", "DuckDB allows one writing process"],
        check=True,
        capture_output=True,
    )
    return home
