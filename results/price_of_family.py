"""The price of a schedule family: each family's best member against the optimal protocol [NS26]
(docs/models.md section 7).

    python results/price_of_family.py [--quick] [--out DIR]   # from the repository root

Runtime: 11.6 min on an idle 2-core machine (--quick: 6 s).

For every built-in model at its reference setup the optimal protocol comes from ``op.solve``; the
best member of every family of :mod:`opt_protocols.schedules` comes from two independent
routes, and the better one is the family's value:

* the shape search (:func:`opt_protocols.search.shape_search`: random shapes, each at its own best
  base LR, then coordinate descent, Brent on the base LR; static variables searched with the shape);
* the direct optimisation of base LR and shape parameters (:func:`opt_protocols.search.family_optimum`:
  L-BFGS-B on the exact gradient for maps, Nelder-Mead for ODEs, from a small grid; static
  variables held at their best-constant values). Not defined under a budget.

The price of a family is (family best - optimum)/optimum. Cases (what the family acts on):

* ``committee_lr``: soft committee K = M = 2, sigma = 0.3, alpha_F = 20, eta(alpha) in [0, 3] (default
  initial overlaps), 100 intervals;
* ``dropout``: K = 2, M = 1, sigma = 0.2, eta = 1, alpha_F = 5, Q0 = R0 = 0: the family acts on the keep
  probability r(alpha) in [0, 1] (its "base LR" is r's peak, the initial keep probability of the
  decaying families), and the test-time scale p_test in [0, 1] is searched with the shape (the direct
  fit holds p_test at the best constant's value, so it can only be worse); 50 intervals;
* ``curriculum``: easy fraction u(alpha) in [0, 1] under the budget mean(u) = 1/2, alpha_F = 12, eta = 3:
  the budget fixes the base (base = 1/(2 mean(shape)); a shape with mean(shape) < 1/2 would need u > 1
  and is infeasible), so only the shape is searched: the families are orderings of the easy examples;
  240 intervals;
* ``dae``: DAE noise schedule D(tau) in [0.01, 0.99], D_F = 0.3, tau_F = 4: the family acts on D, clipped
  to [0.01, 0.99] (a shape decaying to 0 ends at the bound 0.01); 100 intervals;
* ``rf_T100``, ``rf_T1000``: random features [BM26] (a, b, sigma, m, N) = (2, 2, 0.5, 5, 500), eta in
  [0, 2], T = 100 and 1000 steps, the optimum per step (T blocks; at T = 1000 with a raised
  iteration limit of the adjoint's L-BFGS-B, which needs ~19,000 iterations there).

Outputs in DIR: ``price_of_family.json`` (the table), ``price_of_family.h5`` (one run per case: the
optimal solution with every family's best member added as a baseline ``family:<name>``, with its
loss curve) and ``price_of_family.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import opt_protocols as op
from opt_protocols import schedules as sch
from opt_protocols import search, storage
from opt_protocols.control.baselines import attach_curves
from opt_protocols.control.evaluate import Evaluator
from opt_protocols.control.problem import make_problem
from opt_protocols.solution import to_record

HERE = Path(__file__).resolve().parent
OUTPUTS = ("price_of_family.json", "price_of_family.h5", "price_of_family.png")

FAMILIES = tuple(sch.FAMILIES)
QUICK_FAMILIES = ("constant", "cosine", "wsd")
FULL = {"n_random": 48, "n_refine": 3, "min_step": 1.0 / 512, "max_evaluations": 6000, "direct": True}
QUICK = {"n_random": 4, "n_refine": 1, "min_step": 1.0 / 16, "max_evaluations": 300, "direct": False}


def _zero_overlaps(m):
    return m.initial_state(Q=np.zeros((2, 2)), R=np.zeros((2, 1)))


#: name -> (model name, model parameters, horizon, problem keywords, solve keywords, what the family acts on)
CASES = {
    "committee_lr": ("committee", {"K": 2, "M": 2, "sigma": 0.3}, 20.0, {"controls": {"eta": (0.0, 3.0)}},
                     {"intervals": 100}, "eta"),
    "dropout": ("committee", {"K": 2, "M": 1, "sigma": 0.2}, 5.0,
                {"controls": {"r": (0.0, 1.0)}, "fixed": {"eta": 1.0}, "static": {"p_test": (0.0, 1.0)},
                 "x0": _zero_overlaps}, {"intervals": 50}, "r (p_test searched with the shape)"),
    "curriculum": ("curriculum", {}, 12.0, {"controls": {"u": (0.0, 1.0)}, "fixed": {"eta": 3.0},
                                            "budgets": [{"control": "u", "mean": 0.5}]},
                   {"intervals": 240}, "u, base fixed by the budget mean(u) = 1/2"),
    "dae": ("dae", {"D_F": 0.3}, 4.0, {"controls": {"D": (0.01, 0.99)}},
            {"intervals": 100, "solver_options": {"ipopt.honor_original_bounds": "yes"}}, "D, clipped to [0.01, 0.99]"),
    "rf_T100": ("random_features", {}, 100, {"controls": {"eta": (0.0, 2.0)}}, {"intervals": 100}, "eta"),
    # per step: L-BFGS-B needs ~19,000 iterations here (Adjoint's default limit is 3,000)
    "rf_T1000": ("random_features", {}, 1000, {"controls": {"eta": (0.0, 2.0)}},
                 {"method": op.Adjoint(intervals=1000, max_iter=30_000)}, "eta"),
}
QUICK_CASES = ("dropout", "rf_T100")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two cases, three families, a tiny search (seconds)")
    p.add_argument("--out", type=Path, default=HERE, metavar="DIR", help="output directory (default: results/)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), help="only these cases")
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), help="only these families")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def run_case(name: str, cfg: dict, families) -> tuple[op.Solution, list[dict]]:
    model_name, params, T, pkw, skw, acts_on = CASES[name]
    m = op.load_model(model_name, **params)
    pkw = {k: (v(m) if callable(v) else v) for k, v in pkw.items()}
    t0 = time.perf_counter()
    sol = op.solve(m, t_final=T, **pkw, **skw)
    t_solve = time.perf_counter() - t0
    problem = make_problem(m, t_final=T, **pkw)
    budgeted = bool(problem.budgets)
    rows, extra = [], {}
    for fam in families:
        t1 = time.perf_counter()
        res = search.shape_search(problem, fam, n_random=cfg["n_random"], n_refine=cfg["n_refine"],
                                  min_step=cfg["min_step"], max_evaluations=cfg["max_evaluations"], seed=1)
        t_search = time.perf_counter() - t1
        direct, t_direct = None, 0.0
        if cfg["direct"] and not budgeted:
            t2 = time.perf_counter()
            direct = search.family_optimum(problem, fam, fixed_params={})
            t_direct = time.perf_counter() - t2
        best = res.as_baseline(f"family:{fam}")
        route = "search"
        if direct is not None and direct.objective < best.objective:
            best = direct
            best.name, route = f"family:{fam}", "direct"
        extra[best.name] = best
        rows.append({"case": name, "family": fam, "loss": best.objective, "route": route,
                     "search_loss": res.best.loss, "direct_loss": None if direct is None else direct.objective,
                     "price": (best.objective - sol.objective) / sol.objective,
                     "schedule": res.best.schedule.to_spec() if route == "search" else
                     sch.family(fam)(**{k: v for k, v in direct.values.items() if k in sch.family(fam)().params()}
                                     ).to_spec(),
                     "static": best.static, "search_time_s": t_search, "direct_time_s": t_direct,
                     "search_evaluations": res.n_evaluations})
        print(f"  {name:12s} {fam:17s} {best.objective:.7g} ({route}; search {res.best.loss:.7g} in {t_search:.1f} s"
              + (f", direct {direct.objective:.7g} in {t_direct:.1f} s" if direct is not None else "")
              + f"): price {100 * rows[-1]['price']:.3f}%", flush=True)
    ev = Evaluator(problem)
    attach_curves(problem, ev, extra, sol.trajectory.t)
    sol.baselines.update(extra)
    sol.attrs["case"] = {"name": name, "acts_on": acts_on, "solve_time_s": t_solve}
    print(f"{name}: optimum {sol.objective:.7g} ({sol.status}, verification gap "
          f"{sol.verification.get('relative_gap', float('nan')):.1e}, {t_solve:.1f} s, {acts_on}); closest family "
          f"{min(rows, key=lambda r: r['loss'])['family']}", flush=True)
    return sol, rows


def figure(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter
    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(3.6 * len(names), 6.4), squeeze=False)
    for col, name in enumerate(names):
        sol, rows = results[name]
        rows = sorted(rows, key=lambda r: r["price"])
        a = axes[0, col]
        prices = [max(100 * r["price"], 1e-4) for r in rows]
        a.barh(range(len(rows)), prices, color=["C2" if i == 0 else "C0" for i in range(len(rows))])
        a.set_yticks(range(len(rows)), [r["family"] for r in rows], fontsize=7)
        a.invert_yaxis()
        a.set_xscale("log")
        a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_xlabel("price: loss above the optimum (%)", fontsize=8)
        a.set_title(f"{name}\noptimum {sol.objective:.6g}", fontsize=9)
        a.tick_params(labelsize=7)
        a = axes[1, col]
        ctrl = next(iter(sol.controls))
        v = sol.controls[ctrl]
        a.step(sol.t_controls, np.append(v, v[-1]), where="post", color="k", lw=1.5, label="optimal")
        t = np.linspace(0.0, sol.t_controls[-1], 801)
        for r, color in zip(rows[:2], ("C2", "C1")):
            b = sol.baselines[f"family:{r['family']}"]
            a.plot(t, b.protocol.values(t)[ctrl], color=color, lw=1.2,
                   label=f"{r['family']} (+{100 * r['price']:.2f}%)")
        a.set_xlabel(sol.time_name, fontsize=8)
        a.set_ylabel(ctrl, fontsize=8)
        a.legend(fontsize=7)
        a.tick_params(labelsize=7)
    fig.suptitle("Price of the schedule family: best member of each family against the optimal protocol "
                 "(op.solve)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    cfg = QUICK if args.quick else FULL
    cases = args.cases or (QUICK_CASES if args.quick else tuple(CASES))
    families = args.families or (QUICK_FAMILIES if args.quick else FAMILIES)
    if args.quick:
        print("quick mode: two cases, three families, a tiny search: not the reference numbers")
    results, table, records = {}, [], []
    for name in cases:
        sol, rows = run_case(name, cfg, families)
        results[name] = (sol, rows)
        table += rows
        rec = to_record(sol, f"price-{name}")
        rec.attrs["quick"] = bool(args.quick)
        rec.attrs["price_of_family"] = rows
        records.append(rec)
    summary = {name: {"optimum": sol.objective, "status": sol.status, "acts_on": CASES[name][5],
                      "closest": min(rows, key=lambda r: r["loss"])["family"],
                      "closest_price": min(r["price"] for r in rows)} for name, (sol, rows) in results.items()}
    with open(args.out / "price_of_family.json", "w") as f:
        json.dump({"quick": bool(args.quick), "cases": summary, "table": table}, f, indent=1)
    storage.write_fresh(args.out / "price_of_family.h5", records)
    figure(results, args.out / "price_of_family.png")
    print(f"\n{'case':12s} {'optimum':>11s}  closest family (price)")
    for name, s in summary.items():
        print(f"{name:12s} {s['optimum']:11.7g}  {s['closest']} (+{100 * s['closest_price']:.3f}%)")
    print(f"wrote {', '.join(str(args.out / o) for o in OUTPUTS)} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
