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
seeded random sample of users. Above :data:`K_SEARCH_MAX_USERS` users the k search fits on
a seeded sample of that many (inertia scaled up to all users), and only the chosen k is
fitted on everyone, started from the sample's centroids. Above :data:`FIT_MAX_USERS` users the
winsorising bounds, the scaler and that final K-Means use a seeded sample of that many, and
every user joins the nearest final centroid, so the fit costs the same above that size.
Segment ids are ``1..k`` ordered by size (descending), then by centroid, so they do not depend
on K-Means' internal label order.

Hierarchy: the chosen segments are grouped by a size-weighted Ward agglomeration of their
centroids (k x k, tiny) into a two-level hierarchy (parent group -> segment), cut at the
largest gap in merge heights. ``algorithm="ward"`` uses Ward as the primary clustering
instead: a Ward tree on a fixed-size seeded sample is cut at each k and every user goes to
the nearest sample-cluster mean (linear in users, never a users x users matrix).

Stable identity: :func:`align_segment_ids` matches today's centroids to the previous run's
(Hungarian assignment with a distance threshold); matched segments keep the previous id and
name, unmatched ones get new ids, and vanished ones are listed in ``changes``.

Region (country) is deliberately not a clustering feature: it says where a user lives, not
how they shop, and would split behaviourally equal users; ``marts.segment_profiles`` reports
each segment's top countries instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.preprocessing import StandardScaler

from marketing.sampling import seeded_sample
from marketing.segment_naming import SHARE_PREFIX, make_unique, name_segment
from marketing.silhouette import silhouettes

logger = logging.getLogger(__name__)

RECENCY_CAP_DAYS = 365.0
"""Recency is capped here; users who never ordered get this value."""

MINIBATCH_THRESHOLD = 200_000
"""Above this many users K-Means switches to ``MiniBatchKMeans``."""

K_SEARCH_MAX_USERS = 100_000
"""Above this many users, k is searched on a seeded sample of this many (then refitted)."""

FIT_MAX_USERS = 300_000
"""Above this many users, the feature bounds, scaler and final K-Means fit on a seeded sample
of that many (every user is still assigned, to the nearest centroid)."""

N_INIT = 5
"""K-Means restarts (k-means++ seeds) per k; MiniBatchKMeans uses 3."""

WINSOR_PERCENTILES = (1.0, 99.0)
CENTROID_PREFIX = "centroid__"

ALGORITHM_KMEANS = "kmeans"
ALGORITHM_WARD = "ward"
ALGORITHMS = (ALGORITHM_KMEANS, ALGORITHM_WARD)

WARD_SAMPLE_SIZE = 2000
"""Users in the seeded sample a primary Ward clustering is built on (memory ~ size^2)."""

K_STICKINESS = 0.01
"""A previous run's k is kept while its silhouette is within this of the best k's."""

STATUS_KEPT, STATUS_NEW, STATUS_VANISHED = "kept", "new", "vanished"

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


def feature_columns(profiles: pd.DataFrame) -> list[str]:
    """The clustering inputs present in ``profiles``: the fixed features, then share columns."""
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
        self.feature_names_ = feature_columns(profiles)
        raw = self._raw_transformed(profiles, self.feature_names_)
        is_share = np.array([c.startswith(SHARE_PREFIX) for c in self.feature_names_])
        # per feature along contiguous rows of the transpose: 0.43 s instead of 0.96 s for
        # 1M x 20 (numpy partitions strided columns slowly), and the same values
        low, high = np.percentile(np.ascontiguousarray(raw.T), WINSOR_PERCENTILES, axis=1)
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
    linkage : numpy.ndarray
        Size-weighted Ward linkage of the centroids in scipy format (rows of ``segments``
        are the leaves, same order); empty (0 x 4) with one segment.
    changes : pandas.DataFrame
        ``segment_id``, ``segment_name``, ``status`` (kept / new / vanished),
        ``previous_segment_id``, ``distance`` (standardised centroid distance to the
        matched previous segment); every segment is ``new`` until aligned.
    """

    assignments: pd.DataFrame
    segments: pd.DataFrame
    model_selection: pd.DataFrame
    silhouette: float
    k: int
    features: ProfileFeatures
    centroids: np.ndarray
    linkage: np.ndarray
    changes: pd.DataFrame


def _kmeans(k: int, n_rows: int, random_state: int) -> KMeans | MiniBatchKMeans:
    if n_rows > MINIBATCH_THRESHOLD:
        return MiniBatchKMeans(
            n_clusters=k, init="k-means++", n_init=3, batch_size=4096,
            random_state=random_state,
        )
    return KMeans(n_clusters=k, init="k-means++", n_init=N_INIT, random_state=random_state)


def _kmeans_from(centers: np.ndarray, n_rows: int, random_state: int) -> KMeans | MiniBatchKMeans:
    """K-Means on all users started from the k-search sample's centroids (one init)."""
    if n_rows > MINIBATCH_THRESHOLD:
        return MiniBatchKMeans(n_clusters=len(centers), init=centers, n_init=1, batch_size=4096,
                               random_state=random_state)
    return KMeans(n_clusters=len(centers), init=centers, n_init=1, random_state=random_state)


