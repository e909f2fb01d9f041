"""Fitting the loss-curve ansatz (:mod:`.law`) to training-loss curves, and held-out errors [FSL25].

The fit follows docs/models.md section 6: residuals on log-loss, log L_law(k) - log L_data(k), at the
logged steps after the warmup (:meth:`.data.LossCurve.fit_mask`), under a Huber loss with
delta = 1e-3 (scipy ``least_squares``, trust-region reflective, analytic Jacobian). The seven
constants are optimised as logarithms (all positive).

Starting points by variable projection: the law is linear in (L0, c1, c2, c2 c3) once (s, c4, gamma)
are fixed, so for every point of a small grid of (s, c4, gamma) those four come from a
non-negative least-squares fit of the loss itself, and the best ``n_starts`` grid points start
the full fit. The best full fit wins.
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from .data import LossCurve
from .law import PARAM_NAMES, LossLaw, evaluate

#: Huber threshold on the log-loss residuals (docs/models.md section 6).
HUBER_DELTA = 1e-3
#: Grids of the nonlinear constants for the starting points (c4 in 1/(steps at eta_ref)).
GRID = {"s": (0.3, 0.5, 0.8), "c4": (1e-3, 1e-2, 1e-1), "gamma": (0.3, 1.0)}
COARSE_GRID = {"s": (0.5,), "c4": (1e-2, 1e-1), "gamma": (0.5,)}
#: Bounds of the log-parameters: keeps exponents in a sane range and every constant positive.
LOG_BOUNDS = {"L0": (-7.0, 5.0), "c1": (-15.0, 15.0), "s": (math.log(1e-3), math.log(5.0)),
              "c2": (-20.0, 10.0), "c3": (-25.0, 8.0), "c4": (math.log(1e-8), math.log(1e2)),
              "gamma": (math.log(1e-3), math.log(20.0))}


@dataclass
class FitResult:
    """A fitted :class:`LossLaw` and how it was obtained."""

    law: LossLaw
    curves: list[str]
    cost: float                  # Huber cost at the optimum (scipy's 0.5 sum rho)
    n_points: int
    rms_log_residual: float
    success: bool
    message: str
    n_evaluations: int
    wall_time: float
    at_bounds: list[str] = field(default_factory=list)
    starts: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        p = ", ".join(f"{k} = {v:.5g}" for k, v in self.law.to_dict().items())
        b = f"; at the bound of {', '.join(self.at_bounds)}" if self.at_bounds else ""
        return (f"fit on {', '.join(self.curves)} ({self.n_points} points): {p}; rms log residual "
                f"{self.rms_log_residual:.2e}{b}; {self.message} ({self.n_evaluations} evaluations, "
                f"{self.wall_time:.1f} s)")


class _Data:
    """The fit points of several curves, with their schedules in units of eta_ref."""

    def __init__(self, curves: Sequence[LossCurve], eta_ref: float):
        self.items = []
        for c in curves:
            mask = c.fit_mask()
            if not mask.any():
                raise ValueError(f"loss curve {c.label}: no logged loss after the warmup (step {c.warmup})")
            self.items.append((c.eta / eta_ref, c.steps[mask], c.loss[mask]))
        self.y = np.concatenate([it[2] for it in self.items])
        self.n = self.y.size

    def law(self, p: np.ndarray, jac: bool = False):
        Ls, Js = [], []
        for eta, steps, _ in self.items:
            L, J = evaluate(p, eta, steps, jac)
            Ls.append(L)
            Js.append(J)
        return np.concatenate(Ls), (np.concatenate(Js) if jac else None)


def _huber_cost(r: np.ndarray, delta: float) -> float:
    a = np.abs(r)
    return float(np.sum(np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))))


def _projected_start(data: _Data, s: float, c4: float, gamma: float) -> tuple[np.ndarray, float] | None:
    """(L0, c1, c2, c2 c3) by non-negative least squares for fixed (s, c4, gamma); Huber cost in log-loss."""
    _, J = data.law(np.array([0.0, 1.0, s, 1.0, 0.0, c4, gamma]), jac=True)
    # L = L0 * 1 + c1 * tau^-s - c2 * sum d tau_i^-s G - (c2 c3) * sum d G   (columns 0, 1, 3, 4 at c2 = 1)
    A = np.column_stack([J[:, 0], J[:, 1], J[:, 3], J[:, 4]])
    coef, _ = optimize.nnls(A, data.y)
    L0, c1, c2, c2c3 = coef
    if c2 == 0 and c2c3 > 0:     # the limit c3 -> infinity at fixed c2 c3: start at the bound of c3
        c3 = math.exp(LOG_BOUNDS["c3"][1] - 1.0)
        c2 = c2c3 / c3
    if not (L0 > 0 and c1 > 0 and c2 > 0):
        return None
    c3 = c2c3 / c2
    p = np.array([L0, c1, s, c2, max(c3, 1e-9 * max(float(np.max(J[:, 1])), 1e-12)), c4, gamma])
    L, _ = data.law(p)
    if np.any(L <= 0):
        return None
    return p, _huber_cost(np.log(L) - np.log(data.y), HUBER_DELTA)


def fit(curves: Sequence[LossCurve], eta_ref: float | None = None, delta: float = HUBER_DELTA,
        n_starts: int = 2, coarse: bool = False, max_nfev: int = 400) -> FitResult:
    """Fit the ansatz to ``curves`` (jointly); ``eta_ref`` (default: the largest learning rate of the
    curves) is the unit of the intrinsic time. See the module docstring."""
    t0 = time.perf_counter()
    curves = list(curves)
    if not curves:
        raise ValueError("fit: no loss curves given")
    if not delta > 0:
        raise ValueError(f"delta = {delta!r}: expected a positive Huber threshold")
    eta_ref = float(max(c.eta.max() for c in curves)) if eta_ref is None else float(eta_ref)
    if not eta_ref > 0:
        raise ValueError(f"eta_ref = {eta_ref!r}: expected a positive learning rate")
    if not any(np.any(np.diff(c.eta[c.warmup:]) != 0) for c in curves):
        raise ValueError("fit: no curve changes its learning rate after the warmup, so the loss-reduction term "
                         "(c2, c3, c4, gamma) is not determined; include a decaying schedule")
    data = _Data(curves, eta_ref)
    grid = COARSE_GRID if coarse else GRID
    starts = []
    for s, c4, g in itertools.product(grid["s"], grid["c4"], grid["gamma"]):
        out = _projected_start(data, s, c4, g)
        if out is not None:
            starts.append(out)
    if not starts:
        raise ValueError("fit: no starting point gives a positive loss everywhere; check the curves")
    starts.sort(key=lambda pc: pc[1])
    lo = np.array([LOG_BOUNDS[n][0] for n in PARAM_NAMES])
    hi = np.array([LOG_BOUNDS[n][1] for n in PARAM_NAMES])
    n_eval = [0]
    last: dict = {}     # the Jacobian at the last residual point: least_squares asks for it next

    def residuals(theta):
        n_eval[0] += 1
        p = np.exp(theta)
        L, J = data.law(p, jac=True)      # with the Jacobian: little more than L alone, and most points are kept
        Lc = np.maximum(L, 1e-300)
        last.update(theta=theta.copy(), jac=J * (p / Lc[:, None]))
        return np.log(Lc) - np.log(data.y)

    def jacobian(theta):
        if "theta" not in last or not np.array_equal(last["theta"], theta):
            residuals(theta)
        return last["jac"]

    best, record = None, []
    for p0, c0 in starts[:max(1, n_starts)]:
        th0 = np.clip(np.log(p0), lo + 1e-9, hi - 1e-9)
        res = optimize.least_squares(residuals, th0, jac=jacobian, bounds=(lo, hi), loss="huber", f_scale=delta,
                                     method="trf", x_scale="jac", max_nfev=max_nfev, ftol=1e-12, xtol=1e-12,
                                     gtol=1e-10)
        record.append({"start": dict(zip(PARAM_NAMES, map(float, p0))), "start_cost": c0,
                       "cost": float(res.cost), "status": int(res.status), "nfev": int(res.nfev)})
        if best is None or res.cost < best.cost:
            best = res
    p = np.exp(best.x)
    at = [n for n, v, a, b in zip(PARAM_NAMES, best.x, lo, hi) if min(v - a, b - v) < 1e-6]
    law = LossLaw(**dict(zip(PARAM_NAMES, map(float, p))), eta_ref=eta_ref)
    return FitResult(law=law, curves=[c.label for c in curves], cost=float(best.cost), n_points=data.n,
                     rms_log_residual=float(np.sqrt(np.mean(best.fun ** 2))), success=bool(best.status > 0),
                     message=str(best.message), n_evaluations=n_eval[0], wall_time=time.perf_counter() - t0,
                     at_bounds=at, starts=record)


def curve_errors(law: LossLaw, curve: LossCurve) -> dict[str, float]:
    """RMSE of the loss and worst relative error |L_law - L_data|/L_data over the curve's fit points."""
    mask = curve.fit_mask()
    pred = law(curve.eta, curve.steps[mask])
    obs = curve.loss[mask]
    rel = np.abs(pred - obs) / obs
    k = int(np.argmax(rel))
    return {"rmse": float(np.sqrt(np.mean((pred - obs) ** 2))), "worst_rel": float(rel[k]),
            "worst_step": int(curve.steps[mask][k]), "final_pred": float(pred[-1]), "final_obs": float(obs[-1]),
            "final_rel": float((pred[-1] - obs[-1]) / obs[-1]), "n": int(mask.sum())}
