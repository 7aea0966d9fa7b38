"""Silhouettes of several labelings in one pass: bit-identical to scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import config_context
from sklearn.metrics import silhouette_score

from marketing.segmentation import sample_silhouettes
from marketing.silhouette import silhouettes


@pytest.mark.parametrize("n", [7, 300, 2600])
def test_every_labeling_equals_scikit_learn_bit_for_bit(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 5)) + rng.integers(0, 3, (n, 1))
    labelings = [rng.integers(0, k, n) for k in (2, 3, 5)]
    labelings.append(np.r_[np.zeros(n - 2, int), 7, 9])  # two one-row clusters
    labelings.append(np.where(x[:, 0] > 1, 10, -4))  # arbitrary label values
    with config_context(working_memory=1):  # 1 MB: distance chunks of ~48 rows at n = 2600
        got = silhouettes(x, labelings)
        expected = [silhouette_score(x, labels) for labels in labelings]
    assert got == expected


def test_undefined_silhouettes_are_nan_and_the_rest_still_computed():
    x = np.arange(12.0).reshape(6, 2)
    one_cluster, one_row_each, fine = np.zeros(6), np.arange(6), np.r_[0, 0, 0, 1, 1, 1]
    got = sample_silhouettes(x, [one_cluster, fine, one_row_each])
    assert np.isnan(got[0]) and np.isnan(got[2])
    assert got[1] == silhouette_score(x, fine)
    with pytest.raises(ValueError, match="1 labels for 6 rows"):
        silhouettes(x, [one_cluster])
    with pytest.raises(ValueError, match="5 labels for 6 rows"):
        silhouettes(x, [np.zeros(5)])
    assert silhouettes(x, []) == []
