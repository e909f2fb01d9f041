"""The result of an optimal-control solve, as plain data, and its mapping to a stored run.

:class:`Solution` and :class:`Baseline` hold numbers only: every curve (the optimum's
re-simulation, each baseline's loss curve, the finite-N check) is computed once, when the
solution is made, so saving, loading, plotting and analysing a run need neither the model file
nor a simulator. :func:`to_record` / :func:`from_record` map a solution to the model-agnostic
:class:`~opt_protocols.storage.RunRecord` and back; :func:`load` reads the runs of a file.

A stored run ``/runs/<run_id>/`` (one netCDF-4 group; ``xr.open_dataset(path, group=...,
engine="h5netcdf")`` or :meth:`Solution.to_xarray` opens it) holds

* attributes: kind, model, model_source, model_sha256 (and the source of a user's model file),
  params, spec (the problem), method, status, return_status, objective, static, stats,
  verification, validation summary, versions, created;
* ``x`` (t, state), ``loss`` (t): the solution on the method's grid (element or block boundaries);
* one variable per optimised control on ``interval`` (piecewise constant) or ``knot`` (piecewise
  linear), with coordinates ``interval_start``/``interval_end`` or ``t_knot``;
* ``x_sim`` (t_sim, state), ``loss_sim`` (t_sim) and ``<control>_sim`` (t_sim): the fine
  re-simulation of the optimum;
* ``baseline_objective`` (baseline) and ``baseline_loss`` (baseline, t_sim): every baseline's
  value and loss curve on the same grid;
* with a finite-N check: ``sgd_mean``, ``sgd_sem``, ``ode`` on (case, t_sgd);
* subgroups ``protocol/`` and ``baselines/<name>/`` with the tabulated protocols (``tk``, ``U0``,
  ``U1`` on knot/segment/control) from which a protocol is rebuilt exactly.
"""
from __future__ import annotations

import datetime as _dt
import os
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .protocol import Protocol
from .trajectory import Trajectory

if TYPE_CHECKING:  # pragma: no cover
    from .storage import RunRecord

#: Relative gap between a method's objective and its re-simulation above which a solution is flagged.
VERIFY_RTOL = 1e-6


@dataclass
class Baseline:
    """A reference protocol: its static values, objective by simulation and loss curve.

    ``values``: the parameters that define it (the constant of each control for constant
    protocols, a schedule family's parameters); ``t``/``loss``: its loss curve on the solution's
    output grid (filled in when the solution is assembled).
    """

    name: str
    protocol: Protocol
    static: dict[str, float]
    objective: float
    values: dict[str, Any] | None = None
    t: np.ndarray | None = None
    loss: np.ndarray | None = None


@dataclass
class Solution:
    """An optimal protocol with its trajectory, baselines, verification and solver record.

    ``status`` is ``"optimal"`` only when the method's optimiser reports convergence; otherwise
    ``"acceptable"`` (a looser criterion) or ``"failed"``, with the optimiser's own
    ``return_status`` kept as is. ``method`` describes the algorithm (``{"name": "collocation",
    "options": {...}, "chosen": "auto: ..."}``); ``verification`` compares the method's objective
    with a re-simulation of its protocol (keys ``quantity``, ``method_value``, ``simulated``,
    ``relative_gap``, ``rtol``, ``ok``).
    """

    status: str
    return_status: str
    objective: float
    t: np.ndarray                       # the method's grid (element / block boundaries)
    x: np.ndarray                       # states at t (n_t, n_x)
    loss: np.ndarray                    # loss at t
    t_controls: np.ndarray              # control interval boundaries (intervals + 1)
    controls: dict[str, np.ndarray]     # per interval (constant) or per boundary (linear)
    control_type: str
    static: dict[str, float]
    protocol: Protocol                  # all model controls, tabulated
    state_names: list[str]
    time_name: str
    model: str
    params: dict[str, Any]
    model_source: str
    spec: dict[str, Any]
    stats: dict[str, Any]
    verification: dict[str, Any]
    method: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    trajectory: Trajectory | None = None   # fine re-simulation of the optimum
    warm: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # method-specific restart data
    run_id: str | None = None
    validation: dict[str, Any] | None = None
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)
    provenance: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def success(self) -> bool:
        return self.status == "optimal"

    @property
    def gain(self) -> float | None:
        """Relative improvement of the objective over the best constant protocol (None if unknown)."""
        b = self.baselines.get("best_constant")
        if self.status == "failed" or b is None or not np.isfinite(b.objective) or b.objective == 0 \
                or not np.isfinite(self.objective):
            return None
        return float((b.objective - self.objective) / abs(b.objective))

    def summary(self) -> str:
        head = f"{self.model}: {self.status} ({self.return_status})"
        head += f", objective {self.objective:.8g}" if self.status != "failed" else ", no optimum"
        lines = [head]
        if self.method:
            lines.append(f"  method: {self.method.get('name')}" +
                         (f" ({self.method['chosen']})" if self.method.get("chosen") else ""))
        for name, b in self.baselines.items():
            lines.append(f"  baseline {name}: {b.objective:.8g}"
                         + (f"  {_short(b.values)}" if b.values else "") + (f"  static {b.static}" if b.static else ""))
        if self.static:
            lines.append(f"  static: {self.static}")
        v = self.verification
        if v:
            lines.append(f"  re-simulated objective {v['simulated']:.10g} (relative gap {v['relative_gap']:.2e}"
                         + ("" if v["ok"] else ", FLAGGED") + ")")
        s = self.stats
        lines.append(f"  {s.get('iterations')} iterations, build {s.get('build_time', 0):.2f} s, "
                     f"solve {s.get('solve_time', 0):.2f} s")
        return "\n".join(lines)

    def to_xarray(self):
        """The run as one ``xarray.Dataset``: states, loss, controls, the re-simulation, every
        baseline's value and curve, the finite-N check, and the run's attributes (decoded)."""
        from .storage import to_xarray
        return to_xarray(to_record(self, self.run_id or "solution"))

    def save(self, path: str | os.PathLike, run_id: str | None = None, exist_ok: bool = False) -> str:
        """Append this solution as a run to the HDF5 file ``path``; returns the run id."""
        from . import storage
        run_id = run_id or self.run_id or new_run_id(self)
        storage.write_run(path, to_record(self, run_id), exist_ok=exist_ok)
        self.run_id = run_id
        return run_id


