"""Benchmark the daily refresh at a chosen scale, in process (no Airflow).

``python bench/run.py --scale S|M|L [--work-dir DIR] [--results-dir bench/results]``
(``make bench SCALE=S``).

1. **generate** a fresh sample of the preset (``marketing.sample_data.SCALES``) with one day
   more than the preset, ending on D + 1, in a subprocess (its memory is not the refresh's);
2. **full refresh for D** (the landing zone's D + 1 partitions are not read: ``land`` never
   reads after D): land -> dbt ``tag:profiles`` -> segments -> recommendations -> scores ->
   audience definitions -> dbt ``tag:audiences tag:post_ml`` -> publish -> snapshot, through
   the functions of ``marketing.pipeline`` and dbt's ``dbtRunner``, each stage timed;
3. **incremental day**: the same steps for D + 1 on the same warehouse (only D + 1's
   partitions are landed); then D + 1 with ``model_refit_days`` = :data:`REUSE_REFIT_DAYS`
   (a day of a refit cycle that reuses D's segment, churn/spend and response fits:
   ``incremental_day_reused_models_s``) on a copy of the state after D, made before the
   incremental day (not timed; ``<work-dir>-reuse``), so it lands and publishes D + 1 for
   the first time too;
4. **comparisons** on D's ``marts.user_item_interactions``: our item neighbours against
   implicit's ``CosineRecommender`` on the same matrix, and the seed's dense user x user
   cosine recommender (run at S only; above S its memory need is reported instead).

Peak RSS is sampled (psutil, 20 Hz) over steps 2-3 (dbt and DuckDB run in this process).
The DAG runs every stage in its own task process; to measure each stage's own memory rather
than the heap earlier stages left behind, the harness collects garbage and hands freed heap
back to the OS (glibc ``malloc_trim``) between stages. A stage's peak still counts everything
it holds, and the process's own ``ru_maxrss`` is reported beside it.
Writes ``<results-dir>/<scale>.json`` and ``<scale>.md`` and refreshes ``summary.md`` from
every ``*.json`` there. Ctrl-C stops cleanly (exit status 130, no results written).
"""

from __future__ import annotations

import os

# OpenMP threads that busy-wait (libgomp's default) collapse when the cores are shared: on
# this 2-core machine at load ~10, K-Means in the segments step took 36 s with the default
# policy and 3.6 s with PASSIVE (2,000 users). Must be set before numpy/sklearn load libgomp;
# an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import date, datetime, timedelta, timezone  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from unittest import mock  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from tqdm import tqdm  # noqa: E402

from marketing.sample_data import DEFAULT_END_DATE, SCALES  # noqa: E402
from marketing.settings import AS_OF_DATE_ENV, TRAINING_MARTS_FROM_ENV  # noqa: E402

# The result files (bench/bench_report.py), also when this file is imported by path (tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import render_markdown, write_results  # noqa: E402

logger = logging.getLogger("bench")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_KEYS = (
    "total_wall_s",
    "peak_rss_mb",
    "stages",
    "neighbours_vs_implicit_ratio",
    "incremental_day_s",
    "machine",
)
REUSE_REFIT_DAYS = 7
"""Refit cadence of the second incremental-day measurement (the default is 1: refit daily)."""

STAGES = (
    "land",
    "dbt_profiles",
    "segments",
    "recommendations",
    "scores",
    "audience_definitions",
    "dbt_audiences",
    "publish",
    "snapshot",
)
DENSE_BASELINE_MAX_USERS = 20_000
"""Run the seed's dense user x user recommender only up to this many users (S)."""
LIBRARIES = (
    "duckdb", "dbt-core", "dbt-duckdb", "pandas", "numpy", "scipy", "scikit-learn", "pyarrow",
    "implicit", "sparse_dot_topn",
)
_MB = 1024 * 1024


class BenchError(RuntimeError):
    """A benchmark stage failed (the message names the stage)."""


