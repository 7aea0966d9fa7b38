"""Write audience files for each channel into the outbox, atomically.

Layout: ``<outbox_dir>/<channel>/<audience_name>/<YYYY-MM-DD>/`` holding the full export, its
deltas against the last successful publish and a ``manifest.json``. Ad channels get only
normalised + SHA-256-hashed identifiers (Google takes Country and Zip in plain, as Customer Match
specifies; Meta's payload files hold at most 10,000 rows, one API request each); the e-mail
channel gets plain addresses of consented, unsuppressed users only. Holdout members are never
exported; ad audiences below ``min_size`` are not published (the manifest says why).

Platform rules (checked against the platforms' published guides): Google Customer Match CSV
headers ``Email, Phone, First Name, Last Name, Country, Zip``; e-mails and names trimmed and
lower-cased, phones in E.164 with ``+``, SHA-256 hex; Country ISO alpha-2 and Zip unhashed. Meta
Custom Audiences multi-key schema ``EMAIL, PHONE, FN, LN, ZIP, CT, COUNTRY``: every value
SHA-256 hex after normalisation (phones digits only with country code, names and cities
lower-case without punctuation or spaces, US ZIP 5 digits, country lower-case alpha-2).

Defence in depth: the audience marts already filter on consent, but the publisher applies each
channel's consent rule again, so a bug upstream cannot leak a non-consented user.

Atomicity: the date directory is built under a temporary name next to the target, fsynced and
then swapped in with ``os.replace``. A failure at any point before the swap leaves the previous
publish of that date untouched; readers never see a half-written file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from marketing.audience_config import CHANNELS
from marketing.identifiers import (
    normalise_city,
    normalise_country,
    normalise_emails,
    normalise_name,
    normalise_phones,
    normalise_series,
    normalise_zip,
    per_distinct_pair,
    sha256_hex_series,
)
from marketing.run_folders import dated_folders

logger = logging.getLogger(__name__)

MEMBER_COLUMNS: tuple[str, ...] = (
    "user_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "country",
    "city",
    "postal_code",
    "is_email_opt_in",
    "is_ads_opt_in",
    "is_email_suppressed",
    "is_erased",
    "segment_name",
    "recommended_item_1",
    "recommended_item_2",
    "recommended_item_3",
    "response_probability",
)

# channel -> (file stem, header). Column names are the platforms' upload templates: Google
# Customer Match "Email, Phone, First Name, Last Name, Country, Zip" (Country and Zip plain,
# the rest SHA-256); Meta Custom Audiences multi-key schema, every value SHA-256.
CHANNEL_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "google_ads": (
        "customer_match",
        ("Email", "Phone", "First Name", "Last Name", "Country", "Zip"),
    ),
    "meta_ads": ("custom_audience", ("EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "COUNTRY")),
    "email": (
        "audience",
        (
            "email",
            "first_name",
            "segment_name",
            "recommended_item_1",
            "recommended_item_2",
            "recommended_item_3",
            "response_probability",
        ),
    ),
}
# Columns an ad platform receives in plain text (everything else in an ad file is a hash).
PLAIN_AD_COLUMNS: frozenset[str] = frozenset({"Country", "Zip"})
# Meta's API takes at most 10,000 users per request: one payload file per request.
MAX_ROWS_PER_FILE: dict[str, int | None] = {"google_ads": None, "meta_ads": 10_000, "email": None}
DEFAULT_MIN_SIZE = 100
STATUS_PUBLISHED = "published"
STATUS_BELOW_MIN_SIZE = "skipped_below_min_size"
# Google Customer Match wants E.164 ("+1415..."), Meta digits only ("1415...").
_PHONE_STYLE = {"google_ads": "e164", "meta_ads": "digits"}
_SLUG = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class PublishResult:
    """What one publish wrote; one row of ``ml.publish_log`` (plus as_of_date and run_id).

    Attributes
    ----------
    channel, audience_name : str
    path : Path
        The first data file (or, when nothing was published, the manifest).
    rows : int
        Data rows over all data files (header excluded); 0 when not published.
    sha256 : str
        Hex SHA-256 of the full export as one CSV (header + every row); equals the data
        file's checksum when there is one file.
    status : str
        ``"published"`` or ``"skipped_below_min_size"``.
    adds, removes : int
        Rows new / gone against the last successful publish.
    holdout : int
        Members held out as the control group (never exported).
    reason : str or None
        Why the audience was not published.
    user_ids : tuple of int
        Users in the exported rows (for ``ml.published_members``, the frequency cap).
    row_hashes : tuple of str
        Aligned with ``user_ids``: SHA-256 of the user's data line, so a later publish can
        leave an erased user's line out of its removes file without knowing their identifiers.
    """

    channel: str
    audience_name: str
    path: Path
    rows: int
    sha256: str
    status: str
    adds: int = 0
    removes: int = 0
    holdout: int = 0
    reason: str | None = None
    user_ids: tuple[int, ...] = ()
    row_hashes: tuple[str, ...] = ()


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"as_of_date must be a date or 'YYYY-MM-DD', got {value!r}") from exc


def _flag(frame: pd.DataFrame, column: str) -> pd.Series:
    """A boolean column with missing read as False (no consent unless recorded)."""
    return frame[column].astype("boolean").fillna(False).astype(bool)


def _text(series: pd.Series) -> pd.Series:
    """Strings for the CSV: missing -> ''."""
    return pd.Series(
        ["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in series],
        index=series.index,
        dtype=object,
    )


def _format_probability(value: object) -> str:
    if value is None or pd.isna(value):
        return ""
    return f"{float(value):.6f}"


def consented(members: pd.DataFrame, channel: str) -> pd.DataFrame:
    """Rows of ``members`` the channel may receive.

    Ad channels: ads opt-in and not erased. E-mail: e-mail opt-in, not suppressed, not erased
    and a valid address. Missing flags count as no consent / suppressed / erased as the safe
    reading requires (opt-ins missing -> False; ``is_email_suppressed``/``is_erased`` missing ->
    treated as True). Holdout members (``is_holdout`` true, when the column is given) are never
    exported.
    """
    not_erased = ~members["is_erased"].astype("boolean").fillna(True).astype(bool)
    if channel in _PHONE_STYLE:
        keep = _flag(members, "is_ads_opt_in") & not_erased
    elif channel == "email":
        not_suppressed = ~members["is_email_suppressed"].astype("boolean").fillna(True).astype(bool)
        valid = normalise_emails(members["email"]).notna()
        keep = _flag(members, "is_email_opt_in") & not_suppressed & not_erased & valid
    else:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    if "is_holdout" in members.columns:
        keep &= ~members["is_holdout"].astype("boolean").fillna(True).astype(bool)
    return members.loc[keep.to_numpy()]


def _google_zip(postal_code: object, country: object) -> str | None:
    """Customer Match Zip (sent in plain): trimmed, upper-cased; US keeps 5 digits."""
    value = normalise_zip(postal_code, country)
    return None if value is None else value.upper()


def _ad_table(eligible: pd.DataFrame, channel: str) -> pd.DataFrame:
    email = sha256_hex_series(normalise_emails(eligible["email"]))
    phone = sha256_hex_series(
        normalise_phones(eligible["phone"], eligible["country"], _PHONE_STYLE[channel])
    )
    first = sha256_hex_series(normalise_series(eligible["first_name"], normalise_name))
    last = sha256_hex_series(normalise_series(eligible["last_name"], normalise_name))
    country = normalise_series(eligible["country"], normalise_country)
    zips = per_distinct_pair(eligible["postal_code"], eligible["country"],
                             _google_zip if channel == "google_ads" else normalise_zip)
    if channel == "google_ads":
        columns = {
            "Email": email,
            "Phone": phone,
            "First Name": first,
            "Last Name": last,
            "Country": country,
            "Zip": zips,
        }
    else:
        columns = {
            "EMAIL": email,
            "PHONE": phone,
            "FN": first,
            "LN": last,
            "ZIP": sha256_hex_series(zips),
            "CT": sha256_hex_series(normalise_series(eligible["city"], normalise_city)),
            "COUNTRY": sha256_hex_series(country.str.lower()),
        }
    table = pd.DataFrame(columns, index=eligible.index)
    # A row must carry a matchable key: an e-mail or phone hash (names + zip alone are weak).
    has_key = email.notna() | phone.notna()
    return table.loc[has_key.to_numpy()].fillna("")


def _line(row: Sequence[str]) -> bytes:
    """One CSV data line exactly as the file holds it (no line ending)."""
    return _lines([row])[0]


def _lines(rows: Iterable[Sequence[str]]) -> list[bytes]:
    """:func:`_line` of every row, through one CSV writer (it writes each row in one call)."""
    written: list[str] = []
    writer = csv.writer(SimpleNamespace(write=written.append), lineterminator="\n",
                        quoting=csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return [text.rstrip("\n").encode("utf-8") for text in written]


def line_hash(line: bytes) -> str:
    """Hex SHA-256 of a data line (the key ``ml.published_members.row_sha256`` stores)."""
    return hashlib.sha256(line).hexdigest()


def build_export(
    members: pd.DataFrame, channel: str
) -> tuple[list[tuple[str, ...]], list[bytes], list[tuple[int, str]]]:
    """The data rows of the channel file and the users behind them.

    Parameters
    ----------
    members : pandas.DataFrame
        Columns ``MEMBER_COLUMNS`` (and optionally ``is_holdout``); consent is applied here.
    channel : {"google_ads", "meta_ads", "email"}

    Returns
    -------
    rows : list of tuple of str
        In the column order of ``CHANNEL_FILES[channel]``, deduplicated and sorted.
    lines : list of bytes
        :func:`_line` of each of ``rows`` (every row is formatted once).
    exported : list of (int, str)
        ``(user_id, line_hash)`` of every user whose row was exported, sorted (one row per
        e-mail address; identical ad rows of several accounts count every account).
    """
    missing = [c for c in MEMBER_COLUMNS if c not in members.columns]
    if missing:
        raise ValueError(f"members is missing columns {missing}, got {list(members.columns)}")
    eligible = consented(members, channel)
    if channel in _PHONE_STYLE:
        table = _ad_table(eligible, channel)
        records = list(table.itertuples(index=False, name=None))
        record_lines = _lines(records)
        exported = sorted(
            (int(u), line_hash(line))
            for u, line in zip(eligible.loc[table.index, "user_id"], record_lines, strict=True)
        )
        line_of = dict(zip(records, record_lines, strict=True))
        rows = sorted(line_of)
        return rows, [line_of[row] for row in rows], exported
    table = pd.DataFrame(
        {
            "email": normalise_emails(eligible["email"]),
            "first_name": _text(eligible["first_name"]),
            "segment_name": _text(eligible["segment_name"]),
            "recommended_item_1": _text(eligible["recommended_item_1"]),
            "recommended_item_2": _text(eligible["recommended_item_2"]),
            "recommended_item_3": _text(eligible["recommended_item_3"]),
            "response_probability": [
                _format_probability(v) for v in eligible["response_probability"]
            ],
        }
    )
    table["user_id"] = eligible["user_id"].to_numpy()
    # One row per address: two accounts sharing an address get one e-mail (the lowest row).
    records = sorted(
        (tuple(r[:-1]), int(r[-1])) for r in table.itertuples(index=False, name=None)
    )
    seen: set[str] = set()
    rows, users = [], []
    for row, user_id in records:
        if row[0] not in seen:
            seen.add(row[0])
            rows.append(row)
            users.append(user_id)
    lines = _lines(rows)
    return rows, lines, sorted(zip(users, map(line_hash, lines), strict=True))


def build_rows(members: pd.DataFrame, channel: str) -> list[tuple[str, ...]]:
    """The data rows of the channel file (see :func:`build_export`)."""
    return build_export(members, channel)[0]


def _csv_bytes(header_line: bytes, lines: Sequence[bytes]) -> bytes:
    """A CSV file from its header line and data lines (:func:`_line`), ``\n``-terminated."""
    return b"\n".join([header_line, *lines]) + b"\n"


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _row_key(channel: str, line: bytes) -> bytes:
    """Identity of a data line for adds/removes: the address for e-mail, the whole row for ads."""
    return line.split(b",", 1)[0] if channel == "email" else line


def latest_publish(audience_dir: Path | str, before: str | None = None
                   ) -> tuple[str, dict] | None:
    """(date folder, manifest) of the latest *successful* publish of an audience x channel
    folder, strictly before ``before`` (a ``YYYY-MM-DD``) when given; None if there is none.
    The next run's adds and removes are computed against it."""
    for day, folder in sorted(dated_folders(audience_dir).items(), reverse=True):
        name = day.isoformat()
        if before is not None and name >= before:
            continue
        manifest_file = folder / "manifest.json"
        if not manifest_file.is_file():
            continue
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        if manifest.get("status", STATUS_PUBLISHED) == STATUS_PUBLISHED:
            return name, manifest
    return None