def _short(values: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}


def new_run_id(sol: Solution) -> str:
    return f"{sol.model}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _protocol_vars(prefix: str, proto: Protocol) -> tuple[dict, dict]:
    variables = {f"{prefix}tk": (("knot",), proto.tk), f"{prefix}U0": (("segment", "control"), proto.U0),
                 f"{prefix}U1": (("segment", "control"), proto.U1)}
    return variables, {f"{prefix}control": np.array(proto.names)}


def _protocol_from(variables: dict, prefix: str, names: list[str]) -> Protocol:
    return Protocol(np.asarray(variables[f"{prefix}tk"][1], dtype=float),
                    np.ascontiguousarray(variables[f"{prefix}U0"][1], dtype=float),
                    np.ascontiguousarray(variables[f"{prefix}U1"][1], dtype=float), list(names))


def _jsonable(params: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}


def to_record(sol: Solution, run_id: str) -> RunRecord:
    """The storage record of a solution (pure data: nothing is simulated here)."""
    from . import __version__
    from .storage import RunRecord
    attrs: dict[str, Any] = {
        "kind": "solution", "model": sol.model, "model_source": sol.model_source, **sol.provenance,
        "params": _jsonable(sol.params), "spec": sol.spec, "method": sol.method,
        "status": sol.status, "return_status": sol.return_status, "objective": float(sol.objective),
        "static": sol.static, "stats": sol.stats, "verification": sol.verification,
        "control_type": sol.control_type, "time_name": sol.time_name, "control_names": sol.protocol.names,
        "baselines": {n: {"objective": float(b.objective), "static": b.static, "values": b.values}
                      for n, b in sol.baselines.items()},
        "opt_protocols_version": __version__, "casadi_version": _casadi_version(),
        "created": sol.attrs.get("created") or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if sol.validation:
        attrs["validation"] = sol.validation["summary"]
    variables: dict[str, tuple] = {"x": (("t", "state"), sol.x), "loss": (("t",), sol.loss)}
    coords: dict[str, np.ndarray] = {"t": sol.t, "state": np.array(sol.state_names)}
    tc = np.asarray(sol.t_controls, dtype=float)
    if sol.control_type == "linear":
        coords["t_knot"] = tc
        cdim = "t_knot"
    else:
        coords["interval"] = np.arange(tc.size - 1)
        variables["interval_start"] = (("interval",), tc[:-1])
        variables["interval_end"] = (("interval",), tc[1:])
        cdim = "interval"
    for name, values in sol.controls.items():
        variables[name] = ((cdim,), np.asarray(values, dtype=float))
    pv, pc = _protocol_vars("protocol/", sol.protocol)
    variables.update(pv)
    coords.update(pc)
    if sol.trajectory is not None:
        tr = sol.trajectory
        coords["t_sim"] = tr.t
        variables["x_sim"] = (("t_sim", "state"), tr.x)
        variables["loss_sim"] = (("t_sim",), tr.loss)
        for name, values in tr.controls.items():
            variables[f"{name}_sim"] = (("t_sim",), values)
    if sol.baselines:
        names = list(sol.baselines)
        coords["baseline"] = np.array(names)
        variables["baseline_objective"] = (("baseline",), np.array([sol.baselines[n].objective for n in names],
                                                                     dtype=float))
        if sol.trajectory is not None:
            curves = np.full((len(names), sol.trajectory.t.size), np.nan)
            for i, n in enumerate(names):
                b = sol.baselines[n]
                if b.loss is not None:
                    k = min(b.loss.size, curves.shape[1])
                    curves[i, :k] = b.loss[:k]
            variables["baseline_loss"] = (("baseline", "t_sim"), curves)
        for n in names:
            bv, bc = _protocol_vars(f"baselines/{n}/", sol.baselines[n].protocol)
            variables.update(bv)
            coords.update(bc)
    if sol.validation:
        val = sol.validation
        cases = list(val["cases"])
        coords["case"] = np.array(cases)
        coords["t_sgd"] = np.asarray(val["t"], dtype=float)
        for key in ("sgd_mean", "sgd_sem", "ode"):
            variables[key] = (("case", "t_sgd"), np.array([val["cases"][c][key] for c in cases], dtype=float))
    return RunRecord(run_id=run_id, attrs=attrs, variables=variables, coords=coords)


def _casadi_version() -> str:
    try:
        from importlib.metadata import version
        return version("casadi")
    except Exception:
        return "unknown"


def from_record(rec: RunRecord) -> Solution:
    """Rebuild a :class:`Solution` from a stored run."""
    from .storage import StorageError
    a, v, c = rec.attrs, rec.variables, rec.coords
    if a.get("kind") != "solution":
        raise StorageError(f"run {rec.run_id!r} is not a stored solution")
    if "protocol/tk" not in v:
        raise StorageError(f"run {rec.run_id!r} was written by an older opt-protocols (format before 0.2); "
                           "re-create it with this version")
    names = list(a["control_names"])
    proto = _protocol_from(v, "protocol/", names)
    traj = None
    if "x_sim" in v:
        ctrls = {n: v[f"{n}_sim"][1] for n in names if f"{n}_sim" in v}
        traj = Trajectory(t=c["t_sim"], x=v["x_sim"][1], loss=v["loss_sim"][1], controls=ctrls,
                          state_names=[str(s) for s in c["state"]], time_name=a["time_name"], model=a["model"],
                          params=a["params"], protocol=proto, method="stored", n_steps=0)
    baselines = {}
    order = [str(n) for n in c.get("baseline", [])]
    for i, name in enumerate(order):
        info = a.get("baselines", {}).get(name, {})
        loss = v["baseline_loss"][1][i] if "baseline_loss" in v else None
        baselines[name] = Baseline(name, _protocol_from(v, f"baselines/{name}/", names), info.get("static") or {},
                                   float(info.get("objective", v["baseline_objective"][1][i])), info.get("values"),
                                   t=None if traj is None else traj.t, loss=loss)
    opt_names = [n for n in a.get("spec", {}).get("controls", {})]
    if a["control_type"] == "linear":
        t_controls = c["t_knot"]
    else:
        t_controls = np.append(v["interval_start"][1], v["interval_end"][1][-1:])
    controls = {n: v[n][1] for n in opt_names if n in v}
    validation = None
    if "validation" in a and "sgd_mean" in v:
        cases = [str(x) for x in c["case"]]
        validation = {"summary": a["validation"], "t": c["t_sgd"],
                      "cases": {cs: {k: v[k][1][i] for k in ("sgd_mean", "sgd_sem", "ode")}
                                for i, cs in enumerate(cases)}}
    prov = {k: a[k] for k in ("model_sha256", "model_code") if k in a}
    sol = Solution(status=a["status"], return_status=a["return_status"], objective=float(a["objective"]),
                   t=c["t"], x=v["x"][1], loss=v["loss"][1], t_controls=t_controls,
                   controls=controls, control_type=a["control_type"], static=a.get("static") or {},
                   protocol=proto, state_names=[str(s) for s in c["state"]], time_name=a["time_name"],
                   model=a["model"], params=a["params"], model_source=a.get("model_source", a["model"]),
                   spec=a["spec"], stats=a.get("stats") or {}, verification=a.get("verification") or {},
                   method=a.get("method") or {}, baselines=baselines, trajectory=traj, run_id=rec.run_id,
                   validation=validation, attrs=a, provenance=prov)
    return sol


def load(path: str | os.PathLike, run_id: str | None = None):
    """The solutions stored in ``path`` (a list), or the one with ``run_id``. Runs of another kind
    (e.g. a sweep's record of a task that raised, ``kind = "sweep_error"``) are not solutions and
    are left out of the list."""
    from . import storage
    if run_id is not None:
        return from_record(storage.read_run(path, run_id))
    return [from_record(r) for r in storage.read_runs(path) if r.attrs.get("kind") == "solution"]
