"""Helpers the steps share: the run date, D's profiles, metric rows, typed partition writes and
the check that a mart was built for the run date."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pandas as pd

from marketing import warehouse


def as_date(value: date | str) -> date:
    """The run date from a ``date`` or an ISO string (Airflow passes ``"YYYY-MM-DD..."``)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def read_profiles(con, as_of: date) -> pd.DataFrame:
    """D's ``marts.user_profiles`` rows by user (through Arrow: 1M users in ~0.4 s, not ~0.9 s)."""
    return warehouse.read_frame(
        con, "select * from marts.user_profiles where as_of_date = ? order by user_id", [as_of]
    )


def built_dates(con, table: str) -> list[date]:
    """The ``as_of_date`` values ``table`` holds rows for (one column scan)."""
    return [row[0] for row in con.execute(f"select distinct as_of_date from {table}").fetchall()]


def require_built_for(built: Iterable[date], table: str, as_of: date, *,
                      built_for: date | None = None, use: str = "reads it",
                      other_cause: str = "") -> None:
    """Refuse to go on when a mart dbt rebuilds for one date at a time holds another date.

    ``marts.user_item_interactions`` and the training marts hold only the date dbt last built
    them for (``built_for``, by default the run date ``as_of``). A step of D cleared alone
    after a later date ran would find no rows for D (or the later date's rows) and replace
    D's outputs with a degenerate result, so it stops first, naming the table, the dates it
    holds and how to re-run D. A table with no rows passes (nothing was built from any date).

    Raises
    ------
    RuntimeError
        If ``built`` holds a date other than ``built_for``.
    """
    wanted = as_of if built_for is None else built_for
    built = sorted(set(built))
    if built and built != [wanted]:
        raise RuntimeError(
            f"{table} holds rows built for {', '.join(d.isoformat() for d in built)}, not for "
            f"{wanted}, but the {as_of} run {use}: dbt built it for another date since (a "
            "later date ran, or the refit plan changed after dbt ran"
            f"{', or ' + other_cause if other_cause else ''}). Re-run {as_of} from task "
            "dbt_views (Clear with downstream)"
        )


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
