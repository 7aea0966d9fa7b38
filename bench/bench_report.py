"""The benchmark's result files: ``<scale>.json``, ``<scale>.md`` and ``summary.md``.

Rendering only; bench/run.py measures. A result is the dict :func:`run.run_benchmark` returns
(keys documented in bench/run.py's ``RESULT_KEYS``).
"""

from __future__ import annotations

import json
from pathlib import Path


def render_markdown(result: dict) -> str:
    """One scale's result as a markdown table (stage, full refresh s, incremental s)."""
    sizes = result["sizes"]
    lines = [
        f"# Benchmark {result['scale']}: {sizes['n_users']:,} users, {sizes['n_items']:,} items, "
        f"{sizes['n_days']} days, {sizes['events_generated']:,} events",
        "",
        f"Run {result['ran_at']} for D = {result['as_of_date']} on "
        f"{result['machine']['cpu_count']} x {result['machine']['cpu_model']}, "
        f"{result['machine']['memory_gb']} GB (load average at start "
        f"{result['machine']['load_average_at_start'][0]}).",
        "",
        "| stage | full refresh (s) | incremental day (s) | incremental day, models "
        "reused (s) | CPU s, full / incremental / reused | peak RSS, full / incremental / "
        "reused (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    peaks = [result.get(key, {}) for key in (
        "stage_peak_rss_mb", "incremental_stage_peak_rss_mb",
        "incremental_reused_models_stage_peak_rss_mb")]
    cpu = [result.get(key, {}) for key in (
        "stage_cpu_s", "incremental_stage_cpu_s", "incremental_reused_models_stage_cpu_s")]
    reused = result.get("incremental_reused_models_stages", {})
    for name, seconds in result["stages"].items():
        stage_peaks = " / ".join(f"{p.get(name, float('nan')):,.0f}" for p in peaks)
        stage_cpu = " / ".join(f"{c.get(name, float('nan')):.2f}" for c in cpu)
        lines.append(f"| {name} | {seconds:.2f} | {result['incremental_stages'].get(name, 0):.2f} "
                     f"| {reused.get(name, float('nan')):.2f} | {stage_cpu} | {stage_peaks} |")
    total_cpu = " / ".join(f"{result.get(key, float('nan')):.1f}" for key in (
        "total_cpu_s", "incremental_day_cpu_s", "incremental_day_reused_models_cpu_s"))
    lines += [
        f"| **total** | **{result['total_wall_s']:.2f}** | **{result['incremental_day_s']:.2f}** "
        f"| **{result.get('incremental_day_reused_models_s', float('nan')):.2f}** "
        f"| **{total_cpu}** | **{result['full_refresh_peak_rss_mb']:,.0f}** (full refresh) |",
        "",
        "- CPU s: user + system seconds of the benchmark process and of its child processes "
        "that ended in the stage (the publish step's and the evaluation's forked workers); "
        f"cores used on average: {_cores(result, 'total_cpu_s', 'total_wall_s')} full refresh, "
        f"{_cores(result, 'incremental_day_cpu_s', 'incremental_day_s')} incremental day, "
        f"{_cores(result, 'incremental_day_reused_models_cpu_s', 'incremental_day_reused_models_s')}"
        " models reused",
        f"- incremental day, models reused: D + 1 on a copy of D's state with "
        f"model_refit_days = {result['reuse_refit_days']}: segments, churn/spend, "
        "response and item neighbours use D's fits and dbt keeps the training marts "
        "(fct_campaign_sends, fct_user_snapshots, user_item_interactions_train); the default "
        "(1) refits every day",
        f"- peak RSS: {result['peak_rss_mb']:,.0f} MB over the three passes, which run in one "
        "process, so a stage's peak includes what earlier stages left allocated (the DAG runs "
        "each task in its own process), plus the memory the publish step's forked workers do "
        f"not share with it; full refresh alone "
        f"{result['full_refresh_peak_rss_mb']:,.0f} MB; sample generation "
        f"{result['generate_s']:.1f} s (not part of the refresh)",
        f"- {result['seconds_per_million_events']:.2f} s per million events",
        f"- item neighbours {result['neighbours_s']:.2f} s vs implicit CosineRecommender "
        f"{result['implicit_cosine_s']:.2f} s: ratio {result['neighbours_vs_implicit_ratio']:.2f} "
        f"(matrix {result['matrix_shape'][0]:,} x {result['matrix_shape'][1]:,}, "
        f"{result['matrix_nnz']:,} non-zeros)",
    ]
    base = result["dense_user_user_baseline"]
    if base["ran"]:
        lines.append(
            f"- seed's dense user x user cosine: {base['dense_s']:.2f} s vs our whole "
            f"recommendations stage {base['ours_recommendations_stage_s']:.2f} s "
            f"({base['dense_vs_ours_ratio']:.1f} x slower), similarity matrix "
            f"{base['similarity_matrix_gb']} GB")
    else:
        lines.append(
            f"- seed's dense user x user cosine not run: its similarity matrix alone needs "
            f"{base['similarity_matrix_gb']:,} GB ({base['n_users']:,}^2 x 8 bytes)")
    lines.append(
        f"- dbt inside models/tests: profiles {result['dbt_node_seconds']['dbt_profiles']:.2f} s, "
        f"audiences {result['dbt_node_seconds']['dbt_audiences']:.2f} s (rest: dbt start-up, "
        "parse, compile)")
    lines.append("- slowest dbt nodes: " + ", ".join(
        f"{n.get('name', n['node'])} {n['seconds']:.2f} s" for n in result["dbt_slowest_nodes"][:5]))
    return "\n".join(lines) + "\n"


