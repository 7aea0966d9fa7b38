"""The project's one rule for seeded samples: which rows a fit, a metric or a picture uses."""

from __future__ import annotations

import numpy as np


def seeded_sample(population: int | np.ndarray, size: int, random_state: int) -> np.ndarray:
    """Sorted seeded sample, without replacement, of ``min(size, len)`` of ``population``.

    ``population`` is a count n (positions ``0..n-1`` are drawn) or an array of values. The
    same arguments always give the same sample; a size at or above the population gives it
    all, sorted.
    """
    n = population if isinstance(population, (int, np.integer)) else len(population)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(population, size=min(size, n), replace=False))
