"""The LLM loss-curve ansatz of the functional scaling law in intrinsic time [FSL25]
(docs/models.md, section 6).

For a per-step schedule eta_0, eta_1, ... (in units of a reference learning rate ``eta_ref``, so
that tau counts "steps at eta_ref"), with the intrinsic time tau(k) = sum_{j<=k} eta_j,

    L(k) = L0 + c1 tau(k)^(-s)
           - c2 sum_{W < i <= k} (eta_{i-1} - eta_i) (c3 + tau(i)^(-s)) (1 - (1 + c4 (tau(k) - tau(i)))^(-gamma)).

The first two terms are the loss of a run at constant learning rate as a power law of the
intrinsic time; the sum is the loss reduction of every learning-rate decrease, which builds up
as intrinsic time passes after it (its weight grows from 0 to 1 as 1 - (1 + c4 dtau)^(-gamma)).
W is the step at which the schedule first reaches its maximum (the end of the warmup): the sum
runs over the steps after the warmup, as in the multi-power law of Luo et al. (2025); a learning-rate
increase after W counts as a negative reduction.

:func:`evaluate` computes L at chosen steps and, on request, its derivatives with respect to
the seven parameters in one pass (numba): O(n_steps * n_decay) work,
n_decay the number of post-warmup steps where the learning rate changes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba
import numpy as np
from scipy import special

#: The parameters of the ansatz, in the order of :func:`evaluate`'s Jacobian columns.
PARAM_NAMES = ("L0", "c1", "s", "c2", "c3", "c4", "gamma")


@dataclass(frozen=True)
class LossLaw:
    """The fitted constants of the ansatz and the learning-rate unit ``eta_ref`` of its intrinsic time."""

    L0: float
    c1: float
    s: float
    c2: float
    c3: float
    c4: float
    gamma: float
    eta_ref: float

    def __post_init__(self):
        for name in (*PARAM_NAMES, "eta_ref"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"loss law: {name} = {v!r}: expected a finite number")
        for name in ("s", "c4", "gamma", "eta_ref"):
            if not getattr(self, name) > 0:
                raise ValueError(f"loss law: {name} = {getattr(self, name)!r}: expected a number > 0")

    @property
    def params(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in PARAM_NAMES])

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d) -> LossLaw:
        missing = [n for n in (*PARAM_NAMES, "eta_ref") if n not in d]
        if missing:
            raise ValueError(f"loss law: parameter {missing[0]!r} missing")
        return cls(**{n: float(d[n]) for n in (*PARAM_NAMES, "eta_ref")})

    def __call__(self, eta: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """The predicted loss at ``steps`` (default: every step) of the per-step schedule ``eta``
        (in the data's units; divided by ``eta_ref`` here); NaN where tau(k) = 0 (no step taken yet)."""
        eta = np.asarray(eta, dtype=float)
        steps = np.arange(eta.size) if steps is None else np.asarray(steps, dtype=np.int64)
        out = np.full(steps.shape, np.nan)
        ok = np.cumsum(eta)[np.clip(steps, 0, eta.size - 1)] > 0
        out[ok] = evaluate(self.params, eta / self.eta_ref, steps[ok])[0]
        return out


def warmup_end(eta: np.ndarray) -> int:
    """W: the first step at which the schedule reaches its maximum."""
    return int(np.argmax(np.asarray(eta)))


def decay_terms(eta: np.ndarray, W: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tau, indices i > W with eta_{i-1} != eta_i, eta_{i-1} - eta_i at them) of a schedule."""
    eta = np.asarray(eta, dtype=float)
    W = warmup_end(eta) if W is None else int(W)
    tau = np.cumsum(eta)
    d = np.zeros(eta.size)
    d[1:] = eta[:-1] - eta[1:]
    d[: W + 1] = 0.0
    idx = np.nonzero(d)[0]
    return tau, idx.astype(np.int64), d[idx]


def evaluate(params: np.ndarray, eta: np.ndarray, steps: np.ndarray, jac: bool = False,
             W: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(L at ``steps``, dL/dparams (n_steps, 7) or None) for a per-step schedule ``eta`` already in
    units of ``eta_ref``; ``params`` in the order :data:`PARAM_NAMES`."""
    eta = np.asarray(eta, dtype=float)
    steps = np.ascontiguousarray(steps, dtype=np.int64)
    if steps.size and (steps.min() < 0 or steps.max() >= eta.size):
        raise ValueError(f"steps: expected steps in [0, {eta.size - 1}] (the schedule's length)")
    tau, idx, dv = decay_terms(eta, W)
    if tau[0] <= 0 and steps.size and np.any(tau[steps] <= 0):
        raise ValueError("steps: the intrinsic time tau(k) = sum_{j<=k} eta_j must be positive at every step")
    p = np.ascontiguousarray(params, dtype=float)
    L, J = _evaluate(tau, idx, dv, steps, p, jac)
    return L, (J if jac else None)


@numba.njit(cache=True)     # serial: threads did not pay on a shared 2-core machine
def _evaluate(tau, idx, dv, steps, p, jac):
    L0, c1, s, c2, c3, c4, g = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    n = steps.shape[0]
    m = idx.shape[0]
    ti_s = np.empty(m)        # tau(i)^(-s)
    ln_ti = np.empty(m)
    for q in range(m):
        ln_ti[q] = math.log(tau[idx[q]])
        ti_s[q] = math.exp(-s * ln_ti[q])
    L = np.empty(n)
    J = np.zeros((n if jac else 0, 7))
    for j in range(n):
        k = steps[j]
        tk = tau[k]
        ln_tk = math.log(tk)
        a = math.exp(-s * ln_tk)
        S0 = 0.0
        Ss = 0.0
        S3 = 0.0
        S4 = 0.0
        S5 = 0.0
        for q in range(m):
            i = idx[q]
            if i > k:
                break
            x = tk - tau[i]
            y = 1.0 + c4 * x
            ly = math.log(y)
            P = math.exp(-g * ly)
            G = 1.0 - P
            A = c3 + ti_s[q]
            d = dv[q]
            S0 += d * A * G
            if jac:
                Ss += d * ln_ti[q] * ti_s[q] * G
                S3 += d * G
                S4 += d * A * g * x * P / y
                S5 += d * A * ly * P
        L[j] = L0 + c1 * a - c2 * S0
        if jac:
            J[j, 0] = 1.0
            J[j, 1] = a
            J[j, 2] = -c1 * ln_tk * a + c2 * Ss
            J[j, 3] = -S0
            J[j, 4] = -c2 * S3
            J[j, 5] = -c2 * S4
            J[j, 6] = -c2 * S5
    return L, J


#: Step of the trapezoid rule of :func:`power_as_exponentials` (error ~ exp(-pi^2/h) relative).
EXP_SUM_STEP = 0.4
#: Below this node (log of the rate) the exponentials are summed in closed form.
FAR_NODE = -40.0


def power_as_exponentials(gamma: float, y_max: float, h: float = EXP_SUM_STEP,
                          eps: float = 1e-10) -> tuple[float, np.ndarray, np.ndarray]:
    """(w0, w, r) with (1 + y)^(-gamma) ~ w0 + sum_j w_j exp(-r_j y) on 0 <= y <= y_max.

    From (1 + y)^(-gamma) = Gamma(gamma)^(-1) int exp(gamma u - e^u (1 + y)) du (t = e^u in Euler's
    integral), discretised by the trapezoid rule with step ``h`` on the whole line (exponentially
    accurate: the integrand is analytic in the strip |Im u| < pi/2). Nodes with e^u y_max < ``eps``
    barely decay on [0, y_max] and are lumped into the constant w0 (an error below ~eps; the nodes
    below :data:`FAR_NODE` in closed form, a geometric series); nodes whose weight is below 1e-18 are
    dropped. The rates are r_j = e^(u_j).
    """
    if not (gamma > 0 and y_max > 0 and h > 0 and eps > 0):
        raise ValueError("power_as_exponentials: gamma, y_max, h and eps must be positive")
    u_cut = math.log(eps / y_max)
    u_hi = math.log(50.0 + 2.0 * gamma)                    # exp(-e^u) < 1e-21 beyond
    u_far = min(u_cut, FAR_NODE)
    j_lo, j_hi = math.floor(u_far / h), math.ceil(u_hi / h)
    u = h * np.arange(j_lo, j_hi + 1)
    w = h * np.exp(gamma * u - np.exp(u) - special.gammaln(gamma))
    # nodes below u_far: exp(-e^u) = 1 to 1e-17, a geometric series in exp(gamma h)
    far = h * math.exp(gamma * h * (j_lo - 1) - special.gammaln(gamma)) / -math.expm1(-gamma * h)
    lump = u < u_cut
    keep = ~lump & (w > 1e-18)
    return float(w[lump].sum() + far), w[keep], np.exp(u[keep])
