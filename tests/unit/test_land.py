import json
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from marketing.land import LandingError, land
from marketing.warehouse import connect

D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)


def _write(landing: Path, table: str, day: date, frame: pd.DataFrame) -> Path:
    folder = landing / table / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-0.parquet"
    frame.to_parquet(path, index=False)
    return path


def _users(ids, day):
    return pd.DataFrame(
        {
            "user_id": ids,
            "email": [f"u{i}@example.com" for i in ids],
            "phone": ["+1 201 555 0100"] * len(ids),
            "first_name": ["A"] * len(ids),
            "last_name": ["B"] * len(ids),
            "country": ["US"] * len(ids),
            "city": ["X"] * len(ids),
            "postal_code": ["10001"] * len(ids),
            "signed_up_at": [datetime(day.year, day.month, day.day, 9)] * len(ids),
            "email_opt_in": [True] * len(ids),
            "ads_opt_in": [True] * len(ids),
        }
    )


def _events(rows, day):
    return pd.DataFrame(
        rows, columns=["event_id", "user_id", "item_id", "event_type", "event_at", "session_id"]
    )


@pytest.fixture()
def landing(tmp_path):
    landing = tmp_path / "landing"
    _write(landing, "users", D1, _users([1, 2], D1))
    _write(landing, "users", D2, _users([3, 3], D2))  # duplicate id inside one file
    _write(
        landing,
        "items",
        D1,
        pd.DataFrame({"item_id": [10, 11], "name": ["a", "b"], "category": ["c", "c"],
                      "price": [5.0, -1.0]}),
    )
    at = datetime(2026, 3, 2, 12)
    _write(
        landing,
        "events",
        D2,
        _events(
            [
                (100, 1, 10, "view", at, "s1"),
                (101, 1, 10, "purchase", at, "s1"),
                (102, None, 10, "view", at, "s1"),  # null user
                (103, 9, 10, "view", at, "s2"),  # unknown user
                (104, 1, 11, "view", at, "s1"),  # item rejected for negative price
                (105, 1, 10, "click", at, "s1"),  # not an event type
                (106, 1, 10, "view", datetime(2026, 3, 4), "s1"),  # after its partition day
                (100, 1, 10, "view", at, "s1"),  # duplicate event id
            ],
            D2,
        ),
    )
    _write(landing, "events", D3, _events([(200, 1, 10, "view", datetime(2026, 3, 3, 1), "s9")], D3))
    return landing


def _rows(con, sql):
    return con.execute(sql).fetchall()


def test_land_rejects_rows_with_rule_and_row(tmp_path, landing):
    with connect(tmp_path / "wh.duckdb") as con:
        report = land(con, landing, D2)
        assert _rows(con, "select event_id from raw.events order by 1") == [(100,), (101,)]
        rejected = _rows(
            con,
            "select table_name, row_number, rule from raw.rejected_rows order by table_name, row_number",
        )
    assert rejected == [
        ("events", 3, "null_user_id"),
        ("events", 4, "unknown_user_id"),
        ("events", 5, "unknown_item_id"),
        ("events", 6, "invalid_event_type"),
        ("events", 7, "timestamp_after_partition_date"),
        ("events", 8, "duplicate_event_id"),
        ("items", 2, "negative_price"),
        ("users", 2, "duplicate_user_id"),
    ]
    assert report.tables["events"] == {"partitions": 1, "rows_loaded": 2, "rows_rejected": 6}
    assert report.rejected_by_rule["null_user_id"] == 1
    # Every rejected row keeps its values: raw text for rule breakers, typed values otherwise.
    with connect(tmp_path / "wh.duckdb") as con:
        records = dict(_rows(con, "select rule, record from raw.rejected_rows "
                                  "where table_name = 'events'"))
    assert json.loads(records["invalid_event_type"])["event_type"] == "click"
    assert json.loads(records["null_user_id"])["user_id"] is None
    assert json.loads(records["duplicate_event_id"])["event_id"] == "100"
    assert json.loads(records["unknown_user_id"])["user_id"] == "9"


def test_land_never_reads_after_run_date(tmp_path, landing):
    with connect(tmp_path / "wh.duckdb") as con:
        land(con, landing, D2)
        assert _rows(con, "select max(_partition_date) from raw.events") == [(D2,)]
        land(con, landing, D3)
        assert _rows(con, "select max(_partition_date) from raw.events") == [(D3,)]


def test_relanding_a_date_is_idempotent(tmp_path, landing):
    with connect(tmp_path / "wh.duckdb") as con:
        land(con, landing, D2)
        before = _rows(con, "select * from raw.events order by event_id")
        rejected = _rows(con, "select count(*) from raw.rejected_rows")
        land(con, landing, D2)
        land(con, landing, D2, reland_days=5)
        assert _rows(con, "select * from raw.events order by event_id") == before
        assert _rows(con, "select count(*) from raw.rejected_rows") == rejected
        assert _rows(con, "select count(*) from raw.load_log where table_name = 'events'") == [(1,)]


def test_changed_file_is_relanded(tmp_path, landing):
    with connect(tmp_path / "wh.duckdb") as con:
        land(con, landing, D3)
        _write(landing, "events", D2, _events([(300, 2, 10, "cart", datetime(2026, 3, 2), "s")], D2))
        land(con, landing, D3)
        assert _rows(con, "select event_id from raw.events order by 1") == [(200,), (300,)]


def test_missing_column_refuses_landing_and_names_file(tmp_path, landing):
    bad = _write(landing, "events", D3, _events([], D3).drop(columns=["event_type"]))
    with connect(tmp_path / "wh.duckdb") as con:
        land(con, landing, D2)
        before = _rows(con, "select count(*) from raw.events")
        with pytest.raises(LandingError, match=r"events/date=2026-03-03/part-0.parquet.*event_type"):
            land(con, landing, D3)
        assert _rows(con, "select count(*) from raw.events") == before
    assert bad.exists()


def test_unreadable_file_is_refused(tmp_path, landing):
    folder = landing / "orders" / "date=2026-03-01"
    folder.mkdir(parents=True)
    (folder / "part-0.parquet").write_bytes(b"not parquet")
    with connect(tmp_path / "wh.duckdb") as con, pytest.raises(LandingError, match="cannot be read"):
        land(con, landing, D1)
