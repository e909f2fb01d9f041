"""Fits, predictions and optimised schedules of the loss-curve ansatz as HDF5 runs
(:class:`opt_protocols.storage.RunRecord`; one file holds many runs).

Every run carries ``attrs["kind"]`` (``"fsl_fit"``, ``"fsl_prediction"``, ``"fsl_optimum"``), the
fitted law (``attrs["law"]``: L0, c1, s, c2, c3, c4, gamma, eta_ref), the package version and the
creation time. Curves are stored in subgroups ``curves/<name>/`` with their logged ``step``
(coordinate), ``loss`` (data, NaN where not given), ``loss_law`` (the law at those steps) and the
per-step schedule ``eta`` on the coordinate ``k`` (every step). An optimum stores its schedule
``eta`` and predicted loss ``loss_law`` on ``k`` at the top of the run.
"""
from __future__ import annotations

import datetime as _dt
import os
import re

import numpy as np

from .. import __version__
from ..storage import RunNotFoundError, RunRecord, list_runs, read_run
from .data import LossCurve
from .law import LossLaw

KINDS = ("fsl_fit", "fsl_prediction", "fsl_optimum")


def _key(curve: LossCurve) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", curve.label)


def _base(kind: str, law: LossLaw, run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, attrs={"kind": kind, "law": law.to_dict(), "opt_protocols_version": __version__,
                                           "created": _dt.datetime.now().isoformat(timespec="seconds")})


def _add_curve(rec: RunRecord, law: LossLaw, curve: LossCurve) -> None:
    g = f"curves/{_key(curve)}/"
    rec.coords[g + "step"] = curve.steps.astype(np.int64)
    rec.coords[g + "k"] = np.arange(curve.horizon, dtype=np.int64)
    rec.variables[g + "loss"] = (("step",), np.asarray(curve.loss, dtype=float))
    inside = curve.steps < curve.horizon
    pred = np.full(curve.steps.size, np.nan)
    pred[inside] = law(curve.eta, curve.steps[inside])
    rec.variables[g + "loss_law"] = (("step",), pred)
    rec.variables[g + "eta"] = (("k",), np.asarray(curve.eta, dtype=float))


def fit_record(fit, curves: list[LossCurve], errors: dict[str, dict], run_id: str) -> RunRecord:
    """A fit (:class:`.fit.FitResult`) with its curves and the per-curve errors."""
    rec = _base("fsl_fit", fit.law, run_id)
    rec.attrs.update(curves=fit.curves, cost=fit.cost, n_points=fit.n_points,
                     rms_log_residual=fit.rms_log_residual, success=fit.success, message=fit.message,
                     at_bounds=fit.at_bounds, n_evaluations=fit.n_evaluations, wall_time=fit.wall_time,
                     errors=errors, sources=[c.source for c in curves])
    for c in curves:
        _add_curve(rec, fit.law, c)
    return rec


def prediction_record(law: LossLaw, curves: list[LossCurve], errors: dict[str, dict], run_id: str,
                      fit_source: str) -> RunRecord:
    """The law's predictions for ``curves`` (with the errors where the curves have losses)."""
    rec = _base("fsl_prediction", law, run_id)
    rec.attrs.update(curves=[c.label for c in curves], errors=errors, fit=fit_source,
                     sources=[c.source for c in curves])
    for c in curves:
        _add_curve(rec, law, c)
    return rec


def optimum_record(law: LossLaw, opt, compare: dict[str, float], run_id: str, fit_source: str) -> RunRecord:
    """An optimised schedule (:class:`.optimise.OptimisedSchedule`) and the predicted final losses of
    the schedules it is compared with."""
    rec = _base("fsl_optimum", law, run_id)
    sol = opt.solution
    rec.attrs.update(final_loss=opt.final_loss, surrogate_error=opt.surrogate_error, warmup=opt.warmup,
                     horizon=opt.horizon, eta_max=opt.eta_max, eta_min=opt.eta_min, status=sol.status,
                     return_status=sol.return_status, solver_objective=float(sol.objective),
                     method=sol.method, stats=sol.stats, verification=sol.verification, compare=compare,
                     fit=fit_source, wall_time=opt.wall_time)
    rec.coords["k"] = np.arange(opt.eta.size, dtype=np.int64)
    rec.variables["eta"] = (("k",), opt.eta)
    rec.variables["loss_law"] = (("k",), law(opt.eta))
    return rec


def read_law(path: str | os.PathLike, run_id: str | None = None) -> tuple[LossLaw, str]:
    """(law, run id) of a stored fit: the run ``run_id`` or, without it, the file's only fit."""
    runs = list_runs(path)
    if run_id is None:
        fits = [r for r in runs if read_run(path, r).attrs.get("kind") == "fsl_fit"]
        if len(fits) != 1:
            raise ValueError(f"{os.fspath(path)!r} holds {len(fits)} fits ({', '.join(fits) or 'none'}): "
                             "name one with --run")
        run_id = fits[0]
    if run_id not in runs:
        raise RunNotFoundError(f"{os.fspath(path)!r} has no run {run_id!r}; runs: {', '.join(runs)}")
    rec = read_run(path, run_id)
    if "law" not in rec.attrs:
        raise ValueError(f"run {run_id!r} of {os.fspath(path)!r} holds no fitted loss law (kind "
                         f"{rec.attrs.get('kind')!r})")
    return LossLaw.from_dict(rec.attrs["law"]), run_id
