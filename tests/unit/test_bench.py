"""The benchmark harness (bench/run.py): result document, baselines, sampler, interruption.

The end-to-end check runs the real harness on a small preset (2,000 users, 240 items, 60 days:
about the smallest sample on which the response model trains); the rest are known-answer and
brute-force checks on the helpers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest
import scipy.sparse as sp

from marketing import warehouse
from marketing.sample_data import BENCH_VISIT_SCALE, SCALES, generate, main, resolve_sizes

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {"n_users": 2000, "n_items": 240, "n_days": 60}
D = date(2026, 9, 30)


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_run", REPO_ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench") / "work"
    patch = pytest.MonkeyPatch()
    for name in ("MARKETING_DATA_DIR", "MARKETING_WAREHOUSE"):  # run_benchmark sets them
        patch.setenv(name, str(work))
    patch.setitem(SCALES, "T", TINY)
    try:
        result = bench.run_benchmark("T", work, end_date=D, repeats=1, progress=False)
        yield result, work
    finally:
        patch.undo()


def test_result_has_the_contract_keys_and_every_stage(tiny_result):
    result, _ = tiny_result
    assert set(bench.RESULT_KEYS) <= set(result)
    assert list(result["stages"]) == list(bench.STAGES)
    assert list(result["incremental_stages"]) == list(bench.STAGES)
    assert all(seconds > 0 for seconds in result["stages"].values())
    # The stages run back to back: the total is their sum plus a little bookkeeping.
    assert sum(result["stages"].values()) <= result["total_wall_s"]
    assert result["total_wall_s"] < 1.05 * sum(result["stages"].values()) + 0.5
    assert result["incremental_day_s"] > 0
    assert list(result["incremental_reused_models_stages"]) == list(bench.STAGES)
    assert result["incremental_day_reused_models_s"] > 0
    assert result["sizes"]["n_users"] == TINY["n_users"]
    assert result["peak_rss_mb"] >= result["full_refresh_peak_rss_mb"] > 50
    assert list(result["stage_peak_rss_mb"]) == list(bench.STAGES)
    assert max(result["stage_peak_rss_mb"].values()) <= result["full_refresh_peak_rss_mb"]
    for key in ("incremental_stage_peak_rss_mb", "incremental_reused_models_stage_peak_rss_mb"):
        assert list(result[key]) == list(bench.STAGES)
        assert max(result[key].values()) <= result["peak_rss_mb"]
    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["libraries"]["duckdb"] == duckdb.__version__
    for stages, total in (("stage_cpu_s", "total_cpu_s"),
                          ("incremental_stage_cpu_s", "incremental_day_cpu_s"),
                          ("incremental_reused_models_stage_cpu_s",
                           "incremental_day_reused_models_cpu_s")):
        assert list(result[stages]) == list(bench.STAGES)
        assert all(seconds >= 0 for seconds in result[stages].values())
        assert result[total] == pytest.approx(sum(result[stages].values()), abs=0.01)
    # dbt and the fits do work in every pass; no pass can use more than every CPU all along
    assert result["stage_cpu_s"]["dbt_profiles"] > 0.1
    assert result["total_cpu_s"] <= machine["cpu_count"] * result["total_wall_s"] + 0.5


def test_comparisons_ran_on_the_real_matrix(tiny_result):
    result, _ = tiny_result
    n_users, n_items = result["matrix_shape"]
    assert 0 < n_users <= TINY["n_users"] and 0 < n_items <= TINY["n_items"]
    assert result["matrix_nnz"] > n_users
    # The timings are stored rounded to 1 ms and the ratio from the unrounded
    # timings: on the tiny matrix both take a few ms, so check the ratio lies in
    # the interval the rounded timings allow rather than recomputing it.
    ours, theirs, half_ms = result["neighbours_s"], result["implicit_cosine_s"], 0.0005
    low = max(ours - half_ms, 0) / (theirs + half_ms)
    high = (ours + half_ms) / max(theirs - half_ms, 1e-9)
    assert low * 0.999 <= result["neighbours_vs_implicit_ratio"] <= high * 1.001
    baseline = result["dense_user_user_baseline"]
    assert baseline["ran"] is True and baseline["dense_s"] > 0
    assert baseline["similarity_matrix_gb"] == round(n_users**2 * 8 / 1024**3, 2)


def test_incremental_day_landed_only_the_next_day(tiny_result):
    _, work = tiny_result
    with warehouse.connect(work / "warehouse.duckdb") as con:
        dates = con.execute(
            "select distinct as_of_date from ml.user_segments order by 1"
        ).fetchall()
        last_partition = con.execute(
            "select max(partition_date) from raw.load_log where table_name = 'events'"
        ).fetchone()[0]
    assert [row[0] for row in dates] == [D, date(2026, 10, 1)]
    assert last_partition == date(2026, 10, 1)


def test_second_incremental_run_reused_the_full_refresh_fits(tiny_result):
    result, work = tiny_result
    assert result["reuse_refit_days"] == bench.REUSE_REFIT_DAYS > 1
    next_day = date(2026, 10, 1)
    models = ("recommendations", "response", "segments", "user_predictions")
    reuse = bench.reuse_dir(work)

    def ages(data_dir):
        with warehouse.connect(data_dir / "warehouse.duckdb") as con:
            return con.execute(
                "select as_of_date, model, value from ml.model_runs "
                "where metric = 'model_age_days' order by all"
            ).fetchall()

    # the reuse pass ran D + 1 on a copy of D's state: it reused D's fits ...
    assert ages(reuse) == [(day, model, float(day == next_day))
                           for day in (D, next_day) for model in models]
    # ... while the default incremental day refitted everything in the work dir
    assert ages(work) == [(day, model, 0.0) for day in (D, next_day) for model in models]
    for model in models:
        assert [p.name for p in (reuse / "models" / model).iterdir()] == [D.isoformat()]
        assert sorted(p.name for p in (work / "models" / model).iterdir()) == [
            D.isoformat(), next_day.isoformat()]
    # the reuse pass told dbt to keep the training marts (they were built for D + 1 by the
    # pass before it, within [D, D + 1]: kept; tests/unit/test_scoring_quality.py checks dbt)
    assert result["reuse_training_marts_from"] == D.isoformat()


def test_incremental_days_reuse_dbts_saved_parse(tiny_result):
    """As in a deployment, D + 1 (either pass) finds the project parsed by the run for D:
    the date reaches dbt in the environment, and the reuse pass runs under the same path."""
    _, work = tiny_result
    for data_dir in (work, bench.reuse_dir(work)):
        runs = (data_dir / "target" / "logs" / "dbt.log").read_text().split("Running with dbt=")
        assert len(runs) == 5  # the log's head, then D and D + 1, profiles and audiences each
        assert "Starting full parse" in runs[1]
        for run in runs[2:]:
            assert "no changes found, skipping parsing" in run


def test_results_files_are_written_and_summarised(tiny_result, tmp_path):
    result, _ = tiny_result
    path = bench.write_results(result, tmp_path)
    assert json.loads(path.read_text())["stages"] == result["stages"]
    table = (tmp_path / "T.md").read_text()
    for stage in bench.STAGES:
        assert f"| {stage} |" in table
    summary = (tmp_path / "summary.md").read_text()
    assert "| **full refresh** |" in summary and summary.splitlines()[2] == "| stage | T |"
    assert f"| CPU s, incremental day | {result['incremental_day_cpu_s']:.1f} |" in summary
    cores = result["total_cpu_s"] / result["total_wall_s"]
    assert f"cores used on average: {cores:.2f} full refresh" in table


def _burn_cpu(seconds: float) -> int:
    count, stop = 0, time.process_time() + seconds
    while time.process_time() < stop:
        count += 1
    return count


def test_cpu_seconds_count_ended_child_processes():
    """The publish step's and the evaluation's forked workers are part of a stage's CPU."""
    from marketing.processes import process_map

    before = bench.cpu_seconds()
    process_map(_burn_cpu, [0.4, 0.4], 2)
    assert bench.cpu_seconds() - before >= 0.7


