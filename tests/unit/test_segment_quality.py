"""Segments recover the planted personas at the demo size (slow: ~2-4 min on 2 cores).

Generates the demo shop (20,000 users, 2,000 items, 90 days, seed 7) in a temporary folder,
lands it, builds the ``profiles`` dbt models in process, runs the segment step and compares
``ml.user_segments`` with ``sample_truth/personas.parquet`` (never loaded into the warehouse).
"""

from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from marketing import warehouse
from marketing.pipeline import build_segments, land_day
from marketing.sample_data import main as sample_main
from marketing.settings import Settings

dbt_main = pytest.importorskip("dbt.cli.main")

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
END = date(2026, 9, 30)


@pytest.mark.slow
def test_demo_size_segments_match_planted_personas(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    assert sample_main(["--users", "20000", "--items", "2000", "--days", "90", "--seed", "7",
                        "--end-date", END.isoformat(), "--out", str(data_dir), "--quiet"]) == 0
    monkeypatch.setenv("MARKETING_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MARKETING_WAREHOUSE", str(data_dir / "warehouse.duckdb"))
    settings = Settings.from_env()
    land_day(END, settings)
    result = dbt_main.dbtRunner().invoke([
        "build", "--select", "tag:profiles", "--vars", f"{{as_of_date: '{END.isoformat()}'}}",
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
        "--quiet",
    ])
    assert result.success, f"dbt build failed: {result.exception}"

    started = time.perf_counter()
    output = build_segments(END, settings)
    seconds = time.perf_counter() - started

    truth = pd.read_parquet(data_dir / "sample_truth" / "personas.parquet")
    # not read_only: dbt ran in this process and DuckDB refuses a second mode for one file
    with warehouse.connect(settings.warehouse_path) as con:
        segments = warehouse.read_frame(
            con, "select user_id, segment_id from ml.user_segments where as_of_date = ?", [END]
        )
        names = warehouse.read_frame(
            con, "select segment_name from ml.segments where as_of_date = ?", [END]
        )
    merged = truth.merge(segments, on="user_id")
    assert len(merged) >= 0.95 * len(truth)  # erased users have no profile
    ari = adjusted_rand_score(merged["persona"], merged["segment_id"])
    print(f"demo size: ARI {ari:.3f}, silhouette {output['silhouette']}, "  # noqa: T201
          f"k {output['segments']}, segment step {seconds:.1f} s, cpus {os.cpu_count()}")
    assert ari >= 0.8
    assert 0.0 < output["silhouette"] <= 1.0
    assert names["segment_name"].is_unique
    assert Path(output["picture"]).stat().st_size > 20_000
