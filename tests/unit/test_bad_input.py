"""The bad-input catalogue: every kind is quarantined with its rule or refuses the run.

A tiny clean landing zone (CSV, native layout) is landed for D2 with exactly one kind of damage
applied; row-level damage must land the clean rows and put the damaged row, with file, row
number and rule, into ``raw.rejected_rows``; structural damage must raise ``LandingError``
naming the file and the problem, and leave the warehouse exactly as it was.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from marketing.land import LandingError, land
from marketing.warehouse import connect

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)

USERS = (
    "user_id,email,phone,first_name,last_name,country,city,postal_code,signed_up_at,"
    "email_opt_in,ads_opt_in\n"
    "1,a@example.com,,A,B,GB,London,N1,2026-03-01 09:00:00,true,true\n"
    "2,b@example.com,,C,D,FR,Paris,75001,2026-03-01 10:00:00,false,true\n"
)
ITEMS = "item_id,name,category,price\n10,mug,kitchen,5.0\n11,lamp,home,20.0\n"
ORDERS = "order_id,user_id,ordered_at\n500,1,2026-03-02 12:00:00\n501,2,2026-03-02 13:00:00\n"
LINES = "order_id,line_number,item_id,quantity,unit_price\n500,1,10,2,5.0\n501,1,11,1,20.0\n"
EVENTS = (
    "event_id,user_id,item_id,event_type,event_at,session_id\n"
    "900,1,10,view,2026-03-02 11:00:00,s1\n"
    "901,1,10,purchase,2026-03-02 12:00:00,s1\n"
    "902,2,11,view,2026-03-02 12:30:00,s2\n"
)
CLEAN = {
    ("users", D1): USERS,
    ("items", D1): ITEMS,
    ("orders", D2): ORDERS,
    ("order_lines", D2): LINES,
    ("events", D2): EVENTS,
}


def _write_zone(root: Path, files: dict) -> Path:
    landing = root / "landing"
    for (table, day), content in files.items():
        folder = landing / table / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "part-0.csv"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return landing


def _land(tmp_path: Path, files: dict):
    landing = _write_zone(tmp_path, files)
    with connect(tmp_path / "w.duckdb") as con:
        report = land(con, landing, D2)
        rejected = con.execute(
            "select table_name, source_file, row_number, rule from raw.rejected_rows "
            "order by all"
        ).fetchall()
    return report, rejected


def _append(table: str, day: date, row: str) -> dict:
    files = dict(CLEAN)
    files[(table, day)] = files[(table, day)] + row + "\n"
    return files


# kind -> (table, partition day, appended row, expected rule); the bad row is row 3 or 4
ROW_KINDS = {
    "null_id": ("events", D2, "903,,10,view,2026-03-02 11:00:00,s1", "null_user_id"),
    "unparseable_timestamp": (
        "events", D2, "903,1,10,view,yesterday noon,s1", "unparseable_event_at"),
    "future_timestamp": (
        "events", D2, "903,1,10,view,2026-03-09 11:00:00,s1", "timestamp_after_partition_date"),
    "negative_price": ("items", D1, "12,vase,home,-3.0", "negative_price"),
    "negative_quantity": ("order_lines", D2, "500,2,11,-1,20.0", "negative_quantity"),
    "non_numeric_price": ("order_lines", D2, "500,2,11,1,twenty", "unparseable_unit_price"),
    "non_numeric_quantity": ("order_lines", D2, "500,2,11,a few,20.0", "unparseable_quantity"),
    "unknown_item_id": ("events", D2, "903,1,99,view,2026-03-02 11:00:00,s1", "unknown_item_id"),
    "unknown_user_id": ("events", D2, "903,7,10,view,2026-03-02 11:00:00,s1", "unknown_user_id"),
    "unknown_order_id": ("order_lines", D2, "777,1,10,1,5.0", "unknown_order_id"),
    "duplicate_id_in_file": (
        "events", D2, "900,1,10,view,2026-03-02 11:00:00,s1", "duplicate_event_id"),
    "duplicate_composite_key": ("order_lines", D2, "500,1,11,1,20.0",
                                "duplicate_order_id_line_number"),
    "extreme_outlier_quantity": ("order_lines", D2, "500,2,11,5000000,20.0", "outlier_quantity"),
    "extreme_outlier_price": ("items", D1, "12,diamond,home,99999999", "outlier_price"),
    "mixed_types_in_column": ("events", D2, "903,1,ten,view,2026-03-02 11:00:00,s1",
                              "unparseable_item_id"),
    "invalid_enum": ("events", D2, "903,1,10,click,2026-03-02 11:00:00,s1", "invalid_event_type"),
    "null_user_on_non_guest_order": ("orders", D2, "502,,2026-03-02 14:00:00", "null_user_id"),
}


@pytest.mark.parametrize("kind", sorted(ROW_KINDS))
def test_row_level_damage_is_quarantined_with_file_row_and_rule(tmp_path, kind):
    table, day, row, rule = ROW_KINDS[kind]
    clean_rows = CLEAN[(table, day)].count("\n") - 1
    report, rejected = _land(tmp_path, _append(table, day, row))
    expected = (table, f"{table}/date={day.isoformat()}/part-0.csv", clean_rows + 1, rule)
    assert expected in rejected
    assert report.rejected_by_rule.get(rule, 0) >= 1
    assert report.tables[table]["rows_loaded"] == clean_rows  # the clean rows still land


def test_duplicate_id_against_an_earlier_partition(tmp_path):
    files = dict(CLEAN)
    files[("events", date(2026, 3, 1))] = (
        "event_id,user_id,item_id,event_type,event_at,session_id\n"
        "902,1,10,view,2026-03-01 11:00:00,s0\n"
    )
    _, rejected = _land(tmp_path, files)
    assert ("events", "events/date=2026-03-02/part-0.csv", 3, "duplicate_event_id") in rejected


def test_clean_zone_has_no_rejections(tmp_path):
    """The control: without damage nothing is rejected (so each case above tests its damage)."""
    report, rejected = _land(tmp_path, dict(CLEAN))
    assert rejected == []
    assert report.rows_loaded == 2 + 2 + 2 + 2 + 3


def test_guest_order_may_have_no_user(tmp_path):
    files = dict(CLEAN)
    files[("orders", D2)] = (
        "order_id,user_id,ordered_at,is_guest\n500,1,2026-03-02 12:00:00,false\n"
        "501,,2026-03-02 13:00:00,true\n"
    )
    report, rejected = _land(tmp_path, files)
    assert rejected == []
    assert report.counts["guest_orders"] == 1


def test_extra_column_is_ignored_with_a_warning(tmp_path, caplog):
    files = dict(CLEAN)
    files[("items", D1)] = "item_id,name,category,price,colour\n10,mug,kitchen,5.0,red\n11,lamp,home,20.0,\n"
    report, rejected = _land(tmp_path, files)
    assert rejected == [] and report.tables["items"]["rows_loaded"] == 2
    assert "ignoring extra column(s) colour" in caplog.text


def test_header_only_file_lands_nothing_and_is_not_an_error(tmp_path):
    files = dict(CLEAN)
    files[("events", D2)] = EVENTS.splitlines()[0] + "\n"
    report, _ = _land(tmp_path, files)
    assert report.tables["events"]["rows_loaded"] == 0


_ITEMS_PATH = "items/date=2026-03-01/part-0.csv"

STRUCTURAL_KINDS = {
    "missing_column": ("item_id,name,price\n10,mug,5.0\n", r"missing required column\(s\) category"),
    "renamed_column": (
        "item_id,name,categories,price\n10,mug,kitchen,5.0\n", r"'categories' looks like a renamed 'category'"),
    "empty_file": ("", r"empty file"),
    "truncated_file": (ITEMS + "12,va", r"unreadable CSV"),
    "wrong_delimiter": (ITEMS.replace(",", ";"), r"wrong delimiter"),
    "wrong_encoding": (
        "item_id,name,category,price\n10,caf\xe9 mug,kitchen,5.0\n".encode("latin-1"),
        r"not UTF-8 text"),
    "unterminated_quote": ('item_id,name,category,price\n10,"mug,kitchen,5.0\n', r"unreadable CSV"),
}


@pytest.mark.parametrize("kind", sorted(STRUCTURAL_KINDS))
def test_structural_damage_refuses_the_run_and_writes_nothing(tmp_path, kind):
    content, message = STRUCTURAL_KINDS[kind]
    # a first, clean landing: what is already there must survive the refused run untouched
    first = dict(CLEAN)
    del first[("items", D1)]
    first[("items", date(2026, 2, 28))] = ITEMS
    landing = _write_zone(tmp_path, first)
    with connect(tmp_path / "w.duckdb") as con:
        land(con, landing, date(2026, 2, 28))
        before = con.execute("select count(*) from raw.items").fetchone()[0]
        log_before = con.execute("select count(*) from raw.load_log").fetchone()[0]
    _write_zone(tmp_path, {("items", D1): content})
    with connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(LandingError, match=message) as raised:
            land(con, landing, D2)
        assert _ITEMS_PATH in str(raised.value)
        assert con.execute("select count(*) from raw.items").fetchone()[0] == before
        assert con.execute("select count(*) from raw.load_log").fetchone()[0] == log_before
        assert con.execute("select count(*) from raw.events").fetchone()[0] == 0


def test_truncated_parquet_refuses_the_run(tmp_path):
    landing = _write_zone(tmp_path, {k: v for k, v in CLEAN.items() if k[0] != "items"})
    folder = landing / "items" / f"date={D1.isoformat()}"
    folder.mkdir(parents=True)
    path = folder / "part-0.parquet"
    pd.DataFrame({"item_id": [10], "name": ["a"], "category": ["c"], "price": [1.0]}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:-40])
    with connect(tmp_path / "w.duckdb") as con, pytest.raises(LandingError, match="part-0.parquet"):
        land(con, landing, D2)


def test_summary_landing_section_counts_rejections_by_table_and_rule(tmp_path):
    from marketing.summary import _landing_lines

    files = _append("order_lines", D2, "500,2,11,-1,20.0")
    files[("events", D2)] += "903,,10,view,2026-03-02 11:00:00,s1\n904,,10,view,2026-03-02 11:00:00,s1\n"
    _land(tmp_path, files)
    with connect(tmp_path / "w.duckdb") as con:
        text = "\n".join(_landing_lines(con, D2))
    assert "rejected rows: 3" in text
    assert any(
        line.split() == ["events", "null_user_id", "2"] for line in text.splitlines()
    ), text
    assert any(
        line.split() == ["order_lines", "negative_quantity", "1"] for line in text.splitlines()
    ), text
    assert "absent sources (empty tables): campaigns, campaign_sends" in text
