"""Optimal curriculum: a perceptron on easy and hard examples (docs/models.md section 2) [MM25].

    python results/curriculum.py [--quick] [--out DIR]  # from the repository root; ~15 s (--quick ~3 s)

Reference setup (``opt_protocols.references.CURRICULUM``): alpha_F = 12, eta = 3 (fixed), T = 2,
(Q11, Q22, M)(0) = (1, 1, 0), test mixture p1 = 0.5. Control: the easy fraction u(alpha) in [0, 1],
piecewise constant, under the budget (1/alpha_F) int u dalpha = 0.5. Baselines (passed to
``op.solve`` as extra named protocols): curriculum (easy on [0, 6]), anti-curriculum, alternation
on 240 intervals (easy first); the best constant under the budget is u = 0.5 (the framework holds a
budgeted control at its mean). One more baseline is computed here: the best bang-bang
easy-hard-easy protocol (one free switching time, the second fixed by the budget).

Convention: every number printed or stored is the final test error of the exact ODE (collocation,
re-simulated by adaptive integration at rtol 1e-10). The published optimum 0.14668 belongs to the
authors' explicit Euler map (dt = 0.05, other weights); for comparison the script also evaluates
our optimal protocol on an explicit Euler map with dt = 0.05.

Outputs in DIR: ``curriculum.h5`` (rewritten on every run; one run per interval count,
``curriculum-n240`` is the reference) and ``curriculum.png`` (also ``docs/figures/`` without
``--quick``). ``--quick``: 60 and 240 intervals, SGD at N = 500 with 8 seeds.
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
from opt_protocols.references import CURRICULUM as REF

#: the files the script writes into DIR (checked by tests/test_results_scripts.py)
OUTPUTS = ("curriculum.h5", "curriculum.png")

ALPHA_F, ETA, P1 = REF.t_final, REF.fixed["eta"], REF.budgets[0]["mean"]
#: the source's baselines whose published values are checked
CHECKED = ("curriculum", "anti_curriculum", "alternation", "best_constant")


@dataclass(frozen=True)
class Config:
    intervals: tuple[int, ...]      # must contain the reference grid
    sgd_n: int
    sgd_seeds: int


FULL = Config(intervals=(60, 120, REF.intervals, 480, 960), sgd_n=1000, sgd_seeds=16)
QUICK = Config(intervals=(60, REF.intervals), sgd_n=500, sgd_seeds=8)


def easy_hard_easy(t1: float) -> dict:
    """Bang-bang: easy on [0, t1], hard on [t1, t1 + 6], easy after (the budget fixes the second switch)."""
    t2 = t1 + (1.0 - P1) * ALPHA_F
    knots = [0.0, t1, t2, ALPHA_F]
    vals = [1.0, 0.0, 1.0]
    keep = [i for i in range(3) if knots[i + 1] > knots[i] + 1e-12]
    grid = np.array([knots[0]] + [knots[i + 1] for i in keep])
    return {"u": (grid, np.array([vals[i] for i in keep]))}


def best_easy_hard_easy(m) -> tuple[float, float]:
    """The switching time t1 in [0, 6] of the best bang-bang easy-hard-easy protocol, and its eg."""
    pb = make_problem(m, **REF.problem(m))
    ev = Evaluator(pb)

    def f(t1):
        return ev.objective(as_protocol(m, {**pb.fixed, **easy_hard_easy(t1)}, ALPHA_F))

    grid = np.linspace(0.0, P1 * ALPHA_F, 61)
    k = int(np.argmin([f(t) for t in grid]))
    res = optimize.minimize_scalar(f, bounds=(grid[max(k - 1, 0)], grid[min(k + 1, 60)]), method="bounded",
                                   options={"xatol": 1e-7})
    return float(res.x), float(res.fun)


def shape(sol: op.Solution) -> dict:
    """Switching structure of an optimal u: end of the first easy phase, start of the last one, the
    first stretch of pure hard examples (u < 1e-3) after it, and the intermediate values
    (1e-3 <= u < 0.99, a singular arc) between that stretch and the last easy phase.

    The switching times read a partially easy interval as 'easy first' (easy end) or 'easy last'
    (easy restart), i.e. they are the times at which the same amount of easy examples is reached.
    """
    u, tc = sol.controls["u"], sol.t_controls
    dt = tc[1] - tc[0]
    below = u < 0.99
    i1 = int(np.argmax(below))
    i2 = len(u) - 1 - int(np.argmax(below[::-1]))
    j = i1
    while j <= i2 and u[j] >= 1e-3:
        j += 1
    h0 = j
    while j <= i2 and u[j] < 1e-3:
        j += 1
    h1 = j                                   # pure hard on intervals [h0, h1)
    mid = u[h1:i2]                           # between the pure-hard stretch and the last partial interval
    return {"easy_until": float(tc[i1] + u[i1] * dt), "easy_from": float(tc[i2 + 1] - u[i2] * dt),
            "hard_from": float(tc[h0]), "hard_until": float(tc[h1]),
            "intermediate_u_min": float(mid.min()) if mid.size else 0.0,
            "intermediate_u_max": float(mid.max()) if mid.size else 0.0,
            "budget_mean": float(u.mean())}


def euler_map_value(m, u: np.ndarray, dt: float = 0.05, p1: float = P1) -> float:
    """eg after an explicit Euler map x <- x + dt f(x, u_k) over the intervals of ``u`` (width dt)."""
    x = m.initial_state().copy()
    for uk in u:
        x = x + dt * m.rhs(x, {"u": float(uk), "eta": ETA})
    c = m.with_constants(p1=p1)
    return float(m.loss(x, c=c))


def figure(sol: op.Solution, conv: dict, t1: float, args) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(2, 2, figsize=(10.5, 7.6))
    t = sol.trajectory.t
    # (a) protocols
    a = ax[0, 0]
    a.step(sol.t_controls, np.append(sol.controls["u"], sol.controls["u"][-1]), where="post", color="k", lw=2,
           label=f"optimal ({len(sol.controls['u'])} intervals)")
    styles = {"curriculum": "C0", "anti_curriculum": "C1", "best_easy_hard_easy": "C3"}
    for name, color in styles.items():
        b = sol.baselines[name]
        a.plot(t, b.protocol.values(t)["u"], ls="--", color=color, lw=1, label=name.replace("_", " "))
    a.axhline(P1, color="C2", ls=":", lw=1, label="best constant u = 0.5")
    a.set_xlabel("alpha")
    a.set_ylabel("easy fraction u")
    a.set_title("protocols (alternation not drawn: switches every 0.05)", fontsize=9)
    a.legend(fontsize=7, loc="center right")
    # (b) loss against baselines
    a = ax[0, 1]
    a.plot(t, sol.trajectory.loss, color="k", lw=2, label=f"optimal {sol.objective:.6f}")
    colors = {"best_constant": "C2", "curriculum": "C0", "anti_curriculum": "C1", "alternation": "C4",
              "best_easy_hard_easy": "C3"}
    ins_curves = []
    for name, color in colors.items():
        b = sol.baselines[name]
        a.plot(b.t, b.loss, color=color, lw=1, ls="--", label=f"{name.replace('_', ' ')} {b.objective:.6f}")
        if name != "anti_curriculum":
            ins_curves.append((b.t, b.loss, color))
    a.set_xlabel("alpha")
    a.set_ylabel("test error eg")
    a.set_yscale("log")
    a.set_title("exact-ODE test error", fontsize=9)
    a.legend(fontsize=7, loc="upper right")
    ins = a.inset_axes([0.12, 0.08, 0.4, 0.3])
    for tt, ll, color in [(t, sol.trajectory.loss, "k")] + ins_curves:
        sel = tt >= 10.5
        ins.plot(tt[sel], ll[sel], color=color, lw=1.5 if color == "k" else 1, ls="-" if color == "k" else "--")
    ins.tick_params(labelsize=6)
    ins.set_title("alpha >= 10.5", fontsize=6)
    # (c) ODE against finite-N SGD
    a = ax[1, 0]
    v = sol.validation
    for key, color, label in (("optimal", "k", "optimal"), ("best_constant", "C2", "constant u = 0.5")):
        case = v["cases"][key]
        a.plot(v["t"], case["ode"], color=color, lw=1.5, label=f"ODE, {label}")
        a.errorbar(v["t"], case["sgd_mean"], yerr=case["sgd_sem"], fmt="o", ms=3,
                   color=color, mfc="none", capsize=2, label=f"SGD N = {v['summary']['N']}, "
                                                            f"{v['summary']['seeds']} seeds, {label}")
    a.set_xlabel("alpha")
    a.set_ylabel("test error eg")
    a.set_yscale("log")
    a.set_title("ODE against the perceptron's online SGD (mean +- s.e.)", fontsize=9)
    a.legend(fontsize=7)
    # (d) convergence in the number of intervals
    a = ax[1, 1]
    n = np.array(sorted(conv))
    obj = np.array([conv[k]["objective"] for k in n])
    a.loglog(n[:-1], obj[:-1] - obj[-1], "o-k", label=f"eg(n) - eg({n[-1]})")
    a.set_xlabel("control intervals n")
    a.set_ylabel("objective excess")
    a2 = a.twinx()
    a2.plot(n, [conv[k]["shape"]["easy_until"] for k in n], "s--", color="C0", label="easy until")
    a2.plot(n, [conv[k]["shape"]["easy_from"] for k in n], "^--", color="C3", label="easy again from")
    a2.axhline(t1, color="C0", lw=0.5)
    a2.axhline(t1 + 6, color="C3", lw=0.5)
    a2.set_ylabel("switching time (alpha)")
    a2.set_ylim(0, 12)
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = a2.get_legend_handles_labels()
    a.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    a.set_title("convergence (thin lines: best bang-bang switches)", fontsize=9)
    fig.suptitle(f"Curriculum [MM25]: alpha_F = 12, eta = 3, budget mean u = 0.5 -- optimum {sol.objective:.7f} "
                 f"(exact ODE){' (quick run)' if args.quick else ''}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, "curriculum.png", args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    cfg = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    m = REF.model()
    t1, eg_ehe = best_easy_hard_easy(m)
    extra = {"best_easy_hard_easy": easy_hard_easy(t1)}
    print(f"best bang-bang easy-hard-easy: easy on [0, {t1:.4f}] and [{t1 + 6:.4f}, 12], eg = {eg_ehe:.7f}")
    sols, conv = {}, {}
    for n in cfg.intervals:
        sol = REF.solve(m, intervals=n, baselines=extra)
        sols[n] = sol
        conv[n] = {"objective": sol.objective, "shape": shape(sol), "status": sol.status,
                   "time": sol.stats["build_time"] + sol.stats["solve_time"], "iterations": sol.stats["iterations"]}
        s = conv[n]["shape"]
        print(f"n = {n:4d}: {sol.status}, eg = {sol.objective:.10f}, verification gap "
              f"{sol.verification['relative_gap']:.1e}, easy until {s['easy_until']:.4f}, pure hard on "
              f"[{s['hard_from']:.3f}, {s['hard_until']:.3f}], then u in [{s['intermediate_u_min']:.3f}, "
              f"{s['intermediate_u_max']:.3f}], easy from "
              f"{s['easy_from']:.4f}; {sol.stats['iterations']} iterations, build + solve "
              f"{conv[n]['time']:.2f} s")
    sol = sols[REF.intervals]
    print(sol.summary())
    bad = [n for n, s in sols.items() if s.status != "optimal" or not s.verification.get("ok")]
    if bad:
        print(f"WARNING: not optimal or not verified at n = {bad}", file=sys.stderr)
    for name in CHECKED:
        got, pub = sol.baselines[name].objective, REF[name]
        print(f"  {name:20s} {got:.7f}  (published {pub.text}, diff {got - pub.value:+.1e}"
              f"{'' if pub.matches(got) else ', MOVED'})")
    for group, names in (("the required baselines", ["best_constant", "curriculum", "anti_curriculum",
                                                     "alternation"]), ("the best bang-bang", ["best_easy_hard_easy"])):
        best_base = min(sol.baselines[k].objective for k in names)
        print(f"optimum beats {group} by {best_base - sol.objective:.7f} "
              f"({100 * (best_base - sol.objective) / best_base:.3f}%)")
    eul = euler_map_value(m, sol.controls["u"])
    euler = REF["optimal_euler_map"]
    print(f"convention: exact ODE optimum {sol.objective:.7f}; the same protocol on an explicit Euler map "
          f"(dt = 0.05, p1 = 0.5) gives {eul:.7f}; published {euler.text} ({euler.convention})")
    t_v = time.perf_counter()
    summ = op.validate(sol, N=cfg.sgd_n, seeds=cfg.sgd_seeds, n_out=25)
    print(f"finite-N SGD (N = {cfg.sgd_n}, {cfg.sgd_seeds} seeds, {time.perf_counter() - t_v:.1f} s): optimal "
          f"{summ['optimal']['sgd_final_mean']:.5f} +- {summ['optimal']['sgd_final_sem']:.5f} (ODE "
          f"{summ['optimal']['ode_final']:.5f}); constant u = 0.5 {summ['best_constant']['sgd_final_mean']:.5f} +- "
          f"{summ['best_constant']['sgd_final_sem']:.5f} (ODE {summ['best_constant']['ode_final']:.5f})")
    records = []
    for n, s in sols.items():
        extra_attrs = {}
        if n == REF.intervals:
            extra_attrs = {"euler_map_value_dt0.05": eul, "published_euler_map_optimum": euler.value,
                           "best_easy_hard_easy_t1": t1, "convergence": {str(k): v for k, v in conv.items()}}
        records.append(record(s, f"curriculum-n{n}", args, shape=conv[n]["shape"],
                              convention="exact ODE (collocation, re-simulated at rtol 1e-10)", **extra_attrs))
    write_runs(args.out / "curriculum.h5", records)
    figure(sol, conv, t1, args)
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
