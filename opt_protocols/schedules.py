"""Learning-rate schedule families: ``base_lr * shape(t)`` with peak shape 1 ([NS26]; docs/models.md, section 7).

Every schedule is a small frozen dataclass holding its base learning rate, its shape parameters
and an optional warmup. Shape and base LR are separate axes: ``shape(t, T)`` has maximum 1 and
``schedule(t, T) = base_lr * shape(t, T)``. With ``W = warmup * T`` warmup time and
``u = (t - W)/(T - W)`` in [0, 1) the decay families are (``a``, ``p``, ... their parameters):

=================  ===========================================================================
``Constant``        1
``Cosine``          (1 - a) ((1 + cos(pi u))/2)^p + a          (a: final fraction, p: sharpness)
``SquareRoot``      (1 - u^2)^(a/2)
``Rex``             (1 - u)/(1 - u (1 - beta))                   (generalized REX)
``WSD``             1 until the last ``decay_fraction`` of the steps, then ``decay`` ("linear",
                    "cosine" or "geometric") down to ``floor``
``Polynomial``      (1 - u)^delta
``PowerLaw``        (t - W + 1)^(-chi)                           (time counted from 1)
``TwoPointLinear``  through (x0, 1), (x1, y1), (x2, y2), (1, 0) on s = t/T, linear warmup on [0, x0],
                    x1 = x0 + dx1 (1 - x0), x2 = x1 + dx2 (1 - x1), y2 = dy2 y1 (all five in [0, 1])
``TwoPointSpline``  the same knots joined by a monotone cubic (PCHIP)
``SmoothSpline``    PCHIP through (0, y_start), (x1, y1), (x2, y2), (x_peak, 1), (1, y_end), with
                    x1 = a1 x_peak, x2 = x1 + a2 (x_peak - x1): non-monotonic, no separate warmup
=================  ===========================================================================

Warmup (``warmup`` > 0, a fraction of the horizon) multiplies the shape on [0, W) by
``linear`` t/W, ``cosine`` (1 - cos(pi t/W))/2, ``exponential`` 0.01^(1 - t/W) or ``polynomial``
(t/W)^2; the spline families carry their own warmup and take none.

A schedule is a protocol: pass it to :func:`opt_protocols.simulate` (``{"eta": Cosine(0.5)}`` or the
schedule alone for the model's first control) or as a baseline. For discrete maps step ``k`` uses
``schedule(k, T)``; for ODEs it is tabulated piecewise linearly on :data:`SAMPLES` segments plus its
breakpoints. ``PARAMS`` lists each shape parameter's bounds and scale for searches.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

#: Segments used to tabulate a smooth schedule for an ODE model (piecewise linear between them).
SAMPLES = 2000
WARMUPS = ("linear", "cosine", "exponential", "polynomial")
#: Start of the exponential warmup, as a fraction of the peak.
EXP_WARMUP_START = 0.01


@dataclass(frozen=True)
class Param:
    """Bounds of a shape parameter and the scale to search it on (``"linear"`` or ``"log"``)."""

    lo: float
    hi: float
    scale: str = "linear"

    def sample(self, rng: np.random.Generator) -> float:
        if self.scale == "log":
            return float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))
        return float(rng.uniform(self.lo, self.hi))


@dataclass(frozen=True)
class Schedule:
    """Base class: ``base_lr * shape(t, T)``; subclasses define :meth:`_decay` and ``PARAMS``."""

    base_lr: float = 1.0
    warmup: float = 0.0
    warmup_shape: str = "linear"

    PARAMS: ClassVar[dict[str, Param]] = {}
    OWN_WARMUP: ClassVar[bool] = False

    def __post_init__(self):
        name = type(self).__name__
        if not (isinstance(self.base_lr, (int, float)) and math.isfinite(self.base_lr) and self.base_lr >= 0):
            raise ValueError(f"{name}: base_lr = {self.base_lr!r}: expected a number >= 0")
        if not (0.0 <= float(self.warmup) < 1.0):
            raise ValueError(f"{name}: warmup = {self.warmup!r}: expected a fraction of the horizon in [0, 1)")
        if self.OWN_WARMUP and self.warmup:
            raise ValueError(f"{name}: carries its own warmup (x0); warmup must be 0")
        if self.warmup_shape not in WARMUPS:
            raise ValueError(f"{name}: warmup_shape {self.warmup_shape!r}: expected one of {', '.join(WARMUPS)}")
        for key, spec in self.PARAMS.items():
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and spec.lo <= v <= spec.hi):
                raise ValueError(f"{name}: {key} = {v!r} is out of range: expected a number in [{spec.lo}, {spec.hi}]")

    # ---- parameters ---------------------------------------------------------------------------
    @property
    def family(self) -> str:
        return _family_name(type(self))

    def params(self) -> dict[str, Any]:
        """All fields (base_lr, warmup, shape parameters) as a dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def shape_params(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.PARAMS}

    def replace(self, **changes: Any) -> Schedule:
        return dataclasses.replace(self, **changes)

    # ---- evaluation ---------------------------------------------------------------------------
    def shape(self, t: np.ndarray | float, T: float) -> np.ndarray:
        """The shape (peak 1) at times ``t`` of a horizon ``T``."""
        t = np.asarray(t, dtype=float)
        T = float(T)
        if not T > 0:
            raise ValueError(f"{type(self).__name__}: horizon T = {T!r} must be positive")
        if self.OWN_WARMUP:
            return np.clip(self._decay(t / T, t, T), 0.0, 1.0)
        W = self.warmup * T
        u = np.clip((t - W) / (T - W), 0.0, 1.0)
        out = self._decay(u, np.maximum(t - W, 0.0), T - W)
        if W > 0:
            r = np.clip(t / W, 0.0, 1.0)
            warm = {"linear": r, "cosine": 0.5 * (1.0 - np.cos(np.pi * r)),
                    "exponential": EXP_WARMUP_START ** (1.0 - r), "polynomial": r * r}[self.warmup_shape]
            out = np.where(t < W, warm * self._decay(np.zeros_like(t), np.zeros_like(t), T - W), out)
        return np.clip(out, 0.0, 1.0)

    def __call__(self, t: np.ndarray | float, T: float) -> np.ndarray:
        """The learning rate ``base_lr * shape(t, T)``."""
        return self.base_lr * self.shape(t, T)

    def _decay(self, u: np.ndarray, t: np.ndarray, T: float) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def breakpoints(self, T: float) -> list[float]:
        """Times where the schedule has a kink (kept as knots when tabulated)."""
        return [self.warmup * T] if self.warmup else []

    def tabulate(self, t0: float, t_final: float, discrete: bool = False):
        """``(tk, u0, u1)`` for :mod:`opt_protocols.protocol`: per step for maps, piecewise linear for ODEs."""
        T = float(t_final)
        if discrete:
            tk = np.arange(0.0, round(T) + 1.0)
            v = self(tk[:-1], T)
            return tk, v, v.copy()
        tk = np.unique(np.concatenate([np.linspace(t0, T, SAMPLES + 1),
                                       [b for b in self.breakpoints(T) if t0 < b < T]]))
        v = self(tk, T)
        return tk, v[:-1].copy(), v[1:].copy()


