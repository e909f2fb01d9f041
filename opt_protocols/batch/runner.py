"""The sweep driver: plan the tasks, run them on an executor, append each run to the HDF5 file.

Only the driver writes the file, through :func:`opt_protocols.storage.write_runs` (crash-safe:
the file is always a consistent set of whole runs), appending runs as they complete. So:

* **resume**: a rerun reads the run ids already in the file and solves only the others (plus,
  with ``retry_failed``, those stored as failed); a driver killed at any point loses at most the
  runs that had finished but were not yet written, and duplicates none (a run id is written once);
* **faults**: a task that raises or whose solve fails is stored with its status (``"error"`` or
  ``"failed"``) and message and the sweep goes on; a lost worker is replaced and its task retried
  (:mod:`.executors`); Ctrl-C stops the driver within a fraction of a second (it waits on the
  executor at most :data:`POLL` seconds at a time), writes what has finished and leaves the file
  consistent;
* **continuation**: along the continuation axis the tasks of a chain run one after the other,
  each warm-started from the last successful solution before it (``op.solve(...,
  warm_start=previous)``). A chain is cut into as many segments as keep the workers busy (each
  segment starts from the default guess), e.g. two halves for one chain on two workers; on a
  resume a segment starts from the last stored solution before it.

Writes run in a background thread of the driver (the next tasks go out while a write copies
the file) and are batched when the file grows large: a write copies the file, so the writer
waits at least :data:`WRITE_SPACING` times as long as the last write took before it writes again
(each run is written at once while the file is small; at most that fraction of the time is spent
writing).
"""
from __future__ import annotations

import fcntl
import math
import os
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .progress import GOOD, Progress, SweepReport
from .spec import SweepSpec, Task, load_spec
from .worker import TaskOutcome, light

#: Longest wait on the executor between two checks for Ctrl-C (seconds).
POLL = 0.2
#: A write waits for at least this many times the duration of the previous write.
WRITE_SPACING = 4.0
#: The same near the end of a sweep (smaller batches, so that little is left after the last task).
ENDING_SPACING = 1.0


@dataclass
class Segment:
    """Consecutive tasks of a continuation chain run in order by one worker at a time."""

    tasks: list[Task]
    warm_id: str | None = None      # run id of the solution the next task starts from
    warm: Any = None                # that solution, once loaded or computed
    pos: int = 0

    @property
    def next(self) -> Task | None:
        return self.tasks[self.pos] if self.pos < len(self.tasks) else None


def plan(spec: SweepSpec, stored: dict[str, str], n_workers: int, retry_failed: bool = False) -> list[Segment]:
    """The segments to run: the tasks not in the file (``stored``: run_id -> status), or not
    successful there with ``retry_failed``; each stretch of consecutive such tasks of a chain
    starts from the last successful stored run before it; stretches are cut into equal parts
    when there are fewer of them than workers."""
    def todo(t: Task) -> bool:
        status = stored.get(t.run_id)
        return status is None or (retry_failed and status not in GOOD)

    stretches: list[Segment] = []
    for chain in spec.chains():
        last_good, current = None, None
        for t in chain:
            if todo(t):
                if current is None:
                    current = Segment([], warm_id=last_good)
                    stretches.append(current)
                current.tasks.append(t)
            else:
                current = None
                if stored.get(t.run_id) in GOOD:
                    last_good = t.run_id
    if not stretches or len(stretches) >= n_workers:
        return stretches
    total = sum(len(s.tasks) for s in stretches)
    out = []
    for s in stretches:
        k = min(len(s.tasks), math.ceil(n_workers * len(s.tasks) / total))
        bounds = [round(i * len(s.tasks) / k) for i in range(k + 1)]
        out.append(Segment(s.tasks[:bounds[1]], warm_id=s.warm_id))
        out.extend(Segment(s.tasks[a:b]) for a, b in zip(bounds[1:-1], bounds[2:]))
    return out


