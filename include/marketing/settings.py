"""Runtime settings, read once from the environment into a frozen dataclass.

Every path the pipeline touches derives from ``MARKETING_DATA_DIR`` (default ``<repo>/data``),
so a test or a second deployment points the whole pipeline elsewhere with one variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

AS_OF_DATE_ENV = "MARKETING_AS_OF_DATE"
"""Environment variable giving dbt the run date D when no ``--vars '{as_of_date: ...}'`` is
passed (``dbt_project/macros/as_of_date.sql``). The DAG and the benchmark use it: dbt
re-parses the whole project whenever ``--vars`` change, while D read from the environment at
run time leaves the saved parse valid from one date to the next."""

TRAINING_MARTS_FROM_ENV = "MARKETING_TRAINING_MARTS_FROM"
"""Environment variable naming the fit date whose training marts dbt keeps (refit cadence;
empty = rebuild them) when no ``training_marts_from`` var is passed
(``dbt_project/macros/partitions.sql``); set like :data:`AS_OF_DATE_ENV`."""


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).resolve() if value else default


def _env_int(name: str, default: int | None, minimum: int) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


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
    # segments (issue 3): "kmeans", "ward", or "auto" = ward up to segment_ward_max_users
    segment_algorithm: str = "kmeans"
    segment_ward_max_users: int = 5000
    segment_match_max_distance: float = 1.0
    segment_picture_sample_size: int = 3000
    # campaign response scoring (#5): least responders / non-responders among treated sends to
    # train, and among control sends for the two-model uplift
    response_min_positives: int = 100
    response_min_negatives: int = 100
    uplift_min_positives: int = 30
    # recommendations (#4). Event weights and the half-life are dbt vars (event_weight_*,
    # interaction_half_life_days; the hold-out length is var evaluation_holdout_days = 7).
    neighbours_similarity: str = "cosine"  # "cosine", "jaccard" or "lift"
    neighbours_min_support: int = 1  # users who interacted with both items
    recommendations_method: str = "item_cf"  # or "user_cf" (sparse top-k similar users)
    recommendations_exclude_purchased: bool = True
    user_neighbours_k: int = 50
    evaluation_holdout_days: int = 7  # must equal dbt var evaluation_holdout_days
    # publish (#8): the audience x channel files are written by this many forked processes
    # (None = one per CPU; 1 = in the calling process), see marketing.processes
    publish_processes: int | None = None
    # bring your own shop data (#9): a source mapping YAML (env MARKETING_SOURCE_MAPPING; unset =
    # the native landing layout) and the late-data window: landing D re-lands D-N..D (env
    # MARKETING_RELAND_DAYS), so rows for a day that arrive in a later file are not lost.
    source_mapping_path: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["MARKETING_SOURCE_MAPPING"]).resolve()
            if os.environ.get("MARKETING_SOURCE_MAPPING")
            else None
        )
    )
    reland_days: int = field(
        default_factory=lambda: int(os.environ.get("MARKETING_RELAND_DAYS", "1"))
    )
    # model refit cadence (#8): 1 = segments, churn/spend and the response model are fitted on
    # every run date; N > 1 = a date reuses the newest fit of the N - 1 days before it (same
    # settings and library versions) and refits once that fit is N days old (env
    # MARKETING_MODEL_REFIT_DAYS). Everything is still scored on D's data.
    model_refit_days: int = field(
        default_factory=lambda: _env_int("MARKETING_MODEL_REFIT_DAYS", 1, minimum=1)
    )
    # bounded history (#8): keep N days of per-user/per-item partitions and of the runs'
    # dated folders under outbox/, models/, reports/ (env MARKETING_HISTORY_DAYS; unset = keep
    # everything), see marketing.history
    history_days: int | None = field(
        default_factory=lambda: _env_int("MARKETING_HISTORY_DAYS", None, minimum=1)
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model_refit_days, int) or self.model_refit_days < 1:
            raise ValueError(
                f"model_refit_days must be an integer >= 1, got {self.model_refit_days!r}"
            )
        if self.publish_processes is not None and (
                not isinstance(self.publish_processes, int) or self.publish_processes < 1):
            raise ValueError(
                f"publish_processes must be None or an integer >= 1, got {self.publish_processes!r}"
            )
        if self.history_days is not None and (
                not isinstance(self.history_days, int) or self.history_days < 1):
            raise ValueError(
                f"history_days must be None or an integer >= 1, got {self.history_days!r}"
            )

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
