"""Forked processes for independent pieces of Python-level work.

Normalising, hashing and formatting identifiers (the publish step's files) and evaluating a
fit while the caller computes something else mostly run in the interpreter, so threads would
take turns on the GIL: independent pieces go to forked worker processes instead
(:func:`process_map` for many pieces, :func:`in_background` for one piece beside the
caller's own work). Workers inherit the inputs with the parent's memory (nothing is pickled on the way in, only results come
back), must not touch the warehouse (callers close their DuckDB connections first; a
connection another library keeps open is never used by a worker), and their log records are
handed back and re-emitted by the parent in input order, so a task's log reads as if one
process did the work and nothing a worker logs goes to the parent's handlers or sockets.
Results never depend on the number of processes; where ``fork`` does not exist (Windows) or
one process is asked for, the pieces run in the calling process.

Every piece runs in a process of its own that sends its outcome through a pipe of its own.
Nothing is shared between the processes (no pool, no common queue, no lock), so ending a
process at any moment (the caller failed, Ctrl-C) cannot leave a lock held that the caller
then waits for: ``multiprocessing.Pool.terminate`` can hang for ever when it kills a worker
that is writing a result to the pool's shared queue (CPython issues 96995 and 73945; it
hung this project's test suite once). A fork from a 2 GB process costs ~3-7 ms (measured),
against seconds per piece.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")
R = TypeVar("R")

class _Collector(logging.Handler):
    """A forked process's only log handler: keeps the records of its call, made picklable."""

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

_STARTING: Callable | None = None
"""The function of the :class:`BackgroundJob` being started (one at a time), inherited by its
forked process."""


def _start_worker() -> None:
    global _COLLECTOR
    _COLLECTOR = _Collector()
    logging.getLogger().handlers = [_COLLECTOR]
    # The caller decides: Ctrl-C reaches it and it stops the processes still running; a stop
    # (SIGTERM) ends one at once, whatever handler the caller had installed (Airflow's task
    # runner has its own SIGTERM handler).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # GNU OpenMP cannot start threads in the child of a process that already ran a parallel
    # region (it would wait forever for the parent's pool): OpenMP users (scikit-learn's
    # loss functions, sparse_dot_topn via marketing.threads.openmp_thread_count) run on one
    # thread here
    threadpool_limits(limits=1, user_api="openmp")


def _outcome(fn: Callable[[], R]) -> tuple[bool, object, list[logging.LogRecord]]:
    """(ok, result or exception, log records) of ``fn()``, in a worker."""
    _COLLECTOR.records = []
    try:
        return True, fn(), _COLLECTOR.records
    except Exception as error:  # handed back with the records logged before it
        error.add_note("in a worker process:\n" + traceback.format_exc().rstrip())
        return False, error, _COLLECTOR.records


def _handed_back(outcome: tuple[bool, object, list[logging.LogRecord]]) -> object:
    """Re-emit a worker's log records in the caller, then return its result or raise."""
    ok, result, records = outcome
    for record in records:
        logging.getLogger(record.name).handle(record)
    if not ok:
        raise result
    return result


