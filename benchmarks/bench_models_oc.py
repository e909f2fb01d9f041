"""Optimal control of the curriculum and DAE models at their reference setups: collocation vs multiple shooting.

    python benchmarks/run.py models_oc      # about four minutes (multiple shooting dominates)

Cases (docs/models.md sections 2 and 3; the setups of ``opt_protocols.references``):

* curriculum: alpha_F = 12, eta = 3, u in [0, 1] piecewise constant on 240 intervals, budget mean u = 0.5;
* DAE: tau_F = 4, D in [0.01, 0.99] piecewise constant on 399 intervals, D_F = 0.3 and 0.1 (limit equations).

Framework: ``op.solve`` with its default settings (direct collocation, Legendre degree 3, CasADi +
IPOPT/MUMPS), cold: the
transcription cache is emptied first, so the time includes building the NLP. "build + solve" is the
target quantity (< 10 s each); the full ``op.solve`` wall time (baselines, re-simulation) and the
process CPU time are in the notes (the machine may be shared: CPU time is the steadier number).

Baseline: multiple shooting of the same problem, written here: states at the interval boundaries
and the controls are the NLP variables, one CVODES integrator per interval (``casadi.integrator``
with the model's CasADi right-hand side ``model.casadi.rhs``, abstol = reltol = 1e-10, mapped over the
intervals), continuity constraints, the same budget, the final loss ``model.casadi.loss``, the same
IPOPT tolerance (1e-10) with exact Hessians (CVODES forward-over-adjoint sensitivities), and the same
initial guess (the forward simulation of the framework's best constant protocol). The curriculum is
compared at its full size (240 intervals); the DAE at a reduced size (50 intervals, both methods),
because multiple shooting at 399 intervals would take ~10 minutes.

Agreement: both optima re-simulated by the framework's adaptive integrator (rtol 1e-10).
"""
from __future__ import annotations

import time

import casadi as ca
import numpy as np

import opt_protocols as op
from opt_protocols import references
from opt_protocols.control import collocation
from opt_protocols.control.baselines import best_constant
from opt_protocols.control.evaluate import Evaluator
from opt_protocols.control.problem import make_problem
from opt_protocols.protocol import as_protocol

TARGET_S = 10.0
CVODES_TOL = 1e-10
#: the DAE is compared with multiple shooting on this many intervals (both methods)
DAE_SHOOTING_INTERVALS = 50


def collocation_solve(model, spec: dict, intervals: int) -> dict:
    """A cold ``op.solve`` (empty transcription cache): build, solve, total wall and CPU time."""
    collocation._CACHE.clear()          # measure the build too, whatever ran before in this process
    t0, c0 = time.perf_counter(), time.process_time()
    sol = op.solve(model, intervals=intervals, **spec)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    st = sol.stats
    return {"sol": sol, "objective": sol.objective, "status": sol.status, "iterations": st["iterations"],
            "build": st["build_time"], "solve": st["solve_time"], "wall": wall, "cpu": cpu,
            "n_w": st["n_variables"], "n_g": st["n_constraints"], "cached": st["cached_build"],
            "resim": sol.verification["simulated"]}


def shooting_solve(model, spec: dict, intervals: int) -> dict:
    """Multiple shooting with CVODES per interval (see the module docstring)."""
    problem = make_problem(model, **spec)
    m, n, T = model, intervals, problem.t_final
    opt = list(problem.controls)
    nx, nu = m.n_x, len(opt)
    t0, c0 = time.perf_counter(), time.process_time()
    x = ca.MX.sym("x", nx)
    p = ca.MX.sym("p", nu)
    u = ca.vertcat(*[p[opt.index(name)] if name in opt else problem.fixed[name] for name in m.control_names])
    c = ca.DM(problem.c)
    integ = ca.integrator("F", "cvodes", {"x": x, "p": p, "ode": m.casadi.rhs(x, u, c)}, 0.0, T / n,
                          {"abstol": CVODES_TOL, "reltol": CVODES_TOL})
    X = ca.MX.sym("X", nx, n)           # states at the ends of the intervals
    U = ca.MX.sym("U", nu, n)
    prev = ca.horzcat(ca.DM(problem.x0), X[:, :-1])
    shoot = integ.map(n)(x0=prev, p=U)
    g, lbg, ubg = [ca.vec(X - shoot["xf"])], [np.zeros(nx * n)], [np.zeros(nx * n)]
    for b in problem.budgets:
        g.append(ca.sum2(U[opt.index(b.control), :]) / n)
        lbg.append([b.mean])
        ubg.append([b.mean] if b.relation == "==" else [np.inf])
    w = ca.vertcat(ca.vec(X), ca.vec(U))
    nlp = {"x": w, "f": m.casadi.loss(X[:, -1], c), "g": ca.vertcat(*g)}
    solver = ca.nlpsol("shooting", "ipopt", nlp, {"print_time": False, "ipopt": {
        "print_level": 0, "sb": "yes", "tol": 1e-10, "max_iter": 3000}})
    build = time.perf_counter() - t0
    # the same initial guess as the collocation: forward simulation of the best constant protocol
    ev = Evaluator(problem)
    base = best_constant(problem, ev)
    grid = np.linspace(0.0, T, n + 1)
    tr = op.simulate(m, problem.x0, base.protocol, T, t_eval=grid, rtol=1e-10, atol=1e-12)
    Ug = np.array([[base.values[name]] * n for name in opt])
    w0 = np.concatenate([tr.x[1:].ravel(), Ug.T.ravel()])
    lbx = np.concatenate([np.full(nx * n, -np.inf), np.tile([problem.controls[k][0] for k in opt], n)])
    ubx = np.concatenate([np.full(nx * n, np.inf), np.tile([problem.controls[k][1] for k in opt], n)])
    t1 = time.perf_counter()
    res = solver(x0=w0, lbx=lbx, ubx=ubx, lbg=np.concatenate(lbg), ubg=np.concatenate(ubg))
    solve = time.perf_counter() - t1
    cpu = time.process_time() - c0
    st = solver.stats()
    wopt = np.array(res["x"]).ravel()
    Uopt = np.clip(wopt[nx * n:].reshape(n, nu).T, [[problem.controls[k][0]] for k in opt],
                   [[problem.controls[k][1]] for k in opt])
    proto = {**problem.fixed, **{k: (grid, Uopt[j]) for j, k in enumerate(opt)}}
    resim = ev.objective(as_protocol(m, proto, T))
    return {"objective": float(res["f"]), "status": st["return_status"], "iterations": st["iter_count"],
            "build": build, "solve": solve, "cpu": cpu, "n_w": int(w.numel()), "n_g": int(nlp["g"].numel()),
            "resim": resim, "U": Uopt}


