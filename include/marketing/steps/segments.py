"""Step ``segments``: fit D's segments, keep ids and names stable against the run before."""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from marketing import model_registry, warehouse
from marketing.segment_model import assign_segments, segment_model
from marketing.segment_report import picture_rows, write_segments_picture
from marketing.segmentation import SegmentationResult, align_segment_ids, fit_segments
from marketing.settings import Settings
from marketing.steps.common import as_date, metrics_frame, read_profiles

logger = logging.getLogger(__name__)


def build_segments(as_of_date: date | str, settings: Settings | None = None) -> dict:
    """Cluster D's user profiles into named, stable segments and draw them.

    Writes ``ml.user_segments``, ``ml.segments`` (with the parent group of the Ward
    hierarchy), ``ml.segment_model_selection``, ``ml.segment_changes`` and the segments'
    metrics in ``ml.model_runs``; draws ``reports/<D>/segments.png``.

    Ids and names are carried over from the most recent earlier run (``ml.segments`` with
    the largest ``as_of_date < D``) by :func:`marketing.segmentation.align_segment_ids`, so
    the result for D depends on the runs before it: a backfill of D after later dates
    reuses the ids of the latest run *before* D, and ids of dates run out of order can differ
    from a chronological run.

    The fit is saved under ``models/segments/<D>/``. With ``settings.model_refit_days`` N > 1,
    the dates after a fit assign their users to it until it is N days old
    (:mod:`marketing.segment_model`); ``model_age_days`` in ``ml.model_runs`` says which.
    """
    settings = settings or Settings.from_env()
    as_of = as_date(as_of_date)
    with warehouse.connect(settings.warehouse_path) as con:
        profiles = read_profiles(con, as_of)
        previous, previous_date = _previous_segments(con, as_of)
        algorithm = settings.segment_algorithm
        if algorithm == "auto":
            algorithm = "ward" if len(profiles) <= settings.segment_ward_max_users else "kmeans"
        result, age = _fit_or_reuse(profiles.drop(columns=["as_of_date"]), as_of, algorithm,
                                    settings)
        result = align_segment_ids(
            result, previous, max_distance=settings.segment_match_max_distance
        )
        # an Arrow date column keeps the DATE type even when every value is NULL (first run)
        changes = result.changes.assign(
            previous_as_of_date=pd.Series(
                [previous_date] * len(result.changes), dtype=pd.ArrowDtype(pa.date32())
            )
        )
        warehouse.replace_partition(con, "ml.user_segments", result.assignments, as_of)
        warehouse.replace_partition(con, "ml.segments", result.segments, as_of)
        warehouse.replace_partition(con, "ml.segment_model_selection", result.model_selection, as_of)
        warehouse.replace_partition(con, "ml.segment_changes", changes, as_of)
        kept = _share_kept(con, result.assignments, previous_date)
        metrics = {"k": len(result.segments), "silhouette": result.silhouette,
                   "model_age_days": age}
        if kept is not None:
            metrics["share_users_kept_segment"] = kept
        warehouse.replace_partition(
            con, "ml.model_runs", metrics_frame("segments", metrics), as_of, {"model": "segments"}
        )
    # only the users the picture draws are transformed (assignments are sorted by user_id)
    drawn = picture_rows(len(profiles), settings.segment_picture_sample_size,
                         settings.random_state)
    by_user = np.argsort(profiles["user_id"].to_numpy(), kind="stable")
    picture = write_segments_picture(
        settings.reports_dir / as_of.isoformat() / "segments.png",
        result.features.transform(profiles.iloc[by_user[drawn]].drop(columns=["as_of_date"])),
        result.assignments["segment_id"].to_numpy()[drawn],
        result.segments,
        result.centroids,
        result.features.feature_names_,
        result.linkage,
        sample_size=len(drawn),
        random_state=settings.random_state,
        title=f"Segments on {as_of.isoformat()} ({len(profiles):,} users, {algorithm}, "
        f"silhouette {result.silhouette:.3f})",
    )
    status = changes["status"].value_counts()
    return {
        "segments": int(len(result.segments)),
        "silhouette": round(result.silhouette, 4),
        "kept": int(status.get("kept", 0)),
        "new": int(status.get("new", 0)),
        "vanished": int(status.get("vanished", 0)),
        "share_users_kept_segment": None if kept is None else round(kept, 4),
        "picture": str(picture),
    }


def _fit_or_reuse(profiles: pd.DataFrame, as_of: date, algorithm: str,
                  settings: Settings) -> tuple[SegmentationResult, int]:
    """D's segmentation (in the fit's numbering) and the age in days of the fit it uses.

    With ``settings.model_refit_days`` N > 1 the newest fit of the N - 1 days before D
    (``models/segments/<date>/``, same settings, same feature columns) assigns D's users;
    otherwise D is fitted and its model saved for the dates after it.
    """
    root = settings.models_dir / "segments"
    key = model_registry.settings_key(
        model="segments", algorithm=algorithm, k_range=list(settings.segment_k_range),
        sample_size=settings.silhouette_sample_size, random_state=settings.random_state,
    )

    def fits_profiles(fit: model_registry.RecentFit) -> bool:
        if fit.model.fits(profiles):
            return True
        logger.info("profile features changed since the segments fitted on %s: refitting",
                    fit.fit_date)
        return False

    recent = model_registry.reuse_recent_fit(root, as_of, settings.model_refit_days, key,
                                             accept=fits_profiles)
    if recent is not None:
        result = assign_segments(recent.model, profiles, settings.silhouette_sample_size,
                                 settings.random_state)
        return result, recent.age_days
    result = fit_segments(
        profiles,
        k_min=settings.segment_k_range[0],
        k_max=settings.segment_k_range[1],
        sample_size=settings.silhouette_sample_size,
        random_state=settings.random_state,
        algorithm=algorithm,
        # k from D's data alone (no prefer_k from the previous run): a backfilled date
        # must equal a fresh run of it; ids and names still carry over by matching.
    )
    model_registry.save_model(root / as_of.isoformat(), segment_model(result),
                              {"settings_key": key, "k": result.k, "algorithm": algorithm,
                               # JSON has no NaN (silhouette undefined on degenerate data)
                               "silhouette": (result.silhouette
                                              if np.isfinite(result.silhouette) else None)})
    return result, 0


def _previous_segments(con, as_of: date) -> tuple[pd.DataFrame, date | None]:
    """The most recent earlier run's ``ml.segments`` rows (empty, None on the first run)."""
    if not warehouse.table_exists(con, "ml.segments"):
        return pd.DataFrame(), None
    row = con.execute(
        "select max(as_of_date) from ml.segments where as_of_date < ?", [as_of]
    ).fetchone()
    if row is None or row[0] is None:
        return pd.DataFrame(), None
    previous = warehouse.read_frame(
        con, "select * from ml.segments where as_of_date = ? order by segment_id", [row[0]]
    )
    return previous.drop(columns=["as_of_date"]), row[0]


def _share_kept(con, assignments: pd.DataFrame, previous_date: date | None) -> float | None:
    """Share of today's users, also segmented last run, whose segment id did not change."""
    if previous_date is None:
        return None
    before = warehouse.read_frame(
        con,
        "select user_id, segment_id from ml.user_segments where as_of_date = ?",
        [previous_date],
    )
    both = assignments.merge(before, on="user_id", suffixes=("", "_before"))
    if both.empty:
        return None
    return float((both["segment_id"] == both["segment_id_before"]).mean())
