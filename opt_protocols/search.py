"""Shape search with the base learning rate factored out [NS26] (docs/models.md, section 7).

A member of a schedule family (:mod:`opt_protocols.schedules`) is ``base_lr * shape``. Comparing
shapes at one common base LR mostly compares base LRs, so :func:`shape_search` scores every
candidate shape at its *own* best base LR over a grid of base LRs:

1. random stage: the family's default member and ``n_random`` shapes drawn uniformly (log-uniformly
   where ``Param.scale == "log"``) from the parameter boxes, each evaluated at every base LR of
   the grid;
2. refinement: coordinate descent from the ``n_refine`` best shapes, in the unit coordinates of
   the shape parameters (steps halved from 1/8 down to ``min_step``). A neighbour is scored on
   the grid points around its parent's best base LR, walking outward while the loss falls.
   With a deterministic loss the best grid point is then refined by bounded Brent between its grid
   neighbours (in log base LR), so a shape's score is its best loss over the grid's range.

Losses: deterministic for ODE models and maps (the simulator, as in
:class:`~opt_protocols.control.evaluate.Evaluator`; maps step through the per-step table), or
stochastic with ``sgd={"N": ..., "seeds": ...}``: the final loss of every seed of the model's
finite-N learning process (:func:`opt_protocols.simulate_sgd`), scored by the median over seeds.
All candidates use the same seeds (common random numbers: the comparison between shapes is less
noisy than each score), and the best candidate's median carries a distribution-free confidence
interval from order statistics (:func:`median_interval`). Taking the best of many noisy scores
biases the winner's score low; re-run the winner with fresh seeds to report an unbiased value.

The schedule is clipped to the control's bounds (e.g. the DAE noise D in [0.01, 0.99]); static
decision variables of the problem (e.g. the committee's test-time scale p_test) are searched
with the shape, as extra unit coordinates. If the control carries an ``==`` budget (the
curriculum's share of easy examples), the budget fixes the base: base such that the time average
of the clipped schedule equals the budget's mean; a shape that would need a base above the
control's upper bound is infeasible; the winner keeps the search's tabulation of an ODE schedule
(``SearchResult.protocol``), on which the budget holds exactly. A ``<=`` budget makes the grid
points above it infeasible.

:func:`family_optimum` is the direct optimisation of a family's base LR and shape parameters
(:func:`opt_protocols.control.baselines.family_baseline`: gradient-based on maps, Nelder-Mead on
ODEs), for comparison with the search.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from . import schedules as sch
from .control.evaluate import Evaluator
from .control.problem import Problem, make_problem
from .model import Model, load_model
from .protocol import Protocol, as_protocol
from .solution import Baseline

#: Points of the default base-LR grid, geometric over two decades below the control's upper bound.
GRID_POINTS = 25
GRID_DECADES = 2.0
#: First coordinate-descent step (unit coordinates).
FIRST_STEP = 0.125
#: Segments of the tabulation of a schedule for an ODE model during a search (the winner is
#: re-evaluated with the default :data:`opt_protocols.schedules.SAMPLES`).
SEARCH_SAMPLES = 400
#: Confidence of the interval of a median over seeds.
CONFIDENCE = 0.95


@dataclass
class Candidate:
    """One scored shape: the schedule at its best base LR, its score and where it came from.

    ``grid_losses``: the score at each base LR of the grid (NaN where it was not evaluated; inf
    where the run diverged or the point is infeasible); ``seed_losses``: the final loss of every
    seed at the best base LR (stochastic search); ``interval``: the confidence interval of the
    median over seeds.
    """

    schedule: sch.Schedule
    loss: float
    static: dict[str, float]
    stage: str
    grid_losses: np.ndarray
    seed_losses: np.ndarray | None = None
    interval: tuple[float, float] | None = None


@dataclass
class SearchResult:
    """The outcome of :func:`shape_search`. ``candidates`` are sorted by score (best first)."""

    family: str
    control: str
    best: Candidate
    candidates: list[Candidate]
    base_lrs: np.ndarray
    stochastic: bool
    n_evaluations: int
    wall_time: float
    coverage: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    protocol: Protocol | None = None      # the best member as a protocol of the problem

    def as_baseline(self, name: str | None = None) -> Baseline:
        """The best member as a :class:`~opt_protocols.solution.Baseline` (e.g. to add to a solution)."""
        b = self.best
        values = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in b.schedule.params().items()}
        values["search"] = {"n_evaluations": self.n_evaluations, "shapes": len(self.candidates)}
        if b.interval is not None:
            values["interval"] = list(b.interval)
        return Baseline(name or self.family, self.protocol, dict(b.static), float(b.loss), values)

    def summary(self) -> str:
        b = self.best
        shape = ", ".join(f"{k} = {v:.4g}" for k, v in b.schedule.shape_params().items())
        extra = f" [{b.interval[0]:.6g}, {b.interval[1]:.6g}] ({100 * self.coverage:.0f}%)" if b.interval else ""
        st = "".join(f", {k} = {v:.4g}" for k, v in b.static.items())
        return (f"{self.family}: loss {b.loss:.7g}{extra} at base_lr = {b.schedule.base_lr:.5g}"
                f"{', ' + shape if shape else ''}{st} ({len(self.candidates)} shapes, {self.n_evaluations} "
                f"evaluations, {self.wall_time:.1f} s)")


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(median, lo, hi, coverage): the sample median and the order-statistic interval
    [x_(j), x_(n+1-j)] with the largest j whose coverage 1 - 2 P(Bin(n, 1/2) <= j - 1) of the true
    median is at least ``confidence``; with too few values for that, the full range and its
    (lower) coverage. Distribution-free."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        raise ValueError("median_interval: no values")
    j = 1
    while j + 1 <= n // 2 and 1.0 - 2.0 * stats.binom.cdf(j, n, 0.5) >= confidence:
        j += 1
    coverage = 1.0 - 2.0 * stats.binom.cdf(j - 1, n, 0.5)
    return float(np.median(x)), float(x[j - 1]), float(x[n - j]), float(coverage)


class _Objective:
    """The loss of a family member for one problem: the schedule clipped to the control's bounds,
    the other controls at their fixed values; per seed (finite-N SGD) or deterministic."""

    def __init__(self, problem: Problem, control: str, sgd: Mapping[str, Any] | None, samples: int):
        self.problem = problem
        self.model = problem.model
        self.control = control
        self.lo, self.hi = problem.controls[control]
        self.T = problem.t_final
        self.samples = samples
        self.ev = Evaluator(problem)
        self.j = self.model.control_names.index(control)
        self.sgd = dict(sgd) if sgd else None
        self.n_evaluations = 0
        if problem.objective == "time":
            raise ValueError("objective 'time': a shape search needs a fixed horizon (objective 'final' or 'integral')")
        if self.sgd is not None:
            if not self.model.has_sgd:
                raise ValueError(f"sgd: model {self.model.name!r} has no finite-N simulator (no sgd() in its module)")
            if problem.static or problem.constants:
                raise ValueError("sgd: static variables and constant overrides are not passed to the finite-N "
                                 "simulator; set them as model parameters")
            unknown = set(self.sgd) - {"N", "seeds"}
            if unknown:
                raise ValueError(f"sgd: unknown option {sorted(unknown)[0]!r}; expected 'N' and 'seeds'")
        self.fast_map = self.sgd is None and self.model.kind == "map" and not problem.static \
            and self.ev.has_gradient
        if self.fast_map:
            self.base_table = self.ev.table(as_protocol(self.model, dict(problem.fixed), self.T))

    def tabulate(self, s: sch.Schedule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The shape (base 1) tabulated for this model: per step (maps) or piecewise linear (ODEs)."""
        return s.replace(base_lr=1.0).tabulate(0.0, self.T, self.model.kind == "map", samples=self.samples)

    def mean(self, table, base: float) -> float:
        """Time average of the clipped schedule ``base * shape`` (per step on maps)."""
        tk, u0, u1 = table
        a, b = np.clip(base * u0, self.lo, self.hi), np.clip(base * u1, self.lo, self.hi)
        return float(np.sum(0.5 * (a + b) * np.diff(tk)) / (tk[-1] - tk[0]))

    def protocol(self, table, base: float) -> Protocol:
        tk, u0, u1 = table
        return clipped_protocol(self.problem, self.control, tk, base * u0, base * u1)

    def __call__(self, table, base: float, static: Mapping[str, float]) -> np.ndarray:
        """Loss (deterministic: one value; SGD: one per seed); inf where it diverged."""
        self.n_evaluations += 1
        if self.fast_map:
            U = self.base_table.copy()
            U[:, self.j] = np.clip(base * table[1], self.lo, self.hi)
            out = np.array([self.ev.value_steps(U)])
        else:
            proto = self.protocol(table, base)
            out = self._sgd(proto) if self.sgd is not None else np.array([self.ev.objective(proto, static)])
        return np.where(np.isfinite(out), out, np.inf)

    def _sgd(self, proto: Protocol) -> np.ndarray:
        from .sgd import simulate_sgd
        res = simulate_sgd(self.model, proto, self.T, x0=self.problem.x0, n_out=2, **self.sgd)
        return res.loss[:, -1]


