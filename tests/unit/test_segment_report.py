"""The segments picture: written atomically, deterministic, and refuses mismatched inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from marketing.segment_report import picture_rows, write_segments_picture
from marketing.segmentation import weighted_ward_linkage


def _inputs(k: int = 3, n: int = 300, d: int = 4):
    rng = np.random.default_rng(0)
    centroids = rng.normal(scale=2.0, size=(k, d))
    ids = np.arange(k).repeat(n // k)
    x = centroids[ids] + rng.normal(size=(len(ids), d))
    segments = pd.DataFrame({
        "segment_id": np.arange(1, k + 1) * 10,
        "segment_name": [f"Segment {i}" for i in range(k)],
        "size": np.bincount(ids),
        "parent_segment_id": [10] * (k - 1) + [k * 10],
    })
    tree = weighted_ward_linkage(centroids, segments["size"].to_numpy())
    return x, segments["segment_id"].to_numpy()[ids], segments, centroids, tree


def test_writes_a_deterministic_png(tmp_path):
    x, labels, segments, centroids, tree = _inputs()
    names = ["recency_days", "monetary_lifetime", "share_books", "share_toys"]
    path = write_segments_picture(tmp_path / "r" / "segments.png", x, labels, segments,
                                  centroids, names, tree, sample_size=100, title="t")
    assert path == tmp_path / "r" / "segments.png"
    image = imread(path)
    assert image.shape[0] > 500 and image.shape[1] > 1000
    assert not list(path.parent.glob(".*.tmp"))  # the temp file was renamed away
    first = path.read_bytes()
    write_segments_picture(path, x, labels, segments, centroids, names, tree, sample_size=100,
                           title="t")
    assert path.read_bytes() == first
    # passing only the drawn users (what the segments step transforms) draws the same picture
    drawn = picture_rows(len(x), 100, 7)
    assert len(drawn) == 100 and (np.diff(drawn) > 0).all()
    write_segments_picture(path, x[drawn], labels[drawn], segments, centroids, names, tree,
                           sample_size=len(drawn), title="t")
    assert path.read_bytes() == first


def test_single_segment_has_no_dendrogram(tmp_path):
    x, labels, segments, centroids, _ = _inputs(k=1)
    path = write_segments_picture(tmp_path / "one.png", x, labels, segments, centroids,
                                  ["a", "b", "c", "d"], np.empty((0, 4)))
    assert path.stat().st_size > 10_000


def test_mismatched_inputs_raise(tmp_path):
    x, labels, segments, centroids, tree = _inputs()
    names = ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="one segment id per row"):
        write_segments_picture(tmp_path / "a.png", x, labels[:-1], segments, centroids, names,
                               tree)
    with pytest.raises(ValueError, match="centroids must be segments x features"):
        write_segments_picture(tmp_path / "b.png", x, labels, segments, centroids[:, :2], names,
                               tree)
    assert not (tmp_path / "a.png").exists()
