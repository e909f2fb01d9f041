"""Declarations a model module makes: parameters and controls, with validation.

A model lists its parameters as ``PARAMETERS = {"K": Param(2, int, lo=1), ...}``
and its controls through a function returning ``{"eta": Control(0.5, 0.0, inf)}``.
Validation errors are ``ValueError`` with one line naming the parameter and the
allowed range, so the CLI can print them as they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if (lo_open or lo is None) else "["
    right = ")" if (hi_open or hi is None) else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


@dataclass(frozen=True)
class Param:
    """A model parameter: default value, kind and admissible range.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``"matrix"`` (a 2-D float
    array, or ``None`` for a default computed by the model) or ``"vector"``.
    ``lo``/``hi`` bound scalars (inclusive unless ``lo_open``/``hi_open``).
    """

    default: Any
    kind: Any = float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    doc: str = ""

    def allowed(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind in ("matrix", "vector"):
            return f"a {self.kind} of floats" + ("" if self.default is not None else " (or omitted)")
        what = "an integer" if self.kind is int else "a number"
        return f"{what} in {_range_text(self.lo, self.hi, self.lo_open, self.hi_open)}"

    def validate(self, name: str, value: Any) -> Any:
        """Return ``value`` converted to this parameter's kind, or raise ValueError."""
        if self.kind in ("matrix", "vector"):
            if value is None:
                return None
            try:
                arr = np.array(value, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"parameter {name!r}: expected {self.allowed()}, got {value!r}") from None
            want = 2 if self.kind == "matrix" else 1
            if arr.ndim != want or not np.all(np.isfinite(arr)):
                raise ValueError(f"parameter {name!r}: expected {self.allowed()} with finite entries, "
                                 f"got shape {arr.shape}")
            return arr
        if self.kind is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, (int, np.integer)) and value in (0, 1):
                return bool(value)
            raise ValueError(f"parameter {name!r}: expected true or false, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value) if self.kind is float else int(value)
            except ValueError:
                raise ValueError(f"parameter {name!r}: expected {self.allowed()}, got {value!r}") from None
        if self.kind is int:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) \
                    or float(value) != int(value):
                raise ValueError(f"parameter {name!r}: expected {self.allowed()}, got {value!r}")
            value = int(value)
        else:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"parameter {name!r}: expected {self.allowed()}, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"parameter {name!r}: expected {self.allowed()}, got {value!r}")
        bad_lo = self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo))
        bad_hi = self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi))
        if bad_lo or bad_hi:
            raise ValueError(f"parameter {name!r} = {value!r} is out of range: expected {self.allowed()}")
        return value


@dataclass(frozen=True)
class Control:
    """A control input: its default value and admissible bounds ``[lo, hi]``."""

    default: float
    lo: float = -math.inf
    hi: float = math.inf
    doc: str = ""

    def check_bounds(self, name: str, lo: float, hi: float) -> tuple[float, float]:
        """Validate user bounds for this control against its admissible range."""
        lo, hi = float(lo), float(hi)
        if math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"control {name!r}: bounds must be numbers, got ({lo}, {hi})")
        if lo > hi:
            raise ValueError(f"control {name!r}: lower bound {lo} exceeds upper bound {hi}")
        if lo < self.lo or hi > self.hi:
            raise ValueError(
                f"control {name!r}: bounds ({lo}, {hi}) leave the admissible range [{self.lo}, {self.hi}]")
        return lo, hi

    def check_value(self, name: str, value: float) -> float:
        value = float(value)
        if not (self.lo <= value <= self.hi):
            raise ValueError(f"control {name!r} = {value} is out of range: expected a number in [{self.lo}, {self.hi}]")
        return value


@dataclass
class Constants:
    """Named numeric constants of a model, flattened into one vector ``c``.

    Each entry is a scalar or an array; the flat names are ``"sigma"`` for a
    scalar and ``"T[0,1]"`` for array entries. These are the numbers the
    equations read from ``c``; in optimal control they become parameters of a
    built problem (or static decision variables).
    """

    values: dict[str, Any] = field(default_factory=dict)

    @property
    def vector(self) -> np.ndarray:
        parts = [np.atleast_1d(np.asarray(v, dtype=float)).ravel() for v in self.values.values()]
        return np.concatenate(parts) if parts else np.zeros(0)

    @property
    def names(self) -> list[str]:
        names: list[str] = []
        for key, v in self.values.items():
            arr = np.asarray(v)
            if arr.ndim == 0:
                names.append(key)
            else:
                names.extend(f"{key}[{','.join(map(str, idx))}]" for idx in np.ndindex(arr.shape))
        return names

    def slices(self) -> dict[str, slice]:
        """Position of each named block in the flat vector."""
        out, i = {}, 0
        for key, v in self.values.items():
            n = int(np.asarray(v).size)
            out[key] = slice(i, i + n)
            i += n
        return out


def validate_params(declared: dict[str, Param], given: dict[str, Any], model: str) -> dict[str, Any]:
    """Fill defaults and validate ``given`` against ``declared``; unknown names are errors."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"model {model!r} has no parameter {unknown[0]!r}; known: {', '.join(declared)}")
    out = {}
    for name, spec in declared.items():
        out[name] = spec.validate(name, given[name]) if name in given else spec.default
    return out

