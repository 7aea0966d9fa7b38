"""marketing.sampling: the one seeded-sample rule every fit, metric and picture uses."""

from __future__ import annotations

import numpy as np

from marketing.sampling import seeded_sample


def test_positions_and_values_follow_numpys_seeded_choice():
    for n, size, seed in [(1_000, 300, 7), (50, 49, 3)]:
        expected = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
        np.testing.assert_array_equal(seeded_sample(n, size, seed), expected)
        values = np.arange(n) * 3 + 1
        # drawing from values draws the same positions
        np.testing.assert_array_equal(seeded_sample(values, size, seed), values[expected])
    assert len(np.unique(seeded_sample(1_000, 300, 7))) == 300


def test_a_size_at_or_above_the_population_gives_all_of_it_sorted():
    np.testing.assert_array_equal(seeded_sample(5, 5, 1), np.arange(5))
    np.testing.assert_array_equal(seeded_sample(np.array([9, 4, 7]), 10, 1), [4, 7, 9])
