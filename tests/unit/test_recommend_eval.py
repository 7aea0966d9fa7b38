"""Offline evaluation: known-answer metrics, and item-CF vs popularity on generated data.

The generated-data test generates a small sample shop in a temp dir, lands it, builds the
interaction marts with dbt in process (``dbtRunner``) and runs the pipeline step
``build_recommendations`` end to end (~30 s on 2 cores).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marketing import warehouse
from marketing.recommend_eval import evaluate_holdout, ranking_metrics, relevant_items

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def test_relevant_items_are_new_test_pairs_of_users_with_history():
    train = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 20, 10]})
    test = pd.DataFrame({"user_id": [1, 1, 1, 2, 3], "item_id": [10, 30, 30, 40, 10]})
    got = relevant_items(train, test)
    # 1-10 seen in train; 3 has no training history.
    assert got.values.tolist() == [[1, 30], [2, 40]]


@pytest.mark.parametrize("id_scale", [1, 10**12])  # compact ids, and ids that need a sort
def test_relevant_items_match_a_brute_force_set_difference(id_scale):
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"user_id": rng.integers(0, 40, 300) * id_scale,
                          "item_id": rng.integers(0, 30, 300) * id_scale}).drop_duplicates()
    # test users and items partly unknown to training; repeated pairs; any order
    test = pd.DataFrame({"user_id": rng.integers(0, 50, 400) * id_scale,
                         "item_id": rng.integers(0, 40, 400) * id_scale})
    seen = set(zip(train["user_id"], train["item_id"], strict=True))
    with_history = set(train["user_id"])
    expected = sorted({(u, i) for u, i in zip(test["user_id"], test["item_id"], strict=True)
                       if u in with_history and (u, i) not in seen})
    got = relevant_items(train.sample(frac=1.0, random_state=1), test)
    assert list(got.itertuples(index=False, name=None)) == expected
    assert got.dtypes.tolist() == [np.dtype("int64")] * 2


def test_relevant_items_and_the_hold_out_name_a_frame_without_its_pair_columns():
    train = pd.DataFrame({"user_id": [1], "item_id": [10], "strength": [1.0],
                          "has_purchased": [False]})
    with pytest.raises(ValueError, match=r"train lacks required columns \['item_id'\]"):
        relevant_items(train[["user_id"]], train)
    with pytest.raises(ValueError, match=r"test lacks required columns \['item_id'\]"):
        relevant_items(train, train[["user_id"]])
    with pytest.raises(ValueError, match=r"test lacks required columns \['item_id'\]"):
        evaluate_holdout(train, train[["user_id"]])


def test_ranking_metrics_known_answer():
    recommendations = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2, 9],
            "rank": [1, 2, 3, 1, 2, 3, 1],
            "item_id": [10, 20, 30, 10, 40, 50, 60],
        }
    )
    relevant = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [20, 30, 70, 10]})
    got = ranking_metrics(recommendations, relevant, k=3, n_catalogue=10)
    # user 1: hits at ranks 2, 3 -> DCG 1/log2(3) + 1/2, IDCG 1 + 1/log2(3).
    # users 2 and 3: no hit. User 9 is not evaluated (no relevant items).
    ndcg_1 = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert got["hr"] == pytest.approx(1 / 3)
    assert got["ndcg"] == pytest.approx(ndcg_1 / 3)
    # Items shown to evaluated users 1 and 2: 10, 20, 30, 40, 50.
    assert got["coverage"] == pytest.approx(0.5)
    cut = ranking_metrics(recommendations, relevant, k=1, n_catalogue=10)
    assert cut["hr"] == 0.0 and cut["ndcg"] == 0.0


def test_evaluate_holdout_cf_finds_the_co_bought_item_popularity_does_not():
    # Users 1..6 bought A (1) and B (2); the crowd (users 10..29) all viewed the
    # popular item P (9). User 7 has A only and, in the test window, turns to B.
    rows = [(u, i) for u in range(1, 7) for i in (1, 2)] + [(u, 9) for u in range(10, 30)]
    rows += [(7, 1)]
    train = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(
        strength=1.0, has_purchased=False
    )
    test = pd.DataFrame({"user_id": [7], "item_id": [2]})
    result = evaluate_holdout(train, test, k=1)
    assert result.metrics["users_evaluated"] == 1
    assert result.metrics["item_cf_hr_at_1"] == 1.0
    assert result.metrics["item_cf_ndcg_at_1"] == 1.0
    assert result.metrics["popularity_hr_at_1"] == 0.0  # P is the most popular
    assert math.isnan(result.metrics["hr_ratio"])
    assert result.recommendations["popularity"]["item_id"].tolist() == [9]


def test_above_max_users_a_seeded_sample_is_evaluated():
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"user_id": np.repeat(np.arange(200), 3),
                          "item_id": rng.integers(0, 30, 600)}).drop_duplicates()
    train = train.assign(strength=1.0, has_purchased=False)
    test = pd.DataFrame({"user_id": np.arange(200), "item_id": rng.integers(30, 40, 200)})
    everyone = evaluate_holdout(train, test, k=3)
    assert everyone.metrics["users_evaluated"] == everyone.metrics["users_eligible"] == 200
    sampled = evaluate_holdout(train, test, k=3, max_users=50)
    assert sampled.metrics["users_evaluated"] == 50 and sampled.metrics["users_eligible"] == 200
    assert sampled.metrics["relevant_pairs"] == 50
    picked = sampled.recommendations["item_cf"]["user_id"].unique()
    assert len(picked) == 50 and set(picked) < set(range(200))
    again = evaluate_holdout(train, test, k=3, max_users=50)
    pd.testing.assert_series_equal(pd.Series(again.metrics), pd.Series(sampled.metrics))
    other = evaluate_holdout(train, test, k=3, max_users=50, random_state=8)
    assert set(other.recommendations["item_cf"]["user_id"]) != set(picked)


def test_ranking_metrics_rejects_bad_arguments():
    empty = pd.DataFrame({"user_id": [], "rank": [], "item_id": []})
    with pytest.raises(ValueError, match="k must be"):
        ranking_metrics(empty, empty, k=0, n_catalogue=1)
    with pytest.raises(ValueError, match="n_catalogue"):
        ranking_metrics(empty, empty, k=1, n_catalogue=0)


# --- generated data: land, dbt, the pipeline step -------------------------------------------

AS_OF = date(2026, 9, 30)


def _dbt(args: list[str], work_dir: Path) -> None:
    dbt_main = pytest.importorskip("dbt.cli.main")
    result = dbt_main.dbtRunner().invoke(
        [
            *args,
            "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(work_dir / "target"),
            "--log-path", str(work_dir / "logs"),
            "--quiet",
        ]
    )
    assert result.success, f"dbt {' '.join(args)} failed: {result.exception}"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from marketing.pipeline import build_recommendations, land_day
    from marketing.sample_data import generate
    from marketing.settings import Settings

    data_dir = tmp_path_factory.mktemp("recommend_eval")
    generate(data_dir, n_users=800, n_items=120, n_days=35, seed=7, end_date=AS_OF)
    warehouse_path = data_dir / "warehouse.duckdb"
    previous = {name: os.environ.get(name) for name in ("MARKETING_WAREHOUSE",)}
    os.environ["MARKETING_WAREHOUSE"] = str(warehouse_path)
    try:
        settings = Settings(
            data_dir=data_dir,
            warehouse_path=warehouse_path,
            analytics_path=data_dir / "analytics.duckdb",
        )
        land_day(AS_OF, settings)
        _dbt(
            [
                "run",
                "--select",
                "+user_item_interactions +user_item_interactions_train +user_profiles",
                "--vars", f"{{as_of_date: '{AS_OF.isoformat()}'}}",
            ],
            data_dir,
        )
        summary = build_recommendations(AS_OF, settings)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    # Not read_only: dbt's in-process connection to this file may still be open, and DuckDB
    # refuses a second connection with another configuration.
    with warehouse.connect(warehouse_path) as con:
        yield summary, con, settings


def test_item_cf_beats_popularity_by_half_on_generated_data(generated):
    summary, con, _ = generated
    metrics = dict(
        con.execute(
            "select metric, value from ml.model_runs where model = 'recommendations' "
            "and as_of_date = ?",
            [AS_OF],
        ).fetchall()
    )
    assert metrics["users_evaluated"] >= 100
    assert metrics["item_cf_hr_at_10"] >= 1.5 * metrics["popularity_hr_at_10"] > 0
    assert metrics["item_cf_ndcg_at_10"] > metrics["popularity_ndcg_at_10"]
    assert metrics["item_cf_coverage"] > metrics["popularity_coverage"]
    assert summary["item_cf_hr_at_10"] == round(metrics["item_cf_hr_at_10"], 4)


def test_holdout_train_mart_sees_nothing_of_the_test_window(generated):
    _, con, _ = generated
    latest, train_date = con.execute(
        "select max(last_interacted_at), min(as_of_date) from marts.user_item_interactions_train"
    ).fetchone()
    assert train_date == date(2026, 9, 23)
    assert latest < pd.Timestamp("2026-09-24")


def test_recommendations_carry_reasons_from_the_users_history(generated):
    _, con, _ = generated
    picks = con.execute(
        "select r.user_id, r.item_id, r.reason_item_id, r.method, r.score, "
        "h.item_id is not null as reason_in_history "
        "from ml.user_recommendations as r "
        "left join marts.user_item_interactions as h "
        "on h.user_id = r.user_id and h.item_id = r.reason_item_id "
        "where r.as_of_date = ?",
        [AS_OF],
    ).df()
    cf = picks[picks["method"] == "item_cf"]
    assert len(cf) > 0 and (cf["score"] > 0).all()
    assert cf["reason_in_history"].all()
    fills = picks[picks["method"] != "item_cf"]
    assert fills["reason_item_id"].isna().all() and (fills["score"] == 0).all()
    bought = con.execute(
        "select count(*) from ml.user_recommendations as r join marts.user_item_interactions "
        "as h on h.user_id = r.user_id and h.item_id = r.item_id and h.has_purchased "
        "where r.as_of_date = ?",
        [AS_OF],
    ).fetchone()[0]
    assert bought == 0
    per_user = picks.groupby("user_id").size()
    assert (per_user == 10).all()
    assert np.array_equal(np.sort(per_user.index), np.sort(picks["user_id"].unique()))


def test_refit_cadence_reuses_the_neighbours_and_their_metrics(generated, caplog,
                                                                 monkeypatch):
    """Under model_refit_days = 2 a date after a fit scores its users against the fit's
    neighbours and reports the fit's metrics without evaluating; nothing is saved for it."""
    from marketing.pipeline import build_recommendations
    from marketing.steps import recommendations as step

    summary, con, settings = generated
    cadence = dataclasses.replace(settings, model_refit_days=2)
    query = "select * exclude (as_of_date) from ml.{} where as_of_date = ? order by all"
    tables = ("user_recommendations", "item_neighbours")
    runs = ("select metric, value from ml.model_runs where model = 'recommendations' "
            "and as_of_date = ? order by metric")

    def outputs() -> dict[str, pd.DataFrame]:
        return {t: con.execute(query.format(t), [AS_OF]).df() for t in tables}

    before, metrics = outputs(), con.execute(runs, [AS_OF]).df()
    root = settings.models_dir / "recommendations"
    day, earlier = AS_OF.isoformat(), (AS_OF - timedelta(days=1)).isoformat()
    assert (root / day / "model_card.json").exists()  # every fit is saved, as D's
    try:
        shutil.move(root / day, root / earlier)
        monkeypatch.setattr(step, "evaluate_holdout", _must_not_evaluate)
        with caplog.at_level(logging.INFO, logger="marketing.model_registry"):
            reused = build_recommendations(AS_OF, cadence)
        assert reused == {**summary, "model_age_days": 1}
        assert f"recommendations reuses the fit of {earlier}" in caplog.text
        for table, frame in outputs().items():
            pd.testing.assert_frame_equal(frame, before[table])
        aged = metrics.assign(value=np.where(metrics["metric"] == "model_age_days", 1.0,
                                             metrics["value"]))
        pd.testing.assert_frame_equal(con.execute(runs, [AS_OF]).df(), aged)
        assert not (root / day).exists()
        # the default cadence (1 day) fits every date
        monkeypatch.undo()
        assert build_recommendations(AS_OF, settings) == summary
        assert (root / day / "model_card.json").exists()
    finally:
        shutil.rmtree(root / earlier, ignore_errors=True)
        monkeypatch.undo()
    for table, frame in outputs().items():
        pd.testing.assert_frame_equal(frame, before[table])


