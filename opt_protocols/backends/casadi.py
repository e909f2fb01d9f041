"""Trace a model module's equations into CasADi SX functions.

The model's functions are plain Python; here they are re-bound to a copy of the
module namespace in which ``ops`` is :mod:`opt_protocols.ops_casadi`, then
called on SX symbols. The result is the same equations as the numba backend,
as symbolic expressions with exact derivatives for optimal control.
"""
from __future__ import annotations

import types as pytypes
from dataclasses import dataclass

import casadi as ca
import numpy as np

from .. import ops_casadi


@dataclass(frozen=True)
class CasadiModel:
    """``rhs(x, u, c) -> dx`` (or the map's step) and ``loss(x, c) -> L`` as SX Functions."""

    rhs: ca.Function
    loss: ca.Function


def symbolic_namespace(module: pytypes.ModuleType) -> dict:
    """A copy of ``module``'s globals with ``ops`` -> CasADi and its functions re-bound to it."""
    namespace = dict(vars(module))
    namespace["ops"] = ops_casadi
    for name, obj in vars(module).items():
        if isinstance(obj, pytypes.FunctionType) and obj.__module__ == module.__name__:
            namespace[name] = pytypes.FunctionType(obj.__code__, namespace, obj.__name__,
                                                   obj.__defaults__, obj.__closure__)
    return namespace


def trace_module(module: pytypes.ModuleType, kind: str, n_x: int, n_u: int, n_c: int,
                 dims: np.ndarray) -> CasadiModel:
    """Build SX Functions of the model's dynamics and loss for the given dimensions."""
    ns = symbolic_namespace(module)
    dyn = ns["step"] if kind == "map" else ns["rhs"]
    x = ca.SX.sym("x", n_x)
    u = ca.SX.sym("u", n_u)
    c = ca.SX.sym("c", n_c)
    dims = np.asarray(dims, dtype=np.int64)
    dx = ca.vertcat(dyn(x, u, c, dims))
    loss = ns["loss"](x, c, dims)
    if dx.shape != (n_x, 1):
        raise ValueError(f"model {module.__name__}: dynamics returned shape {dx.shape}, expected ({n_x}, 1)")
    # the traced equations repeat subexpressions (e.g. 1 + Q_ii in every integral): share them
    rhs_f = ca.Function("rhs", [x, u, c], [ca.cse(dx)], ["x", "u", "c"], ["dx"])
    loss_f = ca.Function("loss", [x, c], [ca.cse(ca.SX(loss))], ["x", "c"], ["loss"])
    return CasadiModel(rhs=rhs_f, loss=loss_f)
