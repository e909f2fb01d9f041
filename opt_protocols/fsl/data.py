"""Loss curves with their per-step learning-rate schedules: the shipped LLM curves and user CSVs.

The package ships real training-loss curves of 25M, 100M and 400M-parameter language models
(``opt_protocols/data/llm_loss_curves/``, from Luo et al. 2025, arXiv:2503.12811, MIT licence; see
the README there). Each CSV has the columns ``step,lr,loss``, sampled every 128 steps. The ansatz
of :mod:`.law` needs the learning rate at *every* step, so :func:`builtin_curve` rebuilds the
per-step schedule from its definition (warmup W = 2160 steps linear from 0 to 3e-4, then the
schedule the file name encodes: README table) and checks it against the ``lr`` column: a
disagreement above :data:`LR_RTOL` is a loud warning, since every number derived from the curve
would then describe another schedule.

A user's CSV (:func:`read_curve`) has the same three columns (``loss`` may be missing for a
schedule to predict). Its per-step schedule is the ``lr`` column interpolated linearly between
the logged steps, and before the first logged step a linear ramp from 0 (a linear warmup ending at
the first row); log every step to make it exact.
"""
from __future__ import annotations

import csv
import math
import os
import re
import warnings
from dataclasses import dataclass
from importlib import resources

import numpy as np

#: The shipped model sizes.
SIZES = ("25M", "100M", "400M")
#: The shipped schedules (file stems).
NAMES = ("constant_24000", "constant_72000", "cosine_24000", "cosine_72000", "wsd_20000_24000",
         "wsdld_20000_24000", "wsdcon_3", "wsdcon_9", "wsdcon_18")
WARMUP = 2160
PEAK = 3e-4
FINAL = 3e-5
#: wsdcon_X: the peak until this step, then X * 1e-5 until WSDCON_END.
WSDCON_SWITCH, WSDCON_END = 8000, 16000
#: Largest relative difference between a rebuilt schedule and the ``lr`` column accepted silently.
LR_RTOL = 1e-9


@dataclass
class LossCurve:
    """A training-loss curve and the learning rate of every step.

    ``steps``, ``lr``, ``loss``: the logged rows (``loss`` NaN where not given); ``eta``: the
    learning rate of steps 0 .. horizon-1; ``warmup``: the first step at which ``eta`` reaches its
    maximum (the loss-reduction sum of :mod:`.law` and the fits start after it).
    """

    name: str
    steps: np.ndarray
    lr: np.ndarray
    loss: np.ndarray
    eta: np.ndarray
    source: str
    size: str | None = None

    @property
    def horizon(self) -> int:
        return int(self.eta.size)

    @property
    def warmup(self) -> int:
        return int(np.argmax(self.eta))

    def fit_mask(self) -> np.ndarray:
        """Rows used in fits: after the warmup, inside the schedule, with a finite positive loss."""
        return (self.steps > self.warmup) & (self.steps < self.horizon) & np.isfinite(self.loss) & (self.loss > 0)

    @property
    def label(self) -> str:
        return f"{self.size}/{self.name}" if self.size else self.name


def data_dir():
    """The folder of the shipped curves (a :mod:`importlib.resources` traversable)."""
    return resources.files("opt_protocols") / "data" / "llm_loss_curves"


