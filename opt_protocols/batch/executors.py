"""Where tasks run: a local pool of worker processes, or a dask.distributed cluster.

Both executors have the same small interface, used by the driver (:mod:`.runner`):

* ``submit(key, task, previous, priority)``: queue one task (a JSON-able spec and optionally the
  previous solution of its chain); higher priority runs first;
* ``wait(timeout) -> list[Event]``: the tasks that finished since the last call (waits at most
  ``timeout`` seconds, so that the driver reacts to Ctrl-C within that time);
* ``close()``: stop everything now (queued and running tasks are dropped).

Workers are long-lived, so what a worker process caches (loaded models, built NLPs) serves every
later task of the same structure. A worker lost mid-task (killed, out of memory) is replaced and
its task retried, at most :data:`MAX_ATTEMPTS` times in all; after that the task is reported as
lost. The process pool does this itself (it knows which task each worker runs); on dask the
scheduler does it (``distributed.scheduler.allowed-failures``, after which the task raises
``KilledWorker``).
"""
from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import multiprocessing as mp
import os
import signal
import sys
import warnings
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .worker import TaskOutcome, preload, run_task

#: How many times a task is started before a lost worker makes it fail.
MAX_ATTEMPTS = 3


@dataclass
class Event:
    """A task that is over: ``outcome`` (a TaskOutcome), or ``lost`` (a message) when its worker
    died :data:`MAX_ATTEMPTS` times; ``attempts``: how many times it was started (if known)."""

    key: str
    outcome: TaskOutcome | None = None
    lost: str | None = None
    attempts: int | None = None


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------- process pool


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when the driver dies (Linux), even in the middle of a solve:
    a killed driver leaves no workers behind. Elsewhere a worker stops after its current task."""
    if sys.platform.startswith("linux"):
        with suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    if os.getppid() != parent:   # the driver died before that took effect
        os._exit(0)


def _worker_main(conn: Connection, parent: int) -> None:
    """A pool worker: solve tasks received on ``conn`` until told to stop or the driver is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the driver's to handle
    _die_with(parent)
    preload()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        key, task, previous = msg
        outcome = run_task(task, previous)
        try:
            conn.send((key, outcome))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Slot:
    process: Any
    conn: Connection
    key: str | None = None


class ProcessPool:
    """``n_workers`` long-lived worker processes (started with ``spawn``: a clean interpreter,
    safe whatever the driver has loaded), each running one task at a time."""

    kind = "process pool"

    def __init__(self, n_workers: int | None = None):
        n = default_workers() if n_workers is None else int(n_workers)
        if n < 1:
            raise ValueError(f"workers = {n_workers!r}: expected a whole number >= 1")
        self.n_workers = n
        self._ctx = mp.get_context("spawn")
        self._queue: list[tuple[int, int, str]] = []
        self._payload: dict[str, tuple[dict, Any]] = {}
        self._attempts: dict[str, int] = {}
        self._seq = itertools.count()
        self._slots = [self._start() for _ in range(n)]

    def _start(self) -> _Slot:
        ours, theirs = self._ctx.Pipe()
        p = self._ctx.Process(target=_worker_main, args=(theirs, os.getpid()), daemon=True,
                              name="opt-protocols-worker")
        p.start()
        theirs.close()
        return _Slot(p, ours)

    def submit(self, key: str, task: dict, previous: Any = None, priority: int = 0) -> None:
        self._payload[key] = (task, previous)
        heapq.heappush(self._queue, (-priority, next(self._seq), key))
        self._dispatch()

    def _dispatch(self) -> None:
        for slot in self._slots:
            if slot.key is None and self._queue:
                _, _, key = heapq.heappop(self._queue)
                task, previous = self._payload[key]
                self._attempts[key] = self._attempts.get(key, 0) + 1
                slot.key = key
                try:
                    slot.conn.send((key, task, previous))
                except (BrokenPipeError, OSError):
                    pass   # the worker died: its sentinel reports it in wait()

    def wait(self, timeout: float) -> list[Event]:
        busy = [s for s in self._slots if s.key is not None]
        if not busy:
            return []
        ready = set(wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout))
        events = []
        for i, slot in enumerate(self._slots):
            if slot.key is None or (slot.conn not in ready and slot.process.sentinel not in ready):
                continue
            key = slot.key
            try:
                got, outcome = slot.conn.recv() if slot.conn.poll() else (None, None)
            except (EOFError, OSError):
                got, outcome = None, None
            if got == key:
                slot.key = None
                events.append(Event(key, outcome=outcome, attempts=self._attempts.pop(key)))
                del self._payload[key]
                continue
            # the worker died with the task: replace it, retry the task or give up
            code = slot.process.exitcode
            slot.process.join(timeout=1)
            slot.conn.close()
            self._slots[i] = self._start()
            if self._attempts[key] >= MAX_ATTEMPTS:
                events.append(Event(key, lost=f"worker lost {self._attempts[key]} times running this task "
                                             f"(last exit code {code})", attempts=self._attempts.pop(key)))
                del self._payload[key]
            else:
                heapq.heappush(self._queue, (1 << 30, next(self._seq), key))   # retried first
        self._dispatch()
        return events

    def close(self) -> None:
        """Stop the workers now (running tasks are abandoned)."""
        for slot in self._slots:
            if slot.process.is_alive():
                slot.process.kill()
        for slot in self._slots:
            slot.process.join(timeout=2)
            slot.conn.close()
        self._slots = []
        self._queue.clear()


