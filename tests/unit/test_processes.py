"""marketing.processes: forked workers (process_map, in_background), results and logs handed
back."""

import logging
import os
import time

import numpy as np
import pandas as pd
import pytest

from marketing.processes import in_background, process_map

logger = logging.getLogger("marketing.test_processes")


def _square_and_log(x: int) -> tuple[int, int]:
    logger.warning("item %d", x)
    return x * x, os.getpid()


def _fail_on_three(x: int) -> int:
    logger.warning("starting %d", x)
    if x == 3:
        raise KeyError(f"bad item {x}")
    return x


@pytest.mark.parametrize("n_processes", [1, 2, 3])
def test_results_and_logs_come_back_in_input_order(n_processes, caplog):
    items = [5, 1, 4, 2, 3]
    with caplog.at_level(logging.WARNING, logger="marketing"):
        out = process_map(_square_and_log, items, n_processes, cost=lambda x: x)
    assert [square for square, _ in out] == [x * x for x in items]
    assert [r.getMessage() for r in caplog.records] == [f"item {x}" for x in items]
    pids = {pid for _, pid in out}
    if n_processes == 1:
        assert pids == {os.getpid()}
    else:  # forked processes did the work, never the caller
        assert os.getpid() not in pids


def _note_interval(item: tuple[str, int]) -> int:
    path, x = item
    start = time.monotonic()
    time.sleep(0.05 * (1 + x % 3))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{start} {time.monotonic()}\n")
    return x


@pytest.mark.parametrize("n_processes", [2, 3])
def test_at_most_n_processes_run_at_once(tmp_path, n_processes):
    log = str(tmp_path / "intervals.txt")
    assert process_map(_note_interval, [(log, x) for x in range(8)], n_processes) == list(range(8))
    intervals = [tuple(map(float, line.split())) for line in open(log, encoding="utf-8")]
    assert len(intervals) == 8
    busiest = max(sum(start <= t < end for start, end in intervals) for t, _ in intervals)
    assert busiest <= n_processes


def _note_start(item: tuple[str, int]) -> int:
    path, x = item
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{x}\n")
    time.sleep(0.2)
    return x


@pytest.mark.parametrize("cost, first_two", [(lambda item: item[1], {9, 4}), (None, {1, 9})])
def test_the_costliest_items_start_first(tmp_path, cost, first_two):
    """Two workers take the two costliest items first; the cheap one waits for a free worker
    (without a cost, items start in input order)."""
    log = str(tmp_path / "starts.txt")
    items = [(log, 1), (log, 9), (log, 4)]
    assert process_map(_note_start, items, 2, cost=cost) == [1, 9, 4]
    started = [int(line) for line in open(log, encoding="utf-8").read().split()]
    assert set(started[:2]) == first_two and len(started) == 3


@pytest.mark.parametrize("n_processes", [1, 2])
def test_a_worker_exception_reaches_the_caller_after_its_log(n_processes, caplog):
    with caplog.at_level(logging.WARNING, logger="marketing"), \
            pytest.raises(KeyError, match="bad item 3") as raised:
        process_map(_fail_on_three, [1, 2, 3, 4], n_processes)
    assert [r.getMessage() for r in caplog.records] == ["starting 1", "starting 2",
                                                        "starting 3"]
    if n_processes > 1:  # where it happened travels with it
        assert "_fail_on_three" in raised.value.__notes__[0]


def _fail_first_or_sleep(item: tuple[str, int]) -> int:
    path, x = item
    if x == 0:
        for _ in range(200):  # until item 1 runs
            if os.path.exists(path):
                break
            time.sleep(0.05)
        raise KeyError("bad item 0")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(path + ".tmp", path)
    time.sleep(30)
    return x


