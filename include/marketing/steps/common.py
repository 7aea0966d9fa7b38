"""Helpers every step shares: the run date, metric rows and typed partition writes."""

from __future__ import annotations

from datetime import date

import pandas as pd

from marketing import warehouse


def as_date(value: date | str) -> date:
    """The run date from a ``date`` or an ISO string (Airflow passes ``"YYYY-MM-DD..."``)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def metrics_frame(model: str, metrics: dict[str, float]) -> pd.DataFrame:
    """``ml.model_runs`` rows (metric, value, model) of one model's metrics."""
    return pd.DataFrame(
        {"metric": list(metrics), "value": [float(v) for v in metrics.values()]}
    ).assign(model=model)


def rounded_metric(value: float) -> float | None:
    """JSON-able metric for XCom (None for NaN)."""
    return None if value != value else round(float(value), 4)


def write_partition(con, table: str, frame: pd.DataFrame, as_of: date,
                    also_keyed_by: dict[str, str] | None = None) -> int:
    """``warehouse.replace_partition``, but an empty first write still gets typed columns.

    A table created from an empty frame would get untyped (NULL) ``as_of_date`` and object
    columns; when scoring is skipped on a fresh warehouse the table is created here instead,
    with ``as_of_date DATE`` and text columns as VARCHAR, so later runs can insert.
    """
    if not frame.empty or warehouse.table_exists(con, table):
        return warehouse.replace_partition(con, table, frame, as_of, also_keyed_by)
    typed = frame.astype({c: "str" for c in frame.columns if frame[c].dtype == object})
    if table == "ml.model_runs":
        typed = typed.astype({"metric": "str", "value": "float64", "model": "str"})
    con.execute(f"create schema if not exists {table.split('.')[0]}")
    with warehouse.registered(con, "_empty_incoming", typed) as view:
        con.execute(f"create table {table} as select *, cast(null as date) as as_of_date "
                    f"from {view} limit 0")
    return 0
