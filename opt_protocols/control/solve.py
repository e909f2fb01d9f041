"""``solve``: one pipeline from a problem statement to a verified, stored-ready :class:`Solution`.

Whatever the method (:mod:`.methods`), the steps are the same and exist once, here:

1. load the model and validate the problem (:func:`.problem.make_problem`);
2. choose the method (``"auto"``, a name, or a method object; keyword shorthands set its options);
3. baselines by simulation: best constant, model default, best members of schedule families,
   user-given protocols (:mod:`.baselines`);
4. the initial guess: the best constant protocol, a previous solution (its protocol stretched
   to this horizon and re-simulated under this problem's constants), or none;
5. the method's optimisation (:meth:`.methods.Method.run`);
6. verification: the optimum re-simulated with the adaptive integrator (rtol 1e-10) on a fine
   output grid and compared with the method's own objective; every baseline's curve on that grid;
7. statistics and the :class:`~opt_protocols.solution.Solution`.
"""
from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import interrupt
from ..model import Model, load_model
from ..protocol import Protocol
from ..simulate import final_loss, simulate
from ..solution import VERIFY_RTOL, Baseline, Solution
from .baselines import DEFAULT_FAMILIES, attach_curves, compute_baselines
from .evaluate import Evaluator
from .methods import SHORTHANDS, Context, Method, MethodResult, check_model, resolve
from .problem import Problem, make_problem

#: Output points of the fine re-simulation of an ODE optimum (between these bounds, 10 per interval).
OUTPUT_POINTS = (201, 2001)


def solve(model: Model | str, x0: np.ndarray | None = None, t_final: float | None = None, *,
          controls: Mapping[str, Any] | Sequence[str] | None = None, fixed: Mapping[str, float] | None = None,
          static: Mapping[str, Any] | None = None, budgets=(), smoothness: float = 0.0,
          monotone: Mapping[str, str] | None = None, state_bounds: Mapping[str, Any] | None = None,
          objective: str = "final", target: float | None = None, t_max: float | None = None,
          constants: Mapping[str, Any] | None = None, method: str | Method | type = "auto",
          intervals: int | None = None, degree: int | None = None, scheme: str | None = None,
          elements: int | None = None, control_type: str | None = None,
          solver_options: Mapping[str, Any] | None = None, warm_start: Any = "baseline",
          baselines: Mapping[str, Any] | None = None, families: Sequence[str] = (),
          verify: bool = True, params: Mapping[str, Any] | None = None,
          progress: Callable[[str], None] | None = None) -> Solution:
    """The optimal protocol for ``model`` on [0, ``t_final``], verified and compared with baselines.

    Problem: ``controls`` maps each optimised control to its bounds (or lists names, each on its
    admissible range; default: the model's first control, whose range must then be finite); the
    other controls keep their model defaults or the values in ``fixed``. ``static`` maps scalar
    model constants to bounds: decision variables chosen once (e.g. a test-time scale).
    ``budgets``: integral constraints (:class:`~opt_protocols.control.problem.Budget` or dicts).
    ``monotone``: ``{control: "increasing" | "decreasing"}``; ``smoothness``: weight of a penalty on
    control jumps; ``state_bounds``: ``{state: (lo, hi)}``. ``objective``: ``"final"`` loss
    (default), ``"integral"`` (time-averaged loss) or ``"time"`` (time to reach ``target``, at most
    ``t_max``). ``constants`` override model constants; ``params`` model parameters.

    Method: ``method`` is ``"auto"`` (collocation for ODEs and small maps, the adjoint for large
    maps; the choice is stated in ``Solution.method``), ``"collocation"``, ``"adjoint"``, or an
    object :class:`~opt_protocols.control.methods.Collocation` /
    :class:`~opt_protocols.control.methods.Adjoint`. The shorthands ``intervals``, ``degree``,
    ``scheme``, ``elements``, ``control_type`` and ``solver_options`` set the method's options; one
    it does not use is a ValueError naming it.

    Baselines: the best constant protocol and the model default always; the best member of each
    schedule family in ``families`` (names of :mod:`opt_protocols.schedules`, e.g. ``"cosine"``,
    ``"wsd"``, ``"power_law"``, or ``"default"`` for those three: with the best constant, the common
    schedules a practitioner compares with; each fit costs a few hundred simulations);
    ``baselines``: extra named protocols (a protocol specification, or ``(protocol, {static: value})``).
    ``warm_start``: ``"baseline"`` (start from the best constant), a previous :class:`Solution`
    (its protocol, and its best constant as where the best-constant search starts: a bracket
    near it replaces the grid scan in 1-D), or ``None`` (a constant mid-range guess).

    ``verify``: re-simulate the optimum and flag a relative gap above 1e-6. ``progress`` is called
    with the name of each stage. Returns a :class:`Solution` whose ``status`` is ``"optimal"`` only
    when the optimiser converged; a failed solve is returned with status ``"failed"``.
    """
    t_start = time.perf_counter()
    report = _reporter(progress)
    if isinstance(model, str):
        model = load_model(model, **dict(params or {}))
    elif params:
        model = load_model(model, **dict(params))
    if t_final is None:
        raise ValueError("t_final: required (the horizon)")
    check_model(method, model)
    problem = make_problem(model, t_final=t_final, x0=x0, controls=controls, fixed=fixed, static=static,
                           budgets=budgets, smoothness=smoothness, monotone=monotone, state_bounds=state_bounds,
                           objective=objective, target=target, t_max=t_max, constants=constants)
    shorthands = dict(zip(SHORTHANDS, (intervals, degree, scheme, elements, control_type, solver_options)))
    meth, how = resolve(method, problem, shorthands)
    meth.check(problem)
    if isinstance(families, str):
        families = list(DEFAULT_FAMILIES) if families == "default" else [families]
    families = list(families)
    return solve_problem(problem, meth, how=how, warm_start=warm_start, baselines=baselines,
                         families=families, verify=verify, report=report, t_start=t_start)


