"""Forked processes for independent pieces of Python-level work (the publish step's files).

Normalising, hashing and formatting identifiers run in the interpreter, so threads would take
turns on the GIL: independent pieces go to forked worker processes instead. Workers inherit
the inputs with the parent's memory (nothing is pickled on the way in, only results come
back), must not touch the warehouse (callers close their DuckDB connections first; a
connection another library keeps open is never used by a worker), and their log records are
handed back and re-emitted by the parent in input order, so a task's log reads as if one
process did the work and nothing a worker logs goes to the parent's handlers or sockets.
Results never depend on the number of processes; where ``fork`` does not exist (Windows) or
one process is asked for, the pieces run in the calling process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_WORK: tuple[Callable, Sequence] | None = None
"""(function, items) of the running :func:`process_map`, inherited by its forked workers."""


class _Collector(logging.Handler):
    """A worker's only log handler: keeps the records of the current item, made picklable."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


_COLLECTOR: _Collector | None = None


def _start_worker() -> None:
    global _COLLECTOR
    _COLLECTOR = _Collector()
    logging.getLogger().handlers = [_COLLECTOR]
    # The caller decides: Ctrl-C reaches it and it stops the pool; a stop (the pool's
    # terminate, also after success) ends a worker at once, whatever handler the caller had
    # installed (Airflow's task runner has its own SIGTERM handler).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(index: int) -> tuple[bool, object, list[logging.LogRecord]]:
    """(ok, result or exception, log records) of one item, in a worker."""
    fn, items = _WORK
    _COLLECTOR.records = []
    try:
        return True, fn(items[index]), _COLLECTOR.records
    except Exception as error:  # handed back with the records logged before it
        error.add_note("in a worker process:\n" + traceback.format_exc().rstrip())
        return False, error, _COLLECTOR.records


def process_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    n_processes: int | None = None,
    cost: Callable[[T], float] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]``, computed by up to ``n_processes`` forked workers.

    Parameters
    ----------
    fn : callable
        Applied to each item; must not depend on the other items' calls, and its result must
        be picklable.
    items : sequence
        Inputs (inherited by the workers, not pickled).
    n_processes : int, optional
        Worker processes; default every CPU. One process (or one item) runs in the calling
        process.
    cost : callable, optional
        Relative cost of an item: the costliest start first, so two workers finish close
        together (the largest audience is half of a publish).

    Returns
    -------
    list
        Results in the order of ``items``. The first exception (in input order) propagates.
    """
    global _WORK
    if n_processes is not None and n_processes < 1:
        raise ValueError(f"n_processes must be >= 1, got {n_processes}")
    wanted = (os.cpu_count() or 1) if n_processes is None else n_processes
    processes = min(wanted, len(items))
    if processes <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(item) for item in items]
    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost else range(len(items))
    _WORK = (fn, items)
    try:
        with multiprocessing.get_context("fork").Pool(processes, _start_worker) as pool:
            pending = {i: pool.apply_async(_run, (i,)) for i in order}
            results = []
            for i in range(len(items)):
                ok, result, records = pending[i].get()
                for record in records:
                    logging.getLogger(record.name).handle(record)
                if not ok:
                    raise result
                results.append(result)
            return results
    finally:
        _WORK = None
