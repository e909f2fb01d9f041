"""Power-law random features / linear regression: the continuous-time version of the SGD
recursion [BM26, FSL25] (docs/models.md section 5).

Same setup, parameters, states ``"c[i]"`` (0-based: ``c[0]`` is the mode k = 1), controls
(``eta``, ``m``), constants, initial state and loss as :mod:`opt_protocols.models.random_features` (imported
from there), but the dynamics are the ODE in the step count t

    dc_k/dt = (-2 eta lambda_k + (1 + 1/m) eta^2 lambda_k^2) c_k + (eta^2/m) lambda_k (L + sigma^2),
    L = sum_k lambda_k c_k,

i.e. the recursion's increment c_k(t+1) - c_k(t) taken as a rate. It differs from the exact
recursion when eta lambda_1 = O(1) (then reproduce [BM26] numbers with the map model); for
small eta lambda_1 the two agree to O(eta lambda_1). Momentum is not offered here: docs/models.md
gives no continuous momentum equations, and for beta = O(1) the velocity moments relax within
O(1) steps, so the (C, R, V) recursion is not approximated by an ODE in t. The loss is the same
equation as the map's and is imported with it (plain arithmetic, no ``ops``, so both backends run it as it is).

Sources: Bordelon & Mori, arXiv:2602.04774 [BM26]; Li et al., arXiv:2509.19189 [FSL25].
"""
from __future__ import annotations

from opt_protocols import ops
from opt_protocols.models import random_features as _rf
from opt_protocols.models.random_features import (  # noqa: F401  (shared declarations, constants, loss, coupling)
    BATCH,
    DIM_N,
    ETA,
    LAM,
    LOSS_NAME,
    SIGMA,
    check,
    check_state,
    constants,
    controls,
    coupling,
    fsl_params,
    loss,
    spectrum,
    state_names,
    tail_value,
    target,
)

TIME = "t"
KIND = "ode"

PARAMETERS = {k: v for k, v in _rf.PARAMETERS.items() if k != "momentum"}


def dims(p):
    return (p["N"], 0)


def initial_state(p, c=None):
    """c_k(0) = (w*_k)^2 = k^(b - a) (w starts at 0); override with ``c`` (one value per mode)."""
    return _rf.initial_state(p, c=c)


def random_state(p, rng):
    """A random valid state: c around the initial state."""
    return _rf.random_state(p, rng)


def rhs(x, u, c, dims):
    """dc_k/dt of docs/models.md section 5 [BM26]; L = sum_k lambda_k c_k formed once per call."""
    N = dims[DIM_N]
    eta = u[ETA]
    m = u[BATCH]
    sigma = c[SIGMA]
    L = coupling(x, c, N)
    noise = eta * eta * (L + sigma * sigma) / m
    curv = (m + 1.0) / m
    out = ops.zeros(x.shape[0])
    for k in range(N):
        lam = c[LAM + k]
        out[k] = (-2.0 * eta * lam + curv * eta * eta * lam * lam) * x[k] + noise * lam
    return out
