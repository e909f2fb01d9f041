"""Test model with a closed-form solution: y' = -u lam y, z' = y^2.

y(t) = y0 exp(-lam U(t)), U(t) = integral of u; for u constant on a segment starting
at s, z(t) = z(s) + y(s)^2 (1 - exp(-2 lam u (t - s))) / (2 lam u). Used by the
integrator tests (convergence orders, control discontinuities at knots).
"""
import math

from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "t"
KIND = "ode"
PARAMETERS = {"lam": Param(1.0, float, lo=0.0, doc="decay rate")}


def dims(p):
    return (2,)


def state_names(p):
    return ["y", "z"]


def controls(p):
    return {"u": Control(1.0, -math.inf, math.inf, "rate multiplier")}


def constants(p):
    return {"lam": p["lam"]}


def initial_state(p):
    return [1.0, 0.0]


def rhs(x, u, c, dims):
    out = ops.zeros(2)
    out[0] = -u[0] * c[0] * x[0]
    out[1] = x[0] * x[0]
    return out


def loss(x, c, dims):
    return x[0] * x[0]
