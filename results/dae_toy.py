"""Optimal noise schedule of a denoising autoencoder on a Gaussian mixture (docs/models.md section 3) [MM25].

    python results/dae_toy.py [--quick] [--out DIR]     # from the repository root; ~30 s (--quick ~10 s)

Reference setup (``opt_protocols.references.dae(D_F)``, the model's defaults): C = K = 2, N = 1000,
eta = 5, s = 0.1, b0 = 0, the published initial overlaps Q0, M0 and S, horizon tau_F = 4 in the
model's time tau = eta * alpha (alpha_F = 0.8, 800 SGD steps at N = 1000). Control: the training
noise D(tau) in [0.01, 0.99], piecewise constant on 399 intervals; objective: the test MSE at D_F
(the source's expression, limit equations), for D_F = 0.1 and D_F = 0.3. Baselines: constant
D = D_F (published 8.886888 / 9.519856) and the best constant D (computed by the framework).

Solver settings: ``op.solve``'s defaults (IPOPT with the adaptive barrier, original bounds
honoured); the options this script used to pass are those defaults now (same optimum to 1e-12,
same iterations).

Finite-N check: ``op.validate`` runs the autoencoder's own online SGD at N = 1000 with the optimal and
the best constant schedules. SGD at finite N follows the finite-N corrected db equation
(``finite_n = true``), not the limit form the reference numbers use: both ODE curves are drawn.

Outputs in DIR: ``dae_toy.h5`` (rewritten on every run; runs ``dae-DF0.1-n399``, ``dae-DF0.3-n399``
and the convergence runs) and ``dae_toy.png`` (also ``docs/figures/`` without ``--quick``).
``--quick``: 50 and 399 intervals, 4 SGD seeds.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
from _common import parse_args, pyplot, record, save_figure, write_runs

import opt_protocols as op
from opt_protocols import references

#: the files the script writes into DIR (checked by tests/test_results_scripts.py)
OUTPUTS = ("dae_toy.h5", "dae_toy.png")

TAU_F = references.dae(0.1).t_final


@dataclass(frozen=True)
class Config:
    intervals: tuple[int, ...]      # the last one is the reference grid
    sgd_seeds: int
    sgd_points: int


FULL = Config(intervals=(100, 200, references.dae(0.1).intervals), sgd_seeds=16, sgd_points=21)
QUICK = Config(intervals=(50, references.dae(0.1).intervals), sgd_seeds=4, sgd_points=11)


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
    m = references.dae(sol.params["D_F"]).model(finite_n=True)
    x0 = np.asarray(sol.spec["x0"])
    out = {}
    for name, proto in (("optimal", sol.protocol), ("best_constant", sol.baselines["best_constant"].protocol)):
        out[name] = op.simulate(m, x0, proto, TAU_F, t_eval=t, rtol=1e-10, atol=1e-12).loss
    return out


def figure(sols: dict, fin: dict, args) -> None:
    plt = pyplot()
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
        for name, color, label in (("best_constant", "C2", "best constant"), ("constant_D_F", "C1", "D = D_F")):
            b = sol.baselines[name]
            a.plot(b.t / eta, b.loss, color=color, ls="--", lw=1, label=f"{label} {b.objective:.6f}")
        a.set_xlabel("alpha")
        a.set_ylabel("test MSE at D_F (source convention)")
        a.legend(fontsize=7)
        a.set_title("limit ODE", fontsize=9)
        # ODE against SGD
        a = ax[row, 2]
        v = sol.validation
        tv = v["t"]
        for key, color, label in (("optimal", "k", "optimal"), ("best_constant", "C2", "best constant")):
            case = v["cases"][key]
            a.plot(tv / eta, case["ode"], color=color, lw=1, ls=":", label=f"limit ODE, {label}")
            a.plot(tv / eta, fin[D_F][key], color=color, lw=1.5, label=f"finite-N ODE, {label}")
            a.errorbar(tv / eta, case["sgd_mean"], yerr=case["sgd_sem"], fmt="o",
                       ms=3, mfc="none", capsize=2, color=color,
                       label=f"SGD N = {v['summary']['N']}, {v['summary']['seeds']} seeds")
        a.set_xlabel("alpha")
        a.set_ylabel("test MSE at D_F")
        a.legend(fontsize=6, loc="lower left")
        a.set_title("ODE against the autoencoder's online SGD (mean +- s.e.)", fontsize=9)
        ins = a.inset_axes([0.5, 0.45, 0.45, 0.25])
        for key, color in (("optimal", "k"), ("best_constant", "C2")):
            ins.plot(tv[-6:] / eta, fin[D_F][key][-6:], color=color, lw=1.5)
            ins.errorbar(tv[-6:] / eta, v["cases"][key]["sgd_mean"][-6:],
                         yerr=v["cases"][key]["sgd_sem"][-6:], fmt="o", ms=2, mfc="none", color=color)
        ins.tick_params(labelsize=6)
    fig.suptitle("Denoising autoencoder noise schedule [MM25]: N = 1000, eta = 5, s = 0.1, tau_F = 4"
                 + (" (quick run)" if args.quick else ""), fontsize=10)
    fig.tight_layout()
    save_figure(fig, "dae_toy.png", args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    cfg = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    records, ref, fin = [], {}, {}
    for D_F in references.DAE_TEST_NOISE:
        setup = references.dae(D_F)
        m = setup.model()
        sgd_n = int(m.params["N"])
        conv = {}
        for n in cfg.intervals:
            sol = setup.solve(m, intervals=n)
            sh = shape(sol)
            conv[n] = {"objective": sol.objective, "status": sol.status, "shape": sh,
                       "iterations": sol.stats["iterations"],
                       "time": sol.stats["build_time"] + sol.stats["solve_time"]}
            print(f"D_F = {D_F}, n = {n:3d}: {sol.status}, MSE = {sol.objective:.8f}, verification gap "
                  f"{sol.verification['relative_gap']:.1e}; D starts {sh['D_start']:.4f}, min {sh['D_min']:.4f} at "
                  f"alpha {sh['alpha_at_min']:.4f}, ends {sh['D_end']:.4f}; {sol.stats['iterations']} iterations, "
                  f"build + solve {conv[n]['time']:.2f} s")
            if n != cfg.intervals[-1]:
                records.append(record(sol, f"dae-DF{D_F}-n{n}", args, shape=sh))
        sol = ref[D_F] = sol
        print(sol.summary())
        if sol.status != "optimal" or not sol.verification.get("ok"):
            print(f"WARNING: D_F = {D_F}: not optimal or not verified", file=sys.stderr)
        got, pub = sol.baselines["constant_D_F"].objective, setup["constant_D_F"]
        print(f"  constant D = D_F: {got:.6f} (published {pub.text}, diff {got - pub.value:+.1e}"
              f"{'' if pub.matches(got) else ', MOVED'}); best constant D = "
              f"{sol.baselines['best_constant'].values['D']:.5f}: {sol.baselines['best_constant'].objective:.6f}")
        for name in ("constant_D_F", "best_constant"):
            b = sol.baselines[name].objective
            print(f"  optimum below {name} by {b - sol.objective:.6f} ({100 * (b - sol.objective) / b:.4f}%)")
        t_v = time.perf_counter()
        summ = op.validate(sol, N=sgd_n, seeds=cfg.sgd_seeds, n_out=cfg.sgd_points)
        fin[D_F] = finite_n_curves(sol, sol.validation["t"])
        o, b = summ["optimal"], summ["best_constant"]
        print(f"  SGD N = {sgd_n} ({cfg.sgd_seeds} seeds, {time.perf_counter() - t_v:.1f} s): optimal "
              f"{o['sgd_final_mean']:.5f} +- {o['sgd_final_sem']:.5f} (limit ODE {o['ode_final']:.5f}, finite-N ODE "
              f"{fin[D_F]['optimal'][-1]:.5f}); best constant {b['sgd_final_mean']:.5f} +- {b['sgd_final_sem']:.5f} "
              f"(limit ODE {b['ode_final']:.5f}, finite-N ODE {fin[D_F]['best_constant'][-1]:.5f}); SGD gain "
              f"{summ['sgd_gain']:.5f} +- {summ['sgd_gain_sem']:.5f}")
        rec = record(sol, f"dae-DF{D_F}-n{cfg.intervals[-1]}", args, shape=shape(sol),
                     convergence={str(k): v for k, v in conv.items()},
                     finite_n_ode_final={k: float(v[-1]) for k, v in fin[D_F].items()})
        cases = [str(c) for c in rec.coords["case"]]     # the finite-N ODE next to the stored SGD check
        rec.variables["ode_finite_n"] = (("case", "t_sgd"), np.array([fin[D_F][c] for c in cases]))
        records.append(rec)
    write_runs(args.out / "dae_toy.h5", records)
    figure(ref, fin, args)
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
