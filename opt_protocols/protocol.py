"""Protocols: what the controls do over time, in one tabulated form.

Every way a user can give a control -- a number, a callable of time, values on a
grid, a schedule-family instance, or the protocol of a stored solution -- is
turned into a :class:`Protocol`: knots ``tk`` and, per segment, the control
vector at its start (``U0``) and end (``U1``); controls are linear within a
segment (constant when ``U0 == U1``). The numba integrators read this form.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Samples used to tabulate a callable protocol (piecewise linear between them).
CALLABLE_SAMPLES = 2000


@dataclass
class Protocol:
    """Tabulated controls: knots ``tk`` (n_seg + 1), ``U0``/``U1`` (n_seg, n_u), control names."""

    tk: np.ndarray
    U0: np.ndarray
    U1: np.ndarray
    names: list[str]

    def __call__(self, t: float | np.ndarray) -> np.ndarray:
        """Control vector(s) at time(s) t (right-continuous at knots); shape (..., n_u)."""
        t = np.asarray(t, dtype=float)
        s = np.clip(np.searchsorted(self.tk, t, side="right") - 1, 0, len(self.tk) - 2)
        width = self.tk[s + 1] - self.tk[s]
        theta = np.where(width > 0, (t - self.tk[s]) / np.where(width > 0, width, 1.0), 0.0)
        return self.U0[s] + theta[..., None] * (self.U1[s] - self.U0[s])

    def values(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Each control's value at times ``t``."""
        u = self(np.asarray(t, dtype=float))
        return {name: u[..., i] for i, name in enumerate(self.names)}


def _merge(tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]], names: list[str]) -> Protocol:
    """Combine per-control tables (tk, u0, u1) into one table on the union of knots."""
    tk = np.unique(np.concatenate([t for t, _, _ in tables]))
    n_seg = len(tk) - 1
    U0 = np.empty((n_seg, len(tables)))
    U1 = np.empty((n_seg, len(tables)))
    for j, (t, u0, u1) in enumerate(tables):
        part = Protocol(t, u0[:, None], u1[:, None], [names[j]])
        a, b = tk[:-1], tk[1:]
        U0[:, j] = part(a)[:, 0]
        # value at the right end of each merged segment, approached from the left
        s = np.clip(np.searchsorted(t, 0.5 * (a + b), side="right") - 1, 0, len(t) - 2)
        width = t[s + 1] - t[s]
        theta = np.where(width > 0, (b - t[s]) / np.where(width > 0, width, 1.0), 0.0)
        U1[:, j] = (1.0 - theta) * u0[s] + theta * u1[s]     # exact at theta = 1: a value on a bound stays on it
    return Protocol(tk, np.ascontiguousarray(U0), np.ascontiguousarray(U1), list(names))


def _table(name: str, spec: Any, t0: float, t_final: float,
           discrete: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One control's (tk, u0, u1) table from a user specification (``discrete``: for a map)."""
    if isinstance(spec, (int, float, np.integer, np.floating)) and not isinstance(spec, bool):
        v = float(spec)
        return np.array([t0, t_final]), np.array([v]), np.array([v])
    if isinstance(spec, tuple) and len(spec) == 2:
        grid = np.asarray(spec[0], dtype=float).ravel()
        vals = np.asarray(spec[1], dtype=float).ravel()
        if grid.size < 2 or np.any(np.diff(grid) <= 0):
            raise ValueError(f"protocol {name!r}: the time grid must be increasing with at least 2 points")
        if vals.size == grid.size - 1:
            return grid, vals, vals.copy()
        if vals.size == grid.size:
            return grid, vals[:-1].copy(), vals[1:].copy()
        raise ValueError(f"protocol {name!r}: {vals.size} values for a grid of {grid.size} points "
                         f"(give {grid.size - 1} for piecewise constant or {grid.size} for piecewise linear)")
    if isinstance(spec, (list, np.ndarray)):
        vals = np.asarray(spec, dtype=float).ravel()
        if vals.size == 0:
            raise ValueError(f"protocol {name!r}: empty array")
        grid = np.linspace(t0, t_final, vals.size + 1)
        return grid, vals, vals.copy()
    if hasattr(spec, "tabulate"):  # schedule families know their own knots
        return spec.tabulate(t0, t_final, discrete)
    if callable(spec):
        grid = np.linspace(t0, t_final, CALLABLE_SAMPLES + 1)
        try:
            vals = np.asarray(spec(grid), dtype=float)
            if vals.shape != grid.shape:
                raise ValueError
        except Exception:
            vals = np.array([float(spec(t)) for t in grid])
        return grid, vals[:-1].copy(), vals[1:].copy()
    raise ValueError(f"protocol {name!r}: expected a number, array, (grid, values), schedule or callable, "
                     f"got {type(spec).__name__}")


def as_protocol(model, spec: Any, t_final: float, t0: float = 0.0) -> Protocol:
    """Normalise a protocol specification for ``model`` on [t0, t_final].

    ``spec`` is a mapping control name -> specification (missing controls keep
    their model default), a :class:`Protocol`, an object with a ``protocol``
    attribute (a solution), or a single specification, which then applies to the
    model's first control (e.g. the learning rate).
    """
    if spec is None:
        spec = {}
    if isinstance(getattr(spec, "protocol", None), Protocol):
        spec = spec.protocol
    if isinstance(spec, Protocol):
        unknown = [n for n in spec.names if n not in model.control_names]
        if unknown:
            raise ValueError(f"protocol: model {model.name!r} has no control {unknown[0]!r}")
        tables = {n: (spec.tk, spec.U0[:, i], spec.U1[:, i]) for i, n in enumerate(spec.names)}
    else:
        if not isinstance(spec, Mapping):
            spec = {model.control_names[0]: spec}
        unknown = [n for n in spec if n not in model.control_names]
        if unknown:
            raise ValueError(f"protocol: model {model.name!r} has no control {unknown[0]!r}; "
                             f"controls: {', '.join(model.control_names)}")
        tables = {n: _table(n, s, t0, t_final, model.kind == "map") for n, s in spec.items()}
    full = []
    for n in model.control_names:
        if n in tables:
            full.append(tables[n])
        else:
            v = model.controls[n].default
            full.append((np.array([t0, t_final]), np.array([v]), np.array([v])))
    proto = _merge(full, model.control_names)
    for j, n in enumerate(model.control_names):
        ctrl = model.controls[n]
        lo = min(proto.U0[:, j].min(), proto.U1[:, j].min())
        hi = max(proto.U0[:, j].max(), proto.U1[:, j].max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < ctrl.lo or hi > ctrl.hi:
            raise ValueError(f"protocol {n!r}: values in [{lo:g}, {hi:g}] leave the admissible range "
                             f"[{ctrl.lo}, {ctrl.hi}]")
    if proto.tk[0] > t0 or proto.tk[-1] < t_final:
        raise ValueError(f"protocol: its grid [{proto.tk[0]:g}, {proto.tk[-1]:g}] does not cover "
                         f"[{t0:g}, {t_final:g}]")
    return proto
