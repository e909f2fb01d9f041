"""The compute-optimal frontier of power-law random features as one sweep over the number of features N
and the horizon T (docs/models.md section 5) [BM26, FSL25, NS26].

    python results/random_features_sweep.py            # from the repository root; ~5 minutes on 2 cores
    python results/random_features_sweep.py --quick    # a small grid, well under a minute
    python results/random_features_sweep.py --out DIR --workers N

The question of results/random_features_scaling.py part 5, asked of one crossed grid: the student
has N features and learns a target with infinitely many modes; the modes beyond N act as extra
label noise of variance tail(N) = sum_{k>N} k^-a (Gaussian features are independent), so the
model is random_features with sigma^2 = 0.5^2 + tail(N) and tail=True (the reported loss adds the
tail). Easy phase (a, b) = (3, 2), batch m = 5, eta in [0, 2] on 100 blocks, final loss, the exact
adjoint method started from the best of the fitted baselines (op.Adjoint(starts=("best_baseline",))).

Grid: N = 25 .. 200 (factor 2; zipped with its sigma) crossed with T = 1250 .. 80000 (factor 2),
28 problems. Compute C = N T is constant along the anti-diagonals, and C = 31250 * 2^n hits
2.5e5, 1e6 and 4e6 (the reference's budgets) at n = 3, 5, 7. On each anti-diagonal with at least
three points the compute-optimal N* is the minimum of a parabola in log N through the best grid
point and its neighbours (for the optimal schedules and for the best constant learning rate).
Theory [BM26]: N* ~ C^(1/(1+a)) = C^0.25 with optimal schedules, C^(1/(a+b)) = C^0.2 with a
constant one.

Outputs (in --out, default results/): random_features_sweep.h5 (the sweep file; a rerun skips the
runs already there), random_features_sweep.png (L*(N, T) with the compute contours and N*;
L against N along each contour; N* against C with the fitted and theoretical exponents), and the
frontier table on stdout.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.special

HERE = Path(__file__).resolve().parent
OUTPUTS = ("random_features_sweep.h5", "random_features_sweep.png")
A, B, SIGMA, BATCH, ETA_MAX = 3.0, 2.0, 0.5, 5.0, 2.0


def spec(quick: bool) -> dict:
    Ns = [12, 25, 50] if quick else [25, 50, 100, 200]
    Ts = [200, 400, 800] if quick else [1250 * 2 ** j for j in range(7)]
    sigmas = [math.sqrt(SIGMA ** 2 + float(scipy.special.zeta(A, N + 1))) for N in Ns]
    return {"name": "random-features-compute-quick" if quick else "random-features-compute",
            "model": "random_features", "params": {"a": A, "b": B, "batch": BATCH, "tail": True},
            "problem": {"controls": {"eta": [0.0, ETA_MAX]}},
            "method": {"name": "adjoint", "intervals": 20 if quick else 100, "starts": ["best_baseline"],
                       "max_iter": 10000},   # the default 3000 L-BFGS-B iterations stop short at N = 25, T = 20000
            "grid": {"t_final": Ts, "zip": [{"N": Ns, "sigma": sigmas}]},
            "store": {"trajectory_points": 201}}     # states of up to 200 modes at 201 times, not 2001


def frontier(ds, key: str) -> list[dict]:
    """Per compute budget C = N T with >= 3 grid points: the best N and the parabola's N*."""
    L = ds.objective if key == "optimal" else ds.baseline_objective.sel(baseline="best_constant")
    by_c: dict[float, list[tuple[int, float]]] = {}
    for N in ds.N.values:
        for T in ds.t_final.values:
            v = float(L.sel(N=N, t_final=T))
            if np.isfinite(v):
                by_c.setdefault(float(N * T), []).append((int(N), v))
    out = []
    for C, pts in sorted(by_c.items()):
        if len(pts) < 3:
            continue
        pts.sort()
        lnN = np.log([p[0] for p in pts])
        lnL = np.log([p[1] for p in pts])
        k = int(np.argmin(lnL))
        interior = 0 < k < len(pts) - 1
        n_star = float(pts[k][0])
        if interior:
            p = np.polyfit(lnN[k - 1:k + 2], lnL[k - 1:k + 2], 2)
            if p[0] > 0:
                n_star = float(np.exp(-p[1] / (2 * p[0])))
        out.append({"C": C, "N_grid": pts[k][0], "N_star": n_star, "L": float(np.exp(lnL[k])), "interior": interior,
                    "points": pts})
    return out