def _brute_force_user_user(x: np.ndarray, n: int) -> list[list[int]]:
    picks = []
    for u in range(x.shape[0]):
        scores = {}
        for i in range(x.shape[1]):
            if x[u, i] > 0:
                continue
            total = 0.0
            for v in range(x.shape[0]):
                nu, nv = np.sqrt((x[u] ** 2).sum()), np.sqrt((x[v] ** 2).sum())
                if v != u and nu > 0 and nv > 0:
                    total += float(x[u] @ x[v]) / (nu * nv) * x[v, i]
            scores[i] = total
        picks.append(sorted(scores, key=lambda i: (-scores[i], i))[:n])
    return picks


def test_dense_baseline_matches_brute_force():
    x = np.array(
        [
            [3.0, 0.0, 1.0, 0.0, 0.0, 0.0],
            [2.0, 1.0, 0.0, 0.0, 0.0, 0.5],
            [0.0, 0.0, 4.0, 2.0, 0.0, 0.0],
            [0.0, 5.0, 0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 3.0, 0.0, 2.0],
        ]
    )
    got = bench.dense_user_user_recommend(sp.csr_matrix(x), 2)
    assert got.tolist() == _brute_force_user_user(x, 2)


def test_dense_baseline_reports_memory_instead_of_running_above_s():
    class Matrix:
        shape = (bench.DENSE_BASELINE_MAX_USERS + 1, 10)

    baseline = bench.dense_baseline(Matrix(), 10, recommendations_s=1.0)
    assert baseline["ran"] is False
    assert baseline["similarity_matrix_gb"] == round(
        (bench.DENSE_BASELINE_MAX_USERS + 1) ** 2 * 8 / 1024**3, 2)