def sample_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette of ``labels`` on rows ``x``; NaN when it is undefined (one cluster, or one
    row per cluster)."""
    return sample_silhouettes(x, [labels])[0]


def sample_silhouettes(x: np.ndarray, labelings: list[np.ndarray]) -> list[float]:
    """:func:`sample_silhouette` of each labeling of the rows ``x``, sharing one pass over
    their distances (:func:`marketing.silhouette.silhouettes`)."""
    defined = [i for i, labels in enumerate(labelings)
               if 2 <= len(np.unique(labels)) < len(labels)]
    scores = [float("nan")] * len(labelings)
    for i, score in zip(defined, silhouettes(x, [labelings[i] for i in defined]), strict=True):
        scores[i] = score
    return scores


def _order_segments(labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Return ``old_label -> new position`` (0-based): size desc, then centroid asc."""
    sizes = np.bincount(labels, minlength=len(centers))
    keys = sorted(range(len(centers)), key=lambda c: (-sizes[c], tuple(centers[c])))
    mapping = np.empty(len(centers), dtype=np.int64)
    for position, old in enumerate(keys):
        mapping[old] = position
    return mapping


def nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre per row and the squared distance to it (n x k, never n x n)."""
    distances = (
        (x**2).sum(axis=1)[:, None] - 2.0 * x @ centers.T + (centers**2).sum(axis=1)[None, :]
    )
    labels = distances.argmin(axis=1)
    return labels.astype(np.int64), np.maximum(distances[np.arange(len(x)), labels], 0.0)


class _WardModel:
    """Ward clustering cut at k on a sample, extended to all rows by nearest sample mean."""

    def __init__(self, tree: np.ndarray, x_ward: np.ndarray, k: int) -> None:
        self.tree, self.x_ward, self.k = tree, x_ward, k

    def fit(self, x: np.ndarray) -> _WardModel:
        cut = fcluster(self.tree, t=self.k, criterion="maxclust") - 1
        n_clusters = int(cut.max()) + 1
        self.cluster_centers_ = np.vstack(
            [self.x_ward[cut == c].mean(axis=0) for c in range(n_clusters)]
        )
        self.labels_, squared = nearest(x, self.cluster_centers_)
        self.inertia_ = float(squared.sum())
        return self


def weighted_ward_linkage(centroids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Ward agglomeration of clusters given by their centroids and sizes.

    The merge cost of clusters A and B is the increase in within-cluster sum of squares,
    ``n_A n_B / (n_A + n_B) * ||c_A - c_B||^2``; the merge height is ``sqrt(2 * cost)``
    (scipy's Ward convention, so single points give scipy's ``linkage(.., "ward")``).
    Ties go to the pair with the smallest ids. O(k^3) on k centroids.

    Parameters
    ----------
    centroids : numpy.ndarray
        k x d cluster means.
    sizes : numpy.ndarray
        k positive cluster sizes.

    Returns
    -------
    numpy.ndarray
        (k - 1) x 4 linkage matrix in scipy format; the count column counts leaves.
    """
    centroids = np.asarray(centroids, dtype="float64")
    sizes = np.asarray(sizes, dtype="float64")
    k = len(centroids)
    if k != len(sizes) or (sizes <= 0).any():
        raise ValueError(f"need one positive size per centroid, got sizes {sizes.tolist()}")
    clusters = {i: (sizes[i], centroids[i], 1) for i in range(k)}
    rows = []
    next_id = k
    while len(clusters) > 1:
        best = None
        ids = sorted(clusters)
        for a_index, a in enumerate(ids):
            n_a, c_a, _ = clusters[a]
            for b in ids[a_index + 1 :]:
                n_b, c_b, _ = clusters[b]
                cost = n_a * n_b / (n_a + n_b) * float(((c_a - c_b) ** 2).sum())
                if best is None or cost < best[0] - 1e-12:
                    best = (cost, a, b)
        cost, a, b = best
        n_a, c_a, leaves_a = clusters.pop(a)
        n_b, c_b, leaves_b = clusters.pop(b)
        clusters[next_id] = (n_a + n_b, (n_a * c_a + n_b * c_b) / (n_a + n_b), leaves_a + leaves_b)
        rows.append([a, b, np.sqrt(2.0 * cost), leaves_a + leaves_b])
        next_id += 1
    tree = np.asarray(rows, dtype="float64").reshape(-1, 4)
    # rounding can break monotonicity by an ulp; scipy's dendrogram expects it
    if len(tree):
        tree[:, 2] = np.maximum.accumulate(tree[:, 2])
    return tree


