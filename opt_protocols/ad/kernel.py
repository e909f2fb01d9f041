"""Adjoint kernels of a discrete-map model: one driver source, derived or CasADi VJPs, a self-check.

A kernel evaluates J = sum_t w_t loss(x_t) of a map x_{t+1} = step(x_t, u_t) under a per-step
control table, and its exact gradient by one forward and one backward (adjoint) pass.

The forward/objective/backward drivers exist once, as the source :data:`DRIVERS`, written into a
generated module next to the VJPs and compiled by numba with the model's ``step``/``loss`` and the
VJPs inlined. Two kinds of kernel use them:

* ``"source"``: the VJPs derived from the model's source (:mod:`.transform`), compiled in the same
  module. Before first use, the derived VJPs are compared with CasADi's reverse mode of the traced
  step and loss at random valid states (:func:`check_kernel`); the result is cached in memory and
  on disk next to the generated module, per model configuration. A mismatch above
  :data:`CHECK_RTOL`, or any failure to derive or compile, falls back to the CasADi kernel with an
  :class:`AdjointKernelWarning` that says why (for a construct outside the accepted language: which,
  and its file:line in the model file).
* ``"casadi"``: the forward drivers are the same compiled code; the backward driver is the same
  source run as plain Python with the VJPs bound to CasADi Functions (reverse mode of the traced
  step and loss): generic and exact, but slower.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import math
import os
import sys
import time
import types as pytypes
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..model import Model
from .transform import Derived, UnsupportedStep, derive_vjp

#: Store every state in the forward pass when that takes at most this many bytes; otherwise
#: checkpoint every S ~ sqrt(T) steps and recompute each segment in the backward pass. A model step
#: is cheap next to moving its state through memory: recomputing a segment from a checkpoint is
#: faster than storing and reloading states once they do not fit in the caches.
STORE_ALL_BYTES = 8 * 2 ** 20
#: Largest relative difference between the derived VJPs and CasADi's accepted by the self-check
#: (rounding differences are ~1e-16; a wrong derivative is off by O(1)).
CHECK_RTOL = 1e-9
#: Random states (and controls, adjoint vectors) of the self-check.
CHECK_STATES = 5
#: LLVM flags of the generated module (derived VJPs and drivers, with the model's own step and loss
#: inlined): reassociation lets reductions (the sums over all modes in the step and in the adjoint)
#: vectorise; rounding changes at the 1e-16 level only, so objectives agree with the simulator
#: (compiled without these flags) to rounding (no 'nnan'/'ninf'/'afn': non-finite values keep their
#: IEEE meaning and elementary functions are not approximated).
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
#: The forward pass checks that the state is finite every this many steps (and at the end).
CHECK_EVERY = 64


class AdjointKernelWarning(UserWarning):
    """The derived adjoint kernel is not used (the CasADi kernel is, slower); the message says why."""


#: The forward, objective and backward passes: one source for both kinds of kernel. ``_step``,
#: ``_loss`` are the model's functions, ``step_vjp``/``loss_vjp`` ADD bar^T d(step)/d(x, u) and
#: bar * d(loss)/dx into their last arguments (``step_vjp`` may overwrite its bar, p here).
DRIVERS = '''

@_jit
def _finite(x):
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return False
    return True


@_jit
def forward(x0, c, dims, U, w, S, Xs, xT):
    # J = sum_t w_t loss(x_t); x_t stored at t = 0, S, 2S, ... in Xs and x_T in xT; status 1 = overflow
    # (checked every CHECK_EVERY steps and at the end: the state of an overflowing run stays non-finite)
    T = U.shape[0]
    x = x0.copy()
    J = 0.0
    if w[0] != 0.0:
        J += w[0] * _loss(x, c, dims)
    for t in range(T):
        if t % S == 0:
            Xs[t // S] = x
        x = _step(x, U[t], c, dims)
        if t % CHECK_EVERY == 0 and not _finite(x):
            xT[:] = np.nan
            return np.inf, 1
        if w[t + 1] != 0.0:
            J += w[t + 1] * _loss(x, c, dims)
    xT[:] = x
    if not (_finite(x) and np.isfinite(J)):
        return np.inf, 1
    return J, 0


@_jit
def objective(x0, c, dims, U, w):
    T = U.shape[0]
    x = x0.copy()
    J = 0.0
    if w[0] != 0.0:
        J += w[0] * _loss(x, c, dims)
    for t in range(T):
        x = _step(x, U[t], c, dims)
        if w[t + 1] != 0.0:
            J += w[t + 1] * _loss(x, c, dims)
    return J if _finite(x) and np.isfinite(J) else np.inf


@_jit
def backward(Xs, xT, S, c, dims, U, w, G):
    # adjoint pass: G[t] = dJ/du_t for every step; returns dJ/dx_0
    T = U.shape[0]
    n_x = xT.shape[0]
    n_u = U.shape[1]
    p = np.zeros(n_x)
    q = np.zeros(n_x)
    g = np.zeros(n_u)
    if w[T] != 0.0:
        loss_vjp(xT, c, dims, w[T], p)
    n_seg = (T + S - 1) // S
    for seg in range(n_seg - 1, -1, -1):
        t0 = seg * S
        t1 = min(T, t0 + S)
        # the segment's states, recomputed from its checkpoint (kept as the step returns them: no copies)
        buf = [Xs[seg]]
        for t in range(t0, t1 - 1):
            buf.append(_step(buf[t - t0], U[t], c, dims))
        for t in range(t1 - 1, t0 - 1, -1):
            q[:] = 0.0
            g[:] = 0.0
            step_vjp(buf[t - t0], U[t], c, dims, p, q, g)
            G[t] = g
            if w[t] != 0.0:
                loss_vjp(buf[t - t0], c, dims, w[t], q)
            p, q = q, p
    return p
'''


def _cache_dir() -> Path | None:
    base = os.environ.get("OPT_PROTOCOLS_CACHE") or str(Path.home() / ".cache" / "opt_protocols")
    path = Path(base) / "adjoint"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return path
    except OSError:
        return None


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _module_source(module, kind: str, vjps: list[Derived]) -> str:
    """The generated module: model import, derived VJPs (kind "source"), the drivers."""
    modules = sorted({module.__name__} | {m for d in vjps for m in d.modules})
    head = [f"# generated by opt_protocols.ad.kernel ({kind} kernel) from "
            + str(getattr(module, "__file__", module.__name__)), "# do not edit"]
    for name in modules:       # the digest of this file changes with any code it compiles
        mod = sys.modules.get(name)
        head.append(f"# source sha1 of {name}: {_sha1(inspect.getsource(mod)) if mod else '?'}")
    head += ["import math", "import sys", "", "import numba", "import numpy as np", "",
             "from opt_protocols import ops", "",
             f"_model = sys.modules[{module.__name__!r}]",
             "_step = _model.step", "_loss = _model.loss", f"CHECK_EVERY = {CHECK_EVERY}",
             f"_jit = numba.njit(cache=True, fastmath=set({sorted(FASTMATH)!r}))", ""]
    allowed = {"ops", "math", "np", "range", "len", "int", "float", "min", "max", "abs"}
    for d in vjps:
        extra = d.globals - allowed
        if extra:
            raise UnsupportedStep(f"the derived code reads the global(s) {', '.join(sorted(extra))}")
    return "\n".join(head) + "\n\n" + "\n\n".join("@_jit\n" + d.source for d in vjps) + DRIVERS


def _load_generated(src: str) -> tuple[pytypes.ModuleType, Path]:
    """Import the generated module from a file in the cache directory (so that numba caches the
    compiled code on disk; a temporary directory if the cache directory is not writable)."""
    digest = _sha1(src)[:16]
    mod_name = f"opt_protocols_adjoint_{digest}"
    d = _cache_dir()
    if d is None:
        import tempfile
        d = Path(tempfile.mkdtemp(prefix="opt_protocols_adjoint_"))
    path = d / f"vjp_{digest}.py"
    if mod_name in sys.modules:
        return sys.modules[mod_name], path
    if not path.exists() or path.read_text() != src:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(src)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception:
        del sys.modules[mod_name]
        raise
    return mod, path


@dataclass
class Kernel:
    """The adjoint kernel of one model configuration.

    ``kind``: ``"source"`` (derived VJPs) or ``"casadi"``; ``module``: the generated module (the
    drivers, and for kind source the derived ``step_vjp``/``loss_vjp``); ``reason``: why the CasADi
    kernel is used (empty for the source kernel); ``check``: the self-check record of the derived
    VJPs (``error``: largest relative difference from CasADi's reverse mode, ``states``, ``cached``).
    """

    kind: str
    module: Any
    source: str
    build_time: float = 0.0
    reason: str = ""
    check: dict = field(default_factory=dict)

    @property
    def note(self) -> str:
        """One line for Solution.stats: what the kernel is and why."""
        if self.kind == "source":
            return (f"derived VJPs, checked against CasADi reverse mode at {self.check.get('states')} random "
                    f"states: relative error {self.check.get('error', float('nan')):.1e}")
        return self.reason

    def drivers(self, model: Model) -> tuple[Any, Any, Any]:
        """(forward, objective, backward) for ``model`` (see :data:`DRIVERS`)."""
        m = self.module
        if self.kind == "source":
            return m.forward, m.objective, m.backward
        step_vjp, loss_vjp = _casadi_vjps(model)
        names = {**vars(m), "_step": model.numba.rhs, "step_vjp": step_vjp, "loss_vjp": loss_vjp}
        py = m.backward.py_func
        backward = pytypes.FunctionType(py.__code__, names, py.__name__)
        return m.forward, m.objective, backward


def _casadi_functions(model: Model):
    """CasADi reverse mode of the traced step and loss: vjp(x, u, c, p) -> (J_x^T p, J_u^T p) and
    grad(x, c) -> dloss/dx."""
    import casadi as ca
    x = ca.SX.sym("x", model.n_x)
    u = ca.SX.sym("u", model.n_u)
    c = ca.SX.sym("c", model.c.size)
    p = ca.SX.sym("p", model.n_x)
    y = model.casadi.rhs(x, u, c)
    vjp = ca.Function("vjp", [x, u, c, p], [ca.jtimes(y, x, p, True), ca.jtimes(y, u, p, True)])
    grad = ca.Function("lgrad", [x, c], [ca.gradient(model.casadi.loss(x, c), x)])
    return vjp, grad


def _casadi_vjps(model: Model):
    """``step_vjp``/``loss_vjp`` with the signature of the derived ones, evaluated by CasADi."""
    vjp, grad = _casadi_functions(model)

    def step_vjp(x, u, c, dims, bar, xb, ub):
        rx, ru = vjp(x, u, c, bar)
        xb += rx.full().ravel()
        ub += ru.full().ravel()
        return 0

    def loss_vjp(x, c, dims, bar, xb):
        xb += bar * grad(x, c).full().ravel()
        return 0

    return step_vjp, loss_vjp


def _check_controls(model: Model, rng: np.random.Generator) -> np.ndarray:
    out = []
    for ctl in model.controls.values():
        lo = max(ctl.lo, 0.05) if ctl.lo > -math.inf else -1.0
        hi = min(ctl.hi, lo + 2.0) if math.isfinite(ctl.hi) else lo + 2.0
        out.append(rng.uniform(lo, hi) if hi > lo else lo)
    return np.array(out)


def _compare(module, model: Model, n: int, seed: int) -> float:
    vjp, grad = _casadi_functions(model)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        xv = model.random_state(rng)
        uv = _check_controls(model, rng)
        pv = rng.standard_normal(model.n_x)
        xb, ub = np.zeros(model.n_x), np.zeros(model.n_u)
        module.step_vjp(xv, uv, model.c, model.dims, pv.copy(), xb, ub)     # (it overwrites its bar)
        rx, ru = (v.full().ravel() for v in vjp(xv, uv, model.c, pv))
        lb = np.zeros(model.n_x)
        module.loss_vjp(xv, model.c, model.dims, 1.7, lb)
        rl = 1.7 * grad(xv, model.c).full().ravel()
        for ours, ref in (((xb, ub), (rx, ru)), ((lb,), (rl,))):
            scale = max(max(float(np.max(np.abs(r), initial=0.0)) for r in ref), 1e-300)
            diff = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(ours, ref))
            worst = max(worst, diff / scale if np.isfinite(diff) else math.inf)
    return worst


def check_kernel(model: Model, n: int = CHECK_STATES, seed: int = 0) -> float:
    """Largest relative difference between the derived VJPs of ``model`` and CasADi's reverse mode
    (jtimes of the traced step, gradient of the traced loss) at ``n`` random valid states
    (``model.random_state``), controls and adjoint vectors; relative to the largest entry of the
    reference VJP. Raises :class:`UnsupportedStep` if the VJPs cannot be derived."""
    module, _, _ = _generated(model.module, "source")
    return _compare(module, model, n, seed)


# =============================================================================================
# Building, checking and caching kernels
# =============================================================================================

_GENERATED: dict[tuple[str, str], tuple[Any, str, Path]] = {}
_KERNELS: dict[tuple, Kernel] = {}
_CHECKS: dict[tuple[str, str], dict] = {}


def _module_key(module) -> str:
    return f"{module.__name__}:{getattr(module, '__file__', '')}"


def _generated(module, kind: str) -> tuple[Any, str, Path]:
    """The generated module of ``kind`` for a model module (derived and written once per process)."""
    key = (_module_key(module), kind)
    if key not in _GENERATED:
        vjps = []
        if kind == "source":
            vjps = [derive_vjp(module.step, (0, 1), "step_vjp"), derive_vjp(module.loss, (0,), "loss_vjp")]
        src = _module_source(module, kind, vjps)
        mod, path = _load_generated(src)
        _GENERATED[key] = (mod, src, path)
    return _GENERATED[key]


def _config_key(model: Model) -> str:
    return _sha1(json.dumps(model.params, sort_keys=True, default=repr) + repr(model.dims.tolist()))


def _checked(model: Model, module, src: str, path: Path) -> dict:
    """The self-check record of a derived kernel for this model configuration (memory, disk, or run now)."""
    digest, config = _sha1(src), _config_key(model)
    if (digest, config) in _CHECKS:
        return _CHECKS[(digest, config)]
    record_path = path.with_suffix(".checks.json")
    try:
        records = json.loads(record_path.read_text())
    except (OSError, ValueError):
        records = {}
    rec = records.get(config)
    if rec is not None and rec.get("digest") == digest and rec.get("states", 0) >= CHECK_STATES:
        rec = {**rec, "cached": True}
    else:
        err = _compare(module, model, CHECK_STATES, 0)
        _compile_drivers(module, model)
        rec = {"digest": digest, "error": err, "states": CHECK_STATES, "tol": CHECK_RTOL, "model": model.name}
        records[config] = rec
        try:
            tmp = record_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(records, indent=1))
            os.replace(tmp, record_path)
        except OSError:
            pass
        rec = {**rec, "cached": False}
    _CHECKS[(digest, config)] = rec
    return rec


def _compile_drivers(module, model: Model) -> None:
    """Run the compiled drivers once on two steps (compiles them, so that a failure falls back too)."""
    T = 2
    U = np.repeat(_check_controls(model, np.random.default_rng(1))[None, :], T, axis=0)
    w = np.array([0.0, 0.5, 0.5])
    Xs, xT = np.empty((T, model.n_x)), np.empty(model.n_x)
    x0 = model.initial_state()
    module.forward(x0, model.c, model.dims, U, w, 1, Xs, xT)
    module.objective(x0, model.c, model.dims, U, w)
    module.backward(Xs, xT, 1, model.c, model.dims, U, w, np.zeros_like(U))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnsupportedStep):
        return str(exc)
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"


def get_kernel(model: Model, kind: str = "auto") -> Kernel:
    """The adjoint kernel of ``model`` (cached per module, kind and model configuration).

    ``kind``: ``"auto"`` (the derived kernel if it can be derived, compiles and passes the
    self-check, else the CasADi kernel with an :class:`AdjointKernelWarning`), ``"source"`` (the
    derived kernel; an error if it cannot be derived or fails the check) or ``"casadi"``.
    """
    if model.kind != "map":
        raise ValueError(f"model {model.name!r} is an ODE: the adjoint method handles discrete maps (KIND='map')")
    if kind not in ("auto", "source", "casadi"):
        raise ValueError(f"kernel {kind!r}: expected 'auto', 'source' or 'casadi'")
    key = (_module_key(model.module), kind, _config_key(model))
    if key in _KERNELS:
        return _KERNELS[key]
    t0 = time.perf_counter()
    _ = model.numba               # registers the model's functions with numba (register_jitable)
    reason = "requested"
    if kind != "casadi":
        try:
            module, src, path = _generated(model.module, "source")
            rec = _checked(model, module, src, path)
        except Exception as exc:
            if kind == "source":
                raise
            reason = f"the derived adjoint kernel could not be built: {_describe(exc)}"
        else:
            if rec["error"] <= CHECK_RTOL:
                k = Kernel("source", module, src, time.perf_counter() - t0, "", rec)
                _KERNELS[key] = k
                return k
            reason = (f"the derived adjoint kernel failed its self-check: relative error {rec['error']:.2e} > "
                      f"{CHECK_RTOL:g} against CasADi's reverse mode at {rec['states']} random states")
            if kind == "source":
                raise ValueError(f"model {model.name!r}: {reason}")
        warnings.warn(f"model {model.name!r}: {reason}; using CasADi's reverse mode instead (exact, slower)",
                      AdjointKernelWarning, stacklevel=3)
    module, src, _ = _generated(model.module, "casadi")
    k = Kernel("casadi", module, src, time.perf_counter() - t0, reason)
    _KERNELS[key] = k
    return k


# =============================================================================================
# Objective and gradient of a control table
# =============================================================================================

#: Status of the forward pass: the states stayed finite.
OK = 0


class MapAdjoint:
    """Objective and exact gradient of a map model under a per-step control table.

    ``U`` has shape (T, n_u) (all model controls, step t uses row t); the objective is
    ``"final"`` (loss after T steps) or ``"integral"`` (mean loss after steps 1..T).
    :meth:`value` runs the forward pass only; :meth:`value_and_grad` also the adjoint pass and
    returns G (T, n_u) with G[t, j] = dJ/dU[t, j].
    """

    def __init__(self, model: Model, T: int, x0: np.ndarray | None = None, c: np.ndarray | None = None,
                 objective: str = "final", kernel: str = "auto"):
        if model.kind != "map":
            raise ValueError(f"model {model.name!r} is not a discrete map")
        self.model = model
        self.T = int(T)
        self.x0 = model.initial_state() if x0 is None else model.check_state(x0)
        self.c = np.ascontiguousarray(model.c if c is None else c, dtype=float)
        self.kernel = get_kernel(model, kernel)
        self._forward, self._objective, self._backward = self.kernel.drivers(model)
        self.w = np.zeros(self.T + 1)
        if objective == "final":
            self.w[-1] = 1.0
        elif objective == "integral":
            self.w[1:] = 1.0 / self.T
        else:
            raise ValueError(f"objective {objective!r}: the adjoint method supports 'final' and 'integral'")
        self.objective = objective
        n_x = model.n_x
        if self.T * n_x * 8 <= STORE_ALL_BYTES:
            self.S = 1
        else:
            self.S = max(1, min(self.T, int(STORE_ALL_BYTES // (n_x * 8)), int(math.ceil(math.sqrt(self.T)))))
        self.Xs = np.empty(((self.T + self.S - 1) // self.S, n_x))
        self.xT = np.empty(n_x)
        self.n_backward = 0

    def value(self, U: np.ndarray) -> float:
        """J under the control table U (inf if the states overflow)."""
        U = np.ascontiguousarray(U, dtype=float)
        return float(self._objective(self.x0, self.c, self.model.dims, U, self.w))

    def value_and_grad(self, U: np.ndarray) -> tuple[float, np.ndarray]:
        U = np.ascontiguousarray(U, dtype=float)
        if U.shape != (self.T, self.model.n_u):
            raise ValueError(f"controls: expected shape {(self.T, self.model.n_u)}, got {U.shape}")
        dims = self.model.dims
        J, status = self._forward(self.x0, self.c, dims, U, self.w, self.S, self.Xs, self.xT)
        G = np.zeros_like(U)
        if status != OK:
            return float("inf"), G
        self.n_backward += 1
        self._backward(self.Xs, self.xT, self.S, self.c, dims, U, self.w, G)
        if not np.all(np.isfinite(G)):     # a state overflowed between the forward pass's checks
            return float("inf"), np.zeros_like(U)
        return float(J), G
