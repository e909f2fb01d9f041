"""A declarative optimal-control problem on a model (what to optimise, not how).

``Problem`` holds the model, horizon, initial state, the optimised controls with
their bounds, fixed values for the other controls, static decision variables
(model constants chosen once, like a test-time scale), integral budgets,
penalties, state bounds and the objective. The discretisation (collocation
scheme, degree, intervals) is chosen separately, by the method object passed to
:func:`opt_protocols.solve` (:class:`~opt_protocols.control.methods.Collocation`,
:class:`~opt_protocols.control.methods.Adjoint`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..model import Model

OBJECTIVES = ("final", "integral", "time")


@dataclass(frozen=True)
class Budget:
    """Integral constraint: (1/t_final) * integral of ``control`` dt  ``relation``  ``mean``.

    ``relation`` is ``"=="`` (a fixed share, e.g. of easy examples) or ``"<="``.
    """

    control: str
    mean: float
    relation: str = "=="


@dataclass
class Problem:
    """An optimal-control problem; build it with :func:`make_problem` (validates everything)."""

    model: Model
    t_final: float
    x0: np.ndarray
    controls: dict[str, tuple[float, float]]
    fixed: dict[str, float]
    static: dict[str, tuple[float, float]] = field(default_factory=dict)
    budgets: tuple[Budget, ...] = ()
    smoothness: float = 0.0
    monotone: dict[str, str] = field(default_factory=dict)
    state_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    objective: str = "final"
    target: float | None = None
    t_max: float | None = None
    constants: dict[str, Any] = field(default_factory=dict)

    @property
    def c(self) -> np.ndarray:
        """The model's constant vector with this problem's overrides."""
        return self.model.with_constants(**self.constants)

    def c_with(self, static: Mapping[str, float] | None = None) -> np.ndarray:
        """The constant vector with this problem's overrides and the given static values."""
        return self.model.with_constants(**{**self.constants, **dict(static or {})})

    @property
    def horizon(self) -> float:
        """The longest time a protocol must cover (t_max for time-to-target problems)."""
        return self.t_max if self.objective == "time" else self.t_final

    @property
    def uses_collocation_only(self) -> list[str]:
        """Features of this problem that only the collocation method supports."""
        out = []
        if self.static:
            out.append("static")
        if self.state_bounds:
            out.append("state_bounds")
        if self.objective == "time":
            out.append("objective 'time'")
        return out

    def static_indices(self) -> list[int]:
        slices = self.model.constants.slices()
        return [slices[name].start for name in self.static]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (stored with every run)."""
        return {
            "model": self.model.name,
            "t_final": self.t_final,
            "x0": self.x0.tolist(),
            "controls": {k: list(v) for k, v in self.controls.items()},
            "fixed": dict(self.fixed),
            "static": {k: list(v) for k, v in self.static.items()},
            "budgets": [asdict(b) for b in self.budgets],
            "smoothness": self.smoothness,
            "monotone": dict(self.monotone),
            "state_bounds": {k: list(v) for k, v in self.state_bounds.items()},
            "objective": self.objective,
            "target": self.target,
            "t_max": self.t_max,
            "constants": {k: np.asarray(v).tolist() for k, v in self.constants.items()},
            "loss_name": str(getattr(self.model.module, "LOSS_NAME", "loss")),
            "params_set": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.model.params.items()
                           if not _same(v, self.model.module.PARAMETERS[k].default)},
        }


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return a == b


def _bounds(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = value
        return float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"bounds of {name!r}: expected a pair (lo, hi), got {value!r}") from None


def make_problem(model: Model, *, t_final: float, x0=None, controls: Mapping[str, Any] | None = None,
                 fixed: Mapping[str, float] | None = None, static: Mapping[str, Any] | None = None,
                 budgets=(), smoothness: float = 0.0, monotone: Mapping[str, str] | None = None,
                 state_bounds: Mapping[str, Any] | None = None, objective: str = "final",
                 target: float | None = None, t_max: float | None = None,
                 constants: Mapping[str, Any] | None = None) -> Problem:
    """Validate user input into a :class:`Problem`; every error is a one-line ValueError."""
    try:
        t_final = float(t_final)
    except (TypeError, ValueError):
        raise ValueError(f"t_final: expected a positive number, got {t_final!r}") from None
    if not (math.isfinite(t_final) and t_final > 0):
        raise ValueError(f"t_final = {t_final:g} must be a positive number")
    if model.kind == "map" and t_final != int(t_final):
        raise ValueError(f"t_final = {t_final:g} must be a whole number of steps for the map {model.name!r}")
    x0 = model.initial_state() if x0 is None else model.check_state(x0)
    if controls is None:
        controls = [model.control_names[0]]
    if isinstance(controls, str):
        controls = [controls]
    if not isinstance(controls, Mapping):   # names only: each on its admissible range
        try:
            names = list(controls)
        except TypeError:
            raise ValueError(f"controls: expected a mapping name -> (lo, hi) or a list of names, "
                             f"got {type(controls).__name__}") from None
        for name in names:
            if not isinstance(name, str) or name not in model.controls:
                raise ValueError(f"model {model.name!r} has no control {name!r}; "
                                 f"controls: {', '.join(model.control_names)}")
        controls = {n: (model.controls[n].lo, model.controls[n].hi) for n in names}
    ctrl: dict[str, tuple[float, float]] = {}
    for name, b in controls.items():
        if name not in model.controls:
            raise ValueError(f"model {model.name!r} has no control {name!r}; "
                             f"controls: {', '.join(model.control_names)}")
        lo, hi = model.controls[name].check_bounds(name, *_bounds(name, b))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"control {name!r}: optimised controls need finite bounds, got ({lo}, {hi})")
        ctrl[name] = (lo, hi)
    if not ctrl:
        raise ValueError("controls: at least one control must be optimised")
    fixed_in = dict(fixed or {})
    for name in fixed_in:
        if name in ctrl:
            raise ValueError(f"control {name!r} is both optimised and fixed")
        if name not in model.controls:
            raise ValueError(f"model {model.name!r} has no control {name!r}; "
                             f"controls: {', '.join(model.control_names)}")
    fixed_all = {n: model.controls[n].check_value(n, fixed_in.get(n, model.controls[n].default))
                 for n in model.control_names if n not in ctrl}
    const_in = dict(constants or {})
    model.with_constants(**const_in)  # validates names and sizes
    slices = model.constants.slices()
    stat: dict[str, tuple[float, float]] = {}
    for name, b in (static or {}).items():
        if name not in slices:
            raise ValueError(f"static variable {name!r}: model {model.name!r} has no constant of that name; "
                             f"constants: {', '.join(slices)}")
        if slices[name].stop - slices[name].start != 1:
            raise ValueError(f"static variable {name!r}: only scalar constants can be optimised")
        lo, hi = _bounds(name, b)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"static variable {name!r}: expected finite bounds lo <= hi, got ({lo}, {hi})")
        stat[name] = (lo, hi)
    buds = []
    for b in budgets:
        b = b if isinstance(b, Budget) else Budget(**b)
        if b.control not in ctrl:
            raise ValueError(f"budget on {b.control!r}: only optimised controls ({', '.join(ctrl)}) can carry a budget")
        if b.relation not in ("==", "<="):
            raise ValueError(f"budget relation {b.relation!r}: expected '==' or '<='")
        lo, hi = ctrl[b.control]
        if not lo <= b.mean <= hi:
            raise ValueError(f"budget on {b.control!r}: mean {b.mean} outside the control bounds [{lo}, {hi}]")
        buds.append(b)
    mono = dict(monotone or {})
    for name, how in mono.items():
        if name not in ctrl or how not in ("increasing", "decreasing"):
            raise ValueError(f"monotone {name!r}: {how!r}; expected an optimised control and "
                             "'increasing' or 'decreasing'")
    sb = {}
    for name, b in (state_bounds or {}).items():
        model.state_index(name)
        sb[name] = _bounds(name, b)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    if objective == "time":
        if target is None:
            raise ValueError("objective 'time' needs a target loss (target=...)")
        t_max = float(t_max) if t_max is not None else 10.0 * t_final
        if not t_max >= t_final:
            raise ValueError(f"t_max = {t_max:g} must be at least t_final = {t_final:g} (the initial guess)")
    if float(smoothness) < 0:
        raise ValueError(f"smoothness = {smoothness}: expected a number >= 0")
    return Problem(model=model, t_final=t_final, x0=x0, controls=ctrl, fixed=fixed_all, static=stat,
                   budgets=tuple(buds), smoothness=float(smoothness), monotone=mono, state_bounds=sb,
                   objective=objective, target=None if target is None else float(target), t_max=t_max,
                   constants=const_in)