def test_a_failure_ends_the_processes_still_running(tmp_path):
    """Nothing waits for the other items once an earlier one failed: the processes still
    running are ended (one process per item, no shared queue, so ending one cannot leave a
    lock held: multiprocessing.Pool.terminate can hang when it kills a worker mid-result)."""
    log = tmp_path / "pids.txt"
    with pytest.raises(KeyError, match="bad item 0"):
        # item 1 starts first (costliest) and is running when item 0 fails
        process_map(_fail_first_or_sleep, [(str(log), 0), (str(log), 1)], 2,
                    cost=lambda item: item[1])
    pid = int(log.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ended and reaped


def test_nothing_to_do_and_bad_counts():
    assert process_map(_square_and_log, [], 2) == []
    with pytest.raises(ValueError, match="n_processes must be >= 1"):
        process_map(_square_and_log, [1, 2], 0)


def _slow_pid(seconds: float) -> int:
    logger.warning("background started")
    time.sleep(seconds)
    return os.getpid()


def test_in_background_overlaps_the_caller_and_hands_back_result_and_logs(caplog):
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="marketing"), \
            in_background(lambda: _slow_pid(0.5)) as job:
        time.sleep(0.5)  # the caller's own work, at the same time
        logger.warning("caller done")
        pid = job.result()
    assert pid != os.getpid()
    assert time.perf_counter() - started < 0.9  # 0.5 s each, side by side
    # the background's records come back when its result is asked for
    assert [r.getMessage() for r in caplog.records] == ["caller done", "background started"]


def test_in_background_sees_the_callers_memory_and_returns_frames():
    frame = pd.DataFrame({"user_id": np.arange(100_000), "x": np.linspace(0, 1, 100_000)})
    with in_background(lambda: frame.assign(y=frame["x"] * 2)) as job:
        out = job.result()
    pd.testing.assert_frame_equal(out, frame.assign(y=frame["x"] * 2))


def test_in_background_exception_reaches_the_caller_with_where_it_happened():
    with in_background(lambda: _fail_on_three(3)) as job, \
            pytest.raises(KeyError, match="bad item 3") as raised:
        job.result()
    assert "_fail_on_three" in raised.value.__notes__[0]


def test_a_result_that_does_not_pickle_is_a_clear_error():
    with in_background(lambda: (lambda: 1)) as job, \
            pytest.raises(Exception, match="pickle") as raised:
        job.result()
    assert "sending the background result" in " ".join(raised.value.__notes__)


def test_a_background_process_that_dies_is_a_clear_error():
    with in_background(lambda: os._exit(3)) as job, \
            pytest.raises(RuntimeError, match=r"exited \(code 3\) without a result"):
        job.result()


def test_leaving_the_block_early_ends_the_background_process():
    with pytest.raises(ValueError, match="caller failed"), \
            in_background(lambda: _slow_pid(30)) as job:
        process = job._process
        raise ValueError("caller failed")
    assert process is not None and not process.is_alive()


def test_the_caller_keeps_no_reference_to_the_background_inputs():
    """Once started, the caller can free the inputs: only the forked process holds them."""
    import functools
    import gc
    import weakref

    frame = pd.DataFrame({"x": np.arange(10)})
    alive = weakref.ref(frame)
    with in_background(functools.partial(lambda f: int(f["x"].sum()), frame)) as job:
        del frame
        gc.collect()
        assert alive() is None
        assert job.result() == 45


def test_waiting_can_be_bounded():
    with in_background(lambda: _slow_pid(30)) as job, \
            pytest.raises(TimeoutError, match="after 0.2 s"):
        job.result(timeout=0.2)


def test_openmp_work_in_the_background_after_the_caller_used_openmp():
    """GNU OpenMP hangs in a forked child once the parent ran a parallel region, unless the
    child stays on one OpenMP thread (the item neighbours use sparse_dot_topn's OpenMP)."""
    import scipy.sparse as sp

    from marketing.interactions import interaction_matrix
    from marketing.neighbours import item_neighbours

    rng = np.random.default_rng(7)
    interactions = pd.DataFrame({
        "user_id": rng.integers(0, 300, 3000), "item_id": rng.integers(0, 80, 3000),
        "strength": rng.random(3000), "has_purchased": rng.random(3000) < 0.1,
    }).drop_duplicates(["user_id", "item_id"])
    matrix = interaction_matrix(interactions)
    here = item_neighbours(matrix, k=5, n_threads=2)  # the caller's OpenMP pool now exists
    assert sp.issparse(matrix.strength)
    with in_background(lambda: item_neighbours(matrix, k=5, n_threads=2)) as job:
        there = job.result(timeout=60)
    pd.testing.assert_frame_equal(there, here)
