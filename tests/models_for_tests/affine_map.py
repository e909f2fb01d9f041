"""Test discrete map: x <- (1 - u) x + b u^2 (one call = one step), loss x^2."""
import math

from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "t"
KIND = "map"
PARAMETERS = {"b": Param(0.3, float, doc="offset")}


def dims(p):
    return (1,)


def state_names(p):
    return ["x"]


def controls(p):
    return {"u": Control(0.1, -math.inf, math.inf, "step size")}


def constants(p):
    return {"b": p["b"]}


def initial_state(p):
    return [1.0]


def step(x, u, c, dims):
    out = ops.zeros(1)
    out[0] = (1.0 - u[0]) * x[0] + c[0] * u[0] * u[0]
    return out


def loss(x, c, dims):
    return x[0] * x[0]
