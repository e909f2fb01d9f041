"""``solve``: optimal protocols by direct collocation, verified and compared with baselines."""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from . import baselines as bl
from .collocation import bounds_and_parameters, get_transcription, pack_guess, unpack
from .model import Model, load_model
from .problem import Discretisation, Problem, make_problem
from .protocol import Protocol
from .simulate import final_loss, simulate
from .solution import VERIFY_RTOL, Solution

OPTIMAL = {"Solve_Succeeded"}
ACCEPTABLE = {"Solved_To_Acceptable_Level"}


def _protocol_from_columns(problem: Problem, tr, U: np.ndarray, T: float) -> Protocol:
    m = problem.model
    grid = np.linspace(0.0, T, tr.disc.intervals + 1)
    n_seg = tr.disc.intervals
    U0 = np.empty((n_seg, m.n_u))
    U1 = np.empty((n_seg, m.n_u))
    for j, name in enumerate(m.control_names):
        if name in tr.opt_controls:
            row = np.clip(U[tr.opt_controls.index(name)], *problem.controls[name])
            if tr.disc.control_type == "linear":
                U0[:, j], U1[:, j] = row[:-1], row[1:]
            else:
                U0[:, j] = U1[:, j] = row
        else:
            U0[:, j] = U1[:, j] = problem.fixed[name]
    return Protocol(grid, U0, U1, list(m.control_names))


def _guess_from_baseline(problem: Problem, tr, base: bl.Baseline) -> np.ndarray:
    """Decision vector from a forward simulation of a baseline protocol."""
    m = problem.model
    T = problem.t_final
    t_nodes = tr.element_times(T)
    t_coll = tr.collocation_times(T).ravel()
    t_all = np.unique(np.concatenate([t_nodes, t_coll]))
    c = bl.constants_with_static(problem, base.static)
    if m.kind == "map":
        traj = simulate(m, problem.x0, base.protocol, T, c=c, t_eval=t_nodes)
        X = traj.x
        Xn, Xc = X[1:].T, np.zeros((m.n_x, 0))
    else:
        traj = simulate(m, problem.x0, base.protocol, T, c=c, t_eval=t_all, rtol=1e-8, atol=1e-10)
        X = traj.x
        pos = {t: i for i, t in enumerate(t_all)}
        Xn = X[[pos[t] for t in t_nodes[1:]]].T
        Xc = X[[pos[t] for t in t_coll]].T
    if not np.all(np.isfinite(Xn)) or not np.all(np.isfinite(Xc)):
        Xn = np.repeat(problem.x0[:, None], tr.n_el, axis=1)
        Xc = np.repeat(problem.x0[:, None], Xc.shape[1], axis=1)
    grid = np.linspace(0.0, T, tr.disc.intervals + 1)
    pts = grid if tr.disc.control_type == "linear" else 0.5 * (grid[:-1] + grid[1:])
    U = np.array([base.protocol.values(pts)[n] for n in tr.opt_controls])
    for j, n in enumerate(tr.opt_controls):
        lo, hi = problem.controls[n]
        U[j] = np.clip(U[j], lo, hi)
    S = np.array([base.static.get(n, 0.5 * sum(problem.static[n])) for n in tr.static])
    return pack_guess(tr, Xn, Xc, U, S, T if tr.free_time else None)


