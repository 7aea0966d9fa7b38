"""Step ``land``: the day's source files into ``raw.*`` (native zone or a source mapping)."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from marketing import warehouse
from marketing.land import land
from marketing.settings import Settings
from marketing.source_mapping import load_mapping, materialise
from marketing.steps.common import as_date

logger = logging.getLogger(__name__)


def land_day(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Land every pending partition up to D into ``raw`` (see ``marketing.land``).

    With ``settings.source_mapping_path`` set, the shop's own exports are first mapped onto the
    contract (``marketing.source_mapping``) into ``<data_dir>/landing_mapped``; otherwise the
    native landing zone is read. Partitions dated D - ``reland_days`` .. D are re-landed even
    when unchanged (late data); a structurally unusable file refuses the run before anything
    is written.
    """
    settings = settings or Settings.from_env()
    as_of = as_date(as_of_date)
    landing_dir, mapped = _landing_zone(as_of, settings)
    with warehouse.connect(settings.warehouse_path) as con:
        report = land(con, landing_dir, as_of, reland_days=settings.reland_days)
    return {
        "rows_loaded": report.rows_loaded,
        "rows_rejected": report.rows_rejected,
        "rejected_by_rule": report.rejected_by_rule,
        **report.counts,
        "absent_sources": len(report.notes),
        **({"mapped_rows": mapped} if mapped is not None else {}),
    }


def _landing_zone(as_of: date, settings: Settings) -> tuple[Path, int | None]:
    """The landing zone to load: native, or the shop's exports mapped onto the contract."""
    if settings.source_mapping_path is None:
        return settings.landing_dir, None
    mapping_path = Path(settings.source_mapping_path)
    mapping = load_mapping(mapping_path)
    out_dir = settings.data_dir / "landing_mapped"
    written = materialise(mapping, mapping_path.parent, out_dir, as_of)
    return out_dir, sum(written.values())