@contextmanager
def _exclusive(path: str):
    """Hold an exclusive lock on ``<dir>/.<name>.lock`` (released by the OS even if the driver is
    killed), so that two drivers never write the same file."""
    lock = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{path}: another sweep is writing to this file (lock {lock} is held)") from None
        yield
        with suppress(OSError):
            os.unlink(lock)
    finally:
        os.close(fd)


def stored_statuses(path: str) -> dict[str, dict[str, Any]]:
    """run_id -> attributes of the runs already in ``path`` (empty if there is no file)."""
    from .. import storage
    return storage.read_attrs(path) if os.path.exists(path) else {}


def _record(spec: SweepSpec, task: Task, outcome: TaskOutcome | None, lost: str | None, warm_id: str | None,
            attempts: int | None):
    """The storage record of a finished task (a solution, or an error without one)."""
    from ..solution import to_record
    from ..storage import RunRecord
    info = {**spec.describe(), "coords": task.coords, "task": task.spec, "warm_start": "baseline"}
    if outcome is not None:
        info.update(worker=outcome.worker, task_wall_time=outcome.wall_time)
        if outcome.warm_start.startswith("previous"):
            info["warm_start"] = f"{warm_id}" + outcome.warm_start[len("previous"):]
    if attempts is not None:
        info["attempts"] = attempts
    if outcome is not None and outcome.solution is not None:
        rec = to_record(thin(outcome.solution, spec.trajectory_points), task.run_id)
        rec.attrs["sweep"] = info
        return rec, outcome.solution.status, outcome.solution.return_status
    if outcome is not None:
        err = outcome.error
        message, kind, trace = f"{err['type']}: {err['message']}", err["type"], err["traceback"]
    else:
        message, kind, trace = lost, "WorkerLost", ""
    attrs = {"kind": "sweep_error", "model": task.spec["model"], "status": "error", "return_status": kind,
             "message": message, "traceback": trace, "objective": float("nan"), "sweep": info}
    return RunRecord(run_id=task.run_id, attrs=attrs), "error", message


def thin(solution, points: int | None):
    """The solution with its fine trajectory and the baselines' curves on ``points`` evenly spaced
    of their output times (ends included), e.g. to keep a map with thousands of states small."""
    tr = solution.trajectory
    if points is None or tr is None or len(tr.t) <= points:
        return solution
    idx = np.unique(np.round(np.linspace(0, len(tr.t) - 1, points)).astype(int))
    baselines = {name: replace(b, t=tr.t[idx], loss=b.loss[idx] if b.loss is not None else None)
                 for name, b in solution.baselines.items()}
    return replace(solution, baselines=baselines,
                   trajectory=replace(tr, t=tr.t[idx], x=tr.x[idx], loss=tr.loss[idx],
                                      controls={k: v[idx] for k, v in tr.controls.items()}))


