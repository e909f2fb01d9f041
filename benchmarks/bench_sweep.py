"""Sweeps: continuation on two workers against cold solves one by one, and executor overheads.

    PYTHONPATH=$PWD python benchmarks/run.py sweep        # about four minutes on 2 cores

1. Continuation: the committee machine's learning-rate problem (K = M = 2, sigma = 0.3, eta in
   [0, 3] piecewise constant on 50 intervals, Legendre degree 3) at 100 horizons alpha_F =
   5.0, 5.2, ..., 24.8 (docs/models.md section 1).
   Baseline: the 100 problems solved one by one in this process with ``op.solve`` from its default
   start (the best constant protocol); the NLP is built once and reused, as in any loop.
   Framework: ``opt_protocols.batch.sweep`` of the same grid with continuation along alpha_F on
   a process pool of 2 workers (the chain is cut into two halves, each warm-started from its
   neighbour: the re-simulated previous protocol and its IPOPT dual values), writing every run to
   an HDF5 file; the time includes starting the workers and all writes.
   Agreement: the 100 optima of both agree to 1e-6 (relative); the largest gap is in the note.
   A second row compares the CPU time of both (the workers' from getrusage of the joined children,
   plus the driver's), which a busy machine does not distort as it does the wall time. The same
   two rows follow for an asymmetric start, where no states lump and each solve costs more.
2. Executor overhead per task: the same tasks on the process pool and on a dask LocalCluster
   (2 worker processes, one thread each), submitted at once, no file. Overhead per task = the
   mean gap on a worker between the end of one task and the start of the next (the result sent
   and received, the next task sent and started), from the workers' clocks. Tasks of ~0.1 s (the
   linear-regression example, 100 intervals) and of ~5 s (committee K = M = 3, 100 intervals,
   alpha_F = 20, all states in the NLP). Startup (workers ready, first model loaded) is measured separately.
"""
from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

import opt_protocols as op
from opt_protocols.batch import load_sweep, sweep
from opt_protocols.batch.executors import DaskExecutor, ProcessPool

ROOT = Path(__file__).resolve().parents[1]
HORIZONS = {"linear": [5.0, 24.8, 100]}
SPEC = {
    "name": "bench-committee-horizons",
    "model": "committee",
    "params": {"K": 2, "M": 2, "sigma": 0.3},
    "problem": {"controls": {"eta": [0.0, 3.0]}},
    "method": {"name": "collocation", "intervals": 50},
    "grid": {"t_final": HORIZONS},
    "continuation": {"axis": "t_final"},
}
SHORT_TASK = {"model": str(ROOT / "examples" / "linear_regression.py"), "params": {"sigma": 0.5}, "initial": {},
              "problem": {"t_final": 3.0, "controls": {"eta": [0.0, 3.0]}},
              "method": {"name": "collocation", "intervals": 100}}
LONG_TASK = {"model": "committee", "params": {"K": 3, "M": 3, "sigma": 0.3}, "initial": {},
             "problem": {"t_final": 20.0, "controls": {"eta": [0.0, 3.0]}},
             "method": {"name": "collocation", "intervals": 100, "symmetry": False}}   # all 15 states: seconds
WORKERS = 2


#: The general case: an asymmetric start (R0 = 0.01 I plus a fixed off-diagonal part), so that no states
#: lump and the NLP keeps all 7 committee states (from the default start it has 4, see docs/performance.md).
ASYMMETRIC_R0 = [[0.01, 0.003], [-0.002, 0.012]]


