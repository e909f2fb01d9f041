"""The fitted LLM loss-curve ansatz (:mod:`opt_protocols.fsl.law`) as a discrete-map model, so that
its optimal learning-rate schedule is an ordinary optimal-control problem for ``op.solve``
[FSL25] (docs/models.md, section 6; docs/fsl.md).

One map step is one training step after the warmup, with control ``eta`` (in units of the law's
``eta_ref``). The ansatz is not Markov in tau: the weight 1 - (1 + c4 dtau)^(-gamma) of every past
decrease depends on the intrinsic time elapsed since. Writing the power as a sum of exponentials,
(1 + y)^(-gamma) ~ w0 + sum_j w_j exp(-r_j y) on 0 <= y <= ``y_max``
(:func:`opt_protocols.fsl.law.power_as_exponentials`: relative error < 1e-7), makes it Markov with
the states

    tau       = sum_{j<=k} eta_j                                   (intrinsic time)
    eta_prev  = eta_k                                              (the last learning rate)
    D         = sum_{W<i<=k} (eta_{i-1} - eta_i) A_i,   A_i = c3 + tau(i)^(-s)
    S[j]      = sum_{W<i<=k} (eta_{i-1} - eta_i) A_i exp(-r_j c4 (tau(k) - tau(i)))

and the step (control eta = eta_{k+1}): tau' = tau + eta, A = c3 + tau'^(-s), Delta = eta_prev - eta,
D' = D + Delta A, S[j]' = exp(-r_j c4 eta) S[j] + Delta A, eta_prev' = eta. The loss is

    L = L0 + c1 tau^(-s) - c2 ((1 - w0) D - sum_j w_j S[j]),

the ansatz itself up to the exponential-sum error. The initial state is the end of the warmup
(step W): tau = ``tau0`` = sum_{j<=W} eta_j, eta_prev = ``eta0`` (the peak), D = S = 0, so the map's
step k is the training step W + 1 + k. ``y_max`` must cover c4 times the largest intrinsic time
after the warmup (:func:`opt_protocols.fsl.optimise.surrogate` sets it from the horizon and the bound
on eta).
"""
from __future__ import annotations

import math

from opt_protocols import ops
from opt_protocols.fsl.law import power_as_exponentials
from opt_protocols.spec import Control, Param

TIME = "k"
KIND = "map"

PARAMETERS = {
    "L0": Param(3.0, float, lo=0.0, doc="irreducible loss"),
    "c1": Param(30.0, float, lo=0.0, doc="amplitude of the power law in tau"),
    "s": Param(0.5, float, lo=0.0, lo_open=True, doc="exponent of the power law in tau"),
    "c2": Param(0.5, float, lo=0.0, doc="amplitude of the loss-reduction term"),
    "c3": Param(0.1, float, lo=0.0, doc="tau-independent part of a decrease's weight"),
    "c4": Param(2e-3, float, lo=0.0, lo_open=True, doc="rate of the build-up after a decrease (1/tau)"),
    "gamma": Param(0.5, float, lo=0.0, lo_open=True, doc="exponent of the build-up"),
    "tau0": Param(1081.0, float, lo=0.0, lo_open=True, doc="intrinsic time at the end of the warmup"),
    "eta0": Param(1.0, float, lo=0.0, doc="learning rate at the end of the warmup (units of eta_ref)"),
    "y_max": Param(100.0, float, lo=0.0, lo_open=True, doc="largest c4 * (tau(k) - tau(i)) to be represented"),
}

# constants vector: L0, c1, s, c2, c3, c4, w0, then the weights (n) and the rates r_j c4 (n)
L0_, C1, S_, C2, C3, C4, W0, W = 0, 1, 2, 3, 4, 5, 6, 7
# states
TAU, ETA_PREV, DSUM, S0 = 0, 1, 2, 3


def _terms(p):
    return power_as_exponentials(p["gamma"], p["y_max"])


def dims(p):
    return (int(_terms(p)[1].size),)


def state_names(p):
    return ["tau", "eta_prev", "D"] + [f"S[{j}]" for j in range(dims(p)[0])]


def controls(p):
    return {"eta": Control(p["eta0"], 0.0, math.inf, "learning rate in units of eta_ref")}


def constants(p):
    w0, w, r = _terms(p)
    return {"L0": p["L0"], "c1": p["c1"], "s": p["s"], "c2": p["c2"], "c3": p["c3"], "c4": p["c4"],
            "w0": w0, "w": w, "rate": r * p["c4"]}


def initial_state(p, tau=None):
    """The end of the warmup: tau = tau0 (or ``tau``), eta_prev = eta0, no decreases yet."""
    import numpy as np
    x = np.zeros(3 + dims(p)[0])
    x[TAU] = p["tau0"] if tau is None else float(tau)
    x[ETA_PREV] = p["eta0"]
    return x


def random_state(p, rng):
    """A state reachable by a non-increasing schedule: tau > tau0, D >= sum_j-weighted S >= 0."""
    import numpy as np
    n = dims(p)[0]
    x = np.zeros(3 + n)
    x[TAU] = p["tau0"] * (1.0 + 10.0 * rng.uniform())
    x[ETA_PREV] = p["eta0"] * rng.uniform()
    x[DSUM] = rng.uniform(0.0, 1.0) * (p["c3"] + x[TAU] ** (-p["s"]))
    x[S0:] = x[DSUM] * rng.uniform(0.0, 1.0, n)
    return x


def step(x, u, c, dims):
    """One training step of the ansatz in its Markov form (module docstring)."""
    n = dims[0]
    eta = u[0]
    tau = x[TAU] + eta
    A = c[C3] + tau ** (-c[S_])
    dA = (x[ETA_PREV] - eta) * A
    out = ops.zeros(x.shape[0])
    out[TAU] = tau
    out[ETA_PREV] = eta
    out[DSUM] = x[DSUM] + dA
    for j in range(n):
        out[S0 + j] = ops.exp(-c[W + n + j] * eta) * x[S0 + j] + dA
    return out


def loss(x, c, dims):
    """L = L0 + c1 tau^(-s) - c2 ((1 - w0) D - sum_j w_j S[j])."""
    n = dims[0]
    acc = (1.0 - c[W0]) * x[DSUM]
    for j in range(n):
        acc = acc - c[W + j] * x[S0 + j]
    return c[L0_] + c[C1] * x[TAU] ** (-c[S_]) - c[C2] * acc
