"""Run folders: each run's files live in a ``YYYY-MM-DD`` subfolder of a series
(``outbox/<channel>/<audience>/``, ``models/<model>/``, ``reports/``)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

_DATE_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")


def dated_folders(series: Path | str) -> dict[date, Path]:
    """The ``YYYY-MM-DD`` subfolders of ``series`` by date (other entries are ignored; a
    missing ``series`` has none)."""
    series = Path(series)
    if not series.is_dir():
        return {}
    folders = {}
    for child in series.iterdir():
        if not child.is_dir() or not _DATE_NAME.fullmatch(child.name):
            continue
        try:
            folders[date.fromisoformat(child.name)] = child
        except ValueError:  # 2026-02-30
            continue
    return folders
