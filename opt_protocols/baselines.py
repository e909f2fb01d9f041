"""Baseline protocols evaluated on the simulator: the best constant protocol and user-given ones.

Every solution carries baselines so that it says how much the optimum gains.
The best constant is found by a grid scan followed by bounded refinement
(``scipy.optimize.minimize_scalar`` in 1-D, Nelder-Mead with bounds otherwise),
on the numba simulator -- independent of the collocation.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from .problem import Problem
from .protocol import Protocol, as_protocol
from .simulate import final_loss, simulate

GRID_1D = 41
GRID_ND = 9


@dataclass
class Baseline:
    """A protocol, the static values used with it, and its objective on the simulator."""

    name: str
    protocol: Protocol
    static: dict[str, float]
    objective: float
    values: dict[str, float] | None = None   # for constant protocols: the constant of each control


def constants_with_static(problem: Problem, static: dict[str, float]) -> np.ndarray:
    c = problem.c.copy()
    slices = problem.model.constants.slices()
    for name, v in static.items():
        c[slices[name]] = v
    return c


def evaluate(problem: Problem, protocol: Protocol, static: dict[str, float], t_final: float | None = None) -> float:
    """The problem's objective for a protocol, by simulation (time objective: time to reach the target)."""
    m = problem.model
    c = constants_with_static(problem, static)
    T = problem.t_final if t_final is None else t_final
    if problem.objective == "final":
        return final_loss(m, problem.x0, protocol, T, c=c)
    if problem.objective == "integral":
        n = int(T) + 1 if m.kind == "map" else 4001
        tr = simulate(m, problem.x0, protocol, T, c=c, n_out=n, rtol=1e-10, atol=1e-12)
        if m.kind == "map":
            return float(np.mean(tr.loss[1:]))
        return float(np.trapezoid(tr.loss, tr.t) / T)
    # time to target along a simulation up to t_max
    T = problem.t_max
    tr = simulate(m, problem.x0, protocol, T, c=c, n_out=4001, rtol=1e-10, atol=1e-12)
    below = np.nonzero(tr.loss <= problem.target)[0]
    if below.size == 0:
        return float("inf")
    k = below[0]
    if k == 0:
        return 0.0
    t0, t1, l0, l1 = tr.t[k - 1], tr.t[k], tr.loss[k - 1], tr.loss[k]
    return float(t0 + (problem.target - l0) * (t1 - t0) / (l1 - l0))


def constant_protocol(problem: Problem, values: dict[str, float]) -> Protocol:
    T = problem.t_max if problem.objective == "time" else problem.t_final
    return as_protocol(problem.model, {**problem.fixed, **values}, T)


def best_constant(problem: Problem) -> Baseline:
    """The best constant protocol (controls with an '==' budget are held at their budgeted mean)."""
    free = [(n, problem.controls[n]) for n in problem.controls
            if not any(b.control == n and b.relation == "==" for b in problem.budgets)]
    held = {b.control: b.mean for b in problem.budgets if b.relation == "=="}
    caps = {b.control: b.mean for b in problem.budgets if b.relation == "<="}
    free = [(n, (lo, min(hi, caps.get(n, hi)))) for n, (lo, hi) in free]
    stat = list(problem.static.items())
    dims = [(n, b, "control") for n, b in free] + [(n, b, "static") for n, b in stat]

    def split(v):
        ctrl = dict(held)
        st = {}
        for (n, _, kind), val in zip(dims, v):
            (ctrl if kind == "control" else st)[n] = float(val)
        return ctrl, st

    def f(v):
        ctrl, st = split(v)
        val = evaluate(problem, constant_protocol(problem, ctrl), st)
        return val if np.isfinite(val) else 1e300

    if not dims:
        ctrl, st = split([])
        return Baseline("best_constant", constant_protocol(problem, ctrl), st, f([]), ctrl)
    lo = np.array([b[0] for _, b, _ in dims])
    hi = np.array([b[1] for _, b, _ in dims])
    if len(dims) == 1:
        grid = np.linspace(lo[0], hi[0], GRID_1D)
        vals = np.array([f([g]) for g in grid])
        k = int(np.argmin(vals))
        a, b = grid[max(k - 1, 0)], grid[min(k + 1, GRID_1D - 1)]
        res = optimize.minimize_scalar(lambda z: f([z]), bounds=(a, b), method="bounded",
                                       options={"xatol": 1e-9 * max(1.0, abs(hi[0] - lo[0]))})
        best = [res.x] if res.fun <= vals[k] else [grid[k]]
    else:
        axes = [np.linspace(l, h, GRID_ND) for l, h in zip(lo, hi)]
        pts = list(itertools.product(*axes))
        vals = [f(pt) for pt in pts]
        start = np.array(pts[int(np.argmin(vals))])
        res = optimize.minimize(f, start, method="Nelder-Mead", bounds=list(zip(lo, hi)),
                                options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 4000})
        best = list(res.x) if res.fun <= min(vals) else list(start)
    ctrl, st = split(best)
    return Baseline("best_constant", constant_protocol(problem, ctrl), st, f(best), ctrl)


def default_baseline(problem: Problem) -> Baseline:
    """The model's default controls (e.g. no dropout), constants as given."""
    m = problem.model
    ctrl = {n: m.controls[n].default for n in problem.controls}
    for b in problem.budgets:
        if b.relation == "==":
            ctrl[b.control] = b.mean
    slices = m.constants.slices()
    st = {n: float(problem.c[slices[n]][0]) for n in problem.static}
    return Baseline("default", constant_protocol(problem, ctrl), st,
                    evaluate(problem, constant_protocol(problem, ctrl), st), ctrl)


def given_baseline(problem: Problem, name: str, spec: Any, static: dict[str, float] | None = None) -> Baseline:
    """A user-supplied protocol (any protocol specification) evaluated as a baseline."""
    T = problem.t_max if problem.objective == "time" else problem.t_final
    proto = as_protocol(problem.model, {**problem.fixed, **spec} if isinstance(spec, dict) else spec, T)
    slices = problem.model.constants.slices()
    st = {n: float(problem.c[slices[n]][0]) for n in problem.static}
    st.update(static or {})
    return Baseline(name, proto, st, evaluate(problem, proto, st))
