"""Trace a model module's equations into CasADi SX functions.

The model's functions are plain Python; here they are re-bound to a copy of the
module namespace in which ``ops`` is :mod:`opt_protocols.ops_casadi`, then
called on SX symbols. The result is the same equations as the numba backend,
as symbolic expressions with exact derivatives for optimal control.
"""
from __future__ import annotations

import sys
import types as pytypes
from dataclasses import dataclass

import casadi as ca
import numpy as np

from .. import ops as ops_numba
from .. import ops_casadi


@dataclass(frozen=True)
class CasadiModel:
    """``rhs(x, u, c) -> dx`` (or the map's step) and ``loss(x, c) -> L`` as SX Functions."""

    rhs: ca.Function
    loss: ca.Function


def _uses_ops(obj) -> bool:
    """A plain function written against the numba ``ops`` namespace (an equation or helper)."""
    return isinstance(obj, pytypes.FunctionType) and obj.__globals__.get("ops") is ops_numba


def symbolic_namespace(module: pytypes.ModuleType, _memo: dict | None = None) -> dict:
    """A copy of ``module``'s globals with ``ops`` -> CasADi and its equation functions re-bound to it.

    Helpers imported from another model module (sharing equations between model files) are
    re-bound to that module's own symbolic namespace.
    """
    memo = {} if _memo is None else _memo
    if module.__name__ in memo:
        return memo[module.__name__]
    namespace = dict(vars(module))
    memo[module.__name__] = namespace
    namespace["ops"] = ops_casadi
    for name, obj in vars(module).items():
        if not isinstance(obj, pytypes.FunctionType):
            continue
        if obj.__module__ == module.__name__:
            namespace[name] = pytypes.FunctionType(obj.__code__, namespace, obj.__name__,
                                                   obj.__defaults__, obj.__closure__)
        elif _uses_ops(obj) and obj.__module__ in sys.modules:
            namespace[name] = symbolic_namespace(sys.modules[obj.__module__], memo)[obj.__name__]
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