class RssSampler:
    """Peak resident memory of this process plus the memory its child processes do not share
    with it (USS: the publish step's forked workers share the parent's pages until they write
    them), sampled on a daemon thread."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_bytes = self._process.memory_info().rss
        self.window_peak_bytes = self.peak_bytes

    def _resident(self) -> int:
        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_full_info().uss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass  # gone between the listing and the read
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = self._resident()
            self.peak_bytes = max(self.peak_bytes, rss)
            self.window_peak_bytes = max(self.window_peak_bytes, rss)

    def start_window(self) -> None:
        """Start a new window for :attr:`window_peak_bytes` (the peak of one stage)."""
        self.window_peak_bytes = self._resident()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / _MB, 1)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended (the
    publish step's and the recommendations' evaluation's forked processes are waited for)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@contextmanager
def _timed(
    name: str,
    timings: dict[str, float],
    bar: tqdm | None = None,
    sampler: RssSampler | None = None,
    peaks: dict[str, float] | None = None,
    cpu: dict[str, float] | None = None,
) -> Iterator[None]:
    if bar is not None:
        bar.set_postfix_str(name)
    if sampler is not None:
        sampler.start_window()
    cpu_started = cpu_seconds()
    started = time.perf_counter()
    try:
        yield
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise BenchError(f"stage {name!r} failed: {exc}") from exc
    timings[name] = round(time.perf_counter() - started, 3)
    if cpu is not None:
        cpu[name] = round(cpu_seconds() - cpu_started, 3)
    if sampler is not None and peaks is not None:
        peaks[name] = round(max(sampler.window_peak_bytes,
                                sampler._process.memory_info().rss) / _MB, 1)
    logger.info("%s: %.2f s", name, timings[name])
    if bar is not None:
        bar.update(1)


def dbt_build(selectors: list[str], as_of: date, settings, target_dir: Path,
              training_marts_from: str = "") -> list[dict]:
    """``dbt build --select <selectors>`` for D in process; returns per-node timings.

    As the DAG: D and ``training_marts_from`` (the plan's fit date whose training marts dbt
    keeps, "" = rebuild them) go in the environment, not in ``--vars``: a new var value
    would make dbt re-parse the whole project.

    Raises
    ------
    BenchError
        If dbt reports a failed model or test.
    """
    from dbt.cli.main import dbtRunner

    args = [
        # as the DAG: unit tests run in the test suite, not in the scheduled refresh
        "build", "--select", *selectors, "--exclude-resource-type", "unit_test",
        "--project-dir", str(settings.dbt_project_dir),
        "--profiles-dir", str(settings.dbt_project_dir),
        "--target-path", str(target_dir),
        "--log-path", str(target_dir / "logs"),
        "--quiet",
    ]
    with mock.patch.dict(os.environ, {AS_OF_DATE_ENV: as_of.isoformat(),
                                      TRAINING_MARTS_FROM_ENV: training_marts_from}):
        result = dbtRunner().invoke(args)
    _close_dbt_duckdb()
    if not result.success:
        raise BenchError(f"dbt build {' '.join(selectors)} failed for {as_of}: {result.exception}")
    nodes = []
    for node in getattr(result.result, "results", None) or []:
        nodes.append({
            "node": node.node.unique_id,
            "name": node.node.name,
            "seconds": round(float(node.execution_time), 3),
        })
    return nodes


def _close_dbt_duckdb() -> None:
    """Close the DuckDB instance dbt-duckdb keeps open for the rest of the process.

    Its buffer pool (up to ``memory_limit``) would otherwise stay resident beside the later
    stages; in the DAG every dbt task is its own process and releases it on exit.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
            DuckDBConnectionManager._ENV = None


def refresh(
    as_of: date,
    settings,
    bar: tqdm | None = None,
    sampler: RssSampler | None = None,
    peaks: dict[str, float] | None = None,
    overhead: dict[str, float] | None = None,
    cpu: dict[str, float] | None = None,
) -> tuple[dict, list[dict]]:
    """Every stage of the DAG for ``as_of``; returns (stage seconds, dbt node timings).

    With ``sampler`` and ``peaks``, each stage's peak RSS (MB) is stored in ``peaks``; with
    ``overhead``, the seconds spent releasing heap between stages add up in
    ``overhead["heap_release_s"]`` (harness time, not part of any stage); with ``cpu``, each
    stage's CPU seconds (:func:`cpu_seconds`) are stored in ``cpu``.
    """
    from marketing import pipeline

    timings: dict[str, float] = {}
    target_dir = settings.data_dir / "target"
    nodes: list[dict] = []
    run_id = f"bench__{as_of.isoformat()}"
    planned: dict[str, str] = {}

    def plan() -> str:
        # as the DAG: plan_models runs once, before dbt; both dbt groups get its date
        if not planned:
            planned["training_marts_from"] = pipeline_plan(as_of, settings)
        return planned["training_marts_from"]

    steps: list[tuple[str, Callable[[], object]]] = [
        ("land", lambda: pipeline.land_day(as_of, settings)),
        ("dbt_profiles", lambda: nodes.extend(
            {**n, "stage": "dbt_profiles"}
            for n in dbt_build(["tag:profiles"], as_of, settings, target_dir, plan()))),
        ("segments", lambda: pipeline.build_segments(as_of, settings)),
        ("recommendations", lambda: pipeline.build_recommendations(as_of, settings)),
        ("scores", lambda: pipeline.score_campaigns(as_of, settings)),
        ("audience_definitions", lambda: pipeline.load_audience_definitions(as_of, settings)),
        ("dbt_audiences", lambda: nodes.extend(
            {**n, "stage": "dbt_audiences"}
            for n in dbt_build(["tag:audiences", "tag:post_ml"], as_of, settings, target_dir,
                               plan()))),
        ("publish", lambda: pipeline.publish_audiences(as_of, run_id, settings)),
        ("snapshot", lambda: pipeline.publish_snapshot(settings, as_of)),
    ]
    for name, step in steps:
        with _timed(name, timings, bar, sampler, peaks, cpu):
            step()
        started = time.perf_counter()
        release_free_heap()
        if overhead is not None:
            overhead["heap_release_s"] = round(
                overhead.get("heap_release_s", 0.0) + time.perf_counter() - started, 3)
    return timings, nodes