def fit(rows: list[dict]) -> float:
    good = [r for r in rows if r["interior"]]
    if len(good) < 2:
        return float("nan")
    return float(np.polyfit(np.log([r["C"] for r in good]), np.log([r["N_star"] for r in good]), 1)[0])


def figure(ds, fronts: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    Ns, Ts = ds.N.values, ds.t_final.values
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    img = ax.pcolormesh(Ts, Ns, np.log10(ds.objective.transpose("N", "t_final").values), shading="nearest")
    fig.colorbar(img, ax=ax, label="log10 L*(N, T)")
    for r in fronts["optimal"]:
        t = np.array([Ts[0], Ts[-1]], dtype=float)
        ax.plot(t, r["C"] / t, "w:", lw=0.8)
        ax.plot(r["C"] / r["N_star"], r["N_star"], "w*", ms=10 if r["interior"] else 5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(Ts[0] / 1.4, Ts[-1] * 1.4)
    ax.set_ylim(Ns[0] / 1.4, Ns[-1] * 1.4)
    ax.set_xlabel("T (steps)")
    ax.set_ylabel("N (features)")
    ax.set_title("optimal-schedule loss; dotted: C = N T; star: N*(C)", fontsize=9)
    ax = axes[1]
    for r in fronts["optimal"]:
        if r["interior"]:
            line, = ax.loglog(*zip(*r["points"]), "o-", ms=3, label=f"optimal, C = {r['C']:.3g}")
            const = next((c for c in fronts["constant"] if c["C"] == r["C"]), None)
            if const:
                ax.loglog(*zip(*const["points"]), "^:", ms=3, color=line.get_color())
    ax.set_xlabel("N (T = C / N)")
    ax.set_ylabel("L(T) + tail(N)")
    ax.set_title("along compute contours: optimal (o) and best constant (^)", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax = axes[2]
    theory = {"optimal": 1 / (1 + A), "constant": 1 / (A + B)}
    for key, style in (("optimal", "o-"), ("constant", "^:")):
        good = [r for r in fronts[key] if r["interior"]]
        if good:
            ax.loglog([r["C"] for r in good], [r["N_star"] for r in good], style,
                      label=f"{key}: N* ~ C^{fit(fronts[key]):.2f} (theory {theory[key]:.2f})")
    ax.set_xlabel("C = N T")
    ax.set_ylabel("compute-optimal N*")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from opt_protocols.batch.cli import results_script
    t0 = time.perf_counter()
    ds, report, png = results_script(argv, __doc__.splitlines()[0], spec, "random_features_sweep", HERE)
    fronts = {key: frontier(ds, key) for key in ("optimal", "constant")}
    print(f"\n{'schedule':9s} {'C':>9s} {'N grid':>7s} {'N*':>8s} {'L':>11s}  (N, L) along the contour")
    for key, rows in fronts.items():
        for r in rows:
            pts = " ".join(f"({n}, {v:.4g})" for n, v in r["points"])
            print(f"{key:9s} {r['C']:9.3g} {r['N_grid']:7d} {r['N_star']:8.1f} {r['L']:11.5g}"
                  f"{'' if r['interior'] else ' (edge)'}  {pts}")
    print(f"N* ~ C^x: optimal x = {fit(fronts['optimal']):.3f} (theory {1 / (1 + A):.3f}), "
          f"constant x = {fit(fronts['constant']):.3f} (theory {1 / (A + B):.3f})")
    figure(ds, fronts, png)
    print(f"wrote {png}; total {time.perf_counter() - t0:.0f} s")
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())
