"""Checks of a user's model file, with one-line errors that name the file, the line and the fix.

The first thing a researcher does is write a model file, and the mistakes are predictable: a
syntax error, a NumPy array where the equations need ``ops.zeros`` (numba compiles it, CasADi's
trace silently turns every symbol into NaN), a Python ``if`` on a state (fine in numba, an error
for a symbolic value), an index past the end of ``x``, a missing ``loss``. :func:`lint` finds the
NumPy calls that cannot run on symbols by reading the equations' source; :func:`check_backends`
compiles the equations with numba, traces them with CasADi and compares the two at a random
valid state (the cheap version of the backend-agreement test every built-in model passes).
Every failure is a :class:`ModelFileError` whose message is one line.
"""
from __future__ import annotations

import ast
import inspect
import traceback
import types as pytypes
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model

#: NumPy functions that cannot take CasADi symbols, and what to write instead.
NUMPY_FIXES = {
    "zeros": "ops.zeros(n) (or ops.matrix(n, m))", "empty": "ops.zeros(n)", "ones": "ops.zeros(n) and assignments",
    "array": "ops.zeros(n) and element assignments", "asarray": "ops.zeros(n) and element assignments",
    "zeros_like": "ops.zeros(n)", "empty_like": "ops.zeros(n)", "full": "ops.zeros(n) and assignments",
    "abs": "ops.fabs", "absolute": "ops.fabs", "fabs": "ops.fabs", "maximum": "ops.fmax", "minimum": "ops.fmin",
    "max": "ops.fmax", "min": "ops.fmin", "where": "ops.if_else(cond, a, b)", "clip": "ops.clip",
    "sign": "ops.if_else", "heaviside": "ops.if_else", "select": "ops.if_else", "sum": "a loop with +=",
    "dot": "a loop with +=", "matmul": "loops with +=", "einsum": "loops with +=",
}
#: Relative difference between the two backends above which a model file is refused.
AGREEMENT_RTOL = 1e-10


class ModelFileError(ValueError):
    """A mistake in a model file (message: one line naming the file, the line and the fix)."""


def _file(module: pytypes.ModuleType) -> str:
    return str(getattr(module, "__file__", module.__name__))


def equation_functions(module: pytypes.ModuleType) -> list[pytypes.FunctionType]:
    """The equations (rhs or step, loss) and every function of the same file they call, transitively."""
    names = [n for n in ("rhs", "step", "loss") if isinstance(getattr(module, n, None), pytypes.FunctionType)]
    seen: dict[str, pytypes.FunctionType] = {}
    while names:
        name = names.pop()
        fn = getattr(module, name, None)
        if name in seen or not isinstance(fn, pytypes.FunctionType) or fn.__module__ != module.__name__:
            continue
        seen[name] = fn
        try:
            tree = ast.parse(inspect.getsource(fn))
        except (OSError, TypeError, SyntaxError):
            continue
        names += [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return list(seen.values())


def lint(module: pytypes.ModuleType) -> None:
    """Refuse NumPy calls in the equations that cannot run on CasADi symbols (see :data:`NUMPY_FIXES`)."""
    numpy_names = {k for k, v in vars(module).items() if v is np}
    for fn in equation_functions(module):
        try:
            lines, first = inspect.getsourcelines(fn)
        except (OSError, TypeError):
            continue
        import textwrap
        tree = ast.parse(textwrap.dedent("".join(lines)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in numpy_names \
                    and node.func.attr in NUMPY_FIXES:
                line = first + node.lineno - 1
                raise ModelFileError(
                    f"{_file(module)}:{line}: {node.func.value.id}.{node.func.attr}(...) in {fn.__name__}() "
                    f"cannot hold CasADi symbols (the optimiser would see NaN); use {NUMPY_FIXES[node.func.attr]}")


def _model_line(module: pytypes.ModuleType, exc: BaseException) -> str:
    """``file:line`` of the deepest traceback frame inside the model file (or the file alone)."""
    path = Path(_file(module)).resolve()
    where = str(path)
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            where = f"{path}:{frame.lineno}"
    return where


def _numba_line(module: pytypes.ModuleType, message: str) -> str:
    """``file:line`` from a numba error message (it quotes 'File "...", line N')."""
    import re
    path = str(Path(_file(module)).resolve())
    hits = re.findall(r'File "([^"]+)", line (\d+)', message)
    for f, line in reversed(hits):
        if str(Path(f).resolve()) == path:
            return f"{path}:{line}"
    return path


def _first_line(text: str) -> str:
    lines = [s.strip() for s in str(text).splitlines() if s.strip()]
    return lines[0] if lines else ""


def check_backends(model: Model, seed: int = 0) -> None:
    """Compile (numba), trace (CasADi) and compare the model's equations at a random valid state."""
    module = model.module
    name = "step" if model.kind == "map" else "rhs"
    rng = np.random.default_rng(seed)
    try:
        x = model.random_state(rng)
    except Exception as exc:
        raise ModelFileError(f"{_model_line(module, exc)}: cannot make a valid state "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None
    u = model.control_vector()
    try:
        nb = model.numba
        fx = np.asarray(nb.rhs(x, u, model.c, model.dims))
        fl = float(nb.loss(x, model.c, model.dims))
    except Exception as exc:
        msg = str(exc)
        where = _numba_line(module, msg) if "numba" in type(exc).__module__ else _model_line(module, exc)
        hint = ""
        if "getitem" in msg or "index" in msg.lower():
            hint = f" (x has {model.n_x} entries, u {model.n_u}, c {model.c.size})"
        raise ModelFileError(f"{where}: numba cannot compile or run {name}/loss: "
                             f"{type(exc).__name__}: {_first_line(msg)}{hint}") from None
    try:
        cs = model.casadi
        cx = np.array(cs.rhs(x, u, model.c)).ravel()
        cl = float(cs.loss(x, model.c))
    except Exception as exc:
        msg = str(exc)
        where = _model_line(module, exc)
        if "truth value" in msg:
            raise ModelFileError(f"{where}: a Python `if`, `and`/`or`, `min`/`max` or `abs` on a state, control or "
                                 "constant (symbolic when traced by CasADi); use ops.if_else(cond, a, b), "
                                 "ops.fmin/ops.fmax, ops.fabs") from None
        if "out of bounds" in msg or "Index" in msg:
            raise ModelFileError(f"{where}: index out of range ({_first_line(msg.splitlines()[-1])}); "
                                 f"x has {model.n_x} entries, u {model.n_u}, c {model.c.size}") from None
        raise ModelFileError(f"{where}: CasADi cannot trace {name}/loss: {type(exc).__name__}: "
                             f"{_first_line(msg)}") from None
    for what, a, b in ((name, fx, cx), ("loss", np.array([fl]), np.array([cl]))):
        if a.shape != b.shape:
            raise ModelFileError(f"{_file(module)}: {what}() returns {a.size} values with numba and {b.size} with "
                                 f"CasADi (expected {model.n_x if what != 'loss' else 1})")
        if not np.all(np.isfinite(b)) and np.all(np.isfinite(a)):
            raise ModelFileError(f"{_file(module)}: {what}() is NaN when traced by CasADi but finite with numba: "
                                 "a NumPy array or function is holding symbols; use ops.zeros(n) and ops functions")
        scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-300)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        if not diff <= AGREEMENT_RTOL * scale + 1e-300:
            raise ModelFileError(f"{_file(module)}: {what}() differs between numba and CasADi by {diff:.3g} "
                                 f"(relative {diff / scale:.3g}) at a random valid state: the equations must use "
                                 "only arithmetic, indexing, loops over integers and the ops namespace")
