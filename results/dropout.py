"""Adaptive dropout for the soft committee machine (docs/models.md section 1) [MM25].

    python results/dropout.py [--quick] [--out DIR]     # from the repository root; ~15 s (--quick ~3 s)

Reference problem (``opt_protocols.references.DROPOUT``): K = 2 students, M = 1 teacher, T = 1,
v = (1, 1), v* = 1 fixed, Q0 = R0 = 0, eta = 1, label noise sigma = 0.2, alpha_F = 5. Control: the
keep probability r(alpha) in [0, 1], piecewise constant on 50 intervals, plus the static test-time
scale p_test in [0, 1]; objective: eg(alpha_F) (the full eg, not the notebook's half). Baselines: no
dropout (r = p_test = 1), the best constant r with a free p_test (both from the framework), and the
best constant r with p_test = r, found here by a 1-D bounded minimisation on the simulator and
passed to ``op.solve`` as the baseline ``best_constant_ptest_eq_r``.

Finite-N check: ``op.validate`` runs the committee machine's own online SGD with dropout masks
(N = 1000, 32 seeds) with the optimal protocol and the best constant one.

Outputs in DIR: ``dropout.h5`` (rewritten on every run; ``dropout-n50`` is the reference, plus finer
grids) and ``dropout.png`` (also ``docs/figures/dropout.png`` without ``--quick``). ``--quick``: the
reference grid only, SGD at N = 500 with 8 seeds.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
from _common import parse_args, pyplot, record, save_figure, write_runs
from scipy import optimize

import opt_protocols as op
from opt_protocols.control.evaluate import Evaluator
from opt_protocols.control.problem import make_problem
from opt_protocols.protocol import as_protocol
from opt_protocols.references import DROPOUT as REF

#: the files the script writes into DIR (checked by tests/test_results_scripts.py)
OUTPUTS = ("dropout.h5", "dropout.png")


@dataclass(frozen=True)
class Config:
    intervals: tuple[int, ...]      # the first one is the reference grid
    sgd_n: int
    sgd_seeds: int
    sgd_points: int


FULL = Config(intervals=(REF.intervals, 100, 200), sgd_n=1000, sgd_seeds=32, sgd_points=26)
QUICK = Config(intervals=(REF.intervals,), sgd_n=500, sgd_seeds=8, sgd_points=11)
#: published baselines and the parameters printed next to them
CHECKED = {"default": (), "best_constant": ("r", "p_test"), "best_constant_ptest_eq_r": ("r",)}


def best_constant_ptest_eq_r(m) -> tuple[dict, dict]:
    """The best constant keep probability r when the test output is rescaled by p_test = r:
    (protocol, static) for ``op.solve``'s ``baselines``."""
    kw = REF.problem(m)
    ev = Evaluator(make_problem(m, **kw))
    T, eta = kw["t_final"], kw["fixed"]["eta"]

    def f(r):
        return ev.objective(as_protocol(m, {"r": r, "eta": eta}, T), {"p_test": r})

    grid = np.linspace(0.05, 1.0, 39)
    k = int(np.argmin([f(r) for r in grid]))
    res = optimize.minimize_scalar(f, bounds=(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]),
                                   method="bounded", options={"xatol": 1e-10})
    r = float(res.x)
    return {"r": r, "eta": eta}, {"p_test": r}


def shape(sol: op.Solution) -> dict:
    """Where r leaves 1, whether it then decreases monotonically, its final value, and p_test."""
    r, tc = sol.controls["r"], sol.t_controls
    k = int(np.argmax(r < 1.0 - 1e-4))
    tail = r[k:]
    return {"r_one_until": float(tc[k]), "r_final": float(r[-1]), "r_min": float(r.min()),
            "monotone_after": bool(np.all(np.diff(tail) <= 1e-6)), "p_test": float(sol.static["p_test"])}


def constant_r(b) -> float:
    """The keep probability of a constant baseline."""
    return float(b.protocol.values(np.array([0.0]))["r"][0])