def parent_groups(tree: np.ndarray, k: int) -> np.ndarray:
    """Cut a k-leaf linkage into parent groups at the largest gap in merge heights.

    The number of groups is between 2 and ``max(2, k // 2)``; with k <= 2 every segment is
    its own group. Returns a 0-based group per leaf, groups numbered by their first leaf.
    """
    if k <= 2:
        return np.arange(k, dtype=np.int64)
    heights = tree[:, 2]
    best_groups, best_gap = 2, -np.inf
    for groups in range(2, max(2, k // 2) + 1):
        # cutting into `groups` undoes the last groups - 1 merges
        gap = heights[k - groups] - heights[k - groups - 1]
        if gap > best_gap + 1e-12:
            best_groups, best_gap = groups, gap
    raw = fcluster(tree, t=best_groups, criterion="maxclust")
    order: dict[int, int] = {}
    for label in raw:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in raw], dtype=np.int64)


def with_parents(
    segments: pd.DataFrame, centroids: np.ndarray, tree: np.ndarray, feature_names: list[str],
) -> pd.DataFrame:
    """Add ``parent_segment_id`` (smallest member id) and ``parent_name`` to ``segments``."""
    k = len(segments)
    groups = parent_groups(tree, k)
    ids = segments["segment_id"].to_numpy(dtype=np.int64)
    sizes = segments["size"].to_numpy(dtype="float64")
    parent_id = np.empty(k, dtype=np.int64)
    group_names: dict[int, str] = {}
    for group in sorted(set(groups.tolist()), key=lambda g: ids[groups == g].min()):
        members = groups == group
        parent_id[members] = ids[members].min()
        weights = np.maximum(sizes[members], 1.0)
        mean = (centroids[members] * weights[:, None]).sum(axis=0) / weights.sum()
        group_names[group] = name_segment(pd.Series(mean, index=feature_names))
    unique = dict(zip(group_names, make_unique(group_names.values()), strict=True))
    out = segments.drop(columns=["parent_segment_id", "parent_name"], errors="ignore")
    out.insert(3, "parent_segment_id", parent_id)
    out.insert(4, "parent_name", pd.array([unique[g] for g in groups], dtype="str"))
    return out


def segments_frame(
    ids: np.ndarray, names: list[str], sizes: np.ndarray, centroids_original: np.ndarray,
    feature_names: list[str],
) -> pd.DataFrame:
    """The ``ml.segments`` rows: id, name, size and one ``centroid_<feature>`` column each."""
    frame = pd.DataFrame({
        "segment_id": ids.astype("int64"),
        "segment_name": pd.array(names, dtype="str"),
        "size": sizes.astype("int64"),
    })
    centroid_cols = pd.DataFrame(
        centroids_original, columns=[CENTROID_PREFIX + f for f in feature_names]
    )
    return pd.concat([frame, centroid_cols], axis=1)


def new_changes(segments: pd.DataFrame) -> pd.DataFrame:
    """Segment changes when there is no previous run: every segment is new."""
    return pd.DataFrame({
        "segment_id": segments["segment_id"].to_numpy(dtype=np.int64),
        "segment_name": pd.array(segments["segment_name"], dtype="str"),
        "status": pd.array([STATUS_NEW] * len(segments), dtype="str"),
        "previous_segment_id": pd.array([pd.NA] * len(segments), dtype="Int64"),
        "distance": np.full(len(segments), np.nan),
    })