# -------------------------------------------------------------------------------------- dask


class DaskExecutor:
    """Tasks on a dask.distributed cluster: an existing one (``scheduler`` = its address, e.g.
    ``tcp://host:8786`` or a dask-jobqueue cluster's ``scheduler_address``), or a LocalCluster of
    ``n_workers`` worker processes with one thread each, started here and closed by :meth:`close`.
    """

    kind = "dask"

    def __init__(self, scheduler: str | None = None, n_workers: int | None = None, *, timeout: float = 30.0):
        try:
            import distributed
        except ImportError:   # pragma: no cover
            raise ImportError("the dask executor needs dask.distributed: pip install 'opt-protocols[dask]'") from None
        self._distributed = distributed
        self._cluster = None
        if scheduler is None:
            n = default_workers() if n_workers is None else int(n_workers)
            if n < 1:
                raise ValueError(f"workers = {n_workers!r}: expected a whole number >= 1")
            self._cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                     dashboard_address=":0", silence_logs=logging.ERROR)
            self.kind = "dask LocalCluster"
            self.client = distributed.Client(self._cluster, timeout=timeout)
        else:
            self.client = distributed.Client(scheduler, timeout=timeout)
            self.kind = f"dask scheduler {scheduler}"
        threads = self.client.nthreads()
        if not threads:
            self.client.wait_for_workers(1, timeout=timeout)
            threads = self.client.nthreads()
        many = {w: n for w, n in threads.items() if n > 1}
        if many:
            warnings.warn(f"dask workers with more than one thread ({len(many)} of {len(threads)}): each worker "
                          "process solves one task at a time (IPOPT is not thread-safe), so the extra threads idle; "
                          "start workers with --nthreads 1 and more processes", stacklevel=2)
        self.n_workers = len(threads)
        self._futures: dict[Any, str] = {}
        self._counter = itertools.count()

    def submit(self, key: str, task: dict, previous: Any = None, priority: int = 0) -> None:
        fut = self.client.submit(run_task, task, previous, key=f"{key}-{next(self._counter)}-{os.getpid()}",
                                 pure=False, priority=priority)
        self._futures[fut] = key

    def wait(self, timeout: float) -> list[Event]:
        if not self._futures:
            return []
        try:
            done, _ = self._distributed.wait(list(self._futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        events = []
        for fut in done:
            key = self._futures.pop(fut)
            if fut.status == "finished":
                events.append(Event(key, outcome=fut.result()))
            else:
                exc = fut.exception() if fut.status == "error" else None
                why = f"{type(exc).__name__}: {exc}" if exc is not None else f"task {fut.status}"
                events.append(Event(key, lost=f"lost on the cluster ({why})"))
            fut.release()
        return events

    def close(self) -> None:
        """Cancel what is queued or running and disconnect (a LocalCluster started here is shut down)."""
        if self._futures:
            with suppress(Exception):   # the cluster may already be gone
                self.client.cancel(list(self._futures), force=True)
            self._futures.clear()
        with suppress(Exception):     # a slow shutdown must not hide the results
            self.client.close(timeout=2)
        if self._cluster is not None:
            # the worker processes this cluster started are killed first: a graceful shutdown of the
            # nannies takes seconds, which Ctrl-C should not wait for
            for nanny in list(getattr(self._cluster, "workers", {}).values()):
                pid = getattr(nanny, "pid", None)
                if pid:
                    with suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            with suppress(Exception):
                self._cluster.close(timeout=5)
            self._cluster = None


def make_executor(workers: int | None = None, scheduler: str | None = None, cluster: str | None = None):
    """The executor for the options of :func:`opt_protocols.batch.sweep`: the process pool by
    default, an existing dask cluster for ``scheduler``, a dask LocalCluster for ``cluster="local"``."""
    if scheduler is not None and cluster is not None:
        raise ValueError("give either scheduler (the address of a running dask cluster) or cluster='local', not both")
    if cluster is not None and cluster != "local":
        raise ValueError(f"cluster = {cluster!r}: expected 'local' (a dask LocalCluster on this machine); "
                         "for another cluster pass its scheduler address")
    if scheduler is not None:
        return DaskExecutor(scheduler=scheduler)
    if cluster == "local":
        return DaskExecutor(n_workers=workers)
    return ProcessPool(workers)
