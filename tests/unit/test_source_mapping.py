"""Source mappings: validation, invoice-line semantics, time zones, late data, idempotence."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml

from marketing.land import LandingError, land
from marketing.source_mapping import SourceMappingError, load_mapping, materialise
from marketing.warehouse import connect

D1, D2 = date(2026, 9, 28), date(2026, 9, 29)
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"

INVOICE_MAPPING = {
    "version": 1,
    "invoice_lines": {
        "path": "exports/invoices_*.csv",
        "partition": {"by": "filename"},
        "timestamp_format": "%m/%d/%Y %H:%M",
        "timezone": "Europe/London",
        "columns": {
            "invoice": "InvoiceNo",
            "stock_code": "StockCode",
            "description": "Description",
            "quantity": "Quantity",
            "invoice_date": "InvoiceDate",
            "unit_price": "UnitPrice",
            "customer_id": "CustomerID",
            "country": "Country",
        },
    },
}


def _mapping_file(folder: Path, mapping: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mapping.yml"
    path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    return path


def _export(folder: Path, name: str, body: str, header: str = HEADER) -> Path:
    (folder / "exports").mkdir(parents=True, exist_ok=True)
    path = folder / "exports" / name
    path.write_text(header + body, encoding="utf-8")
    return path


def _run(folder: Path, as_of: date, mapping: dict | None = None):
    path = _mapping_file(folder, mapping or INVOICE_MAPPING)
    written = materialise(load_mapping(path), folder, folder / "landing", as_of)
    with connect(folder / "w.duckdb") as con:
        report = land(con, folder / "landing", as_of, reland_days=1)
    return written, report


def _query(folder: Path, sql: str):
    with connect(folder / "w.duckdb") as con:
        return con.execute(sql).fetchall()


def _expected_item_id(code: str) -> int:
    return int(hashlib.md5(code.upper().encode()).hexdigest()[:15], 16)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(version=2), "version"),
        (lambda m: m["invoice_lines"].update(colour="red"), "colour"),
        (lambda m: m["invoice_lines"].update(timezone="Mars/Olympus"), "unknown time zone"),
        (lambda m: m["invoice_lines"].update(partition={"by": "column"}), "needs partition.column"),
        (lambda m: m["invoice_lines"].update(partition={"by": "filename", "pattern": "x"}),
         "exactly one group"),
        (lambda m: m["invoice_lines"]["columns"].pop("invoice"), "invoice"),
        (lambda m: m["invoice_lines"].update(delimiter=";;"), "one character"),
        (lambda m: m.update(tables={"orderz": {}}), "orderz"),
        (lambda m: m.update(invoice_lines=None), "maps nothing"),
    ],
)
def test_invalid_mapping_names_the_file_and_entry(tmp_path, change, message):
    mapping = yaml.safe_load(yaml.safe_dump(INVOICE_MAPPING))
    change(mapping)
    path = _mapping_file(tmp_path, mapping)
    with pytest.raises(SourceMappingError, match=message) as raised:
        load_mapping(path)
    assert str(path) in str(raised.value)


def test_table_mapping_must_cover_required_contract_columns(tmp_path):
    mapping = {
        "version": 1,
        "tables": {
            "items": {
                "path": "items.csv",
                "partition": {"by": "filename"},
                "columns": {"item_id": "sku", "name": "title", "price": "price"},
            }
        },
    }
    with pytest.raises(SourceMappingError, match=r"tables.items.*category not mapped"):
        load_mapping(_mapping_file(tmp_path, mapping))


def test_the_shipped_example_mapping_is_valid():
    root = Path(__file__).resolve().parents[2]
    mapping = load_mapping(root / "include" / "source_mappings" / "invoice_lines_example.yml")
    assert mapping.invoice_lines.columns.invoice == "InvoiceNo"
    base = root / "include" / "source_mappings"
    assert sorted(base.glob(mapping.invoice_lines.path))  # the globs point at the fixture


# ------------------------------------------------------------------ invoice semantics


def test_invoice_lines_derive_every_table_with_real_world_semantics(tmp_path):
    _export(
        tmp_path,
        "invoices_2026-09-28.csv",
        "536365,85123A,WHITE HEART,6,9/28/2026 8:26,2.55,17850.0,United Kingdom\n"
        "536365,71053,WHITE LANTERN,6,9/28/2026 8:26,3.39,17850.0,United Kingdom\n"
        "536365,71053,WHITE LANTERN,6,9/28/2026 8:26,3.39,17850.0,United Kingdom\n"  # dup
        "536366,22633,HAND WARMER,6,9/28/2026 8:28,0,17850.0,United Kingdom\n"  # free
        "536367,85123A,WHITE HEART,2,9/28/2026 9:00,2.55,,France\n"  # guest
        "C536368,85123A,WHITE HEART,-1,9/28/2026 10:00,2.55,17850.0,United Kingdom\n",
    )
    _, report = _run(tmp_path, D1)
    assert _query(tmp_path, "select user_id, country, signed_up_at, email_opt_in from raw.users") == [
        (17850, "United Kingdom", datetime(2026, 9, 28, 7, 26), False)  # BST -> UTC
    ]
    items = dict(_query(tmp_path, "select item_id, price from raw.items"))
    assert items == {
        _expected_item_id("85123A"): 2.55,
        _expected_item_id("71053"): 3.39,
        _expected_item_id("22633"): 0.0,
    }
    orders = _query(
        tmp_path, "select order_id, user_id, is_cancelled, is_guest from raw.orders order by 1"
    )
    assert orders == [
        (-536368, 17850, True, False),
        (536365, 17850, False, False),
        (536366, 17850, False, False),
        (536367, None, False, True),
    ]
    # the cancellation's line carries the returned quantity as a positive number
    assert _query(tmp_path, "select quantity from raw.order_lines where order_id = -536368") == [(1,)]
    assert _query(
        tmp_path,
        "select source_file, row_number, rule from raw.rejected_rows where table_name = 'order_lines'",
    ) == [("exports/invoices_2026-09-28.csv", 3, "duplicate_order_id_line_number")]
    # purchases: not the cancellation, not the guest, not the free line, the duplicate once
    events = _query(tmp_path, "select session_id, count(*) from raw.events group by 1 order by 1")
    assert events == [("536365", 2)]
    assert _query(tmp_path, "select count(*) from raw.rejected_rows where table_name = 'events'") == [(0,)]
    assert report.counts == {"guest_orders": 1, "cancelled_orders": 1}


def test_mixed_time_zones_all_end_up_in_utc(tmp_path):
    mapping = yaml.safe_load(yaml.safe_dump(INVOICE_MAPPING))
    mapping["invoice_lines"]["timestamp_format"] = None
    _export(
        tmp_path,
        "invoices_2026-09-28.csv",
        "1,A,a,1,2026-09-28T10:00:00+02:00,1.0,1,X\n"
        "2,A,a,1,2026-09-28T08:00:00Z,1.0,1,X\n"
        "3,A,a,1,2026-09-28 09:00:00,1.0,1,X\n"  # naive: Europe/London (BST)
        "4,A,a,1,2026-09-28 09:00:00-07:00,1.0,1,X\n",
    )
    _run(tmp_path, D1, mapping)
    assert _query(tmp_path, "select order_id, ordered_at from raw.orders order by 1") == [
        (1, datetime(2026, 9, 28, 8)),
        (2, datetime(2026, 9, 28, 8)),
        (3, datetime(2026, 9, 28, 8)),
        (4, datetime(2026, 9, 28, 16)),
    ]


def test_unparseable_values_are_rejected_naming_the_shops_file_and_row(tmp_path):
    _export(
        tmp_path,
        "invoices_2026-09-28.csv",
        "536365,85123A,WHITE HEART,6,9/28/2026 8:26,2.55,17850,UK\n"
        "536366,85123A,WHITE HEART,6,not a date,2.55,17850,UK\n"
        "INV-7,85123A,WHITE HEART,6,9/28/2026 8:26,2.55,17850,UK\n"
        "536367,,NO CODE,6,9/28/2026 8:26,2.55,17850,UK\n"
        "536368,85123A,WHITE HEART,six,9/28/2026 8:26,2.55,17850,UK\n",
    )
    _run(tmp_path, D1)
    rules = _query(
        tmp_path,
        "select table_name, source_file, row_number, rule from raw.rejected_rows "
        "where table_name in ('orders', 'order_lines') order by row_number, table_name",
    )
    file = "exports/invoices_2026-09-28.csv"
    assert ("orders", file, 2, "unparseable_ordered_at") in rules
    assert ("orders", file, 3, "unparseable_order_id") in rules
    assert ("order_lines", file, 4, "null_item_id") in rules
    assert ("order_lines", file, 5, "unparseable_quantity") in rules


def test_a_mapped_source_without_files_refuses(tmp_path):
    with pytest.raises(LandingError, match=r"invoice_lines: no file matches 'exports/invoices_\*.csv'"):
        _run(tmp_path, D1)


def test_missing_mapped_column_refuses_with_a_hint(tmp_path):
    _export(tmp_path, "invoices_2026-09-28.csv", "1,A,a,1,9/28/2026 8:26,1.0,1,X\n",
            header=HEADER.replace("CustomerID", "Customer ID"))
    with pytest.raises(LandingError, match=r"invoices_2026-09-28.csv: missing mapped column\(s\) "
                       r"CustomerID.*'Customer ID' looks like a renamed 'CustomerID'"):
        _run(tmp_path, D1)


def test_late_lines_in_the_next_days_file_are_not_lost_and_relanding_is_idempotent(tmp_path):
    _export(tmp_path, "invoices_2026-09-28.csv", "1,A,a,1,9/28/2026 8:00,1.0,7,X\n")
    _run(tmp_path, D1)
    # D2's file also carries a sale made late on D1 (23:50 London)
    _export(tmp_path, "invoices_2026-09-29.csv",
            "2,A,a,1,9/29/2026 9:00,1.0,7,X\n3,B,b,2,9/28/2026 23:50,2.0,8,X\n")
    _run(tmp_path, D2)
    before = _query(tmp_path, "select * from raw.orders order by order_id")
    assert [(r[0], r[3]) for r in before] == [(1, D1), (2, D2), (3, D2)]
    landing_files = sorted((tmp_path / "landing").rglob("*.parquet"))
    digest = [p.read_bytes() for p in landing_files]
    _run(tmp_path, D2)  # re-run the same day: same files, same rows, nothing doubled
    assert [p.read_bytes() for p in sorted((tmp_path / "landing").rglob("*.parquet"))] == digest
    assert _query(tmp_path, "select * from raw.orders order by order_id") == before
    assert _query(tmp_path, "select count(*) from raw.rejected_rows") == [(0,)]


def test_one_large_file_split_by_timestamp_column(tmp_path):
    mapping = yaml.safe_load(yaml.safe_dump(INVOICE_MAPPING))
    mapping["invoice_lines"]["path"] = "exports/all.csv"
    mapping["invoice_lines"]["partition"] = {"by": "column", "column": "InvoiceDate"}
    _export(
        tmp_path,
        "all.csv",
        "1,A,a,1,9/28/2026 8:00,1.0,7,X\n2,A,a,1,9/29/2026 9:00,1.0,7,X\n"
        "3,A,a,1,9/30/2026 9:00,1.0,7,X\n",
    )
    written, _ = _run(tmp_path, D2, mapping)
    assert written["orders"] == 2  # the 30th is after D: not written, never read
    assert _query(tmp_path, "select order_id, _partition_date from raw.orders order by 1") == [
        (1, D1), (2, D2)
    ]


def test_generic_table_mapping_with_renames_and_constants(tmp_path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "products_2026-09-28.csv").write_text(
        "sku;title;cost\n10;mug;5,0\n11;lamp;20\n", encoding="utf-8"
    )
    mapping = {
        "version": 1,
        "tables": {
            "items": {
                "path": "exports/products_*.csv",
                "delimiter": ";",
                "partition": {"by": "filename"},
                "columns": {
                    "item_id": "sku",
                    "name": "title",
                    "category": {"constant": "uncategorised"},
                    "price": "cost",
                },
            }
        },
    }
    _, report = _run(tmp_path, D1, mapping)
    assert _query(tmp_path, "select item_id, category, price from raw.items") == [
        (11, "uncategorised", 20.0)
    ]
    # a decimal comma is not silently misread: the row is rejected with its rule
    assert report.rejected_by_rule == {"unparseable_price": 1}
    assert any("absent" in note and "'users'" in note for note in report.notes)


def test_latin1_export_is_read_when_the_mapping_says_so_and_refused_otherwise(tmp_path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "invoices_2026-09-28.csv").write_bytes(
        (HEADER + "1,A,CAF\xc9 MUG,1,9/28/2026 8:00,1.0,7,X\n").encode("latin-1")
    )
    with pytest.raises(LandingError, match=r"invoices_2026-09-28.csv: unreadable csv .*encoding utf-8"):
        _run(tmp_path, D1)
    mapping = yaml.safe_load(yaml.safe_dump(INVOICE_MAPPING))
    mapping["invoice_lines"]["encoding"] = "latin-1"
    _run(tmp_path, D1, mapping)
    assert _query(tmp_path, "select name from raw.items") == [("A CAF\u00c9 MUG",)]
