"""Adjoint kernels of a discrete-map model: derived VJPs, compiled drivers, the CasADi fallback.

A kernel evaluates J = sum_t w_t loss(x_t) of a map x_{t+1} = step(x_t, u_t) under a per-step
control table and its exact gradient by one forward and one backward (adjoint) pass.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import types

from ..backends.numba import LOSS_TYPE, RHS_TYPE
from ..model import Model
from .transform import UnsupportedStep, derive_vjp

#: Store every state in the forward pass when that takes at most this many bytes; otherwise
#: checkpoint every S steps and recompute each segment in the backward pass.
STORE_ALL_BYTES = 128 * 2 ** 20

v1 = types.float64[::1]
m2 = types.float64[:, ::1]
iv = types.int64[::1]


def _cache_dir() -> Path | None:
    base = os.environ.get("OPT_PROTOCOLS_CACHE") or str(Path.home() / ".cache" / "opt_protocols")
    path = Path(base) / "adjoint"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".probe"
        probe.write_text("")
        probe.unlink()
        return path
    except OSError:
        return None


@dataclass
class Kernel:
    """Compiled pieces for one model module.

    ``kind="source"``: ``module`` is the generated module holding the derived ``step_vjp`` and
    ``loss_vjp`` and the numba drivers ``forward``, ``backward``, ``objective`` that call the
    model's ``step``/``loss`` directly (inlined; compiled and cached on disk like the model).
    ``kind="casadi"``: the VJPs come from CasADi (see :class:`MapAdjoint`); the drivers are the
    generic first-class-function ones of this module. ``step``/``loss``: the model's numba entry points.
    """

    kind: str
    step: Any
    loss: Any
    module: Any = None
    source: str = ""
    build_time: float = 0.0
    reason: str = ""

    @property
    def vjp(self):
        return self.module.step_vjp

    @property
    def loss_vjp(self):
        return self.module.loss_vjp


_KERNELS: dict[str, Kernel] = {}
#: LLVM flags for the derived VJPs: reassociation lets the adjoint reductions (e.g. the sums into
#: d/d eta over all modes) vectorise, ~2.7x faster at N = 2000; rounding changes at the 1e-16
#: level only (no 'nnan'/'ninf': non-finite values keep their IEEE meaning). The forward pass is
#: the model's own step, compiled without these flags.
VJP_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

#: Forward/backward drivers appended to every generated module: they call the model's step and
#: loss (``_step``, ``_loss``) and the derived VJPs directly, so numba inlines them.
_DRIVERS = """

