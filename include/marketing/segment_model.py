"""A fitted segmentation kept on disk and applied to later dates without refitting.

Under a refit cadence (``Settings.model_refit_days`` > 1) the segments step fits on the first
date of a cycle and, on the dates after it, assigns D's users to that fit's segments:
the same feature transform (winsorising bounds and scaler), the same centroids, so a user's
segment changes only when the user's own behaviour does. That costs one transform and one
n x k distance computation instead of the k search (8 K-Means fits and silhouettes at 1M users).

:func:`segment_model` extracts what a later date needs from a :class:`SegmentationResult`
(before ids are aligned with the previous run: the step aligns every date's result the same
way); :func:`assign_segments` applies it and returns a result in the fit's numbering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketing.sampling import seeded_sample
from marketing.segmentation import (
    ProfileFeatures,
    SegmentationResult,
    feature_columns,
    nearest,
    new_changes,
    sample_silhouette,
    segments_frame,
    sorted_profiles,
    with_parents,
)


@dataclass(frozen=True, eq=False)
class SegmentModel:
    """What assigning users to a fitted segmentation needs.

    Attributes
    ----------
    features : ProfileFeatures
        The fitted feature transform.
    centroids : numpy.ndarray
        Standardised centroids, row i is segment id i + 1 of the fit.
    names : tuple of str
        The fit's segment names, same order.
    linkage : numpy.ndarray
        The fit's size-weighted Ward hierarchy of the centroids.
    model_selection : pandas.DataFrame
        The fit's ``k``, ``inertia``, ``silhouette`` table.
    """

    features: ProfileFeatures
    centroids: np.ndarray
    names: tuple[str, ...]
    linkage: np.ndarray
    model_selection: pd.DataFrame

    def fits(self, profiles: pd.DataFrame) -> bool:
        """Whether ``profiles`` has exactly the feature columns of the fit (a new or dropped
        category share means the segmentation must be refitted)."""
        return feature_columns(profiles) == list(self.features.feature_names_)


def segment_model(result: SegmentationResult) -> SegmentModel:
    """The reusable part of a fit made by :func:`marketing.segmentation.fit_segments`."""
    ids = result.segments["segment_id"].to_numpy(dtype=np.int64)
    if not np.array_equal(ids, np.arange(1, result.k + 1)):
        raise ValueError("segment_model takes fit_segments' result before align_segment_ids")
    return SegmentModel(
        features=result.features,
        centroids=result.centroids.copy(),
        names=tuple(result.segments["segment_name"].astype("str")),
        linkage=result.linkage.copy(),
        model_selection=result.model_selection.copy(),
    )


def assign_segments(
    model: SegmentModel, profiles: pd.DataFrame, sample_size: int = 5000, random_state: int = 7
) -> SegmentationResult:
    """Assign every profile to the nearest centroid of ``model``.

    Parameters
    ----------
    model : SegmentModel
    profiles : pandas.DataFrame
        Rows of ``marts.user_profiles`` for one date, with the fit's feature columns.
    sample_size, random_state : int
        The silhouette sample, drawn as :func:`marketing.segmentation.fit_segments` draws it.

    Returns
    -------
    SegmentationResult
        Ids 1..k and names of the fit, today's sizes, the fit's centroids (reported in
        ``segments`` in profile units), hierarchy and model selection, today's silhouette.

    Raises
    ------
    ValueError
        On bad user ids (as ``fit_segments``) or feature columns other than the fit's.
    """
    frame = sorted_profiles(profiles, min_users=1)
    if not model.fits(frame):
        raise ValueError(
            f"profiles have features {feature_columns(frame)}, the segment model was fitted "
            f"on {list(model.features.feature_names_)}: refit the segments"
        )
    x = model.features.transform(frame)
    labels, _ = nearest(x, model.centroids)
    k = len(model.centroids)
    sample = seeded_sample(len(x), sample_size, random_state)
    silhouette = sample_silhouette(x[sample], labels[sample])
    sizes = np.bincount(labels, minlength=k)
    ids = np.arange(1, k + 1)
    names = list(model.names)
    feature_names = list(model.features.feature_names_)
    segments = segments_frame(
        ids, names, sizes, model.features.inverse_transform(model.centroids), feature_names
    )
    segments = with_parents(segments, model.centroids, model.linkage, feature_names)
    assignments = pd.DataFrame({
        "user_id": frame["user_id"].to_numpy(),
        "segment_id": (labels + 1).astype("int64"),
        "segment_name": pd.array(np.asarray(names, dtype=object)[labels], dtype="str"),
    })
    return SegmentationResult(
        assignments=assignments,
        segments=segments,
        model_selection=model.model_selection.copy(),
        silhouette=silhouette,
        k=k,
        features=model.features,
        centroids=model.centroids.copy(),
        linkage=model.linkage.copy(),
        changes=new_changes(segments),
    )
