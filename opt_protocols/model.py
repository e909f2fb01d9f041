"""The model contract and ``load_model``.

A model module is a plain Python file that declares (see ``opt_protocols/models/committee.py``
for a complete example and ``examples/`` for a walk-through):

``TIME``            name of the time variable (``"alpha"``, ``"t"``)
``KIND``            ``"ode"`` (continuous right-hand side) or ``"map"`` (one call = one SGD step)
``PARAMETERS``      ``{name: Param(default, kind, lo, hi)}``
``dims(p)``         tuple of structural integers passed to the equations (sizes, flags)
``state_names(p)``  list of state names
``controls(p)``     ``{name: Control(default, lo, hi)}``, in the order of the control vector ``u``
``constants(p)``    ``{name: scalar or array}``: the numbers the equations read from ``c``
``initial_state(p, **overrides)``  the default initial state (overrides validated)
``rhs(x, u, c, dims)`` or ``step(x, u, c, dims)``, and ``loss(x, c, dims)``: the equations, written once
                    with ``from opt_protocols import ops`` and run by numba and traced by CasADi.
optional: ``LOSS_NAME`` how the loss is called (e.g. ``"eg"``; figures use it);
          ``check(p)`` cross-parameter validation; ``check_state(x, p)`` domain check of a state;
          ``random_state(p, rng)`` a random valid state (used by the backend-agreement test);
          ``sgd(p, x0, protocol, t_out, N, rng)`` a finite-N simulation of the learning process
          (see :mod:`opt_protocols.sgd`); ``METHODS``: names of module functions ``f(x, p)`` exposed
          as ``model.f(x)`` (e.g. ``overlaps``).

Accepted language of the equations (``rhs``/``step``, ``loss`` and the helpers they call): what
numba compiles, CasADi traces and, for maps, the adjoint method differentiates from the source
(docs/adjoint.md, section 2):

* scalar assignments and re-assignments, tuple unpacking (``Q, R = x[0], x[1]``), ``+=`` and the like;
* ``for i in range(n)`` / ``range(a, b)`` loops over integers (from ``dims``), with accumulations
  ``v = v + e`` into a value defined before the loop; values set in a loop may be read after it;
* ``if``/``else`` and ``a if cond else b`` on conditions that do not depend on states, controls or
  constants (CasADi cannot branch on them); ``ops.if_else(cond, a, b)`` for conditions that do;
* names bound to arrays (``z = x``); calls of helper functions of the model file (inlined by the
  adjoint's derivation, recursively); numeric module constants;
* one output array from ``ops.zeros(n)``/``ops.matrix(n, m)`` written element by element and returned
  (or, for ``loss``, a returned scalar); expressions with ``+ - * / **``, indexing, the ``ops``
  functions, ``range``/``len``/``int``/``float``/``min``/``max``/``abs`` on integers.

Outside it (NumPy or ``math`` calls, ``while``, slices, module arrays, a value carried between loop
iterations other than by accumulation), the adjoint method uses CasADi's reverse mode instead of
the derived kernel, slower, and warns naming the construct and its file:line.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
import types as pytypes
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .model_check import ModelFileError
from .spec import Constants, Control, validate_params

#: The package holding the built-in models (inside opt_protocols, so that a user's own ``models``
#: package cannot shadow it).
BUILTIN_PACKAGE = "opt_protocols.models"

_SIGNATURES = {"rhs": "rhs(x, u, c, dims)", "step": "step(x, u, c, dims)", "loss": "loss(x, c, dims)",
               "dims": "dims(p)", "state_names": "state_names(p)", "controls": "controls(p)",
               "constants": "constants(p)", "initial_state": "initial_state(p, **overrides)",
               "TIME": "TIME (e.g. 'alpha')", "KIND": "KIND ('ode' or 'map')", "PARAMETERS": "PARAMETERS"}

_REQUIRED = ("TIME", "KIND", "PARAMETERS", "dims", "state_names", "controls", "constants",
             "initial_state", "loss")


def list_models() -> list[str]:
    """Names of the built-in models (modules of the :mod:`opt_protocols.models` package)."""
    from . import models
    return sorted(m.name for m in pkgutil.iter_modules(models.__path__) if not m.name.startswith("_"))


def _import_model_module(name: str) -> pytypes.ModuleType:
    path = Path(name)
    if name.endswith(".py"):
        if not path.is_file():
            raise ValueError(f"model file {name!r} does not exist")
        # a stable name: numba's on-disk cache refers to the module by it in later processes
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        mod_name = f"opt_protocols_user_{path.stem}_{digest}"
        if mod_name in sys.modules:
            return sys.modules[mod_name]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            del sys.modules[mod_name]
            raise ModelFileError(f"{path.resolve()}:{exc.lineno}: syntax error: {exc.msg}") from None
        except Exception as exc:
            del sys.modules[mod_name]
            from .model_check import _first_line, _model_line
            raise ModelFileError(f"{_model_line(module, exc)}: error while loading the model file: "
                                 f"{type(exc).__name__}: {_first_line(exc)}") from None
        return module
    if "." not in name and name in list_models():
        return importlib.import_module(f"{BUILTIN_PACKAGE}.{name}")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise ValueError(f"unknown model {name!r}: not a built-in ({', '.join(list_models())}), "
                         f"an importable module or a path to a .py file") from None


class Model:
    """A model module bound to validated parameter values.

    Attributes: ``name``, ``params``, ``time_name``, ``kind``, ``state_names``,
    ``controls`` (name -> :class:`Control`), ``control_names``, ``constants``
    (:class:`Constants`), ``c`` (flat constant vector) and ``dims``.
    """

    def __init__(self, module: pytypes.ModuleType, params: Mapping[str, Any] | None = None,
                 name: str | None = None):
        missing = [a for a in _REQUIRED if not hasattr(module, a)]
        if getattr(module, "KIND", None) == "map":
            missing += [] if hasattr(module, "step") else ["step"]
        elif not hasattr(module, "rhs"):
            missing.append("rhs")
        if missing:
            where = getattr(module, "__file__", None) or module.__name__
            lacks = ", ".join(_SIGNATURES.get(a, a) for a in missing)
            raise ModelFileError(f"{where} is not a model: it lacks {lacks} "
                                 "(see the model contract in opt_protocols/model.py)")
        if module.KIND not in ("ode", "map"):
            raise ValueError(f"model {module.__name__!r}: KIND must be 'ode' or 'map', got {module.KIND!r}")
        self.module = module
        self.name = name or module.__name__.rsplit(".", 1)[-1]
        #: how to load this model again (built-in name, dotted module or absolute path)
        self.source: str = getattr(module, "__file__", None) if module.__name__.startswith("opt_protocols_user_") \
            else (self.name if module.__name__ == f"{BUILTIN_PACKAGE}.{self.name}" else module.__name__)
        self.params: dict[str, Any] = validate_params(module.PARAMETERS, dict(params or {}), self.name)
        if hasattr(module, "check"):
            module.check(self.params)
        self.time_name: str = module.TIME
        self.kind: str = module.KIND
        self.dims = np.asarray(module.dims(self.params), dtype=np.int64).reshape(-1)
        self.state_names: list[str] = list(module.state_names(self.params))
        self.controls: dict[str, Control] = dict(module.controls(self.params))
        self.control_names: list[str] = list(self.controls)
        self.constants = Constants(dict(module.constants(self.params)))
        self.c = self.constants.vector

    def __getattr__(self, name: str):
        module = self.__dict__.get("module")
        if module is not None and name in getattr(module, "METHODS", ()):
            fn = getattr(module, name)
            return lambda x, **kw: fn(x, self.params, **kw)
        raise AttributeError(f"model {self.__dict__.get('name', '?')!r} has no attribute {name!r}")

    def random_state(self, rng: np.random.Generator) -> np.ndarray:
        """A random valid state (model's ``random_state`` or a perturbation of the initial state)."""
        if hasattr(self.module, "random_state"):
            return self.check_state(self.module.random_state(self.params, rng))
        x0 = self.initial_state()
        return x0 * (1.0 + 0.1 * rng.standard_normal(x0.size)) + 0.01 * rng.standard_normal(x0.size)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.params.items() if not isinstance(v, np.ndarray)}
        return f"Model({self.name!r}, {shown})"

    def provenance(self) -> dict[str, str]:
        """What identifies the equations: the SHA-256 of the model's source file and, for a user's
        model file (not a built-in), the source itself (stored with every run)."""
        path = getattr(self.module, "__file__", None)
        if not path or not Path(path).is_file():
            return {}
        code = Path(path).read_bytes()
        out = {"model_sha256": hashlib.sha256(code).hexdigest()}
        if self.module.__name__.startswith("opt_protocols_user_"):
            out["model_code"] = code.decode("utf-8", "replace")
        return out

    @property
    def n_x(self) -> int:
        return len(self.state_names)

    @property
    def n_u(self) -> int:
        return len(self.control_names)

    @property
    def doc(self) -> str:
        return (self.module.__doc__ or "").strip()

    # ---- states and controls -------------------------------------------------------------
    def initial_state(self, **overrides: Any) -> np.ndarray:
        """The default initial state, with model-specific overrides (e.g. ``Q=..., R=...``)."""
        x0 = np.asarray(self.module.initial_state(self.params, **overrides), dtype=float)
        self.check_state(x0)
        return x0

    def check_state(self, x: np.ndarray) -> np.ndarray:
        """Validate a state vector's length, finiteness and (if the model says) its domain."""
        x = np.ascontiguousarray(x, dtype=float)
        if x.shape != (self.n_x,):
            raise ValueError(f"state: expected {self.n_x} values ({', '.join(self.state_names[:4])}...), "
                             f"got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("state: all entries must be finite")
        if hasattr(self.module, "check_state"):
            self.module.check_state(x, self.params)
        return x

    def control_vector(self, values: Mapping[str, float] | np.ndarray | None = None) -> np.ndarray:
        """Control vector from a name -> value mapping, defaults for the rest."""
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            arr = np.asarray(values, dtype=float).reshape(-1)
            if arr.shape != (self.n_u,):
                raise ValueError(f"controls: expected {self.n_u} values for {self.control_names}")
            return np.ascontiguousarray(arr)
        unknown = [k for k in values if k not in self.controls]
        if unknown:
            raise ValueError(f"model {self.name!r} has no control {unknown[0]!r}; "
                             f"controls: {', '.join(self.control_names)}")
        return np.array([self.controls[k].check_value(k, values[k]) if k in values else self.controls[k].default
                         for k in self.control_names], dtype=float)

    def state_index(self, name: str) -> int:
        try:
            return self.state_names.index(name)
        except ValueError:
            raise ValueError(f"model {self.name!r} has no state {name!r}") from None

    def with_constants(self, **values: Any) -> np.ndarray:
        """The constant vector ``c`` with some named blocks replaced."""
        c = self.c.copy()
        slices = self.constants.slices()
        for key, v in values.items():
            if key not in slices:
                raise ValueError(f"model {self.name!r} has no constant {key!r}; constants: {', '.join(slices)}")
            block = np.asarray(v, dtype=float).ravel()
            if block.size != slices[key].stop - slices[key].start:
                raise ValueError(f"constant {key!r}: expected {slices[key].stop - slices[key].start} values")
            c[slices[key]] = block
        return c

    # ---- backends ------------------------------------------------------------------------
    @cached_property
    def numba(self):
        """Compiled equations (:class:`opt_protocols.backends.numba.NumbaModel`)."""
        from .backends.numba import compile_module
        return compile_module(self.module, self.kind)

    @cached_property
    def casadi(self):
        """Traced equations as CasADi SX Functions (:class:`opt_protocols.backends.casadi.CasadiModel`)."""
        from .backends.casadi import trace_module
        return trace_module(self.module, self.kind, self.n_x, self.n_u, self.c.size, self.dims)

    # ---- evaluation (numba backend) ------------------------------------------------------
    def rhs(self, x: np.ndarray, u: Mapping[str, float] | np.ndarray | None = None,
            c: np.ndarray | None = None) -> np.ndarray:
        """Right-hand side dx/dt (ODE models) at state ``x`` and controls ``u``."""
        if self.kind != "ode":
            raise ValueError(f"model {self.name!r} is a discrete map: use step()")
        return self.numba.rhs(np.ascontiguousarray(x, dtype=float), self.control_vector(u),
                              self.c if c is None else np.ascontiguousarray(c, dtype=float), self.dims)

    def step(self, x: np.ndarray, u: Mapping[str, float] | np.ndarray | None = None,
             c: np.ndarray | None = None) -> np.ndarray:
        """One step of a discrete-map model."""
        if self.kind != "map":
            raise ValueError(f"model {self.name!r} is an ODE: use rhs()")
        return self.numba.rhs(np.ascontiguousarray(x, dtype=float), self.control_vector(u),
                              self.c if c is None else np.ascontiguousarray(c, dtype=float), self.dims)

    def loss(self, x: np.ndarray, c: np.ndarray | None = None) -> float:
        """The model's loss (generalisation error) at state ``x``."""
        return float(self.numba.loss(np.ascontiguousarray(x, dtype=float),
                                     self.c if c is None else np.ascontiguousarray(c, dtype=float), self.dims))

    # ---- finite-N simulation of the learning process -------------------------------------
    @property
    def has_sgd(self) -> bool:
        return hasattr(self.module, "sgd")


def load_model(model: str | pytypes.ModuleType | Model, **params: Any) -> Model:
    """Load a model by built-in name, dotted module name, path to a .py file, or module object.

    Parameters are validated: an unknown name, wrong type or out-of-range value
    raises ``ValueError`` naming the parameter and its allowed range.
    """
    if isinstance(model, Model):
        if not params:
            return model
        return Model(model.module, {**model.params, **params}, name=model.name)
    if isinstance(model, str) and model.endswith(".py"):
        model = str(Path(model).resolve())
    if isinstance(model, pytypes.ModuleType):
        return Model(model, params)
    if not isinstance(model, str):
        raise ValueError(f"model: expected a name, module or path, got {type(model).__name__}")
    module = _import_model_module(model)
    name = Path(model).stem if model.endswith(".py") else (model if model in list_models() else None)
    m = Model(module, params, name=name)
    if module.__name__.startswith("opt_protocols_user_") and module.__name__ not in _CHECKED:
        # a user's model file: refuse the usual mistakes with one line, once per file and process
        from .model_check import check_backends, lint
        lint(module)
        check_backends(m)
        _CHECKED.add(module.__name__)
    return m


_CHECKED: set[str] = set()
