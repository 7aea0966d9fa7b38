"""User segmentation: standardised profile features -> K-Means with k chosen by silhouette.

Pure functions and estimators on DataFrames; reading ``marts.user_profiles`` and writing
``ml.user_segments`` / ``ml.segments`` / ``ml.segment_model_selection`` happen elsewhere.

Pipeline (see :data:`FEATURE_SPEC`):

1. take the profile columns of :data:`FEATURE_SPEC` plus every ``share_<category>`` column
   (sorted by name);
2. fill NULLs (``recency_days`` NULL = never ordered -> :data:`RECENCY_CAP_DAYS`; any
   other NULL -> 0) and apply each feature's transform (cap, ``log1p``, or none);
3. winsorise every non-share feature at its 1st/99th percentile (bounds learnt in ``fit``);
4. standardise (``StandardScaler``), so a centroid coordinate is a z-score against the
   population, which is what :func:`marketing.segment_naming.name_segment` reads.

K-Means (k-means++, several inits; ``MiniBatchKMeans`` above
:data:`MINIBATCH_THRESHOLD` users) is fitted for every k in ``k_min..k_max``; the inertia
of each is kept for the elbow curve and k is chosen by the silhouette on a fixed-size,
seeded random sample of users. Segment ids are ``1..k`` ordered by size (descending), then
by centroid, so they do not depend on K-Means' internal label order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from marketing.segment_naming import SHARE_PREFIX, make_unique, name_segment

logger = logging.getLogger(__name__)

RECENCY_CAP_DAYS = 365.0
"""Recency is capped here; users who never ordered get this value."""

MINIBATCH_THRESHOLD = 200_000
"""Above this many users K-Means switches to ``MiniBatchKMeans``."""

N_INIT = 5
"""K-Means restarts (k-means++ seeds) per k; MiniBatchKMeans uses 3."""

WINSOR_PERCENTILES = (1.0, 99.0)
CENTROID_PREFIX = "centroid__"

TRANSFORM_CAP = "cap"
TRANSFORM_LOG1P = "log1p"
TRANSFORM_NONE = "none"


@dataclass(frozen=True)
class FeatureSpec:
    """One segmentation feature: the profile column and how it is transformed."""

    column: str
    transform: str
    description: str


FEATURE_SPEC: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "recency_days",
        TRANSFORM_CAP,
        f"days since the last order; NULL (never ordered) -> {RECENCY_CAP_DAYS:g}, "
        f"then capped at {RECENCY_CAP_DAYS:g}",
    ),
    FeatureSpec("count_orders_lifetime", TRANSFORM_LOG1P, "lifetime orders (frequency)"),
    FeatureSpec("monetary_lifetime", TRANSFORM_LOG1P, "lifetime spend (monetary)"),
    FeatureSpec("average_order_value", TRANSFORM_LOG1P, "spend per order; NULL -> 0"),
    FeatureSpec("count_sessions_30d", TRANSFORM_LOG1P, "sessions, last 30 days (recent activity)"),
    FeatureSpec("count_sessions_90d", TRANSFORM_LOG1P, "sessions, last 90 days"),
    FeatureSpec("count_views_90d", TRANSFORM_LOG1P, "item views, last 90 days"),
    FeatureSpec("count_carts_90d", TRANSFORM_LOG1P, "add-to-carts, last 90 days"),
    FeatureSpec("count_purchases_90d", TRANSFORM_LOG1P, "purchase events, last 90 days"),
    FeatureSpec("conversion_rate_90d", TRANSFORM_NONE, "purchases / views, 90 days; NULL -> 0"),
    FeatureSpec("tenure_days", TRANSFORM_LOG1P, "days since sign-up"),
)
"""Fixed segmentation features, in order. Every ``share_<category>`` column of the input
is appended (sorted by name) with transform ``none`` and no winsorising: shares are
already bounded in [0, 1]. The 30-day view/cart/purchase counts are left out on purpose:
they are nearly collinear with the 90-day ones and would double their weight; the 30-day
session count is kept as the one "recent activity" signal."""


def _feature_columns(profiles: pd.DataFrame) -> list[str]:
    shares = sorted(c for c in profiles.columns if str(c).startswith(SHARE_PREFIX))
    return [spec.column for spec in FEATURE_SPEC] + shares


def _transform_of(column: str) -> str:
    for spec in FEATURE_SPEC:
        if spec.column == column:
            return spec.transform
    return TRANSFORM_NONE


class ProfileFeatures:
    """Turn profile rows into the standardised segmentation matrix (and back).

    Parameters
    ----------
    recency_cap : float, default 365
        Cap for ``recency_days``; NULL recency (never ordered) is set to the cap.

    Attributes
    ----------
    feature_names_ : list of str
        Profile columns used, in matrix order.
    lower_, upper_ : numpy.ndarray
        Winsorising bounds in transformed units (``-inf``/``inf`` for shares).
    scaler_ : sklearn.preprocessing.StandardScaler
        Fitted on the winsorised, transformed features.
    """

    def __init__(self, recency_cap: float = RECENCY_CAP_DAYS) -> None:
        self.recency_cap = recency_cap

    def _raw_transformed(self, profiles: pd.DataFrame, columns: list[str]) -> np.ndarray:
        missing = [c for c in columns if c not in profiles.columns]
        if missing:
            raise ValueError(f"profiles is missing feature columns {missing}")
        out = np.empty((len(profiles), len(columns)), dtype="float64")
        for j, column in enumerate(columns):
            values = profiles[column].to_numpy(dtype="float64", na_value=np.nan)
            transform = _transform_of(column)
            if transform == TRANSFORM_CAP:
                values = np.minimum(np.nan_to_num(values, nan=self.recency_cap), self.recency_cap)
            else:
                values = np.nan_to_num(values, nan=0.0)
            if transform == TRANSFORM_LOG1P:
                values = np.log1p(np.maximum(values, 0.0))
            out[:, j] = values
        return out

    def fit(self, profiles: pd.DataFrame) -> ProfileFeatures:
        """Learn the winsorising bounds and the scaler from ``profiles``.

        Parameters
        ----------
        profiles : pandas.DataFrame
            Rows of ``marts.user_profiles``.

        Returns
        -------
        ProfileFeatures
            ``self``.
        """
        if len(profiles) == 0:
            raise ValueError("cannot fit segmentation features on 0 profiles")
        self.feature_names_ = _feature_columns(profiles)
        raw = self._raw_transformed(profiles, self.feature_names_)
        is_share = np.array([c.startswith(SHARE_PREFIX) for c in self.feature_names_])
        low, high = np.percentile(raw, WINSOR_PERCENTILES, axis=0)
        self.lower_ = np.where(is_share, -np.inf, low)
        self.upper_ = np.where(is_share, np.inf, high)
        self.scaler_ = StandardScaler().fit(np.clip(raw, self.lower_, self.upper_))
        return self

    def transform(self, profiles: pd.DataFrame) -> np.ndarray:
        """Return the standardised feature matrix (rows in the order of ``profiles``).

        Share columns seen in ``fit`` but absent from ``profiles`` count as 0.
        """
        frame = profiles
        absent = [c for c in self.feature_names_ if c.startswith(SHARE_PREFIX)
                  and c not in profiles.columns]
        if absent:
            frame = profiles.assign(**{c: 0.0 for c in absent})
        raw = self._raw_transformed(frame, self.feature_names_)
        return self.scaler_.transform(np.clip(raw, self.lower_, self.upper_))

    def inverse_transform(self, scaled: np.ndarray) -> np.ndarray:
        """Map standardised points (e.g. centroids) back to profile units.

        ``log1p`` features go through ``expm1``, so a centroid of counts or money is a
        typical (log-mean) value rather than an arithmetic mean.
        """
        values = self.scaler_.inverse_transform(np.atleast_2d(scaled))
        for j, column in enumerate(self.feature_names_):
            if _transform_of(column) == TRANSFORM_LOG1P:
                values[:, j] = np.expm1(values[:, j])
        return values


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """Outcome of :func:`fit_segments`.

    Attributes
    ----------
    assignments : pandas.DataFrame
        ``user_id``, ``segment_id`` (int, 1..k), ``segment_name``; sorted by ``user_id``.
    segments : pandas.DataFrame
        ``segment_id``, ``segment_name``, ``size`` and one ``centroid__<feature>`` per
        feature in profile (original) units; sorted by ``segment_id``.
    model_selection : pandas.DataFrame
        ``k``, ``inertia``, ``silhouette`` for every k tried (the elbow curve).
    silhouette : float
        Silhouette (on the sample) of the chosen k.
    k : int
        Number of segments chosen.
    features : ProfileFeatures
        The fitted feature transformer.
    centroids : numpy.ndarray
        Standardised centroids (z-scores), one row per row of ``segments`` (same order).
    """

    assignments: pd.DataFrame
    segments: pd.DataFrame
    model_selection: pd.DataFrame
    silhouette: float
    k: int
    features: ProfileFeatures
    centroids: np.ndarray


def _kmeans(k: int, n_rows: int, random_state: int) -> KMeans | MiniBatchKMeans:
    if n_rows > MINIBATCH_THRESHOLD:
        return MiniBatchKMeans(
            n_clusters=k, init="k-means++", n_init=3, batch_size=4096,
            random_state=random_state,
        )
    return KMeans(n_clusters=k, init="k-means++", n_init=N_INIT, random_state=random_state)


def _sample_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels >= len(labels):
        return float("nan")
    return float(silhouette_score(x, labels, metric="euclidean"))


def _order_segments(labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Return ``old_label -> new position`` (0-based): size desc, then centroid asc."""
    sizes = np.bincount(labels, minlength=len(centers))
    keys = sorted(range(len(centers)), key=lambda c: (-sizes[c], tuple(centers[c])))
    mapping = np.empty(len(centers), dtype=np.int64)
    for position, old in enumerate(keys):
        mapping[old] = position
    return mapping


