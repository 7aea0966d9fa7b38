"""Write audience files for each channel into the outbox, atomically.

Layout: ``<outbox_dir>/<channel>/<audience_name>/<YYYY-MM-DD>/`` holding one data file and a
``manifest.json``. Ad channels get only normalised + SHA-256-hashed identifiers; the e-mail
channel gets plain addresses of consented, unsuppressed users only.

Defence in depth: the audience marts already filter on consent, but the publisher applies each
channel's consent rule again, so a bug upstream cannot leak a non-consented user.

Atomicity: the date directory is built under a temporary name next to the target, fsynced and
then swapped in with ``os.replace``. A failure at any point before the swap leaves the previous
publish of that date untouched; readers never see a half-written file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from marketing.audience_config import CHANNELS
from marketing.identifiers import (
    normalise_emails,
    normalise_phones,
    sha256_hex_series,
)

logger = logging.getLogger(__name__)

MEMBER_COLUMNS: tuple[str, ...] = (
    "user_id",
    "email",
    "phone",
    "country",
    "first_name",
    "is_email_opt_in",
    "is_ads_opt_in",
    "is_email_suppressed",
    "is_erased",
    "segment_name",
    "recommended_items",
    "response_probability",
)

# channel -> (file name, header). Column names are the platforms' upload templates.
CHANNEL_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "google_ads": ("customer_match.csv", ("Email", "Phone")),
    "meta_ads": ("custom_audience.csv", ("EMAIL", "PHONE")),
    "email": (
        "audience.csv",
        ("email", "first_name", "segment_name", "recommended_items", "response_probability"),
    ),
}
# Google Customer Match wants E.164 ("+1415..."), Meta digits only ("1415...").
_PHONE_STYLE = {"google_ads": "e164", "meta_ads": "digits"}
_SLUG = re.compile(r"^[a-z0-9_]+$")
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class PublishResult:
    """What one publish wrote; one row of ``ml.publish_log`` (plus as_of_date and run_id).

    Attributes
    ----------
    channel, audience_name : str
    path : Path
        The data file inside the published date directory.
    rows : int
        Data rows (header excluded).
    sha256 : str
        Hex SHA-256 of the data file's bytes.
    status : str
        ``"published"``.
    """

    channel: str
    audience_name: str
    path: Path
    rows: int
    sha256: str
    status: str


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
    treated as True).
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
    return members.loc[keep.to_numpy()]


def build_rows(members: pd.DataFrame, channel: str) -> list[tuple[str, ...]]:
    """The data rows of the channel file (consent applied, deduplicated, sorted).

    Parameters
    ----------
    members : pandas.DataFrame
        Columns ``MEMBER_COLUMNS``.
    channel : {"google_ads", "meta_ads", "email"}

    Returns
    -------
    list of tuple of str
        In the column order of ``CHANNEL_FILES[channel]``, sorted by every column in order.
    """
    missing = [c for c in MEMBER_COLUMNS if c not in members.columns]
    if missing:
        raise ValueError(f"members is missing columns {missing}, got {list(members.columns)}")
    eligible = consented(members, channel)
    if channel in _PHONE_STYLE:
        emails = sha256_hex_series(normalise_emails(eligible["email"]))
        phones = sha256_hex_series(
            normalise_phones(eligible["phone"], eligible["country"], _PHONE_STYLE[channel])
        )
        rows = {
            (email or "", phone or "")
            for email, phone in zip(emails, phones, strict=True)
            if email is not None or phone is not None
        }
        return sorted(rows)
    table = pd.DataFrame(
        {
            "email": normalise_emails(eligible["email"]),
            "first_name": _text(eligible["first_name"]),
            "segment_name": _text(eligible["segment_name"]),
            "recommended_items": _text(eligible["recommended_items"]),
            "response_probability": [
                _format_probability(v) for v in eligible["response_probability"]
            ],
        }
    )
    # One row per address: two accounts sharing an address get one e-mail.
    rows = sorted(set(table.itertuples(index=False, name=None)))
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            unique.append(row)
    return unique


def _csv_bytes(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


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


def _previous_rows(audience_dir: Path, day: str, file_name: str) -> tuple[str | None, set[bytes]]:
    """Data lines of the latest publish strictly before ``day`` (for adds/removes)."""
    earlier = (
        sorted(
            p.name
            for p in audience_dir.iterdir()
            if p.is_dir() and _DATE_DIR.match(p.name) and p.name < day
        )
        if audience_dir.is_dir()
        else []
    )
    for name in reversed(earlier):
        data_file = audience_dir / name / file_name
        if data_file.is_file():
            return name, set(data_file.read_bytes().splitlines()[1:])
    return None, set()


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
) -> PublishResult:
    """Write one audience's file for one channel, with a manifest, atomically.

    Parameters
    ----------
    audience_name : str
        Slug ``[a-z0-9_]+`` (it becomes a directory name).
    channel : {"google_ads", "meta_ads", "email"}
    members : pandas.DataFrame
        Columns ``MEMBER_COLUMNS``; consent is re-applied here.
    as_of_date : date or str
        The run date; names the directory.
    run_id : str
        Airflow run id (recorded in the manifest).
    outbox_dir : Path or str
        Root of the outbox.

    Returns
    -------
    PublishResult

    Raises
    ------
    ValueError
        On an unknown channel, a bad audience name or missing member columns.

    Notes
    -----
    The manifest (sorted keys, indent 2) holds audience, channel, as_of_date, run_id, file,
    rows, sha256 and columns, plus ``previous_as_of_date``, ``adds`` and ``removes``: data rows
    new / gone compared with the latest earlier publish of the same audience and channel.
    Same inputs and same earlier publishes give byte-identical files.
    """
    if channel not in CHANNEL_FILES:
        raise ValueError(f"channel must be one of {tuple(CHANNEL_FILES)}, got {channel!r}")
    if not isinstance(audience_name, str) or not _SLUG.match(audience_name):
        raise ValueError(f"audience_name must match [a-z0-9_]+, got {audience_name!r}")
    day = _as_date(as_of_date).isoformat()
    file_name, header = CHANNEL_FILES[channel]

    rows = build_rows(members, channel)
    data = _csv_bytes(header, rows)
    digest = hashlib.sha256(data).hexdigest()

    audience_dir = Path(outbox_dir) / channel / audience_name
    audience_dir.mkdir(parents=True, exist_ok=True)
    _recover(audience_dir, day)
    previous_day, previous = _previous_rows(audience_dir, day, file_name)
    current = set(data.splitlines()[1:])
    manifest = {
        "audience": audience_name,
        "channel": channel,
        "as_of_date": day,
        "run_id": run_id,
        "file": file_name,
        "rows": len(rows),
        "sha256": digest,
        "columns": list(header),
        "previous_as_of_date": previous_day,
        "adds": len(current - previous),
        "removes": len(previous - current),
    }
    manifest_bytes = (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode("utf-8")

    target = audience_dir / day
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{day}.tmp-", dir=audience_dir))
    try:
        _write_synced(tmp_dir / file_name, data)
        _write_synced(tmp_dir / "manifest.json", manifest_bytes)
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes 0700; published dirs are ordinary dirs
        _fsync_dir(tmp_dir)
        _swap_in(tmp_dir, target)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)

    logger.info(
        "published %s/%s for %s: %d rows (+%d -%d)",
        channel,
        audience_name,
        day,
        len(rows),
        manifest["adds"],
        manifest["removes"],
    )
    return PublishResult(
        channel=channel,
        audience_name=audience_name,
        path=target / file_name,
        rows=len(rows),
        sha256=digest,
        status="published",
    )
