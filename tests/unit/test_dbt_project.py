"""The dbt project on a tiny hand-made warehouse: known answers, point in time, idempotence.

dbt runs in process (``dbtRunner``) against a temporary DuckDB file; every invocation uses its
own target and log paths so parallel test runs do not clash. The whole module makes seven dbt
invocations (~45 s on 2 cores), shared through module-scoped fixtures.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from marketing.warehouse import CONNECTION_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

dbt_main = pytest.importorskip("dbt.cli.main")


def _load_raw_fixture():
    spec = importlib.util.spec_from_file_location(
        "raw_fixture", REPO_ROOT / "tests" / "fixtures" / "raw_fixture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


raw_fixture = _load_raw_fixture()
D1 = raw_fixture.D1
D2 = raw_fixture.D2


def run_dbt(args: list[str], warehouse: Path, work_dir: Path):
    """Invoke dbt in process with MARKETING_WAREHOUSE pointing at ``warehouse``."""
    command = [
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir / "logs"),
        "--quiet",
    ]
    previous = os.environ.get("MARKETING_WAREHOUSE")
    os.environ["MARKETING_WAREHOUSE"] = str(warehouse)
    try:
        return dbt_main.dbtRunner().invoke(command)
    finally:
        if previous is None:
            os.environ.pop("MARKETING_WAREHOUSE", None)
        else:
            os.environ["MARKETING_WAREHOUSE"] = previous


def run_ok(args: list[str], warehouse: Path, work_dir: Path) -> list:
    """Run dbt, assert success; returns the node results."""
    result = run_dbt(args, warehouse, work_dir)
    results, failures = [], []
    if result.result is not None and hasattr(result.result, "results"):
        results = list(result.result.results)
        failures = [
            f"{r.node.name}: {r.status} {r.message}"
            for r in results
            if str(r.status) not in {"success", "pass"}
        ]
    assert result.success, f"dbt {' '.join(args)} failed: {result.exception} {failures}"
    return results


def as_of(day: date) -> list[str]:
    return ["--vars", f"{{as_of_date: '{day.isoformat()}'}}"]


MARTS = (
    "user_profiles",
    "user_item_interactions",
    "fct_campaign_sends",
    "dim_users",
    "fct_orders",
    "audience_members",
)


def read_tables(warehouse: Path, tables: tuple[str, ...] = MARTS) -> dict[str, pd.DataFrame]:
    """Rows of the ``marts`` tables, sorted on every column."""
    con = duckdb.connect(str(warehouse), config=dict(CONNECTION_CONFIG))
    try:
        return {t: con.execute(f"select * from marts.{t} order by all").df() for t in tables}
    finally:
        con.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict[str, dict[str, pd.DataFrame]]:
    """Build D1, re-run D1, build D2, re-run D1; the marts after every step."""
    work = tmp_path_factory.mktemp("dbt_history")
    warehouse = raw_fixture.build_warehouse(work / "warehouse.duckdb")
    steps = {}
    built = run_ok(["build", *as_of(D1)], warehouse, work)
    # the scheduled runs skip dbt unit tests (dags/segment_refresh.py): here they all run
    unit_tests = {r.node.name for r in built if r.node.resource_type == "unit_test"}
    assert {"user_profiles_is_point_in_time", "user_item_interactions_train_stops_at_d_minus_7",
            "audience_members_apply_rules_and_channel_eligibility"} <= unit_tests
    steps["d1"] = read_tables(warehouse)
    run_ok(["run", *as_of(D1)], warehouse, work)
    steps["d1_again"] = read_tables(warehouse)
    run_ok(["build", *as_of(D2)], warehouse, work)
    steps["d2"] = read_tables(warehouse)
    run_ok(["run", *as_of(D1)], warehouse, work)
    steps["d1_after_d2"] = read_tables(warehouse)
    return steps


def profile(tables: dict[str, pd.DataFrame], user_id: int, day: date) -> pd.Series:
    frame = tables["user_profiles"]
    rows = frame[(frame["user_id"] == user_id) & (pd.to_datetime(frame["as_of_date"]) == str(day))]
    assert len(rows) == 1, f"expected one profile for user {user_id} on {day}, got {len(rows)}"
    return rows.iloc[0]


def profile_days(tables: dict[str, pd.DataFrame]) -> dict[str, list[int]]:
    frame = tables["user_profiles"]
    days = pd.to_datetime(frame["as_of_date"]).dt.date.astype(str)
    return {d: sorted(frame.loc[days == d, "user_id"].tolist()) for d in sorted(set(days))}


# --- known answers for D1 -------------------------------------------------------------------


def test_profiles_cover_users_signed_up_and_not_erased(history):
    # Carol (3) was erased before D1, Dave (4) signs up after D1; Erin (5) is erased on D2.
    assert profile_days(history["d1"]) == {"2024-03-10": [1, 2, 5]}


def test_alice_profile_by_hand(history):
    alice = profile(history["d1"], 1, D1)
    assert alice["country"] == "DE"
    assert alice["tenure_days"] == 69  # 2024-01-01 -> 2024-03-10
    assert alice["recency_days"] == 0  # ordered on D1
    assert alice["count_orders_lifetime"] == 2
    assert alice["monetary_lifetime"] == pytest.approx(50.0)
    assert alice["average_order_value"] == pytest.approx(25.0)
    # 30 days = [2024-02-10, 2024-03-11): the 02-09 view is out, the view at D1 + 1 day too
    assert (alice["count_views_30d"], alice["count_carts_30d"]) == (1, 1)
    assert (alice["count_purchases_30d"], alice["count_sessions_30d"]) == (1, 1)
    assert (alice["count_views_90d"], alice["count_carts_90d"]) == (2, 1)
    assert (alice["count_purchases_90d"], alice["count_sessions_90d"]) == (1, 2)
    assert alice["conversion_rate_90d"] == pytest.approx(0.5)
    assert alice["share_books"] == pytest.approx(0.75)
    assert alice["share_home_garden"] == pytest.approx(0.25)
    # ' Alice@Example.com ' matches the suppression of 'alice@example.com'
    assert bool(alice["is_email_suppressed"]) is True


def test_bob_never_ordered(history):
    bob = profile(history["d1"], 2, D1)
    assert pd.isna(bob["recency_days"])
    assert bob["count_orders_lifetime"] == 0
    assert bob["average_order_value"] == 0
    assert bob["conversion_rate_90d"] == 0
    assert bob["share_home_garden"] == pytest.approx(1.0)
    assert bob["tenure_days"] == 29
    assert bool(bob["is_email_suppressed"]) is False


def test_category_columns_are_slugs_of_categories_listed_by_d(history):
    columns = [c for c in history["d1"]["user_profiles"].columns if c.startswith("share_")]
    assert columns == ["share_books", "share_home_garden"]


def test_interaction_strength_decays_by_half_life(history):
    frame = history["d1"]["user_item_interactions"]
    strength = {(r.user_id, r.item_id): r.strength for r in frame.itertuples()}
    assert strength == pytest.approx(
        {
            (1, 1): 1 + 3 + 5,  # view, cart, purchase on D1
            (1, 2): 0.5 ** (130 / 30),  # one view 130 days before D1
            (1, 3): 0.5,  # one view one half-life before D1
            (2, 3): 0.5 ** (9 / 30),
        },
        abs=1e-6,
    )
    purchased = frame.set_index(["user_id", "item_id"])["has_purchased"]
    assert bool(purchased[(1, 1)]) and not bool(purchased[(1, 3)])


def test_campaign_sends_only_closed_windows_with_labels(history):
    sends = history["d1"]["fct_campaign_sends"].set_index("send_id")
    # 101 closes after D1's end, 103 belongs to an erased user
    assert sorted(sends.index) == [100, 102, 104]
    assert sends["has_responded"].astype(bool).to_dict() == {100: True, 102: True, 104: False}
    # send 102 (2024-01-20 10:00): one earlier order (2024-01-15), one view 2023-11-01
    send = sends.loc[102]
    assert (send["recency_days"], send["count_orders_lifetime"]) == (5, 1)
    assert send["monetary_lifetime"] == pytest.approx(30.0)
    assert (send["count_views_30d"], send["count_views_90d"]) == (0, 1)
    assert send["share_books"] == pytest.approx(1.0)
    assert send["tenure_days"] == 19


def test_dim_users_blanks_erased_users(history):
    users = history["d1"]["dim_users"].set_index("user_id")
    assert sorted(users.index) == [1, 2, 3, 5]
    carol = users.loc[3]
    assert bool(carol["is_erased"]) is True
    assert carol[["email", "phone", "first_name", "last_name", "city"]].isna().all()
    assert carol["country"] == "DE"
    assert not bool(users.loc[1, "is_erased"])


def test_fct_orders_totals_and_anonymised_erased_orders(history):
    orders = history["d1"]["fct_orders"].set_index("order_id")
    assert orders["order_total"].astype(float).to_dict() == {1: 20.0, 2: 30.0, 3: 20.0}
    assert pd.isna(orders.loc[3, "user_id"])


def test_audience_members_by_hand(history):
    members = history["d1"]["audience_members"]
    got = sorted(zip(members["audience_name"], members["channel"], members["user_id"], strict=True))
    assert got == [
        ("buyers_ads", "google_ads", 1),  # buyers_email: Alice is suppressed
        ("responders", "email", 2),  # Alice scores 0.9 but is suppressed; Erin 0.2
        ("segments_ab", "meta_ads", 1),
        ("segments_ab", "meta_ads", 2),
    ]


# --- idempotence and history ----------------------------------------------------------------


def test_rerunning_a_date_gives_the_same_rows(history):
    for table, frame in history["d1"].items():
        pd.testing.assert_frame_equal(frame, history["d1_again"][table], obj=table)


def test_d2_adds_a_partition_and_a_new_category_column(history):
    d2 = history["d2"]
    # Dave signed up on D2; Erin's erasure on D2 removes her from D2 and from D1's partition
    assert profile_days(d2) == {"2024-03-10": [1, 2], "2024-03-11": [1, 2, 4]}
    assert "share_toys" in d2["user_profiles"].columns
    assert pd.isna(profile(d2, 1, D1)["share_toys"])  # Toys was not listed on D1
    assert profile(d2, 4, D2)["share_toys"] == pytest.approx(1.0)
    assert profile(d2, 1, D2)["recency_days"] == 1
    assert profile(d2, 1, D2)["share_books"] == pytest.approx(0.8)  # the D2 view is now seen
    sends = d2["fct_campaign_sends"].set_index("send_id")
    assert sorted(sends.index) == [100, 101, 102, 104]
    assert not bool(sends.loc[101, "has_responded"])  # answered after the window closed


def test_rerunning_d1_after_d2_keeps_d2_rows(history):
    before = history["d2"]["user_profiles"]
    after = history["d1_after_d2"]["user_profiles"]
    d2_rows = pd.to_datetime(before["as_of_date"]) == str(D2)
    pd.testing.assert_frame_equal(
        before[d2_rows].reset_index(drop=True),
        after[pd.to_datetime(after["as_of_date"]) == str(D2)].reset_index(drop=True),
    )
    d1_rows = after[pd.to_datetime(after["as_of_date"]) == str(D1)]
    assert sorted(d1_rows["user_id"]) == [1, 2, 5]
    assert profile(history["d1_after_d2"], 1, D1)["recency_days"] == 0


# --- the as_of_date var ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "var 'as_of_date' is required"),
        (
            ["--vars", "{as_of_date: '2024-02-30'}"],
            "must be a date as YYYY-MM-DD, got '2024-02-30'",
        ),
    ],
    ids=["missing", "invalid"],
)
def test_as_of_date_is_required_and_validated(tmp_path, extra, message):
    warehouse = tmp_path / "empty.duckdb"
    result = run_dbt(["run", "--select", "int_items_as_of", *extra], warehouse, tmp_path)
    assert not result.success
    messages = " ".join(str(r.message) for r in result.result.results)
    assert message in messages


def test_as_of_date_from_the_environment_keeps_the_saved_parse(tmp_path, monkeypatch):
    """MARKETING_AS_OF_DATE gives D without --vars, so a new date reuses the saved parse
    (dbt re-parses everything when --vars change); an as_of_date var still wins over it."""
    warehouse = tmp_path / "empty.duckdb"
    log = tmp_path / "logs" / "dbt.log"
    compiled = (tmp_path / "target" / "compiled" / "marketing" / "models" / "intermediate"
                / "int_items_as_of.sql")

    def compile_for(day: str, extra: tuple[str, ...] = ()) -> tuple[str, str]:
        monkeypatch.setenv("MARKETING_AS_OF_DATE", day)
        logged = log.stat().st_size if log.exists() else 0
        run_ok(["compile", "--select", "int_items_as_of", *extra], warehouse, tmp_path)
        with log.open(encoding="utf-8") as handle:
            handle.seek(logged)
            return compiled.read_text(encoding="utf-8"), handle.read()

    sql, _ = compile_for("2024-03-01")
    assert "'2024-03-01'" in sql
    sql, logged = compile_for("2024-03-02")
    assert "'2024-03-02'" in sql and "'2024-03-01'" not in sql
    assert "no changes found, skipping parsing" in logged  # not a single file re-parsed
    sql, _ = compile_for("2024-03-02", ("--vars", "{as_of_date: '2024-03-05'}"))
    assert "'2024-03-05'" in sql and "'2024-03-02'" not in sql


# --- brute-force cross-check of point_in_time_features --------------------------------------

RANDOM_D = date(2024, 6, 30)
CATEGORIES = ["Books", "Home & Garden", "toys!"]


def _random_warehouse(path: Path) -> dict[str, list[tuple]]:
    """Random users, events, orders and sends on an hourly grid, so timestamps often tie."""
    rng = random.Random(11)
    start = datetime(2024, 1, 1)

    def hour(max_days: int = 190) -> datetime:
        return start + timedelta(hours=rng.randrange(max_days * 24))

    users = [
        (u, f"u{u}@example.com", None, "F", "L", "DE", "C", "1", hour(60), True, True)
        for u in range(1, 16)
    ]
    items = [(i, f"item {i}", CATEGORIES[i % 3], 10.0) for i in range(1, 7)]
    events = [
        (
            e,
            rng.randint(1, 15),
            rng.randint(1, 6),
            rng.choice(["view", "view", "cart", "purchase"]),
            hour(),
            f"s{rng.randint(1, 40)}",
        )
        for e in range(1, 601)
    ]
    orders = [(o, rng.randint(1, 15), hour()) for o in range(1, 61)]
    lines = [
        (o, 1, rng.randint(1, 6), rng.randint(1, 3), rng.choice([9.99, 5.5, 20.0]))
        for o in range(1, 61)
    ]
    campaigns = [(1, "c", "email", datetime(2024, 1, 1), 3)]
    sends = [(s, 1, rng.randint(1, 15), hour(), False) for s in range(1, 81)]

    con = duckdb.connect(str(path), config=dict(CONNECTION_CONFIG))
    try:
        raw_fixture.create_tables(con)
        first = date(2024, 1, 1)
        raw_fixture.insert_raw(con, "users", users, [first] * len(users))
        raw_fixture.insert_raw(con, "items", items, [first] * len(items))
        raw_fixture.insert_raw(con, "events", events, [r[4].date() for r in events])
        raw_fixture.insert_raw(con, "orders", orders, [r[2].date() for r in orders])
        raw_fixture.insert_raw(
            con, "order_lines", lines, [orders[r[0] - 1][2].date() for r in lines]
        )
        raw_fixture.insert_raw(con, "campaigns", campaigns, [first])
        raw_fixture.insert_raw(con, "campaign_sends", sends, [r[3].date() for r in sends])
    finally:
        con.close()
    return {
        "users": users,
        "items": items,
        "events": events,
        "orders": orders,
        "lines": lines,
        "sends": sends,
    }


def _brute_force_features(data, user_id: int, reference_at: datetime, reference_date: date) -> dict:
    """Features of one user at one instant by looping over every row: the slow, obvious way."""
    cutoff = datetime.combine(RANDOM_D + timedelta(days=1), datetime.min.time())
    category = {i[0]: i[2] for i in data["items"]}
    totals: dict[int, float] = {}
    for order_id, _, _, quantity, price in data["lines"]:
        totals[order_id] = totals.get(order_id, 0.0) + quantity * price
    orders = [
        o for o in data["orders"] if o[1] == user_id and o[2] < reference_at and o[2] < cutoff
    ]
    events = [e for e in data["events"] if e[1] == user_id and e[4] < cutoff]
    session_starts: dict[str, datetime] = {}
    for e in events:
        session_starts[e[5]] = min(session_starts.get(e[5], e[4]), e[4])
    signed_up_at = next(u[8] for u in data["users"] if u[0] == user_id)
    monetary = sum(totals[o[0]] for o in orders)
    features = {
        "tenure_days": (reference_date - signed_up_at.date()).days,
        "recency_days": (reference_date - max(o[2] for o in orders).date()).days
        if orders
        else None,
        "count_orders_lifetime": len(orders),
        "monetary_lifetime": monetary,
        "average_order_value": monetary / len(orders) if orders else 0.0,
    }
    for days in (30, 90):
        start = reference_at - timedelta(days=days)
        window = [e for e in events if start <= e[4] < reference_at]
        for kind, name in (("view", "views"), ("cart", "carts"), ("purchase", "purchases")):
            features[f"count_{name}_{days}d"] = sum(e[3] == kind for e in window)
        features[f"count_sessions_{days}d"] = sum(
            start <= t < reference_at for t in session_starts.values()
        )
        if days == 90:
            views = features["count_views_90d"]
            features["conversion_rate_90d"] = (
                features["count_purchases_90d"] / views if views else 0.0
            )
            for name, slug in (
                ("Books", "books"),
                ("Home & Garden", "home_garden"),
                ("toys!", "toys"),
            ):
                hits = sum(category[e[2]] == name for e in window)
                features[f"share_{slug}"] = hits / len(window) if window else 0.0
    return features


@pytest.fixture(scope="module")
def random_build(tmp_path_factory):
    work = tmp_path_factory.mktemp("dbt_random")
    warehouse = work / "warehouse.duckdb"
    data = _random_warehouse(warehouse)
    run_ok(
        [
            "run",
            "--select",
            "+user_profiles",
            "+fct_campaign_sends",
            "+user_item_interactions",
            "+fct_user_snapshots",
            *as_of(RANDOM_D),
        ],
        warehouse,
        work,
    )
    con = duckdb.connect(str(warehouse), config=dict(CONNECTION_CONFIG))
    try:
        tables = {
            t: con.execute(f"select * from marts.{t}").df()
            for t in ("user_profiles", "fct_campaign_sends", "user_item_interactions",
                      "fct_user_snapshots")
        }
    finally:
        con.close()
    return data, tables


def _assert_features_match(row: pd.Series, expected: dict, label: str) -> None:
    for column, value in expected.items():
        got = row[column]
        if value is None:
            assert pd.isna(got), f"{label} {column}: expected NULL, got {got}"
        else:
            assert got == pytest.approx(value, abs=1e-9), f"{label} {column}"


def test_profiles_match_brute_force(random_build):
    data, tables = random_build
    profiles = tables["user_profiles"]
    assert sorted(profiles["user_id"]) == list(range(1, 16))
    reference_at = datetime.combine(RANDOM_D + timedelta(days=1), datetime.min.time())
    for row in profiles.itertuples(index=False):
        expected = _brute_force_features(data, row.user_id, reference_at, RANDOM_D)
        _assert_features_match(pd.Series(row._asdict()), expected, f"user {row.user_id}")


def test_snapshot_features_match_brute_force(random_build):
    data, tables = random_build
    snapshots = tables["fct_user_snapshots"]
    dates = sorted(set(snapshots["snapshot_date"].dt.date))
    assert dates == [RANDOM_D - timedelta(days=d) for d in (90, 60, 30)]
    for row in snapshots.itertuples(index=False):
        day = row.snapshot_date.date()
        reference_at = datetime.combine(day + timedelta(days=1), datetime.min.time())
        expected = _brute_force_features(data, row.user_id, reference_at, day)
        _assert_features_match(pd.Series(row._asdict()), expected, f"user {row.user_id} @ {day}")


def test_snapshots_keep_a_fixed_md5_subset_of_users(random_build, tmp_path):
    """Above var training_max_users, the users with the smallest md5 of their id (as an
    unsigned little-endian number, tie on id) keep exactly their rows of the full build."""
    data, tables = random_build
    warehouse = tmp_path / "warehouse.duckdb"
    _random_warehouse(warehouse)
    run_ok(
        ["run", "--select", "+fct_user_snapshots", "--vars",
         f"{{as_of_date: '{RANDOM_D.isoformat()}', training_max_users: 6}}"],
        warehouse,
        tmp_path,
    )
    con = duckdb.connect(str(warehouse), config=dict(CONNECTION_CONFIG))
    try:
        sampled = con.execute("select * from marts.fct_user_snapshots").df()
    finally:
        con.close()

    def md5_rank(user_id: int) -> tuple[int, int]:
        digest = hashlib.md5(str(user_id).encode()).digest()
        return int.from_bytes(digest, "little"), user_id

    kept = sorted((u[0] for u in data["users"]), key=md5_rank)[:6]
    full = tables["fct_user_snapshots"]
    expected = full.loc[full["user_id"].isin(kept)]
    assert len(full) == 3 * len(data["users"]) and len(expected) == 3 * 6
    order = ["user_id", "snapshot_date"]
    pd.testing.assert_frame_equal(
        sampled.sort_values(order).reset_index(drop=True),
        expected.sort_values(order).reset_index(drop=True),
    )


def test_campaign_send_features_match_brute_force(random_build):
    data, tables = random_build
    sends = tables["fct_campaign_sends"]
    cutoff = datetime.combine(RANDOM_D + timedelta(days=1), datetime.min.time())
    closed = {s[0] for s in data["sends"] if s[3] + timedelta(days=3) <= cutoff}
    assert set(sends["send_id"]) == closed and len(closed) > 50
    for row in sends.itertuples(index=False):
        expected = _brute_force_features(
            data, row.user_id, row.sent_at.to_pydatetime(), row.sent_at.date()
        )
        _assert_features_match(pd.Series(row._asdict()), expected, f"send {row.send_id}")


def test_interaction_strength_matches_brute_force(random_build):
    data, tables = random_build
    cutoff = datetime.combine(RANDOM_D + timedelta(days=1), datetime.min.time())
    weights = {"view": 1, "cart": 3, "purchase": 5}
    expected: dict[tuple[int, int], float] = {}
    for _, user_id, item_id, kind, event_at, _ in data["events"]:
        if event_at < cutoff:
            age = (RANDOM_D - event_at.date()).days
            key = (user_id, item_id)
            expected[key] = expected.get(key, 0.0) + weights[kind] * 0.5 ** (age / 30)
    got = {
        (r.user_id, r.item_id): r.strength
        for r in tables["user_item_interactions"].itertuples(index=False)
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        # each event's term is stored as an exact decimal with 6 places
        assert got[key] == pytest.approx(value, abs=1e-5), key


# --- int_user_daily_activity: a daily run rebuilds only what changed, exactly ---------------

INCREMENTAL_TABLES = {
    "daily_activity": "select * from intermediate.int_user_daily_activity "
    "order by user_id, activity_date",
    "campaign_sends": "select * from marts.fct_campaign_sends order by send_id",
}


def _incremental_tables(warehouse: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(warehouse), config=dict(CONNECTION_CONFIG))
    try:
        return {name: con.execute(sql).df() for name, sql in INCREMENTAL_TABLES.items()}
    finally:
        con.close()


def _late_data(con: duckdb.DuckDBPyConnection) -> None:
    """Late and out-of-order data for the incremental models (each clause says what it tests)."""
    day_before = RANDOM_D - timedelta(days=1)
    # events 1-3 days late: sessions cross days on the hourly grid, so starts move
    con.execute(
        "update raw.events set _partition_date = _partition_date + cast(event_id % 3 + 1 as int)"
        " where event_id % 7 = 0"
    )
    # item 6 listed only on D - 1: its earlier events had no category
    con.execute("update raw.items set _partition_date = ? where item_id = 6", [day_before])
    # users 3 and 2 (who has sends) erased at D 00:00, landed on D - 1
    requested = datetime.combine(RANDOM_D, datetime.min.time())
    raw_fixture.insert_raw(
        con, "erasure_requests", [(3, requested), (2, requested)], [day_before, day_before]
    )
    # orders and order lines 2 days late (features as of each send)
    con.execute("update raw.orders set _partition_date = _partition_date + 2 where order_id % 4 = 0")
    con.execute(
        "update raw.order_lines set _partition_date = _partition_date + 1 where order_id % 5 = 0"
    )
    # sends landed 2 days late
    con.execute(
        "update raw.campaign_sends set _partition_date = _partition_date + 2 where send_id % 5 = 0"
    )
    # responses within the 3-day window, every 3rd landing 2 days late (labels change)
    sends = con.execute(
        "select send_id, campaign_id, user_id, sent_at from raw.campaign_sends where send_id % 2 = 0"
    ).fetchall()
    responses = [
        (send_id, send_id, campaign_id, user_id, sent_at + timedelta(hours=5 + send_id % 40))
        for send_id, campaign_id, user_id, sent_at in sends
    ]
    raw_fixture.insert_raw(
        con, "campaign_responses", responses,
        [r[4].date() + timedelta(days=2 if r[0] % 3 == 0 else 0) for r in responses],
    )
    # Users 16-22 have nothing else, so one row alone must (re)build their send: user 16's
    # response, user 17's order (its line landed on time) and user 18's order line land late;
    # user 19's send is sent on D - 5 and its window closes during D - 2.
    first, day = date(2024, 1, 1), datetime(2024, 6, 20)
    raw_fixture.insert_raw(con, "users", [
        (u, f"u{u}@example.com", None, "F", "L", "DE", "C", "1", datetime(2024, 1, 5), True, True)
        for u in (16, 17, 18, 19)
    ], [first] * 4)
    sends = [(101 + i, 1, 16 + i, day + timedelta(hours=i), False) for i in range(3)]
    sends.append((104, 1, 19, datetime.combine(RANDOM_D, datetime.min.time()) - timedelta(days=5)
                  + timedelta(hours=12), False))
    raw_fixture.insert_raw(con, "campaign_sends", sends, [r[3].date() for r in sends])
    raw_fixture.insert_raw(
        con, "campaign_responses", [(101, 101, 1, 16, day + timedelta(hours=20))], [day_before]
    )
    # user 20 lands only on D - 2 (after the send to them), user 21's send lands on D - 1 and
    # user 22's one event (before their send) lands on D - 1
    raw_fixture.insert_raw(con, "users", [
        (u, f"u{u}@example.com", None, "F", "L", "DE", "C", "1", datetime(2024, 1, 5), True, True)
        for u in (20, 21, 22)
    ], [RANDOM_D - timedelta(days=2), first, first])
    late = [(105 + i, 1, 20 + i, day + timedelta(hours=3 + i), False) for i in range(3)]
    raw_fixture.insert_raw(con, "campaign_sends", late, [day.date(), day_before, day.date()])
    raw_fixture.insert_raw(
        con, "events", [(1001, 22, 1, "view", day - timedelta(hours=30), "s22")], [day_before]
    )
    ordered_at = datetime(2024, 6, 10)
    raw_fixture.insert_raw(
        con, "orders", [(101, 17, ordered_at), (102, 18, ordered_at)],
        [RANDOM_D - timedelta(days=2), ordered_at.date()],
    )
    raw_fixture.insert_raw(
        con, "order_lines", [(101, 1, 1, 2, 9.99), (102, 1, 2, 1, 20.0)],
        [ordered_at.date(), day_before],
    )
    # campaign 2 (2-day window) is listed on D - 2, after some of its sends landed
    raw_fixture.insert_raw(
        con, "campaigns", [(2, "late", "email", datetime(2024, 6, 1), 2)],
        [RANDOM_D - timedelta(days=2)],
    )
    con.execute(
        "update raw.campaign_sends set campaign_id = 2"
        " where send_id % 4 = 1 and send_id <= 80 and sent_at >= ?",
        [datetime(2024, 6, 1)],
    )


@pytest.fixture(scope="module")
def incremental_runs(tmp_path_factory):
    """The random shop built day by day (incremental) and rebuilt from scratch each day.

    Late data (_late_data): events, orders, order lines, sends and responses land days late,
    item 6 and campaign 2 are listed late, users 3 and 2 are erased on RANDOM_D - 1; then partition
    RANDOM_D is re-landed without a third of its events and RANDOM_D re-run; then an earlier
    date is run again (a backfill). Each step: (label, day, incremental tables, rebuilt
    tables, compiled SQL of the incremental fct_campaign_sends).
    """
    work = tmp_path_factory.mktemp("dbt_incremental")
    incremental = work / "incremental.duckdb"
    _random_warehouse(incremental)
    con = duckdb.connect(str(incremental), config=dict(CONNECTION_CONFIG))
    try:
        _late_data(con)
    finally:
        con.close()
    rebuilt = work / "rebuilt.duckdb"
    shutil.copy(incremental, rebuilt)

    select = ["--select", "+int_user_daily_activity", "+fct_campaign_sends"]
    steps: list[tuple[str, date, dict, dict, str]] = []

    def step(label: str, day: date) -> None:
        results = run_ok(["run", *select, *as_of(day)], incremental, work / "incremental")
        compiled = next(r.node.compiled_code for r in results if r.node.name == "fct_campaign_sends")
        run_ok(["run", *select, "--full-refresh", *as_of(day)], rebuilt, work / "rebuilt")
        steps.append(
            (label, day, _incremental_tables(incremental), _incremental_tables(rebuilt), compiled)
        )

    for days_back in (4, 3, 2, 1, 0):
        step(f"D-{days_back}", RANDOM_D - timedelta(days=days_back))
    for warehouse in (incremental, rebuilt):
        con = duckdb.connect(str(warehouse), config=dict(CONNECTION_CONFIG))
        try:
            con.execute(
                "delete from raw.events where _partition_date = ? and event_id % 3 = 0",
                [RANDOM_D],
            )
        finally:
            con.close()
    step("D re-landed", RANDOM_D)
    step("backfill D-2", RANDOM_D - timedelta(days=2))
    step("D after backfill", RANDOM_D)
    return steps


def test_daily_activity_runs_equal_rebuilds(incremental_runs):
    for label, _, got, want, _ in incremental_runs:
        got, want = got["daily_activity"], want["daily_activity"]
        assert len(want) > 100, label
        pd.testing.assert_frame_equal(
            got.drop(columns="as_of_date"), want.drop(columns="as_of_date"), obj=label
        )


def test_daily_activity_rebuilds_only_changed_days(incremental_runs):
    """The daily runs kept earlier days' rows (a rebuild stamps every row with its date), so
    the equality above is the incremental path's. Random sessions span weeks here, so a
    late event reopens many days; in a shop a day reopens about one."""
    kept = {
        label: (got["daily_activity"]["as_of_date"].dt.date < day).mean()
        for label, day, got, _, _ in incremental_runs
    }
    for label in ("D-3", "D-2", "D-1", "D-0", "D re-landed"):
        assert kept[label] > 0.2, (label, kept[label])
    # a backfill of an earlier date is rebuilt as of that date, and so is the next date
    # after it (the table was built for D - 2, not D - 1)
    assert kept["backfill D-2"] == 0 and kept["D after backfill"] == 0
    erased = incremental_runs[-1][2]["daily_activity"]
    first = incremental_runs[0][2]["daily_activity"]
    assert 3 not in set(erased["user_id"]) and 3 in set(first["user_id"])


def test_campaign_sends_runs_equal_rebuilds(incremental_runs):
    for label, _, got, want, _ in incremental_runs:
        got, want = got["campaign_sends"], want["campaign_sends"]
        assert len(want) > 40 and want["has_responded"].any(), label
        pd.testing.assert_frame_equal(got, want, obj=label)


def test_campaign_sends_extend_only_the_day_before(incremental_runs):
    """Which runs took the incremental path (the equality above is then that path's): each
    day after the day before, not the first run, the re-run of D, the backfill, or the
    date after the backfill. The late data reached the incremental runs: campaign 2's sends
    appeared on D - 2 and user 2's rows left on D (requested at D 00:00)."""
    marker = "the run for D - 1 built the rest"
    extended = {label: marker in compiled for label, _, _, _, compiled in incremental_runs}
    assert extended == {
        "D-4": False, "D-3": True, "D-2": True, "D-1": True, "D-0": True,
        "D re-landed": False, "backfill D-2": False, "D after backfill": False,
    }
    sends = {label: got["campaign_sends"] for label, _, got, _, _ in incremental_runs}
    assert 2 not in set(sends["D-3"]["campaign_id"]) and 2 in set(sends["D-2"]["campaign_id"])
    assert 2 in set(sends["D-1"]["user_id"]) and 2 not in set(sends["D-0"]["user_id"])


# --- views built for another date ------------------------------------------------------------


def test_a_table_refuses_views_built_for_another_date(tmp_path):
    """Clearing one Airflow table task of D1 after D2 ran would read D2's point-in-time views:
    the table stops before writing anything and says how to rebuild the views."""
    warehouse = raw_fixture.build_warehouse(tmp_path / "warehouse.duckdb")
    run_ok(["build", "--select", "tag:profiles", "--exclude-resource-type", "unit_test",
            *as_of(D2)], warehouse, tmp_path)
    tables = ("user_item_interactions", "fct_user_snapshots")
    before = read_tables(warehouse, tables)

    # fct_user_snapshots' own pre-hook would empty it: the check runs before any other hook
    result = run_dbt(["run", "--select", *tables, *as_of(D1)], warehouse, tmp_path)
    assert not result.success
    assert [str(r.status) for r in result.result.results] == ["error", "error"]
    message = " ".join(str(r.message) for r in result.result.results)
    assert f"built for as_of_date={D1}" in message
    assert f"intermediate.int_events_as_of (as_of_date={D2})" in message
    assert "clear task dbt_views" in message
    after = read_tables(warehouse, tables)
    for table in tables:
        assert len(before[table])
        pd.testing.assert_frame_equal(after[table], before[table])

    # what clearing from dbt_views does: the views first, then the table
    run_ok(["run", "--select", "tag:profiles,config.materialized:view", *as_of(D1)],
           warehouse, tmp_path)
    run_ok(["run", "--select", "user_item_interactions", *as_of(D1)], warehouse, tmp_path)
    rebuilt = read_tables(warehouse, ("user_item_interactions",))["user_item_interactions"]
    assert set(pd.to_datetime(rebuilt["as_of_date"]).dt.date) == {D1}


def _event_id_test(warehouse: Path, work_dir: Path, day: date):
    """Status of the event-id uniqueness test for ``day`` (and the dbt result)."""
    result = run_dbt(["test", "--select", "stg_shop__events,test_name:unique_in_run_partition",
                      *as_of(day)], warehouse, work_dir)
    statuses = [str(r.status) for r in result.result.results]
    assert len(statuses) == 1, statuses
    return statuses[0], result


def test_event_ids_of_the_run_date_are_checked_against_every_partition(tmp_path):
    """The daily id test reads only D's keys but finds a repeat of one in any partition;
    repeats between two partitions before D are landing's to reject, not this run's."""
    warehouse = raw_fixture.build_warehouse(tmp_path / "warehouse.duckdb")
    run_ok(["run", "--select", "stg_shop__events", *as_of(D1)], warehouse, tmp_path)
    assert _event_id_test(warehouse, tmp_path, D1)[0] == "pass"

    con = duckdb.connect(str(warehouse), config=dict(CONNECTION_CONFIG))
    try:
        # event 7 (2024-03-01) again in D1's partition, bypassing landing's duplicate rule
        con.execute("insert into raw.events select * replace (? as _partition_date) "
                    "from raw.events where event_id = 7", [D1])
    finally:
        con.close()
    status, result = _event_id_test(warehouse, tmp_path, D1)
    assert status == "fail" and not result.success
    assert result.result.results[0].failures == 1
    # the same rows seen from D2: both copies lie before D2, so D2's check does not look
    assert _event_id_test(warehouse, tmp_path, D2)[0] == "pass"