def _segments_frame(
    ids: np.ndarray, names: list[str], sizes: np.ndarray, centroids_original: np.ndarray,
    feature_names: list[str],
) -> pd.DataFrame:
    frame = pd.DataFrame({
        "segment_id": ids.astype("int64"),
        "segment_name": pd.array(names, dtype="str"),
        "size": sizes.astype("int64"),
    })
    centroid_cols = pd.DataFrame(
        centroids_original, columns=[CENTROID_PREFIX + f for f in feature_names]
    )
    return pd.concat([frame, centroid_cols], axis=1)


def fit_segments(
    profiles: pd.DataFrame,
    k_min: int = 3,
    k_max: int = 10,
    sample_size: int = 5000,
    random_state: int = 7,
) -> SegmentationResult:
    """Cluster users into named segments, choosing k by silhouette.

    Parameters
    ----------
    profiles : pandas.DataFrame
        Rows of ``marts.user_profiles`` for one ``as_of_date``: ``user_id``, the columns
        of :data:`FEATURE_SPEC` and any ``share_<category>`` columns. Other columns are
        ignored. Row order does not matter (rows are sorted by ``user_id``).
    k_min, k_max : int, default 3 and 10
        Range of k tried. ``k_max`` is capped at ``n_users - 1`` and ``k_min`` raised to
        at least 2 (and lowered to the capped ``k_max`` if needed).
    sample_size : int, default 5000
        Users in the seeded random sample on which the silhouette is computed.
    random_state : int, default 7
        Seed for the sample and K-Means.

    Returns
    -------
    SegmentationResult

    Raises
    ------
    ValueError
        On fewer than 3 users, duplicate ``user_id``, missing columns or a bad k range.
    """
    if k_min > k_max:
        raise ValueError(f"k_min must be <= k_max, got k_min={k_min}, k_max={k_max}")
    if sample_size < 2:
        raise ValueError(f"sample_size must be >= 2, got {sample_size}")
    if "user_id" not in profiles.columns:
        raise ValueError("profiles must have a user_id column")
    n = len(profiles)
    if n < 3:
        raise ValueError(f"segmentation needs at least 3 users, got {n}")
    if profiles["user_id"].isna().any():
        raise ValueError("profiles.user_id has NULL values")
    if profiles["user_id"].duplicated().any():
        raise ValueError("profiles.user_id must be unique (one as_of_date at a time)")

    frame = profiles.sort_values("user_id", kind="stable").reset_index(drop=True)
    features = ProfileFeatures().fit(frame)
    x = features.transform(frame)

    k_hi = min(k_max, n - 1)
    k_lo = max(2, min(k_min, k_hi))
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(n, size=min(sample_size, n), replace=False))
    x_sample = x[sample]

    rows, models = [], {}
    for k in range(k_lo, k_hi + 1):
        model = _kmeans(k, n, random_state).fit(x)
        score = _sample_silhouette(x_sample, model.labels_[sample])
        rows.append({"k": k, "inertia": float(model.inertia_), "silhouette": score})
        models[k] = model
        logger.info("k=%d inertia=%.3f silhouette=%.4f", k, model.inertia_, score)
    selection = pd.DataFrame(rows).astype({"k": "int64"})

    valid = selection.dropna(subset=["silhouette"])
    if valid.empty:
        best_k = k_lo
        logger.warning("silhouette undefined for every k (degenerate data); using k=%d", k_lo)
    else:
        # highest silhouette; ties go to the smaller k (idxmax returns the first)
        best_k = int(valid.loc[valid["silhouette"].idxmax(), "k"])
    model = models[best_k]
    best_silhouette = float(selection.loc[selection["k"] == best_k, "silhouette"].iloc[0])

    labels = np.asarray(model.labels_, dtype=np.int64)
    centers = np.asarray(model.cluster_centers_, dtype="float64")
    mapping = _order_segments(labels, centers)
    position = mapping[labels]
    centroids = np.empty_like(centers)
    centroids[mapping] = centers
    sizes = np.bincount(position, minlength=best_k)
    ids = np.arange(1, best_k + 1)

    names = make_unique(
        name_segment(pd.Series(centroids[i], index=features.feature_names_))
        for i in range(best_k)
    )
    assignments = pd.DataFrame({
        "user_id": frame["user_id"].to_numpy(),
        "segment_id": (position + 1).astype("int64"),
        "segment_name": pd.array([names[p] for p in position], dtype="str"),
    })
    segments = _segments_frame(
        ids, names, sizes, features.inverse_transform(centroids), features.feature_names_
    )
    logger.info("chose k=%d (silhouette %.4f) for %d users", best_k, best_silhouette, n)
    return SegmentationResult(
        assignments=assignments,
        segments=segments,
        model_selection=selection,
        silhouette=best_silhouette,
        k=best_k,
        features=features,
        centroids=centroids,
    )


