"""Check an optimal protocol against the learning process itself: finite-N SGD simulations.

``validate(solution, N, seeds)`` runs the model's finite-N simulator (``sgd`` in the model
module) with the optimal protocol and with the best-constant baseline and reports the
simulated final loss (mean and standard error over seeds) next to the ODE's prediction.
The result is attached to the solution (``solution.validation``) and stored with the run.

The model is loaded again from the solution's source. If a user's model file changed since the
run was made (its SHA-256 differs from the one stored with the run), :func:`model_for` refuses
with a one-line error: the check would use other equations than the optimum. A built-in model
that changed (another package version) gives a warning.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .model import Model, load_model
from .sgd import simulate_sgd
from .simulate import simulate
from .solution import Solution


class ModelChangedError(ValueError):
    """The model file of a stored run differs from the one the run was computed with."""


def model_for(sol: Solution, static: dict[str, float] | None = None, check: bool = True) -> Model:
    """The solution's model, loaded from its source, with the problem's constants and the given
    static values written into its parameters. ``check``: refuse a model file that changed."""
    params = {k: v for k, v in sol.params.items() if v is not None}
    base = load_model(sol.model_source, **params)
    stored = sol.provenance.get("model_sha256")
    if check and stored:
        now = base.provenance().get("model_sha256")
        if now != stored:
            msg = (f"model {sol.model!r}: {base.module.__file__} changed since run {sol.run_id or ''} was made "
                   f"(sha256 {stored[:12]} then, {str(now)[:12]} now)")
            if "model_code" in sol.provenance:     # a user's model file: the equations may be others
                raise ModelChangedError(msg + "; the stored source is in the run's 'model_code' attribute")
            # a built-in model: versioned and tested with the package (opt_protocols_version of the run)
            warnings.warn(msg + f"; run made with opt-protocols {sol.attrs.get('opt_protocols_version', '?')}",
                          stacklevel=2)
    overrides = {**sol.spec.get("constants", {}), **dict(static or {})}
    unknown = [k for k in overrides if k not in base.params]
    if unknown:
        raise ValueError(f"validate: constant {unknown[0]!r} is not a parameter of model {sol.model!r}, "
                         "so the finite-N simulator cannot use it")
    return base if not overrides else load_model(base, **overrides)


def validate(sol: Solution, N: int = 2000, seeds: int = 8, n_out: int = 41) -> dict[str, Any]:
    """Finite-N SGD with the optimal and the best-constant protocols; returns and attaches a summary."""
    if sol.status == "failed":
        raise ValueError(f"validate: run {sol.run_id or ''} failed ({sol.return_status}); nothing to validate")
    if sol.spec.get("objective") == "time":
        raise ValueError("validate: time-to-target solutions are not supported")
    if int(seeds) < 2:
        raise ValueError(f"seeds = {seeds}: expected at least 2 (the standard error needs two runs)")
    T = float(sol.t[-1])
    x0 = np.asarray(sol.spec["x0"], dtype=float)
    cases = {"optimal": (sol.protocol, sol.static)}
    if "best_constant" in sol.baselines:
        b = sol.baselines["best_constant"]
        cases["best_constant"] = (b.protocol, b.static)
    summary: dict[str, Any] = {"N": int(N), "seeds": int(seeds)}
    out: dict[str, dict[str, np.ndarray]] = {}
    t = None
    for name, (proto, static) in cases.items():
        model = model_for(sol, static)
        if not model.has_sgd:
            raise ValueError(f"validate: model {model.name!r} has no finite-N simulator")
        res = simulate_sgd(model, proto, T, N=N, seeds=seeds, x0=x0, n_out=n_out)
        ode = simulate(model, x0, proto, T, t_eval=res.t, rtol=1e-10, atol=1e-12)
        summary[name] = {"ode_final": float(ode.loss[-1]), "sgd_final_mean": float(res.loss_mean[-1]),
                         "sgd_final_sem": float(res.loss_sem[-1])}
        t = res.t
        out[name] = {"sgd_mean": res.loss_mean, "sgd_sem": res.loss_sem, "ode": ode.loss}
    if "best_constant" in summary:
        o, b = summary["optimal"], summary["best_constant"]
        summary["sgd_gain"] = b["sgd_final_mean"] - o["sgd_final_mean"]
        summary["sgd_gain_sem"] = float(np.hypot(o["sgd_final_sem"], b["sgd_final_sem"]))
    sol.validation = {"summary": summary, "t": t, "cases": out}
    return summary
