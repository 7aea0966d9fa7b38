"""marketing.threads: results in input order, whatever the thread count; errors propagate;
fits run on one BLAS thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from marketing.threads import one_blas_thread, parallel_map, thread_count


def test_results_keep_the_order_of_the_items_and_use_several_threads():
    seen = set()

    def slow_square(x: int) -> int:
        seen.add(threading.get_ident())
        time.sleep(0.02 * (5 - x))  # later items finish first
        return x * x

    assert parallel_map(slow_square, range(5), n_threads=3) == [0, 1, 4, 9, 16]
    assert len(seen) > 1
    assert parallel_map(slow_square, iter([2, 1]), n_threads=1) == [4, 1]
    assert parallel_map(slow_square, [], n_threads=4) == []


def test_one_thread_runs_in_the_caller():
    caller = threading.get_ident()
    assert parallel_map(lambda _: threading.get_ident(), [1, 2], n_threads=1) == [caller] * 2


def test_an_error_in_a_call_propagates():
    def fail_on_two(x: int) -> int:
        if x == 2:
            raise KeyError("item 2")
        return x

    with pytest.raises(KeyError, match="item 2"):
        parallel_map(fail_on_two, [1, 2, 3], n_threads=2)


def test_thread_count_defaults_to_the_cpus_and_rejects_zero(monkeypatch):
    monkeypatch.setattr("marketing.threads.os.cpu_count", lambda: 6)
    assert thread_count() == 6 and thread_count(2) == 2
    monkeypatch.setattr("marketing.threads.os.cpu_count", lambda: None)
    assert thread_count() == 1
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        thread_count(0)


def _blas_threads() -> set[int]:
    np.ones(2) @ np.ones(2)  # numpy's BLAS is loaded
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_one_blas_thread_limits_blas_inside_the_call_and_restores_it_after():
    @one_blas_thread
    def fit(x: int) -> tuple[int, set[int]]:
        """Docstring kept."""
        return x + 1, _blas_threads()

    with threadpool_limits(limits=2, user_api="blas"):
        assert fit(1) == (2, {1})
        assert fit.__doc__ == "Docstring kept." and fit.__name__ == "fit"
        assert _blas_threads() == {2}


def test_openmp_thread_count_follows_the_process_openmp_limit():
    from threadpoolctl import threadpool_limits

    from marketing.threads import openmp_thread_count

    assert openmp_thread_count(3) == min(3, openmp_thread_count(64))
    with threadpool_limits(limits=1, user_api="openmp"):
        assert openmp_thread_count(None) == 1
        assert openmp_thread_count(4) == 1
