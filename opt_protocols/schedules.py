"""Learning-rate schedule families: ``base_lr * shape(t)`` with peak shape 1 ([NS26]; docs/models.md, section 7).

Every schedule is a small frozen dataclass holding its base learning rate, its shape parameters
and an optional warmup. Shape and base LR are separate axes: ``shape(t, T)`` has maximum 1 and
``schedule(t, T) = base_lr * shape(t, T)``. With ``W = warmup * T`` warmup time and
``u = (t - W)/(T - W)`` in [0, 1) the decay families are (``a``, ``p``, ... their parameters):

=================  ===========================================================================
``Constant``        1
``Cosine``          (1 - a) ((1 + cos(pi u))/2)^p + a          (a: final fraction, p: sharpness)
``SquareRoot``      (1 - u^2)^(a/2)
``Rex``             (1 - u)/(1 - u (1 - beta))                   (generalized REX; beta = 1/2 is REX)
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

Limits at the edges of the parameter boxes are part of the families: geometric WSD decay with
``floor = 0`` is the pointwise limit floor -> 0 (a drop to 0 where the decay starts); two-point
knots that coincide (``dx1 = 0`` or ``dx2 = 0``) make a jump, and at a jump the schedule takes the
value before it (left-continuous), so the peak 1 is reached at x0. Coinciding knots of the
smooth spline are merged (the peak knot is kept).

A schedule is a protocol: pass it to :func:`opt_protocols.simulate` (``{"eta": Cosine(0.5)}`` or the
schedule alone for the model's first control) or as a baseline of :func:`opt_protocols.solve`.
For discrete maps step ``k`` uses ``schedule(k, T)``; for ODEs it is tabulated piecewise linearly
on :data:`SAMPLES` segments plus its breakpoints. ``PARAMS`` lists each shape parameter's bounds
and scale for searches (:mod:`opt_protocols.search`). :func:`parse` reads the text form used on
the command line, ``"wsd:decay_fraction=0.2,floor=0.1"``; :meth:`Schedule.to_spec` writes it.
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
#: Knots closer than this (in units of the horizon) coincide.
KNOT_TOL = 1e-12
#: Parameters this close to a bound (relative to the bounds' size) are taken as the bound (rounding).
BOUND_RTOL = 1e-12
#: Offset (in units of the horizon) at which the right limit of a jump is evaluated for tabulation.
JUMP_EPS = 1e-12


@dataclass(frozen=True)
class Param:
    """Bounds of a shape parameter and the scale to search it on (``"linear"`` or ``"log"``)."""

    lo: float
    hi: float
    scale: str = "linear"

    def sample(self, rng: np.random.Generator) -> float:
        """A uniform (``"linear"``) or log-uniform (``"log"``) draw from [lo, hi]."""
        return self.from_unit(float(rng.uniform()))

    def to_unit(self, v: float) -> float:
        """The position of ``v`` in [lo, hi] on this parameter's scale, in [0, 1]."""
        if self.hi == self.lo:
            return 0.0
        if self.scale == "log":
            return (math.log(v) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def from_unit(self, z: float) -> float:
        """Inverse of :meth:`to_unit` (``z`` clipped to [0, 1]); the bounds are returned exactly."""
        z = min(max(float(z), 0.0), 1.0)
        if z == 0.0 or z == 1.0:
            return float(self.lo if z == 0.0 else self.hi)
        if self.scale == "log":
            return float(math.exp(math.log(self.lo) + z * (math.log(self.hi) - math.log(self.lo))))
        return float(self.lo + z * (self.hi - self.lo))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(float(v))


@dataclass(frozen=True)
class Schedule:
    """Base class: ``base_lr * shape(t, T)``; subclasses define :meth:`_decay` and ``PARAMS``."""

    base_lr: float = 1.0
    warmup: float = 0.0
    warmup_shape: str = "linear"

    PARAMS: ClassVar[dict[str, Param]] = {}
    OWN_WARMUP: ClassVar[bool] = False

    def __post_init__(self):
        name = self.family
        if not (_is_number(self.base_lr) and self.base_lr >= 0):
            raise ValueError(f"{name}: base_lr = {self.base_lr!r}: expected a number >= 0")
        if not (_is_number(self.warmup) and 0.0 <= self.warmup < 1.0):
            raise ValueError(f"{name}: warmup = {self.warmup!r}: expected a fraction of the horizon in [0, 1)")
        if self.OWN_WARMUP and self.warmup:
            raise ValueError(f"{name}: warmup = {self.warmup!r}: this family carries its own warmup; expected 0")
        if self.warmup_shape not in WARMUPS:
            raise ValueError(f"{name}: warmup_shape = {self.warmup_shape!r}: expected one of {', '.join(WARMUPS)}")
        for key, spec in self.PARAMS.items():
            v = getattr(self, key)
            tol = BOUND_RTOL * max(1.0, abs(spec.lo), abs(spec.hi))
            if not (_is_number(v) and spec.lo - tol <= v <= spec.hi + tol):
                raise ValueError(f"{name}: {key} = {v!r} is out of range: expected a number in [{spec.lo}, {spec.hi}]")
            if not spec.lo <= v <= spec.hi:      # a bound missed by rounding (e.g. exp(log(hi))): the bound
                object.__setattr__(self, key, float(min(max(v, spec.lo), spec.hi)))

    # ---- parameters ---------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """The family's name (``"cosine"``, ``"wsd"``, ...), as in :data:`FAMILIES`."""
        return _family_name(type(self))

    def params(self) -> dict[str, Any]:
        """All fields (base_lr, warmup, shape parameters, options) as a dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def shape_params(self) -> dict[str, float]:
        """The shape parameters of :data:`PARAMS` (the axes of a shape search)."""
        return {k: float(getattr(self, k)) for k in self.PARAMS}

    def replace(self, **changes: Any) -> Schedule:
        """A copy with some fields changed (validated like a new schedule)."""
        return dataclasses.replace(self, **changes)

    def to_spec(self) -> str:
        """The text form read by :func:`parse`: the family name and every field that differs from
        its default, e.g. ``"wsd:base_lr=0.5,decay_fraction=0.1"``."""
        parts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "base_lr" or v != f.default:
                parts.append(f"{f.name}={v}" if isinstance(v, str) else f"{f.name}={float(v)!r}")
        return self.family + (":" + ",".join(parts) if parts else "")

    # ---- evaluation ---------------------------------------------------------------------------
    def shape(self, t: np.ndarray | float, T: float) -> np.ndarray:
        """The shape (peak 1) at times ``t`` of a horizon ``T``."""
        t = np.asarray(t, dtype=float)
        T = float(T)
        if not T > 0:
            raise ValueError(f"{self.family}: horizon T = {T!r}: expected a positive number")
        if self.OWN_WARMUP:
            return np.clip(self._decay(np.clip(t / T, 0.0, 1.0), t, T), 0.0, 1.0)
        W = self.warmup * T
        u = np.clip((t - W) / (T - W), 0.0, 1.0)
        out = self._decay(u, np.maximum(t - W, 0.0), T - W)
        if W > 0:
            r = np.clip(t / W, 0.0, 1.0)
            warm = {"linear": r, "cosine": 0.5 * (1.0 - np.cos(np.pi * r)),
                    "exponential": EXP_WARMUP_START ** (1.0 - r), "polynomial": r * r}[self.warmup_shape]
            zero = np.zeros_like(t)
            out = np.where(t < W, warm * self._decay(zero, zero, T - W), out)
        return np.clip(out, 0.0, 1.0)

    def __call__(self, t: np.ndarray | float, T: float) -> np.ndarray:
        """The learning rate ``base_lr * shape(t, T)``."""
        return self.base_lr * self.shape(t, T)

    def _decay(self, u: np.ndarray, t: np.ndarray, T: float) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def breakpoints(self, T: float) -> list[float]:
        """Times where the schedule has a kink or a jump (kept as knots when tabulated)."""
        return [self.warmup * T] if self.warmup else []

    def jumps(self, T: float) -> list[float]:
        """Times where the schedule jumps (a subset of :meth:`breakpoints`; none by default)."""
        return []

    def tabulate(self, t0: float, t_final: float, discrete: bool = False, samples: int | None = None):
        """``(tk, u0, u1)`` for :mod:`opt_protocols.protocol`: per step for maps; for ODEs piecewise
        linear between ``samples`` + 1 points (default :data:`SAMPLES`) and the breakpoints, a jump
        kept as a jump."""
        T = float(t_final)
        if discrete:
            tk = np.arange(0.0, round(T) + 1.0)
            v = self(tk[:-1], T)
            return tk, v, v.copy()
        n = SAMPLES if samples is None else int(samples)
        tk = np.unique(np.concatenate([np.linspace(t0, T, n + 1),
                                       [b for b in self.breakpoints(T) if t0 < b < T]]))
        v = self(tk, T)
        u0, u1 = v[:-1].copy(), v[1:].copy()
        for b in self.jumps(T):         # the segment starting at a jump starts at the right limit
            i = np.searchsorted(tk, b)
            if i < tk.size - 1 and tk[i] == b:
                u0[i] = self(b + JUMP_EPS * T, T)
        return tk, u0, u1


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
        return (1.0 - self.a) * np.maximum(0.5 * (1.0 + np.cos(np.pi * u)), 0.0) ** self.p + self.a


@dataclass(frozen=True)
class SquareRoot(Schedule):
    """Square root: (1 - u^2)^(a/2)."""

    a: float = 1.0
    PARAMS: ClassVar[dict[str, Param]] = {"a": Param(0.05, 10.0, "log")}

    def _decay(self, u, t, T):
        return np.maximum(1.0 - u * u, 0.0) ** (0.5 * self.a)


@dataclass(frozen=True)
class Rex(Schedule):
    """Generalized REX: (1 - u)/(1 - u(1 - beta)); beta = 1 is linear decay, beta = 1/2 REX."""

    beta: float = 1.0
    PARAMS: ClassVar[dict[str, Param]] = {"beta": Param(1e-3, 10.0, "log")}

    def _decay(self, u, t, T):
        return (1.0 - u) / (1.0 - u * (1.0 - self.beta))


WSD_DECAYS = ("linear", "cosine", "geometric")


@dataclass(frozen=True)
class WSD(Schedule):
    """Warmup-stable-decay: 1 until the last ``decay_fraction`` of the (post-warmup) steps, then a
    ``decay`` to ``floor`` at the end: "linear", "cosine" ((1 - cos)/2 ramp) or "geometric"
    (log-linear, floor^(1 - r); floor = 0 is its limit, a drop to 0 where the decay starts)."""

    decay_fraction: float = 0.2
    floor: float = 0.0
    decay: str = "linear"
    PARAMS: ClassVar[dict[str, Param]] = {"decay_fraction": Param(1e-4, 1.0), "floor": Param(0.0, 1.0)}

    def __post_init__(self):
        super().__post_init__()
        if self.decay not in WSD_DECAYS:
            raise ValueError(f"wsd: decay = {self.decay!r}: expected one of {', '.join(WSD_DECAYS)}")

    def _decay(self, u, t, T):
        r = np.clip((1.0 - u) / self.decay_fraction, 0.0, 1.0)   # 1 before the decay, 0 at the end
        r = np.where(r > 1.0 - KNOT_TOL, 1.0, r)                  # the decay's start, up to rounding
        if self.decay == "geometric":
            return self.floor ** (1.0 - r)
        v = r if self.decay == "linear" else 0.5 * (1.0 - np.cos(np.pi * r))
        return self.floor + (1.0 - self.floor) * v

    def breakpoints(self, T):
        W = self.warmup * T
        return super().breakpoints(T) + [W + (1.0 - self.decay_fraction) * (T - W)]

    def jumps(self, T):
        return self.breakpoints(T)[-1:] if self.decay == "geometric" and self.floor == 0.0 else []


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


def _piecewise_linear(s: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear interpolation through knots with non-decreasing ``x``; coinciding abscissae make a
    jump, where the value is the one before it (left-continuous)."""
    i = np.clip(np.searchsorted(x, s, side="left"), 1, x.size - 1)
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    width = x1 - x0
    theta = np.where(width > 0, (s - x0) / np.where(width > 0, width, 1.0), 1.0)
    out = y0 + np.clip(theta, 0.0, 1.0) * (y1 - y0)
    return np.where(s <= x[0], y[0], out)


def _pchip_with_jumps(s: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """PCHIP through knots with non-decreasing ``x``, one interpolant per run of distinct abscissae;
    coinciding abscissae make a jump, where the value is the one before it (left-continuous)."""
    from scipy.interpolate import PchipInterpolator
    cuts = np.nonzero(np.diff(x) <= KNOT_TOL)[0] + 1
    pieces = list(zip(np.split(x, cuts), np.split(y, cuts)))
    which = np.searchsorted(np.array([px[-1] for px, _ in pieces[:-1]]), s, side="left")
    out = np.empty_like(s)
    for k, (px, py) in enumerate(pieces):
        sel = which == k
        if px.size == 1:
            out[sel] = py[0]
        else:
            out[sel] = PchipInterpolator(px, py)(np.clip(s[sel], px[0], px[-1]))
    return out


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
        """Abscissae (fractions of the horizon, non-decreasing) and values of the knots."""
        x0 = self.x0
        x1 = x0 + self.dx1 * (1.0 - x0)
        x2 = x1 + self.dx2 * (1.0 - x1)
        x = np.array([0.0, x0, x1, x2, 1.0])
        y = np.array([0.0, 1.0, self.y1, self.dy2 * self.y1, 0.0])
        return (x[1:], y[1:]) if x0 == 0.0 else (x, y)

    def _decay(self, s, t, T):
        return _piecewise_linear(s, *self.knots())

    def breakpoints(self, T):
        return [float(v) * T for v in self.knots()[0][1:-1]]

    def jumps(self, T):
        x = self.knots()[0]
        return sorted({float(a) * T for a, b in zip(x[:-1], x[1:]) if b - a <= KNOT_TOL and a < 1.0})


@dataclass(frozen=True)
class TwoPointSpline(TwoPointLinear):
    """The two-point knots joined by a monotone cubic (PCHIP) after the linear warmup on [0, x0]:
    non-increasing after x0 (a jump where knots coincide, as for :class:`TwoPointLinear`)."""

    def _decay(self, s, t, T):
        x, y = self.knots()
        if self.x0 == 0.0:
            return _pchip_with_jumps(s, x, y)
        return np.where(s <= self.x0, s / self.x0, _pchip_with_jumps(s, x[1:], y[1:]))

    def breakpoints(self, T):
        return sorted(set(([float(self.x0) * T] if self.x0 else []) + self.jumps(T)))


@dataclass(frozen=True)
class SmoothSpline(Schedule):
    """Non-monotonic PCHIP through (0, y_start), (x1, y1), (x2, y2), (x_peak, 1), (1, y_end), with
    x1 = a1 x_peak and x2 = x1 + a2 (x_peak - x1). PCHIP does not overshoot its data, so the peak is
    1, at x_peak. Coinciding knots are merged, keeping the peak knot (else the later one)."""

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
        """Distinct abscissae (increasing) and values of the knots; the peak knot always kept."""
        xp = self.x_peak
        x1 = self.a1 * xp
        x2 = x1 + self.a2 * (xp - x1)
        x = [0.0, x1, x2, xp, 1.0]
        y = [self.y_start, self.y1, self.y2, 1.0, self.y_end]
        peak = [False, False, False, True, False]
        xs, ys, ps = [x[0]], [y[0]], [peak[0]]
        for xi, yi, pi in zip(x[1:], y[1:], peak[1:]):
            if xi - xs[-1] <= KNOT_TOL:       # coincides with the previous knot: merge
                if not ps[-1]:
                    ys[-1], ps[-1] = yi, pi
            else:
                xs.append(xi)
                ys.append(yi)
                ps.append(pi)
        return np.array(xs), np.array(ys)

    def _decay(self, s, t, T):
        from scipy.interpolate import PchipInterpolator
        x, y = self.knots()
        if x.size == 1:
            return np.full_like(s, y[0])
        return PchipInterpolator(x, y)(np.clip(s, x[0], x[-1]))


#: Every family by its name (``"cosine"``, ``"wsd"``, ...).
FAMILIES: dict[str, type[Schedule]] = {_family_name(c): c for c in (
    Constant, Cosine, SquareRoot, Rex, WSD, Polynomial, PowerLaw, TwoPointLinear, TwoPointSpline, SmoothSpline)}


def family(name: str) -> type[Schedule]:
    """A schedule family by name; an unknown name is a ValueError listing the known ones."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in FAMILIES:
        raise ValueError(f"schedule family {name!r}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[key]


def parse_spec(text: str) -> tuple[type[Schedule], dict[str, Any]]:
    """The family and the fields given in a text form ``"name"`` or ``"name:key=value,key=value"``.

    Values are converted to the field's type (numbers, or text for ``decay`` and ``warmup_shape``);
    an unknown key or a value that is not a number is a one-line ValueError. The fields are not yet
    validated together (see :func:`parse`); a caller that fits the missing ones (e.g. the base LR
    of a family baseline) passes them on as fixed values.
    """
    name, _, rest = str(text).partition(":")
    cls = family(name)
    kinds = {f.name: f.type for f in dataclasses.fields(cls)}
    given: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise ValueError(f"schedule {text!r}: {item!r}: expected key=value")
        if key not in kinds:
            raise ValueError(f"schedule {text!r}: {cls.__name__} has no parameter {key!r}; "
                             f"parameters: {', '.join(kinds)}")
        if key in given:
            raise ValueError(f"schedule {text!r}: parameter {key!r} given twice")
        if kinds[key] in ("str", str):
            given[key] = value
        else:
            try:
                given[key] = float(value)
            except ValueError:
                raise ValueError(f"schedule {text!r}: {key} = {value!r}: expected a number") from None
    return cls, given


def parse(text: str) -> Schedule:
    """A schedule from its text form, e.g. ``parse("cosine")``, ``parse("wsd:decay_fraction=0.2,floor=0.1")``,
    ``parse("cosine:base_lr=0.5,warmup=0.05,a=0.1")``; fields not given keep their defaults."""
    cls, given = parse_spec(text)
    return cls(**given)
