"""Solutions to and from HDF5 runs (layout of DESIGN.md, stored with :mod:`opt_protocols.storage`).

A run ``/runs/<run_id>/`` of a solution holds

* attrs: kind, model, params, spec (the problem), status, return_status, objective, static,
  stats, verification, baselines (objective, static and constant values of each), versions, created;
* ``t``, ``state``; ``x`` (t, state), ``loss`` (t): the collocation solution at element boundaries;
* ``t_sim``; ``simulation/x``, ``simulation/loss``, ``simulation/<control>``: re-simulation of the optimum;
* ``controls/<name>`` on ``interval`` (piecewise constant) or ``boundary`` (piecewise linear),
  with ``controls/t_controls`` (interval boundaries);
* ``protocol/tk``, ``protocol/U0``, ``protocol/U1``: the tabulated protocol of all controls;
* ``baselines/<name>/loss`` (t_sim) and the baseline's own ``tk``, ``U0``, ``U1``;
* optionally ``validation/...``: finite-N SGD check (see :func:`opt_protocols.validate.validate`).
"""
from __future__ import annotations

import datetime as _dt
import os
import uuid
from typing import Any

import casadi as ca
import numpy as np

from . import __version__, storage
from .baselines import Baseline
from .protocol import Protocol
from .simulate import Trajectory
from .solution import Solution


def _protocol_vars(prefix: str, proto: Protocol) -> dict:
    return {f"{prefix}tk": (("knot",), proto.tk), f"{prefix}U0": (("segment", "control"), proto.U0),
            f"{prefix}U1": (("segment", "control"), proto.U1)}


def _protocol_from(vars_: dict, prefix: str, names: list[str]) -> Protocol:
    return Protocol(np.asarray(vars_[f"{prefix}tk"][1], dtype=float),
                    np.ascontiguousarray(vars_[f"{prefix}U0"][1], dtype=float),
                    np.ascontiguousarray(vars_[f"{prefix}U1"][1], dtype=float), list(names))


def solution_record(sol: Solution, run_id: str) -> storage.RunRecord:
    """The storage record of a solution (re-simulating its baselines on the output grid)."""
    from .simulate import simulate
    attrs: dict[str, Any] = {
        "kind": "solution", "model": sol.model, "model_source": sol.model_source, "params": _jsonable(sol.params), "spec": sol.spec,
        "status": sol.status, "return_status": sol.return_status, "objective": float(sol.objective),
        "static": sol.static, "stats": sol.stats, "verification": sol.verification,
        "control_type": sol.control_type, "time_name": sol.time_name, "control_names": sol.protocol.names,
        "baselines": {n: {"objective": float(b.objective), "static": b.static, "values": b.values}
                      for n, b in sol.baselines.items()},
        "opt_protocols_version": __version__, "casadi_version": ca.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if getattr(sol, "validation", None):
        attrs["validation"] = sol.validation["summary"]
    variables: dict[str, tuple] = {"x": (("t", "state"), sol.x), "loss": (("t",), sol.loss)}
    coords: dict[str, np.ndarray] = {"t": sol.t, "state": np.array(sol.state_names),
                                     "controls/t_controls": sol.t_controls,
                                     "protocol/control": np.array(sol.protocol.names)}
    dim = "boundary" if sol.control_type == "linear" else "interval"
    for name, values in sol.controls.items():
        variables[f"controls/{name}"] = ((dim,), values)
    variables.update(_protocol_vars("protocol/", sol.protocol))
    if sol.trajectory is not None:
        tr = sol.trajectory
        coords["t_sim"] = tr.t
        variables["simulation/x"] = (("t_sim", "state"), tr.x)
        variables["simulation/loss"] = (("t_sim",), tr.loss)
        for name, values in tr.controls.items():
            variables[f"simulation/{name}"] = (("t_sim",), values)
        model = model_of(sol)
        x0 = np.asarray(sol.spec["x0"], dtype=float)
        for name, b in sol.baselines.items():
            sim_T = tr.t[-1] if sol.spec.get("objective") != "time" else min(tr.t[-1], b.protocol.tk[-1])
            c = _c_for(model, sol.spec, b.static)
            bt = simulate(model, x0, b.protocol, sim_T, c=c, t_eval=tr.t[tr.t <= sim_T])
            loss = np.full(tr.t.size, np.nan)
            loss[: bt.loss.size] = bt.loss
            variables[f"baselines/{name}/loss"] = (("t_sim",), loss)
            coords[f"baselines/{name}/control"] = np.array(b.protocol.names)
            variables.update(_protocol_vars(f"baselines/{name}/", b.protocol))
    if getattr(sol, "validation", None):
        for key, (dims, arr) in sol.validation["arrays"].items():
            variables[f"validation/{key}"] = (dims, arr)
        for key, arr in sol.validation["coords"].items():
            coords[f"validation/{key}"] = arr
    return storage.RunRecord(run_id=run_id, attrs=attrs, variables=variables, coords=coords)


def _c_for(model, spec: dict, static: dict) -> np.ndarray:
    c = model.with_constants(**spec.get("constants", {}))
    slices = model.constants.slices()
    for n, v in static.items():
        c[slices[n]] = v
    return c


def _jsonable(params: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}


def _model_params(params: dict) -> dict:
    return {k: v for k, v in params.items() if v is not None}


def new_run_id(sol: Solution) -> str:
    return f"{sol.model}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def save_solution(sol: Solution, path: str | os.PathLike, run_id: str | None = None,
                  exist_ok: bool = False) -> str:
    """Append ``sol`` to the results file ``path`` (crash-safe); returns its run id."""
    run_id = run_id or getattr(sol, "run_id", None) or new_run_id(sol)
    storage.write_run(path, solution_record(sol, run_id), exist_ok=exist_ok)
    sol.run_id = run_id
    return run_id