def align_segment_ids(
    result: SegmentationResult,
    previous_segments: pd.DataFrame,
    max_distance: float | None = None,
) -> SegmentationResult:
    """Renumber today's segments so they keep yesterday's ids where they match.

    Yesterday's centroids (``centroid__<feature>`` columns of ``ml.segments``, original
    units) are mapped into today's standardised space and matched to today's centroids by
    minimum total Euclidean distance (Hungarian algorithm; k x k', never users x users).
    A matched segment takes the previous id; unmatched ones (or matches farther apart than
    ``max_distance``) get new ids above the largest previous id, in today's order.
    Names are today's (they describe today's centroid).

    Parameters
    ----------
    result : SegmentationResult
        Today's segmentation.
    previous_segments : pandas.DataFrame
        Yesterday's ``ml.segments`` rows: ``segment_id`` and ``centroid__<feature>``.
        Empty -> ``result`` is returned unchanged.
    max_distance : float, optional
        Largest distance (in standard deviations) for two centroids to be the same segment.

    Returns
    -------
    SegmentationResult
        With renumbered ``assignments`` and ``segments`` (sorted by the new id).
    """
    if previous_segments is None or len(previous_segments) == 0:
        return result
    if "segment_id" not in previous_segments.columns:
        raise ValueError("previous_segments must have a segment_id column")
    prev = previous_segments.sort_values("segment_id", kind="stable").reset_index(drop=True)
    prev_profiles = pd.DataFrame(index=prev.index)
    for name in result.features.feature_names_:
        column = CENTROID_PREFIX + name
        if column in prev.columns:
            prev_profiles[name] = prev[column].to_numpy(dtype="float64", na_value=np.nan)
        elif name.startswith(SHARE_PREFIX):
            prev_profiles[name] = 0.0  # a category that did not exist yesterday
        else:
            raise ValueError(f"previous_segments is missing column {column}")
    # the inverse transform of a centroid is in original units, so it round-trips
    prev_scaled = result.features.transform(prev_profiles)
    cost = np.sqrt(((result.centroids[:, None, :] - prev_scaled[None, :, :]) ** 2).sum(axis=2))
    rows, cols = linear_sum_assignment(cost)
    prev_ids = prev["segment_id"].to_numpy(dtype=np.int64)
    new_ids = np.zeros(result.k, dtype=np.int64)
    for r, c in zip(rows, cols, strict=True):
        if max_distance is None or cost[r, c] <= max_distance:
            new_ids[r] = prev_ids[c]
    next_id = int(prev_ids.max()) + 1
    for r in range(result.k):
        if new_ids[r] == 0:
            new_ids[r] = next_id
            next_id += 1
    remap = dict(zip(range(1, result.k + 1), new_ids.tolist(), strict=True))
    assignments = result.assignments.assign(
        segment_id=result.assignments["segment_id"].map(remap).astype("int64")
    )
    segments = (
        result.segments.assign(segment_id=result.segments["segment_id"].map(remap).astype("int64"))
        .sort_values("segment_id", kind="stable").reset_index(drop=True)
    )
    order = np.argsort(new_ids, kind="stable")
    logger.info("aligned %d segments to %d previous ones", result.k, len(prev))
    return SegmentationResult(
        assignments=assignments,
        segments=segments,
        model_selection=result.model_selection,
        silhouette=result.silhouette,
        k=result.k,
        features=result.features,
        centroids=result.centroids[order],
    )
