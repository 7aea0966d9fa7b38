"""Runtime settings, read once from the environment into a frozen dataclass.

Every path the pipeline touches derives from ``MARKETING_DATA_DIR`` (default ``<repo>/data``),
so a test or a second deployment points the whole pipeline elsewhere with one variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).resolve() if value else default


@dataclass(frozen=True)
class Settings:
    """Paths and tunables of one deployment.

    Attributes
    ----------
    data_dir : Path
        Root of all runtime state (git-ignored).
    warehouse_path : Path
        The DuckDB file the pipeline writes (one writer at a time).
    analytics_path : Path
        The read-only copy analysts open; republished atomically after each run.
    """

    data_dir: Path
    warehouse_path: Path
    analytics_path: Path
    dbt_project_dir: Path = REPO_ROOT / "dbt_project"
    audiences_path: Path = REPO_ROOT / "include" / "audiences.yml"
    random_state: int = 7
    segment_k_range: tuple[int, int] = (3, 10)
    silhouette_sample_size: int = 5000
    neighbours_k: int = 20
    recommendations_n: int = 10

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def truth_dir(self) -> Path:
        return self.data_dir / "sample_truth"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = _env_path("MARKETING_DATA_DIR", REPO_ROOT / "data")
        return cls(
            data_dir=data_dir,
            warehouse_path=_env_path("MARKETING_WAREHOUSE", data_dir / "warehouse.duckdb"),
            analytics_path=_env_path("MARKETING_ANALYTICS", data_dir / "analytics.duckdb"),
            dbt_project_dir=_env_path("MARKETING_DBT_PROJECT_DIR", REPO_ROOT / "dbt_project"),
            audiences_path=_env_path(
                "MARKETING_AUDIENCES", REPO_ROOT / "include" / "audiences.yml"
            ),
        )