def sorted_profiles(profiles: pd.DataFrame, min_users: int) -> pd.DataFrame:
    """``profiles`` sorted by ``user_id`` after checking the ids (present, non-NULL, unique)
    and that there are at least ``min_users`` rows."""
    if "user_id" not in profiles.columns:
        raise ValueError("profiles must have a user_id column")
    if len(profiles) < min_users:
        raise ValueError(f"segmentation needs at least {min_users} users, got {len(profiles)}")
    if profiles["user_id"].isna().any():
        raise ValueError("profiles.user_id has NULL values")
    if profiles["user_id"].duplicated().any():
        raise ValueError("profiles.user_id must be unique (one as_of_date at a time)")
    return profiles.sort_values("user_id", kind="stable").reset_index(drop=True)


def fit_segments(
    profiles: pd.DataFrame,
    k_min: int = 3,
    k_max: int = 10,
    sample_size: int = 5000,
    random_state: int = 7,
    algorithm: str = ALGORITHM_KMEANS,
    ward_sample_size: int = WARD_SAMPLE_SIZE,
    prefer_k: int | None = None,
    k_stickiness: float = K_STICKINESS,
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
        Seed for the samples and K-Means.
    algorithm : {"kmeans", "ward"}, default "kmeans"
        Primary clustering. ``"ward"``: Ward on a seeded sample of ``ward_sample_size``
        users (exact Ward when there are fewer users), others join the nearest mean.
    ward_sample_size : int, default 2000
        Sample size of the primary Ward clustering.
    prefer_k : int, optional
        The previous run's k: kept while its silhouette is within ``k_stickiness`` of the
        best one, so that a marginal silhouette change does not reshuffle every segment.
    k_stickiness : float, default 0.01
        See ``prefer_k``.

    Returns
    -------
    SegmentationResult

    Raises
    ------
    ValueError
        On fewer than 3 users, duplicate ``user_id``, missing columns, a bad k range or an
        unknown algorithm.
    """
    if k_min > k_max:
        raise ValueError(f"k_min must be <= k_max, got k_min={k_min}, k_max={k_max}")
    if sample_size < 2:
        raise ValueError(f"sample_size must be >= 2, got {sample_size}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if ward_sample_size < 3:
        raise ValueError(f"ward_sample_size must be >= 3, got {ward_sample_size}")
    frame = sorted_profiles(profiles, min_users=3)
    n = len(frame)
    fit_rows = None  # every row, or the seeded sample of FIT_MAX_USERS the fits use
    if n > FIT_MAX_USERS:
        fit_rows = seeded_sample(n, FIT_MAX_USERS, random_state + 3)
    features = ProfileFeatures().fit(frame if fit_rows is None else frame.iloc[fit_rows])
    x = features.transform(frame)

    k_hi = min(k_max, n - 1)
    k_lo = max(2, min(k_min, k_hi))
    sample = seeded_sample(n, sample_size, random_state)
    x_sample = x[sample]
    tree = x_ward = None
    if algorithm == ALGORITHM_WARD:
        x_ward = x[seeded_sample(n, ward_sample_size, random_state + 1)]
        tree = linkage(x_ward, method="ward")

    x_search = x
    if algorithm == ALGORITHM_KMEANS and n > K_SEARCH_MAX_USERS:
        x_search = x[seeded_sample(n, K_SEARCH_MAX_USERS, random_state + 2)]
    models, sample_labels = {}, []
    for k in range(k_lo, k_hi + 1):
        if algorithm == ALGORITHM_WARD:
            model = _WardModel(tree, x_ward, k).fit(x)
        else:
            model = _kmeans(k, len(x_search), random_state).fit(x_search)
        if len(model.cluster_centers_) != k:
            logger.warning("ward cut gave %d clusters for k=%d; skipped", len(model.cluster_centers_), k)
            continue
        models[k] = model
        sample_labels.append(model.labels_[sample] if x_search is x else model.predict(x_sample))
    rows = []
    for (k, model), score in zip(models.items(), sample_silhouettes(x_sample, sample_labels),
                                 strict=True):
        inertia = float(model.inertia_) * n / len(x_search)
        rows.append({"k": k, "inertia": inertia, "silhouette": score})
        logger.info("%s k=%d inertia=%.3f silhouette=%.4f", algorithm, k, inertia, score)
    if not rows:
        raise ValueError(f"no k in {k_lo}..{k_hi} gave that many clusters ({n} users)")
    selection = pd.DataFrame(rows).astype({"k": "int64"})

    valid = selection.dropna(subset=["silhouette"])
    if valid.empty:
        best_k = int(selection["k"].iloc[0])
        logger.warning("silhouette undefined for every k (degenerate data); using k=%d", best_k)
    else:
        # highest silhouette; ties go to the smaller k (idxmax returns the first)
        best_k = int(valid.loc[valid["silhouette"].idxmax(), "k"])
        if prefer_k is not None and prefer_k != best_k and prefer_k in set(valid["k"]):
            preferred = float(valid.loc[valid["k"] == prefer_k, "silhouette"].iloc[0])
            if preferred >= float(valid["silhouette"].max()) - k_stickiness:
                logger.info("kept the previous k=%d (silhouette within %.3f)", prefer_k,
                            k_stickiness)
                best_k = prefer_k
    model = models[best_k]
    labels = model.labels_
    if x_search is not x:
        x_fit = x if fit_rows is None else x[fit_rows]
        model = _kmeans_from(model.cluster_centers_, len(x_fit), random_state).fit(x_fit)
        labels = model.labels_ if fit_rows is None else model.predict(x)
    best_silhouette = float(selection.loc[selection["k"] == best_k, "silhouette"].iloc[0])

    labels = np.asarray(labels, dtype=np.int64)
    centers = np.asarray(model.cluster_centers_, dtype="float64")
    if algorithm == ALGORITHM_WARD:
        # report the means of the final (nearest-mean) assignment, like K-Means centroids
        centers = np.vstack([
            x[labels == c].mean(axis=0) if (labels == c).any() else centers[c]
            for c in range(len(centers))
        ])
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
    hierarchy = weighted_ward_linkage(centroids, np.maximum(sizes, 1))
    segments = segments_frame(
        ids, names, sizes, features.inverse_transform(centroids), features.feature_names_
    )
    segments = with_parents(segments, centroids, hierarchy, features.feature_names_)
    logger.info("chose k=%d (silhouette %.4f) for %d users", best_k, best_silhouette, n)
    return SegmentationResult(
        assignments=assignments,
        segments=segments,
        model_selection=selection,
        silhouette=best_silhouette,
        k=best_k,
        features=features,
        centroids=centroids,
        linkage=hierarchy,
        changes=new_changes(segments),
    )


def align_segment_ids(
    result: SegmentationResult,
    previous_segments: pd.DataFrame,
    max_distance: float | None = None,
) -> SegmentationResult:
    """Renumber today's segments so they keep the previous run's ids and names where they match.

    The previous centroids (``centroid__<feature>`` columns of ``ml.segments``, original
    units) are mapped into today's standardised space and matched to today's centroids by
    minimum total Euclidean distance (Hungarian algorithm; k x k', never users x users).
    A matched segment within ``max_distance`` keeps the previous id *and name* (a name
    stays with its id). Unmatched segments (or matches farther apart than ``max_distance``)
    get new ids above every previous id, in today's order, and today's name (made unique
    against the kept names). Previous segments left without a match are ``vanished``.

    Parameters
    ----------
    result : SegmentationResult
        Today's segmentation.
    previous_segments : pandas.DataFrame
        The previous run's ``ml.segments`` rows: ``segment_id``, ``segment_name`` and
        ``centroid__<feature>``. Empty -> ``result`` is returned unchanged.
    max_distance : float, optional
        Largest distance (in standard deviations) for two centroids to be the same segment;
        None = any distance.

    Returns
    -------
    SegmentationResult
        With renumbered and renamed ``assignments`` and ``segments`` (sorted by the new id),
        reordered ``centroids`` and ``linkage`` leaves, and ``changes`` listing every kept,
        new and vanished segment.
    """
    if previous_segments is None or len(previous_segments) == 0:
        return result
    if max_distance is not None and not max_distance > 0:
        raise ValueError(f"max_distance must be > 0, got {max_distance!r}")
    if "segment_id" not in previous_segments.columns:
        raise ValueError("previous_segments must have a segment_id column")
    prev = previous_segments.sort_values("segment_id", kind="stable").reset_index(drop=True)
    if prev["segment_id"].duplicated().any():
        raise ValueError("previous_segments.segment_id must be unique (one as_of_date)")
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
    prev_names = (
        prev["segment_name"].astype("str").tolist() if "segment_name" in prev.columns
        else [None] * len(prev)
    )
    new_ids = np.zeros(result.k, dtype=np.int64)
    matched_prev = np.full(result.k, -1, dtype=np.int64)
    for r, c in zip(rows, cols, strict=True):
        if max_distance is None or cost[r, c] <= max_distance:
            new_ids[r] = prev_ids[c]
            matched_prev[r] = c
    next_id = int(prev_ids.max()) + 1
    for r in range(result.k):
        if new_ids[r] == 0:
            new_ids[r] = next_id
            next_id += 1

    today_names = result.segments["segment_name"].astype("str").tolist()
    kept = [r for r in range(result.k) if matched_prev[r] >= 0]
    fresh = [r for r in range(result.k) if matched_prev[r] < 0]
    names: dict[int, str] = {}
    for r in kept:
        previous_name = prev_names[matched_prev[r]]
        names[r] = previous_name if previous_name else today_names[r]
    unique = make_unique([names[r] for r in kept] + [today_names[r] for r in fresh])
    names = dict(zip(kept + fresh, unique, strict=True))

    id_of_position = dict(zip(range(1, result.k + 1), new_ids.tolist(), strict=True))
    name_of_id = {int(new_ids[r]): names[r] for r in range(result.k)}
    assignments = result.assignments.assign(
        segment_id=result.assignments["segment_id"].map(id_of_position).astype("int64")
    )
    assignments["segment_name"] = pd.array(
        assignments["segment_id"].map(name_of_id), dtype="str"
    )
    segments = result.segments.assign(
        segment_id=result.segments["segment_id"].map(id_of_position).astype("int64"),
        segment_name=pd.array([names[r] for r in range(result.k)], dtype="str"),
    )
    order = np.argsort(new_ids, kind="stable")
    segments = segments.iloc[order].reset_index(drop=True)
    centroids = result.centroids[order]
    # relabel the hierarchy's leaves: leaf r (old row) becomes position of r in `order`
    tree = result.linkage.copy()
    if len(tree):
        new_leaf = np.empty(result.k, dtype=np.int64)
        new_leaf[order] = np.arange(result.k)
        for column in (0, 1):
            leaf = tree[:, column] < result.k
            tree[leaf, column] = new_leaf[tree[leaf, column].astype(np.int64)]
    segments = with_parents(segments, centroids, tree, result.features.feature_names_)

    change_rows = []
    for r in range(result.k):
        c = matched_prev[r]
        change_rows.append({
            "segment_id": int(new_ids[r]),
            "segment_name": names[r],
            "status": STATUS_KEPT if c >= 0 else STATUS_NEW,
            "previous_segment_id": int(prev_ids[c]) if c >= 0 else pd.NA,
            "distance": float(cost[r, c]) if c >= 0 else float("nan"),
        })
    for c in range(len(prev)):
        if c not in set(matched_prev.tolist()):
            change_rows.append({
                "segment_id": int(prev_ids[c]),
                "segment_name": prev_names[c],
                "status": STATUS_VANISHED,
                "previous_segment_id": int(prev_ids[c]),
                "distance": float(cost[:, c].min()),
            })
    changes = (
        pd.DataFrame(change_rows)
        .astype({"segment_id": "int64", "previous_segment_id": "Int64", "distance": "float64",
                 "segment_name": "str", "status": "str"})
        .sort_values(["segment_id", "status"], kind="stable")
        .reset_index(drop=True)
    )
    logger.info(
        "aligned %d segments to %d previous ones: %d kept, %d new, %d vanished",
        result.k, len(prev), len(kept), len(fresh), len(prev) - len(kept),
    )
    return SegmentationResult(
        assignments=assignments,
        segments=segments,
        model_selection=result.model_selection,
        silhouette=result.silhouette,
        k=result.k,
        features=result.features,
        centroids=centroids,
        linkage=tree,
        changes=changes,
    )