def _must_not_evaluate(*args, **kwargs):
    raise AssertionError("a date reusing the neighbours must not re-run the hold-out")


def test_reused_neighbours_keep_pairs_of_items_still_interacted_with():
    from marketing.steps.recommendations import among_items

    neighbours = pd.DataFrame({"item_id": [1, 1, 2, 3, 3], "neighbour_item_id": [2, 3, 1, 1, 4],
                               "similarity": [0.9, 0.5, 0.9, 0.5, 0.2]})
    kept = among_items(neighbours, np.array([1, 2, 4]))
    expected = neighbours[[i in {1, 2, 4} and j in {1, 2, 4} for i, j in
                           zip(neighbours["item_id"], neighbours["neighbour_item_id"], strict=True)]]
    pd.testing.assert_frame_equal(kept, expected.reset_index(drop=True))
    assert among_items(neighbours, np.arange(5)) is neighbours


def test_a_date_the_interaction_marts_were_not_built_for_stops_before_writing(generated):
    """The recommendations task of an earlier date cleared alone after a later date ran reads
    single-date marts that hold the later date: it stops, naming the table and how to re-run,
    instead of replacing that date's picks with popular items."""
    from marketing.pipeline import build_recommendations

    _, con, settings = generated
    snapshot = "select * from ml.{} order by all"
    tables = ("user_recommendations", "item_neighbours", "model_runs")
    before = {t: con.execute(snapshot.format(t)).df() for t in tables}
    earlier = AS_OF - timedelta(days=1)
    with pytest.raises(RuntimeError) as raised:
        build_recommendations(earlier, settings)
    message = str(raised.value)
    assert f"marts.user_item_interactions holds rows built for {AS_OF}, not for {earlier}" in (
        message)
    assert "dbt_views" in message
    # the hold-out's training mart is checked up front too (here: settings and dbt disagree)
    longer = dataclasses.replace(settings, evaluation_holdout_days=14)
    with pytest.raises(RuntimeError, match="evaluation_holdout_days differs"):
        build_recommendations(AS_OF, longer)
    for table, frame in before.items():
        pd.testing.assert_frame_equal(con.execute(snapshot.format(table)).df(), frame)
    root = settings.models_dir / "recommendations"
    assert not (root / earlier.isoformat()).exists()
