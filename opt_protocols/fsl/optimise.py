"""The schedule that minimises the fitted ansatz's final loss, by the project's optimal control
[FSL25] (docs/models.md, section 6; docs/fsl.md).

The problem: given the warmup (steps 0..W, ending at the peak eta_max), choose eta_{W+1}, ...,
eta_{K-1} with eta_max >= eta_{W+1} >= eta_{W+2} >= ... >= 0 to minimise L(K-1) of a fitted
:class:`~.law.LossLaw`. The ansatz becomes a discrete-map model (:mod:`.surrogate_model`), and the
problem is :func:`opt_protocols.solve` with ``monotone={"eta": "decreasing"}`` and the adjoint
method (block-constant controls, exact gradients, SLSQP for the linear monotonicity constraints),
started from the best constant and the best WSD schedule. Everything the pipeline does for any
model comes with it: baselines, verification of the optimum by re-simulation, storage.

The optimum's per-step schedule is then evaluated with the exact ansatz (:mod:`.law`, no
exponential sums): :attr:`OptimisedSchedule.final_loss`; the relative difference to the solver's
objective (the exponential-sum error) is kept as ``surrogate_error``.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..model import Model, load_model
from .law import LossLaw

#: The surrogate model module (a dotted name for :func:`opt_protocols.load_model`).
SURROGATE = "opt_protocols.fsl.surrogate_model"
#: Default number of control blocks after the warmup.
INTERVALS = 200


def linear_warmup(W: int, peak: float) -> np.ndarray:
    """Learning rates of steps 0..W of a linear warmup from 0 reaching ``peak`` at step W."""
    if int(W) < 1:
        raise ValueError(f"warmup = {W!r}: expected at least one warmup step")
    return peak * np.arange(int(W) + 1, dtype=float) / int(W)


def surrogate(law: LossLaw, warmup_eta: np.ndarray, horizon: int, eta_max: float | None = None) -> Model:
    """The map model of ``law`` after the warmup ``warmup_eta`` (steps 0..W, data units), for a run of
    ``horizon`` steps whose learning rate stays below ``eta_max`` (default: the warmup's peak)."""
    warmup_eta = np.asarray(warmup_eta, dtype=float)
    W = warmup_eta.size - 1
    if W < 1 or not np.all(np.isfinite(warmup_eta)) or warmup_eta[-1] <= 0:
        raise ValueError("warmup: expected the learning rates of steps 0..W (W >= 1) ending at a positive peak")
    if int(horizon) <= W + 1:
        raise ValueError(f"horizon = {horizon}: expected more steps than the warmup ({W + 1})")
    eta_max = float(warmup_eta[-1]) if eta_max is None else float(eta_max)
    if not eta_max > 0:
        raise ValueError(f"eta_max = {eta_max!r}: expected a positive learning rate")
    x = warmup_eta / law.eta_ref
    steps_after = int(horizon) - 1 - W
    return load_model(SURROGATE, L0=law.L0, c1=law.c1, s=law.s, c2=law.c2, c3=law.c3, c4=law.c4,
                      gamma=law.gamma, tau0=float(np.sum(x)), eta0=float(x[-1]),
                      y_max=law.c4 * steps_after * max(eta_max / law.eta_ref, x[-1]))


@dataclass
class OptimisedSchedule:
    """The surrogate-optimal schedule: ``eta`` per step (data units), its exact predicted loss,
    the solution of the optimal-control problem and the size of its approximation."""

    eta: np.ndarray
    final_loss: float
    solution: object            # opt_protocols.Solution (on the surrogate map, eta in units of eta_ref)
    surrogate_error: float
    warmup: int
    horizon: int
    eta_max: float
    eta_min: float
    wall_time: float

    def summary(self) -> str:
        s = self.solution
        return (f"optimal monotone schedule: predicted final loss {self.final_loss:.6f} (solver {s.objective:.6f}, "
                f"exponential-sum error {self.surrogate_error:.1e}); {s.status}, {s.stats.get('iterations')} "
                f"iterations, {self.wall_time:.1f} s")


def optimise(law: LossLaw, horizon: int, warmup_eta: np.ndarray, eta_max: float | None = None,
             eta_min: float = 0.0, intervals: int = INTERVALS,
             starts: Sequence = ("best_constant", "wsd")) -> OptimisedSchedule:
    """The non-increasing schedule eta_max >= eta_{W+1} >= ... >= eta_{K-1} >= ``eta_min`` after the
    warmup ``warmup_eta`` (steps 0..W) that minimises the predicted loss at step ``horizon`` - 1."""
    import opt_protocols as op
    t0 = time.perf_counter()
    warmup_eta = np.asarray(warmup_eta, dtype=float)
    W = warmup_eta.size - 1
    eta_max = float(warmup_eta[-1]) if eta_max is None else float(eta_max)
    if not 0.0 <= eta_min < eta_max:
        raise ValueError(f"eta_min = {eta_min!r}: expected 0 <= eta_min < eta_max = {eta_max:g}")
    model = surrogate(law, warmup_eta, horizon, eta_max)
    steps_after = int(horizon) - 1 - W
    sol = op.solve(model, t_final=steps_after, controls={"eta": (eta_min / law.eta_ref, eta_max / law.eta_ref)},
                   monotone={"eta": "decreasing"},
                   method=op.Adjoint(intervals=min(int(intervals), steps_after), optimizer="SLSQP",
                                     starts=tuple(starts)))
    post = sol.protocol(np.arange(steps_after, dtype=float))[:, 0] * law.eta_ref
    eta = np.concatenate([warmup_eta, post])
    final = float(law(eta, np.array([eta.size - 1]))[0])
    return OptimisedSchedule(eta=eta, final_loss=final, solution=sol,
                             surrogate_error=abs(float(sol.objective) - final) / final, warmup=W,
                             horizon=int(horizon), eta_max=eta_max, eta_min=float(eta_min),
                             wall_time=time.perf_counter() - t0)
