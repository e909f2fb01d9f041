"""Curriculum learning: a perceptron on easy and hard examples [MM25].

Setup (docs/models.md section 2; Mignacco & Mori, arXiv:2507.07907 [MM25]). An
input is x = (x_r, x_i), both halves in R^N: relevant x_r ~ N(0, I), irrelevant
x_i ~ N(0, Delta I), where the difficulty Delta is Delta1 (easy, reference 0)
or Delta2 (hard, reference 2). Teacher y = sign(w*.x_r); student
yhat = g(lambda), lambda = w_r.x_r + w_i.x_i, with g(z) = erf(z/2) (not the
committee machine's erf(z/sqrt 2)). One fresh example per step, time
alpha = steps/N, online SGD on (1/2)(yhat - y)^2 with optional L2 penalty lam:

    w <- w - (eta/N) [ (yhat - y) g'(lambda) x + 2 lam w ].

Weights have O(1/sqrt N) entries, so the order parameters carry no 1/N:
Q11 = w_r.w_r, Q22 = w_i.w_i, M = w_r.w*, T = w*.w* (fixed). With
Qb = Q11 + Delta Q22 and S = sqrt((2 + Qb) T - M^2), a step at difficulty
Delta drifts the state by (docs/models.md section 2)

    dQ11 = 4 eta [-Q11/sqrt(1+Qb) + M (2 + Delta Q22)/S] / (pi (2+Qb))
           + 2 eta^2 [pi/2 + asin(Qb/(2+3Qb)) - 2 asin(M/(sqrt(2+3Qb) sqrt((1+Qb)T - M^2)))] / (pi^2 sqrt(1+Qb))
    dQ22 = -4 Delta eta Q22 [1/sqrt(1+Qb) + M/S] / (pi (2+Qb))
           + Delta eta^2 [pi + 2 asin(Qb/(2+3Qb)) - 4 asin(M/(...))] / (pi^2 sqrt(1+Qb))
    dM   = 2 eta [-M/sqrt(1+Qb) + S] / (pi (2+Qb))

minus 4 eta lam Q11, 4 eta lam Q22 and 2 eta lam M with the L2 term.

Controls: ``u`` in [0, 1], the fraction of easy examples drawn at time alpha, so
that the right-hand side is exactly u f(Delta1) + (1 - u) f(Delta2); and the
learning rate ``eta`` (default 3), a control so that it can be scheduled too.
Loss: the test error (classification error of sign(lambda)) on a mixture with
easy fraction p1,

    eg = p1 acos(M/sqrt((Q11 + Delta1 Q22) T))/pi + (1 - p1) acos(M/sqrt((Q11 + Delta2 Q22) T))/pi.

States: "Q11", "Q22", "M"; constants T, Delta1, Delta2, p1, lam. Reference
initial state (Q11, Q22, M)(0) = (1, 1, 0), T = 2.

Optimal-control problem [MM25] (reference setup: alpha_F = 12, eta = 3, T = 2,
p1 = 0.5, lam = 0): choose u(alpha) in [0, 1] minimising eg(alpha_F) under the
budget  int_0^alpha_F u dalpha = p1 alpha_F  (a fixed number of easy examples;
only their order is chosen). Baselines under exact integration (adaptive
integration at rtol 1e-10, this module's conventions): curriculum (u = 1 on
[0, 6], then 0) 0.1558618; anti-curriculum 0.1628201; alternation on 240
intervals, easy first, 0.1527166; constant u = 0.5 0.1527775. The published
optimum is easy-hard-easy (easy until alpha ~ 2.75, mostly hard, easy again from
alpha ~ 9.05); its value 0.14668 belongs to the authors' explicit Euler map
(dt = 0.05, eg weight 120/241, 119 effective easy steps), not to this exact-ODE
convention.

Finite-N check: :func:`sgd` runs the perceptron's online SGD itself.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "alpha"
KIND = "ode"
LOSS_NAME = "test error"

PARAMETERS = {
    "T": Param(2.0, float, lo=0.0, lo_open=True, doc="teacher norm T = w*.w* (fixed)"),
    "Delta1": Param(0.0, float, lo=0.0, doc="variance of the irrelevant inputs of easy examples"),
    "Delta2": Param(2.0, float, lo=0.0, doc="variance of the irrelevant inputs of hard examples"),
    "p1": Param(0.5, float, lo=0.0, hi=1.0, doc="easy fraction of the test mixture (and of the budget)"),
    "lam": Param(0.0, float, lo=0.0, doc="L2 penalty: w <- w - (eta/N)[... + 2 lam w]"),
    "eta": Param(3.0, float, lo=0.0, doc="default learning rate (the control's default value)"),
    "Q11_0": Param(1.0, float, lo=0.0, doc="default initial Q11 = w_r.w_r"),
    "Q22_0": Param(1.0, float, lo=0.0, doc="default initial Q22 = w_i.w_i"),
    "M_0": Param(0.0, float, doc="default initial M = w_r.w*"),
}

# positions in the state, control and constant vectors
Q11, Q22, MM = 0, 1, 2
U, ETA = 0, 1
T_, DELTA1, DELTA2, P1, LAM = 0, 1, 2, 3, 4


def dims(p):
    return (0,)


def state_names(p):
    return ["Q11", "Q22", "M"]


def controls(p):
    return {"u": Control(p["p1"], 0.0, 1.0, "fraction of easy examples drawn at time alpha"),
            "eta": Control(p["eta"], 0.0, math.inf, "learning rate")}


def constants(p):
    return {"T": p["T"], "Delta1": p["Delta1"], "Delta2": p["Delta2"], "p1": p["p1"], "lam": p["lam"]}


def _check_overlaps(q11, q22, m, T):
    if not (q11 > 0.0 and q22 >= 0.0):
        raise ValueError(f"state: need Q11 > 0 and Q22 >= 0, got Q11 = {q11:g}, Q22 = {q22:g}")
    if m * m >= q11 * T:
        raise ValueError(f"state: need M^2 < Q11 T (Cauchy-Schwarz, strict), got M = {m:g}, Q11 = {q11:g}, T = {T:g}")


def initial_state(p, Q11=None, Q22=None, M=None):
    """Default (Q11, Q22, M) = (Q11_0, Q22_0, M_0) = (1, 1, 0); any of them can be given."""
    x = np.array([p["Q11_0"] if Q11 is None else float(Q11),
                  p["Q22_0"] if Q22 is None else float(Q22),
                  p["M_0"] if M is None else float(M)], dtype=float)
    _check_overlaps(x[0], x[1], x[2], p["T"])
    return x


def check_state(x, p):
    """Q11 > 0, Q22 >= 0 and M^2 < Q11 T."""
    _check_overlaps(x[Q11], x[Q22], x[MM], p["T"])


def random_state(p, rng):
    """Random Q11, Q22 in [0.2, 3] and M with M^2 / (Q11 T) in [0, 0.95)."""
    q11 = rng.uniform(0.2, 3.0)
    q22 = rng.uniform(0.2, 3.0)
    m = rng.uniform(-0.3, 0.95) * math.sqrt(q11 * p["T"])
    return np.array([q11, q22, m])


# ---- equations (one source: numba and CasADi) ------------------------------------------------

def _drift(q11, q22, m, T, delta, eta):
    """(dQ11, dQ22, dM)/dalpha for examples of difficulty ``delta`` (docs/models.md section 2) [MM25]."""
    qb = q11 + delta * q22
    sq1 = ops.sqrt(1.0 + qb)
    S = ops.safe_sqrt((2.0 + qb) * T - m * m)
    a1 = ops.safe_asin(qb / (2.0 + 3.0 * qb))
    a2 = ops.safe_asin(m / (ops.sqrt(2.0 + 3.0 * qb) * ops.safe_sqrt((1.0 + qb) * T - m * m)))
    pi = ops.pi
    d11 = (4.0 * eta * (-q11 / sq1 + m * (2.0 + delta * q22) / S) / (pi * (2.0 + qb))
           + 2.0 * eta * eta * (0.5 * pi + a1 - 2.0 * a2) / (pi * pi * sq1))
    d22 = (-4.0 * delta * eta * q22 * (1.0 / sq1 + m / S) / (pi * (2.0 + qb))
           + delta * eta * eta * (pi + 2.0 * a1 - 4.0 * a2) / (pi * pi * sq1))
    dm = 2.0 * eta * (-m / sq1 + S) / (pi * (2.0 + qb))
    return d11, d22, dm


def rhs(x, u, c, dims):
    """u f(Delta1) + (1 - u) f(Delta2), with the L2 terms (docs/models.md section 2) [MM25]."""
    q11 = x[Q11]
    q22 = x[Q22]
    m = x[MM]
    frac = u[U]
    eta = u[ETA]
    T = c[T_]
    lam = c[LAM]
    e11, e22, em = _drift(q11, q22, m, T, c[DELTA1], eta)
    h11, h22, hm = _drift(q11, q22, m, T, c[DELTA2], eta)
    out = ops.zeros(3)
    out[Q11] = frac * e11 + (1.0 - frac) * h11 - 4.0 * eta * lam * q11
    out[Q22] = frac * e22 + (1.0 - frac) * h22 - 4.0 * eta * lam * q22
    out[MM] = frac * em + (1.0 - frac) * hm - 2.0 * eta * lam * m
    return out


def _error(q11, q22, m, T, delta):
    """Test error of sign(lambda) against sign(nu) on inputs of difficulty ``delta``."""
    return ops.safe_acos(m / ops.safe_sqrt((q11 + delta * q22) * T)) / ops.pi


def loss(x, c, dims):
    """eg on the test mixture with easy fraction p1 (docs/models.md section 2) [MM25]."""
    T = c[T_]
    p1 = c[P1]
    return (p1 * _error(x[Q11], x[Q22], x[MM], T, c[DELTA1])
            + (1.0 - p1) * _error(x[Q11], x[Q22], x[MM], T, c[DELTA2]))


# ---- finite-N simulation of the perceptron's online SGD --------------------------------------

@numba.njit(cache=True)
def _sgd_run(wr, wi, wstar, rng, n_steps, easy_prob, eta_step, delta1, delta2, lam, out_steps):
    """Online SGD of the perceptron; step k draws an easy example with probability easy_prob[k]."""
    N = wr.shape[0]
    n_out = out_steps.shape[0]
    X = np.empty((n_out, 3))
    j = 0
    while j < n_out and out_steps[j] <= 0:
        X[j, 0] = wr @ wr
        X[j, 1] = wi @ wi
        X[j, 2] = wr @ wstar
        j += 1
    sqrtpi = math.sqrt(math.pi)
    xr = np.empty(N)
    xi = np.empty(N)
    for k in range(n_steps):
        easy = rng.random() < easy_prob[k]
        delta = delta1 if easy else delta2
        for n in range(N):
            xr[n] = rng.standard_normal()
        lam_r = wr @ xr
        nu = wstar @ xr
        lam_i = 0.0
        if delta > 0.0:
            sd = math.sqrt(delta)
            for n in range(N):
                xi[n] = sd * rng.standard_normal()
            lam_i = wi @ xi
        lam_tot = lam_r + lam_i
        yhat = math.erf(0.5 * lam_tot)
        y = 1.0 if nu > 0.0 else -1.0
        # g(z) = erf(z/2), g'(z) = exp(-z^2/4)/sqrt(pi)
        gp = math.exp(-0.25 * lam_tot * lam_tot) / sqrtpi
        eta = eta_step[k]
        a = eta / N * (yhat - y) * gp
        decay = 1.0 - 2.0 * eta * lam / N
        for n in range(N):
            wr[n] = decay * wr[n] - a * xr[n]
        if delta > 0.0:
            for n in range(N):
                wi[n] = decay * wi[n] - a * xi[n]
        elif lam > 0.0:
            for n in range(N):
                wi[n] = decay * wi[n]
        while j < n_out and out_steps[j] <= k + 1:
            X[j, 0] = wr @ wr
            X[j, 1] = wi @ wi
            X[j, 2] = wr @ wstar
            j += 1
    return X


def weights_from_overlaps(p, x0, N, rng):
    """Teacher w* and student halves w_r, w_i in R^N with exactly the overlaps ``x0`` = (Q11, Q22, M).

    w* is uniform on the sphere of radius sqrt(T); w_r = (M/T) w* plus a random
    orthogonal part of the right norm; w_i uniform on the sphere of radius sqrt(Q22).
    By rotational invariance of the inputs, the learning process depends on the
    weights only through these overlaps.
    """
    q11, q22, m = (float(v) for v in x0)
    T = p["T"]
    wstar = rng.standard_normal(N)
    wstar *= math.sqrt(T) / np.linalg.norm(wstar)
    perp = rng.standard_normal(N)
    perp -= (perp @ wstar) / T * wstar
    perp /= np.linalg.norm(perp)
    wr = (m / T) * wstar + math.sqrt(max(q11 - m * m / T, 0.0)) * perp
    wi = rng.standard_normal(N)
    wi *= math.sqrt(q22) / np.linalg.norm(wi)
    return wr, wi, wstar


def sampled_test_error(wr, wi, wstar, p, n_samples, rng):
    """Fraction of misclassified fresh test examples from the mixture (easy with probability p1)."""
    N = wr.shape[0]
    easy = rng.random(n_samples) < p["p1"]
    delta = np.where(easy, p["Delta1"], p["Delta2"])
    xr = rng.standard_normal((n_samples, N))
    xi = np.sqrt(delta)[:, None] * rng.standard_normal((n_samples, N))
    return float(np.mean(np.sign(xr @ wr + xi @ wi) != np.sign(xr @ wstar)))


def sgd(p, x0, protocol, t_out, N, rng):
    """Online SGD of the perceptron at input dimension ``N`` (each half of x in R^N).

    Weights are built with the order parameters ``x0`` exactly
    (:func:`weights_from_overlaps`). Step k (time alpha = k/N) draws an easy
    example with probability u((k + 1/2)/N) and uses the learning rate
    eta((k + 1/2)/N); the irrelevant half is x_i ~ N(0, Delta I) (not drawn when
    Delta = 0). Returns ``{"x": (len(t_out), 3)}``, the measured (Q11, Q22, M)
    after round(t N) steps; the loss is then ``model.loss`` of these, which is the
    exact test error of the weights (eg depends on them only through the overlaps).
    """
    names = list(protocol.names)
    wr, wi, wstar = weights_from_overlaps(p, x0, N, rng)
    t_out = np.asarray(t_out, dtype=float)
    out_steps = np.rint(t_out * N).astype(np.int64)
    n_steps = int(out_steps.max()) if out_steps.size else 0
    controls = protocol((np.arange(n_steps) + 0.5) / N)   # control at the middle of each step
    easy_prob = np.ascontiguousarray(controls[:, names.index("u")])
    eta_step = np.ascontiguousarray(controls[:, names.index("eta")])
    X = _sgd_run(wr, wi, wstar, rng, n_steps, easy_prob, eta_step, p["Delta1"], p["Delta2"], p["lam"],
                 out_steps)
    return {"x": X}
