"""Response scoring on a generated shop with the planted response function, end to end.

One module fixture generates a small shop (``marketing.sample_data``), lands it, builds the
dbt models the step reads and runs ``pipeline.score_campaigns``. The planted truth
(``sample_truth/campaign_sends_truth.parquet``) gives the oracle: the AUC of the true
probabilities on the same test sends. Costs ~1 min on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from marketing import model_registry, pipeline
from marketing.model_registry import library_versions
from marketing.scoring import (
    split_by_send_day,
    train_purchase_model,
    train_response_model,
)
from marketing.settings import AS_OF_DATE_ENV, TRAINING_MARTS_FROM_ENV, Settings
from marketing.steps import scores as scores_step
from marketing.steps.common import metrics_frame, write_partition
from marketing.steps.recommendations import neighbours_settings_key
from marketing.warehouse import CONNECTION_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[2]
USERS, ITEMS, DAYS, SEED = 8000, 300, 90, 7


def _dbt(args: list[str], warehouse: Path, work: Path) -> None:
    env = {**os.environ, "MARKETING_WAREHOUSE": str(warehouse)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args,
         "--project-dir", str(REPO_ROOT / "dbt_project"),
         "--profiles-dir", str(REPO_ROOT / "dbt_project"),
         "--target-path", str(work / "target"), "--log-path", str(work / "logs"), "--quiet"],
        env=env, capture_output=True, text=True, cwd=work,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Settings, date]:
    data = tmp_path_factory.mktemp("shop")
    subprocess.run(
        [sys.executable, "-m", "marketing.sample_data", "--users", str(USERS), "--items",
         str(ITEMS), "--days", str(DAYS), "--seed", str(SEED), "--out", str(data), "--quiet"],
        check=True, capture_output=True,
    )
    end = date.fromisoformat(json.loads((data / "landing" / "_sample.json").read_text())
                             ["end_date"])
    settings = Settings(data_dir=data, warehouse_path=data / "warehouse.duckdb",
                        analytics_path=data / "analytics.duckdb")
    pipeline.land_day(end, settings)
    _dbt(["run", "--select", "+fct_campaign_sends", "+fct_user_snapshots", "+user_profiles",
          "+user_item_interactions_train", "--vars", f"{{as_of_date: '{end.isoformat()}'}}"], settings.warehouse_path, data)
    return settings, end


@pytest.fixture(scope="module")
def scored(shop) -> dict:
    settings, end = shop
    return pipeline.score_campaigns(end, settings)


def _read(settings: Settings, sql: str, params: list | None = None) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True,
                        config=dict(CONNECTION_CONFIG)) as con:
        return con.execute(sql, params or []).df()


def _truth(settings: Settings) -> pd.DataFrame:
    return pd.read_parquet(settings.truth_dir / "campaign_sends_truth.parquet")


def test_send_features_are_the_generators_features_at_sent_at(shop):
    settings, _ = shop
    sends = _read(settings, "select * from marts.fct_campaign_sends")
    merged = sends.merge(_truth(settings), on="send_id", suffixes=("", "_true"))
    assert len(merged) == len(sends) > 1000
    for column in ("count_orders_lifetime", "recency_days", "count_views_30d", "tenure_days"):
        ours = merged[column].to_numpy(dtype="float64", na_value=np.nan)
        truth = merged[f"{column}_true"].to_numpy(dtype="float64", na_value=np.nan)
        np.testing.assert_array_equal(ours, truth, err_msg=column)


def test_auc_near_oracle_and_calibrated(shop):
    settings, _ = shop
    sends = _read(settings, "select * from marts.fct_campaign_sends")
    model = train_response_model(sends)
    treated = sends[~sends["is_control"]].merge(_truth(settings)[["send_id", "true_probability"]],
                                                on="send_id")
    treated = treated.sort_values(["sent_at", "send_id"]).reset_index(drop=True)
    _, is_test = split_by_send_day(treated["sent_at"])
    test = treated[is_test]
    oracle_auc = roc_auc_score(test["has_responded"], test["true_probability"])
    assert model.n_test == len(test)
    assert abs(model.metrics["auc"] - oracle_auc) <= 0.05, (model.metrics["auc"], oracle_auc)
    assert model.metrics["ece"] <= 0.05
    assert model.metrics["lift_decile_1"] > 2.0
    # the planted drivers come out as the top positive ones
    positive, _ = model.top_drivers(5)
    assert {"count_orders_lifetime", "count_views_30d"} & {f for f, _ in positive[:3]}


def test_step_writes_scores_predictions_runs_card_and_picture(shop, scored):
    settings, end = shop
    assert scored["model_source"] == "trained" and scored["auc"] > 0.7
    profiles = _read(settings, "select user_id from marts.user_profiles where as_of_date = ?",
                     [end])
    scores = _read(settings, "select * from ml.campaign_scores where as_of_date = ?", [end])
    assert {"user_id", "campaign_id", "response_probability", "decile", "uplift"} <= set(scores)
    assert len(scores) == len(profiles) * scores["campaign_id"].nunique() == scored["scored"]
    assert scores["campaign_id"].nunique() == 4
    wide = scores.pivot(index="user_id", columns="campaign_id", values="response_probability")
    assert (wide.nunique(axis=1) > 1).mean() > 0.99  # per-campaign, not one pooled score
    for _, group in scores.groupby("campaign_id"):
        top = group[group["decile"] == 1]["response_probability"].min()
        assert (group[group["decile"] > 1]["response_probability"] <= top).all()
    predictions = _read(settings, "select * from ml.user_predictions where as_of_date = ?", [end])
    assert sorted(predictions["user_id"]) == sorted(profiles["user_id"])
    assert predictions["churn_probability"].between(0, 1).all()
    assert (predictions["predicted_spend_90d"] >= 0).all()
    runs = _read(settings, "select metric, value from ml.model_runs where model = 'response' "
                 "and as_of_date = ?", [end]).set_index("metric")["value"]
    assert {"auc", "pr_auc", "brier", "ece", "lift_decile_1", "lift_decile_10",
            "auc_campaign_4"} <= set(runs.index)
    folder = settings.models_dir / "response" / end.isoformat()
    card = json.loads((folder / "model_card.json").read_text())
    assert card["library_versions"] == library_versions()
    assert card["metrics"]["auc"] == pytest.approx(runs["auc"])
    assert card["top_positive_drivers"] and card["top_negative_drivers"]
    png = settings.reports_dir / end.isoformat() / "response.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshot_labels_match_brute_force(shop):
    settings, end = shop
    snapshots = _read(settings, "select * from marts.fct_user_snapshots")
    orders = _read(settings, "select user_id, ordered_at, order_total from "
                   "intermediate.int_orders_with_totals")
    assert sorted(snapshots["snapshot_date"].astype(str).unique()) == [
        (end - timedelta(days=days)).isoformat() for days in (90, 60, 30)]
    rng = np.random.default_rng(0)
    for row in snapshots.iloc[rng.choice(len(snapshots), 300, replace=False)].itertuples():
        start = pd.Timestamp(row.snapshot_date) + pd.Timedelta(days=1)
        mine = orders[orders["user_id"] == row.user_id]

        def within(days: int, mine=mine, start=start) -> pd.DataFrame:
            return mine[(mine["ordered_at"] >= start)
                        & (mine["ordered_at"] < start + pd.Timedelta(days=days))]

        assert bool(row.purchased_next_30d) == (len(within(30)) > 0)
        if pd.Timestamp(row.snapshot_date) == pd.Timestamp(end - timedelta(days=90)):
            assert bool(row.churned_next_90d) == within(90).empty
            assert row.spend_next_90d == pytest.approx(float(within(90)["order_total"].sum()))
        else:
            assert pd.isna(row.churned_next_90d) and pd.isna(row.spend_next_90d)
        before = mine[mine["ordered_at"] < start]
        assert row.count_orders_lifetime == len(before)


def test_purchase_fallback_without_campaign_history(shop):
    settings, end = shop
    snapshots = _read(settings, "select * from marts.fct_user_snapshots")
    model = train_purchase_model(snapshots)
    latest = snapshots["snapshot_date"] == snapshots["snapshot_date"].max()
    # time split on snapshot dates: the latest snapshot (D - 30) is the test set
    assert model.kind == "purchase_30d" and model.n_test == int(latest.sum())
    assert model.n_train == int((~latest).sum())
    assert model.metrics["base_rate"] == pytest.approx(
        snapshots.loc[latest, "purchased_next_30d"].mean())
    assert 0 <= model.metrics["auc"] <= 1 and model.categorical == ("country",)
    chosen, source, fingerprint = scores_step._response_model_for(
        end, 0, _must_not_read_sends, lambda: snapshots, settings)
    assert source == "trained" and chosen.kind == "purchase_30d" and fingerprint is None


def _must_not_read_sends() -> pd.DataFrame:
    raise AssertionError("no sends to read")


def test_too_few_sends_keeps_last_good_model_else_skips(shop, scored, caplog):
    settings, end = shop
    first_scores = _read(settings, "select * from ml.campaign_scores where as_of_date = ? "
                         "order by user_id, campaign_id", [end])
    png = settings.reports_dir / end.isoformat() / "response.png"
    first_png = png.read_bytes()
    strict = dataclasses.replace(settings, response_min_positives=10**9)
    root = settings.models_dir / "response"
    earlier = root / (end - timedelta(days=1)).isoformat()
    shutil.copytree(root / end.isoformat(), earlier)
    try:
        with caplog.at_level(logging.WARNING):
            result = pipeline.score_campaigns(end, strict)
        assert result["model_source"] == f"last_good:{earlier.name}"
        assert "keeping the last good model" in caplog.text
        assert result["scored"] == scored["scored"]
        shutil.rmtree(root)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            result = pipeline.score_campaigns(end, strict)
        assert result == {**result, "scored": 0, "model_source": "none", "auc": None}
        assert "skipping campaign scoring" in caplog.text
        assert _read(settings, "select count(*) as n from ml.campaign_scores where as_of_date = ?",
                     [end])["n"].iloc[0] == 0
    finally:
        again = pipeline.score_campaigns(end, settings)
    # re-running the date reproduces the same scores and the same picture, byte for byte
    assert again == scored
    pd.testing.assert_frame_equal(
        _read(settings, "select * from ml.campaign_scores where as_of_date = ? "
              "order by user_id, campaign_id", [end]), first_scores)
    assert png.read_bytes() == first_png


def test_unchanged_training_sends_reuse_the_earlier_fit(shop, scored, caplog):
    """A later date with the same closed sends loads the earlier fit: same scores, no refit."""
    settings, end = shop
    root = settings.models_dir / "response"
    card = json.loads((root / end.isoformat() / "model_card.json").read_text())
    assert len(card["training_fingerprint"]) == 64
    query = ("select * exclude (as_of_date) from ml.{} where as_of_date = ? order by all")
    before = {t: _read(settings, query.format(t), [end]) for t in ("campaign_scores", "model_runs")}
    # the fingerprint covers what training reads, not the run date stamped on every row
    sends = _read(settings, "select * from marts.fct_campaign_sends order by sent_at, send_id")
    fingerprint = scores_step._training_fingerprint(sends, settings)
    assert card["training_fingerprint"] == fingerprint
    assert scores_step._training_fingerprint(
        sends.assign(as_of_date=end + timedelta(days=1)), settings) == fingerprint
    for column in ("has_responded", "recency_days", "country"):
        changed = sends.copy()
        changed.loc[0, column] = None if column != "has_responded" else not changed.loc[0, column]
        assert scores_step._training_fingerprint(changed, settings) != fingerprint, column
    earlier = root / (end - timedelta(days=1)).isoformat()
    shutil.copytree(root / end.isoformat(), earlier)
    try:
        with caplog.at_level(logging.INFO, logger="marketing.steps.scores"):
            result = pipeline.score_campaigns(end, settings)
        assert result == {**scored, "model_source": f"same_training_data:{earlier.name}"}
        assert "reusing its fit" in caplog.text
        for table, frame in before.items():
            pd.testing.assert_frame_equal(_read(settings, query.format(table), [end]), frame)
        # any other training rows or settings: the earlier fit is not the same, so train
        changed = dataclasses.replace(settings, random_state=settings.random_state + 1)
        assert pipeline.score_campaigns(end, changed)["model_source"] == "trained"
    finally:
        shutil.rmtree(earlier)
        assert pipeline.score_campaigns(end, settings) == scored


def test_skipped_first_run_creates_typed_tables(tmp_path):
    """Scoring skipped on a fresh warehouse: empty but typed tables a later run can fill."""
    warehouse_path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse_path), config=dict(CONNECTION_CONFIG)) as con:
        for table, frame, keys in (
            ("ml.campaign_scores", scores_step.score_users_empty(), None),
            ("ml.user_predictions", scores_step.predict_users_empty(), None),
            ("ml.model_runs", metrics_frame("response", {}), {"model": "response"}),
        ):
            assert write_partition(con, table, frame, date(2026, 9, 1), keys) == 0
            types = dict(con.execute(f"describe {table}").fetchall()[i][:2]
                         for i in range(len(frame.columns) + 1))
            assert types["as_of_date"] == "DATE"
        assert types == {"metric": "VARCHAR", "value": "DOUBLE", "model": "VARCHAR",
                         "as_of_date": "DATE"}
        write_partition(con, "ml.model_runs", metrics_frame(
            "response", {"auc": 0.75}), date(2026, 9, 2), {"model": "response"})
        assert con.execute("select metric, value, model, as_of_date from ml.model_runs"
                           ).fetchall() == [("auc", 0.75, "response", date(2026, 9, 2))]


def test_refit_cadence_reuses_both_recent_fits(shop, scored, caplog, monkeypatch):
    """With model_refit_days = 2 a fit from D - 1 scores D; nothing is saved for D, and the
    training sends are not even read."""
    settings, end = shop
    query = ("select * exclude (as_of_date) from ml.{} where as_of_date = ? order by all")
    tables = ("campaign_scores", "user_predictions")
    before = {t: _read(settings, query.format(t), [end]) for t in tables}
    day, earlier_day = end.isoformat(), (end - timedelta(days=1)).isoformat()
    for model in ("response", "user_predictions"):
        shutil.move(settings.models_dir / model / day, settings.models_dir / model / earlier_day)
    cadence = dataclasses.replace(settings, model_refit_days=2)
    reads = []
    read_frame = scores_step.warehouse.read_frame
    monkeypatch.setattr(scores_step.warehouse, "read_frame",
                        lambda con, sql, *args: reads.append(sql) or read_frame(con, sql, *args))
    try:
        with caplog.at_level(logging.INFO, logger="marketing.model_registry"):
            result = pipeline.score_campaigns(end, cadence)
        assert result == {**scored, "model_source": f"refit_cadence:{earlier_day}"}
        assert reads and not any("fct_campaign_sends" in sql for sql in reads)
        monkeypatch.undo()
        for model in ("response", "user_predictions"):
            assert f"refit cadence 2 days: {model} reuses the fit of {earlier_day}" in caplog.text
        for table, frame in before.items():
            pd.testing.assert_frame_equal(_read(settings, query.format(table), [end]), frame)
        for model in ("response", "user_predictions"):
            assert not (settings.models_dir / model / day).exists()
        assert not (settings.reports_dir / day / "response.png").exists()
        # a fit saved by an earlier run of D is D's output: a re-run that reuses drops it
        (settings.models_dir / "response" / day).mkdir()
        assert pipeline.score_campaigns(end, cadence)["model_source"].startswith("refit")
        assert not (settings.models_dir / "response" / day).exists()
        ages = _read(settings, "select model, value from ml.model_runs where as_of_date = ? "
                     "and metric = 'model_age_days' order by model", [end])
        assert ages.values.tolist() == [["response", 1.0], ["user_predictions", 1.0]]
        # other settings are another fit: train (and save) for D
        changed = dataclasses.replace(cadence, random_state=settings.random_state + 1)
        assert pipeline.score_campaigns(end, changed)["model_source"] == "trained"
        assert (settings.models_dir / "user_predictions" / day / "model_card.json").exists()
    finally:
        for model in ("response", "user_predictions"):
            shutil.rmtree(settings.models_dir / model / earlier_day)
        assert pipeline.score_campaigns(end, settings) == scored
    ages = _read(settings, "select value from ml.model_runs where as_of_date = ? "
                 "and metric = 'model_age_days'", [end])
    assert ages["value"].tolist() == [0.0, 0.0]


def test_training_marts_are_kept_for_a_date_reusing_their_fits(shop, scored, tmp_path,
                                                               monkeypatch):
    """dbt var training_marts_from = A (or, as the DAG passes it, the environment variable
    MARKETING_TRAINING_MARTS_FROM) keeps marts built for A (minus users erased since);
    anything else rebuilds them as of D. The plan names A only when D reuses both fits."""
    settings, end = shop
    work = tmp_path / "shop"
    shutil.copytree(settings.data_dir, work, ignore=shutil.ignore_patterns("target", "logs"))
    warehouse = work / "warehouse.duckdb"
    copy = dataclasses.replace(settings, data_dir=work, warehouse_path=warehouse)
    # table -> days its as_of_date lies before the run date (the hold-out's training side)
    marts = {"marts.fct_campaign_sends": 0, "marts.fct_user_snapshots": 0,
             "marts.user_item_interactions_train": 7}
    query = "select * from {} order by all"
    before = {t: _read(copy, query.format(t)) for t in marts}
    erased = int(before["marts.fct_campaign_sends"]["user_id"].iloc[0])
    next_day = end + timedelta(days=1)
    with duckdb.connect(str(warehouse), config=dict(CONNECTION_CONFIG)) as con:
        con.execute("insert into raw.erasure_requests values (?, ?, ?, 'test')",
                    [erased, datetime.combine(next_day, datetime.min.time()), next_day])
    select = ["--select", "+fct_campaign_sends", "+fct_user_snapshots",
              "+user_item_interactions_train"]
    # the plan: D + 1 reuses end's fits under a 2-day cadence, not under the default, and
    # only when the item neighbours were fitted on the same date as the scoring models
    assert pipeline.training_marts_to_keep(next_day, copy) == ""
    cadence = dataclasses.replace(copy, model_refit_days=2)
    assert pipeline.training_marts_to_keep(next_day, cadence) == ""
    model_registry.save_model(cadence.models_dir / "recommendations" / end.isoformat(), {},
                              {"settings_key": neighbours_settings_key(cadence)})
    assert pipeline.training_marts_to_keep(next_day, cadence) == end.isoformat()
    assert pipeline.training_marts_to_keep(end, cadence) == ""  # never D's own fit

    # as the DAG runs dbt: both dates in the environment, no --vars
    with monkeypatch.context() as environment:
        environment.setenv(AS_OF_DATE_ENV, next_day.isoformat())
        environment.setenv(TRAINING_MARTS_FROM_ENV, end.isoformat())
        _dbt(["run", *select], warehouse, work)
    for table, frame in before.items():
        kept = _read(copy, query.format(table))
        expected = frame[frame["user_id"] != erased].reset_index(drop=True)
        assert len(expected) < len(frame) or table != "marts.fct_campaign_sends"
        pd.testing.assert_frame_equal(kept, expected, check_dtype=False)


    def built_for(*options: str) -> list[date]:
        if options:
            _dbt(["run", *select, "--vars", "{" + ", ".join(options) + "}"], warehouse, work)
        return sorted({pd.Timestamp(d).date() + timedelta(days=days_before)
                       for t, days_before in marts.items() for d in
                       _read(copy, f"select distinct as_of_date from {t}")["as_of_date"]})

    assert built_for() == [end]  # kept
    # without the var: rebuilt as of D (the erased user still gone)
    assert built_for(f"as_of_date: '{next_day}'") == [next_day]
    for table in marts:
        assert erased not in set(_read(copy, f"select user_id from {table}")["user_id"])
    # built for a date in [A, D] (e.g. by an earlier run of D): kept
    assert built_for(f"as_of_date: '{next_day}'", f"training_marts_from: '{end}'") == [next_day]
    # built before A: rebuilt
    later = next_day + timedelta(days=1)
    assert built_for(f"as_of_date: '{later}'", f"training_marts_from: '{later}'") == [later]
    assert built_for(f"as_of_date: '{later + timedelta(days=2)}'",
                     f"training_marts_from: '{later + timedelta(days=1)}'") == [
        later + timedelta(days=2)]
    with pytest.raises(RuntimeError, match="fits a model on it"):
        scores_step._require_built_for(before["marts.fct_campaign_sends"],
                                       "marts.fct_campaign_sends", next_day)