def _family_name(cls: type) -> str:
    """``TwoPointLinear`` -> ``"two_point_linear"``, ``WSD`` -> ``"wsd"``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__).lower()


@dataclass(frozen=True)
class Constant(Schedule):
    """The constant schedule, shape 1 (after the warmup)."""

    def _decay(self, u, t, T):
        return np.ones_like(u)


@dataclass(frozen=True)
class Cosine(Schedule):
    """Generalized cosine: (1 - a)((1 + cos(pi u))/2)^p + a."""

    a: float = 0.0
    p: float = 1.0
    PARAMS: ClassVar[dict[str, Param]] = {"a": Param(0.0, 1.0), "p": Param(0.1, 10.0, "log")}

    def _decay(self, u, t, T):
        return (1.0 - self.a) * (0.5 * (1.0 + np.cos(np.pi * u))) ** self.p + self.a


@dataclass(frozen=True)
class SquareRoot(Schedule):
    """Square root: (1 - u^2)^(a/2)."""

    a: float = 1.0
    PARAMS: ClassVar[dict[str, Param]] = {"a": Param(0.05, 10.0, "log")}

    def _decay(self, u, t, T):
        return np.maximum(1.0 - u * u, 0.0) ** (0.5 * self.a)


@dataclass(frozen=True)
class Rex(Schedule):
    """Generalized REX: (1 - u)/(1 - u(1 - beta)); beta = 1 is linear decay."""

    beta: float = 1.0
    PARAMS: ClassVar[dict[str, Param]] = {"beta": Param(1e-3, 10.0, "log")}

    def _decay(self, u, t, T):
        return (1.0 - u) / (1.0 - u * (1.0 - self.beta))


WSD_DECAYS = ("linear", "cosine", "geometric")


@dataclass(frozen=True)
class WSD(Schedule):
    """Warmup-stable-decay: 1 until the last ``decay_fraction`` of the (post-warmup) steps, then a
    ``decay`` ("linear", "cosine" or "geometric") to ``floor`` at the end. Geometric decay needs a
    positive floor (it interpolates log-linearly)."""

    decay_fraction: float = 0.2
    floor: float = 0.0
    decay: str = "linear"
    PARAMS: ClassVar[dict[str, Param]] = {"decay_fraction": Param(1e-4, 1.0), "floor": Param(0.0, 1.0)}

    def __post_init__(self):
        super().__post_init__()
        if self.decay not in WSD_DECAYS:
            raise ValueError(f"WSD: decay {self.decay!r}: expected one of {', '.join(WSD_DECAYS)}")
        if self.decay == "geometric" and not self.floor > 0:
            raise ValueError("WSD: decay 'geometric' needs floor > 0")

    def _decay(self, u, t, T):
        f = self.decay_fraction
        r = np.clip((1.0 - u) / f, 0.0, 1.0)          # 1 before the decay, 0 at the end
        if self.decay == "linear":
            v = r
        elif self.decay == "cosine":
            v = 0.5 * (1.0 - np.cos(np.pi * r))
        else:
            return self.floor ** (1.0 - r)
        return self.floor + (1.0 - self.floor) * v

    def breakpoints(self, T):
        W = self.warmup * T
        return super().breakpoints(T) + [W + (1.0 - self.decay_fraction) * (T - W)]


@dataclass(frozen=True)
class Polynomial(Schedule):
    """Polynomial decay: (1 - u)^delta."""

    delta: float = 1.0
    PARAMS: ClassVar[dict[str, Param]] = {"delta": Param(0.05, 10.0, "log")}

    def _decay(self, u, t, T):
        return (1.0 - u) ** self.delta


@dataclass(frozen=True)
class PowerLaw(Schedule):
    """Power law c (t + 1)^(-chi) in the model's own time units (t counted from the warmup's end)."""

    chi: float = 0.5
    PARAMS: ClassVar[dict[str, Param]] = {"chi": Param(0.0, 3.0)}

    def _decay(self, u, t, T):
        return (t + 1.0) ** (-self.chi)


def _two_point_knots(s: TwoPointLinear) -> tuple[np.ndarray, np.ndarray]:
    x0 = s.x0
    x1 = x0 + s.dx1 * (1.0 - x0)
    x2 = x1 + s.dx2 * (1.0 - x1)
    y1 = s.y1
    return np.array([0.0, x0, x1, x2, 1.0]), np.array([0.0, 1.0, y1, s.dy2 * y1, 0.0])


def _strict(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots with coinciding abscissae merged (the later value wins), so interpolation is defined."""
    keep = np.append(np.diff(x) > 1e-12, True)
    return x[keep], y[keep]


