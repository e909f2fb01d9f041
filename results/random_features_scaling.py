"""Optimal learning-rate, momentum and batch-size schedules of power-law random features and their
scaling laws (docs/models.md section 5) [BM26, FSL25, NS26].

    python results/random_features_scaling.py [--quick] [--out DIR]     # ~10 min (--quick ~10 s)
    python results/random_features_scaling.py --figures-only [--out DIR] # redraw from DIR/..._scaling.json

Exact recursion of models/random_features.py, N = 2000 modes, sigma = 0.5, batch m = 5, eta in [0, 2]
piecewise constant on 100 blocks, final loss L(T) (the kept modes plus the never-learned tail beyond
N, see horizon_sweep), solved with the exact adjoint method (``op.Adjoint``: multi-start from the
best constant and the best power law c (t+1)^(-chi), SLSQP; both fitted baselines are stored with
every solution).

1. Horizon sweep T = 10^2 .. 10^4 (6 log-spaced points) in the easy phase (a, b) = (3, 2) and the
   hard phase (a, b) = (2, 3): fitted exponents of the optimal, best-constant and best-power-law
   final losses against the theory ([BM26]: easy optimal T^-(a-1)/a, hard optimal T^-(a-1)/b,
   constant and power law T^-(a-1)/(a+b-1)).
2. Easy phase: collapse of T^xi eta*(t) against t/T, xi = 1 - b/a.
3. Hard phase: the plateau level and the annealed fraction of the horizon against T.
4. Momentum (eta and beta optimised) and batch size under a data budget sum_t m_t = 5 T (eta and
   m optimised), easy phase, T = 1000.
5. Compute-optimal allocation at fixed C = N T (easy phase, optimal schedules): N swept on a
   factor-2 grid at C = 2.5e5, 1e6, 4e6. Here the student with N features learns a target with
   infinitely many modes: the modes beyond N act as extra label noise of variance
   tail(N) = sum_{k>N} k^-a (Gaussian features are independent), and the reported loss adds the
   tail (models/random_features.py docstring). Theory: optimal schedule N* ~ C^(1/(1+a)),
   constant eta N* ~ C^(1/(a+b)).

Outputs in DIR: random_features_scaling.h5 (rewritten on every run; one run per solution, states
kept at 3 times and an 11-point learning curve to keep the file small), random_features_scaling.png,
random_features_collapse.png (both also in docs/figures/ without --quick),
random_features_momentum_batch.png, random_features_compute_optimal.png, and a summary table on
stdout (also written to random_features_scaling.json). --quick: N = 200 modes, 50 blocks,
T = 100 .. 1585 (4 points), momentum and batch at T = 300, two compute budgets.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from _common import parse_args, pyplot, record, save_figure, write_runs

import opt_protocols as op

#: the files the script writes into DIR (checked by tests/test_results_scripts.py)
OUTPUTS = ("random_features_scaling.h5", "random_features_scaling.json", "random_features_scaling.png",
           "random_features_collapse.png", "random_features_momentum_batch.png", "random_features_compute_optimal.png")

SIGMA, BATCH = 0.5, 5.0
ETA_MAX = 2.0
PHASES = {"easy": dict(a=3.0, b=2.0), "hard": dict(a=2.0, b=3.0)}
#: the optimiser of every solve (the results below were taken with it; see results/README.md)
OPTIMIZER = "SLSQP"
SUMMARY = "random_features_scaling.json"


@dataclass(frozen=True)
class Config:
    n_modes: int
    blocks: int
    t_grid: tuple[int, ...]
    fit_from: int               # exponents fitted on T >= fit_from (the smallest horizon is pre-asymptotic)
    collapse_from: int          # index into t_grid of the first horizon used for the easy-phase collapse
    single_t: int               # momentum and batch-size studies
    compute: tuple[float, ...]
    n_compute: tuple[int, ...]


FULL = Config(n_modes=2000, blocks=100, t_grid=tuple(int(t) for t in np.unique(np.round(np.logspace(2, 4, 6)))),
              fit_from=251, collapse_from=2, single_t=1000, compute=(2.5e5, 1e6, 4e6),
              n_compute=(12, 25, 50, 100, 200, 400, 800, 1600))
QUICK = Config(n_modes=200, blocks=50, t_grid=tuple(int(t) for t in np.unique(np.round(np.logspace(2, 3.2, 4)))),
               fit_from=200, collapse_from=1, single_t=300, compute=(2.5e4, 1e5), n_compute=(12, 25, 50, 100, 200))


def theory(a: float, b: float) -> dict:
    return {"optimal": (a - 1) / a if a > b else (a - 1) / b,
            "constant": (a - 1) / (a + b - 1), "power_law": (a - 1) / (a + b - 1)}


def fit_exponent(T, L) -> float:
    """-slope of log L against log T (least squares)."""
    return float(-np.polyfit(np.log(T), np.log(L), 1)[0])


def light(sol):
    """Keep a solution's stored states small: states at 3 times, the re-simulation and every baseline's
    curve at 11 of their times (finer curves are one ``op.simulate`` of the stored protocol away)."""
    keep = [0, len(sol.t) // 2, len(sol.t) - 1]
    sol.t, sol.x, sol.loss = sol.t[keep], sol.x[keep], sol.loss[keep]
    tr = sol.trajectory
    sub = np.unique(np.round(np.linspace(0, tr.t.size - 1, 11)).astype(int))
    sol.trajectory = dataclasses.replace(tr, t=tr.t[sub], x=tr.x[sub], loss=tr.loss[sub],
                                         controls={k: v[sub] for k, v in tr.controls.items()})
    for b in sol.baselines.values():
        b.t, b.loss = b.t[sub], b.loss[sub]
    return sol


def solve(model, T, cfg, args, records, run_id, starts=("best_constant", "power_law"), **kw):
    """The optimal protocol by the adjoint method, with the best constant and power law as baselines;
    appended to ``records`` (made light) under ``run_id`` when that is given."""
    t0 = time.perf_counter()
    method = op.Adjoint(intervals=cfg.blocks, starts=starts, optimizer=OPTIMIZER)
    sol = op.solve(model, t_final=T, method=method, families=("power_law",), **kw)
    wall = time.perf_counter() - t0
    sol.stats["script_wall_time"] = wall
    if run_id:
        b = sol.baselines
        print(f"  {run_id:28s} L* = {sol.objective:.7g} ({sol.status}, winner {sol.stats['winner']}), "
              f"const {b['best_constant'].objective:.7g}, power law {b['power_law'].objective:.7g}, "
              f"{wall:.1f} s", flush=True)
        records.append(record(light(sol), run_id, args))
    return sol


# ---------------------------------------------------------------------------------------------

def horizon_sweep(cfg, args, records) -> dict:
    out = {}
    for phase, ab in PHASES.items():
        # tail=True: the reported loss adds the modes beyond N (never learned at these T: lambda_k T << 1),
        # so L approximates the N -> infinity loss the theory describes (hard phase: L_N(T) alone is
        # low by sum_{k>N} k^-a = 5e-4 at N = 2000, 1.6% of L at T = 10^4); the optimum is unchanged
        model = op.load_model("random_features", N=cfg.n_modes, sigma=SIGMA, batch=BATCH, tail=True, **ab)
        print(f"{phase} phase (a, b) = ({ab['a']:g}, {ab['b']:g}), N = {cfg.n_modes}")
        rows = []
        for T in cfg.t_grid:
            sol = solve(model, T, cfg, args, records, f"{phase}-T{T}", controls={"eta": (0.0, ETA_MAX)})
            b = sol.baselines
            rows.append({"T": T, "optimal": sol.objective, "constant": b["best_constant"].objective,
                         "eta_constant": b["best_constant"].values["eta"],
                         "power_law": b["power_law"].objective, "c": b["power_law"].values["base_lr"],
                         "chi": b["power_law"].values["chi"], "eta": sol.controls["eta"].tolist(),
                         "status": sol.status, "winner": sol.stats["winner"],
                         "wall": sol.stats["script_wall_time"]})
        Ts = np.array([r["T"] for r in rows], dtype=float)
        sel = Ts >= cfg.fit_from
        fits = {k: fit_exponent(Ts[sel], np.array([r[k] for r in rows])[sel])
                for k in ("optimal", "constant", "power_law")}
        # local exponents between the two largest horizons (closest to the asymptotic regime)
        local = {k: float(-np.log(rows[-1][k] / rows[-2][k]) / np.log(Ts[-1] / Ts[-2]))
                 for k in ("optimal", "constant", "power_law")}
        pairs = {k: (-np.diff(np.log([r[k] for r in rows])) / np.diff(np.log(Ts))).tolist()
                 for k in ("optimal", "constant", "power_law")}
        out[phase] = {"params": ab, "rows": rows, "fit": fits, "local": local, "pairs": pairs,
                      "theory": theory(**ab), "fit_from": cfg.fit_from}
    return out


def collapse_and_anneal(sweep, cfg) -> dict:
    """Easy: spread of T^xi eta*(t/T) across T; hard: plateau level and annealed fraction."""
    res = {}
    a, b = PHASES["easy"]["a"], PHASES["easy"]["b"]
    xi = 1 - b / a
    curves = []
    for r in sweep["easy"]["rows"]:
        curves.append(np.asarray(r["eta"]) * r["T"] ** xi)
    C = np.array(curves)
    k0, nb = cfg.collapse_from, cfg.blocks
    mid = slice(nb // 10, nb - nb // 10)     # away from the warmup and the last blocks
    rows = sweep["easy"]["rows"][k0:]        # the horizons of the collapse (T >= 631 in the full run)
    spread = np.std(np.log(C[k0:, mid]), axis=0).mean()
    raw_spread = np.std(np.log(C[k0:, mid] / np.array([r["T"] ** xi for r in rows])[:, None]), axis=0).mean()
    # best xi from the collapse itself: minimise the spread of log(T^x eta) over x
    xs = np.linspace(0.0, 1.0, 201)
    Ts = np.array([r["T"] for r in rows], dtype=float)
    E = np.array([r["eta"] for r in rows])[:, mid]
    spreads = [np.std(np.log(E) + x * np.log(Ts)[:, None], axis=0).mean() for x in xs]
    res["easy"] = {"xi_theory": xi, "xi_collapse": float(xs[int(np.argmin(spreads))]),
                   "log_spread_collapsed": float(spread), "log_spread_raw": float(raw_spread)}
    hard = []

    def tail_fraction(eta, level):
        """Fraction of the horizon after the last block with eta >= level (the anneal)."""
        above = np.nonzero(eta >= level)[0]
        return (nb - (above[-1] + 1)) / nb if above.size else 1.0

    for r in sweep["hard"]["rows"]:
        eta = np.asarray(r["eta"])
        plateau = float(np.median(eta[nb // 10:nb // 2]))
        hard.append({"T": r["T"], "plateau": plateau, "anneal_fraction_half": tail_fraction(eta, 0.5 * plateau),
                     "anneal_fraction_90": tail_fraction(eta, 0.9 * plateau)})
    res["hard"] = hard
    return res


def momentum_and_batch(cfg, args, records) -> dict:
    ab = PHASES["easy"]
    T = cfg.single_t
    out = {}
    plain = op.load_model("random_features", N=cfg.n_modes, sigma=SIGMA, batch=BATCH, **ab)
    mom = op.load_model("random_features", N=cfg.n_modes, sigma=SIGMA, batch=BATCH, momentum=True, **ab)
    print(f"momentum and batch size, easy phase, T = {T}")
    s_plain = solve(plain, T, cfg, args, records, f"easy-sgd-T{T}", controls={"eta": (0.0, ETA_MAX)})
    s_mom = solve(mom, T, cfg, args, records, f"easy-momentum-T{T}",
                  controls={"eta": (0.0, ETA_MAX), "beta": (0.02, 1.0)})
    s_bat = solve(plain, T, cfg, args, records, f"easy-batch-T{T}", controls={"eta": (0.0, ETA_MAX), "m": (1.0, 100.0)},
                  budgets=[op.Budget("m", BATCH)])
    U = s_bat.protocol.values(np.arange(T) + 0.5)
    out["sgd"] = {"optimal": s_plain.objective, "constant": s_plain.baselines["best_constant"].objective}
    out["momentum"] = {"optimal": s_mom.objective, "constant": s_mom.baselines["best_constant"].objective,
                       "constant_values": s_mom.baselines["best_constant"].values,
                       "power_law": s_mom.baselines["power_law"].objective,
                       "eta": s_mom.controls["eta"].tolist(), "beta": s_mom.controls["beta"].tolist()}
    out["batch"] = {"optimal": s_bat.objective, "constant": s_bat.baselines["best_constant"].objective,
                    "power_law": s_bat.baselines["power_law"].objective, "mean_m": float(U["m"].mean()),
                    "eta": s_bat.controls["eta"].tolist(), "m": s_bat.controls["m"].tolist()}
    # the near-degenerate direction [docs/models.md]: to first order only eta/m as a function of the
    # number of samples seen matters. Take the optimal SGD schedule at m = 5 (ratio r(s) = eta*(t)/5
    # at s = 5t samples), a batch profile m'(t) with the same data budget, and eta'(t) = m'(t) r(s'(t))
    eta_sgd = s_plain.protocol.values(np.arange(T) + 0.5)["eta"]
    tt = (np.arange(T) + 0.5) / T
    degen = {}
    for name, prof in (("linear 0.5x -> 1.5x", 0.5 + tt), ("linear 1.5x -> 0.5x", 1.5 - tt),
                       ("step 0.5x / 1.5x", np.where(tt < 0.5, 0.5, 1.5))):
        m_prof = BATCH * prof / prof.mean()
        s_mid = np.cumsum(m_prof) - 0.5 * m_prof
        ratio = eta_sgd[np.minimum((s_mid / BATCH).astype(int), T - 1)] / BATCH
        eta_prof = np.minimum(m_prof * ratio, ETA_MAX)
        L = op.simulate(plain, None, {"eta": eta_prof, "m": m_prof}, T, n_out=2).final_loss
        degen[name] = {"loss": L, "relative_to_sgd_optimum": L / s_plain.objective - 1}
    out["batch"]["same_ratio_profiles"] = degen
    return out


def compute_optimal(cfg, args, records) -> dict:
    a, b = PHASES["easy"]["a"], PHASES["easy"]["b"]
    out = []
    print("compute-optimal allocation, easy phase (target with infinitely many modes)")
    for C in cfg.compute:
        rows = []
        for N in cfg.n_compute:
            T = int(round(C / N))
            if T < cfg.blocks:
                continue
            tail = float(sum_tail(a, N))
            model = op.load_model("random_features", N=N, batch=BATCH, sigma=math.sqrt(SIGMA ** 2 + tail), tail=True,
                                  a=a, b=b)
            sol = solve(model, T, cfg, args, records, None, starts=("best_baseline",),
                        controls={"eta": (0.0, ETA_MAX)})
            rows.append({"N": N, "T": T, "optimal": sol.objective, "status": sol.status,
                         "constant": sol.baselines["best_constant"].objective, "tail": tail,
                         "wall": sol.stats["script_wall_time"], "sol": sol})
            print(f"  C = {C:.2g} N = {N:5d} T = {T:6d}: L* = {sol.objective:.6g}, "
                  f"const {rows[-1]['constant']:.6g} ({rows[-1]['wall']:.1f} s)", flush=True)
        best = {}
        grid_n = [r["N"] for r in rows]
        for key in ("optimal", "constant"):
            L = np.array([r[key] for r in rows])
            lnN = np.log([r["N"] for r in rows])
            k = int(np.argmin(L))
            if 0 < k < len(rows) - 1:    # parabola through the minimum and its neighbours in log N
                p = np.polyfit(lnN[k - 1:k + 2], np.log(L[k - 1:k + 2]), 2)
                n_star = float(np.exp(-p[1] / (2 * p[0]))) if p[0] > 0 else float(rows[k]["N"])
            else:
                n_star = float(rows[k]["N"])
            best[key] = {"N_grid": rows[k]["N"], "N_star": n_star, "L": float(L[k]),
                         "at_grid_edge": k in (0, len(grid_n) - 1)}
        r = rows[[x["N"] for x in rows].index(best["optimal"]["N_grid"])]
        records.append(record(light(r["sol"]), f"compute-C{C:.0e}-N{r['N']}", args))
        out.append({"C": C, "best": best, "rows": [{k: v for k, v in x.items() if k != "sol"} for x in rows]})
    Cs = np.array([o["C"] for o in out])
    fit = {key: float(np.polyfit(np.log(Cs), np.log([o["best"][key]["N_star"] for o in out]), 1)[0])
           for key in ("optimal", "constant")}
    return {"sweeps": out, "fit_N_exponent": fit,
            "theory_N_exponent": {"optimal": 1 / (1 + a), "constant": 1 / (a + b)}}


def sum_tail(a, N):
    import scipy.special
    return scipy.special.zeta(a, N + 1)


# ---------------------------------------------------------------------------------------------

def figures(S, args):
    sweep, shapes, mb, comp = S["sweep"], S["shapes"], S["momentum_batch"], S["compute"]
    n_modes, single_t = S["config"]["n_modes"], S["config"]["single_t"]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (phase, res) in zip(axes, sweep.items()):
        Ts = np.array([r["T"] for r in res["rows"]], dtype=float)
        for key, style in (("optimal", "o-"), ("power_law", "s--"), ("constant", "^:")):
            L = np.array([r[key] for r in res["rows"]])
            ax.loglog(Ts, L, style, label=f"{key.replace('_', ' ')}: fit {res['fit'][key]:.3f}, "
                                          f"theory {res['theory'][key]:.3f}")
        ax.set_title(f"{phase} phase (a, b) = ({res['params']['a']:g}, {res['params']['b']:g}), N = {n_modes}"
                     + (" (quick run)" if S["quick"] else ""))
        ax.set_xlabel("T (steps)")
        ax.set_ylabel("final loss L(T)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, "random_features_scaling.png", args)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    a, b = PHASES["easy"]["a"], PHASES["easy"]["b"]
    xi = 1 - b / a
    blocks = len(sweep["easy"]["rows"][0]["eta"])
    centres = (np.arange(blocks) + 0.5) / blocks
    for r in sweep["easy"]["rows"]:
        axes[0].plot(centres, np.asarray(r["eta"]) * r["T"] ** xi, label=f"T = {r['T']}")
    delta = 2 * b - 1
    ref = sweep["easy"]["rows"][-1]
    k = int(0.3 * blocks)
    amp = ref["eta"][k] * ref["T"] ** xi / (1 - centres[k]) ** delta
    axes[0].plot(centres, amp * (1 - centres) ** delta, "k--", lw=1, label=f"(1 - t/T)^(2b-1), 2b-1 = {delta:g}")
    axes[0].set_yscale("log")
    lowest = min(min(np.asarray(r["eta"]) * r["T"] ** xi) for r in sweep["easy"]["rows"])
    axes[0].set_ylim(0.5 * lowest, None)
    axes[0].set_xlabel("t / T")
    axes[0].set_ylabel(f"T^xi eta*(t), xi = 1 - b/a = {xi:.3f}")
    axes[0].set_title(f"easy phase collapse (best xi from data {shapes['easy']['xi_collapse']:.2f})")
    axes[0].legend(fontsize=7)
    for r in sweep["hard"]["rows"]:
        axes[1].plot(centres, r["eta"], label=f"T = {r['T']}")
    axes[1].set_xlabel("t / T")
    axes[1].set_ylabel("eta*(t)")
    axes[1].set_title("hard phase: plateau, then anneal")
    axes[1].legend(fontsize=7)
    H = shapes["hard"]
    axes[2].semilogx([h["T"] for h in H], [h["plateau"] for h in H], "o-", label="plateau (median, 10-50% of T)")
    axes[2].semilogx([h["T"] for h in H], [h["anneal_fraction_half"] for h in H], "s--",
                     label="annealed fraction (eta < plateau/2)")
    axes[2].semilogx([h["T"] for h in H], [h["anneal_fraction_90"] for h in H], "^:",
                     label="annealed fraction (eta < 0.9 plateau)")
    axes[2].set_xlabel("T")
    axes[2].set_title("hard phase vs T")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, "random_features_collapse.png", args)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    m = mb["momentum"]
    axes[0].plot(centres, m["eta"], label="eta")
    axes[0].plot(centres, m["beta"], label="beta (EMA weight of the new gradient)")
    axes[0].plot(centres, np.array(m["eta"]) * np.array(m["beta"]), label="eta * beta")
    axes[0].set_yscale("log")
    axes[0].set_title(f"momentum, T = {single_t}: L* = {m['optimal']:.4g} "
                      f"(SGD {mb['sgd']['optimal']:.4g}, const {m['constant']:.4g})", fontsize=9)
    axes[0].set_xlabel("t / T")
    axes[0].legend(fontsize=8)
    bt = mb["batch"]
    axes[1].plot(centres, bt["eta"], label="eta")
    axes[1].plot(centres, np.array(bt["m"]) / 10, label="m / 10")
    axes[1].plot(centres, np.array(bt["m"]) / np.array(bt["eta"]) / 10, label="(m / eta) / 10")
    axes[1].set_yscale("log")
    axes[1].set_title(f"batch size, mean m = {bt['mean_m']:.3f}: L* = {bt['optimal']:.4g} "
                      f"(const {bt['constant']:.4g})", fontsize=9)
    axes[1].set_xlabel("t / T")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, "random_features_momentum_batch.png", args, readme=False)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in comp["sweeps"]:
        Ns = [r["N"] for r in s["rows"]]
        axes[0].loglog(Ns, [r["optimal"] for r in s["rows"]], "o-", label=f"optimal, C = {s['C']:.1e}")
        axes[0].loglog(Ns, [r["constant"] for r in s["rows"]], "^:", label=f"constant, C = {s['C']:.1e}")
        for key, mk in (("optimal", "o"), ("constant", "^")):
            axes[0].plot([s["best"][key]["N_grid"]], [s["best"][key]["L"]], mk, ms=12, mfc="none", mec="k")
    axes[0].set_xlabel("N (T = C / N)")
    axes[0].set_ylabel("L(T) + tail(N)")
    axes[0].legend(fontsize=7)
    Cs = [s["C"] for s in comp["sweeps"]]
    for key, style in (("optimal", "o-"), ("constant", "^:")):
        axes[1].loglog(Cs, [s["best"][key]["N_star"] for s in comp["sweeps"]], style,
                       label=f"{key}: N* ~ C^{comp['fit_N_exponent'][key]:.2f} "
                             f"(theory {comp['theory_N_exponent'][key]:.2f})")
    axes[1].set_xlabel("C = N T")
    axes[1].set_ylabel("compute-optimal N")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, "random_features_compute_optimal.png", args, readme=False)


def _figures_only(parser) -> None:
    parser.add_argument("--figures-only", action="store_true",
                        help="redraw the figures from DIR/random_features_scaling.json (seconds)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, extra=_figures_only)
    if args.figures_only:     # redraw from the stored summary
        S = json.loads((args.out / SUMMARY).read_text())
        args.quick = S["quick"]
        figures(S, args)
        return 0
    cfg = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    records: list = []
    sweep = horizon_sweep(cfg, args, records)
    shapes = collapse_and_anneal(sweep, cfg)
    mb = momentum_and_batch(cfg, args, records)
    comp = compute_optimal(cfg, args, records)
    write_runs(args.out / "random_features_scaling.h5", records)
    summary = {"sweep": sweep, "shapes": shapes, "momentum_batch": mb, "compute": comp,
               "config": dataclasses.asdict(cfg), "quick": bool(args.quick), "optimizer": OPTIMIZER,
               "wall_time": time.perf_counter() - t0}
    (args.out / SUMMARY).write_text(json.dumps(summary, indent=1, default=float))
    print(f"wrote {args.out / SUMMARY}")
    figures(summary, args)

    print(f"\nfitted vs theoretical exponents of L(T) (fit over T >= {cfg.fit_from}; 'last pair': "
          f"T = {cfg.t_grid[-2]} -> {cfg.t_grid[-1]})")
    print(f"{'phase':6s} {'schedule':10s} {'fit':>7s} {'last pair':>9s} {'theory':>7s}")
    for phase, res in sweep.items():
        for key in ("optimal", "power_law", "constant"):
            print(f"{phase:6s} {key:10s} {res['fit'][key]:7.3f} {res['local'][key]:9.3f} {res['theory'][key]:7.3f}"
                  f"   consecutive pairs: {' '.join(f'{v:.3f}' for v in res['pairs'][key])}")
    e = shapes["easy"]
    print(f"easy collapse: xi theory {e['xi_theory']:.3f}, best collapse {e['xi_collapse']:.3f}; "
          f"log-spread of T^xi eta* {e['log_spread_collapsed']:.3f} vs raw eta* {e['log_spread_raw']:.3f}")
    for h in shapes["hard"]:
        print(f"hard T = {h['T']:6d}: plateau {h['plateau']:.3f}, annealed fraction (eta < plateau/2) "
              f"{h['anneal_fraction_half']:.2f}, (eta < 0.9 plateau) {h['anneal_fraction_90']:.2f}")
    print(f"momentum T = {cfg.single_t}: optimal {mb['momentum']['optimal']:.6g}, best constant (eta, beta) "
          f"{mb['momentum']['constant']:.6g}, SGD optimal {mb['sgd']['optimal']:.6g}")
    print(f"batch T = {cfg.single_t}: optimal {mb['batch']['optimal']:.6g} (mean m {mb['batch']['mean_m']:.6f}), "
          f"best constant {mb['batch']['constant']:.6g}, SGD at m = 5 optimal {mb['sgd']['optimal']:.6g}")
    for name, d in mb["batch"]["same_ratio_profiles"].items():
        print(f"  batch profile {name}, eta/m kept as a function of samples seen: {d['loss']:.6g} "
              f"({100 * d['relative_to_sgd_optimum']:+.2f}% vs the SGD optimum)")
    for s in comp["sweeps"]:
        edge = ", at the grid edge" if s["best"]["constant"]["at_grid_edge"] else ""
        print(f"C = {s['C']:.1e}: N* optimal {s['best']['optimal']['N_star']:.1f} "
              f"(grid {s['best']['optimal']['N_grid']}), constant {s['best']['constant']['N_star']:.1f} "
              f"(grid {s['best']['constant']['N_grid']}{edge})")
    print(f"N* ~ C^x: optimal x = {comp['fit_N_exponent']['optimal']:.3f} (theory "
          f"{comp['theory_N_exponent']['optimal']:.3f}), constant x = {comp['fit_N_exponent']['constant']:.3f} "
          f"(theory {comp['theory_N_exponent']['constant']:.3f})")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
