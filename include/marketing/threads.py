"""Threads for independent pieces of numeric work (blocks of users in recommendations).

numpy's sorts and ufuncs and scipy's sparse products release the GIL, so two threads use both
cores of a small machine without copying data into other processes. Results never depend on
the number of threads: pieces are independent and come back in input order.

Not used for model fits: scikit-learn's logistic regression already spends its time in
multi-threaded BLAS, and fitting two models at once measured no faster at a million users.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def thread_count(n_threads: int | None = None) -> int:
    """``n_threads`` (>= 1) checked, or every CPU of the machine when None."""
    if n_threads is None:
        return os.cpu_count() or 1
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return n_threads


def parallel_map(fn: Callable[[T], R], items: Iterable[T], n_threads: int | None = None) -> list[R]:
    """``[fn(item) for item in items]``, computed by up to ``n_threads`` threads at once.

    Parameters
    ----------
    fn : callable
        Applied to each item; must not depend on the other items' calls.
    items : iterable
        Inputs, consumed before the first call.
    n_threads : int, optional
        Threads; default every CPU (:func:`thread_count`). One thread (or one item) runs
        in the calling thread.

    Returns
    -------
    list
        Results in the order of ``items``. The first exception raised by a call propagates.
    """
    items = list(items)
    threads = min(thread_count(n_threads), len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))