def _fmt_sizes(r: dict) -> str:
    return f"{r['n_w']} var / {r['n_g']} con"


def _target_row(name: str, n: int, col: dict) -> dict:
    """The collocation build + solve time of a reference-size problem against the target."""
    t = col["build"] + col["solve"]
    met = "MET" if t < TARGET_S else "MISSED"
    return dict(case=f"{name}, {n} intervals: collocation build + solve", value=t, unit="s",
                note=(f"target < {TARGET_S:g} s {met}; build {col['build']:.2f} s, solve {col['solve']:.2f} s "
                      f"({col['iterations']} it., {col['status']}), op.solve total {col['wall']:.2f} s "
                      f"wall / {col['cpu']:.2f} s CPU; {_fmt_sizes(col)}; objective {col['objective']:.10g}"))


def _rows(name: str, n_ref: int, col_ref: dict, n_cmp: int, col_cmp: dict, ms: dict) -> list[dict]:
    rows = []
    rows.append(_target_row(name, n_ref, col_ref))
    t_c = col_cmp["build"] + col_cmp["solve"]
    t_m = ms["build"] + ms["solve"]
    gap = abs(ms["resim"] - col_cmp["resim"]) / abs(col_cmp["resim"])
    rows.append(dict(case=f"{name}, {n_cmp} intervals: collocation vs multiple shooting (CVODES)", value=t_c,
                     unit="s", baseline=t_m,
                     note=(f"collocation {col_cmp['iterations']} it. {_fmt_sizes(col_cmp)}, {col_cmp['cpu']:.2f} s CPU "
                           f"(incl. baselines, verification); shooting {ms['iterations']} it. ({ms['status']}), "
                           f"{_fmt_sizes(ms)}, build {ms['build']:.2f} s, solve {ms['solve']:.1f} s, {ms['cpu']:.1f} s "
                           f"CPU; optima {col_cmp['objective']:.10g} / {ms['objective']:.10g}, re-simulated "
                           f"{col_cmp['resim']:.10g} / {ms['resim']:.10g} (rel. diff {gap:.1e})")))
    return rows


def _spec(setup, model) -> dict:
    """The published problem and its baselines, as keywords of ``op.solve`` (the intervals are chosen here)."""
    spec = setup.solve_kwargs(model)
    spec.pop("intervals")
    return spec


def run() -> list[dict]:
    rows = []
    ref = references.CURRICULUM
    cur = ref.model()
    spec = _spec(ref, cur)
    problem = ref.problem(cur)
    c_ref = collocation_solve(cur, spec, ref.intervals)
    m_ref = shooting_solve(cur, problem, ref.intervals)
    rows += _rows("curriculum", ref.intervals, c_ref, ref.intervals, c_ref, m_ref)
    for D_F in sorted(references.DAE_TEST_NOISE, reverse=True):
        ref = references.dae(D_F)
        dae = ref.model()
        spec = _spec(ref, dae)
        c_ref = collocation_solve(dae, spec, ref.intervals)
        if D_F == 0.3:
            n = DAE_SHOOTING_INTERVALS
            rows += _rows(f"DAE D_F={D_F}", ref.intervals, c_ref, n, collocation_solve(dae, spec, n),
                          shooting_solve(dae, ref.problem(dae), n))
        else:
            rows.append(_target_row(f"DAE D_F={D_F}", ref.intervals, c_ref))
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import format_table, normalise
    print(format_table([normalise("models_oc", r) for r in run()]))
