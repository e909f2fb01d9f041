"""What a worker process does with one task: load the model, solve, return plain data.

:func:`run_task` runs in a long-lived worker (of the process pool or of a dask cluster). It
receives a task spec (JSON-able, see :mod:`.spec`) and optionally the previous solution of its
continuation chain, never a CasADi object. Per process it keeps the loaded models, and the
collocation layer keeps the built NLPs by structure (:func:`opt_protocols.control.collocation.
get_transcription`), so every task after the first of a structure skips the build.

Any exception inside the solve is caught and returned as a :class:`TaskOutcome` with ``error``
set, so that a bad grid point is recorded and the sweep goes on; only a lost worker process is
an executor-level failure.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

from .spec import canonical, method_arguments

_MODELS: dict[str, Any] = {}
#: one solve at a time per process: IPOPT solves from several threads of one process share the
#: cached solvers and are not safe (a dask worker started with more than one thread)
_LOCK = threading.Lock()
_LIMITED = False
GOOD = ("optimal", "acceptable")


@dataclass
class TaskOutcome:
    """The result of one task: a Solution, or an error (type, message, traceback)."""

    solution: Any = None
    error: dict[str, str] | None = None
    worker: str = ""
    started: float = 0.0              # time.time() when the task started in the worker
    wall_time: float = 0.0
    warm_start: str = "baseline"      # "previous", "baseline", or "previous, failed; baseline"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def limit_threads() -> None:
    """One BLAS/OpenMP thread per worker process (the workers are the parallelism)."""
    global _LIMITED
    if not _LIMITED:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
        _LIMITED = True


def preload() -> None:
    """Import the solve pipeline (CasADi, the numba integrators from their cache, SciPy) before the
    first task arrives, so a new worker does it while the driver is still reading the spec."""
    from .. import integrate, simulate  # noqa: F401
    from ..control import collocation, solve  # noqa: F401


def _model(name: str, params: dict):
    from ..model import load_model
    key = canonical([name, params])
    if key not in _MODELS:
        _MODELS[key] = load_model(name, **params)
    return _MODELS[key]


def solve_task(task: dict[str, Any], warm_start: Any = "baseline"):
    """``op.solve`` of a task spec (the model is loaded once per process and parameter set)."""
    from ..control.solve import solve
    m = _model(task["model"], task["params"])
    x0 = m.initial_state(**task["initial"]) if task["initial"] else None
    method, shorthands = method_arguments(task["method"])
    problem = dict(task["problem"])
    t_final = problem.pop("t_final")
    return solve(m, x0, t_final, method=method, warm_start=warm_start, **shorthands, **problem)


def light(solution):
    """The parts of a solution a warm start reads (protocol, static values, restart data, the best
    constant where the next best-constant search starts), to send to a worker without its
    trajectories and baseline curves."""
    kept = {n: replace(b, t=None, loss=None) for n, b in solution.baselines.items() if n == "best_constant"}
    return replace(solution, trajectory=None, baselines=kept, validation=None, x=solution.x[:1],
                   loss=solution.loss[:1], t=solution.t[:1])


def run_task(task: dict[str, Any], previous: Any = None) -> TaskOutcome:
    """Solve one task, warm-started from ``previous`` (a Solution) when given. A warm-started
    solve that fails is repeated from the default start (the best constant protocol)."""
    limit_threads()
    with _LOCK:
        started, t0 = time.time(), time.perf_counter()
        how = "previous" if previous is not None else "baseline"
        try:
            sol = solve_task(task, previous if previous is not None else "baseline")
            if previous is not None and sol.status not in GOOD:
                sol = solve_task(task, "baseline")
                how = "previous, failed; baseline"
            return TaskOutcome(solution=sol, worker=worker_name(), started=started,
                               wall_time=time.perf_counter() - t0, warm_start=how)
        except Exception as exc:
            return TaskOutcome(error={"type": type(exc).__name__, "message": str(exc) or type(exc).__name__,
                                      "traceback": traceback.format_exc()},
                               worker=worker_name(), started=started, wall_time=time.perf_counter() - t0,
                               warm_start=how)