@dataclass(frozen=True)
class TwoPointLinear(Schedule):
    """Linear warmup to (x0, 1), then straight lines through (x1, y1), (x2, y2) down to (1, 0)."""

    x0: float = 0.0
    dx1: float = 0.5
    y1: float = 0.5
    dx2: float = 0.5
    dy2: float = 0.5
    PARAMS: ClassVar[dict[str, Param]] = {k: Param(0.0, 1.0) for k in ("x0", "dx1", "y1", "dx2", "dy2")}
    OWN_WARMUP: ClassVar[bool] = True

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = _two_point_knots(self)
        if self.x0 == 0.0:
            x, y = x[1:], y[1:]
        return _strict(x, y)

    def _decay(self, s, t, T):
        x, y = self.knots()
        return np.interp(s, x, y)

    def breakpoints(self, T):
        return [float(v) * T for v in self.knots()[0][1:-1]]


@dataclass(frozen=True)
class TwoPointSpline(TwoPointLinear):
    """The two-point knots joined by a monotone cubic (PCHIP): non-increasing after x0."""

    def _decay(self, s, t, T):
        from scipy.interpolate import PchipInterpolator
        x, y = self.knots()
        if x.size < 2:
            return np.ones_like(s)
        return PchipInterpolator(x, y)(np.clip(s, x[0], x[-1]))

    def breakpoints(self, T):
        return [float(self.x0) * T] if self.x0 else []


@dataclass(frozen=True)
class SmoothSpline(Schedule):
    """Non-monotonic PCHIP through (0, y_start), (x1, y1), (x2, y2), (x_peak, 1), (1, y_end)."""

    y_start: float = 0.0
    a1: float = 0.5
    y1: float = 0.5
    a2: float = 0.5
    y2: float = 0.75
    x_peak: float = 0.1
    y_end: float = 0.0
    PARAMS: ClassVar[dict[str, Param]] = {k: Param(0.0, 1.0) for k in
                                           ("y_start", "a1", "y1", "a2", "y2", "x_peak", "y_end")}
    OWN_WARMUP: ClassVar[bool] = True

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        xp = self.x_peak
        x1 = self.a1 * xp
        x2 = x1 + self.a2 * (xp - x1)
        x = np.array([0.0, x1, x2, xp, 1.0])
        y = np.array([self.y_start, self.y1, self.y2, 1.0, self.y_end])
        xs, ys = _strict(x, y)
        if not np.any(ys == 1.0):       # the peak knot was merged away: keep it
            xs, ys = _strict(np.array([0.0, xp, 1.0]), np.array([self.y_start, 1.0, self.y_end]))
        return xs, ys

    def _decay(self, s, t, T):
        from scipy.interpolate import PchipInterpolator
        x, y = self.knots()
        return PchipInterpolator(x, y)(np.clip(s, 0.0, 1.0))


#: Every family by its name (``"cosine"``, ``"wsd"``, ...).
FAMILIES: dict[str, type[Schedule]] = {_family_name(c): c for c in (
    Constant, Cosine, SquareRoot, Rex, WSD, Polynomial, PowerLaw, TwoPointLinear, TwoPointSpline, SmoothSpline)}


def family(name: str) -> type[Schedule]:
    """A schedule family by name; an unknown name is a ValueError listing the known ones."""
    key = name.lower().replace("-", "_")
    if key not in FAMILIES:
        raise ValueError(f"schedule family {name!r}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[key]