@dataclasses.dataclass
class MeasuredPass:
    """One pass of :func:`refresh` with what the benchmark records of it."""

    stages: dict[str, float]
    dbt_nodes: list[dict]
    wall_s: float  # the stages back to back, without the harness's heap release
    heap_release_s: float  # between-stage garbage collection and malloc_trim
    peak_rss_mb: dict[str, float]
    cpu_s: dict[str, float]


def measured_pass(as_of: date, settings, bar: tqdm, sampler: RssSampler) -> MeasuredPass:
    """:func:`refresh` of ``as_of`` with its wall time, stage peaks and CPU seconds."""
    harness: dict[str, float] = {}
    peaks: dict[str, float] = {}
    cpu: dict[str, float] = {}
    started = time.perf_counter()
    stages, nodes = refresh(as_of, settings, bar, sampler, peaks, harness, cpu)
    wall_s = round(time.perf_counter() - started - harness["heap_release_s"], 3)
    return MeasuredPass(stages, nodes, wall_s, harness["heap_release_s"], peaks, cpu)


def release_free_heap() -> None:
    """Collect garbage and return freed heap pages to the OS (glibc only; else a no-op).

    Between stages only, standing in for the DAG's one process per task (see the module
    docstring).
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def generate_sample(scale: str, data_dir: Path, end_date: date) -> dict:
    """Generate the preset plus one day (ending ``end_date``) in a subprocess."""
    preset = SCALES[scale]
    command = [
        sys.executable, "-m", "marketing.sample_data",
        "--users", str(preset["n_users"]), "--items", str(preset["n_items"]),
        "--days", str(preset["n_days"] + 1), "--end-date", end_date.isoformat(),
        "--visit-scale", str(preset.get("visit_scale", 1.0)),
        "--out", str(data_dir),
    ]
    # The generator shows its own tqdm bar (with ETA) when stderr is a terminal.
    completed = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise BenchError(f"sample generation for scale {scale} exited {completed.returncode}")
    return json.loads(completed.stdout)


def _user_item_matrix(settings, as_of: date):
    from marketing import warehouse
    from marketing.interactions import interaction_matrix
    from marketing.pipeline import read_interactions

    with warehouse.connect(settings.warehouse_path) as con:
        interactions = read_interactions(con, as_of)
    if interactions.empty:
        raise BenchError(f"marts.user_item_interactions has no rows for {as_of}")
    return interaction_matrix(interactions)


def _best_of(repeats: int, func: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - started)
    return best


def compare_neighbours(matrix, k: int, repeats: int) -> dict:
    """Our ``item_neighbours`` against implicit's ``CosineRecommender`` on the same matrix.

    implicit keeps each item itself among its K neighbours, so it is asked for ``k + 1``.
    The ratio is ours / implicit (below 1: ours is faster).
    """
    from implicit.nearest_neighbours import CosineRecommender

    from marketing.neighbours import item_neighbours

    user_items = sp.csr_matrix(matrix.strength, dtype=np.float32)

    def run_implicit() -> None:
        CosineRecommender(K=k + 1).fit(user_items, show_progress=False)

    ours_s = _best_of(repeats, lambda: item_neighbours(matrix, k=k))
    implicit_s = _best_of(repeats, run_implicit)
    return {
        "neighbours_s": round(ours_s, 3),
        "implicit_cosine_s": round(implicit_s, 3),
        "neighbours_vs_implicit_ratio": round(ours_s / implicit_s, 3),
        "matrix_shape": list(matrix.shape),
        "matrix_nnz": int(matrix.strength.nnz),
    }


def dense_user_user_recommend(strength, n: int) -> np.ndarray:
    """The seed's approach: dense user x user cosine, scores = similarity @ interactions.

    Returns the top-``n`` item column indices per user (items the user touched excluded).
    Needs ``n_users ** 2 * 8`` bytes for the similarity matrix: bench-only brute force.
    """
    dense = strength.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    unit = np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, 0.0)
    scores = similarity @ dense
    scores[dense > 0] = -np.inf
    top = np.argpartition(-scores, n, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def dense_baseline(matrix, n: int, recommendations_s: float) -> dict:
    """Run the dense baseline when small enough; otherwise report the memory it needs."""
    n_users = int(matrix.shape[0])
    need = n_users * n_users * 8
    result = {
        "n_users": n_users,
        "similarity_matrix_gb": round(need / 1024**3, 2),
        "ours_recommendations_stage_s": recommendations_s,
    }
    if n_users > DENSE_BASELINE_MAX_USERS:
        result["ran"] = False
        return result
    started = time.perf_counter()
    dense_user_user_recommend(matrix.strength, n)
    dense_s = time.perf_counter() - started
    result.update(ran=True, dense_s=round(dense_s, 3),
                  dense_vs_ours_ratio=round(dense_s / recommendations_s, 2))
    return result


def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": versions,
    }


def _settings_for(data_dir: Path):
    from marketing.settings import Settings

    os.environ["MARKETING_DATA_DIR"] = str(data_dir)
    os.environ["MARKETING_WAREHOUSE"] = str(data_dir / "warehouse.duckdb")  # dbt's profile
    os.environ.pop("MARKETING_ANALYTICS", None)
    return Settings.from_env()


def run_benchmark(
    scale: str,
    work_dir: Path,
    *,
    end_date: date = DEFAULT_END_DATE,
    repeats: int = 3,
    progress: bool = True,
) -> dict:
    """Generate, refresh D, refresh D + 1 and compare; returns the result document.

    Parameters
    ----------
    scale : {"S", "M", "L"} or a key added to ``SCALES``
        Sample size preset.
    work_dir : Path
        Data directory, emptied first.
    end_date : datetime.date
        D, the full-refresh date; the sample runs to D + 1 for the incremental day.
    repeats : int
        Best-of repeats for the neighbour comparison.
    progress : bool
        tqdm bar over the stages (with ETA).

    Raises
    ------
    ValueError
        If ``scale`` is unknown.
    BenchError
        If a stage fails.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    work_dir = Path(work_dir).resolve()
    for directory in (work_dir, reuse_dir(work_dir), _parked_dir(work_dir)):
        if directory.exists():
            shutil.rmtree(directory)
    work_dir.mkdir(parents=True)
    settings = _settings_for(work_dir)
    machine = machine_info()
    next_day = end_date + timedelta(days=1)

    started = time.perf_counter()
    sample = generate_sample(scale, work_dir, next_day)
    generate_s = round(time.perf_counter() - started, 3)

    import marketing.pipeline  # noqa: F401  (import cost is not a refresh stage)

    bar = tqdm(total=3 * len(STAGES), desc=f"bench {scale}", unit="stage", file=sys.stderr,
               disable=not progress)
    with bar, RssSampler() as sampler:
        full = measured_pass(end_date, settings, bar, sampler)
        full_peak_mb = max(round(sampler.peak_bytes / _MB, 1), *full.peak_rss_mb.values())
        # the reuse pass starts from this state too (dbt's DuckDB is closed after each build)
        shutil.copytree(work_dir, reuse_dir(work_dir))
        incremental = measured_pass(next_day, settings, bar, sampler)
        # the same day on the copy of D's state, now reusing D's fits; the copy runs under
        # work_dir's own path, as a deployment would (dbt's saved parse is tied to the path)
        with _swapped(work_dir, reuse_dir(work_dir)):
            reuse = dataclasses.replace(_settings_for(work_dir),
                                        model_refit_days=REUSE_REFIT_DAYS)
            # the fit date whose training marts the reuse pass keeps ("" = rebuilt)
            reuse_plan = pipeline_plan(next_day, reuse)
            reused = measured_pass(next_day, reuse, bar, sampler)
        settings = _settings_for(work_dir)
    peak_rss_mb = max(sampler.peak_mb, full_peak_mb)

    # marts.user_item_interactions holds the latest run's date only: compare on D + 1.
    matrix = _user_item_matrix(settings, next_day)
    neighbours = compare_neighbours(matrix, settings.neighbours_k,
                                    repeats=repeats if scale != "L" else 1)
    baseline = dense_baseline(matrix, settings.recommendations_n, full.stages["recommendations"])
    del matrix

    events_full = sample["events"]  # the D + 1 run lands one more day on top
    slowest = sorted(full.dbt_nodes, key=lambda node: node["seconds"], reverse=True)[:8]
    return {
        "scale": scale,
        "as_of_date": end_date.isoformat(),
        "ran_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sizes": {**SCALES[scale], "events_generated": events_full,
                  "orders_generated": sample["orders"], "sessions_generated": sample["sessions"]},
        "generate_s": generate_s,
        "total_wall_s": full.wall_s,
        # between-stage garbage collection and malloc_trim (excluded from the totals)
        "heap_release_s": full.heap_release_s,
        "peak_rss_mb": peak_rss_mb,
        "full_refresh_peak_rss_mb": full_peak_mb,
        "process_max_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "children_max_rss_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "stages": full.stages,
        "stage_peak_rss_mb": full.peak_rss_mb,
        # CPU seconds of the process and its ended children per stage (>= wall on 2 cores
        # when the stage uses both): what a pass costs in core time
        "stage_cpu_s": full.cpu_s,
        "total_cpu_s": round(sum(full.cpu_s.values()), 3),
        "incremental_day_s": incremental.wall_s,
        "incremental_stages": incremental.stages,
        "incremental_stage_peak_rss_mb": incremental.peak_rss_mb,
        "incremental_stage_cpu_s": incremental.cpu_s,
        "incremental_day_cpu_s": round(sum(incremental.cpu_s.values()), 3),
        "incremental_day_reused_models_s": reused.wall_s,
        "incremental_reused_models_stages": reused.stages,
        "incremental_reused_models_stage_peak_rss_mb": reused.peak_rss_mb,
        "incremental_reused_models_stage_cpu_s": reused.cpu_s,
        "incremental_day_reused_models_cpu_s": round(sum(reused.cpu_s.values()), 3),
        "reuse_refit_days": REUSE_REFIT_DAYS,
        "reuse_training_marts_from": reuse_plan,
        "seconds_per_million_events": round(full.wall_s / max(events_full, 1) * 1e6, 3),
        "dbt_slowest_nodes": slowest,
        # Seconds dbt spent inside models and tests; the rest of the stage is dbt's own
        # start-up, parsing and compilation.
        "dbt_node_seconds": {
            stage: round(sum(n["seconds"] for n in full.dbt_nodes if n["stage"] == stage), 3)
            for stage in ("dbt_profiles", "dbt_audiences")
        },
        **neighbours,
        "dense_user_user_baseline": baseline,
        "machine": machine,
    }