class _Writer:
    """Appends finished runs to the file from a background thread, so that the driver hands out
    the next tasks while a write copies the file; batches when writes get slow (module docstring).

    A write that raises stops the thread; the error is raised in the driver by the next
    :meth:`add`, and :meth:`flush` retries the runs not written (raising if that fails too).
    """

    def __init__(self, path: str, replace: set[str]):
        self.path, self.replace = path, replace
        self.pending: list = []
        self.last_end, self.last_cost = -math.inf, 0.0
        self._cond = threading.Condition()
        self._stop = False
        self._hurry = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="sweep-writer", daemon=True)
        self._thread.start()

    def add(self, record) -> None:
        if self._error is not None:
            raise self._error
        with self._cond:
            self.pending.append(record)
            self._cond.notify()

    def ending_in(self, seconds: float) -> None:
        """The driver expects the last run in about ``seconds``: a batch held back until after
        that would be written after the last task, so from then on each run is written as it
        comes, :data:`ENDING_SPACING` apart."""
        if not self._hurry and seconds < (WRITE_SPACING + 1.0) * self.last_cost:
            with self._cond:
                self._hurry = True
                self._cond.notify()

    def _wait(self) -> float:
        """Seconds until the next write may start."""
        spacing = ENDING_SPACING if self._hurry else WRITE_SPACING
        return self.last_end + spacing * self.last_cost - time.perf_counter()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self.pending or self._wait() > 0):
                    self._cond.wait(self._wait() if self.pending else None)
                if self._stop:
                    return
                batch, self.pending = self.pending, []
            try:
                self._write(batch)
            except BaseException as exc:   # raised in the driver (add, flush); the runs stay pending
                with self._cond:
                    self.pending = batch + self.pending
                    self._error = exc
                return

    def _write(self, batch: list) -> None:
        from .. import storage
        t0 = time.perf_counter()
        storage.write_runs(self.path, batch, exist_ok=any(r.run_id in self.replace for r in batch))
        self.replace -= {r.run_id for r in batch}
        self.last_end = time.perf_counter()
        self.last_cost = self.last_end - t0

    def flush(self) -> None:
        """Stop the thread (a write in progress completes) and write what is pending, leaving out
        the runs already there (after an interruption, which may have come after a write had
        replaced the file but before it returned; a failed write is retried here)."""
        from .. import storage
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        if self.pending and os.path.exists(self.path):
            there = set(storage.list_runs(self.path)) - self.replace
            self.pending = [r for r in self.pending if r.run_id not in there]
        if self.pending:
            batch, self.pending = self.pending, []
            self._write(batch)


def sweep(spec: SweepSpec | dict | str | os.PathLike, *, out: str | os.PathLike | None = None,
          workers: int | None = None, scheduler: str | None = None, cluster: str | None = None,
          retry_failed: bool = False, progress: bool = True, executor: Any = None) -> SweepReport:
    """Solve every problem of a sweep spec (a dict, a TOML file or a :class:`SweepSpec`) and append
    each run to the HDF5 file ``out`` (default: the spec's ``out``) as it completes.

    Executors: a local pool of ``workers`` processes (default: one per core); ``cluster="local"``:
    a dask LocalCluster with ``workers`` worker processes; ``scheduler``: the address of a
    running dask.distributed scheduler. (``executor``: an executor object, see :mod:`.executors`.)
    Runs already in the file are skipped (``retry_failed=True`` solves the failed ones again).
    ``progress``: a progress bar (plain lines when stderr is not a terminal) and a final summary.
    Returns a :class:`~opt_protocols.batch.progress.SweepReport`; ``load_sweep(report.path)``
    opens the results. Stop it with Ctrl-C; rerun the same call to complete it.
    """
    from .executors import ProcessPool
    # the default pool's workers start (spawn, imports) while the driver reads and validates the spec,
    # which imports the model too
    early = ProcessPool(workers) if executor is None and scheduler is None and cluster is None else None
    try:
        report = _sweep(spec, out, workers, scheduler, cluster, retry_failed, progress, executor or early,
                        own=executor is None)
    finally:
        if early is not None:
            early.close()        # (idempotent: _sweep closes it when it is done with it)
    if progress:
        print(report.table(), flush=True)
    if report.interrupted:
        raise KeyboardInterrupt(f"sweep interrupted: {report.n_remaining} runs remain; rerun to complete {report.path}")
    return report