def solve(model: Model | str, x0: np.ndarray | None = None, t_final: float | None = None, *,
          controls: Mapping[str, Any] | None = None, fixed: Mapping[str, float] | None = None,
          static: Mapping[str, Any] | None = None, budgets=(), smoothness: float = 0.0,
          monotone: Mapping[str, str] | None = None, state_bounds: Mapping[str, Any] | None = None,
          objective: str = "final", target: float | None = None, t_max: float | None = None,
          constants: Mapping[str, Any] | None = None,
          intervals: int = 100, degree: int = 3, scheme: str = "legendre", elements: int = 1,
          control_type: str = "constant", warm_start: Any = "baseline",
          baselines: Mapping[str, Any] | None = None, solver_options: Mapping[str, Any] | None = None,
          verify: bool = True, params: Mapping[str, Any] | None = None,
          progress: Callable[[str], None] | None = None, method: str = "collocation",
          adjoint_options: Mapping[str, Any] | None = None) -> Solution:
    """Optimal protocol for ``model`` by direct collocation (CasADi + IPOPT), or for discrete maps with
    ``method="adjoint"`` by exact adjoint gradients (:mod:`opt_protocols.adjoint`; scales to thousands of
    states and 10^5 steps).

    ``controls`` maps each optimised control to its bounds (default: the model's first control
    on its admissible range, which must then be finite); the other controls keep their model
    defaults or the values in ``fixed``. ``static`` maps scalar model constants to bounds: they
    become decision variables chosen once (e.g. a test-time scale). ``budgets``: integral
    constraints (:class:`~opt_protocols.problem.Budget` or dicts). ``objective``: ``"final"``
    loss (default), ``"integral"`` (time-averaged loss) or ``"time"`` (time to reach ``target``).
    ``warm_start``: ``"baseline"`` (forward simulation of the best constant protocol), a previous
    :class:`Solution` (its protocol, stretched to this horizon and re-simulated with this problem's
    constants: measured 1.2-3x fewer IPOPT iterations on neighbouring committee problems, where
    IPOPT's own primal-dual warm start was erratic, up to 9x more), or ``None`` (constant guess).
    ``baselines``: extra named protocols to
    evaluate next to the best constant (a protocol, or ``(protocol, {static: value})``). ``progress`` is called with the name of each stage
    ("building", "baselines", "solving", "verifying"). Returns a :class:`Solution` whose ``status`` is
    ``"optimal"`` only when IPOPT converged.
    """
    if method == "adjoint":   # discrete maps: exact adjoint gradient (opt_protocols/adjoint.py)
        from .adjoint import solve_adjoint
        return solve_adjoint(model, x0, t_final, controls=controls, fixed=fixed, static=static, budgets=budgets,
                             smoothness=smoothness, monotone=monotone, state_bounds=state_bounds,
                             objective=objective, target=target, t_max=t_max, constants=constants,
                             intervals=intervals, control_type=control_type,
                             warm_start=warm_start if isinstance(warm_start, Solution) else None,
                             baselines=baselines, verify=verify, params=params, progress=progress,
                             **dict(adjoint_options or {}))
    if method != "collocation":
        raise ValueError(f"method {method!r}: expected 'collocation' or 'adjoint'")
    t_start = time.perf_counter()
    if isinstance(model, str):
        model = load_model(model, **dict(params or {}))
    elif params:
        model = load_model(model, **dict(params))
    if t_final is None:
        raise ValueError("t_final: required (the horizon)")
    problem = make_problem(model, t_final=t_final, x0=x0, controls=controls, fixed=fixed, static=static,
                           budgets=budgets, smoothness=smoothness, monotone=monotone, state_bounds=state_bounds,
                           objective=objective, target=target, t_max=t_max, constants=constants)
    disc = Discretisation(intervals=int(intervals), degree=int(degree), scheme=scheme, elements=int(elements),
                          control_type=control_type)
    return solve_problem(problem, disc, warm_start=warm_start, baselines=baselines,
                         solver_options=solver_options, verify=verify, t_start=t_start, progress=progress)


