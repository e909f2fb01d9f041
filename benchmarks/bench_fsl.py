"""The loss-curve surrogate fit and the shape search (schedule-families issue).

    PYTHONPATH=$PWD python benchmarks/run.py fsl        # about five minutes on 2 cores

1. Fitting the LLM loss-curve ansatz (opt_protocols.fsl.law, docs/fsl.md) to constant_24000,
   cosine_24000 and wsdcon_9 of the 400M model (the split on which the public multi-power-law
   predictor was measured; its fit takes about a minute). Target: under 5 s.
   Framework: ``opt_protocols.fsl.fit.fit`` with its defaults (numba evaluation with the exact
   Jacobian, two starts). Baseline, in the same run: the same ``fit`` call with the law's kernel
   (``opt_protocols.fsl.law._evaluate``, plain loops over steps and decays) run by the Python
   interpreter instead of compiled. Both optima are compared.
2. Shape search of one family on an ODE model: the generalized cosine (two shape parameters) for the
   committee machine's learning-rate problem (K = M = 2, sigma = 0.3, alpha_F = 20, eta in [0, 3]),
   200 candidate shapes x 20 base LRs = 4,000 simulations (``opt_protocols.search.shape_search`` with
   ``n_random=199``, no refinement, no Brent polish). Target: under 30 s. Baseline: the same 4,000
   losses computed by a loop of ``op.simulate(model, x0, schedule, t_final)`` (the public call a
   user would write) on the same shapes and base LRs; the best losses of both are compared.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from unittest import mock

import numpy as np

import opt_protocols as op
from opt_protocols.fsl import data, law
from opt_protocols.fsl.fit import fit
from opt_protocols.search import shape_search

FIT_SET = ("constant_24000", "cosine_24000", "wsdcon_9")
FIT_TARGET = 5.0
SEARCH_TARGET = 30.0
N_SHAPES, N_BASE = 200, 20


def fit_rows() -> list[dict]:
    curves = data.builtin_curves("400M")
    chosen = [curves[n] for n in FIT_SET]
    t0 = time.perf_counter()
    res = fit(chosen)
    t_fit = time.perf_counter() - t0
    # the same fit, the law's kernel run by the Python interpreter instead of compiled (the loops as written)
    with mock.patch.object(law, "_evaluate", law._evaluate.py_func):
        t0 = time.perf_counter()
        base = fit(chosen)
        t_base = time.perf_counter() - t0
    gap = abs(base.cost - res.cost) / res.cost
    return [dict(case="fit of the loss-curve ansatz, 400M: constant_24000 + cosine_24000 + wsdcon_9", value=t_fit,
                 unit="s", baseline=t_base,
                 note=f"target < {FIT_TARGET:g} s: {'MET' if t_fit < FIT_TARGET else 'MISSED'}; "
                      f"{len(res.starts)} starts, {res.n_evaluations} law evaluations (baseline {base.n_evaluations}); "
                      f"baseline: the same fit with the law's kernel interpreted by Python; Huber costs agree to "
                      f"{gap:.1e} (relative); c3 at its bound: {res.at_bounds}")]


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
