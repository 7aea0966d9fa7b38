"""marts.user_rfm against a brute-force recomputation in pandas on a small generated shop.

Scores are recomputed from their definition (1 + floor(5 * percent_rank) among buyers, ties
share a score, recency inverted), labels from the documented R x FM grid written out cell by
cell, spend_12m from the order lines, tiers from the dbt vars. Two dates are built to check the
model is incremental by as_of_date (the first date's rows survive the second run unchanged).
marts.segment_profiles is built on the same shop with stub ml.* tables and its dynamic
top_categories / medians are recomputed in pandas.
"""

from __future__ import annotations

import math
import os
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from marketing.land import land
from marketing.sample_data import main as sample_main
from marketing.warehouse import CONNECTION_CONFIG

dbt_main = pytest.importorskip("dbt.cli.main")

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
END = date(2026, 9, 30)
DAY_BEFORE = END - timedelta(days=1)

# the documented grid: rows R = 5..1, columns FM = 1..5
GRID = {
    5: ["New", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"],
    4: ["Promising", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"],
    3: ["About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"],
    2: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
    1: ["Lost", "Lost", "At Risk", "Can't Lose Them", "Can't Lose Them"],
}


def _score(values: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """1 + floor(5 * percent_rank), percent_rank = (# strictly worse) / (n - 1)."""
    n = len(values)
    ranked = values.to_numpy(dtype="float64")
    out = []
    for value in ranked:
        worse = (ranked < value).sum() if higher_is_better else (ranked > value).sum()
        rank = worse / (n - 1) if n > 1 else 0.0
        out.append(min(5, 1 + math.floor(5 * rank)))
    return pd.Series(out, index=values.index)


built_state: dict[str, pd.DataFrame] = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("rfm")
    data_dir = work / "data"
    assert sample_main(["--users", "300", "--items", "40", "--days", "30", "--seed", "3",
                        "--end-date", END.isoformat(), "--out", str(data_dir), "--quiet"]) == 0
    path = data_dir / "warehouse.duckdb"
    con = duckdb.connect(str(path), config=dict(CONNECTION_CONFIG))
    try:
        land(con, data_dir / "landing", END)
    finally:
        con.close()
    previous = os.environ.get("MARKETING_WAREHOUSE")
    os.environ["MARKETING_WAREHOUSE"] = str(path)
    try:
        for day, select in ((DAY_BEFORE, "+user_rfm"), (END, "+user_rfm"), (END, "ml_stub")):
            if select == "ml_stub":
                _write_ml_stub(path)
                select = "segment_profiles"
            result = dbt_main.dbtRunner().invoke([
                "build", "--select", select, "--vars", f"{{as_of_date: '{day}'}}",
                "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
                "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
                "--quiet",
            ])
            assert result.success, f"dbt build for {day} failed: {result.exception}"
    finally:
        if previous is None:
            os.environ.pop("MARKETING_WAREHOUSE", None)
        else:
            os.environ["MARKETING_WAREHOUSE"] = previous
    # not read_only: dbt may still hold the file in this process with the default mode
    con = duckdb.connect(str(path), config=dict(CONNECTION_CONFIG))
    try:
        rfm = con.execute("select * from marts.user_rfm order by as_of_date, user_id").df()
        profiles = con.execute(
            "select user_id, as_of_date, recency_days, count_orders_lifetime, monetary_lifetime "
            "from marts.user_profiles order by as_of_date, user_id"
        ).df()
        orders = con.execute(
            "select user_id, ordered_at, order_total from intermediate.int_orders_with_totals"
        ).df()
        segment_profiles = con.execute("select * from marts.segment_profiles").df()
        shares = con.execute(
            "select * from marts.user_profiles where as_of_date = ?", [END]
        ).df()
    finally:
        con.close()
    for frame in (rfm, profiles):
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    built_state.update(segment_profiles=segment_profiles, shares=shares)
    return rfm, profiles, orders


def _write_ml_stub(path: Path) -> None:
    """ml.user_segments (segment = user_id % 3) and empty ml.campaign_scores for END."""
    con = duckdb.connect(str(path), config=dict(CONNECTION_CONFIG))
    try:
        con.execute("create schema if not exists ml")
        con.execute(
            "create or replace table ml.user_segments as select user_id, "
            "cast(user_id % 3 as integer) as segment_id, 'S' || (user_id % 3) as segment_name, "
            "as_of_date from marts.user_profiles where as_of_date = ?",
            [END],
        )
        con.execute(
            "create or replace table ml.campaign_scores (user_id BIGINT, campaign_id BIGINT, "
            "response_probability DOUBLE, as_of_date DATE)"
        )
    finally:
        con.close()


def test_one_row_per_profile_and_date(built):
    rfm, profiles, _ = built
    assert set(rfm["as_of_date"]) == {DAY_BEFORE, END}
    keys = ["user_id", "as_of_date"]
    assert not rfm.duplicated(keys).any()
    pd.testing.assert_frame_equal(rfm[keys].reset_index(drop=True),
                                  profiles[keys].reset_index(drop=True))


def test_scores_labels_and_tiers_match_brute_force(built):
    rfm, profiles, orders = built
    variables = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    day = rfm[rfm["as_of_date"] == END].set_index("user_id")
    buyers = profiles[(profiles["as_of_date"] == END)
                      & (profiles["count_orders_lifetime"] > 0)].set_index("user_id")
    assert len(buyers) > 50
    expected_r = _score(buyers["recency_days"], higher_is_better=False)
    expected_f = _score(buyers["count_orders_lifetime"])
    expected_m = _score(buyers["monetary_lifetime"])
    assert (day.loc[buyers.index, "recency_score"] == expected_r).all()
    assert (day.loc[buyers.index, "frequency_score"] == expected_f).all()
    assert (day.loc[buyers.index, "monetary_score"] == expected_m).all()
    fm = ((expected_f + expected_m) / 2 + 0.5).apply(math.floor)
    labels = [GRID[r][f - 1] for r, f in zip(expected_r, fm, strict=True)]
    assert day.loc[buyers.index, "rfm_label"].tolist() == labels
    assert set(expected_r) == {1, 2, 3, 4, 5}
    non_buyers = day.index.difference(buyers.index)
    assert day.loc[non_buyers, ["recency_score", "rfm_label"]].isna().all().all()

    cutoff = pd.Timestamp(END + timedelta(days=1))
    recent = orders[(orders["ordered_at"] >= cutoff - pd.Timedelta(days=365))
                    & (orders["ordered_at"] < cutoff)]
    spend = recent.groupby("user_id")["order_total"].sum().astype("float64")
    spend = spend.reindex(day.index, fill_value=0.0)
    pd.testing.assert_series_equal(day["spend_12m"], spend, check_names=False, atol=1e-6)
    tiers = pd.Series("Bronze", index=day.index)
    for tier in ("silver", "gold", "platinum"):
        tiers[spend >= variables[f"membership_tier_{tier}_min_spend"]] = tier.title()
    assert (day["membership_tier"] == tiers).all()
    assert day["membership_tier"].nunique() >= 2


def test_earlier_partition_is_kept(built):
    rfm, profiles, _ = built
    before = rfm[rfm["as_of_date"] == DAY_BEFORE]
    buyers = profiles[(profiles["as_of_date"] == DAY_BEFORE)
                      & (profiles["count_orders_lifetime"] > 0)]
    assert len(before) == (profiles["as_of_date"] == DAY_BEFORE).sum()
    assert before["rfm_label"].notna().sum() == len(buyers)


def test_segment_profiles_top_categories_match_brute_force(built):
    profiles = built_state["segment_profiles"].set_index("segment_id")
    shares = built_state["shares"]
    columns = [c for c in shares.columns if c.startswith("share_")]
    assert len(columns) >= 3
    shares = shares.assign(segment_id=shares["user_id"] % 3)
    for segment_id, members in shares.groupby("segment_id"):
        means = members[columns].fillna(0).mean()
        means = means[means > 0]
        ranked = sorted(means.items(), key=lambda item: (-item[1], item[0]))[:3]
        expected = ", ".join(column[len("share_"):] for column, _ in ranked)
        assert profiles.loc[segment_id, "top_categories"] == expected
        assert profiles.loc[segment_id, "size"] == len(members)
        assert profiles.loc[segment_id, "median_monetary_lifetime"] == pytest.approx(
            members["monetary_lifetime"].median())
    assert profiles["mean_response_probability"].isna().all()
    assert profiles["share_of_users"].sum() == pytest.approx(1.0)
