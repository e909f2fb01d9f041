"""Test model for sweeps: the linear-regression ODE of examples/linear_regression.py with faults
injected where only a worker's solve reaches (``state_bounds``, read when the collocation bounds
are set), never the driver's validation:

* ``fail > 0``: the solve raises RuntimeError;
* ``crash > 0``: the worker process kills itself (SIGKILL), once: the first time it creates the
  file named by the environment variable ``SWEEP_TEST_CRASH_MARKER``, later solves go through;
* ``delay``: seconds the solve sleeps first (to interrupt or kill a sweep mid-task).

dR/dalpha = eta (1 - R), dQ/dalpha = 2 eta (R - Q) + eta^2 (Q - 2R + 1 + sigma^2),
eg = (Q - 2R + 1)/2 (teacher norm 1).
"""
import math
import os
import signal
import time

from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "alpha"
KIND = "ode"
PARAMETERS = {
    "sigma": Param(0.5, float, lo=0.0, doc="label-noise standard deviation"),
    "fail": Param(0.0, float, lo=0.0, doc="> 0: the solve raises"),
    "crash": Param(0.0, float, lo=0.0, doc="> 0: the worker kills itself once"),
    "delay": Param(0.0, float, lo=0.0, doc="seconds each solve sleeps first"),
}


def dims(p):
    return ()


def state_names(p):
    return ["Q", "R"]


def controls(p):
    return {"eta": Control(0.5, 0.0, math.inf, "learning rate")}


def constants(p):
    return {"sigma": p["sigma"]}


def initial_state(p):
    return [0.0, 0.0]


def state_bounds(p):
    if p["delay"]:
        time.sleep(p["delay"])
    if p["fail"]:
        raise RuntimeError("injected failure")
    marker = os.environ.get("SWEEP_TEST_CRASH_MARKER")
    if p["crash"] and marker and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"Q": (0.0, math.inf)}


def rhs(x, u, c, dims):
    Q, R = x[0], x[1]
    eta, sigma = u[0], c[0]
    out = ops.zeros(2)
    out[0] = 2.0 * eta * (R - Q) + eta * eta * (Q - 2.0 * R + 1.0 + sigma * sigma)
    out[1] = eta * (1.0 - R)
    return out


def loss(x, c, dims):
    return 0.5 * (x[0] - 2.0 * x[1] + 1.0)
