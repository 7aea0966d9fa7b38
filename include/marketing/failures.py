"""Failure log: every task failure of the daily DAG as a row in ``ops.task_failures``.

The DAG's failure and retry callbacks call :func:`record_failure`; operators read the table with
``python -m marketing.failures`` (or any read-only DuckDB client once the run has finished) and
retry from the Airflow UI. The table lives in the warehouse, not in the analysts' copy: it is
operational state, and its error text may quote raw values.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from marketing import warehouse
from marketing.settings import Settings

logger = logging.getLogger(__name__)

TABLE = "ops.task_failures"
MAX_ERROR_CHARS = 4000
_LOCK_RETRIES = 5
_LOCK_BACKOFF_SECONDS = 2.0

_CREATE_SQL = f"""
create table if not exists {TABLE} (
    dag_id varchar not null,
    run_id varchar not null,
    task_id varchar not null,
    as_of_date date not null,
    try_number integer not null,
    state varchar not null,
    error_type varchar,
    error varchar,
    recorded_at timestamp not null
)
"""


@dataclass(frozen=True)
class TaskFailure:
    """One failed (or up-for-retry) task try.

    Attributes
    ----------
    dag_id, run_id, task_id : str
        Which task instance failed.
    as_of_date : date
        The run date D (the DAG's ``ds``).
    try_number : int
        Airflow's try number of the failed try (1 = first try).
    state : str
        ``"failed"`` (no retries left) or ``"up_for_retry"``.
    error_type : str or None
        Class name of the exception, when there was one.
    error : str or None
        The exception's message, cut to ``MAX_ERROR_CHARS`` characters.
    """

    dag_id: str
    run_id: str
    task_id: str
    as_of_date: date
    try_number: int
    state: str
    error_type: str | None
    error: str | None

    @classmethod
    def from_exception(
        cls,
        *,
        dag_id: str,
        run_id: str,
        task_id: str,
        as_of_date: date | str,
        try_number: int,
        state: str,
        exception: BaseException | str | None,
    ) -> TaskFailure:
        """Build a failure record, turning ``exception`` into a type name and a short message."""
        if state not in ("failed", "up_for_retry"):
            raise ValueError(f"state must be 'failed' or 'up_for_retry', got {state!r}")
        as_of = as_of_date if isinstance(as_of_date, date) else date.fromisoformat(
            str(as_of_date)[:10]
        )
        if isinstance(exception, BaseException):
            error_type, error = type(exception).__name__, str(exception)
        elif exception is None:
            error_type, error = None, None
        else:
            error_type, error = None, str(exception)
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 3] + "..."
        return cls(dag_id, run_id, task_id, as_of, int(try_number), state, error_type, error)


def record_failure(
    failure: TaskFailure,
    settings: Settings | None = None,
    recorded_at: datetime | None = None,
) -> None:
    """Append ``failure`` to ``ops.task_failures`` in the warehouse.

    A failed task may have failed *because* the warehouse was locked; the write is retried a few
    times with a short back-off and then raises, so the callback's own failure shows in the
    task log next to the original error.

    Parameters
    ----------
    failure : TaskFailure
        The record to append.
    settings : Settings, optional
        Where the warehouse is; read from the environment when omitted.
    recorded_at : datetime, optional
        Time stamp of the record (UTC); now when omitted. It is the only wall-clock value in
        the table and never feeds a pipeline output.

    Raises
    ------
    duckdb.IOException
        If the warehouse stayed locked through every retry.
    """
    settings = settings or Settings.from_env()
    stamp = recorded_at or datetime.now(timezone.utc).replace(tzinfo=None)
    row = [
        failure.dag_id,
        failure.run_id,
        failure.task_id,
        failure.as_of_date,
        failure.try_number,
        failure.state,
        failure.error_type,
        failure.error,
        stamp,
    ]
    for attempt in range(1, _LOCK_RETRIES + 1):
        try:
            with warehouse.connect(settings.warehouse_path) as con:
                con.execute("create schema if not exists ops")
                con.execute(_CREATE_SQL)
                con.execute(f"insert into {TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            break
        except duckdb.IOException:
            if attempt == _LOCK_RETRIES:
                raise
            logger.warning("warehouse busy while recording a failure; retry %d", attempt)
            time.sleep(_LOCK_BACKOFF_SECONDS * attempt)
    logger.info(
        "recorded %s of %s.%s for %s (try %d) in %s",
        failure.state, failure.dag_id, failure.task_id, failure.as_of_date,
        failure.try_number, TABLE,
    )


def read_failures(warehouse_path: Path | str, limit: int = 50) -> pd.DataFrame:
    """Latest failures first, read-only; an empty frame when nothing ever failed."""
    with warehouse.connect(warehouse_path, read_only=True) as con:
        if not warehouse.table_exists(con, TABLE):
            return pd.DataFrame(
                columns=["dag_id", "run_id", "task_id", "as_of_date", "try_number", "state",
                         "error_type", "error", "recorded_at"]
            )
        return warehouse.read_frame(
            con, f"select * from {TABLE} order by recorded_at desc, task_id limit ?", [limit]
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m marketing.failures [--limit N]``: print the latest recorded failures."""
    parser = argparse.ArgumentParser(description="Show the latest task failures of the DAG.")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    frame = read_failures(Settings.from_env().warehouse_path, args.limit)
    if frame.empty:
        sys.stdout.write("no task failures recorded\n")
    else:
        shown = frame.assign(error=frame["error"].fillna("").str.slice(0, 120))
        sys.stdout.write(shown.to_string(index=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
