"""Land the landing zone's daily files into the warehouse's ``raw`` schema.

For a run date D the loader takes every partition ``date=YYYY-MM-DD`` with date <= D that is new,
changed (SHA-256 of its files differs from ``raw.load_log``) or inside the re-land window
(D itself by default), and never a later partition. Each table's pending partitions are
replaced in one transaction together with their ``raw.rejected_rows`` (delete + insert), so
re-landing a date gives the same rows, and a file that is structurally unusable (unreadable, a
required column missing) refuses the whole landing before anything is written.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from marketing.contract import TABLES, TableSpec

logger = logging.getLogger(__name__)

_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_FILE_SUFFIXES = (".parquet", ".csv")
# Lineage columns a derived file (``marketing.source_mapping``) may carry: the shop's own file
# and row, so a rejected row names what the shop exported, not our intermediate file.
_ORIGIN_COLUMNS = ("_origin_file", "_origin_row")
_OTHER_DELIMITERS = (";", "\t", "|")


class LandingError(ValueError):
    """A landed file is structurally unusable; nothing was loaded."""


@dataclass
class LandingReport:
    """What one landing did: per table, partitions re-landed and rows loaded/rejected."""

    as_of_date: date
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(t["rows_loaded"] for t in self.tables.values())

    @property
    def rows_rejected(self) -> int:
        return sum(t["rows_rejected"] for t in self.tables.values())


@dataclass(frozen=True)
class _Partition:
    table: str
    partition_date: date
    files: tuple[Path, ...]
    sha256: str


def _sha256(files: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def discover_partitions(landing_dir: Path, table: str, as_of_date: date) -> list[_Partition]:
    """Partitions of ``table`` dated on or before ``as_of_date``, oldest first."""
    table_dir = landing_dir / table
    if not table_dir.is_dir():
        return []
    partitions = []
    for child in sorted(table_dir.iterdir()):
        match = _PARTITION.match(child.name)
        if not match or not child.is_dir():
            continue
        partition_date = date.fromisoformat(match.group(1))
        if partition_date > as_of_date:
            continue  # point in time: a run for D never reads a later partition
        files = tuple(sorted(p for p in child.iterdir() if p.suffix in _FILE_SUFFIXES))
        if files:
            partitions.append(_Partition(table, partition_date, files, _sha256(files)))
    return partitions


def _file_columns(path: Path) -> list[str]:
    try:
        if path.suffix == ".parquet":
            return list(pq.read_schema(path).names)
        if path.stat().st_size == 0:
            raise LandingError(f"{path}: empty file (0 bytes, not even a header row)")
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
        return [c.strip() for c in header]
    except LandingError:
        raise
    except UnicodeDecodeError as exc:
        raise LandingError(
            f"{path}: not UTF-8 text ({exc.reason} near byte {exc.start}): wrong encoding; "
            "re-export as UTF-8 or set the source encoding in the mapping"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise LandingError(f"{path}: cannot be read as {path.suffix[1:]}: {exc}") from exc


def missing_column_hints(
    missing: list[str], found: list[str], delimiter: str, other_delimiters: str | tuple[str, ...]
) -> list[str]:
    """Likely causes of missing columns: a wrong delimiter, or a renamed column."""
    hints = []
    if len(found) == 1 and any(d in found[0] for d in other_delimiters):
        hints.append(f"the header has one column: wrong delimiter (expected {delimiter!r})")
    for column in missing:
        close = difflib.get_close_matches(column, found, n=1, cutoff=0.6)
        if close:
            hints.append(f"'{close[0]}' looks like a renamed '{column}'")
    return hints


def check_structure(spec: TableSpec, table: str, files: list[Path]) -> None:
    """Raise ``LandingError`` naming the file and column when a required column is missing.

    The message says what probably happened: a single header cell holding ``;`` or a tab is a
    wrong delimiter; a missing column with a near namesake was renamed.
    """
    for path in files:
        found = _file_columns(path)
        missing = [c for c in spec.columns if c not in found]
        if missing:
            hints = missing_column_hints(missing, found, ",", _OTHER_DELIMITERS)
            raise LandingError(
                f"{path}: table '{table}' is missing required column(s) {', '.join(missing)} "
                f"(found: {', '.join(found) or 'no columns'})"
                + (f"; {'; '.join(hints)}" if hints else "")
            )
        extra = sorted(set(found) - set(spec.all_columns) - set(_ORIGIN_COLUMNS))
        if extra:
            logger.warning("%s: ignoring extra column(s) %s", path, ", ".join(extra))


def check_readable(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    """Read every CSV file in full once; raise ``LandingError`` naming the file when it fails.

    Catches what a header check cannot: a truncated or ragged row, bytes that are not UTF-8,
    an unterminated quote. Parquet files are checked by reading their footer (schema).
    """
    for path in files:
        if path.suffix != ".csv":
            continue
        try:
            con.execute(
                "select count(*) from read_csv(?, all_varchar = true, header = true, "
                "delim = ',', quote = '\"', strict_mode = true)",
                [path.as_posix()],
            ).fetchone()
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise LandingError(
                f"{path}: unreadable CSV (truncated row, wrong encoding or delimiter?): {first}"
            ) from exc


def _ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists raw")
    for table, spec in TABLES.items():
        columns = ", ".join(f'"{c}" {t}' for c, t in spec.columns.items())
        con.execute(
            f"create table if not exists raw.{table} "
            f"({columns}, _partition_date DATE, _source_file VARCHAR)"
        )
        for column, (column_type, default) in spec.optional.items():
            # added after the table was first created: older warehouses get it too
            con.execute(
                f'alter table raw.{table} add column if not exists "{column}" {column_type} '
                f"default {default}"
            )
    con.execute(
        "create table if not exists raw.rejected_rows (table_name VARCHAR, source_file VARCHAR, "
        "row_number BIGINT, rule VARCHAR, record VARCHAR, partition_date DATE)"
    )
    con.execute(
        "create table if not exists raw.load_log (table_name VARCHAR, partition_date DATE, "
        "source_file VARCHAR, file_sha256 VARCHAR, rows_loaded BIGINT, rows_rejected BIGINT)"
    )


def _pending(
    con: duckdb.DuckDBPyConnection, partitions: list[_Partition], reland_from: date
) -> list[_Partition]:
    if not partitions:
        return []
    logged = {
        (row[0], row[1])
        for row in con.execute(
            "select partition_date, file_sha256 from raw.load_log where table_name = ?",
            [partitions[0].table],
        ).fetchall()
    }
    return [
        p
        for p in partitions
        if p.partition_date >= reland_from or (p.partition_date, p.sha256) not in logged
    ]


def _read_sql(files: list[Path]) -> str:
    paths = ", ".join(f"'{p.as_posix()}'" for p in files)
    if all(p.suffix == ".parquet" for p in files):
        return (
            f"select *, file_row_number + 1 as _row_number from read_parquet([{paths}], "
            "union_by_name = true, filename = true, file_row_number = true)"
        )
    # CSV: every column as text, so a bad value becomes a rejected row, not a failed read.
    return (
        f"select *, row_number() over (partition by filename) as _row_number from "
        f"read_csv([{paths}], union_by_name = true, filename = true, all_varchar = true, "
        "header = true, delim = ',')"
    )


def _present_columns(files: list[Path]) -> set[str]:
    return {c for path in files for c in _file_columns(path)}


def _row_rule_sql(spec: TableSpec) -> str:
    """CASE expression naming the first row-level rule a row breaks (NULL when it passes)."""
    checks = []
    for column, column_type in spec.all_columns.items():
        checks.append(
            (f'"{column}" is not null and try_cast("{column}" as {column_type}) is null',
             f"unparseable_{column}")
        )
    for column in spec.not_null:
        flag = spec.nullable_if.get(column)
        condition = f'"{column}" is null'
        if flag:
            condition += f' and not coalesce(try_cast("{flag}" as BOOLEAN), false)'
        checks.append((condition, f"null_{column}"))
    for column, allowed in spec.enums.items():
        values = ", ".join(f"'{v}'" for v in allowed)
        checks.append((f'"{column}" is not null and "{column}" not in ({values})', f"invalid_{column}"))
    for column in spec.non_negative:
        column_type = spec.columns[column]
        checks.append((f'try_cast("{column}" as {column_type}) < 0', f"negative_{column}"))
    for column, limit in spec.max_abs.items():
        column_type = spec.all_columns[column]
        checks.append(
            (f'abs(try_cast("{column}" as {column_type})) > {limit!r}', f"outlier_{column}")
        )
    if spec.timestamp:
        checks.append(
            (f'try_cast("{spec.timestamp}" as TIMESTAMP) >= _partition_date + interval 1 day',
             "timestamp_after_partition_date")
        )
    whens = " ".join(f"when {cond} then '{rule}'" for cond, rule in checks)
    return f"case {whens} end"


def _land_table(
    con: duckdb.DuckDBPyConnection, table: str, pending: list[_Partition], landing_dir: Path
) -> dict[str, int]:
    spec = TABLES[table]
    files = [f for p in pending for f in p.files]
    prefix = landing_dir.as_posix().rstrip("/") + "/"
    present = _present_columns(files)
    # optional columns absent from every file are added as NULL and then take their default
    absent = ", ".join(
        f'null::VARCHAR as "{c}"' for c in list(spec.optional) + list(_ORIGIN_COLUMNS)
        if c not in present
    )
    typed = ", ".join(
        f'coalesce(try_cast("{c}" as {t}), {spec.optional[c][1]}) as "{c}"'
        if c in spec.optional
        else f'try_cast("{c}" as {t}) as "{c}"'
        for c, t in spec.all_columns.items()
    )
    record = ", ".join(f"'{c}': \"{c}\"::VARCHAR" for c in spec.all_columns)
    con.execute(
        f"""
        create or replace temp table _typed as
        with incoming as (
            select
                *,
                {absent + "," if absent else ""}
                regexp_extract(filename, 'date=(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1)::DATE
                    as _partition_date,
            from ({_read_sql(files)})
        )
        select
            _partition_date,
            coalesce(_origin_file::VARCHAR, replace(filename, '{prefix}', '')) as _source_file,
            coalesce(try_cast(_origin_row as BIGINT), _row_number) as _row_number,
            {typed},
            {_row_rule_sql(spec)} as _row_rule,
            -- the raw text of rows that break a row rule (building it for every row is slow)
            case when _row_rule is not null then to_json({{{record}}})::VARCHAR end as _record,
        from incoming
        """
    )
    dates = [p.partition_date for p in pending]
    con.execute(f"delete from raw.{table} where _partition_date in (select unnest(?::DATE[]))", [dates])
    con.execute(
        "delete from raw.rejected_rows where table_name = ? "
        "and partition_date in (select unnest(?::DATE[]))",
        [table, dates],
    )
    con.execute(
        "delete from raw.load_log where table_name = ? "
        "and partition_date in (select unnest(?::DATE[]))",
        [table, dates],
    )
    # Foreign keys: the parent must be landed in a partition on or before the row's. Each
    # parent's first partition is one hash join away (a correlated NOT EXISTS with the date
    # condition is several times slower at 10M rows).
    parents, fk_joins, fk_whens = [], [], []
    for i, (column, (parent, parent_column)) in enumerate(spec.foreign_keys.items()):
        parents.append(
            f"_parent_{i} as (select {parent_column} as _key, min(_partition_date) as _first "
            f"from raw.{parent} group by 1)"
        )
        fk_joins.append(f"left join _parent_{i} on _parent_{i}._key = t.{column}")
        fk_whens.append(
            f"when t.{column} is not null and (_parent_{i}._first is null "
            f"or _parent_{i}._first > t._partition_date) then 'unknown_{column}'"
        )
    key_list = ", ".join(spec.key)
    key_join = " and ".join(f"r.{k} = u.{k}" for k in spec.key)
    duplicate = f"duplicate_{'_'.join(spec.key)}"
    fk_rule = f"case {' '.join(fk_whens)} end" if fk_whens else "null::VARCHAR"
    # Duplicates: only keys seen more than once in the batch are ranked (a window over every
    # row is a full sort); the first copy by (partition, file, row) is kept.
    con.execute(
        f"""
        create or replace temp table _checked as
        with
        {"".join(p + ", " for p in parents)}
        flagged as (
            select t.*, {fk_rule} as _fk_rule
            from _typed as t
            {" ".join(fk_joins)}
        ),
        repeated_keys as (
            select {key_list} from _typed group by {key_list} having count(*) > 1
        ),
        copies as (
            select f.*, 1 as _copy from flagged as f anti join repeated_keys using ({key_list})
            union all by name
            select
                f.*,
                row_number() over (
                    partition by {key_list} order by _partition_date, _source_file, _row_number
                ) as _copy
            from flagged as f semi join repeated_keys using ({key_list})
        )
        select
            u.* exclude (_fk_rule, _copy),
            coalesce(
                u._row_rule,
                u._fk_rule,
                case
                    when u._copy > 1 then '{duplicate}'
                    when exists (select 1 from raw.{table} as r where {key_join})
                        then '{duplicate}'
                end
            ) as _rule
        from copies as u
        """
    )
    columns = ", ".join(f'"{c}"' for c in spec.all_columns)
    con.execute(
        f"insert into raw.{table} ({columns}, _partition_date, _source_file) "
        f"select {columns}, _partition_date, _source_file "
        "from _checked where _rule is null order by _partition_date, _source_file, _row_number"
    )
    # Duplicates and unknown ids parsed cleanly: their record is the typed values as text
    # (the same expression, now over _checked's typed columns).
    con.execute(
        "insert into raw.rejected_rows select ?, _source_file, _row_number, _rule, "
        f"coalesce(_record, to_json({{{record}}})::VARCHAR), "
        "_partition_date from _checked where _rule is not null "
        "order by _partition_date, _source_file, _row_number",
        [table],
    )
    counts = {
        day: (loaded, rejected)
        for day, loaded, rejected in con.execute(
            "select _partition_date, count(*) filter (where _rule is null), "
            "count(*) filter (where _rule is not null) from _checked group by 1"
        ).fetchall()
    }
    for partition in pending:
        loaded, rejected = counts.get(partition.partition_date, (0, 0))  # header-only file
        con.execute(
            "insert into raw.load_log values (?, ?, ?, ?, ?, ?)",
            [
                table,
                partition.partition_date,
                ", ".join(f.relative_to(landing_dir).as_posix() for f in partition.files),
                partition.sha256,
                loaded,
                rejected,
            ],
        )
    loaded, rejected = con.execute(
        "select count(*) filter (where _rule is null), count(*) filter (where _rule is not null) "
        "from _checked"
    ).fetchone()
    con.execute("drop table _typed")
    con.execute("drop table _checked")
    return {"partitions": len(pending), "rows_loaded": loaded, "rows_rejected": rejected}


def land(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    as_of_date: date,
    reland_days: int = 0,
) -> LandingReport:
    """Land every pending partition dated on or before ``as_of_date``.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Writable warehouse connection.
    landing_dir : Path
        Root of the landing zone (``<table>/date=YYYY-MM-DD/*.parquet|csv``).
    as_of_date : date
        The run date D; partitions after D are never read.
    reland_days : int
        Partitions dated D - reland_days .. D are re-landed even when unchanged (late data).

    Raises
    ------
    LandingError
        When a pending file is unreadable or misses a required column; nothing is written.
    """
    if reland_days < 0:
        raise ValueError(f"reland_days must be >= 0, got {reland_days}")
    landing_dir = Path(landing_dir).resolve()
    if not landing_dir.is_dir():
        raise LandingError(f"{landing_dir}: landing zone does not exist")
    _ensure_tables(con)
    reland_from = as_of_date - timedelta(days=reland_days)
    report = LandingReport(as_of_date=as_of_date)
    plan = {}
    for table, spec in TABLES.items():
        partitions = discover_partitions(landing_dir, table, as_of_date)
        if not partitions:
            report.notes.append(_absent_note(table))
        pending = _pending(con, partitions, reland_from)
        files = [f for p in pending for f in p.files]
        check_structure(spec, table, files)
        check_readable(con, files)
        plan[table] = pending
    con.execute("begin transaction")
    try:
        for table, pending in plan.items():
            if pending:
                report.tables[table] = _land_table(con, table, pending, landing_dir)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    for rule, count in con.execute(
        "select rule, count(*) from raw.rejected_rows where partition_date <= ? group by rule "
        "order by rule",
        [as_of_date],
    ).fetchall():
        report.rejected_by_rule[rule] = count
    report.counts = _order_counts(con, as_of_date)
    for note in report.notes:
        logger.warning("%s", note)
    if report.counts["guest_orders"]:
        logger.info(
            "%d guest orders (no customer id) kept for item statistics, not in user profiles",
            report.counts["guest_orders"],
        )
    logger.info(
        "landed %d rows (%d rejected) for %s", report.rows_loaded, report.rows_rejected, as_of_date
    )
    return report


_ABSENT_EFFECT = {
    "campaigns": "no campaigns: response scores fall back to purchase propensity",
    "campaign_sends": "no campaign sends: no response model can be trained",
    "campaign_responses": "no campaign responses: no response model can be trained",
    "events": "no clickstream: behaviour features are zero, CF uses purchases only",
    "suppressions": "no suppression list: nobody is suppressed",
    "erasure_requests": "no erasure requests",
    "users": "no users: no profiles, segments or audiences",
    "items": "no items: order lines and events cannot land",
}


def _absent_note(table: str) -> str:
    effect = _ABSENT_EFFECT.get(table, "the table stays empty")
    return f"source '{table}' is absent (no partitions up to D): raw.{table} is empty; {effect}"


def _order_counts(con: duckdb.DuckDBPyConnection, as_of_date: date) -> dict[str, int]:
    """Orders landed up to D that are guest orders or cancellations (counted, not rejected)."""
    guests, cancelled = con.execute(
        "select count(*) filter (where is_guest), count(*) filter (where is_cancelled) "
        "from raw.orders where _partition_date <= ?",
        [as_of_date],
    ).fetchone()
    return {"guest_orders": int(guests), "cancelled_orders": int(cancelled)}