@numba.njit(cache=True)
def forward(x0, c, dims, U, w, S, Xs, xT):
    # J = sum_t w_t loss(x_t); x_t stored at t = 0, S, 2S, ... in Xs and x_T in xT; status 1 = overflow
    T = U.shape[0]
    x = x0.copy()
    J = 0.0
    if w[0] != 0.0:
        J += w[0] * _loss(x, c, dims)
    for t in range(T):
        if t % S == 0:
            Xs[t // S] = x
        x = _step(x, U[t], c, dims)
        for i in range(x.shape[0]):
            if not np.isfinite(x[i]):
                xT[:] = np.nan
                return np.inf, 1
        if w[t + 1] != 0.0:
            J += w[t + 1] * _loss(x, c, dims)
    xT[:] = x
    return J, 0


@numba.njit(cache=True)
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
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return np.inf
    return J if np.isfinite(J) else np.inf


@numba.njit(cache=True)
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
    buf = np.empty((min(S, T), n_x))
    n_seg = (T + S - 1) // S
    for seg in range(n_seg - 1, -1, -1):
        t0 = seg * S
        t1 = min(T, t0 + S)
        buf[0] = Xs[seg]
        for t in range(t0, t1 - 1):
            buf[t - t0 + 1] = _step(buf[t - t0], U[t], c, dims)
        for t in range(t1 - 1, t0 - 1, -1):
            q[:] = 0.0
            g[:] = 0.0
            step_vjp(buf[t - t0], U[t], c, dims, p, q, g)
            G[t] = g
            if w[t] != 0.0:
                loss_vjp(buf[t - t0], c, dims, w[t], q)
            p, q = q, p
    return p
"""


def _module_source(module, step_src: str, loss_src: str, used: set[str]) -> str:
    """The generated module: model import, inlined numeric globals, derived VJPs, drivers."""
    model_src = inspect.getsource(module)
    head = ["# generated by opt_protocols.adjoint from " + str(getattr(module, "__file__", module.__name__)),
            "# model source sha1 " + hashlib.sha1(model_src.encode()).hexdigest(),
            "# reverse-mode source transformation of step() and loss(); do not edit",
            "import math", "import sys", "", "import numba", "import numpy as np", "",
            "from opt_protocols import ops", "",
            f"_model = sys.modules[{module.__name__!r}]",
            "_step = _model.step", "_loss = _model.loss", ""]
    g = vars(module)
    for name in sorted(used):
        if name in ("ops", "math", "np", "range", "len", "int", "float", "min", "max", "abs") or name not in g:
            continue
        val = g[name]
        if isinstance(val, (bool, int, float, np.integer, np.floating)):
            head.append(f"{name} = {val!r}")
        else:
            raise UnsupportedStep(f"the step reads the module global {name!r} ({type(val).__name__}): "
                                  f"only numbers can be inlined")
    fm = f"@numba.njit(cache=True, fastmath=set({sorted(VJP_FASTMATH)!r}))\n"
    return ("\n".join(head) + "\n\n" + fm + step_src + "\n\n" + fm + loss_src + _DRIVERS)


def get_kernel(model: Model, kind: str = "auto") -> Kernel:
    """The adjoint kernel of ``model``'s module (cached per module and kind).

    ``kind``: ``"source"`` (VJP by source transformation, compiled by numba), ``"casadi"``
    (VJP of the traced CasADi step, evaluated step by step: generic but slow), or ``"auto"``
    (source, falling back to casadi when the model's code is outside the supported subset).
    """
    if model.kind != "map":
        raise ValueError(f"model {model.name!r} is an ODE: the adjoint method handles discrete maps (KIND='map')")
    if kind not in ("auto", "source", "casadi"):
        raise ValueError(f"kernel {kind!r}: expected 'auto', 'source' or 'casadi'")
    module = model.module
    key = f"{module.__name__}:{getattr(module, '__file__', '')}:{kind}"
    if key in _KERNELS:
        return _KERNELS[key]
    t0 = time.perf_counter()
    nb = model.numba          # registers the model's functions with numba (register_jitable)
    if kind in ("auto", "source"):
        try:
            step_src, used1 = derive_vjp(module.step, (0, 1), "step_vjp")
            loss_src, used2 = derive_vjp(module.loss, (0,), "loss_vjp")
            src = _module_source(module, step_src, loss_src, used1 | used2)
            gen = _load_generated(src)
            k = Kernel("source", nb.rhs, nb.loss, gen, src, time.perf_counter() - t0)
            _KERNELS[key] = k
            return k
        except UnsupportedStep as exc:
            if kind == "source":
                raise
            reason = str(exc)
    else:
        reason = "requested"
    k = Kernel("casadi", nb.rhs, nb.loss, None, "", time.perf_counter() - t0, reason)
    _KERNELS[key] = k
    return k


def _load_generated(src: str):
    """Import the generated module from a file in the cache directory (so that numba caches the
    compiled code on disk), else from memory (a temporary file is still needed by numba)."""
    digest = hashlib.sha1(src.encode()).hexdigest()[:16]
    mod_name = f"opt_protocols_adjoint_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    d = _cache_dir()
    if d is None:
        import tempfile
        d = Path(tempfile.mkdtemp(prefix="opt_protocols_adjoint_"))
    path = d / f"vjp_{digest}.py"
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
    return mod


def check_kernel(model: Model, n: int = 5, seed: int = 0) -> float:
    """Largest relative difference between the derived VJPs and CasADi's (reverse mode of the
    traced step and loss) at ``n`` random valid states, controls and adjoint vectors."""
    import casadi as ca
    k = get_kernel(model, "source")
    x = ca.SX.sym("x", model.n_x)
    u = ca.SX.sym("u", model.n_u)
    c = ca.SX.sym("c", model.c.size)
    p = ca.SX.sym("p", model.n_x)
    y = model.casadi.rhs(x, u, c)
    ref = ca.Function("vjp", [x, u, c, p], [ca.jtimes(y, x, p, True), ca.jtimes(y, u, p, True)])
    lref = ca.Function("lvjp", [x, c], [ca.gradient(model.casadi.loss(x, c), x)])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        xv = model.random_state(rng)
        uv = np.array([rng.uniform(max(ctl.lo, 0.05), min(ctl.hi, ctl.lo + 2.0) if math.isfinite(ctl.hi)
                                   else max(ctl.lo, 0.05) + 2.0) for ctl in model.controls.values()])
        pv = rng.standard_normal(model.n_x)
        xb, ub = np.zeros(model.n_x), np.zeros(model.n_u)
        k.vjp(xv, uv, model.c, model.dims, pv, xb, ub)
        rx, ru = (np.array(v).ravel() for v in ref(xv, uv, model.c, pv))
        lb = np.zeros(model.n_x)
        k.loss_vjp(xv, model.c, model.dims, 1.7, lb)
        rl = 1.7 * np.array(lref(xv, model.c)).ravel()
        for a, b in ((xb, rx), (ub, ru), (lb, rl)):
            worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst


# =============================================================================================
# Forward and backward passes (numba)
# =============================================================================================

OK, NOT_FINITE = 0, 1


@numba.njit(types.Tuple((types.float64, types.int64))(RHS_TYPE, LOSS_TYPE, v1, v1, iv, m2, v1, types.int64, m2,
                                                       v1), cache=True)
def _forward(step, loss, x0, c, dims, U, w, S, Xs, xT):
    """J = sum_t w_t loss(x_t); stores x_t at t = 0, S, 2S, ... in Xs and x_T in xT."""
    T = U.shape[0]
    x = x0.copy()
    J = 0.0
    if w[0] != 0.0:
        J += w[0] * loss(x, c, dims)
    for t in range(T):
        if t % S == 0:
            Xs[t // S] = x
        x = step(x, U[t], c, dims)
        for i in range(x.shape[0]):
            if not np.isfinite(x[i]):
                xT[:] = np.nan
                return np.inf, NOT_FINITE
        if w[t + 1] != 0.0:
            J += w[t + 1] * loss(x, c, dims)
    xT[:] = x
    return J, OK


@numba.njit(types.float64(RHS_TYPE, LOSS_TYPE, v1, v1, iv, m2, v1), cache=True)
def _objective_only(step, loss, x0, c, dims, U, w):
    T = U.shape[0]
    x = x0.copy()
    J = 0.0
    if w[0] != 0.0:
        J += w[0] * loss(x, c, dims)
    for t in range(T):
        x = step(x, U[t], c, dims)
        if w[t + 1] != 0.0:
            J += w[t + 1] * loss(x, c, dims)
    if not np.isfinite(J):
        return np.inf
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return np.inf
    return J


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
        self.n_forward = 0
        self.n_backward = 0
        if self.kernel.kind == "casadi":
            self._casadi_vjp()

    def _casadi_vjp(self):
        import casadi as ca
        m = self.model
        x = ca.SX.sym("x", m.n_x)
        u = ca.SX.sym("u", m.n_u)
        p = ca.SX.sym("p", m.n_x)
        y = m.casadi.rhs(x, u, self.c)
        self._cvjp = ca.Function("vjp", [x, u, p], [ca.jtimes(y, x, p, True), ca.jtimes(y, u, p, True)])
        self._cgrad = ca.Function("lgrad", [x], [ca.gradient(m.casadi.loss(x, self.c), x)])

    def value(self, U: np.ndarray) -> float:
        """J under the control table U (inf if the states overflow)."""
        U = np.ascontiguousarray(U, dtype=float)
        self.n_forward += 1
        k = self.kernel
        if k.kind == "source":
            return float(k.module.objective(self.x0, self.c, self.model.dims, U, self.w))
        return float(_objective_only(k.step, k.loss, self.x0, self.c, self.model.dims, U, self.w))

    def value_and_grad(self, U: np.ndarray) -> tuple[float, np.ndarray]:
        U = np.ascontiguousarray(U, dtype=float)
        if U.shape != (self.T, self.model.n_u):
            raise ValueError(f"controls: expected shape {(self.T, self.model.n_u)}, got {U.shape}")
        k = self.kernel
        dims = self.model.dims
        if k.kind == "source":
            J, status = k.module.forward(self.x0, self.c, dims, U, self.w, self.S, self.Xs, self.xT)
        else:
            J, status = _forward(k.step, k.loss, self.x0, self.c, dims, U, self.w, self.S, self.Xs, self.xT)
        self.n_forward += 1
        G = np.zeros_like(U)
        if status != OK:
            return float("inf"), G
        self.n_backward += 1
        if k.kind == "source":
            k.module.backward(self.Xs, self.xT, self.S, self.c, dims, U, self.w, G)
        else:
            self._backward_casadi(U, G)
        return float(J), G

    def _backward_casadi(self, U, G):
        k = self.kernel
        dims = self.model.dims
        T, S = self.T, self.S
        p = self.w[T] * np.array(self._cgrad(self.xT)).ravel()
        for seg in range((T + S - 1) // S - 1, -1, -1):
            t0, t1 = seg * S, min(T, seg * S + S)
            buf = [self.Xs[seg]]
            for t in range(t0, t1 - 1):
                buf.append(k.step(buf[-1], U[t], self.c, dims))
            for t in range(t1 - 1, t0 - 1, -1):
                px, pu = self._cvjp(buf[t - t0], U[t], p)
                G[t] = np.array(pu).ravel()
                p = np.array(px).ravel()
                if self.w[t] != 0.0:
                    p = p + self.w[t] * np.array(self._cgrad(buf[t - t0])).ravel()

