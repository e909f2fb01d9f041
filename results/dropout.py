"""Adaptive dropout for the soft committee machine (docs/models.md section 1) [MM25].

    python results/dropout.py               # from the repository root; about half a minute

Reference problem: K = 2 students, M = 1 teacher, T = 1, v = (1, 1), v* = 1 fixed, Q0 = R0 = 0,
eta = 1, label noise sigma = 0.2, alpha_F = 5. Control: the keep probability r(alpha) in [0, 1],
piecewise constant on 50 intervals, plus the static test-time scale p_test in [0, 1]; objective:
eg(alpha_F) (the full eg, not the notebook's half). Baselines: no dropout (r = p_test = 1), the best
constant r with a free p_test (both from the framework), and the best constant r with p_test = r,
found here by a 1-D bounded minimisation on the simulator and attached to the solution as the
baseline ``best_constant_ptest_eq_r``.

Finite-N check: ``op.validate`` runs the committee machine's own online SGD with dropout masks
(N = 1000) with the optimal protocol and the best constant one.

Outputs: ``dropout.h5`` (rewritten on every run; ``dropout-n50`` is the reference, plus finer grids)
and ``dropout.png``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize

import opt_protocols as op
from opt_protocols import baselines as bl
from opt_protocols import storage
from opt_protocols.problem import make_problem
from opt_protocols.protocol import as_protocol
from opt_protocols.results import solution_record

HERE = Path(__file__).resolve().parent
H5 = HERE / "dropout.h5"
PNG = HERE / "dropout.png"

ALPHA_F, ETA, SIGMA = 5.0, 1.0, 0.2
REFERENCE_INTERVALS = 50
CONVERGENCE = (50, 100, 200)
SGD_N, SGD_SEEDS = 1000, 32
#: docs/models.md section 1
PUBLISHED = {"default": 0.0348562, "best_constant": 0.0252980, "best_constant_ptest_eq_r": 0.0253333}
PUBLISHED_R = {"best_constant": (0.74148, 0.76722), "best_constant_ptest_eq_r": (0.76639, 0.76639)}


def model():
    return op.load_model("committee", K=2, M=1, sigma=SIGMA)


def x0(m):
    return m.initial_state(Q=np.zeros((2, 2)), R=np.zeros((2, 1)))


def problem(m):
    return make_problem(m, t_final=ALPHA_F, x0=x0(m), controls={"r": (0.0, 1.0)}, fixed={"eta": ETA},
                        static={"p_test": (0.0, 1.0)})


def best_constant_ptest_eq_r(m) -> bl.Baseline:
    """The best constant keep probability r when the test output is rescaled by p_test = r."""
    pb = problem(m)

    def f(r):
        return bl.evaluate(pb, as_protocol(m, {"r": r, "eta": ETA}, ALPHA_F), {"p_test": r})

    grid = np.linspace(0.05, 1.0, 39)
    k = int(np.argmin([f(r) for r in grid]))
    res = optimize.minimize_scalar(f, bounds=(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]),
                                   method="bounded", options={"xatol": 1e-10})
    r = float(res.x)
    return bl.Baseline("best_constant_ptest_eq_r", as_protocol(m, {"r": r, "eta": ETA}, ALPHA_F), {"p_test": r},
                       float(res.fun), {"r": r})


def solve(m, intervals: int) -> op.Solution:
    return op.solve(m, x0(m), ALPHA_F, controls={"r": (0.0, 1.0)}, fixed={"eta": ETA},
                    static={"p_test": (0.0, 1.0)}, intervals=intervals)


def shape(sol: op.Solution) -> dict:
    """Where r leaves 1, whether it then decreases monotonically, its final value, and p_test."""
    r, tc = sol.controls["r"], sol.t_controls
    k = int(np.argmax(r < 1.0 - 1e-4))
    tail = r[k:]
    return {"r_one_until": float(tc[k]), "r_final": float(r[-1]), "r_min": float(r.min()),
            "monotone_after": bool(np.all(np.diff(tail) <= 1e-6)), "p_test": float(sol.static["p_test"])}


def figure(sol: op.Solution, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = model()
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.2))
    a = ax[0]
    r = sol.controls["r"]
    a.step(sol.t_controls, np.append(r, r[-1]), where="post", color="k", lw=2,
           label=f"optimal, p_test = {sol.static['p_test']:.4f}")
    colors = {"default": "C1", "best_constant": "C2", "best_constant_ptest_eq_r": "C0"}
    labels = {"default": "no dropout (r = p_test = 1)", "best_constant": "best constant r, free p_test",
              "best_constant_ptest_eq_r": "best constant r, p_test = r"}
    for name, color in colors.items():
        b = sol.baselines[name]
        a.axhline(b.values["r"], color=color, ls="--", lw=1,
                  label=f"{labels[name]}: r = {b.values['r']:.4f}, p_test = {b.static['p_test']:.4f}")
    a.set_xlabel("alpha")
    a.set_ylabel("keep probability r")
    a.set_ylim(0, 1.05)
    a.legend(fontsize=7, loc="lower left")
    a.set_title("protocols", fontsize=9)
    a = ax[1]
    t = sol.trajectory.t
    a.plot(t, sol.trajectory.loss, color="k", lw=2, label=f"optimal {sol.objective:.7f}")
    for name, color in colors.items():
        b = sol.baselines[name]
        c = bl.constants_with_static(problem(m), b.static)
        tr = op.simulate(m, x0(m), b.protocol, ALPHA_F, c=c, t_eval=t, rtol=1e-10, atol=1e-12)
        a.plot(tr.t, tr.loss, color=color, ls="--", lw=1, label=f"{labels[name]} {b.objective:.7f}")
    a.set_yscale("log")
    a.set_xlabel("alpha")
    a.set_ylabel("eg (with the run's p_test)")
    a.legend(fontsize=7)
    a.set_title("ODE generalisation error", fontsize=9)
    ins = a.inset_axes([0.45, 0.45, 0.5, 0.28])
    ins.plot(t[t >= 3.5], sol.trajectory.loss[t >= 3.5], color="k", lw=1.5)
    for line in a.get_lines()[1:]:
        xd, yd = line.get_data()
        ins.plot(xd[xd >= 3.5], yd[xd >= 3.5], color=line.get_color(), ls="--", lw=1)
    ins.tick_params(labelsize=6)
    a = ax[2]
    v = sol.validation
    tv = v["coords"]["t"]
    for key, color, label in (("optimal", "k", "optimal"), ("best_constant", "C2", "best constant")):
        a.plot(tv, v["arrays"][f"{key}_ode"][1], color=color, lw=1.5, label=f"ODE, {label}")
        a.errorbar(tv, v["arrays"][f"{key}_sgd_mean"][1], yerr=v["arrays"][f"{key}_sgd_sem"][1], fmt="o", ms=3,
                   mfc="none", capsize=2, color=color,
                   label=f"SGD N = {v['summary']['N']}, {v['summary']['seeds']} seeds, {label}")
    a.set_yscale("log")
    a.set_xlabel("alpha")
    a.set_ylabel("eg")
    a.legend(fontsize=7)
    a.set_title("ODE against online SGD with dropout (mean +- s.e.)", fontsize=9)
    fig.suptitle("Adaptive dropout [MM25]: K = 2, M = 1, sigma = 0.2, eta = 1, alpha_F = 5", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    t_start = time.perf_counter()
    m = model()
    extra = best_constant_ptest_eq_r(m)
    sols = {}
    for n in CONVERGENCE:
        sol = solve(m, n)
        sol.baselines[extra.name] = extra
        sols[n] = sol
        sh = shape(sol)
        print(f"n = {n:3d}: {sol.status}, eg = {sol.objective:.9f}, verification gap "
              f"{sol.verification['relative_gap']:.1e}; r = 1 until alpha {sh['r_one_until']:.2f}, then "
              f"{'monotonically ' if sh['monotone_after'] else ''}down to {sh['r_final']:.4f}; p_test = "
              f"{sh['p_test']:.5f}; {sol.stats['iterations']} iterations, build + solve "
              f"{sol.stats['build_time'] + sol.stats['solve_time']:.2f} s")
    sol = sols[REFERENCE_INTERVALS]
    print(sol.summary())
    if sol.status != "optimal" or not sol.verification.get("ok"):
        print("WARNING: the reference solve is not optimal or not verified", file=sys.stderr)
    for name, ref in PUBLISHED.items():
        b = sol.baselines[name]
        extra_txt = ""
        if name in PUBLISHED_R:
            extra_txt = (f", r = {b.values['r']:.5f}, p_test = {b.static['p_test']:.5f} (docs/models.md "
                         f"{PUBLISHED_R[name][0]}, {PUBLISHED_R[name][1]})")
        print(f"  {name:26s} {b.objective:.7f} (docs/models.md {ref:.7f}, diff {b.objective - ref:+.1e}){extra_txt}")
        print(f"  {'':26s} optimum below it by {b.objective - sol.objective:.7f} "
              f"({100 * (b.objective - sol.objective) / b.objective:.2f}%)")
    t_v = time.perf_counter()
    summ = op.validate(sol, N=SGD_N, seeds=SGD_SEEDS, n_out=26)
    o, b = summ["optimal"], summ["best_constant"]
    print(f"SGD N = {SGD_N} ({SGD_SEEDS} seeds, {time.perf_counter() - t_v:.1f} s): optimal {o['sgd_final_mean']:.5f} "
          f"+- {o['sgd_final_sem']:.5f} (ODE {o['ode_final']:.5f}); best constant {b['sgd_final_mean']:.5f} +- "
          f"{b['sgd_final_sem']:.5f} (ODE {b['ode_final']:.5f}); SGD gain {summ['sgd_gain']:.5f} +- "
          f"{summ['sgd_gain_sem']:.5f}")
    records = []
    for n, s in sols.items():
        rec = solution_record(s, f"dropout-n{n}")
        rec.attrs["shape"] = shape(s)
        records.append(rec)
    storage.write_fresh(H5, records)
    figure(sol, PNG)
    print(f"wrote {H5.relative_to(HERE.parent)} ({len(records)} runs) and {PNG.relative_to(HERE.parent)} "
          f"in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