def read_csv(path: str | os.PathLike, require_loss: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, lr, loss) of a CSV with a header ``step,lr,loss`` (``loss`` optional unless
    ``require_loss``); steps must be increasing non-negative integers, lr finite and >= 0 and
    loss finite and > 0 (the fit works on log-loss; an empty loss cell means no loss was logged at that
    step, e.g. when lr is written at every step). An error names the file and the line."""
    name = str(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as err:
        raise ValueError(f"loss curve {name!r}: cannot be read ({err.strerror})") from None
    if not rows:
        raise ValueError(f"loss curve {name!r}: empty file")
    header = [h.strip().lower() for h in rows[0]]
    need = ["step", "lr"] + (["loss"] if require_loss else [])
    missing = [h for h in need if h not in header]
    if missing:
        raise ValueError(f"loss curve {name!r}: no column {missing[0]!r} (expected a header step,lr,loss)")
    cols = {h: header.index(h) for h in ("step", "lr", "loss") if h in header}
    data = {h: [] for h in cols}
    lines = []
    for i, row in enumerate(rows[1:], start=2):
        if not row or all(not v.strip() for v in row):
            continue
        for h, j in cols.items():
            if h == "loss" and (j >= len(row) or not row[j].strip()):
                data[h].append(None)       # an empty loss cell: no loss logged at this step
                continue
            try:
                data[h].append(float(row[j]))
            except (IndexError, ValueError):
                raise ValueError(f"loss curve {name!r}, line {i}: {h} = {row[j] if j < len(row) else ''!r} "
                                 "is not a number") from None
        lines.append(i)
    steps = np.asarray(data["step"])
    lr = np.asarray(data["lr"])
    logged = np.array([v is not None for v in data["loss"]]) if "loss" in data else np.zeros(steps.size, bool)
    loss = np.array([np.nan if v is None else v for v in data.get("loss", [None] * steps.size)], dtype=float)
    if steps.size < 2:
        raise ValueError(f"loss curve {name!r}: at least two rows are needed")

    def first_bad(bad: np.ndarray, what: str, values: np.ndarray, offset: int = 0) -> None:
        if np.any(bad):
            k = int(np.argmax(bad)) + offset
            raise ValueError(f"loss curve {name!r}, line {lines[k]}: {what} (got {values[k]:g})")

    first_bad((steps != np.round(steps)) | (steps < 0), "step must be a non-negative integer", steps)
    first_bad(np.diff(steps) <= 0, "steps must be increasing (this step is not after the one before)", steps, 1)
    first_bad(~np.isfinite(lr) | (lr < 0), "lr must be finite and >= 0", lr)
    if "loss" in data:
        first_bad(logged & ~(np.isfinite(loss) & (loss > 0)), "loss must be finite and > 0 (leave the cell empty "
                  "where no loss was logged)", loss)
        if require_loss and not logged.any():
            raise ValueError(f"loss curve {name!r}: no loss values in the column 'loss'")
    return steps.astype(np.int64), lr, loss


def interpolated_schedule(steps: np.ndarray, lr: np.ndarray, horizon: int | None = None) -> np.ndarray:
    """Per-step learning rates 0 .. horizon-1 (default: the last logged step + 1) from logged values:
    linear between the rows, a linear ramp from 0 before the first row, the last value after the last."""
    horizon = int(steps[-1]) + 1 if horizon is None else int(horizon)
    if horizon <= int(steps[0]):
        raise ValueError(f"horizon = {horizon}: expected more steps than the first logged step {int(steps[0])}")
    k = np.arange(horizon, dtype=float)
    eta = np.interp(k, steps.astype(float), lr)
    if steps[0] > 0:
        head = k < steps[0]
        eta[head] = lr[0] * k[head] / steps[0]
    return eta


def builtin_schedule(name: str) -> np.ndarray:
    """The per-step schedule of a shipped curve, from its definition (README of the data)."""
    m = re.fullmatch(r"(constant|cosine)_(\d+)|(wsd|wsdld)_(\d+)_(\d+)|wsdcon_(\d+)", name)
    if m is None:
        raise ValueError(f"curve {name!r}: expected one of {', '.join(NAMES)}")
    if m.group(6):
        K = WSDCON_END
    else:
        K = int(m.group(2) or m.group(5))
    k = np.arange(K, dtype=float)
    eta = np.full(K, PEAK)
    eta[:WARMUP] = PEAK * k[:WARMUP] / WARMUP
    if m.group(1) == "cosine":
        post = k >= WARMUP
        eta[post] = FINAL + 0.5 * (PEAK - FINAL) * (1.0 + np.cos(np.pi * (k[post] - WARMUP) / (K - WARMUP)))
    elif m.group(3):
        S = int(m.group(4))
        d = k >= S
        frac = (k[d] - S) / (K - S)
        eta[d] = PEAK ** (1 - frac) * FINAL ** frac if m.group(3) == "wsd" else PEAK + (FINAL - PEAK) * frac
    elif m.group(6):
        eta[k >= WSDCON_SWITCH] = int(m.group(6)) * 1e-5
    return eta


def check_schedule(curve: LossCurve, rtol: float = LR_RTOL) -> float:
    """Largest relative difference between ``curve.eta`` at the logged steps and the ``lr`` column
    (rows inside the horizon); warns loudly above ``rtol``."""
    inside = curve.steps < curve.horizon
    rebuilt = curve.eta[curve.steps[inside]]
    given = curve.lr[inside]
    diff = float(np.max(np.abs(rebuilt - given) / np.maximum(np.abs(given), 1e-300))) if inside.any() else 0.0
    if diff > rtol:
        k = int(np.argmax(np.abs(rebuilt - given) / np.maximum(np.abs(given), 1e-300)))
        warnings.warn(f"WARNING: loss curve {curve.label}: the per-step schedule disagrees with the lr column "
                      f"(relative difference {diff:.2e} at step {int(curve.steps[inside][k])}: rebuilt "
                      f"{rebuilt[k]:.6g}, logged {given[k]:.6g}); fits and predictions use the rebuilt schedule",
                      stacklevel=2)
    return diff


def builtin_curve(size: str, name: str) -> LossCurve:
    """A shipped curve with its per-step schedule rebuilt from the definition and checked."""
    if size not in SIZES:
        raise ValueError(f"model size {size!r}: expected one of {', '.join(SIZES)}")
    if name not in NAMES:
        raise ValueError(f"curve {name!r}: expected one of {', '.join(NAMES)}")
    path = data_dir() / size / f"{name}.csv"
    with resources.as_file(path) as p:
        steps, lr, loss = read_csv(p)
    curve = LossCurve(name=name, steps=steps, lr=lr, loss=loss, eta=builtin_schedule(name),
                      source=f"opt_protocols/data/llm_loss_curves/{size}/{name}.csv", size=size)
    check_schedule(curve)
    return curve


def builtin_curves(size: str) -> dict[str, LossCurve]:
    """Every shipped curve of one model size, by name."""
    return {name: builtin_curve(size, name) for name in NAMES}


def read_curve(path: str | os.PathLike, horizon: int | None = None, require_loss: bool = True) -> LossCurve:
    """A user's curve: CSV ``step,lr,loss``; the per-step schedule interpolated from the lr column
    (see the module docstring) up to ``horizon`` steps (default: the last logged step + 1)."""
    steps, lr, loss = read_csv(path, require_loss)
    eta = interpolated_schedule(steps, lr, horizon)
    name = os.path.splitext(os.path.basename(str(path)))[0]
    curve = LossCurve(name=name, steps=steps, lr=lr, loss=loss, eta=eta, source=str(path))
    if not math.isclose(float(eta.max()), float(lr.max()), rel_tol=1e-12):
        raise ValueError(f"loss curve {str(path)!r}: horizon {curve.horizon} cuts the schedule before its peak")
    return curve
