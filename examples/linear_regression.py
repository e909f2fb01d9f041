"""Online SGD of a linear student on a linear teacher: a model file written by a user.

Student yhat = w.x/sqrt(N), teacher y = w*.x/sqrt(N) + sigma zeta, inputs N(0, I_N), loss
(1/2)(yhat - y)^2, update w <- w - (eta/sqrt N)(yhat - y) x, time alpha = steps/N.
With Q = w.w/N, R = w.w*/N and T = w*.w*/N the order parameters obey (e.g. [Goldt19] for the
linear activation, or directly from E[x x^T] = I)

    dR/dalpha = eta (T - R)
    dQ/dalpha = 2 eta (R - Q) + eta^2 (Q - 2R + T + sigma^2)

and the generalisation error is eg = (Q - 2R + T)/2. This file is the whole model: see
examples/README.md for how it is used.
"""
import math

import numpy as np

from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "alpha"
KIND = "ode"
PARAMETERS = {
    "sigma": Param(0.0, float, lo=0.0, doc="label-noise standard deviation"),
    "T": Param(1.0, float, lo=0.0, lo_open=True, doc="teacher norm w*.w*/N"),
    "Q0": Param(0.0, float, lo=0.0, doc="initial Q"),
    "R0": Param(0.0, float, doc="initial R"),
}


def dims(p):
    return ()


def state_names(p):
    return ["Q", "R"]


def controls(p):
    return {"eta": Control(0.5, 0.0, math.inf, "learning rate")}


def constants(p):
    return {"sigma": p["sigma"], "T": p["T"]}


def initial_state(p, Q=None, R=None):
    return np.array([p["Q0"] if Q is None else Q, p["R0"] if R is None else R], dtype=float)


def check_state(x, p):
    if x[0] < 0 or x[1] ** 2 > x[0] * p["T"] + 1e-12:
        raise ValueError("initial state: need Q >= 0 and R^2 <= Q T (Cauchy-Schwarz)")


def state_bounds(p):
    return {"Q": (0.0, math.inf)}


def rhs(x, u, c, dims):
    Q, R = x[0], x[1]
    eta, sigma, T = u[0], c[0], c[1]
    out = ops.zeros(2)
    out[0] = 2.0 * eta * (R - Q) + eta * eta * (Q - 2.0 * R + T + sigma * sigma)
    out[1] = eta * (T - R)
    return out


def loss(x, c, dims):
    return 0.5 * (x[0] - 2.0 * x[1] + c[1])


def sgd(p, x0, protocol, t_out, N, rng):
    """Real online SGD at dimension N; returns the measured (Q, R) at the times t_out."""
    T, sigma = p["T"], p["sigma"]
    w_star = rng.standard_normal(N)
    w_star *= math.sqrt(T * N) / np.linalg.norm(w_star)
    # w = a w* + b e with e orthogonal to w*, so that R = a T and Q = a^2 T + b^2
    e = rng.standard_normal(N)
    e -= (e @ w_star) / (w_star @ w_star) * w_star
    e *= math.sqrt(N) / np.linalg.norm(e)
    a = x0[1] / T
    w = a * w_star + math.sqrt(max(x0[0] - a * a * T, 0.0)) * e
    out = np.empty((len(t_out), 2))
    j, step, n_steps = 0, 0, int(round(t_out[-1] * N))
    for step in range(n_steps + 1):
        while j < len(t_out) and step >= round(t_out[j] * N):
            out[j] = (w @ w / N, w @ w_star / N)
            j += 1
        if step == n_steps:
            break
        eta = protocol(step / N)[0]
        x = rng.standard_normal(N)
        err = (w - w_star) @ x / math.sqrt(N) - sigma * rng.standard_normal()
        w -= eta / math.sqrt(N) * err * x
    return {"x": out}