class _Search:
    """State of one shape search (see :func:`shape_search`)."""

    def __init__(self, obj: _Objective, cls: type[sch.Schedule], fixed: Mapping[str, Any], base_lrs: np.ndarray,
                 budget, budget_le: float | None, polish: bool):
        self.obj = obj
        self.cls = cls
        self.fixed = dict(fixed)
        self.free = [k for k in cls.PARAMS if k not in self.fixed]
        self.static = list(obj.problem.static)
        self.grid = base_lrs
        self.log_grid = np.log(base_lrs) if base_lrs.size else base_lrs
        self.budget = budget
        self.budget_le = budget_le
        self.polish = polish and obj.sgd is None
        self.cache: dict[tuple, Candidate] = {}

    # ---- coordinates ----------------------------------------------------------------------------
    def unit_default(self) -> np.ndarray:
        """Unit coordinates of the family's default member (static variables at mid-range)."""
        d = self.cls()
        z = [self.cls.PARAMS[k].to_unit(float(self.fixed.get(k, getattr(d, k)))) for k in self.free]
        return np.array(z + [0.5] * len(self.static))

    def decode(self, z: np.ndarray) -> tuple[sch.Schedule, dict[str, float]]:
        n = len(self.free)
        shape = {k: self.cls.PARAMS[k].from_unit(v) for k, v in zip(self.free, z[:n])}
        static = {k: float(lo + (hi - lo) * min(max(v, 0.0), 1.0))
                  for (k, (lo, hi)), v in zip(self.obj.problem.static.items(), z[n:])}
        return self.cls(**self.fixed, **shape), static

    # ---- scoring --------------------------------------------------------------------------------
    def _reduce(self, losses: np.ndarray) -> float:
        return float(np.median(losses)) if losses.size > 1 else float(losses[0])

    def score(self, z: np.ndarray, stage: str, around: int | None = None) -> Candidate:
        """The candidate with unit coordinates ``z`` at its best base LR (cached)."""
        key = tuple(np.round(z, 12))
        if key in self.cache:
            return self.cache[key]
        shape, static = self.decode(z)
        table = self.obj.tabulate(shape)
        if self.budget is not None:
            cand = self._score_budget(shape, static, table, stage)
        else:
            cand = self._score_grid(shape, static, table, stage, around)
        self.cache[key] = cand
        return cand

    def budget_base(self, table) -> float | None:
        """The base whose clipped schedule meets the == budget (None: not reachable below the upper bound)."""
        mean = self.budget.mean
        lo, hi = self.obj.lo, self.obj.hi
        if self.obj.mean(table, hi) < mean * (1 - 1e-12):
            return None
        if lo <= 0.0:
            return min(mean / self.obj.mean(table, 1.0), hi)
        return optimize.brentq(lambda b: self.obj.mean(table, b) - mean, 0.0, hi, xtol=1e-14)

    def _score_budget(self, shape, static, table, stage) -> Candidate:
        base = self.budget_base(table)
        if base is None:
            return Candidate(shape.replace(base_lr=self.obj.hi), math.inf, static, stage, np.array([]))
        losses = self.obj(table, base, static)
        return self._candidate(shape, base, losses, static, stage, np.array([]))

    def _score_grid(self, shape, static, table, stage, around) -> Candidate:
        g = self.grid
        n = g.size
        vals = np.full(n, np.nan)
        per_seed: dict[int, np.ndarray] = {}
        cap = self.budget_le

        def at(i):
            if np.isnan(vals[i]):
                if cap is not None and self.obj.mean(table, g[i]) > cap * (1 + 1e-12):
                    vals[i] = math.inf
                else:
                    per_seed[i] = self.obj(table, g[i], static)
                    vals[i] = self._reduce(per_seed[i])
            return vals[i]

        if around is None:
            for i in range(n):
                at(i)
        else:   # walk outward from the parent's best base LR while the loss falls
            k = int(np.clip(around, 0, n - 1))
            for i in (k - 1, k, k + 1):
                if 0 <= i < n:
                    at(i)
            while True:
                k = int(np.nanargmin(vals))
                if k > 0 and np.isnan(vals[k - 1]):
                    at(k - 1)
                elif k < n - 1 and np.isnan(vals[k + 1]):
                    at(k + 1)
                else:
                    break
        if not np.any(np.isfinite(vals)):
            return Candidate(shape.replace(base_lr=float(g[0])), math.inf, static, stage, vals)
        k = int(np.nanargmin(vals))
        base, best, seeds = float(g[k]), float(vals[k]), per_seed.get(k)
        a, b = max(k - 1, 0), min(k + 1, n - 1)
        if self.polish and b > a and np.all(np.isfinite(vals[[a, b]])):
            res = optimize.minimize_scalar(lambda x: float(self.obj(table, math.exp(x), static)[0]),
                                           bounds=(self.log_grid[a], self.log_grid[b]), method="bounded",
                                           options={"xatol": 1e-6})
            if res.fun < best:
                base, best, seeds = float(math.exp(res.x)), float(res.fun), np.array([res.fun])
        return self._candidate(shape, base, seeds, static, stage, vals, best)

    def _candidate(self, shape, base, seeds, static, stage, vals, loss=None) -> Candidate:
        loss = self._reduce(seeds) if loss is None else loss
        interval = None
        if self.obj.sgd is not None and seeds is not None and np.all(np.isfinite(seeds)):
            _, lo, hi, _ = median_interval(seeds)
            interval = (lo, hi)
        return Candidate(shape.replace(base_lr=float(base)), float(loss), static, stage, vals,
                         None if self.obj.sgd is None else seeds, interval)

    def best_index(self, c: Candidate) -> int | None:
        if not self.grid.size:
            return None
        return int(np.argmin(np.abs(self.log_grid - math.log(max(c.schedule.base_lr, 1e-300)))))

    # ---- coordinate descent ------------------------------------------------------------------------
    def refine(self, z: np.ndarray, start: Candidate, min_step: float,
               max_evaluations: int) -> tuple[np.ndarray, Candidate]:
        cur, z = start, z.copy()
        h = FIRST_STEP
        while h >= min_step and z.size and self.obj.n_evaluations < max_evaluations:
            improved = False
            for i in range(z.size):
                for sign in (1.0, -1.0):
                    zi = min(max(z[i] + sign * h, 0.0), 1.0)
                    if zi == z[i]:
                        continue
                    trial = z.copy()
                    trial[i] = zi
                    cand = self.score(trial, "refine", self.best_index(cur))
                    if cand.loss < cur.loss * (1 - 1e-14):
                        cur, z, improved = cand, trial, True
                        break
            if not improved:
                h *= 0.5
        return z, cur


