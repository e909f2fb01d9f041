"""opt-protocols: optimal training protocols from the order-parameter equations of learning models.

The names below are imported on first use, so that ``import opt_protocols`` stays fast: numba,
CasADi and h5py load only when a model is compiled, a problem is solved or a file is read.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# functions named like their modules are bound eagerly (a later import of the submodule would
# otherwise replace the package attribute by the module); both modules are light (numpy only)
from .simulate import simulate as simulate
from .validate import validate as validate

_EXPORTS = {
    "Model": ".model", "load_model": ".model", "list_models": ".model",
    "Protocol": ".protocol",
    "Trajectory": ".trajectory",
    "SGDResult": ".sgd", "simulate_sgd": ".sgd",
    "Budget": ".control.problem",
    "Method": ".control.methods", "Collocation": ".control.methods", "Adjoint": ".control.methods",
    "solve": ".control.solve",
    "Solution": ".solution", "Baseline": ".solution", "load": ".solution",
    "sweep": ".batch", "load_sweep": ".batch",
}
_MODULES = ("schedules", "storage", "ops")

__all__ = sorted([*_EXPORTS, *_MODULES, "simulate", "validate", "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'opt_protocols' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