def test_rss_sampler_sees_an_allocation():
    with bench.RssSampler(interval_s=0.01) as sampler:
        before = sampler.peak_bytes
        block = np.ones(200 * 1024 * 1024 // 8)  # 200 MB, touched
        block.sum()
        del block
    assert sampler.peak_bytes - before > 150 * 1024 * 1024


def _allocate_in_a_child(seconds: float) -> int:
    block = np.ones(200 * 1024 * 1024 // 8)  # 200 MB the parent does not share
    time.sleep(seconds)
    return int(block.sum())


def test_rss_sampler_counts_what_child_processes_do_not_share():
    """The publish step's forked workers: their own pages count, the parent's shared ones
    do not count twice."""
    from marketing.processes import process_map

    shared = np.ones(300 * 1024 * 1024 // 8)  # touched by the parent only
    shared.sum()
    with bench.RssSampler(interval_s=0.01) as sampler:
        before = sampler.peak_bytes
        process_map(_allocate_in_a_child, [0.5, 0.5], 2)
    added = sampler.peak_bytes - before
    assert 300 * 1024 * 1024 < added < 600 * 1024 * 1024  # two children x 200 MB, not 2 x 500
    del shared


def test_a_failing_stage_is_named():
    with pytest.raises(bench.BenchError, match="stage 'land' failed: boom"):
        with bench._timed("land", {}):
            raise OSError("boom")


def test_ctrl_c_exits_130_without_results(monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_benchmark", interrupted)
    code = bench.main(["--scale", "S", "--work-dir", str(tmp_path / "w"),
                       "--results-dir", str(tmp_path / "r")])
    assert code == 130 and not (tmp_path / "r").exists()


def test_unknown_scale_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="scale must be one of"):
        bench.run_benchmark("XL", tmp_path)


def test_scale_presets_and_overrides():
    assert resolve_sizes("L") == {"n_users": 1_000_000, "n_items": 50_000, "n_days": 90,
                                  "visit_scale": BENCH_VISIT_SCALE}
    assert resolve_sizes("M", days=30, visit_scale=1.0) == {
        "n_users": 100_000, "n_items": 10_000, "n_days": 30, "visit_scale": 1.0}
    assert resolve_sizes(None) == {"n_users": 20_000, "n_items": 2_000, "n_days": 90,
                                   "visit_scale": 1.0}
    with pytest.raises(ValueError, match="got 'XL'"):
        resolve_sizes("XL")


def test_generator_cli_scale_and_clean_interrupt(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_generate(out_dir, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr("marketing.sample_data.generate", fake_generate)
    assert main(["--scale", "S", "--users", "500", "--out", str(tmp_path), "--quiet"]) == 130
    assert (seen["n_users"], seen["n_items"], seen["n_days"]) == (500, 2_000, 90)
    assert seen["visit_scale"] == BENCH_VISIT_SCALE
    assert capsys.readouterr().out == ""


def test_visit_scale_thins_events_and_is_recorded(tmp_path):
    sizes = {"n_users": 400, "n_items": 40, "n_days": 10}
    full = generate(tmp_path / "full", **sizes)
    thin = generate(tmp_path / "thin", **sizes, visit_scale=0.2)
    assert thin["users"] == full["users"]
    # Sign-up days stay visits, so the thinning is less than 5x but clearly there.
    assert thin["events"] < 0.6 * full["events"]
    meta = json.loads((tmp_path / "thin" / "landing" / "_sample.json").read_text())
    assert meta["visit_scale"] == 0.2
    assert "visit_scale" not in json.loads(
        (tmp_path / "full" / "landing" / "_sample.json").read_text())
    with pytest.raises(ValueError, match="visit_scale must be in"):
        generate(tmp_path / "bad", **sizes, visit_scale=1.5)
