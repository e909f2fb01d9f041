"""Optimal noise schedule of a denoising autoencoder on a Gaussian mixture (docs/models.md section 3) [MM25].

    python results/dae_toy.py               # from the repository root; about two minutes

Reference setup (the model's defaults): C = K = 2, N = 1000, eta = 5, s = 0.1, b0 = 0, the published
initial overlaps Q0, M0 and S, horizon tau_F = 4 in the model's time tau = eta * alpha (alpha_F = 0.8,
800 SGD steps at N = 1000). Control: the training noise D(tau) in [0.01, 0.99], piecewise constant on
399 intervals; objective: the test MSE at D_F (the source's expression, limit equations), for
D_F = 0.1 and D_F = 0.3. Baselines: constant D = D_F (published 8.886888 / 9.519856) and the best
constant D (computed by the framework).

Solver settings (a framework work-around and a tuning, see results/README.md): IPOPT's final point
can sit a hair (1e-8) outside the control bounds, which the re-simulation then rejects, so
``honor_original_bounds = yes`` is passed; for D_F = 0.1, whose optimum lies on the bound D = 0.01
almost everywhere, ``mu_strategy = adaptive`` cuts IPOPT's iterations from 80 to about 11.

Finite-N check: ``op.validate`` runs the autoencoder's own online SGD at N = 1000 with the optimal and
the best constant schedules. SGD at finite N follows the finite-N corrected db equation
(``finite_n = true``), not the limit form the reference numbers use: both ODE curves are drawn.

Outputs: ``dae_toy.h5`` (rewritten on every run; runs ``dae-DF0.1-n399``, ``dae-DF0.3-n399`` and the
convergence runs) and ``dae_toy.png``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import opt_protocols as op
from opt_protocols import storage
from opt_protocols.results import solution_record

HERE = Path(__file__).resolve().parent
H5 = HERE / "dae_toy.h5"
PNG = HERE / "dae_toy.png"

TAU_F = 4.0
BOUNDS = (0.01, 0.99)
REFERENCE_INTERVALS = 399
CONVERGENCE = (100, 200, 399)
PUBLISHED_CONSTANT = {0.1: 8.886888, 0.3: 9.519856}
SOLVER_OPTIONS = {0.1: {"ipopt.honor_original_bounds": "yes", "ipopt.mu_strategy": "adaptive"},
                  0.3: {"ipopt.honor_original_bounds": "yes"}}
SGD_N, SGD_SEEDS = 1000, 16


def model(D_F: float, **kw):
    return op.load_model("dae", D_F=D_F, **kw)


def solve(D_F: float, intervals: int) -> op.Solution:
    return op.solve(model(D_F), t_final=TAU_F, controls={"D": BOUNDS}, intervals=intervals,
                    baselines={"constant_D_F": {"D": D_F}}, solver_options=SOLVER_OPTIONS[D_F])


def shape(sol: op.Solution) -> dict:
    """D at the start, its minimum (value and time, in tau and alpha = tau/eta) and at the end."""
    D, tc = sol.controls["D"], sol.t_controls
    mid = 0.5 * (tc[1:] + tc[:-1])
    k = int(np.argmin(D))
    eta = sol.params["eta"]
    return {"D_start": float(D[0]), "D_min": float(D.min()), "tau_at_min": float(mid[k]),
            "alpha_at_min": float(mid[k] / eta), "D_end": float(D[-1]), "D_max": float(D.max())}


def finite_n_curves(sol: op.Solution, t: np.ndarray) -> dict:
    """Loss along ``t`` of the optimal and best-constant schedules under the finite-N corrected ODE."""
    m = model(sol.params["D_F"], finite_n=True)
    x0 = np.asarray(sol.spec["x0"])
    out = {}
    for name, proto in (("optimal", sol.protocol), ("best_constant", sol.baselines["best_constant"].protocol)):
        out[name] = op.simulate(m, x0, proto, TAU_F, t_eval=t, rtol=1e-10, atol=1e-12).loss
    return out


def figure(sols: dict, fin: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(14, 7.4))
    for row, (D_F, sol) in enumerate(sols.items()):
        eta = sol.params["eta"]
        # protocol, in alpha = tau / eta
        a = ax[row, 0]
        tc = sol.t_controls / eta
        a.step(tc, np.append(sol.controls["D"], sol.controls["D"][-1]), where="post", color="k", lw=2,
               label=f"optimal ({len(sol.controls['D'])} intervals)")
        bc = sol.baselines["best_constant"].values["D"]
        a.axhline(bc, color="C2", ls="--", label=f"best constant D = {bc:.4f}")
        a.axhline(D_F, color="C1", ls="--", label=f"D = D_F = {D_F}")
        a.set_xlabel("alpha = tau / eta")
        a.set_ylabel("training noise D")
        a.set_ylim(0, 1)
        a.legend(fontsize=7)
        a.set_title(f"D_F = {D_F}: schedule", fontsize=9)
        # loss against baselines
        a = ax[row, 1]
        tr = sol.trajectory
        a.plot(tr.t / eta, tr.loss, color="k", lw=2, label=f"optimal {sol.objective:.6f}")
        m = model(D_F)
        for name, color in (("best_constant", "C2"), ("constant_D_F", "C1")):
            b = sol.baselines[name]
            bt = op.simulate(m, np.asarray(sol.spec["x0"]), b.protocol, TAU_F, t_eval=tr.t, rtol=1e-10, atol=1e-12)
            a.plot(bt.t / eta, bt.loss, color=color, ls="--", lw=1, label=f"{'best constant' if name == 'best_constant' else 'D = D_F'} {b.objective:.6f}")
        a.set_xlabel("alpha")
        a.set_ylabel("test MSE at D_F (source convention)")
        a.legend(fontsize=7)
        a.set_title("limit ODE", fontsize=9)
        # ODE against SGD
        a = ax[row, 2]
        v = sol.validation
        tv = v["coords"]["t"]
        for key, color, label in (("optimal", "k", "optimal"), ("best_constant", "C2", "best constant")):
            a.plot(tv / eta, v["arrays"][f"{key}_ode"][1], color=color, lw=1, ls=":", label=f"limit ODE, {label}")
            a.plot(tv / eta, fin[D_F][key], color=color, lw=1.5, label=f"finite-N ODE, {label}")
            a.errorbar(tv / eta, v["arrays"][f"{key}_sgd_mean"][1], yerr=v["arrays"][f"{key}_sgd_sem"][1], fmt="o",
                       ms=3, mfc="none", capsize=2, color=color,
                       label=f"SGD N = {v['summary']['N']}, {v['summary']['seeds']} seeds")
        a.set_xlabel("alpha")
        a.set_ylabel("test MSE at D_F")
        a.legend(fontsize=6, loc="lower left")
        a.set_title("ODE against the autoencoder's online SGD (mean +- s.e.)", fontsize=9)
        ins = a.inset_axes([0.5, 0.45, 0.45, 0.25])
        for key, color in (("optimal", "k"), ("best_constant", "C2")):
            ins.plot(tv[-6:] / eta, fin[D_F][key][-6:], color=color, lw=1.5)
            ins.errorbar(tv[-6:] / eta, v["arrays"][f"{key}_sgd_mean"][1][-6:],
                         yerr=v["arrays"][f"{key}_sgd_sem"][1][-6:], fmt="o", ms=2, mfc="none", color=color)
        ins.tick_params(labelsize=6)
    fig.suptitle("Denoising autoencoder noise schedule [MM25]: N = 1000, eta = 5, s = 0.1, tau_F = 4", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    t_start = time.perf_counter()
    records, ref, fin = [], {}, {}
    for D_F in (0.1, 0.3):
        conv = {}
        for n in CONVERGENCE:
            sol = solve(D_F, n)
            sh = shape(sol)
            conv[n] = {"objective": sol.objective, "status": sol.status, "shape": sh,
                       "iterations": sol.stats["iterations"],
                       "time": sol.stats["build_time"] + sol.stats["solve_time"]}
            print(f"D_F = {D_F}, n = {n:3d}: {sol.status}, MSE = {sol.objective:.8f}, verification gap "
                  f"{sol.verification['relative_gap']:.1e}; D starts {sh['D_start']:.4f}, min {sh['D_min']:.4f} at "
                  f"alpha {sh['alpha_at_min']:.4f}, ends {sh['D_end']:.4f}; {sol.stats['iterations']} iterations, "
                  f"build + solve {conv[n]['time']:.2f} s")
            if n != REFERENCE_INTERVALS:
                rec = solution_record(sol, f"dae-DF{D_F}-n{n}")
                rec.attrs["shape"] = sh
                rec.attrs["solver_options"] = SOLVER_OPTIONS[D_F]
                records.append(rec)
        sol = ref[D_F] = sol
        print(sol.summary())
        if sol.status != "optimal" or not sol.verification.get("ok"):
            print(f"WARNING: D_F = {D_F}: not optimal or not verified", file=sys.stderr)
        got = sol.baselines["constant_D_F"].objective
        print(f"  constant D = D_F: {got:.6f} (docs/models.md {PUBLISHED_CONSTANT[D_F]:.6f}, diff "
              f"{got - PUBLISHED_CONSTANT[D_F]:+.1e}); best constant D = "
              f"{sol.baselines['best_constant'].values['D']:.5f}: {sol.baselines['best_constant'].objective:.6f}")
        for name in ("constant_D_F", "best_constant"):
            b = sol.baselines[name].objective
            print(f"  optimum below {name} by {b - sol.objective:.6f} ({100 * (b - sol.objective) / b:.4f}%)")
        t_v = time.perf_counter()
        summ = op.validate(sol, N=SGD_N, seeds=SGD_SEEDS, n_out=21)
        fin[D_F] = finite_n_curves(sol, sol.validation["coords"]["t"])
        o, b = summ["optimal"], summ["best_constant"]
        print(f"  SGD N = {SGD_N} ({SGD_SEEDS} seeds, {time.perf_counter() - t_v:.1f} s): optimal "
              f"{o['sgd_final_mean']:.5f} +- {o['sgd_final_sem']:.5f} (limit ODE {o['ode_final']:.5f}, finite-N ODE "
              f"{fin[D_F]['optimal'][-1]:.5f}); best constant {b['sgd_final_mean']:.5f} +- {b['sgd_final_sem']:.5f} "
              f"(limit ODE {b['ode_final']:.5f}, finite-N ODE {fin[D_F]['best_constant'][-1]:.5f}); SGD gain "
              f"{summ['sgd_gain']:.5f} +- {summ['sgd_gain_sem']:.5f}")
        rec = solution_record(sol, f"dae-DF{D_F}-n{REFERENCE_INTERVALS}")
        rec.attrs["shape"] = shape(sol)
        rec.attrs["solver_options"] = SOLVER_OPTIONS[D_F]
        rec.attrs["convergence"] = {str(k): v for k, v in conv.items()}
        rec.attrs["finite_n_ode_final"] = {k: float(v[-1]) for k, v in fin[D_F].items()}
        rec.variables["validation/optimal_ode_finite_n"] = (("t",), fin[D_F]["optimal"])
        rec.variables["validation/best_constant_ode_finite_n"] = (("t",), fin[D_F]["best_constant"])
        records.append(rec)
    storage.write_fresh(H5, records)
    figure(ref, fin, PNG)
    print(f"wrote {H5.relative_to(HERE.parent)} ({len(records)} runs) and {PNG.relative_to(HERE.parent)} "
          f"in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
