"""marketing.processes.process_map: forked workers, results in input order, logs handed back."""

import logging
import os
import time

import pytest

from marketing.processes import process_map

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
    else:  # forked workers did the work, never the caller
        assert os.getpid() not in pids and 1 <= len(pids) <= n_processes


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


def test_nothing_to_do_and_bad_counts():
    assert process_map(_square_and_log, [], 2) == []
    with pytest.raises(ValueError, match="n_processes must be >= 1"):
        process_map(_square_and_log, [1, 2], 0)