def clipped_protocol(problem: Problem, control: str, tk: np.ndarray, u0: np.ndarray, u1: np.ndarray) -> Protocol:
    """The protocol with the table (tk, u0, u1) clipped to the bounds of ``control``, the other
    controls at their fixed values (built directly: every value is within its bounds)."""
    m = problem.model
    lo, hi = problem.controls[control]
    row = np.array([problem.fixed.get(n, 0.0) for n in m.control_names])
    U0 = np.repeat(row[None, :], tk.size - 1, axis=0)
    U1 = U0.copy()
    j = m.control_names.index(control)
    U0[:, j] = np.clip(u0, lo, hi)
    U1[:, j] = np.clip(u1, lo, hi)
    return Protocol(np.asarray(tk, dtype=float), U0, U1, list(m.control_names))


def member_protocol(problem: Problem, control: str, schedule: sch.Schedule, samples: int | None = None) -> Protocol:
    """A family member as the protocol of ``problem`` (clipped to the bounds of ``control``; an ODE's
    tabulation on ``samples`` segments, default :data:`opt_protocols.schedules.SAMPLES`)."""
    tk, u0, u1 = schedule.tabulate(0.0, problem.t_final, problem.model.kind == "map", samples=samples)
    return clipped_protocol(problem, control, tk, u0, u1)


