"""The loss-curve surrogate fit and the shape search (schedule-families issue).

    PYTHONPATH=$PWD python benchmarks/run.py fsl        # about three minutes on 2 cores

1. Fitting the LLM loss-curve ansatz (opt_protocols.fsl.law, docs/fsl.md) to constant_24000,
   cosine_24000 and wsdcon_9 of the 400M model (the split on which the public multi-power-law
   predictor was measured; its fit takes about a minute). Target: under 5 s.
   Framework: ``opt_protocols.fsl.fit.fit`` with its defaults (numba evaluation with the exact
   Jacobian, two starts). Baseline, in the same run: the same fit (the same two starting points,
   the same scipy ``least_squares`` call, Huber on log-loss) with the law evaluated the
   straightforward way, a Python loop over the logged steps summing the loss-reduction term with
   NumPy, and the Jacobian by finite differences. Both optima are compared.
2. Shape search of one family on an ODE model: the generalized cosine (two shape parameters) for the
   committee machine's learning-rate problem (K = M = 2, sigma = 0.3, alpha_F = 20, eta in [0, 3]),
   200 candidate shapes x 20 base LRs = 4,000 simulations (``opt_protocols.search.shape_search`` with
   ``n_random=199``, no refinement, no Brent polish). Target: under 30 s. Baseline: the same 4,000
   losses computed by a loop of ``op.simulate(model, x0, schedule, t_final)`` (the public call a
   user would write) on the same shapes and base LRs; the best losses of both are compared.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import replace

import numpy as np
from scipy import optimize

import opt_protocols as op
from opt_protocols.fsl import data
from opt_protocols.fsl.fit import HUBER_DELTA, LOG_BOUNDS, fit
from opt_protocols.fsl.law import PARAM_NAMES, decay_terms
from opt_protocols.search import shape_search

FIT_SET = ("constant_24000", "cosine_24000", "wsdcon_9")
FIT_TARGET = 5.0
SEARCH_TARGET = 30.0
N_SHAPES, N_BASE = 200, 20


def python_law(p: np.ndarray, eta: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The ansatz at ``steps``, written out directly (docs/fsl.md section 2): a loop over the steps."""
    L0, c1, s, c2, c3, c4, g = p
    tau, idx, dv = decay_terms(eta)
    out = np.empty(steps.size)
    for j, k in enumerate(steps):
        sel = idx <= k
        ti, d = tau[idx[sel]], dv[sel]
        red = np.sum(d * (c3 + ti ** -s) * (1.0 - (1.0 + c4 * (tau[k] - ti)) ** -g))
        out[j] = L0 + c1 * tau[k] ** -s - c2 * red
    return out


def fit_rows() -> list[dict]:
    curves = data.builtin_curves("400M")
    chosen = [curves[n] for n in FIT_SET]
    t0 = time.perf_counter()
    res = fit(chosen)
    t_fit = time.perf_counter() - t0
    eta_ref = res.law.eta_ref
    items = [(c.eta / eta_ref, c.steps[c.fit_mask()], c.loss[c.fit_mask()]) for c in chosen]
    y = np.concatenate([it[2] for it in items])
    lo = np.array([LOG_BOUNDS[n][0] for n in PARAM_NAMES])
    hi = np.array([LOG_BOUNDS[n][1] for n in PARAM_NAMES])

    def residuals(theta):
        p = np.exp(theta)
        L = np.concatenate([python_law(p, eta, steps) for eta, steps, _ in items])
        return np.log(np.maximum(L, 1e-300)) - np.log(y)

    t0 = time.perf_counter()
    best = None
    for st in res.starts:   # the same starting points as the framework's fit
        th0 = np.clip(np.log([st["start"][n] for n in PARAM_NAMES]), lo + 1e-9, hi - 1e-9)
        r = optimize.least_squares(residuals, th0, jac="2-point", bounds=(lo, hi), loss="huber", f_scale=HUBER_DELTA,
                                   method="trf", x_scale="jac", max_nfev=400, ftol=1e-12, xtol=1e-12, gtol=1e-10)
        best = r if best is None or r.cost < best.cost else best
    t_base = time.perf_counter() - t0
    gap = abs(best.cost - res.cost) / res.cost
    law_gap = max(abs(math.log(getattr(res.law, n)) - v) for n, v in zip(PARAM_NAMES, best.x) if n != "c3")
    return [dict(case="fit of the loss-curve ansatz, 400M: constant_24000 + cosine_24000 + wsdcon_9", value=t_fit,
                 unit="s", baseline=t_base,
                 note=f"target < {FIT_TARGET:g} s: {'MET' if t_fit < FIT_TARGET else 'MISSED'}; "
                      f"{len(res.starts)} starts, {res.n_evaluations} law evaluations; baseline: the same fit with a "
                      f"Python-loop law and finite-difference Jacobian; Huber costs agree to {gap:.1e} (relative), "
                      f"log-parameters other than c3 to {law_gap:.1e}; c3 at its bound in both: {res.at_bounds}")]


def search_rows() -> list[dict]:
    m = op.load_model("committee", K=2, M=2, sigma=0.3)
    x0 = m.initial_state()
    T = 20.0
    base = np.geomspace(0.03, 3.0, N_BASE)
    op.simulate(m, x0, 0.5, T)                                    # compiled before timing
    t0 = time.perf_counter()
    res = shape_search(m, "cosine", T, controls={"eta": (0.0, 3.0)}, base_lrs=base, n_random=N_SHAPES - 1,
                          n_refine=0, polish=False)
    t_search = time.perf_counter() - t0
    shapes = [c.schedule for c in res.candidates]
    t0 = time.perf_counter()
    losses = np.array([[float(op.simulate(m, x0, replace(s, base_lr=float(b)), T).loss[-1]) for b in base]
                       for s in shapes])
    t_base = time.perf_counter() - t0
    best_loop = float(np.nanmin(losses))
    rel = abs(res.best.loss - best_loop) / best_loop
    return [dict(case=f"shape search, generalized cosine on the committee LR problem: {len(shapes)} shapes x "
                      f"{N_BASE} base LRs", value=t_search, unit="s", baseline=t_base,
                 note=f"target < {SEARCH_TARGET:g} s: {'MET' if t_search < SEARCH_TARGET else 'MISSED'}; "
                      f"{res.n_evaluations} simulations; baseline: op.simulate of every (shape, base LR); best "
                      f"losses {res.best.loss:.8f} vs {best_loop:.8f} ({rel:.1e} relative); load average "
                      f"{os.getloadavg()[0]:.1f}")]


def run() -> list[dict]:
    return fit_rows() + search_rows()
