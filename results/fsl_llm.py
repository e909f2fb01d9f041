"""The functional-scaling-law surrogate [FSL25] (docs/models.md section 6): exact on the random-feature
model, fitted to real LLM loss curves, and optimised with the project's optimal control.

    python results/fsl_llm.py [--quick] [--out DIR]   # from the repository root

Runtime: 2.5 min on an idle 2-core machine (--quick: 5 s).

1. Random features, the section-6 reference (lambda_j = j^(-4), lambda_j (w*_j)^2 = j^(-3), i.e.
   (s, beta) = (0.5, 4), N = 128, sigma = 3, batch 1, 10^4 steps, peak eta 0.01): the final excess
   risk E = L/2 of constant, cosine-to-0 and WSD (80% stable, linear to 0) from the exact recursion
   (op.simulate), from the discrete Volterra equation summed directly (opt_protocols.fsl.volterra,
   O(T^2 N)) and from its first-order intrinsic-time form. ``--quick``: 500 steps.
2. Real LLM loss curves (25M, 100M, 400M parameters; opt_protocols/data/llm_loss_curves): the
   ansatz of opt_protocols.fsl.law fitted on constant_24000, cosine_24000 and wsdcon_9 of one
   model size (Huber on log-loss, delta 1e-3, post-warmup; the split on which the public
   multi-power-law predictor was measured, :data:`MPL_400M`), then predicting the six other curves
   of that size (WSD with geometric and linear decay, wsdcon_3 and wsdcon_18, and the 72,000-step
   constant and cosine runs: three times the fitted horizon). Per curve: RMSE, worst and final-step
   relative error; per size: the mean held-out RMSE and the final-loss gain of WSD
   (wsd_20000_24000) over cosine_24000, predicted and measured. The same with the law fitted on the
   cosine run alone. ``--quick``: 25M only, a coarse fit, the 24,000-step predictions.
3. For each size, the schedule minimising the fitted law's loss at step 23,999 under
   3e-4 >= eta_{W+1} >= eta_{W+2} >= ... >= 0 after the same 2,160-step warmup
   (opt_protocols.fsl.optimise: the law as a map model, op.solve with monotone={"eta": "decreasing"},
   adjoint method, 200 blocks; ``--quick``: 20), against the law's prediction for the cosine and WSD
   runs and their measured final losses.

Outputs in DIR: ``fsl_llm.json`` (every number above and the timings), ``fsl_llm.h5`` (the optimal
solutions of part 3, one run per model size, loadable with op.load) and ``fsl_llm.png``.
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
from opt_protocols import storage
from opt_protocols.fsl import data, optimise, volterra
from opt_protocols.fsl.fit import curve_errors, fit
from opt_protocols.models.random_features import fsl_params
from opt_protocols.solution import to_record

HERE = Path(__file__).resolve().parent
OUTPUTS = ("fsl_llm.json", "fsl_llm.h5", "fsl_llm.png")

#: docs/models.md section 6: final excess risk E = L/2 at the reference
REFERENCE = {"constant": 0.04037, "cosine": 0.02448, "wsd": 0.02235}
RF = dict(**fsl_params(0.5, 4.0), sigma=3.0, batch=1.0, N=128)
PEAK_ETA = 0.01
SCHEDULES = {"constant": sch.Constant(base_lr=PEAK_ETA), "cosine": sch.Cosine(base_lr=PEAK_ETA),
             "wsd": sch.WSD(base_lr=PEAK_ETA, decay_fraction=0.2)}
FIT_SET = ("constant_24000", "cosine_24000", "wsdcon_9")
#: The public multi-power-law predictor (Luo et al. 2025) fitted on FIT_SET of the 400M model, as
#: measured for this project with its public code: mean held-out RMSE (100M: 0.0059), final-loss error
#: of the WSD runs, final-loss gain of WSD over cosine predicted and measured.
MPL_400M = {"mean_rmse": 0.0073, "mean_rmse_100M": 0.0059, "wsd_final_error": 0.008, "gap_predicted": 0.057,
            "gap_measured": 0.017}
COMPARE = ("cosine_24000", "wsd_20000_24000", "wsdld_20000_24000")
HORIZON = 24000
FULL = {"rf_steps": 10_000, "sizes": data.SIZES, "held_out": tuple(n for n in data.NAMES if n not in FIT_SET),
        "coarse": False, "intervals": 200, "single": True}
QUICK = {"rf_steps": 500, "sizes": ("25M",),
         "held_out": ("wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18"),
         "coarse": True, "intervals": 20, "single": False}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="500 RF steps, 25M only, coarse fit, 20 blocks")
    p.add_argument("--out", type=Path, default=HERE, metavar="DIR", help="output directory (default: results/)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def random_features_check(steps: int) -> dict:
    """Exact recursion, direct Volterra sum and first-order form at the section-6 reference."""
    m = op.load_model("random_features", **RF)
    lam, c0, sigma = volterra.rf_arrays(m)
    out = {}
    for name, s in SCHEDULES.items():
        eta = volterra.per_step(s, steps, "eta")
        t0 = time.perf_counter()
        exact = op.simulate(m, protocol={"eta": s}, t_final=steps, n_out=steps + 1).loss
        t1 = time.perf_counter()
        vol = volterra.volterra_loss(lam, c0, sigma, eta)
        t2 = time.perf_counter()
        first = volterra.intrinsic_time_loss(lam, c0, sigma, eta)
        t3 = time.perf_counter()
        out[name] = {"E_recursion": exact[-1] / 2, "E_volterra": vol[-1] / 2, "E_first_order": first[-1] / 2,
                     "reference": REFERENCE[name] if steps == 10_000 else None,
                     "volterra_max_rel_diff": float(np.max(np.abs(vol - exact) / exact)),
                     "first_order_final_rel_err": float((first[-1] - exact[-1]) / exact[-1]),
                     "first_order_max_rel_err": float(np.max(np.abs(first - exact) / exact)),
                     "time_recursion_s": t1 - t0, "time_volterra_s": t2 - t1, "time_first_order_s": t3 - t2,
                     "curves": {"exact": exact, "first_order": first}}
        r = out[name]
        ref = f" (docs/models.md {r['reference']})" if r["reference"] else ""
        print(f"  {name:8s} E: recursion {r['E_recursion']:.6f}{ref}, Volterra {r['E_volterra']:.6f} (max rel diff "
              f"{r['volterra_max_rel_diff']:.1e}), first order {r['E_first_order']:.6f} (final "
              f"{100 * r['first_order_final_rel_err']:+.3f}%, max {100 * r['first_order_max_rel_err']:.3f}%); "
              f"{r['time_recursion_s']:.2f} / {r['time_volterra_s']:.2f} / {r['time_first_order_s']:.3f} s", flush=True)
    return out


def llm_size(size: str, cfg: dict) -> dict:
    """Fit on FIT_SET, predict the held-out curves, optimise the schedule."""
    curves = data.builtin_curves(size)
    t0 = time.perf_counter()
    res = fit([curves[n] for n in FIT_SET], coarse=cfg["coarse"], n_starts=1 if cfg["coarse"] else 2)
    t_fit = time.perf_counter() - t0
    print(f"  {size}: {res.summary()}", flush=True)
    errors = {}
    for name in (*FIT_SET, *cfg["held_out"]):
        e = curve_errors(res.law, curves[name])
        e["role"] = "fit" if name in FIT_SET else "held-out"
        errors[name] = e
        print(f"    {name:18s} {e['role']:8s} RMSE {e['rmse']:.4f}  worst {100 * e['worst_rel']:.2f}% (step "
              f"{e['worst_step']})  final {e['final_pred']:.4f} vs {e['final_obs']:.4f} "
              f"({100 * e['final_rel']:+.2f}%)", flush=True)
    held = [e for e in errors.values() if e["role"] == "held-out"]
    summary = {"mean_held_out_rmse": float(np.mean([e["rmse"] for e in held])),
               "worst_held_out_final_rel": float(max(abs(e["final_rel"]) for e in held)),
               "gap_predicted": float(res.law(curves["cosine_24000"].eta, [HORIZON - 1])[0]
                                      - res.law(curves["wsd_20000_24000"].eta, [HORIZON - 1])[0]),
               "gap_measured": float(curves["cosine_24000"].loss[curves["cosine_24000"].fit_mask()][-1]
                                     - curves["wsd_20000_24000"].loss[curves["wsd_20000_24000"].fit_mask()][-1])}
    print(f"    mean held-out RMSE {summary['mean_held_out_rmse']:.4f}, worst held-out final-step error "
          f"{100 * summary['worst_held_out_final_rel']:.2f}%, WSD-vs-cosine final-loss gain predicted "
          f"{summary['gap_predicted']:.4f}, measured {summary['gap_measured']:.4f} "
          f"(multi-power law on the 400M split: RMSE {MPL_400M['mean_rmse']}, gain {MPL_400M['gap_predicted']} vs "
          f"{MPL_400M['gap_measured']})", flush=True)
    t1 = time.perf_counter()
    warmup = optimise.linear_warmup(data.WARMUP, data.PEAK)
    opt = optimise.optimise(res.law, HORIZON, warmup, intervals=cfg["intervals"])
    t_opt = time.perf_counter() - t1
    compare = {n: {"law_final": float(res.law(curves[n].eta, [HORIZON - 1])[0]),
                   "data_final": float(curves[n].loss[curves[n].fit_mask()][-1])} for n in COMPARE}
    print(f"    {opt.summary()}")
    single = None
    if cfg["single"]:     # the same law fitted on the cosine run alone (docs/models.md: fit on one schedule)
        one = fit([curves["cosine_24000"]], n_starts=2)
        single = {"law": one.law.to_dict(), "at_bounds": one.at_bounds, "time_s": one.wall_time,
                  "errors": {n: curve_errors(one.law, curves[n]) for n in data.NAMES}}
        worst = max((e["worst_rel"], n) for n, e in single["errors"].items() if n != "cosine_24000")
        print(f"    fitted on cosine_24000 alone: worst held-out relative error {100 * worst[0]:.2f}% ({worst[1]})")
    for n, c in compare.items():
        print(f"    {n:18s} law {c['law_final']:.5f} ({100 * (c['law_final'] - opt.final_loss) / opt.final_loss:+.3f}% "
              f"against the optimum), measured {c['data_final']:.5f}")
    decay_start = int(np.argmax(opt.eta[data.WARMUP + 1:] < 0.999 * data.PEAK)) + data.WARMUP + 1
    return {"fit": {"law": res.law.to_dict(), "curves": res.curves, "rms_log_residual": res.rms_log_residual,
                    "at_bounds": res.at_bounds, "message": res.message, "time_s": t_fit, "starts": res.starts},
            "errors": errors, "summary": summary,
            "optimum": {"final_loss": opt.final_loss, "surrogate_error": opt.surrogate_error, "time_s": t_opt,
                        "status": opt.solution.status, "iterations": opt.solution.stats.get("iterations"),
                        "decay_start_step": decay_start, "final_eta": float(opt.eta[-1]),
                        "baselines": {k: b.objective for k, b in opt.solution.baselines.items()}},
            "compare": compare, "fit_on_cosine_only": single, "_opt": opt, "_law": res.law, "_curves": curves}


def figure(rf: dict, llm: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = list(llm)
    fig, ax = plt.subplots(2, 1 + len(sizes), figsize=(4.2 * (1 + len(sizes)), 7.6), squeeze=False)
    a = ax[0, 0]
    for i, (name, r) in enumerate(rf.items()):
        t = np.arange(r["curves"]["exact"].size)
        a.plot(t[1:], r["curves"]["exact"][1:] / 2, color=f"C{i}", lw=1.5, label=f"{name}: recursion")
        a.plot(t[1:], r["curves"]["first_order"][1:] / 2, color=f"C{i}", ls="--", lw=1,
               label=f"first order ({100 * r['first_order_max_rel_err']:.2f}% max)")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("excess risk E = L/2")
    a.set_title("random features (s, beta) = (0.5, 4), N = 128", fontsize=9)
    a.legend(fontsize=6)
    b = ax[1, 0]
    b.axis("off")
    lines = [f"{'E = L/2':9s} {'recursion':>9s} {'Volterra':>9s} {'1st order':>9s}"]
    for name, r in rf.items():
        lines.append(f"{name:9s} {r['E_recursion']:9.6f} {r['E_volterra']:9.6f} {r['E_first_order']:9.6f} "
                     f"({100 * r['first_order_final_rel_err']:+.2f}%)")
    lines.append(f"Volterra vs recursion: max rel. diff {max(r['volterra_max_rel_diff'] for r in rf.values()):.1e}")
    b.text(0.0, 0.9, "\n".join(lines), family="monospace", fontsize=7, va="top")
    for col, size in enumerate(sizes, start=1):
        r = llm[size]
        law, curves, opt = r["_law"], r["_curves"], r["_opt"]
        a = ax[0, col]
        for i, (name, e) in enumerate(r["errors"].items()):
            c = curves[name]
            mask = c.fit_mask()
            a.plot(c.steps[mask], c.loss[mask], ".", ms=1.5, color=f"C{i}")
            a.plot(c.steps[mask], law(c.eta, c.steps[mask]), color=f"C{i}", lw=1,
                   ls="-" if e["role"] == "fit" else "--", label=f"{name} ({e['role']}, {100 * e['worst_rel']:.2f}%)")
        a.set_xlabel("step")
        a.set_ylabel("training loss")
        a.set_title(f"{size}: dots data, lines law (worst rel. error)", fontsize=9)
        a.legend(fontsize=6)
        a = ax[1, col]
        k = np.arange(opt.eta.size)
        a.plot(k, opt.eta, color="k", lw=2, label=f"optimal monotone: {opt.final_loss:.4f}")
        for i, n in enumerate(COMPARE[:2]):
            a.plot(k, curves[n].eta, color=f"C{i}", lw=1, label=f"{n}: law {r['compare'][n]['law_final']:.4f}, "
                   f"measured {r['compare'][n]['data_final']:.4f}")
        a.set_xlabel("step")
        a.set_ylabel("learning rate")
        a.set_title(f"{size}: predicted loss at step {HORIZON - 1}", fontsize=9)
        a.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON-able: {type(v).__name__}")


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    if args.quick:
        print("quick mode: 500 random-feature steps, 25M only, coarse fit: not the reference numbers")
    print(f"1. random features, section-6 reference, {cfg['rf_steps']} steps")
    rf = random_features_check(cfg["rf_steps"])
    print("2-3. LLM loss curves: fit, held-out prediction, optimal monotone schedule")
    llm = {size: llm_size(size, cfg) for size in cfg["sizes"]}
    records = []
    for size, r in llm.items():
        sol = r["_opt"].solution
        rec = to_record(sol, f"fsl-optimum-{size}")
        rec.attrs.update(quick=bool(args.quick), law=r["fit"]["law"], size=size,
                         exact_final_loss=r["optimum"]["final_loss"], compare=r["compare"])
        records.append(rec)
    rf_out = {k: {kk: vv for kk, vv in v.items() if kk != "curves"} for k, v in rf.items()}
    llm_out = {s: {k: v for k, v in r.items() if not k.startswith("_")} for s, r in llm.items()}
    with open(args.out / "fsl_llm.json", "w") as f:
        json.dump({"quick": bool(args.quick), "random_features": rf_out, "llm": llm_out}, f, indent=1,
                  default=_json_default)
    storage.write_fresh(args.out / "fsl_llm.h5", records)
    figure(rf, llm, args.out / "fsl_llm.png")
    print(f"wrote {', '.join(str(args.out / o) for o in OUTPUTS)} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