def _problem(model: Model | str | Problem, t_final: float | None, kw: Mapping[str, Any]) -> Problem:
    if isinstance(model, Problem):
        if t_final is not None or kw:
            raise ValueError("a Problem already holds the horizon and the problem settings: pass them to "
                             "make_problem instead")
        return model
    if t_final is None:
        raise ValueError("t_final: required (the horizon)")
    model = load_model(model) if isinstance(model, str) else model
    return make_problem(model, t_final=t_final, **kw)


def _control(problem: Problem, control: str | None) -> str:
    if control is None:
        control = "eta" if "eta" in problem.controls else next(iter(problem.controls))
    if control not in problem.controls:
        raise ValueError(f"control {control!r}: the family acts on an optimised control; optimised: "
                         f"{', '.join(problem.controls)}")
    return control


def default_base_lrs(problem: Problem, control: str, points: int = GRID_POINTS) -> np.ndarray:
    """A geometric grid over :data:`GRID_DECADES` decades below the control's upper bound (above its
    lower bound when that is positive)."""
    lo, hi = problem.controls[control]
    return np.geomspace(max(lo, hi * 10.0 ** -GRID_DECADES), hi, points)


def shape_search(model: Model | str | Problem, family: str | type[sch.Schedule], t_final: float | None = None, *,
                 control: str | None = None, base_lrs: Sequence[float] | None = None, n_random: int = 32,
                 n_refine: int = 3, fixed_params: Mapping[str, Any] | None = None, seed: int = 0,
                 sgd: Mapping[str, Any] | None = None, polish: bool = True, min_step: float = 1.0 / 512,
                 max_evaluations: int = 20_000, samples: int = SEARCH_SAMPLES,
                 progress: Callable[[str], None] | None = None, **problem: Any) -> SearchResult:
    """The best shape of a schedule family, each shape scored at its own best base LR.

    ``model``: a model (or its name) with ``t_final`` and the problem keywords of
    :func:`opt_protocols.control.problem.make_problem` (``controls``, ``fixed``, ``static``,
    ``budgets``, ``x0``, ``constants``, ...), or a ready :class:`Problem`. ``control``: the control the
    family acts on (default ``"eta"`` if optimised, else the first optimised control). ``base_lrs``:
    the base-LR grid (default :func:`default_base_lrs`); unused with an ``==`` budget on the control.
    ``fixed_params``: family fields held fixed (shape parameters, or e.g. ``decay``, ``warmup``).
    ``sgd``: ``{"N": ..., "seeds": ...}`` for a stochastic search on the finite-N simulator.
    ``polish``: Brent refinement of the base LR (deterministic losses). ``samples``: tabulation of a
    schedule for an ODE during the search; the winner is re-evaluated at the default tabulation.
    See the module docstring for the stages.
    """
    t0 = time.perf_counter()
    report = progress or (lambda s: None)
    pb = _problem(model, t_final, problem)
    ctrl = _control(pb, control)
    cls = sch.family(family) if isinstance(family, str) else family
    fixed = dict(fixed_params or {})
    unknown = [k for k in fixed if k not in {f for f in cls().params()}]
    if unknown:
        raise ValueError(f"fixed_params: {cls.__name__} has no parameter {unknown[0]!r}; "
                         f"parameters: {', '.join(cls().params())}")
    if "base_lr" in fixed:
        raise ValueError("fixed_params: base_lr is searched on the grid (give base_lrs=[value] to fix it)")
    for name, v in (("n_random", n_random), ("n_refine", n_refine)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} = {v!r}: expected an integer >= 0")
    if not 0 < min_step <= FIRST_STEP:
        raise ValueError(f"min_step = {min_step!r}: expected a number in (0, {FIRST_STEP}]")
    budgets = {b.relation: b for b in pb.budgets if b.control == ctrl}
    eq = budgets.get("==")
    lo, hi = pb.controls[ctrl]
    if eq is None:
        grid = np.asarray(default_base_lrs(pb, ctrl) if base_lrs is None else base_lrs, dtype=float).ravel()
        if grid.size == 0 or np.any(np.diff(grid) <= 0) or grid[0] <= 0 or grid[0] < lo or grid[-1] > hi:
            raise ValueError(f"base_lrs: expected increasing positive values within the bounds of {ctrl!r} "
                             f"[{lo}, {hi}]")
    else:
        if base_lrs is not None:
            raise ValueError(f"base_lrs: the budget on {ctrl!r} fixes the base; give no grid")
        grid = np.array([])
    obj = _Objective(pb, ctrl, sgd, samples)
    search = _Search(obj, cls, fixed, grid, eq, budgets["<="].mean if "<=" in budgets else None, polish)
    rng = np.random.default_rng(seed)
    n_dim = len(search.free) + len(search.static)
    report("random")
    points = [search.unit_default()] + [rng.uniform(size=n_dim) for _ in range(n_random)]
    scored = [(search.score(z, "random"), z) for z in points]
    scored.sort(key=lambda p: p[0].loss)
    report("refine")
    for cand, z in scored[: max(n_refine, 0)]:
        if not np.isfinite(cand.loss):
            continue
        search.refine(z, cand, min_step, max_evaluations)
    cands = sorted(search.cache.values(), key=lambda c: c.loss)
    best = cands[0]
    if not np.isfinite(best.loss):
        raise ValueError(f"shape_search: no member of {cls.__name__} gave a finite loss (all diverged or infeasible)")
    # an ODE's winner is re-evaluated at the default tabulation (the search used `samples` segments),
    # except under a budget: the search's tabulation meets the budget exactly and is kept
    final_samples = samples if eq is not None and obj.model.kind == "ode" else None
    if obj.model.kind == "ode" and obj.sgd is None and eq is None:
        final = float(obj.ev.objective(member_protocol(pb, ctrl, best.schedule), best.static))
        best = Candidate(best.schedule, final, best.static, best.stage, best.grid_losses)
        cands[0] = best
    edges = [g for g in (grid[:1].tolist() + grid[-1:].tolist()) if g not in (lo, hi)]
    if best.schedule.base_lr in edges:
        warnings.warn(f"shape_search: the best {cls.__name__} sits at the edge of the base-LR grid "
                      f"(base_lr = {best.schedule.base_lr:g}); widen base_lrs", stacklevel=2)
    coverage = None
    if obj.sgd is not None and best.seed_losses is not None:
        coverage = median_interval(best.seed_losses)[3]
    settings = {"n_random": n_random, "n_refine": n_refine, "seed": seed, "min_step": min_step,
                "polish": search.polish, "fixed_params": fixed, "sgd": dict(sgd) if sgd else None,
                "samples": samples, "budget": None if eq is None else eq.mean}
    return SearchResult(family=sch._family_name(cls), control=ctrl, best=best, candidates=cands, base_lrs=grid,
                        stochastic=obj.sgd is not None, n_evaluations=obj.n_evaluations,
                        wall_time=time.perf_counter() - t0, coverage=coverage, settings=settings,
                        protocol=member_protocol(pb, ctrl, best.schedule, final_samples))


def family_optimum(model: Model | str | Problem, family: str | type[sch.Schedule], t_final: float | None = None, *,
                   fixed_params: Mapping[str, Any] | None = None, **problem: Any):
    """The best member of a family by direct optimisation of base LR and shape parameters
    (:func:`opt_protocols.control.baselines.family_baseline`, from the best constant protocol;
    static variables held at their best-constant values). Returns a
    :class:`~opt_protocols.solution.Baseline`. ``fixed_params``: family fields held fixed (default:
    the textbook members of :data:`opt_protocols.control.baselines.FAMILY_FIXED`)."""
    from .control.baselines import best_constant, family_baseline
    pb = _problem(model, t_final, problem)
    ev = Evaluator(pb)
    out = family_baseline(pb, ev, family, best_constant(pb, ev), fixed=fixed_params)
    if out is None:
        raise ValueError("family_optimum: every optimised control carries a budget; use shape_search, which "
                         "fixes the base by the budget")
    return out
