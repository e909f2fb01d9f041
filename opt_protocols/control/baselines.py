"""Baseline protocols evaluated on the simulator: best constant, model default, schedule families, user-given.

Every solution carries baselines so that it says how much the optimum gains and how close the
common schedule families come. All are evaluated by simulation (:class:`.evaluate.Evaluator`),
independently of the method that found the optimum.

* best constant: a grid scan (linear and geometric points) followed by bounded Brent in 1-D;
  in n-D a grid then L-BFGS-B on the exact gradient (maps) or bounded Nelder-Mead (ODEs).
  Controls with an ``==`` budget are held at their mean, ``<=`` budgets cap the range.
  In 1-D, given the best constant of a neighbouring problem (a continuation), the grid scan is
  replaced by a bracket found by walking downhill from it (three points, the middle one lowest:
  a minimum lies between the outer two), refined by the same bounded Brent; without such a
  bracket inside the range the full scan runs.
* schedule families (:mod:`opt_protocols.schedules`): the best member of a family for the
  learning-rate control (``eta``, else the first optimised control without a budget), the other
  controls and static values at their best-constant values. Base LR and shape parameters are
  fitted together: the best points of a small grid, refined by L-BFGS-B on the exact gradient
  (maps; d schedule/d parameter by central differences) or by bounded Nelder-Mead (ODEs).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize

from .. import schedules as sch
from ..protocol import Protocol, as_protocol
from ..solution import Baseline
from .evaluate import Evaluator, log_scale, log_scale_delta
from .problem import Problem

GRID_1D_LINEAR, GRID_1D_GEOMETRIC = 21, 13
GRID_ND = 7
#: First half-width of the bracket around a neighbour's best constant, relative to its distance
#: from the lower bound (so a log-scale range keeps its resolution); doubled at every step downhill.
BRACKET_STEP = 0.02
#: Steps downhill from the neighbour's best constant before the full scan is used instead.
BRACKET_STEPS = 12
#: Shape values tried per parameter before the local refinement of a family fit.
FAMILY_GRID = 4
#: The families fitted by ``families="default"`` (with the best constant, which every solve has).
DEFAULT_FAMILIES = ("cosine", "wsd", "power_law")
#: Relative scale of the log_scale objective of the gradient refinements (see evaluate.log_scale).
LOG_TOL = 1e-12
#: The refinements' objective where the states overflow.
OVERFLOW = 1e3
#: Parameters held fixed in the default family fits (the textbook members of each family).
FAMILY_FIXED: dict[str, dict[str, Any]] = {"wsd": {"floor": 0.0}}


def constant_protocol(problem: Problem, values: Mapping[str, float]) -> Protocol:
    """The protocol holding every control constant: ``values`` for the given ones, the problem's
    fixed values (or the model defaults) for the others. The same table as
    ``as_protocol(model, {**fixed, **values}, horizon)`` (one segment on [0, horizon]), built
    directly when every value is an admissible real number (the searches build thousands);
    anything else goes through :func:`as_protocol`, which raises its ValueError."""
    m = problem.model
    spec = {**problem.fixed, **values}
    row = [spec.get(n, m.controls[n].default) for n in m.control_names]
    if set(spec) <= set(m.control_names) and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
            and m.controls[n].lo <= v <= m.controls[n].hi for n, v in zip(m.control_names, row)):
        U = np.array([row], dtype=float)
        return Protocol(np.array([0.0, float(problem.horizon)]), U, U.copy(), list(m.control_names))
    return as_protocol(m, spec, problem.horizon)


def _penalised(v: float) -> float:
    return v if np.isfinite(v) else 1e300


def best_constant(problem: Problem, ev: Evaluator, near: Mapping[str, float] | None = None) -> Baseline:
    """The best constant protocol (with the best static values).

    ``near``: the best constant of a neighbouring problem (``{name: value}`` of the searched
    control or static value), e.g. the previous problem of a continuation. In 1-D the grid scan is
    then replaced by :func:`_bracket_near` (a few simulations instead of the scan's 34), and the
    bracket is refined by the same bounded Brent as after the scan, so the result is the minimum
    the full search finds whenever that minimum is the one nearest the neighbour's (the objectives
    agree to the integrator's tolerance: tests/test_sweep.py compares both along a continuation).
    Without a bracket inside the range (the minimum at a bound), or in n-D, the full search runs.
    """
    held = {b.control: b.mean for b in problem.budgets if b.relation == "=="}
    caps = {b.control: b.mean for b in problem.budgets if b.relation == "<="}
    free = [(n, (lo, min(hi, caps.get(n, hi)))) for n, (lo, hi) in problem.controls.items() if n not in held]
    dims = [(n, b, "control") for n, b in free] + [(n, b, "static") for n, b in problem.static.items()]
    values: dict[tuple[float, ...], float] = {}   # search values by point (the reported value reuses one)

    def split(v):
        ctrl, st = dict(held), {}
        for (n, _, kind), val in zip(dims, v):
            (ctrl if kind == "control" else st)[n] = float(val)
        return ctrl, st

    def f(v):
        ctrl, st = split(v)
        key = tuple(float(x) for x in v)
        if key not in values:
            values[key] = _penalised(ev.search_objective(constant_protocol(problem, ctrl), st))
        return values[key]

    def reported(v) -> Baseline:
        ctrl, st = split(v)
        proto = constant_protocol(problem, ctrl)
        key = tuple(float(x) for x in v)
        exact = key in values and ev.search_is_objective(st)   # that search value is this objective
        return Baseline("best_constant", proto, st, values[key] if exact else _penalised(ev.objective(proto, st)),
                        ctrl)

    if not dims:
        return reported([])
    lo = np.array([b[0] for _, b, _ in dims])
    hi = np.array([b[1] for _, b, _ in dims])
    if len(dims) == 1:
        span = hi[0] - lo[0]

        def refine(a, b, m, fm):
            """Bounded Brent on [a, b]; m (value fm) if Brent finds nothing lower."""
            res = optimize.minimize_scalar(lambda z: f([z]), bounds=(a, b), method="bounded",
                                           options={"xatol": 1e-10 * max(1.0, span), "maxiter": 200})
            return [res.x] if res.fun <= fm else [m]

        start = None if near is None or dims[0][0] not in near else float(near[dims[0][0]])
        bracket = None if start is None else _bracket_near(lambda z: f([z]), start, lo[0], hi[0], span)
        if bracket is not None:
            best = refine(*bracket)
        else:
            grid = np.concatenate([np.linspace(lo[0], hi[0], GRID_1D_LINEAR),
                                   lo[0] + np.geomspace(1e-4 * span, span, GRID_1D_GEOMETRIC)])
            grid = np.unique(np.clip(np.round(grid, 12), lo[0], hi[0]))   # merge points equal up to rounding
            vals = np.array([f([g]) for g in grid])
            k = int(np.argmin(vals))
            best = refine(grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)], grid[k], vals[k])
    else:
        pts = list(itertools.product(*[np.linspace(l, h, GRID_ND) for l, h in zip(lo, hi)]))
        vals = [f(pt) for pt in pts]
        start = np.array(pts[int(np.argmin(vals))])
        if ev.has_gradient:
            best = _refine_constant_with_gradient(problem, ev, [d[0] for d in dims], held, lo, hi, start)
        else:
            res = optimize.minimize(f, start, method="Nelder-Mead", bounds=list(zip(lo, hi)),
                                    options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 4000})
            best = list(res.x)
        if f(best) > min(vals):
            best = list(start)
    return reported(best)


def _bracket_near(f, x: float, lo: float, hi: float, span: float) -> tuple[float, float, float, float] | None:
    """(a, b, m, f(m)) with lo <= a < m < b <= hi and f(m) < f(a), f(m) < f(b), so that a minimum of
    f lies in (a, b): from x, steps downhill, each twice as long as the one before but at most
    half-way to the bound, until the lowest of three points is the middle one. None after
    :data:`BRACKET_STEPS` steps (e.g. towards a minimum at a bound: the full search decides)."""
    m = float(min(max(x, lo), hi))
    step = BRACKET_STEP * max(m - lo, 1e-4 * span)
    a, b = m - min(step, 0.5 * (m - lo)), m + min(step, 0.5 * (hi - m))
    if not a < m < b:
        return None
    fa, fm, fb = f(a), f(m), f(b)
    for _ in range(BRACKET_STEPS):
        if fm < fa and fm < fb:
            return a, b, m, fm
        step *= 2.0
        if fa <= fb:          # downhill is to the left
            b, fb, m, fm = m, fm, a, fa
            a = m - min(step, 0.5 * (m - lo))
            fa = f(a)
        else:
            a, fa, m, fm = m, fm, b, fb
            b = m + min(step, 0.5 * (hi - m))
            fb = f(b)
    return (a, b, m, fm) if fm < fa and fm < fb else None


def _refine_constant_with_gradient(problem, ev, names, held, lo, hi, start):
    """L-BFGS-B on log J over constant controls of a map, gradient = per-step gradient summed."""
    model = problem.model
    cols = [model.control_names.index(n) for n in names]
    base = ev.table(constant_protocol(problem, held))
    scale = hi - lo

    def table(z):
        U = base.copy()
        U[:, cols] = lo + scale * z
        return U

    z0 = (start - lo) / scale
    delta = log_scale_delta(ev.value_steps(table(z0)), LOG_TOL)   # (the gradient refinements, maps only)

    def fg(z):
        J, G = ev.value_and_grad_steps(table(z))
        with np.errstate(over="ignore", invalid="ignore"):
            g = G[:, cols].sum(axis=0) * scale
        if not (np.isfinite(J) and np.all(np.isfinite(g))):
            return OVERFLOW, np.zeros_like(z)
        f, dfdJ = log_scale(J, delta)
        return f, g * dfdJ

    with single_thread_blas():
        res = optimize.minimize(fg, z0, jac=True, method="L-BFGS-B",
                                bounds=[(0.0, 1.0)] * len(names),
                                options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 500})
    return list(lo + scale * np.clip(res.x, 0.0, 1.0))


def default_baseline(problem: Problem, ev: Evaluator) -> Baseline:
    """The model's default controls (e.g. no dropout), constants as given."""
    m = problem.model
    ctrl = {n: m.controls[n].default for n in problem.controls}
    for b in problem.budgets:
        if b.relation == "==":
            ctrl[b.control] = b.mean
    st = _given_static(problem)
    proto = constant_protocol(problem, ctrl)
    return Baseline("default", proto, st, ev.objective(proto, st), ctrl)


def _given_static(problem: Problem) -> dict[str, float]:
    slices = problem.model.constants.slices()
    return {n: float(problem.c[slices[n]][0]) for n in problem.static}


def given_baseline(problem: Problem, ev: Evaluator, name: str, spec: Any,
                   static: Mapping[str, float] | None = None) -> Baseline:
    """A user-supplied protocol (any protocol specification, e.g. a schedule) evaluated as a baseline."""
    proto = as_protocol(problem.model, {**problem.fixed, **spec} if isinstance(spec, Mapping) else spec,
                        problem.horizon)
    st = {**_given_static(problem), **dict(static or {})}
    values = spec.params() if isinstance(spec, sch.Schedule) else None
    return Baseline(name, proto, st, ev.objective(proto, st), values)


def lr_control(problem: Problem) -> str | None:
    """The control schedule families act on: 'eta' if optimised without a budget, else the first such."""
    budgeted = {b.control for b in problem.budgets}
    for n in ("eta",) + tuple(problem.controls):
        if n in problem.controls and n not in budgeted:
            return n
    return None


def family_baseline(problem: Problem, ev: Evaluator, family: str | type[sch.Schedule], const: Baseline,
                    fixed: Mapping[str, Any] | None = None) -> Baseline | None:
    """The best member of a schedule family for the learning-rate control (None if there is none).

    ``fixed``: shape parameters held at given values (default :data:`FAMILY_FIXED`).
    """
    cls = sch.family(family) if isinstance(family, str) else family
    name = sch._family_name(cls)
    lr = lr_control(problem)
    if lr is None:
        return None
    fixed = dict(FAMILY_FIXED.get(name, {}) if fixed is None else fixed)
    lo, hi = problem.controls[lr]
    others = {n: v for n, v in (const.values or {}).items() if n != lr}
    static = dict(const.static)
    free = [k for k in cls.PARAMS if k not in fixed]
    bounds = [(max(lo, 1e-12), hi)] + [(cls.PARAMS[k].lo, cls.PARAMS[k].hi) for k in free]
    logs = [False] + [cls.PARAMS[k].scale == "log" for k in free]
    tlo = np.array([math.log(b[0]) if lg else b[0] for b, lg in zip(bounds, logs)])
    thi = np.array([math.log(b[1]) if lg else b[1] for b, lg in zip(bounds, logs)])
    span = np.where(thi > tlo, thi - tlo, 1.0)

    def schedule(z) -> sch.Schedule:
        th = tlo + span * np.clip(z, 0.0, 1.0)
        th = [math.exp(v) if lg else v for v, lg in zip(th, logs)]
        return cls(base_lr=float(th[0]), **fixed, **{k: float(v) for k, v in zip(free, th[1:])})

    def protocol(s: sch.Schedule) -> Protocol:
        return as_protocol(problem.model, {**problem.fixed, **others, lr: _Clipped(s, lo, hi)}, problem.horizon)

    def f(z):
        return _penalised(ev.search_objective(protocol(schedule(z)), static))

    e0 = (const.values or {}).get(lr, 0.5 * (lo + hi))
    z_lr = [float(np.clip((e0 * k - tlo[0]) / span[0], 0, 1)) for k in (1.0, 2.0, 4.0)]
    shape_axes = [np.linspace(0.0, 1.0, FAMILY_GRID + 2)[1:-1] if len(free) <= 2 else [0.5] for _ in free]
    starts = [np.array([a, *rest]) for a in z_lr for rest in itertools.product(*shape_axes)]
    vals = sorted(((f(z), i) for i, z in enumerate(starts)), key=lambda p: p[0])
    z0 = starts[vals[0][1]]
    if ev.has_gradient and not static:
        z = _refine_family_with_gradient(problem, ev, lr, others, schedule, lo, hi, z0)
    else:
        res = optimize.minimize(f, z0, method="Nelder-Mead", bounds=[(0.0, 1.0)] * z0.size,
                                options={"xatol": 1e-9, "fatol": 1e-14, "maxiter": 400 * z0.size})
        z = res.x
    if f(z) > vals[0][0]:
        z = z0
    best = schedule(z)
    proto = protocol(best)
    return Baseline(name, proto, static, ev.objective(proto, static),
                    {**{k: float(v) if isinstance(v, (int, float)) else v for k, v in best.params().items()},
                     **others})


class _Clipped:
    """A schedule clipped to a control's bounds (tabulates like the schedule)."""

    def __init__(self, s: sch.Schedule, lo: float, hi: float):
        self.s, self.lo, self.hi = s, lo, hi

    def tabulate(self, t0, t_final, discrete=False):
        tk, u0, u1 = self.s.tabulate(t0, t_final, discrete)
        return tk, np.clip(u0, self.lo, self.hi), np.clip(u1, self.lo, self.hi)


def _refine_family_with_gradient(problem, ev, lr, others, schedule, lo, hi, z0):
    """L-BFGS-B on log J over the scaled family parameters of a map, with the exact per-step gradient."""
    T = ev.steps
    t = np.arange(T, dtype=float)
    j = problem.model.control_names.index(lr)
    base = ev.table(constant_protocol(problem, others))

    def values(z):
        return schedule(z)(t, T)

    def table(v):
        U = base.copy()
        U[:, j] = np.clip(v, lo, hi)
        return U

    delta = log_scale_delta(ev.value_steps(table(values(z0))), LOG_TOL)

    def fg(z):
        v = values(z)
        J, G = ev.value_and_grad_steps(table(v))
        if not (np.isfinite(J) and np.all(np.isfinite(G))):
            return OVERFLOW, np.zeros_like(z)
        f, dfdJ = log_scale(J, delta)
        inside = (v >= lo) & (v <= hi)
        g = np.empty(z.size)
        for i in range(z.size):   # d schedule / d parameter by central differences (the shape is cheap)
            h = 1e-7
            zp, zm = z.copy(), z.copy()
            zp[i] = min(1.0, z[i] + h)
            zm[i] = max(0.0, z[i] - h)
            dv = (values(zp) - values(zm)) / (zp[i] - zm[i])
            g[i] = float(G[inside, j] @ dv[inside])
        if not np.all(np.isfinite(g)):
            return OVERFLOW, np.zeros_like(z)
        return f, g * dfdJ

    with single_thread_blas():
        res = optimize.minimize(fg, z0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * z0.size,
                                options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 500})
    return np.clip(res.x, 0.0, 1.0)


