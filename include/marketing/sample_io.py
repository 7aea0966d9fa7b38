"""Writing the sample's landing partitions and truth files (Parquet via pyarrow).

Files are built straight from numpy arrays with the contract schemas below (no pandas, so
no index or pandas metadata), compressed with zstd, and are byte-identical for the same
input. Timestamps are naive UTC ``timestamp[us]``; ids are ``int64``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TIMESTAMP = pa.timestamp("us")

LANDING_SCHEMAS: dict[str, pa.Schema] = {
    "users": pa.schema([
        ("user_id", pa.int64()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("first_name", pa.string()),
        ("last_name", pa.string()),
        ("country", pa.string()),
        ("city", pa.string()),
        ("postal_code", pa.string()),
        ("signed_up_at", TIMESTAMP),
        ("email_opt_in", pa.bool_()),
        ("ads_opt_in", pa.bool_()),
    ]),
    "items": pa.schema([
        ("item_id", pa.int64()),
        ("name", pa.string()),
        ("category", pa.string()),
        ("price", pa.float64()),
    ]),
    "events": pa.schema([
        ("event_id", pa.int64()),
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("event_type", pa.string()),
        ("event_at", TIMESTAMP),
        ("session_id", pa.string()),
    ]),
    "orders": pa.schema([
        ("order_id", pa.int64()),
        ("user_id", pa.int64()),
        ("ordered_at", TIMESTAMP),
    ]),
    "order_lines": pa.schema([
        ("order_id", pa.int64()),
        ("line_number", pa.int32()),
        ("item_id", pa.int64()),
        ("quantity", pa.int32()),
        ("unit_price", pa.float64()),
    ]),
    "campaigns": pa.schema([
        ("campaign_id", pa.int64()),
        ("campaign_name", pa.string()),
        ("channel", pa.string()),
        ("starts_at", TIMESTAMP),
        ("response_window_days", pa.int32()),
    ]),
    "campaign_sends": pa.schema([
        ("send_id", pa.int64()),
        ("campaign_id", pa.int64()),
        ("user_id", pa.int64()),
        ("sent_at", TIMESTAMP),
        ("is_control", pa.bool_()),
    ]),
    "campaign_responses": pa.schema([
        ("response_id", pa.int64()),
        ("send_id", pa.int64()),
        ("campaign_id", pa.int64()),
        ("user_id", pa.int64()),
        ("responded_at", TIMESTAMP),
    ]),
    "suppressions": pa.schema([
        ("email", pa.string()),
        ("reason", pa.string()),
        ("suppressed_at", TIMESTAMP),
    ]),
    "erasure_requests": pa.schema([
        ("user_id", pa.int64()),
        ("requested_at", TIMESTAMP),
    ]),
}
"""Landing file schemas, exactly as ``docs/contracts.md`` lists the columns."""

TRUTH_SCHEMAS: dict[str, pa.Schema] = {
    "personas": pa.schema([("user_id", pa.int64()), ("persona", pa.string())]),
    "item_groups": pa.schema([
        ("item_id", pa.int64()),
        ("group_id", pa.int64()),
        ("category", pa.string()),
    ]),
    "campaign_sends_truth": pa.schema([
        ("send_id", pa.int64()),
        ("true_probability", pa.float64()),
        ("is_control", pa.bool_()),
        ("count_orders_lifetime", pa.int64()),
        ("recency_days", pa.int64()),
        ("count_views_30d", pa.int64()),
        ("tenure_days", pa.int64()),
    ]),
}
"""Truth files: the contract's columns first, then the send's true features (for checks)."""

PARQUET_COMPRESSION = "zstd"
DICTIONARY_COLUMNS = frozenset({
    "event_type", "category", "channel", "reason", "country", "city", "first_name",
    "last_name", "campaign_name", "persona",
})
"""Low-cardinality string columns; only these are dictionary-encoded (ids and timestamps
would only pay for a dictionary that overflows)."""


def _column(values, field: pa.Field) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values if values.type == field.type else values.cast(field.type)
    array = np.asarray(values)
    if array.dtype.kind == "f" and pa.types.is_integer(field.type):
        missing = np.isnan(array)
        return pa.array(np.where(missing, 0, array).astype("int64"), mask=missing,
                        type=field.type)
    return pa.array(array, type=field.type)


def to_table(schema: pa.Schema, columns: Mapping[str, object]) -> pa.Table:
    """Build a table with exactly ``schema``'s columns (in order) from arrays.

    Parameters
    ----------
    schema : pyarrow.Schema
        Target columns and types; integer microseconds become timestamps, float NaN in an
        integer column becomes NULL.
    columns : mapping
        Column name -> numpy array or pyarrow array; extra keys are an error.

    Returns
    -------
    pyarrow.Table
    """
    extra = set(columns) - set(schema.names)
    missing = set(schema.names) - set(columns)
    if extra or missing:
        raise ValueError(f"columns do not match the schema: extra {sorted(extra)}, "
                         f"missing {sorted(missing)}")
    return pa.Table.from_arrays(
        [_column(columns[f.name], f) for f in schema], schema=schema
    )


def codes_to_strings(codes: np.ndarray, labels: tuple[str, ...]) -> pa.Array:
    """Map small integer codes to their labels (fast, via ``take``)."""
    return pa.array(labels, type=pa.string()).take(pa.array(codes))


def session_ids(numbers: np.ndarray) -> pa.Array:
    """Session numbers as strings ``"s000000042"`` (zero-padded to 9 digits)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, type=pa.int64()), pa.string()), 9, "0")
    return pc.binary_join_element_wise("s", digits, "")


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` (parents created) deterministically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dictionary = [name for name in table.column_names if name in DICTIONARY_COLUMNS]
    pq.write_table(table, path, compression=PARQUET_COMPRESSION, use_dictionary=dictionary)


def write_json(payload: dict, path: Path) -> None:
    """Write ``payload`` as sorted, indented JSON with a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class LandingWriter:
    """Writes ``landing/<table>/date=YYYY-MM-DD/part-0.parquet`` and counts rows per table.

    Parameters
    ----------
    landing_dir : Path
        The landing zone root.
    """

    def __init__(self, landing_dir: Path) -> None:
        self.landing_dir = landing_dir
        self.rows: Counter[str] = Counter()

    def path(self, table: str, day: date) -> Path:
        return self.landing_dir / table / f"date={day.isoformat()}" / "part-0.parquet"

    def write(self, table: str, day: date, columns: Mapping[str, object]) -> int:
        """Write one table's partition for ``day``; an empty partition writes nothing.

        Returns
        -------
        int
            Rows written.
        """
        arrow = to_table(LANDING_SCHEMAS[table], columns)
        if arrow.num_rows == 0:
            return 0
        write_parquet(arrow, self.path(table, day))
        self.rows[table] += arrow.num_rows
        return arrow.num_rows
