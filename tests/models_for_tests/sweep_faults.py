"""Test model for sweeps: the linear-regression ODE of examples/linear_regression.py with faults
injected where only a worker's solve reaches (``state_bounds``, read when the collocation bounds
are set), never the driver's validation:

* ``fail > 0``: the solve raises RuntimeError;
* ``crash > 0``: the worker process kills itself (SIGKILL), once: the first time it creates the
  file named by the environment variable ``SWEEP_TEST_CRASH_MARKER``, later solves go through;
* ``delay``: seconds the solve sleeps first (to interrupt or kill a sweep mid-task).

The equations are the example's own (its ``rhs`` and ``loss``, teacher norm T = 1).
"""
import importlib.util
import math
import os
import signal
import sys
import time
from pathlib import Path

from opt_protocols.spec import Control, Param

_spec = importlib.util.spec_from_file_location(
    "sweep_faults_linear_regression", Path(__file__).resolve().parents[2] / "examples" / "linear_regression.py")
_example = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _example   # (the CasADi backend re-binds imported equations through sys.modules)
_spec.loader.exec_module(_example)
rhs, loss = _example.rhs, _example.loss

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
    return {"sigma": p["sigma"], "T": 1.0}


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