def single_thread_blas():
    """BLAS limited to one thread: the quasi-Newton updates are tiny, and OpenBLAS threads
    spinning on a busy machine make scipy's L-BFGS-B many times slower per iteration."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1, user_api="blas")


def compute_baselines(problem: Problem, ev: Evaluator, given: Mapping[str, Any] | None = None,
                      families: Sequence[str] = (), near: Mapping[str, float] | None = None) -> dict[str, Baseline]:
    """Best constant, default, the best member of each family, and the user's named protocols.

    A family is a name (``"cosine"``) or a text form with some fields fixed
    (``"wsd:decay=cosine,floor=0.1"``: the other parameters and the base LR are fitted; with
    ``base_lr`` given too, the schedule is evaluated as it is), see :func:`opt_protocols.schedules.parse_spec`.

    A value of ``given`` is a protocol specification, or ``(protocol, {static: value})``.
    ``near``: a neighbouring problem's best constant, to search near (see :func:`best_constant`).
    """
    base = {"best_constant": best_constant(problem, ev, near), "default": default_baseline(problem, ev)}
    for fam in families:
        cls, given = sch.parse_spec(fam) if isinstance(fam, str) else (fam, {})
        if "base_lr" in given:           # a fully given schedule: evaluated as it is
            base[str(fam)] = given_baseline(problem, ev, str(fam), cls(**given))
            continue
        fixed = {**FAMILY_FIXED.get(sch._family_name(cls), {}), **given} if given else None
        b = family_baseline(problem, ev, cls, base["best_constant"], fixed=fixed)
        if b is not None:
            b.name = str(fam) if given else b.name
            base[b.name] = b
    for name, spec in (given or {}).items():
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], Mapping):
            base[name] = given_baseline(problem, ev, name, spec[0], dict(spec[1]))
        else:
            base[name] = given_baseline(problem, ev, name, spec)
    return base


def attach_curves(problem: Problem, ev: Evaluator, baselines: Mapping[str, Baseline], t_out: np.ndarray) -> None:
    """Fill in each baseline's loss curve on the output grid ``t_out`` (computed once, at solve time)."""
    for b in baselines.values():
        b.t = np.asarray(t_out, dtype=float)
        b.loss = ev.curve(b.protocol, b.static, b.t)