def _sweep(spec, out, workers, scheduler, cluster, retry_failed, progress, executor, own: bool) -> SweepReport:
    """:func:`sweep` with ``executor`` (None: made here when there is work) closed at the end if ``own``."""
    from .executors import make_executor
    s = load_spec(spec)
    path = os.fspath(out) if out is not None else s.out
    if not path:
        raise ValueError("out: no output file (give out=... or put out = \"file.h5\" in the spec)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with _exclusive(path):
        attrs = stored_statuses(path)
        ids = {t.run_id for t in s.tasks}
        stored = {rid: a.get("status", "?") for rid, a in attrs.items() if rid in ids}
        by_id = {t.run_id: t for t in s.tasks}
        report = SweepReport(path=path, name=s.name, executor="", n_workers=0, n_tasks=len(s.tasks),
                             statuses=dict(stored))
        for rid, status in stored.items():
            if status not in GOOD:
                a = attrs[rid]
                report.problems[rid] = (by_id[rid].coords, a.get("message") or a.get("return_status", ""))
        ex = None
        try:
            if any(_todo(s, stored, retry_failed)):
                ex = executor if executor is not None else make_executor(workers, scheduler, cluster)
            n_workers = ex.n_workers if ex is not None else 0
            report.executor = getattr(ex, "kind", "none") if ex is not None else "nothing to run"
            report.n_workers = n_workers
            segments = plan(s, stored, max(1, n_workers), retry_failed)
            report.skipped = len(stored) - sum(1 for seg in segments for t in seg.tasks if t.run_id in stored)
            if segments:
                _run(s, path, segments, ex, stored, report, progress)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            if ex is not None and own:
                ex.close()
        report.wall_time = time.perf_counter() - t_start
    return report


def _todo(s: SweepSpec, stored: dict[str, str], retry_failed: bool):
    return (t for t in s.tasks if t.run_id not in stored or (retry_failed and stored[t.run_id] not in GOOD))


def _run(s: SweepSpec, path: str, segments: list[Segment], ex, stored: dict[str, str], report: SweepReport,
         show: bool) -> None:
    """Submit the segments' tasks in order and record each as it finishes."""
    from ..solution import load
    n_good = sum(1 for v in stored.values() if v in GOOD)
    replace = {t.run_id for seg in segments for t in seg.tasks if t.run_id in stored}
    bar = Progress(len(s.tasks), done=n_good - sum(1 for r in replace if stored[r] in GOOD),
                   failed=len(stored) - n_good - sum(1 for r in replace if stored[r] not in GOOD),
                   desc=s.name, enabled=show)
    writer = _Writer(path, replace)
    running: dict[str, Segment] = {}
    total = left = sum(len(seg.tasks) for seg in segments)
    n_workers = max(1, getattr(ex, "n_workers", 1))

    def submit(seg: Segment) -> None:
        task = seg.next
        if seg.warm is None and seg.warm_id is not None:
            seg.warm = load(path, seg.warm_id)
        ex.submit(task.run_id, task.spec, None if seg.warm is None else light(seg.warm), priority=seg.pos)
        running[task.run_id] = seg

    try:
        for seg in segments:
            submit(seg)
        while running:
            events = ex.wait(POLL)
            finished = []
            for ev in events:             # the next tasks go out first
                seg = running.pop(ev.key)
                task, warm_id = seg.next, seg.warm_id
                solution = ev.outcome.solution if ev.outcome is not None else None
                if solution is not None and solution.status in GOOD:
                    seg.warm, seg.warm_id = solution, task.run_id
                seg.pos += 1
                if seg.next is not None:
                    submit(seg)
                finished.append((ev, task, warm_id))
            for ev, task, warm_id in finished:
                record, status, message = _record(s, task, ev.outcome, ev.lost, warm_id, ev.attempts)
                writer.add(record)
                if ev.outcome is not None:
                    report.task_time += ev.outcome.wall_time
                left -= 1
                writer.ending_in(left * report.task_time / (total - left) / n_workers)   # time to the last run
                report.statuses[task.run_id] = status
                report.ran.append(task.run_id)
                report.problems.pop(task.run_id, None)
                if status not in GOOD:
                    report.problems[task.run_id] = (task.coords, message)
                    bar.write(f"{task.run_id} ({', '.join(f'{k} = {v}' for k, v in task.coords.items())}): "
                              f"{status}: {message}")
                bar.update(status in GOOD)
    finally:
        bar.close()
        writer.flush()
