"""The segments picture: where the segments lie, what sets them apart, how they group.

One PNG per run (``reports/<as_of_date>/segments.png``) with three panels:

* a 2-D PCA projection of a fixed-size seeded sample of users, coloured by segment, with
  each segment's id at its centroid;
* a heatmap of the centroid z-scores (rows = segments, columns = features; red above the
  population average, blue below), which is what the names are read from;
* the dendrogram of the size-weighted Ward hierarchy of the segments, leaves labelled with
  their ids, coloured by parent group.

Pure plotting on arrays (matplotlib's non-interactive Agg backend); no warehouse access.
The PNG carries no timestamp, so the same inputs give the same bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: a worker or a test writes files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.cluster.hierarchy import dendrogram  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from marketing.sampling import seeded_sample  # noqa: E402

logger = logging.getLogger(__name__)

HEATMAP_Z_LIMIT = 2.5
"""Colour scale of the heatmap is clipped to +-this many standard deviations."""


def _short(feature: str) -> str:
    return (
        feature.replace("share_", "% ")
        .replace("count_", "#")
        .replace("_lifetime", "")
        .replace("_", " ")
    )


def picture_rows(n_users: int, sample_size: int, random_state: int) -> np.ndarray:
    """Sorted positions of the users :func:`write_segments_picture` draws (seeded).

    Transforming only these rows and passing them with ``sample_size >= len(rows)`` draws the
    same picture as passing every user: the sample of a sample that size is all of it.
    """
    return seeded_sample(n_users, sample_size, random_state)


def write_segments_picture(
    path: Path | str,
    x: np.ndarray,
    segment_ids: np.ndarray,
    segments: pd.DataFrame,
    centroids: np.ndarray,
    feature_names: list[str],
    linkage: np.ndarray,
    sample_size: int = 3000,
    random_state: int = 7,
    title: str = "",
) -> Path:
    """Draw the segments picture and write it atomically to ``path``.

    Parameters
    ----------
    path : Path or str
        Target PNG; parent folders are created; written to a temp file, then renamed.
    x : numpy.ndarray
        Standardised feature matrix, one row per user.
    segment_ids : numpy.ndarray
        Segment id of each row of ``x``.
    segments : pandas.DataFrame
        ``segment_id``, ``segment_name``, ``size`` (and optionally ``parent_segment_id``),
        one row per row of ``centroids`` and leaf of ``linkage``, same order.
    centroids : numpy.ndarray
        Standardised centroids (z-scores), one row per segment.
    feature_names : list of str
        Column names of ``x`` / ``centroids``.
    linkage : numpy.ndarray
        scipy linkage over the segments (may be empty with one segment).
    sample_size : int, default 3000
        Users drawn (seeded) for the projection.
    random_state : int, default 7
        Seed of the sample and the PCA.
    title : str
        Figure title.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        When the shapes of ``x``, ``segment_ids``, ``segments`` and ``centroids`` disagree.
    """
    path = Path(path)
    x = np.asarray(x, dtype="float64")
    segment_ids = np.asarray(segment_ids)
    if x.ndim != 2 or len(x) != len(segment_ids) or len(x) == 0:
        raise ValueError(
            f"x must be a non-empty 2-D matrix with one segment id per row, got x {x.shape} "
            f"and {len(segment_ids)} ids"
        )
    if centroids.shape != (len(segments), x.shape[1]) or len(feature_names) != x.shape[1]:
        raise ValueError(
            f"centroids must be segments x features = ({len(segments)}, {x.shape[1]}), "
            f"got {centroids.shape} and {len(feature_names)} feature names"
        )
    ids = segments["segment_id"].to_numpy(dtype=np.int64)
    names = segments["segment_name"].astype("str").tolist()
    sizes = segments["size"].to_numpy(dtype=np.int64)
    cmap = plt.get_cmap("tab20" if len(ids) > 10 else "tab10")
    colour = {int(i): cmap(n % cmap.N) for n, i in enumerate(ids)}

    rows = picture_rows(len(x), sample_size, random_state)
    n_components = min(2, x.shape[1], len(rows))
    pca = PCA(n_components=n_components, random_state=random_state).fit(x[rows])
    points = pca.transform(x[rows])
    centres = pca.transform(centroids)
    if n_components == 1:
        points = np.column_stack([points, np.zeros(len(points))])
        centres = np.column_stack([centres, np.zeros(len(centres))])

    k = len(ids)
    fig = plt.figure(figsize=(18, 10), dpi=100)
    grid = fig.add_gridspec(2, 2, width_ratios=(1.0, 1.35), height_ratios=(1.6, 1.0),
                            wspace=0.25, hspace=0.45)
    ax_map = fig.add_subplot(grid[:, 0])
    ax_heat = fig.add_subplot(grid[0, 1])
    ax_tree = fig.add_subplot(grid[1, 1])

    for segment_id, name, size in zip(ids, names, sizes, strict=True):
        mask = segment_ids[rows] == segment_id
        ax_map.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.45,
                       color=colour[int(segment_id)], label=f"{segment_id}: {name} ({size:,})",
                       rasterized=True)
    for (cx, cy), segment_id in zip(centres, ids, strict=True):
        ax_map.annotate(str(segment_id), (cx, cy), ha="center", va="center", fontsize=11,
                        fontweight="bold",
                        bbox={"boxstyle": "circle", "fc": "white", "ec": colour[int(segment_id)]})
    explained = pca.explained_variance_ratio_
    ax_map.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax_map.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)" if len(explained) > 1 else "")
    ax_map.set_title(f"Users (sample of {len(rows):,}) by segment, PCA projection")
    ax_map.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, ncol=1,
                  markerscale=3, frameon=False)

    image = ax_heat.imshow(np.clip(centroids, -HEATMAP_Z_LIMIT, HEATMAP_Z_LIMIT),
                           cmap="RdBu_r", vmin=-HEATMAP_Z_LIMIT, vmax=HEATMAP_Z_LIMIT,
                           aspect="auto")
    ax_heat.set_yticks(range(k), [f"{i}: {n}" for i, n in zip(ids, names, strict=True)],
                       fontsize=8)
    ax_heat.set_xticks(range(len(feature_names)), [_short(f) for f in feature_names],
                       rotation=60, ha="right", fontsize=8)
    if k * len(feature_names) <= 400:
        for r in range(k):
            for c in range(len(feature_names)):
                value = centroids[r, c]
                ax_heat.text(c, r, f"{value:.1f}", ha="center", va="center", fontsize=6,
                             color="white" if abs(value) > 1.5 else "black")
    ax_heat.set_title("Centroid z-scores (0 = average user)")
    fig.colorbar(image, ax=ax_heat, fraction=0.025, pad=0.01, label="z-score")

    if len(linkage):
        parent = (segments["parent_segment_id"].to_numpy(dtype=np.int64)
                  if "parent_segment_id" in segments.columns else ids)
        labels = [f"{i} (group {p})" for i, p in zip(ids, parent, strict=True)]
        dendrogram(linkage, ax=ax_tree, labels=labels, leaf_font_size=9,
                   color_threshold=0, above_threshold_color="grey")
        for tick in ax_tree.get_xticklabels():
            leaf = int(tick.get_text().split(" ")[0])
            tick.set_color(colour[leaf])
            tick.set_fontweight("bold")
        ax_tree.set_ylabel("Ward merge height")
        ax_tree.set_title("Hierarchy of segments (size-weighted Ward on centroids; "
                          "label = id, group = parent_segment_id)", fontsize=10)
    else:
        ax_tree.axis("off")
        ax_tree.set_title("Hierarchy: a single segment")

    if title:
        fig.suptitle(title, fontsize=14)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(temp, format="png", metadata={"Software": None}, bbox_inches="tight")
    finally:
        plt.close(fig)
    temp.replace(path)
    logger.info("wrote segments picture %s (%d segments)", path, k)
    return path