def solve_problem(problem: Problem, method: Method, *, how: str = "given", warm_start: Any = "baseline",
                  baselines: Mapping[str, Any] | None = None, families: Sequence[str] = (),
                  verify: bool = True, report: Callable[[str], None] | None = None,
                  t_start: float | None = None) -> Solution:
    """Solve a validated :class:`Problem` with a method object (see :func:`solve`)."""
    t_start = time.perf_counter() if t_start is None else t_start
    report = _reporter(report)
    m = problem.model
    with interrupt.guard():   # one Ctrl-C stops the work (also inside IPOPT) and nothing is stored
        report("baselines")
        t_b = time.perf_counter()
        ev = Evaluator(problem)
        fams = list(dict.fromkeys([*families, *method.required_baselines()]))
        base = compute_baselines(problem, ev, baselines, fams, near=_neighbour_constant(warm_start))
        baseline_time = time.perf_counter() - t_b
        guess, previous = _guess(problem, base, warm_start)
        ctx = Context(baselines=base, guess=guess, evaluator=ev, report=report, previous=previous)
        res = method.run(problem, ctx)
        report("verifying")
        t_v = time.perf_counter()
        verification, traj = _verify(problem, ev, res, verify)
        t_out = traj.t if traj is not None else _output_times(problem, res)
        attach_curves(problem, ev, base, t_out)
        verify_time = time.perf_counter() - t_v
    c_eff = problem.c_with(res.static)
    loss = np.array([m.loss(np.ascontiguousarray(row), c=c_eff) for row in res.x]) \
        if res.status != "failed" else np.full(len(res.x), np.nan)
    stats = {"method": method.name, "iterations": res.iterations, "build_time": res.build_time,
             "baseline_time": baseline_time, "solve_time": res.solve_time, "verify_time": verify_time,
             "wall_time": time.perf_counter() - t_start, "n_variables": res.n_variables,
             "n_constraints": res.n_constraints, "n_simulations": ev.n_evaluations, **res.details}
    objective = res.objective if res.status != "failed" else float("nan")
    return Solution(status=res.status, return_status=res.return_status, objective=objective, t=res.t, x=res.x,
                    loss=loss, t_controls=res.t_controls, controls=res.controls, control_type=res.control_type,
                    static=res.static, protocol=res.protocol, state_names=list(m.state_names),
                    time_name=m.time_name, model=m.name, params=dict(m.params), model_source=m.source,
                    spec=problem.to_dict(), stats=stats, verification=verification,
                    method={"name": method.name, "options": method.settings(), "chosen": how},
                    baselines=base, trajectory=traj, warm=res.warm, provenance=m.provenance(),
                    attrs={"created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})


def _reporter(progress: Callable[..., None] | None) -> Callable[..., None]:
    """``report(stage, **info)`` for the methods: stages go to ``progress(stage)``; the details (IPOPT's
    iteration and objective) only to a ``progress`` that takes keyword arguments."""
    if progress is None:
        return lambda stage, **info: None
    if getattr(progress, "_opt_protocols_reporter", False):
        return progress
    import inspect
    try:
        params = inspect.signature(progress).parameters.values()
        details = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):
        details = False

    def report(stage: str, **info) -> None:
        if not info:
            progress(stage)
        elif details:
            progress(stage, **info)

    report._opt_protocols_reporter = True
    return report


def _guess(problem: Problem, base: dict[str, Baseline], warm_start: Any) -> tuple[Baseline | None, Any]:
    """(initial guess, previous solution) for the method."""
    if isinstance(warm_start, Solution):
        old = warm_start.protocol
        if old.names != problem.model.control_names:
            raise ValueError(f"warm_start: the solution is for controls {old.names}, "
                             f"this model has {problem.model.control_names}")
        # the previous protocol on this horizon, re-simulated by the method under this problem's constants
        tk = old.tk * (problem.t_final / old.tk[-1])
        tk[-1] = problem.t_final   # exactly: the product can fall short by one ulp
        scaled = Protocol(tk, old.U0, old.U1, old.names)
        static = {**base["best_constant"].static,
                  **{k: v for k, v in warm_start.static.items() if k in problem.static}}
        return Baseline("previous", scaled, static, float("nan")), warm_start
    if isinstance(warm_start, str) and warm_start == "baseline":
        return base["best_constant"], None
    if warm_start is None:
        return None, None
    raise ValueError(f"warm_start: expected 'baseline', a Solution or None, got {warm_start!r}")


def _neighbour_constant(warm_start: Any) -> dict[str, float] | None:
    """The best constant (control and static values) of a previous solution used as warm start:
    the baseline search brackets near it (:func:`.baselines.best_constant`)."""
    b = warm_start.baselines.get("best_constant") if isinstance(warm_start, Solution) else None
    if b is None:
        return None
    return {k: float(v) for k, v in {**(b.values or {}), **b.static}.items()
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}


def _output_times(problem: Problem, res: MethodResult) -> np.ndarray:
    """The grid of the fine trajectory and of the baseline curves."""
    T = res.t_final if np.isfinite(res.t_final) else problem.t_final
    if problem.model.kind == "map":
        n = min(int(round(T)) + 1, OUTPUT_POINTS[1])
        return np.unique(np.round(np.linspace(0.0, T, n)))
    n = max(OUTPUT_POINTS[0], min(OUTPUT_POINTS[1], 10 * (len(res.t_controls) - 1) + 1))
    return np.linspace(0.0, T, n)


def _verify(problem: Problem, ev: Evaluator, res: MethodResult, verify: bool):
    """(verification record, fine trajectory) of a method's optimum; nothing for a failed solve."""
    if res.status == "failed":
        return {}, None
    m = problem.model
    c_eff = problem.c_with(res.static)
    T = res.t_final
    traj = simulate(m, problem.x0, res.protocol, T, c=c_eff, t_eval=_output_times(problem, res),
                    rtol=1e-10, atol=1e-12)
    if not verify:
        return {}, traj
    if problem.objective == "time":   # the protocol ends at the optimal time: check the loss reached there
        sim = final_loss(m, problem.x0, res.protocol, T, c=c_eff)
        own = float(m.loss(np.ascontiguousarray(res.x[-1]), c=c_eff))
        quantity = "final loss"
    else:
        # the smoothness penalty is part of every method's objective: smoothness * sum of squared jumps
        pen = problem.smoothness * sum(float(np.sum(np.diff(v) ** 2)) for v in res.controls.values())
        if problem.objective == "final" and traj.t[-1] == T:
            # the fine trajectory is that re-simulation (same integrator and tolerances as
            # Evaluator.objective, its steps also ending at the output times): its last loss
            sim = float(traj.loss[-1]) + pen
        else:
            sim = ev.objective(res.protocol, res.static, t_final=T) + pen
        own = res.objective
        quantity = "objective"
    gap = abs(sim - own) / max(abs(sim), 1e-300)
    return {"quantity": quantity, "method_value": own, "simulated": sim, "relative_gap": gap,
            "rtol": VERIFY_RTOL, "ok": bool(gap <= VERIFY_RTOL)}, traj