def figure(sol: op.Solution, args) -> None:
    plt = pyplot()
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
        a.axhline(constant_r(b), color=color, ls="--", lw=1,
                  label=f"{labels[name]}: r = {constant_r(b):.4f}, p_test = {b.static['p_test']:.4f}")
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
        a.plot(b.t, b.loss, color=color, ls="--", lw=1, label=f"{labels[name]} {b.objective:.7f}")
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
    for key, color, label in (("optimal", "k", "optimal"), ("best_constant", "C2", "best constant")):
        case = v["cases"][key]
        a.plot(v["t"], case["ode"], color=color, lw=1.5, label=f"ODE, {label}")
        a.errorbar(v["t"], case["sgd_mean"], yerr=case["sgd_sem"], fmt="o", ms=3, mfc="none", capsize=2, color=color,
                   label=f"SGD N = {v['summary']['N']}, {v['summary']['seeds']} seeds, {label}")
    a.set_yscale("log")
    a.set_xlabel("alpha")
    a.set_ylabel("eg")
    a.legend(fontsize=7)
    a.set_title("ODE against online SGD with dropout (mean +- s.e.)", fontsize=9)
    fig.suptitle("Adaptive dropout [MM25]: K = 2, M = 1, sigma = 0.2, eta = 1, alpha_F = 5"
                 + (" (quick run)" if args.quick else ""), fontsize=10)
    fig.tight_layout()
    save_figure(fig, "dropout.png", args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    cfg = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    m = REF.model()
    extra = {"best_constant_ptest_eq_r": best_constant_ptest_eq_r(m)}
    sols = {}
    for n in cfg.intervals:
        sol = REF.solve(m, intervals=n, baselines=extra)
        sols[n] = sol
        sh = shape(sol)
        print(f"n = {n:3d}: {sol.status}, eg = {sol.objective:.9f}, verification gap "
              f"{sol.verification['relative_gap']:.1e}; r = 1 until alpha {sh['r_one_until']:.2f}, then "
              f"{'monotonically ' if sh['monotone_after'] else ''}down to {sh['r_final']:.4f}; p_test = "
              f"{sh['p_test']:.5f}; {sol.stats['iterations']} iterations, build + solve "
              f"{sol.stats['build_time'] + sol.stats['solve_time']:.2f} s")
    sol = sols[REF.intervals]
    print(sol.summary())
    if sol.status != "optimal" or not sol.verification.get("ok"):
        print("WARNING: the reference solve is not optimal or not verified", file=sys.stderr)
    for name, params in CHECKED.items():
        b = sol.baselines[name]
        pub = REF[name]
        got = {"r": constant_r(b), **b.static}
        txt = "".join(f", {k} = {got[k]:.5f} (published {REF[f'{name}.{k}'].text})" for k in params)
        print(f"  {name:26s} {b.objective:.7f} (published {pub.text}, diff {b.objective - pub.value:+.1e}"
              f"{'' if pub.matches(b.objective) else ', MOVED'}){txt}")
        print(f"  {'':26s} optimum below it by {b.objective - sol.objective:.7f} "
              f"({100 * (b.objective - sol.objective) / b.objective:.2f}%)")
    t_v = time.perf_counter()
    summ = op.validate(sol, N=cfg.sgd_n, seeds=cfg.sgd_seeds, n_out=cfg.sgd_points)
    o, b = summ["optimal"], summ["best_constant"]
    print(f"SGD N = {cfg.sgd_n} ({cfg.sgd_seeds} seeds, {time.perf_counter() - t_v:.1f} s): optimal "
          f"{o['sgd_final_mean']:.5f} +- {o['sgd_final_sem']:.5f} (ODE {o['ode_final']:.5f}); best constant "
          f"{b['sgd_final_mean']:.5f} +- {b['sgd_final_sem']:.5f} (ODE {b['ode_final']:.5f}); SGD gain "
          f"{summ['sgd_gain']:.5f} +- {summ['sgd_gain_sem']:.5f}")
    write_runs(args.out / "dropout.h5", [record(s, f"dropout-n{n}", args, shape=shape(s)) for n, s in sols.items()])
    figure(sol, args)
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
