"""The objective of a protocol for a problem, by simulation (and, for maps, with exact gradients).

Baselines, schedule-family fits and the verification of every optimum evaluate protocols here,
on the numba simulator: independent of the method that found the optimum. For discrete maps with
a final or time-averaged objective the evaluator also offers the exact gradient with respect to
a per-step control table (one adjoint pass, :class:`opt_protocols.ad.MapAdjoint`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property

import numpy as np

from ..protocol import Protocol
from ..simulate import final_loss, simulate
from .problem import Problem

#: Output points used for an ODE's time-averaged or time-to-target objective.
FINE_POINTS = 4001
#: n_x * steps from which baseline searches of a map build the adjoint kernel for its faster
#: forward pass (below, a simulation is cheap and the kernel may not be needed at all).
KERNEL_SEARCH_SIZE = 10 ** 6


def log_scale(J: float, delta: float) -> tuple[float, float]:
    """(f, df/dJ) for f = asinh(J / delta) - log(2 / delta), the optimisers' objective for J.

    For J >> delta, f = log J (to relative order (delta/J)^2): the same minimisers as J, scaled
    alike across horizons and decades of loss. Unlike log J it stays finite and smooth at J = 0
    (a loss that can be driven to zero) and for J < 0, and it is monotone, so it has exactly the
    minimisers of J. ``delta`` (> 0) is a small multiple of a typical J, e.g. ``tol * J_start``.
    """
    if abs(J) > delta:      # asinh(|J|/delta) without overflow of J/delta
        r = delta / J
        a = math.copysign(math.log(abs(J)) - math.log(delta) + math.log1p(math.sqrt(1.0 + r * r)), J)
    else:
        a = math.asinh(J / delta)
    return a - math.log(2.0 / delta), 1.0 / math.hypot(J, delta)


def log_scale_delta(J_ref: float, tol: float) -> float:
    """The ``delta`` of :func:`log_scale` for a run whose objectives are of the order of ``J_ref``."""
    d = abs(J_ref) * tol if math.isfinite(J_ref) else 0.0
    return d if d > 1e-300 else 1e-300


class Evaluator:
    """Objective values (and, for maps, gradients) of protocols for one :class:`Problem`."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.n_evaluations = 0

    # ---- values -------------------------------------------------------------------------------
    def objective(self, protocol: Protocol, static: Mapping[str, float] | None = None,
                  t_final: float | None = None) -> float:
        """The problem's objective under ``protocol`` (time objective: the time to reach the target)."""
        p = self.problem
        m = p.model
        c = p.c_with(static)
        T = p.t_final if t_final is None else t_final
        self.n_evaluations += 1
        if p.objective == "final":
            return final_loss(m, p.x0, protocol, T, c=c)
        if p.objective == "integral":
            n = int(T) + 1 if m.kind == "map" else FINE_POINTS
            tr = simulate(m, p.x0, protocol, T, c=c, n_out=n, rtol=1e-10, atol=1e-12)
            if m.kind == "map":
                return float(np.mean(tr.loss[1:]))
            return float(np.trapezoid(tr.loss, tr.t) / T)
        tr = simulate(m, p.x0, protocol, p.t_max, c=c, n_out=FINE_POINTS, rtol=1e-10, atol=1e-12)
        below = np.nonzero(tr.loss <= p.target)[0]
        if below.size == 0:
            return float("inf")
        k = below[0]
        if k == 0:
            return 0.0
        t0, t1, l0, l1 = tr.t[k - 1], tr.t[k], tr.loss[k - 1], tr.loss[k]
        return float(t0 + (p.target - l0) * (t1 - t0) / (l1 - l0))

    def search_objective(self, protocol: Protocol, static: Mapping[str, float] | None = None) -> float:
        """The objective for searches that evaluate many protocols (baseline scans and fits).

        For maps with an exact-gradient evaluator, once it exists or when the problem is large
        (:data:`KERNEL_SEARCH_SIZE`): its forward pass (the model's own step and loss, compiled with
        reassociation, :mod:`opt_protocols.ad.kernel`; agrees with :meth:`objective` to rounding,
        ~1e-15 relative, and is faster at thousands of states). Otherwise :meth:`objective`.
        Reported baseline values use :meth:`objective` (a search value only where it is that same
        number, :meth:`search_is_objective`).
        """
        if self.search_is_objective(static):
            return self.objective(protocol, static)
        self.n_evaluations += 1
        return self.adjoint.value(self.table(protocol))

    def search_is_objective(self, static: Mapping[str, float] | None = None) -> bool:
        """Whether :meth:`search_objective` is :meth:`objective` (the same number) for these static values."""
        p = self.problem
        big = p.model.kind == "map" and p.model.n_x * self.steps >= KERNEL_SEARCH_SIZE
        return bool(static) or not (big or "adjoint" in self.__dict__) or not self.has_gradient

    def curve(self, protocol: Protocol, static: Mapping[str, float] | None, t_out: np.ndarray) -> np.ndarray:
        """The loss under ``protocol`` at the times ``t_out`` (NaN beyond the protocol's end)."""
        p = self.problem
        T = min(float(t_out[-1]), float(protocol.tk[-1]))
        inside = t_out[t_out <= T]
        out = np.full(t_out.size, np.nan)
        if inside.size:
            tr = simulate(p.model, p.x0, protocol, T, c=p.c_with(static), t_eval=inside, rtol=1e-10, atol=1e-12)
            out[: inside.size] = tr.loss
        return out

    # ---- per-step tables and gradients (maps) ---------------------------------------------------
    @property
    def steps(self) -> int:
        return int(round(self.problem.t_final))

    def table(self, protocol: Protocol) -> np.ndarray:
        """The per-step control table (steps, n_u) of a map: step k uses the controls at time k."""
        return np.ascontiguousarray(protocol(np.arange(self.steps, dtype=float)))

    @cached_property
    def adjoint(self):
        """The exact-gradient evaluator of a map (None for ODE models, other objectives, and problems
        with static variables, whose constants change between evaluations)."""
        p = self.problem
        if p.model.kind != "map" or p.objective not in ("final", "integral") or p.static:
            return None
        from ..ad import MapAdjoint
        return MapAdjoint(p.model, self.steps, p.x0, p.c, p.objective)

    @property
    def has_gradient(self) -> bool:
        return self.adjoint is not None

    def value_steps(self, U: np.ndarray) -> float:
        """The objective under a per-step table (maps with an adjoint evaluator)."""
        self.n_evaluations += 1
        return self.adjoint.value(U)

    def value_and_grad_steps(self, U: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and its gradient with respect to every entry of the per-step table."""
        self.n_evaluations += 1
        return self.adjoint.value_and_grad(U)
