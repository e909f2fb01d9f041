"""Compile a model module's equations with numba.

The model's helper functions are registered with ``register_jitable`` so that
its ``rhs``/``step``/``loss`` can call them, and the entry points are compiled
with explicit signatures. Explicit signatures give the integrators a stable
first-class function type (:data:`RHS_TYPE`), so integrators and equations are
all cached on disk: a second process loads them instead of recompiling.
"""
from __future__ import annotations

import types as pytypes
from dataclasses import dataclass
from typing import Any

import numba
from numba import types
from numba.extending import register_jitable

#: rhs(x, u, c, dims) -> dx  (also the type of a map's step)
RHS_TYPE = types.FunctionType(
    types.float64[::1](types.float64[::1], types.float64[::1], types.float64[::1], types.int64[::1]))
#: loss(x, c, dims) -> float
LOSS_TYPE = types.FunctionType(types.float64(types.float64[::1], types.float64[::1], types.int64[::1]))

_registered: set[int] = set()


@dataclass(frozen=True)
class NumbaModel:
    """Compiled entry points of one model module."""

    rhs: Any   # numba dispatcher with RHS_TYPE signature (ODE right-hand side or map step)
    loss: Any  # numba dispatcher with LOSS_TYPE signature


def _register_helpers(module: pytypes.ModuleType) -> None:
    """Make the module's functions (and equation helpers it imports from other models) callable from numba."""
    from .. import ops
    for obj in vars(module).values():
        if isinstance(obj, pytypes.FunctionType) and id(obj) not in _registered \
                and (obj.__module__ == module.__name__ or obj.__globals__.get("ops") is ops):
            register_jitable(obj)
            _registered.add(id(obj))


_compiled: dict[str, NumbaModel] = {}


def compile_module(module: pytypes.ModuleType, kind: str) -> NumbaModel:
    """Compile (or load from the on-disk cache) a model module's equations."""
    key = f"{module.__name__}:{getattr(module, '__file__', '')}"
    if key in _compiled:
        return _compiled[key]
    _register_helpers(module)
    dyn = module.step if kind == "map" else module.rhs
    cache = getattr(module, "__file__", None) is not None
    try:
        rhs = numba.njit(RHS_TYPE.signature, cache=cache)(dyn)
        loss = numba.njit(LOSS_TYPE.signature, cache=cache)(module.loss)
    except ModuleNotFoundError:
        # numba's on-disk cache is per source file: an entry written when the same file was imported
        # under another module name cannot be loaded under this one; compile afresh, without the cache
        rhs = numba.njit(RHS_TYPE.signature, cache=False)(dyn)
        loss = numba.njit(LOSS_TYPE.signature, cache=False)(module.loss)
    _compiled[key] = NumbaModel(rhs=rhs, loss=loss)
    return _compiled[key]