def _cores(result: dict, cpu_key: str, wall_key: str) -> str:
    """CPU seconds over wall seconds of a pass, or "n/a" for results without CPU seconds."""
    cpu, wall = result.get(cpu_key), result.get(wall_key)
    return f"{cpu / wall:.2f}" if cpu is not None and wall else "n/a"


def render_summary(results: list[dict]) -> str:
    """All scales side by side, with seconds per million events (linearity check)."""
    results = sorted(results, key=lambda r: r["sizes"]["events_generated"])
    header = "| stage | " + " | ".join(r["scale"] for r in results) + " |"
    lines = [
        "# Benchmark summary (seconds unless stated)", "",
        header, "|---|" + "---:|" * len(results),
    ]
    stages = list(dict.fromkeys(name for r in results for name in r["stages"]))
    for name in stages:
        lines.append(f"| {name} | " + " | ".join(
            f"{r['stages'].get(name, float('nan')):.2f}" for r in results) + " |")
    rows = [
        ("**full refresh**", lambda r: f"**{r['total_wall_s']:.1f}**"),
        ("incremental day", lambda r: f"{r['incremental_day_s']:.1f}"),
        ("incremental day, models reused",
         lambda r: f"{r.get('incremental_day_reused_models_s', float('nan')):.1f}"),
        ("CPU s, full refresh", lambda r: f"{r.get('total_cpu_s', float('nan')):.1f}"),
        ("CPU s, incremental day", lambda r: f"{r.get('incremental_day_cpu_s', float('nan')):.1f}"),
        ("peak RSS (MB)", lambda r: f"{r['peak_rss_mb']:,.0f}"),
        ("users", lambda r: f"{r['sizes']['n_users']:,}"),
        ("items", lambda r: f"{r['sizes']['n_items']:,}"),
        ("events", lambda r: f"{r['sizes']['events_generated']:,}"),
        ("s per M events", lambda r: f"{r['seconds_per_million_events']:.2f}"),
        ("neighbours / implicit", lambda r: f"{r['neighbours_vs_implicit_ratio']:.2f}"),
        ("generate sample", lambda r: f"{r['generate_s']:.1f}"),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in results) + " |")
    return "\n".join(lines) + "\n"


def write_results(result: dict, results_dir: Path) -> Path:
    """Write ``<scale>.json``, ``<scale>.md`` and refresh ``summary.md``; returns the JSON."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result['scale']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (results_dir / f"{result['scale']}.md").write_text(render_markdown(result))
    everything = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    (results_dir / "summary.md").write_text(render_summary(everything))
    return path
