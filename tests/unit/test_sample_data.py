"""The sample shop generator: contract schemas, determinism, integrity and planted structure.

Tiny samples (600 users, 120 items, 30 days) generated once per module; the checks read the
files back with DuckDB / pyarrow the way the loader would.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketing.contract import TABLES
from marketing.sample_catalog import build_catalog
from marketing.sample_data import generate, main
from marketing.sample_io import LANDING_SCHEMAS
from marketing.sample_personas import CATEGORIES, PERSONA_NAMES

SAMPLE = {"n_users": 600, "n_items": 120, "n_days": 30, "seed": 7, "end_date": date(2026, 9, 30)}
START = SAMPLE["end_date"] - timedelta(days=SAMPLE["n_days"] - 1)
PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
DUCKDB_TO_ARROW = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
    "TIMESTAMP": pa.timestamp("us"),
}
TIMESTAMP_COLUMN = {
    "events": "event_at",
    "orders": "ordered_at",
    "campaigns": "starts_at",
    "campaign_sends": "sent_at",
    "campaign_responses": "responded_at",
    "suppressions": "suppressed_at",
    "erasure_requests": "requested_at",
}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    summary = generate(out, **SAMPLE)
    assert summary["users"] == SAMPLE["n_users"]
    return out


@pytest.fixture(scope="module")
def con(sample):
    connection = duckdb.connect()
    for table in LANDING_SCHEMAS:
        connection.execute(
            f"create view {table} as select * from read_parquet("
            f"'{sample}/landing/{table}/*/*.parquet', hive_partitioning = true)"
        )
    for name in ("personas", "item_groups", "campaign_sends_truth"):
        connection.execute(
            f"create view truth_{name} as select * from "
            f"read_parquet('{sample}/sample_truth/{name}.parquet')"
        )
    yield connection
    connection.close()


def _one(con, sql: str):
    return con.execute(sql).fetchone()[0]


# --- layout and schemas -------------------------------------------------------------------


def test_every_table_lands_in_date_partitions(sample):
    landing = sample / "landing"
    assert sorted(p.name for p in landing.iterdir() if p.is_dir()) == sorted(LANDING_SCHEMAS)
    for table_dir in landing.iterdir():
        if not table_dir.is_dir():
            continue
        partitions = list(table_dir.iterdir())
        assert partitions, table_dir.name
        for partition in partitions:
            match = PARTITION.match(partition.name)
            assert match, partition
            day = date.fromisoformat(match.group(1))
            assert START <= day <= SAMPLE["end_date"]
            assert [f.name for f in partition.iterdir()] == ["part-0.parquet"]
            assert pq.ParquetFile(partition / "part-0.parquet").metadata.num_rows > 0


def test_schemas_match_the_contract_exactly(sample):
    for table, spec in TABLES.items():
        expected = pa.schema([(c, DUCKDB_TO_ARROW[t]) for c, t in spec.columns.items()])
        assert LANDING_SCHEMAS[table].equals(expected), table
        for path in (sample / "landing" / table).glob("*/part-0.parquet"):
            schema = pq.read_schema(path)
            assert schema.equals(expected), (table, path)
            assert schema.metadata is None or b"pandas" not in schema.metadata


def test_duckdb_reads_naive_timestamps(con):
    types = dict(con.execute("select column_name, column_type from (describe events)").fetchall())
    assert types["event_at"] == "TIMESTAMP"
    assert types["event_id"] == "BIGINT"


def test_sample_json_and_truth_files(sample):
    meta = json.loads((sample / "landing" / "_sample.json").read_text())
    assert meta["seed"] == SAMPLE["seed"]
    assert meta["start_date"] == START.isoformat()
    assert meta["end_date"] == SAMPLE["end_date"].isoformat()
    assert (meta["n_users"], meta["n_items"], meta["n_days"]) == (600, 120, 30)
    assert meta["categories"] == list(CATEGORIES)
    truth = sample / "sample_truth"
    assert sorted(p.name for p in truth.iterdir()) == [
        "campaign_sends_truth.parquet",
        "item_groups.parquet",
        "personas.parquet",
        "response_function.json",
    ]
    assert pq.read_schema(truth / "personas.parquet").names == ["user_id", "persona"]
    assert pq.read_schema(truth / "item_groups.parquet").names[:3] == [
        "item_id", "group_id", "category",
    ]
    assert pq.read_schema(truth / "campaign_sends_truth.parquet").names[:2] == [
        "send_id", "true_probability",
    ]


# --- determinism and re-generation ----------------------------------------------------------


def test_same_seed_gives_identical_bytes(sample, tmp_path):
    generate(tmp_path, **SAMPLE)
    first, again = _files(sample), _files(tmp_path)
    assert first.keys() == again.keys()
    assert [name for name in first if first[name] != again[name]] == []


def test_different_seed_gives_different_data(sample, tmp_path):
    generate(tmp_path, **{**SAMPLE, "seed": 8})
    personas = "sample_truth/personas.parquet"
    assert (tmp_path / personas).read_bytes() != (sample / personas).read_bytes()
    events = sorted((tmp_path / "landing" / "events").glob("*/part-0.parquet"))[0]
    assert events.read_bytes() != (sample / events.relative_to(tmp_path)).read_bytes()


def test_regeneration_removes_only_landing_and_truth(tmp_path):
    small = {**SAMPLE, "n_users": 50, "n_items": 16, "n_days": 10}
    stray = tmp_path / "landing" / "events" / "date=1999-01-01" / "part-0.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"old")
    (tmp_path / "sample_truth").mkdir()
    (tmp_path / "sample_truth" / "old.json").write_text("{}")
    keep = tmp_path / "warehouse.duckdb"
    keep.write_bytes(b"keep")
    generate(tmp_path, **small)
    assert not stray.parent.exists()
    assert not (tmp_path / "sample_truth" / "old.json").exists()
    assert keep.read_bytes() == b"keep"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_items": 4}, "n_items"),
        ({"n_days": 3}, "n_days"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments_raise(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, **{**SAMPLE, **override})


def test_cli_writes_and_prints_summary(tmp_path, capsys):
    code = main(["--users", "40", "--items", "16", "--days", "8", "--seed", "3",
                 "--end-date", "2026-09-30", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["users"] == 40
    assert set(LANDING_SCHEMAS) <= set(summary)
    assert (tmp_path / "landing" / "_sample.json").exists()


# --- row-level integrity --------------------------------------------------------------------


def test_keys_are_unique(con):
    for table, spec in TABLES.items():
        key = ", ".join(spec.key)
        duplicates = _one(
            con, f"select count(*) from (select {key} from {table} group by all having count(*) > 1)"
        )
        assert duplicates == 0, table
        for column in spec.not_null:
            assert _one(con, f"select count(*) from {table} where {column} is null") == 0


def test_timestamps_fall_inside_their_partition_day(con):
    for table, column in TIMESTAMP_COLUMN.items():
        outside = _one(con, f"select count(*) from {table} where cast({column} as date) <> date")
        assert outside == 0, table
    # users before the period land in the first partition, the others on their sign-up day
    assert _one(
        con,
        "select count(*) from users where cast(signed_up_at as date) <> date "
        f"and not (date = date '{START}' and signed_up_at < timestamp '{START}')",
    ) == 0


def test_foreign_keys_and_partition_order(con):
    checks = {
        "events.user_id": "select count(*) from events e left join users u using (user_id) "
        "where u.user_id is null or u.date > e.date",
        "events.item_id": "select count(*) from events e left join items i using (item_id) "
        "where i.item_id is null or i.date > e.date",
        "orders.user_id": "select count(*) from orders o left join users u using (user_id) "
        "where u.user_id is null or u.date > o.date",
        "order_lines.order_id": "select count(*) from order_lines l "
        "left join orders o using (order_id) where o.order_id is null or o.date > l.date",
        "sends": "select count(*) from campaign_sends s left join campaigns c using (campaign_id) "
        "left join users u on u.user_id = s.user_id "
        "where c.campaign_id is null or u.user_id is null or c.date > s.date or u.date > s.date",
        "responses": "select count(*) from campaign_responses r "
        "left join campaign_sends s using (send_id) where s.send_id is null "
        "or s.user_id <> r.user_id or s.campaign_id <> r.campaign_id "
        "or r.responded_at < s.sent_at or r.responded_at >= s.sent_at + interval 7 day",
        "erasure_requests": "select count(*) from erasure_requests e "
        "left join users u using (user_id) where u.user_id is null",
        "suppressions": "select count(*) from suppressions s left join users u "
        "on lower(trim(u.email)) = lower(s.email) where u.user_id is null",
    }
    for name, sql in checks.items():
        assert _one(con, sql) == 0, name


def test_no_activity_before_signup_or_from_erasure_day(con):
    for table, column in (("events", "event_at"), ("orders", "ordered_at"),
                          ("campaign_responses", "responded_at")):
        early = _one(con, f"select count(*) from {table} t join users u using (user_id) "
                          f"where t.{column} < u.signed_up_at")
        late = _one(con, f"select count(*) from {table} t join erasure_requests e "
                         f"using (user_id) where cast(t.{column} as date) >= e.date")
        assert (early, late) == (0, 0), table
    assert _one(con, "select count(*) from campaign_sends s join users u using (user_id) "
                     "where cast(u.signed_up_at as date) >= s.date") == 0
    assert _one(con, "select count(*) from campaign_sends s join erasure_requests e "
                     "using (user_id) where e.date <= s.date") == 0
    assert _one(con, "select count(*) from erasure_requests e join users u using (user_id) "
                     "where e.requested_at <= u.signed_up_at") == 0


def test_orders_have_lines_and_matching_purchase_events(con):
    assert _one(con, "select count(*) from orders o where not exists "
                     "(select 1 from order_lines l where l.order_id = o.order_id)") == 0
    # one purchase event per line: same user, item and time as the order
    mismatch = _one(con, """
        with lines as (
            select o.user_id, l.item_id, o.ordered_at, count(*) as n
            from order_lines l join orders o using (order_id) group by all
        ),
        purchases as (
            select user_id, item_id, event_at as ordered_at, count(*) as n
            from events where event_type = 'purchase' group by all
        )
        select count(*) from lines full join purchases using (user_id, item_id, ordered_at)
        where lines.n is distinct from purchases.n
    """)
    assert mismatch == 0
    numbering = _one(con, "select count(*) from (select order_id, max(line_number) as m, "
                          "count(*) as n, min(line_number) as lo from order_lines group by 1) "
                          "where m <> n or lo <> 1")
    assert numbering == 0
    prices = _one(con, "select count(*) from order_lines l join items i using (item_id) "
                       "where l.unit_price <> i.price or l.quantity < 1")
    assert prices == 0


def test_sessions_belong_to_one_user_and_day(con):
    assert _one(con, "select count(*) from (select session_id from events group by 1 "
                     "having count(distinct user_id) > 1 or count(distinct date) > 1)") == 0
    # every purchase follows a cart of the same item in the same session
    assert _one(con, """
        select count(*) from events p where p.event_type = 'purchase' and not exists (
            select 1 from events c where c.event_type = 'cart' and c.session_id = p.session_id
            and c.item_id = p.item_id and c.event_at <= p.event_at)
    """) == 0


# --- users and contact details --------------------------------------------------------------


def test_contact_details_are_realistic(con):
    rows = con.execute("select email, phone, country from users").fetchall()
    normalised = [email.strip().lower() for email, _, _ in rows]
    assert len(set(normalised)) == len(rows)
    assert all(re.fullmatch(r"[a-z.]+\d+@example\.(com|org|net)", e) for e in normalised)
    assert any(email != email.strip() for email, _, _ in rows)
    assert any(email == email.upper() for email, _, _ in rows)
    assert {c for _, _, c in rows} == {"US", "GB", "DE", "FR", "NL", "ES"}
    for _, phone, country in rows:
        parsed = phonenumbers.parse(phone, country)
        assert phonenumbers.is_valid_number(parsed), (phone, country)
        assert phone == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    assert len({p for _, p, _ in rows}) == len(rows)


def test_user_rates_are_near_their_targets(con):
    n = _one(con, "select count(*) from users")
    before = _one(con, f"select count(*) from users where signed_up_at < timestamp '{START}'")
    assert 0.6 <= before / n <= 0.8
    assert 0.5 <= _one(con, "select avg(email_opt_in::int) from users") <= 0.7
    assert 0.6 <= _one(con, "select avg(ads_opt_in::int) from users") <= 0.8
    earliest = _one(con, "select min(cast(signed_up_at as date)) from users")
    assert earliest >= START - timedelta(days=730)
    assert _one(con, "select count(*) from suppressions") == round(0.03 * n)
    assert _one(con, "select count(*) from erasure_requests") == round(0.005 * n)


# --- planted structure ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def persona_means(con):
    frame = con.execute(f"""
        with o as (
            select user_id, count(*) as orders, max(cast(ordered_at as date)) as last_order,
                   sum(l.spend) as spend
            from orders join (select order_id, sum(quantity * unit_price) as spend
                              from order_lines group by 1) l using (order_id)
            group by 1
        ),
        e as (
            select user_id,
                   count(*) filter (where event_type = 'view') as views,
                   count(*) filter (where event_type = 'purchase') as purchases,
                   count(distinct session_id) as sessions
            from events group by 1
        )
        select p.persona,
               avg(coalesce(o.orders, 0)) as orders,
               avg(coalesce(date_diff('day', o.last_order, date '{SAMPLE["end_date"]}'), 30))
                   as recency,
               avg(coalesce(o.spend, 0) / greatest(o.orders, 1)) as order_value,
               avg(coalesce(e.views, 0)) as views,
               sum(coalesce(e.purchases, 0)) / sum(coalesce(e.views, 0)) as conversion,
               avg(date_diff('day', cast(u.signed_up_at as date), date '{SAMPLE["end_date"]}'))
                   as tenure
        from truth_personas p join users u using (user_id)
        left join o using (user_id) left join e using (user_id)
        group by 1
    """).df()
    return frame.set_index("persona")


def test_personas_are_stored_for_every_user(con):
    assert _one(con, "select count(*) from truth_personas") == SAMPLE["n_users"]
    assert _one(con, "select count(*) from truth_personas join users using (user_id)") == 600
    assert {r[0] for r in con.execute("select distinct persona from truth_personas").fetchall()} \
        == set(PERSONA_NAMES)


def test_personas_differ_in_their_features(persona_means):
    m = persona_means
    assert m.loc["champions", "orders"] > 2 * m.loc["lapsed", "orders"]
    assert m.loc["champions", "orders"] > m.loc["big_ticket", "orders"]
    assert m.loc["lapsed", "recency"] > m.loc["champions", "recency"] + 5
    assert m.loc["window_shoppers", "conversion"] < 0.5 * m["conversion"].drop(
        "window_shoppers").min()
    assert m.loc["window_shoppers", "views"] > m.loc["big_ticket", "views"]
    assert m.loc["big_ticket", "order_value"] > 2 * m["order_value"].drop(
        ["big_ticket", "window_shoppers"]).max()
    assert m.loc["bargain_hunters", "order_value"] < m.loc["champions", "order_value"]
    assert m.loc["newcomers", "tenure"] <= SAMPLE["n_days"]
    assert m["tenure"].drop("newcomers").min() > 100


def test_each_persona_prefers_its_own_category(con):
    top = dict(con.execute("""
        select persona, arg_max(category, n) from (
            select p.persona, i.category, count(*) as n
            from events e join truth_personas p using (user_id) join items i using (item_id)
            group by all
        ) group by 1
    """).fetchall())
    assert top == {
        "champions": "fashion",
        "bargain_hunters": "grocery",
        "window_shoppers": "home",
        "big_ticket": "electronics",
        "lapsed": "books",
        "newcomers": "beauty",
    }


def test_sessions_stay_mostly_in_one_copurchase_group(con):
    share = _one(con, """
        with v as (
            select e.session_id, g.group_id from events e join truth_item_groups g using (item_id)
            where e.event_type = 'view'
        ),
        top as (
            select session_id, max(n) as top_n, sum(n) as total
            from (select session_id, group_id, count(*) as n from v group by all) group by 1
        )
        select sum(top_n) / sum(total) from top
    """)
    assert share > 0.8


def test_item_groups_are_within_one_category_and_sized(con):
    assert _one(con, "select count(*) from truth_item_groups g join items i using (item_id) "
                     "where g.category <> i.category") == 0
    assert _one(con, "select max(c) from (select group_id, count(distinct category) as c "
                     "from truth_item_groups group by 1)") == 1
    catalog = build_catalog(2000, np.random.default_rng(0))
    sizes = np.bincount(catalog.group)
    assert sizes.min() >= 10 and sizes.max() <= 20


def test_item_picking_matches_brute_force():
    catalog = build_catalog(300, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    groups = rng.integers(0, catalog.n_groups, 5000)
    u = rng.random(5000)
    for tilt in range(3):
        items = catalog.pick_items_in_groups(groups, u, tilt)
        assert (catalog.group[items] == groups).all()
    category = rng.integers(0, len(CATEGORIES), 5000)
    picked = catalog.pick_groups(category, u)
    assert (catalog.group_category[picked] == category).all()
    # frequencies follow the weights: the cumulative keys invert to the right item
    counts = np.bincount(catalog.pick_items_in_groups(np.zeros(200_000, dtype="int64"),
                                                      rng.random(200_000), 0),
                         minlength=catalog.n_items)
    members = np.flatnonzero(catalog.group == 0)
    assert counts[np.setdiff1d(np.arange(catalog.n_items), members)].sum() == 0
    assert (counts[members] > 0).all()


# --- campaigns and the response truth -------------------------------------------------------


def test_campaigns_channels_controls_and_window(con):
    campaigns = con.execute("select channel, response_window_days from campaigns "
                            "order by campaign_id").fetchall()
    assert len(campaigns) == 4
    assert {c for c, _ in campaigns} == {"email", "google_ads", "meta_ads"}
    assert {w for _, w in campaigns} == {7}
    control = _one(con, "select avg(is_control::int) from campaign_sends")
    assert 0.03 <= control <= 0.2
    # e-mail sends only reach opted-in users who were not suppressed before the send day
    assert _one(con, """
        select count(*) from campaign_sends s join campaigns c using (campaign_id)
        join users u on u.user_id = s.user_id
        left join suppressions x on lower(x.email) = lower(trim(u.email)) and x.date < s.date
        where c.channel = 'email' and (not u.email_opt_in or x.email is not null)
    """) == 0


def test_truth_features_match_point_in_time_recomputation(con):
    """Brute force: recompute every send's features from the landed rows before sent_at."""
    mismatches = _one(con, """
        with f as (
            select s.send_id,
                (select count(*) from orders o
                 where o.user_id = s.user_id and o.ordered_at < s.sent_at) as orders,
                (select date_diff('day', max(cast(o.ordered_at as date)), cast(s.sent_at as date))
                 from orders o where o.user_id = s.user_id and o.ordered_at < s.sent_at)
                    as recency,
                (select count(*) from events e
                 where e.user_id = s.user_id and e.event_type = 'view'
                   and e.event_at >= s.sent_at - interval 30 day and e.event_at < s.sent_at)
                    as views,
                date_diff('day', cast(u.signed_up_at as date), cast(s.sent_at as date)) as tenure
            from campaign_sends s join users u using (user_id)
        )
        select count(*) from f full join truth_campaign_sends_truth t using (send_id)
        where t.send_id is null or f.send_id is null
           or f.orders <> t.count_orders_lifetime
           or f.recency is distinct from t.recency_days
           or f.views <> t.count_views_30d
           or f.tenure <> t.tenure_days
    """)
    assert mismatches == 0


