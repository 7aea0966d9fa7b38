"""Map a shop's own exports onto the raw data contract, with no code change.

A mapping file (YAML, validated here) says where the shop's files are (CSV or Parquet, one
file per day or one large file split by a timestamp column), which source column feeds which
contract column, and how timestamps are written (``strptime`` format, time zone). Two kinds of
entries:

``tables``
    one contract table from one source, column by column (a source column or a constant);
``invoice_lines``
    the common retailer export (one row per invoice line: invoice number, product code,
    description, quantity, unit price, invoice timestamp, customer id, country) from which
    ``users``, ``items``, ``orders``, ``order_lines`` and purchase ``events`` are derived.

``materialise`` writes what the mapping yields into the native landing layout
(``<table>/date=YYYY-MM-DD/part-0.parquet``, every value as text plus the shop's file and row)
and ``marketing.land`` lands that like any other landing zone: one data contract, one
quarantine, and a rejected row names the shop's own file and row. Values that cannot be parsed
are passed through as text so the contract rejects them with a rule; structurally unusable
files (missing/renamed columns, wrong delimiter or encoding, truncated) refuse the run.

Invoice semantics: an invoice number starting with ``cancel_prefix`` (default ``C``) is a
cancellation/return: its order is flagged ``is_cancelled`` and its lines carry the returned
quantity as a positive number (spend is reduced downstream, it is never a purchase); a negative
quantity on an ordinary invoice is rejected (``negative_quantity``). Lines without a customer id
are guest orders (``is_guest``): kept for item statistics, never in user profiles. Exact
duplicate lines share their key and are rejected as duplicates. Zero-price lines stay in the
order (spend 0) but yield no purchase event. Product codes are not numbers, so ``item_id`` is a
stable 60-bit hash of the normalised code (the code itself is kept in the item's name); a
cancellation's ``order_id`` is its number negated (``C536366`` -> ``-536366``).
"""

from __future__ import annotations

import filecmp
import logging
import re
from datetime import date
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from marketing.contract import TABLES
from marketing.land import LandingError, missing_column_hints

logger = logging.getLogger(__name__)

_DATE_IN_NAME = r"(\d{4}-\d{2}-\d{2})"
_INVOICE_TABLES = ("users", "items", "orders", "order_lines", "events")


class SourceMappingError(ValueError):
    """The mapping file is invalid; the message names the file and the offending entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Partitioning(_Strict):
    """How rows are assigned to a day: from the file name or from a timestamp column."""

    by: Literal["filename", "column"]
    pattern: str = _DATE_IN_NAME
    column: str | None = None

    @model_validator(mode="after")
    def _column_when_by_column(self) -> Partitioning:
        if self.by == "column" and not self.column:
            raise ValueError("partition.by 'column' needs partition.column")
        if self.by == "filename":
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"partition.pattern is not a regex: {exc}") from exc
            if compiled.groups != 1:
                raise ValueError("partition.pattern needs exactly one group (the YYYY-MM-DD date)")
        return self


class FileSource(_Strict):
    """Where one source's files are and how to read them."""

    path: str = Field(description="glob, relative to the mapping file's folder")
    format: Literal["csv", "parquet"] = "csv"
    delimiter: str = ","
    encoding: Literal["utf-8", "latin-1", "utf-16"] = "utf-8"
    partition: Partitioning
    timestamp_format: str | None = Field(
        default=None, description="strptime format of naive timestamps; ISO 8601 when unset"
    )
    timezone: str = Field(default="UTC", description="zone of naive timestamps")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'") from exc
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError(f"delimiter must be one character, got {value!r}")
        return value


class Constant(_Strict):
    """A fixed value for a contract column the shop does not export."""

    constant: str | int | float | bool | None


class TableMapping(FileSource):
    """One contract table from one source: contract column -> source column or constant."""

    columns: dict[str, str | Constant]


class InvoiceColumns(_Strict):
    """Source column names of an invoice-lines export."""

    invoice: str
    stock_code: str
    description: str
    quantity: str
    invoice_date: str
    unit_price: str
    customer_id: str
    country: str | None = None
    category: str | None = None


class InvoiceLines(FileSource):
    """An invoice-lines export from which users, items, orders, lines and events derive."""

    columns: InvoiceColumns
    cancel_prefix: str = "C"
    default_category: str = "uncategorised"
    derive_events: bool = True