def reuse_dir(work_dir: Path) -> Path:
    """Where the models-reused pass's state is kept: a sibling of ``work_dir``."""
    return work_dir.with_name(work_dir.name + "-reuse")


def _parked_dir(work_dir: Path) -> Path:
    return work_dir.with_name(work_dir.name + "-parked")


@contextmanager
def _swapped(work_dir: Path, other: Path) -> Iterator[None]:
    """Run the block with ``other``'s contents at ``work_dir`` (``work_dir``'s own contents
    parked beside it), then put both back where they were."""
    parked = _parked_dir(work_dir)
    work_dir.rename(parked)
    other.rename(work_dir)
    try:
        yield
    finally:
        work_dir.rename(other)
        parked.rename(work_dir)


def pipeline_plan(as_of: date, settings) -> str:
    """The DAG's plan_models for ``as_of``: the date whose training marts dbt keeps."""
    from marketing.pipeline import training_marts_to_keep

    return training_marts_to_keep(as_of, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="S")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="data directory, emptied first (default bench/work/<scale>)")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (and its -reuse sibling)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    work_dir = args.work_dir or REPO_ROOT / "bench" / "work" / args.scale
    try:
        result = run_benchmark(args.scale, work_dir, repeats=args.repeats,
                               progress=sys.stderr.isatty())
    except KeyboardInterrupt:
        logger.warning("interrupted: no results written; partial data under %s", work_dir)
        return 130
    path = write_results(result, args.results_dir)
    if not args.keep:
        shutil.rmtree(work_dir, ignore_errors=True)
        shutil.rmtree(reuse_dir(work_dir.resolve()), ignore_errors=True)
    print(render_markdown(result))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
