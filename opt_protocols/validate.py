"""Check an optimal protocol against the learning process itself: finite-N SGD simulations.

``validate(solution, N, seeds)`` runs the model's finite-N simulator (``sgd`` in the model
module) with the optimal protocol and with the best-constant baseline and reports the
simulated final loss (mean and standard error over seeds) next to the ODE's prediction.
The result is attached to the solution (``solution.validation``) and stored with the run.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .results import model_of
from .sgd import simulate_sgd
from .solution import Solution


def _model_for(sol: Solution, static: dict[str, float]):
    """The solution's model with its problem constants and static values written into the parameters."""
    base = model_of(sol)
    overrides = {**sol.spec.get("constants", {}), **static}
    unknown = [k for k in overrides if k not in base.params]
    if unknown:
        raise ValueError(f"validate: constant {unknown[0]!r} is not a parameter of model {sol.model!r}, "
                         "so the finite-N simulator cannot use it")
    return base if not overrides else type(base)(base.module, {**base.params, **overrides}, name=base.name)


def validate(sol: Solution, N: int = 2000, seeds: int = 8, n_out: int = 41) -> dict[str, Any]:
    """Finite-N SGD with the optimal and the best-constant protocols; returns and attaches a summary."""
    if sol.status == "failed":
        raise ValueError(f"validate: run {sol.run_id or ''} failed ({sol.return_status}); nothing to validate")
    if sol.spec.get("objective") == "time":
        raise ValueError("validate: time-to-target solutions are not supported")
    T = float(sol.t[-1])
    x0 = np.asarray(sol.spec["x0"], dtype=float)
    cases = {"optimal": (sol.protocol, sol.static)}
    if "best_constant" in sol.baselines:
        b = sol.baselines["best_constant"]
        cases["best_constant"] = (b.protocol, b.static)
    summary: dict[str, Any] = {"N": int(N), "seeds": int(seeds)}
    arrays, coords = {}, {}
    from .simulate import simulate
    for name, (proto, static) in cases.items():
        model = _model_for(sol, static)
        if not model.has_sgd:
            raise ValueError(f"validate: model {model.name!r} has no finite-N simulator")
        res = simulate_sgd(model, proto, T, N=N, seeds=seeds, x0=x0, n_out=n_out)
        ode = simulate(model, x0, proto, T, t_eval=res.t, rtol=1e-10, atol=1e-12)
        summary[name] = {"ode_final": float(ode.loss[-1]), "sgd_final_mean": float(res.loss_mean[-1]),
                         "sgd_final_sem": float(res.loss_sem[-1])}
        coords["t"] = res.t
        arrays[f"{name}_sgd_mean"] = (("t",), res.loss_mean)
        arrays[f"{name}_sgd_sem"] = (("t",), res.loss_sem)
        arrays[f"{name}_ode"] = (("t",), ode.loss)
    if "best_constant" in summary:
        o, b = summary["optimal"], summary["best_constant"]
        diff = b["sgd_final_mean"] - o["sgd_final_mean"]
        summary["sgd_gain"] = diff
        summary["sgd_gain_sem"] = float(np.hypot(o["sgd_final_sem"], b["sgd_final_sem"]))
    sol.validation = {"summary": summary, "arrays": arrays, "coords": coords}
    return summary