def process_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    n_processes: int | None = None,
    cost: Callable[[T], float] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]``, computed by up to ``n_processes`` forked processes at
    a time, one per item.

    Parameters
    ----------
    fn : callable
        Applied to each item; must not depend on the other items' calls, and its result must
        be picklable.
    items : sequence
        Inputs (inherited by the processes, not pickled).
    n_processes : int, optional
        Processes at a time; default every CPU. One process (or one item) runs in the calling
        process.
    cost : callable, optional
        Relative cost of an item: the costliest start first, so two processes finish close
        together (the largest audience is half of a publish).

    Returns
    -------
    list
        Results in the order of ``items``. The first exception (in input order) propagates;
        the processes still running then are ended.
    """
    if n_processes is not None and n_processes < 1:
        raise ValueError(f"n_processes must be >= 1, got {n_processes}")
    wanted = (os.cpu_count() or 1) if n_processes is None else n_processes
    processes = min(wanted, len(items))
    if processes <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(item) for item in items]
    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost else range(len(items))
    waiting = deque(order)
    running: dict[object, tuple[int, BackgroundJob]] = {}
    outcomes: dict[int, tuple[bool, object, list[logging.LogRecord]]] = {}
    results: list[R] = []
    try:
        while len(results) < len(items):
            while waiting and len(running) < processes:
                index = waiting.popleft()
                job = BackgroundJob(lambda index=index: fn(items[index]), fork=True)
                running[job.receiver] = (index, job)
            for receiver in multiprocessing.connection.wait(list(running)):
                index, job = running.pop(receiver)
                outcomes[index] = job.outcome()
            while len(results) in outcomes:  # hand back in input order, raise at a failure
                results.append(_handed_back(outcomes.pop(len(results))))
        return results
    finally:
        for _, job in running.values():
            job.stop()


class BackgroundJob(Generic[R]):
    """One call running in a forked process (see :func:`in_background`)."""

    def __init__(self, fn: Callable[[], R], fork: bool | None = None) -> None:
        """``fork``: True forks wherever ``fork`` exists; None (default) only on a machine
        with two or more CPUs; False never (``fn`` runs at once here)."""
        self._outcome: tuple[bool, object, list[logging.LogRecord]] | None = None
        self._process = None
        self.receiver = None
        if fork is None:
            fork = (os.cpu_count() or 1) >= 2
        if not fork or "fork" not in multiprocessing.get_all_start_methods():
            self._outcome = _local_outcome(fn)
            return
        global _STARTING
        context = multiprocessing.get_context("fork")
        self.receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_send_outcome, args=(sender,), daemon=True)
        # handed over through a global, not the Process's arguments: the caller's copy of
        # what fn holds (e.g. the frames it evaluates) can be freed while the process runs
        _STARTING = fn
        try:
            self._process.start()
        finally:
            _STARTING = None
        sender.close()

    def result(self, timeout: float | None = None) -> R:
        """Wait for the call (at most ``timeout`` seconds: TimeoutError, the process goes on);
        its log records are re-emitted here, its exception raised."""
        return _handed_back(self.outcome(timeout))

    def outcome(self, timeout: float | None = None) -> tuple[bool, object, list]:
        """(ok, result or exception, log records) of the call, waiting as :meth:`result`
        does but re-emitting and raising nothing. A process that exits without sending one
        (killed, ``os._exit``) gives a RuntimeError outcome."""
        if self._outcome is None:
            if timeout is not None and not self.receiver.poll(timeout):
                raise TimeoutError(f"no result from the background process after {timeout} s")
            try:
                self._outcome = self.receiver.recv()
            except EOFError:
                self._process.join()
                self._outcome = (False, RuntimeError(
                    f"the background process exited (code {self._process.exitcode}) "
                    "without a result, e.g. killed for lack of memory"
                ), [])
            finally:
                self.receiver.close()
            self._process.join()
        return self._outcome

    def stop(self) -> None:
        """End the process if it still runs (the caller failed or was interrupted)."""
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join()
        if self.receiver is not None:
            self.receiver.close()


def _local_outcome(fn: Callable[[], R]) -> tuple[bool, object, list[logging.LogRecord]]:
    """``fn()`` in the calling process, as an outcome (no fork on this platform)."""
    try:
        return True, fn(), []
    except Exception as error:
        return False, error, []


def _send_outcome(sender) -> None:
    """The forked process: run the job's function and send its outcome (or why it cannot be
    sent)."""
    _start_worker()
    outcome = _outcome(_STARTING)
    try:
        sender.send(outcome)
    except Exception as error:  # e.g. a result that does not pickle
        error.add_note("sending the background result to the caller")
        sender.send((False, error, outcome[2]))
    finally:
        sender.close()


@contextmanager
def in_background(fn: Callable[[], R]) -> Iterator[BackgroundJob[R]]:
    """Run ``fn()`` in a forked process while the caller's block goes on.

    ``fn`` sees the caller's memory as it was at the start (nothing is pickled on the way
    in; the caller may drop its own references to the inputs once the block starts) and must
    not touch the warehouse (read what it needs before); its result comes back
    pickled through a pipe by ``job.result()``, with the records it logged. Leaving the block
    without asking for the result (an exception, Ctrl-C) ends the process. Where ``fork``
    does not exist or the machine has one CPU, ``fn`` runs at once in the calling process:
    same result, no overlap.

    Example::

        with in_background(lambda: evaluate(train, test)) as evaluation:
            picks = recommend(...)          # meanwhile, on the other core
            metrics = evaluation.result()
    """
    job = BackgroundJob(fn)
    del fn  # (see BackgroundJob: only the forked process keeps what fn holds)
    try:
        yield job
    finally:
        job.stop()
