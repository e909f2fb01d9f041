"""The committee machine's optimal learning-rate schedule across horizons and noise levels, as one sweep
(docs/models.md section 1) [SS95, Goldt19].

    python results/committee_sweep.py              # from the repository root; about a minute on 2 cores
    python results/committee_sweep.py --quick      # a small grid, well under a minute
    python results/committee_sweep.py --out DIR --workers N

Problem: soft committee machine K = M = 2 (T = identity, v = v* = 1), default initial state
(Q = 0.5 I, R = 0.01 I), eta(alpha) in [0, 3] piecewise constant on 50 intervals, final
generalisation error eg(alpha_F). Grid: alpha_F log-spaced 2 .. 100 (12 points) crossed with the
label noise sigma in {0, 0.1, 0.2, 0.3, 0.5}: 60 problems, solved by ``opt_protocols.batch.sweep``
on a process pool with continuation along alpha_F (each horizon warm-started from the previous).

What moves (the printed table and the figure): as the horizon grows the schedule changes from a
nearly flat eta ~ 1 to a warm-up, a peak at 10-30% of the horizon and a long anneal whose final
value falls with alpha_F; noise lowers the peak and lengthens the anneal. Without noise (and at
sigma = 0.1) the longest horizons leave the symmetric plateau: the optimum then holds a large eta
over most of the run and its loss drops by orders of magnitude. Printed per run: the optimum, the
best constant and the shape summaries (peak eta, final eta, the annealed fraction of the horizon,
after the last interval with eta >= 90% of the peak).

Outputs (in --out, default results/): committee_sweep.h5 (the sweep file: rerunning the script
skips the runs already there; delete it to recompute), committee_sweep.png (loss and gain against
alpha_F per sigma; the schedule eta*(t/alpha_F) at every horizon for one sigma and at every sigma
for one horizon; the shape summaries against alpha_F).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUTS = ("committee_sweep.h5", "committee_sweep.png")


def spec(quick: bool) -> dict:
    horizons = {"log": [2.0, 20.0, 4]} if quick else {"log": [2.0, 100.0, 12]}
    return {"name": "committee-lr-quick" if quick else "committee-lr",
            "model": "committee", "params": {"K": 2, "M": 2},
            "problem": {"controls": {"eta": [0.0, 3.0]}},
            "method": {"name": "collocation", "intervals": 20 if quick else 50},
            "grid": {"t_final": horizons, "sigma": [0.0, 0.3] if quick else [0.0, 0.1, 0.2, 0.3, 0.5]},
            "continuation": {"axis": "t_final"}}


def shape(eta: np.ndarray) -> dict:
    """Peak, final value and the annealed fraction (after the last interval with eta >= 0.9 peak)."""
    peak = float(np.max(eta))
    above = np.nonzero(eta >= 0.9 * peak)[0]
    return {"peak": peak, "final": float(eta[-1]), "anneal": (eta.size - (above[-1] + 1)) / eta.size}


def figure(ds, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    def plain_log_x(ax):
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())

    sigmas, Ts = ds.sigma.values, ds.t_final.values
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    for sg in sigmas:
        d = ds.sel(sigma=sg)
        line, = ax.loglog(Ts, d.objective, "o-", ms=3, label=f"optimal, sigma = {sg:g}")
        ax.loglog(Ts, d.baseline_objective.sel(baseline="best_constant"), "--", color=line.get_color(), lw=1)
    ax.set_xlabel("alpha_F")
    ax.set_ylabel("eg(alpha_F)")
    ax.set_title("optimal (solid) and best constant (dashed)", fontsize=9)
    ax.legend(fontsize=7)
    inset = ax.inset_axes([0.08, 0.08, 0.35, 0.3])
    for sg in sigmas:
        inset.semilogx(Ts, 100 * ds.gain.sel(sigma=sg), "-", lw=1)
    inset.set_title("gain over best constant (%)", fontsize=7)
    inset.tick_params(labelsize=6)
    plain_log_x(inset)
    plain_log_x(ax)
    sg_ref = sigmas[len(sigmas) // 2]
    cmap = plt.get_cmap("viridis")
    ax = axes[0, 1]
    for i, T in enumerate(Ts):
        ax.step(ds.s, ds.eta.sel(sigma=sg_ref, t_final=T), where="mid", color=cmap(i / max(1, len(Ts) - 1)),
                label=f"alpha_F = {T:.3g}" if i in (0, len(Ts) // 2, len(Ts) - 1) else None)
    ax.set_xlabel("alpha / alpha_F")
    ax.set_ylabel("eta*")
    ax.set_title(f"sigma = {sg_ref:g}: the schedule at every horizon", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    T_ref = Ts[-1]
    for i, sg in enumerate(sigmas):
        ax.step(ds.s, ds.eta.sel(sigma=sg, t_final=T_ref), where="mid", color=cmap(i / max(1, len(sigmas) - 1)),
                label=f"sigma = {sg:g}")
    ax.set_xlabel("alpha / alpha_F")
    ax.set_ylabel("eta*")
    ax.set_title(f"alpha_F = {T_ref:.3g}: the schedule at every noise level", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    for sg in sigmas:
        shapes = [shape(ds.eta.sel(sigma=sg, t_final=T).values) for T in Ts]
        line, = ax.semilogx(Ts, [s["peak"] for s in shapes], "o-", ms=3, label=f"peak eta, sigma = {sg:g}")
        ax.semilogx(Ts, [s["final"] for s in shapes], "s:", ms=3, color=line.get_color())
        ax.semilogx(Ts, [3 * s["anneal"] for s in shapes], "^--", ms=3, color=line.get_color(), lw=1)
    ax.set_xlabel("alpha_F")
    ax.set_title("peak eta (o), final eta (s), 3 x annealed fraction (^)", fontsize=9)
    plain_log_x(ax)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from opt_protocols.batch.cli import results_script
    t0 = time.perf_counter()
    ds, report, png = results_script(argv, __doc__.splitlines()[0], spec, "committee_sweep", HERE)
    print(f"\n{'sigma':>6s} {'alpha_F':>8s} {'optimal':>12s} {'best const':>12s} {'gain':>7s} {'peak':>6s} "
          f"{'final':>6s} {'anneal':>6s}")
    for sg in ds.sigma.values:
        for T in ds.t_final.values:
            d = ds.sel(sigma=sg, t_final=T)
            sh = shape(d.eta.values)
            print(f"{sg:6g} {T:8.3g} {float(d.objective):12.7g} "
                  f"{float(d.baseline_objective.sel(baseline='best_constant')):12.7g} {100 * float(d.gain):6.2f}% "
                  f"{sh['peak']:6.3f} {sh['final']:6.3f} {sh['anneal']:6.2f}")
    figure(ds, png)
    print(f"wrote {png}; total {time.perf_counter() - t0:.0f} s")
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())