def test_true_probability_follows_the_published_function(sample, con):
    spec = json.loads((sample / "sample_truth" / "response_function.json").read_text())
    c = spec["coefficients"]
    truth = con.execute("select * from truth_campaign_sends_truth order by send_id").df()
    recency = np.minimum(truth["recency_days"].astype("float64").fillna(90).to_numpy(), 90)
    logit = (
        c["intercept"]
        + c["log1p_orders"] * np.log1p(truth["count_orders_lifetime"].to_numpy())
        + c["recency_months"] * recency / 30
        + c["log1p_views_30d"] * np.log1p(truth["count_views_30d"].to_numpy())
        + c["tenure_years"] * np.minimum(truth["tenure_days"].to_numpy(), 730) / 365
        + c["is_treated"] * (~truth["is_control"].to_numpy())
    )
    np.testing.assert_allclose(truth["true_probability"], 1 / (1 + np.exp(-logit)), rtol=1e-12)
    assert set(spec["features"]) >= {
        "count_orders_lifetime", "recency_days", "count_views_30d", "tenure_days",
    }
    summary = spec["sample_summary"]
    assert summary["sends"] == len(truth)
    # treated sends respond more than controls on average (the planted treatment effect)
    p = truth["true_probability"].to_numpy()
    control = truth["is_control"].to_numpy()
    assert p[~control].mean() > p[control].mean()
