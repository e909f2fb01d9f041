"""Optimal learning-rate schedule of the soft committee machine against its width (docs/models.md section 1).

    python results/committee_width.py            # from the repository root; about two minutes
    python results/committee_width.py --quick    # a few seconds: K = M = 2, 3, 20 intervals, small SGD check
    python results/committee_width.py --out DIR  # write committee_width.h5 / .png into DIR (default: results/)

Setup (the benchmark's, benchmarks/bench_optimal_control.py): K = M students and teachers, T = I,
v = v* = 1, label noise sigma = 0.3, the default initial state Q0 = 0.5 I, R0 = 0.01 I, horizon
alpha_F = 20, learning rate eta(alpha) in [0, 3], piecewise constant on 50 intervals, objective
the final generalisation error. Widths K = M = 2, 4, 6, 8 [SS95, Goldt19]. The students start
symmetric, so every solve lumps the K(K+1)/2 + K^2 overlaps into 4 NLP states
(``op.Collocation(symmetry=True)``, the default); the optimum is re-simulated with all states.

Shape measures per width: the schedule's value at the start, its maximum and where it sits, the
value at the end, the alpha after which it stays below the best constant learning rate, K times its
peak (the peak scales roughly as 1/K), and the gain over the best constant.

Finite-N check at the largest width: ``op.validate`` runs the committee's own online SGD (N = 2000,
16 seeds; quick: N = 500, 4 seeds) with the optimal and the best constant schedules.

Outputs: ``committee_width.h5`` (rewritten on every run; runs ``committee-K{K}-n{intervals}``) and
``committee_width.png``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from _common import parse_args, record, save_figure, write_runs

import opt_protocols as op

HERE = Path(__file__).resolve().parent
OUTPUTS = ("committee_width.h5", "committee_width.png")
SIGMA, ETA_BOUNDS, ALPHA_F = 0.3, (0.0, 3.0), 20.0
FULL = {"widths": (2, 4, 6, 8), "intervals": 50, "N": 2000, "seeds": 16}
QUICK = {"widths": (2, 3), "intervals": 20, "N": 500, "seeds": 4}


def solve(K: int, intervals: int) -> op.Solution:
    model = op.load_model("committee", K=K, M=K, sigma=SIGMA)
    return op.solve(model, t_final=ALPHA_F, controls={"eta": ETA_BOUNDS}, intervals=intervals)


def shape(sol: op.Solution) -> dict:
    eta, tc = sol.controls["eta"], sol.t_controls
    mid = 0.5 * (tc[1:] + tc[:-1])
    k = int(np.argmax(eta))
    best = sol.baselines["best_constant"]
    above = np.nonzero(eta >= best.values["eta"])[0]
    return {"eta_start": float(eta[0]), "eta_max": float(eta[k]), "alpha_at_max": float(mid[k]),
            "eta_end": float(eta[-1]), "eta_mean": float(eta.mean()), "K_eta_max": sol.params["K"] * float(eta[k]),
            "alpha_below_best_constant": float(tc[above[-1] + 1]) if above.size else 0.0,
            "eg_optimal": sol.objective, "eg_best_constant": best.objective,
            "best_constant_eta": float(best.values["eta"]), "gain": best.objective - sol.objective}


def figure(sols: dict[int, op.Solution]):
    from _common import pyplot
    plt = pyplot()

    widest = max(sols)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.4))
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(sols)))
    for (K, sol), color in zip(sols.items(), colors):
        eta = sol.controls["eta"]
        ax[0].step(sol.t_controls, np.append(eta, eta[-1]), where="post", color=color, lw=1.8, label=f"K = M = {K}")
        ax[0].axhline(sol.baselines["best_constant"].values["eta"], color=color, ls=":", lw=1)
        tr = sol.trajectory
        ax[1].semilogy(tr.t, tr.loss, color=color, lw=1.8, label=f"K = M = {K}: optimal {sol.objective:.5f}")
        b = sol.baselines["best_constant"]
        ax[1].semilogy(b.t, b.loss, color=color, lw=1, ls="--")
    ax[0].set_xlabel("alpha")
    ax[0].set_ylabel("learning rate eta")
    ax[0].set_title("optimal schedules (dotted: best constant eta)", fontsize=9)
    ax[0].legend(fontsize=8)
    ax[1].set_xlabel("alpha")
    ax[1].set_ylabel("generalisation error")
    ax[1].set_title("learning curves (dashed: best constant)", fontsize=9)
    ax[1].legend(fontsize=7)
    sol = sols[widest]
    v = sol.validation
    a = ax[2]
    for key, color, label in (("optimal", "k", "optimal"), ("best_constant", "C1", "best constant")):
        case = v["cases"][key]
        a.plot(v["t"], case["ode"], color=color, lw=1.5, label=f"ODE, {label}")
        a.errorbar(v["t"], case["sgd_mean"], yerr=case["sgd_sem"], fmt="o", ms=3, color=color, alpha=0.7,
                   label=f"SGD N = {v['summary']['N']}, {v['summary']['seeds']} seeds, {label}")
    a.set_yscale("log")
    a.set_xlabel("alpha")
    a.set_ylabel("generalisation error")
    a.set_title(f"K = M = {widest}: ODE vs finite-N online SGD", fontsize=9)
    a.legend(fontsize=7)
    fig.suptitle(f"Soft committee machine, sigma = {SIGMA}, eta in {list(ETA_BOUNDS)}, alpha_F = {ALPHA_F:g}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    cfg = QUICK if args.quick else FULL
    sols: dict[int, op.Solution] = {}
    for K in cfg["widths"]:
        t0 = time.perf_counter()
        sol = solve(K, cfg["intervals"])
        if sol.status != "optimal" or not sol.verification.get("ok"):
            print(f"K = M = {K}: {sol.status} ({sol.return_status}), verification {sol.verification}", file=sys.stderr)
            return 1
        sols[K] = sol
        s = shape(sol)
        print(f"K = M = {K}: eg {s['eg_optimal']:.8f} (best constant eta = {s['best_constant_eta']:.4f}: "
              f"{s['eg_best_constant']:.8f}, gain {s['gain']:.2e}); eta starts {s['eta_start']:.3f}, peaks "
              f"{s['eta_max']:.3f} (K eta_max = {s['K_eta_max']:.3f}) at alpha = {s['alpha_at_max']:.1f}, ends "
              f"{s['eta_end']:.3f}, below the best constant from alpha = {s['alpha_below_best_constant']:.1f}; "
              f"{sol.stats['nlp_states']} NLP states for {len(sol.state_names)}; "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    widest = max(sols)
    summary = op.validate(sols[widest], N=cfg["N"], seeds=cfg["seeds"])
    o, b = summary["optimal"], summary["best_constant"]
    print(f"K = M = {widest}, finite-N SGD (N = {cfg['N']}, {cfg['seeds']} seeds): optimal "
          f"{o['sgd_final_mean']:.5f} +- {o['sgd_final_sem']:.5f} (ODE {o['ode_final']:.5f}), best constant "
          f"{b['sgd_final_mean']:.5f} +- {b['sgd_final_sem']:.5f} (ODE {b['ode_final']:.5f})")
    write_runs(args.out / "committee_width.h5",
               [record(sol, f"committee-K{K}-n{cfg['intervals']}", args) for K, sol in sols.items()])
    save_figure(figure(sols), "committee_width.png", args, readme=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