class SourceMapping(_Strict):
    """A whole mapping file."""

    version: Literal[1]
    invoice_lines: InvoiceLines | None = None
    tables: dict[str, TableMapping] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tables_match_contract(self) -> SourceMapping:
        if self.invoice_lines is None and not self.tables:
            raise ValueError("the mapping maps nothing: give 'invoice_lines' or 'tables'")
        for table, mapping in self.tables.items():
            if table not in TABLES:
                raise ValueError(
                    f"tables.{table}: not a contract table (known: {', '.join(TABLES)})"
                )
            if self.invoice_lines is not None and table in _INVOICE_TABLES:
                raise ValueError(f"tables.{table}: already derived from invoice_lines")
            spec = TABLES[table]
            unknown = sorted(set(mapping.columns) - set(spec.all_columns))
            if unknown:
                raise ValueError(
                    f"tables.{table}: unknown contract column(s) {', '.join(unknown)} "
                    f"(contract: {', '.join(spec.all_columns)})"
                )
            missing = [c for c in spec.columns if c not in mapping.columns]
            if missing:
                raise ValueError(
                    f"tables.{table}: contract column(s) {', '.join(missing)} not mapped "
                    "(map a source column or give {constant: ...})"
                )
        return self


def load_mapping(path: Path | str) -> SourceMapping:
    """Read and validate a mapping file.

    Raises
    ------
    SourceMappingError
        Naming the file and every problem (YAML syntax, unknown keys, missing columns, ...).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SourceMappingError(f"{path}: cannot read mapping: {exc}") from exc
    try:
        return SourceMapping.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in exc.errors()
        )
        raise SourceMappingError(f"{path}: invalid source mapping: {problems}") from exc


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _timestamp_sql(column: str, source: FileSource) -> str:
    """SQL turning a text timestamp into naive UTC (NULL when unparseable).

    Values with an explicit offset (``Z``, ``+02:00``) use it, so mixed time zones in one file
    all end up in UTC; naive values are read with ``timestamp_format`` in ``timezone``.
    """
    value = f"trim({column})"
    naive = (
        f"try_strptime({value}, {_quote(source.timestamp_format)})"
        if source.timestamp_format
        else f"try_cast({value} as TIMESTAMP)"
    )
    return (
        f"case when regexp_matches({value}, '(Z|[+-]\\d{{2}}:?\\d{{2}})$') "
        f"then try_cast({value} as TIMESTAMPTZ) at time zone 'UTC' "
        f"else timezone({_quote(source.timezone)}, {naive}) at time zone 'UTC' end"
    )


def _as_text(timestamp_sql: str, raw_sql: str) -> str:
    """The parsed timestamp as ISO text, or the raw text when it did not parse (gets rejected)."""
    return f"coalesce(strftime({timestamp_sql}, '%Y-%m-%d %H:%M:%S'), {raw_sql})"


def _files(base: Path, source: FileSource, where: str) -> list[Path]:
    pattern = Path(source.path)
    if pattern.is_absolute():
        base, pattern = Path(pattern.anchor), pattern.relative_to(pattern.anchor)
    files = sorted(p for p in base.glob(str(pattern)) if p.is_file())
    if not files:
        # a mapped source without a single file is a wrong path, not an absent source
        raise LandingError(f"{where}: no file matches '{source.path}' (relative to {base})")
    return files


def _read_source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    files: list[Path],
    source: FileSource,
    needed: list[str],
    base: Path,
) -> None:
    """Load ``files`` (all text) into temp table ``name`` with ``_origin_file``/``_origin_row``.

    Raises ``LandingError`` naming the file when it is empty, unreadable, or lacks a column.
    """
    con.execute(f"create or replace temp table {name} (_origin_file VARCHAR, _origin_row BIGINT)")
    for column in needed:
        con.execute(f"alter table {name} add column {_ident(column)} VARCHAR")
    for path in files:
        if path.stat().st_size == 0:
            raise LandingError(f"{path}: empty file (0 bytes, not even a header row)")
        if source.format == "csv":
            reader = (
                f"read_csv({_quote(path.as_posix())}, all_varchar = true, header = true, "
                f"delim = {_quote(source.delimiter)}, quote = '\"', "
                f"encoding = {_quote(source.encoding)}, strict_mode = true)"
            )
        else:
            reader = f"read_parquet({_quote(path.as_posix())})"
        try:
            found = [row[0] for row in con.execute(f"describe select * from {reader}").fetchall()]
        except duckdb.Error as exc:
            raise _unreadable(path, source, exc) from exc
        missing = [c for c in needed if c not in found]
        if missing:
            hints = missing_column_hints(missing, found, source.delimiter, ",;\t|")
            raise LandingError(
                f"{path}: missing mapped column(s) {', '.join(missing)} "
                f"(found: {', '.join(found) or 'no columns'})"
                + (f"; {'; '.join(hints)}" if hints else "")
            )
        extra = sorted(set(found) - set(needed))
        if extra:
            logger.info("%s: unmapped column(s) ignored: %s", path, ", ".join(extra))
        relative = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name
        selected = ", ".join(f"cast({_ident(c)} as VARCHAR)" for c in needed)
        try:
            # rowid of a fresh temp table is the insertion (file) order: row 1 = first data row
            con.execute(f"create or replace temp table _one_file as select {selected} from {reader}")
            con.execute(
                f"insert into {name} select {_quote(relative)}, rowid + 1, * from _one_file"
            )
        except duckdb.Error as exc:
            raise _unreadable(path, source, exc) from exc
    con.execute("drop table if exists _one_file")


def _unreadable(path: Path, source: FileSource, exc: Exception) -> LandingError:
    detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
    if source.format == "parquet":
        return LandingError(f"{path}: unreadable parquet (truncated or not Parquet): {detail}")
    return LandingError(
        f"{path}: unreadable csv (truncated row, wrong encoding or delimiter? the mapping says "
        f"encoding {source.encoding}, delimiter {source.delimiter!r}): {detail}"
    )


def _partition_sql(source: FileSource, timestamp_sql: str | None) -> str:
    """SQL for each row's partition date; rows whose date cannot be told go to the file's last
    known day (deterministic, and the contract rejects their timestamp)."""
    if source.partition.by == "filename":
        return f"try_cast(regexp_extract(_origin_file, {_quote(source.partition.pattern)}, 1) as DATE)"
    day = f"cast({timestamp_sql} as DATE)"
    return f"coalesce({day}, max({day}) over (partition by _origin_file))"


def _hash_id(expression: str) -> str:
    """A stable positive 60-bit integer id for a text key (NULL for NULL/blank)."""
    return (
        f"case when nullif(trim({expression}), '') is null then null else "
        f"cast(cast(('0x' || substr(md5(upper(trim({expression}))), 1, 15)) as BIGINT) "
        "as VARCHAR) end"
    )


def _invoice_sql(spec: InvoiceLines) -> dict[str, str]:
    """SELECTs over the temp table ``_lines`` (text columns + ``_ts`` + ``_day``), per table."""
    c = spec.columns
    prefix = _quote(spec.cancel_prefix.upper())
    country = f"nullif(trim({_ident(c.country)}), '')" if c.country else "null"
    category = (
        f"coalesce(nullif(trim({_ident(c.category)}), ''), {_quote(spec.default_category)})"
        if c.category
        else _quote(spec.default_category)
    )
    lines = f"""
        select
            *,
            trim({_ident(c.invoice)}) as _invoice,
            starts_with(upper(trim({_ident(c.invoice)})), {prefix}) as _is_cancelled,
            -- a cancellation's order id is its number negated: C536366 never collides with
            -- the sale 536366 (shops that number cancellations after the sale they cancel)
            case when starts_with(upper(trim({_ident(c.invoice)})), {prefix})
                then '-' || substr(trim({_ident(c.invoice)}), {len(spec.cancel_prefix) + 1})
                else trim({_ident(c.invoice)}) end as _order_id,
            -- exports often write integer ids as floats ('12346.0'); blank = guest
            nullif(regexp_replace(trim({_ident(c.customer_id)}), '\\.0+$', ''), '') as _user_id,
            {_hash_id(_ident(c.stock_code))} as _item_id,
            trim({_ident(c.quantity)}) as _quantity_text,
            try_cast(trim({_ident(c.quantity)}) as DOUBLE) as _quantity,
            trim({_ident(c.unit_price)}) as _price_text,
            try_cast(trim({_ident(c.unit_price)}) as DOUBLE) as _price,
            {_as_text('_ts', f'nullif(trim({_ident(c.invoice_date)}), {_quote("")})')} as _ts_text
        from _lines
    """
    first = "(_day, _origin_file, _origin_row)"
    numbered = f"""
        select
            *,
            -- exact duplicate lines share a line number, so the contract rejects the copies
            dense_rank() over (
                partition by _invoice
                order by {_ident(c.stock_code)}, _quantity_text, _price_text,
                    {_ident(c.description)}
            ) as _line_number
        from ({lines})
    """
    return {
        "_invoice_lines": numbered,
        "users": f"""
            select
                _user_id as user_id,
                null as email, null as phone, null as first_name, null as last_name,
                arg_min({country}, {first}) as country,
                null as city, null as postal_code,
                strftime(min(_ts), '%Y-%m-%d %H:%M:%S') as signed_up_at,
                'false' as email_opt_in, 'false' as ads_opt_in,
                min(_day) as _day,
                arg_min(_origin_file, {first}) as _origin_file,
                arg_min(_origin_row, {first}) as _origin_row
            from _numbered where _user_id is not null
            group by _user_id
        """,
        "items": f"""
            select
                _item_id as item_id,
                arg_min(
                    trim({_ident(c.stock_code)}) || ' ' || coalesce(trim({_ident(c.description)}), ''),
                    {first}
                ) as name,
                arg_min({category}, {first}) as category,
                coalesce(
                    cast(arg_min(_price, {first}) filter (where _price > 0) as VARCHAR), '0'
                ) as price,
                min(_day) as _day,
                arg_min(_origin_file, {first}) as _origin_file,
                arg_min(_origin_row, {first}) as _origin_row
            from _numbered where _item_id is not null
            group by _item_id
        """,
        "orders": f"""
            select
                arg_min(_order_id, {first}) as order_id,
                min(_user_id) as user_id,
                arg_min(_ts_text, {first}) as ordered_at,
                cast(bool_or(_is_cancelled) as VARCHAR) as is_cancelled,
                cast(bool_and(_user_id is null) as VARCHAR) as is_guest,
                min(_day) as _day,
                arg_min(_origin_file, {first}) as _origin_file,
                arg_min(_origin_row, {first}) as _origin_row
            from _numbered
            group by _invoice
        """,
        "order_lines": """
            select
                _order_id as order_id,
                cast(_line_number as VARCHAR) as line_number,
                _item_id as item_id,
                -- a cancellation's lines carry the returned quantity as a positive number
                case
                    when _is_cancelled and _quantity = round(_quantity)
                        then cast(cast(-_quantity as BIGINT) as VARCHAR)
                    when _is_cancelled and _quantity is not null
                        then cast(-_quantity as VARCHAR)
                    else _quantity_text
                end as quantity,
                _price_text as unit_price,
                _day, _origin_file, _origin_row
            from _numbered
        """,
        "events": f"""
            select
                {_hash_id("_invoice || '#' || cast(_line_number as VARCHAR)")} as event_id,
                _user_id as user_id,
                _item_id as item_id,
                'purchase' as event_type,
                _ts_text as event_at,
                _invoice as session_id,
                _day, _origin_file, _origin_row
            from _numbered
            where not _is_cancelled and _user_id is not null and _quantity > 0 and _price > 0
                and _item_id is not null
            -- a duplicate line is rejected once, in order_lines, not again as an event
            qualify row_number() over (
                partition by _invoice, _line_number order by _day, _origin_file, _origin_row
            ) = 1
        """ if spec.derive_events else "",
    }


def _write_table(
    con: duckdb.DuckDBPyConnection, select_sql: str, table: str, out_dir: Path, as_of_date: date
) -> dict[date, int]:
    """Write one derived table per day (<= D) as ``<table>/date=D/part-0.parquet``.

    A file is replaced only when its bytes change, so an unchanged day keeps its checksum and
    the loader skips it; a changed day (late data) is re-landed.
    """
    con.execute(f"create or replace temp table _derived as {select_sql}")
    columns = [c for c in TABLES[table].all_columns if c in _columns(con, "_derived")]
    select = ", ".join(f"cast({_ident(c)} as VARCHAR) as {_ident(c)}" for c in columns)
    counts = {}
    for (day,) in con.execute(
        "select distinct _day from _derived where _day is not null and _day <= ? order by 1",
        [as_of_date],
    ).fetchall():
        folder = out_dir / table / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "part-0.parquet"
        temporary = folder / ".part-0.parquet.tmp"
        con.execute(
            f"copy (select {select}, _origin_file, cast(_origin_row as VARCHAR) as _origin_row "
            f"from _derived where _day = ? order by _origin_file, _origin_row, 1) "
            f"to {_quote(temporary.as_posix())} (format parquet)",
            [day],
        )
        if target.exists() and filecmp.cmp(target, temporary, shallow=False):
            temporary.unlink()
        else:
            temporary.replace(target)
        counts[day] = con.execute(
            "select count(*) from _derived where _day = ?", [day]
        ).fetchone()[0]
    undated = con.execute("select count(*) from _derived where _day is null").fetchone()[0]
    if undated:
        logger.warning("%s: %d row(s) with no partition date were not landed", table, undated)
    con.execute("drop table _derived")
    return counts


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [row[0] for row in con.execute(f"describe {table}").fetchall()]


def materialise(
    mapping: SourceMapping, base_dir: Path, out_dir: Path, as_of_date: date
) -> dict[str, int]:
    """Turn the shop's exports into the native landing layout under ``out_dir`` (days <= D).

    Parameters
    ----------
    mapping : SourceMapping
        A validated mapping (``load_mapping``).
    base_dir : Path
        Folder that relative ``path`` globs start from (the mapping file's folder).
    out_dir : Path
        The landing zone to write (``<table>/date=YYYY-MM-DD/part-0.parquet``).
    as_of_date : date
        Run date D: days after D are not written (a later run writes them).

    Returns
    -------
    dict
        Rows written per contract table.

    Raises
    ------
    LandingError
        A source file is empty, unreadable or misses a mapped column; nothing is written.
    """
    base_dir, out_dir = Path(base_dir).resolve(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    # an in-memory database: the shop's files never touch the warehouse before the contract
    with duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                            "autoload_known_extensions": False}) as con:
        con.execute("set TimeZone = 'UTC'")
        plans: list[tuple[str, str]] = []
        if mapping.invoice_lines is not None:
            spec = mapping.invoice_lines
            c = spec.columns
            needed = [v for v in c.model_dump().values() if v]
            _read_source(
                con, "_lines_raw", _files(base_dir, spec, "invoice_lines"), spec, needed, base_dir
            )
            ts = _timestamp_sql(_ident(c.invoice_date), spec)
            con.execute(
                f"create or replace temp table _lines as select *, {ts} as _ts from _lines_raw"
            )
            con.execute(
                f"create or replace temp table _lines as "
                f"select *, {_partition_sql(spec, '_ts')} as _day from _lines"
            )
            queries = _invoice_sql(spec)
            con.execute(f"create or replace temp table _numbered as {queries.pop('_invoice_lines')}")
            plans += [(table, sql) for table, sql in queries.items() if sql]
            if not spec.derive_events:
                logger.info("invoice_lines: derive_events is off: no events are landed")
        for table, tmap in mapping.tables.items():
            sources = [v for v in tmap.columns.values() if isinstance(v, str)]
            needed = list(dict.fromkeys(sources + ([tmap.partition.column] if tmap.partition.column else [])))
            name = f"_src_{table}"
            _read_source(con, name, _files(base_dir, tmap, f"tables.{table}"), tmap, needed, base_dir)
            spec_columns = TABLES[table].all_columns
            selects = []
            for column, value in tmap.columns.items():
                if isinstance(value, Constant):
                    text = "null" if value.constant is None else _quote(str(value.constant).lower()
                                                                       if isinstance(value.constant, bool)
                                                                       else str(value.constant))
                    selects.append(f"{text} as {_ident(column)}")
                elif spec_columns[column] == "TIMESTAMP":
                    parsed = _timestamp_sql(_ident(value), tmap)
                    selects.append(f"{_as_text(parsed, _ident(value))} as {_ident(column)}")
                else:
                    selects.append(f"{_ident(value)} as {_ident(column)}")
            partition_ts = (
                _timestamp_sql(_ident(tmap.partition.column), tmap)
                if tmap.partition.by == "column" else None
            )
            plans.append((
                table,
                f"select {', '.join(selects)}, {_partition_sql(tmap, partition_ts)} as _day, "
                f"_origin_file, _origin_row from {name}",
            ))
        for table, sql in plans:
            counts = _write_table(con, sql, table, out_dir, as_of_date)
            written[table] = sum(counts.values())
    logger.info("source mapping wrote %s", ", ".join(f"{t}={n}" for t, n in written.items()))
    return written