def continuation_rows(initial: dict | None = None, label: str = "") -> list[dict]:
    load = os.getloadavg()
    Ts = np.linspace(*HORIZONS["linear"][:2], HORIZONS["linear"][2])
    m = op.load_model("committee", **SPEC["params"])
    x0 = m.initial_state(**{k: np.asarray(v) for k, v in (initial or {}).items()})
    spec = {**SPEC, "initial": dict(initial or {})}
    t0, c0 = time.perf_counter(), time.process_time()
    cold = [op.solve(m, x0, t_final=float(T), controls={"eta": (0.0, 3.0)}, intervals=50) for T in Ts]
    t_cold, c_cold = time.perf_counter() - t0, time.process_time() - c0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.h5"
        t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
        report = sweep(spec, out=out, workers=WORKERS, progress=False)
        t_sweep = time.perf_counter() - t0
        c_driver, c_workers = time.process_time() - c0, _children_cpu() - k0   # workers joined: counted
        ds = load_sweep(out)
        sims_warm = np.mean([s.stats["n_simulations"] for s in op.load(out)])
    got = ds.objective.values
    ref = np.array([s.objective for s in cold])
    gap = float(np.max(np.abs(got - ref) / ref))
    it_cold = np.mean([s.stats["iterations"] for s in cold])
    it_warm = float(ds.iterations.mean())
    ok = report.complete and all(s.status == "optimal" for s in cold) and gap <= 1e-6
    sims_cold = np.mean([s.stats["n_simulations"] for s in cold])
    states = cold[0].stats.get("nlp_states")
    return [dict(case=f"100 committee LR problems (alpha_F 5..24.8){label}: sweep, continuation, {WORKERS} "
                      "workers vs cold op.solve one by one", value=t_sweep, unit="s", baseline=t_cold,
                 note=f"{'target >= 4x; ' if not label else ''}{states} NLP states; max relative gap of the "
                      f"optima {gap:.1e} ({'ok' if ok else 'MISMATCH'}); "
                      f"IPOPT iterations per problem {it_warm:.1f} vs {it_cold:.1f}, simulations "
                      f"{sims_warm:.1f} vs {sims_cold:.1f}; "
                      f"{report.task_time / len(Ts):.3f} s per problem in a worker; load average "
                      f"{load[0]:.1f} -> {os.getloadavg()[0]:.1f}"),
            dict(case=f"the same{label}: CPU time, sweep (workers + driver) vs cold", value=c_workers + c_driver,
                 unit="s",
                 baseline=c_cold, note=f"workers {c_workers:.1f} s + driver {c_driver:.1f} s (a busy machine "
                                       "distorts CPU time less than wall time)")]


def _children_cpu() -> float:
    """CPU seconds of this process's terminated and waited-for children (the pool's workers)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _overhead(make, task: dict, n: int) -> tuple[float, float, float]:
    """(startup s, overhead per task s, mean task s) of an executor on n copies of a task.

    Overhead per task: the mean gap on a worker between the end of one task and the start of
    the next (result sent, received, next task sent and started), from the workers' clocks.
    """
    t0 = time.perf_counter()
    ex = make()
    try:
        ex.submit("warm-up", task)           # workers ready and the model loaded in one of them
        while not ex.wait(0.05):
            pass
        startup = time.perf_counter() - t0
        for i in range(WORKERS):             # ... and in every worker (not counted)
            ex.submit(f"load-{i}", task)
        left = WORKERS
        while left:
            left -= len(ex.wait(0.05))
        for i in range(n):
            ex.submit(f"t{i}", task)
        outcomes = []
        while len(outcomes) < n:
            outcomes += [ev.outcome for ev in ex.wait(0.05)]
    finally:
        ex.close()
    gaps = []
    for w in {o.worker for o in outcomes}:
        mine = sorted((o for o in outcomes if o.worker == w), key=lambda o: o.started)
        gaps += [b.started - (a.started + a.wall_time) for a, b in zip(mine, mine[1:])]
    return startup, float(np.mean(gaps)), float(np.mean([o.wall_time for o in outcomes]))


def overhead_rows() -> list[dict]:
    rows = []
    for label, task, n in (("~0.1 s", SHORT_TASK, 40), ("~5 s", LONG_TASK, 8)):
        s_pool, o_pool, m_pool = _overhead(lambda: ProcessPool(WORKERS), task, n)
        s_dask, o_dask, m_dask = _overhead(lambda: DaskExecutor(n_workers=WORKERS), task, n)
        rows.append(dict(case=f"overhead per task, tasks of {label}: dask LocalCluster vs process pool", value=o_dask,
                         unit="s", baseline=o_pool,
                         note=f"{n} tasks on {WORKERS} workers; mean solve {m_dask:.3g} s (dask) / "
                              f"{m_pool:.3g} s (pool); ratio < 1: dask costs more"))
        if label == "~0.1 s":
            rows.append(dict(case="startup to the first result: dask LocalCluster vs process pool", value=s_dask,
                             unit="s", baseline=s_pool, note="includes the first model load and NLP build"))
    return rows


def run() -> list[dict]:
    general = continuation_rows({"R": ASYMMETRIC_R0}, ", asymmetric start (no lumping)")
    return continuation_rows() + general + overhead_rows()