def solution_from_record(rec: storage.RunRecord) -> Solution:
    """Rebuild a :class:`Solution` from a stored run."""
    a, v, c = rec.attrs, rec.variables, rec.coords
    if a.get("kind") != "solution":
        raise storage.StorageError(f"run {rec.run_id!r} is not a stored solution")
    names = list(a["control_names"])
    proto = _protocol_from(v, "protocol/", names)
    traj = None
    if "simulation/x" in v:
        ctrls = {n: v[f"simulation/{n}"][1] for n in names if f"simulation/{n}" in v}
        traj = Trajectory(t=c["t_sim"], x=v["simulation/x"][1], loss=v["simulation/loss"][1], controls=ctrls,
                          state_names=[str(s) for s in c["state"]], time_name=a["time_name"], model=a["model"],
                          params=a["params"], protocol=proto, method="dopri5", n_steps=0)
    baselines = {}
    for name, info in a.get("baselines", {}).items():
        if f"baselines/{name}/tk" in v:
            baselines[name] = Baseline(name, _protocol_from(v, f"baselines/{name}/", names),
                                       info.get("static") or {}, float(info["objective"]), info.get("values"))
    controls = {k.split("/", 1)[1]: arr for k, (_, arr) in v.items()
                if k.startswith("controls/") and k.count("/") == 1}
    sol = Solution(status=a["status"], return_status=a["return_status"], objective=float(a["objective"]),
                   t=c["t"], x=v["x"][1], loss=v["loss"][1], t_controls=c["controls/t_controls"],
                   controls=controls, control_type=a["control_type"], static=a.get("static") or {},
                   protocol=proto, state_names=[str(s) for s in c["state"]], time_name=a["time_name"],
                   model=a["model"], params=a["params"], model_source=a.get("model_source", a["model"]),
                   spec=a["spec"], stats=a.get("stats") or {},
                   verification=a.get("verification") or {}, baselines=baselines, trajectory=traj)
    sol.run_id = rec.run_id
    sol.attrs = a
    if "validation" in a:
        sol.validation = {"summary": a["validation"],
                          "arrays": {k.split("/", 1)[1]: val for k, val in v.items() if k.startswith("validation/")},
                          "coords": {k.split("/", 1)[1]: val for k, val in c.items() if k.startswith("validation/")}}
    return sol


def model_of(sol: Solution):
    """The model a solution was computed for, loaded again from its source with its parameters."""
    from .model import load_model
    return load_model(sol.model_source, **_model_params(sol.params))


def load(path: str | os.PathLike, run_id: str | None = None):
    """The solutions stored in ``path`` (a list), or the one with ``run_id``."""
    if run_id is not None:
        return solution_from_record(storage.read_run(path, run_id))
    return [solution_from_record(r) for r in storage.read_runs(path)]
