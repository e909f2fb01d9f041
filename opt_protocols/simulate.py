"""Forward simulation of a model under a protocol: ``simulate`` and ``Trajectory``."""
from __future__ import annotations

from typing import Any

import numpy as np

from .model import Model, load_model
from .protocol import Protocol, as_protocol
from .trajectory import Trajectory

METHODS = {"rk4": 0, "dopri5": 1}  # codes of integrate.integrate
#: Absolute floor of the loss error control: losses are differences of O(1) order parameters, so
#: below ~1e-14 absolute they are not defined better than by rounding anyway.
LOSS_ATOL = 1e-14
#: Default loss tolerance relative to rtol: the state tolerance alone leaves a small loss (a difference
#: of O(1) order parameters) with an error of the order of atol; 100 rtol keeps its relative error
#: small down to losses near LOSS_ATOL without adding steps while the loss is large
#: (tests/test_usability.py measures both).
LOSS_RTOL_FACTOR = 100.0


def output_times(t0: float, t_final: float, n_out: int | None, t_eval, kind: str) -> np.ndarray:
    """Sorted output times: ``t_eval`` if given, else ``n_out`` points (maps: integer steps)."""
    if t_eval is not None:
        t_out = np.asarray(t_eval, dtype=float).ravel()
        if t_out.size == 0 or np.any(np.diff(t_out) < 0) or t_out[0] < t0 or t_out[-1] > t_final:
            raise ValueError(f"t_eval: expected increasing times within [{t0:g}, {t_final:g}]")
        return t_out
    n_out = 201 if n_out is None else int(n_out)
    if n_out < 2:
        raise ValueError("n_out: expected an integer >= 2")
    t_out = np.linspace(t0, t_final, n_out)
    return np.unique(np.round(t_out)) if kind == "map" else t_out


def simulate(model: Model | str, x0: np.ndarray | None = None, protocol: Any = None,
             t_final: float | None = None, *, method: str = "dopri5", rtol: float = 1e-8,
             atol: float = 1e-10, loss_rtol: float | None = None, loss_atol: float = LOSS_ATOL,
             dt: float | None = None, n_out: int | None = None, t_eval=None,
             c: np.ndarray | None = None, max_steps: int = 10_000_000) -> Trajectory:
    """Simulate ``model`` from ``x0`` (default: its initial state) under ``protocol`` up to ``t_final``.

    ODE models: ``method="dopri5"`` (adaptive, error-controlled by ``rtol``/``atol``)
    or ``"rk4"`` (fixed step ``dt``, default t_final/1000). The adaptive method also controls
    the error of the loss relative to its own size: ``loss_rtol`` (default
    :data:`LOSS_RTOL_FACTOR` ``* rtol``) and
    ``loss_atol`` (default :data:`LOSS_ATOL`), so small losses keep their relative accuracy;
    ``loss_rtol=0`` switches this off. Discrete maps are stepped exactly, ``t_final`` steps.
    Output on ``t_eval`` or ``n_out`` equispaced times.
    ``c`` replaces the model's constant vector (advanced use: constants as variables).
    """
    from . import integrate as integ
    model = load_model(model) if isinstance(model, str) else model
    if t_final is None:
        raise ValueError("t_final: required (the horizon, in units of " + model.time_name + ")")
    t_final = float(t_final)
    if not np.isfinite(t_final) or t_final <= 0:
        raise ValueError(f"t_final = {t_final:g} must be a positive number")
    if model.kind == "map" and t_final != int(t_final):
        raise ValueError(f"t_final = {t_final:g} must be a whole number of steps for the map {model.name!r}")
    x0 = model.initial_state() if x0 is None else model.check_state(x0)
    proto = as_protocol(model, protocol, t_final)
    t_out = output_times(0.0, t_final, n_out, t_eval, model.kind)
    cvec = model.c if c is None else np.ascontiguousarray(c, dtype=float)
    nb = model.numba
    if model.kind == "map":
        X, status = integ.iterate_map(nb.rhs, x0, cvec, model.dims, proto.tk, proto.U0, proto.U1,
                                      int(t_final), t_out.astype(np.int64))
        n_steps, used = int(t_final), "map"
    else:
        if method not in METHODS:
            raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
        if not (rtol > 0 and atol > 0):
            raise ValueError("rtol, atol: expected positive numbers")
        lrtol = LOSS_RTOL_FACTOR * rtol if loss_rtol is None else float(loss_rtol)
        if not (lrtol >= 0 and loss_atol > 0):
            raise ValueError("loss_rtol >= 0 and loss_atol > 0: expected numbers")
        step = t_final / 1000 if dt is None else float(dt)
        if not step > 0:
            raise ValueError(f"dt = {step:g} must be positive")
        X, n_steps, status = integ.integrate(nb.rhs, nb.loss, x0, cvec, model.dims, proto.tk, proto.U0, proto.U1,
                                             t_out, METHODS[method], step, rtol, atol, lrtol, loss_atol, max_steps)
        used = method
    loss = integ.loss_along(nb.loss, X, cvec, model.dims)
    return Trajectory(t=t_out, x=X, loss=loss, controls=proto.values(t_out), state_names=model.state_names,
                      time_name=model.time_name, model=model.name, params=dict(model.params), protocol=proto,
                      method=used, n_steps=int(n_steps), status=integ.STATUS_TEXT[int(status)])


def final_loss(model: Model, x0: np.ndarray, protocol: Protocol, t_final: float, c: np.ndarray | None = None,
               rtol: float = 1e-10, atol: float = 1e-12) -> float:
    """Loss at t_final under a tabulated protocol (fast path for baselines and verification)."""
    from . import integrate as integ
    cvec = model.c if c is None else c
    t_out = np.array([float(t_final)])
    nb = model.numba
    if model.kind == "map":
        X, status = integ.iterate_map(nb.rhs, x0, cvec, model.dims, protocol.tk, protocol.U0, protocol.U1,
                                      int(t_final), np.array([int(t_final)], dtype=np.int64))
    else:
        X, _, status = integ.integrate(nb.rhs, nb.loss, x0, cvec, model.dims, protocol.tk, protocol.U0,
                                       protocol.U1, t_out, 1, 0.0, rtol, atol, LOSS_RTOL_FACTOR * rtol, LOSS_ATOL,
                                       10_000_000)
    if status != integ.OK:
        return float("nan")
    return float(integ.loss_along(nb.loss, X, cvec, model.dims)[0])