def _previous_publish(audience_dir: Path, day: str) -> tuple[str | None, dict[bytes, bytes]]:
    """Data lines (by key) of the latest *successful* publish strictly before ``day``."""
    found = latest_publish(audience_dir, before=day)
    if found is None:
        return None, {}
    name, manifest = found
    channel = audience_dir.parent.name
    files = [f["file"] for f in manifest.get("files", [])] or [manifest["file"]]
    lines: dict[bytes, bytes] = {}
    for file_name in files:
        for line in (audience_dir / name / file_name).read_bytes().splitlines()[1:]:
            lines[_row_key(channel, line)] = line
    return name, lines


def _chunks(rows: list, size: int | None) -> list[list]:
    if size is None or len(rows) <= size:
        return [rows]
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _file_names(stem: str, count: int, limit: int | None) -> list[str]:
    """``stem.csv`` for unlimited channels; ``stem_0001.csv``... when files are size-limited."""
    if limit is None:
        return [f"{stem}.csv"]
    return [f"{stem}_{i:04d}.csv" for i in range(1, count + 1)]


def _recover(audience_dir: Path, day: str) -> None:
    """Clean up after a publish of ``day`` that crashed mid-way.

    Stale temp dirs are removed. A dir set aside for a swap that never happened is put back
    when the target is missing (a crash between "set aside" and "swap"), else removed.
    """
    if not audience_dir.is_dir():
        return
    for stale in sorted(audience_dir.glob(f".{day}.tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)
    target = audience_dir / day
    for aside in sorted(audience_dir.glob(f".{day}.old-*"), reverse=True):
        if not target.exists():
            os.rename(aside, target)
            logger.warning("restored an interrupted publish for %s/%s", audience_dir.name, day)
        else:
            shutil.rmtree(aside, ignore_errors=True)


def _swap_in(tmp_dir: Path, target: Path) -> None:
    """Make ``tmp_dir`` appear at ``target`` (replacing it) with a rename."""
    aside: Path | None = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        aside.rmdir()  # reserve a unique name; a directory can only be renamed onto a free name
        os.replace(target, aside)
    try:
        os.replace(tmp_dir, target)
    except BaseException:
        if aside is not None and not target.exists():
            os.rename(aside, target)  # put the previous publish back
        raise
    _fsync_dir(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def publish_audience(
    audience_name: str,
    channel: str,
    members: pd.DataFrame,
    as_of_date: date | str,
    run_id: str,
    outbox_dir: Path | str,
    min_size: int | None = DEFAULT_MIN_SIZE,
    max_size: int | None = None,
    withhold_lines: Collection[str] = (),
) -> PublishResult:
    """Write one audience's files for one channel, with deltas and a manifest, atomically.

    Parameters
    ----------
    audience_name : str
        Slug ``[a-z0-9_]+`` (it becomes a directory name).
    channel : {"google_ads", "meta_ads", "email"}
    members : pandas.DataFrame
        Columns ``MEMBER_COLUMNS`` plus optional ``is_holdout``; consent and the holdout are
        re-applied here (holdout members are counted, never exported).
    as_of_date : date or str
        The run date; names the directory.
    run_id : str
        Airflow run id (recorded in the manifest).
    outbox_dir : Path or str
        Root of the outbox.
    min_size : int or None
        Ad channels only: fewer exportable rows than this and nothing is published; the
        manifest (and the result) say why. Platforms refuse or cannot serve tiny lists, and a
        tiny list can single people out.
    max_size : int or None
        Keep at most this many rows: the highest ``response_probability`` first, ties by user id.
    withhold_lines : collection of str
        :func:`line_hash` values of lines never to write again, not even in a removes file:
        the earlier rows of users erased since (counted in the manifest's
        ``removes_withheld``). The platform drops them on the next full-list replace.

    Returns
    -------
    PublishResult

    Raises
    ------
    ValueError
        On an unknown channel, a bad audience name, missing member columns or bad sizes.

    Notes
    -----
    The directory holds the full export (Meta: ``custom_audience_0001.csv``... at most 10,000
    rows each), ``adds*.csv`` and (ad channels only) ``removes*.csv`` against the latest
    earlier *successful* publish (e-mail rows are keyed by address, ad rows by the whole hashed
    row; e-mail removes are counted, never written in plain text), and
    ``manifest.json`` (sorted keys, indent 2): audience, channel, as_of_date, run_id, status,
    reason, file, files (name, rows, sha256 each), rows, sha256 (of the full export as one
    CSV), schema (``columns`` and which are hashed), previous_as_of_date, adds, removes, holdout.
    Same inputs and same earlier publishes give byte-identical files.
    """
    if channel not in CHANNEL_FILES:
        raise ValueError(f"channel must be one of {tuple(CHANNEL_FILES)}, got {channel!r}")
    if not isinstance(audience_name, str) or not _SLUG.match(audience_name):
        raise ValueError(f"audience_name must match [a-z0-9_]+, got {audience_name!r}")
    for label, value in (("min_size", min_size), ("max_size", max_size)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"{label} must be a non-negative int or None, got {value!r}")
    day = _as_date(as_of_date).isoformat()
    stem, header = CHANNEL_FILES[channel]
    limit = MAX_ROWS_PER_FILE[channel]

    holdout = (
        int(members["is_holdout"].astype("boolean").fillna(False).sum())
        if "is_holdout" in members.columns
        else 0
    )
    if max_size is not None:
        members = members.assign(
            _p=members["response_probability"].astype("Float64").fillna(-1.0)
        ).sort_values(["_p", "user_id"], ascending=[False, True], kind="stable")
        exportable = consented(members, channel)
        members = exportable.iloc[:max_size].drop(columns="_p")
    rows, lines, exported = build_export(members, channel)

    status, reason = STATUS_PUBLISHED, None
    if channel in _PHONE_STYLE and min_size is not None and len(rows) < min_size:
        status = STATUS_BELOW_MIN_SIZE
        reason = f"{len(rows)} rows < min_size {min_size}: ad audience not published"
        logger.warning("%s/%s for %s not published: %s", channel, audience_name, day, reason)

    audience_dir = Path(outbox_dir) / channel / audience_name
    audience_dir.mkdir(parents=True, exist_ok=True)
    _recover(audience_dir, day)
    previous_day, previous = _previous_publish(audience_dir, day)

    outputs: dict[str, bytes] = {}
    file_entries = []
    adds = removes = 0
    withheld: set[str] = set()
    # Every row is formatted once: the digest, the files and the deltas share its line.
    header_line = _line(header)
    digest = hashlib.sha256(_csv_bytes(header_line, lines)).hexdigest()
    if status == STATUS_PUBLISHED:
        chunks = _chunks(lines, limit)
        for name, chunk in zip(_file_names(stem, len(chunks), limit), chunks, strict=True):
            data = _csv_bytes(header_line, chunk)
            outputs[name] = data
            file_entries.append(
                {"file": name, "rows": len(chunk), "sha256": hashlib.sha256(data).hexdigest()}
            )
        current = {
            _row_key(channel, line): line
            for data in outputs.values()
            for line in data.splitlines()[1:]
        }
        added = sorted(current[k] for k in current.keys() - previous.keys())
        removed = sorted(previous[k] for k in previous.keys() - current.keys())
        adds, removes = len(added), len(removed)
        withheld = {line_hash(line) for line in removed} & set(withhold_lines)
        removed = [line for line in removed if line_hash(line) not in withheld]
        # E-mail removes are counted, never written: an address that left the list may have
        # unsubscribed or been erased, and must not be written out in plain text again.
        deltas = [("adds", added)] + ([("removes", removed)] if channel in _PHONE_STYLE else [])
        for kind, delta in deltas:
            chunks = _chunks(delta, limit)
            for name, chunk in zip(_file_names(kind, len(chunks), limit), chunks, strict=True):
                outputs[name] = _csv_bytes(header_line, chunk)
    manifest = {
        "audience": audience_name,
        "channel": channel,
        "as_of_date": day,
        "run_id": run_id,
        "status": status,
        "reason": reason,
        "file": file_entries[0]["file"] if file_entries else None,
        "files": file_entries,
        "rows": len(rows) if status == STATUS_PUBLISHED else 0,
        "sha256": digest if status == STATUS_PUBLISHED else None,
        "columns": list(header),
        "schema": {
            "columns": list(header),
            "hashed": [
                c for c in header if channel in _PHONE_STYLE and c not in PLAIN_AD_COLUMNS
            ],
            "hash": "sha256-hex" if channel in _PHONE_STYLE else None,
            "max_rows_per_file": limit,
        },
        "previous_as_of_date": previous_day,
        "adds": adds,
        "removes": removes,
        "removes_withheld": len(withheld),
        "holdout": holdout,
    }
    outputs["manifest.json"] = (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()

    target = audience_dir / day
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{day}.tmp-", dir=audience_dir))
    try:
        for name, data in outputs.items():
            _write_synced(tmp_dir / name, data)
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes 0700; published dirs are ordinary dirs
        _fsync_dir(tmp_dir)
        _swap_in(tmp_dir, target)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)

    logger.info(
        "%s %s/%s for %s: %d rows (+%d -%d, holdout %d)",
        status, channel, audience_name, day, manifest["rows"], adds, removes, holdout,
    )
    published = status == STATUS_PUBLISHED
    return PublishResult(
        channel=channel,
        audience_name=audience_name,
        path=target / (manifest["file"] or "manifest.json"),
        rows=manifest["rows"],
        sha256=digest if published else "",
        status=status,
        adds=adds,
        removes=removes,
        holdout=holdout,
        reason=reason,
        user_ids=tuple(u for u, _ in exported) if published else (),
        row_hashes=tuple(h for _, h in exported) if published else (),
    )