def solve_problem(problem: Problem, disc: Discretisation, *, warm_start: Any = "baseline",
                  baselines: Mapping[str, Any] | None = None, solver_options: Mapping[str, Any] | None = None,
                  verify: bool = True, t_start: float | None = None,
                  progress: Callable[[str], None] | None = None) -> Solution:
    """Solve a validated :class:`Problem` (see :func:`solve`)."""
    t_start = time.perf_counter() if t_start is None else t_start
    report = progress or (lambda stage: None)
    report("building")
    m = problem.model
    cached = _is_cached(problem, disc, solver_options)
    tr = get_transcription(problem, disc, dict(solver_options or {}))
    build_time = 0.0 if cached else tr.build_time
    report("baselines")
    t_b = time.perf_counter()
    base = {"best_constant": bl.best_constant(problem), "default": bl.default_baseline(problem)}
    for name, spec in (baselines or {}).items():
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], Mapping):
            base[name] = bl.given_baseline(problem, name, spec[0], dict(spec[1]))   # (protocol, static values)
        else:
            base[name] = bl.given_baseline(problem, name, spec)
    baseline_time = time.perf_counter() - t_b
    args = bounds_and_parameters(tr, problem)
    if isinstance(warm_start, Solution):
        # the previous optimal protocol, re-simulated under this problem's constants: a consistent guess
        if warm_start.protocol.names != m.control_names:
            raise ValueError(f"warm_start: the solution is for controls {warm_start.protocol.names}, "
                             f"this model has {m.control_names}")
        old = warm_start.protocol
        scaled = Protocol(old.tk * (problem.t_final / old.tk[-1]), old.U0, old.U1, old.names)  # other horizon
        prev = bl.Baseline("previous", scaled, {**base["best_constant"].static,
                                                **{k: v for k, v in warm_start.static.items()
                                                   if k in problem.static}}, float("nan"))
        args["x0"] = _guess_from_baseline(problem, tr, prev)
    elif warm_start == "baseline":
        args["x0"] = _guess_from_baseline(problem, tr, base["best_constant"])
    elif warm_start is None:
        args["x0"] = pack_guess(tr, np.repeat(problem.x0[:, None], tr.n_el, axis=1),
                                np.repeat(problem.x0[:, None], (tr.slices["Xc"].stop - tr.slices["Xc"].start)
                                          // m.n_x, axis=1),
                                np.array([[0.5 * sum(problem.controls[n])] * tr.n_cols for n in tr.opt_controls]),
                                np.array([0.5 * sum(problem.static[n]) for n in tr.static]),
                                problem.t_final if tr.free_time else None)
    else:
        raise ValueError(f"warm_start: expected 'baseline', a Solution or None, got {warm_start!r}")
    args["x0"] = np.clip(args["x0"], args["lbx"], args["ubx"])
    report("solving")
    t_s = time.perf_counter()
    res = tr.solver(**args)
    st = tr.solver.stats()
    attempts = [{"return_status": st.get("return_status"), "iterations": int(st.get("iter_count", -1))}]
    if st.get("return_status") not in OPTIMAL and tr.fallback is not None:
        report("solving (second attempt, monotone barrier)")
        res = tr.fallback(**args)
        st = tr.fallback.stats()
        attempts.append({"return_status": st.get("return_status"), "iterations": int(st.get("iter_count", -1))})
    solve_time = time.perf_counter() - t_s
    w = np.array(res["x"]).ravel()
    parts = unpack(tr, w)
    obj = float(res["f"])
    T = parts["T"] if tr.free_time else problem.t_final
    rs = st.get("return_status", "unknown")
    status = "optimal" if rs in OPTIMAL else ("acceptable" if rs in ACCEPTABLE else "failed")
    if not np.isfinite(obj) or not np.all(np.isfinite(w)):
        status = "failed"
    static_vals = {n: float(v) for n, v in zip(tr.static, parts["S"])}
    proto = _protocol_from_columns(problem, tr, parts["U"], T)
    t_nodes = np.linspace(0.0, T, tr.n_el + 1)
    X = np.vstack([problem.x0[None, :], parts["Xn"].T])
    c_eff = bl.constants_with_static(problem, static_vals)
    loss = np.array([m.loss(np.ascontiguousarray(row), c=c_eff) for row in X])
    verification: dict[str, Any] = {}
    traj = None
    report("verifying")
    if verify and status != "failed":
        if tr.free_time:   # the protocol ends at the optimal time: check the loss reached there
            sim, coll = final_loss(m, problem.x0, proto, T, c=c_eff), float(loss[-1])
        else:
            sim, coll = bl.evaluate(problem, proto, static_vals, t_final=T), obj
        gap = abs(sim - coll) / max(abs(sim), 1e-300)
        verification = {"simulated": sim, "collocation": coll, "relative_gap": gap,
                        "ok": bool(gap <= VERIFY_RTOL), "rtol": VERIFY_RTOL,
                        "quantity": "final loss" if tr.free_time else "objective"}
        traj = simulate(m, problem.x0, proto, T, c=c_eff, n_out=max(201, min(2001, 10 * disc.intervals + 1)),
                        rtol=1e-10, atol=1e-12) if m.kind == "ode" else \
            simulate(m, problem.x0, proto, T, c=c_eff, n_out=min(int(T) + 1, 2001))
    grid = np.linspace(0.0, T, disc.intervals + 1)
    stats = {"iterations": int(st.get("iter_count", -1)), "attempts": attempts, "build_time": build_time, "solve_time": solve_time,
             "baseline_time": baseline_time, "wall_time": time.perf_counter() - t_start,
             "n_variables": tr.n_w, "n_constraints": int(args["lbg"].size), "cached_build": cached,
             "discretisation": {"intervals": disc.intervals, "degree": disc.degree, "scheme": disc.scheme,
                                "elements": disc.elements, "control_type": disc.control_type}}
    return Solution(status=status, return_status=rs, objective=obj, t=t_nodes, x=X, loss=loss, t_controls=grid,
                    controls={n: parts["U"][j].copy() for j, n in enumerate(tr.opt_controls)},
                    control_type=disc.control_type, static=static_vals, protocol=proto,
                    state_names=list(m.state_names), time_name=m.time_name, model=m.name, params=dict(m.params), model_source=m.source,
                    spec=problem.to_dict(), stats=stats, verification=verification, baselines=base,
                    trajectory=traj)


def _is_cached(problem: Problem, disc: Discretisation, solver_options) -> bool:
    from .collocation import _CACHE, _structure_key
    return (_structure_key(problem, disc) + (repr(sorted(dict(solver_options or {}).items())),)) in _CACHE
