"""The published reference setups and numbers of the built-in models (docs/models.md, sections 1-6).

Tests, results scripts and benchmarks take their reference problems and the numbers they must
reproduce from here, so that every copy is the same one. A :class:`Setup` holds

* the model and its parameters (:meth:`Setup.model`) and the initial state (:meth:`Setup.x0`);
* the optimal-control problem as keyword arguments of :func:`opt_protocols.solve`
  (:meth:`Setup.problem`, :meth:`Setup.solve_kwargs`; empty for a setup that is only a simulation);
* the source's named protocols (:meth:`Setup.protocol`), e.g. the curriculum baselines;
* the published values (:class:`Published`: the number as printed, what it is, the convention it
  belongs to and its source). Keys: a protocol or baseline name for its objective (``"default"``,
  ``"best_constant"``, ``"optimal"``, ...), ``"<name>.<parameter>"`` for a parameter of it
  (``"best_constant.r"``), a state name for a state value.

Every container is read-only; the methods hand out fresh copies (numpy arrays for protocols).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from . import schedules

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model
    from .solution import Solution
    from .trajectory import Trajectory

def _freeze(v: Any) -> Any:
    """Read-only copy: mappings -> MappingProxyType, arrays and lists -> (nested) tuples."""
    if isinstance(v, Mapping):
        return MappingProxyType({k: _freeze(x) for k, x in v.items()})
    if isinstance(v, np.ndarray):
        return _freeze(v.tolist())
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


def _array(v: Any) -> Any:
    """A frozen value as the solver wants it: numeric tuples -> float arrays, mappings -> dicts."""
    if isinstance(v, Mapping):
        return {k: _array(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return np.array(v, dtype=float)
    return v


def _protocol_spec(v: Any) -> Any:
    """A frozen protocol specification: (grid, values) pairs -> a tuple of two arrays."""
    if isinstance(v, Mapping):
        return {k: _protocol_spec(x) for k, x in v.items()}
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, tuple) for x in v):
        return tuple(np.array(x, dtype=float) for x in v)
    return _array(v)


@dataclass(frozen=True)
class Published:
    """A published number: ``text`` as printed (its last digit sets the precision), ``what`` it is,
    the ``convention`` it belongs to and its ``source``."""

    text: str
    what: str
    convention: str
    source: str

    @property
    def value(self) -> float:
        return float(self.text)

    @property
    def half_unit(self) -> float:
        """Half a unit of the last printed digit: a number 'reproduces' this one within it."""
        decimals = len(self.text.split(".")[1]) if "." in self.text else 0
        return 0.5 * 10.0 ** (-decimals)

    def matches(self, x: float) -> bool:
        """Whether ``x`` rounds to the printed number (half a unit of its last digit, plus rounding)."""
        return abs(float(x) - self.value) <= self.half_unit * (1.0 + 1e-9)


@dataclass(frozen=True, kw_only=True)
class Setup:
    """A published reference setup: model, problem, the source's protocols and published values.

    ``params``: model parameters; ``initial``: overrides of the model's initial state (keywords
    of ``Model.initial_state``, e.g. ``Q``, ``R``); ``t_final``: the horizon in the model's time.
    Problem (keywords of :func:`opt_protocols.solve`): ``controls`` with bounds, ``fixed``,
    ``static``, ``budgets`` (dicts ``{"control", "mean"}``) and the published number of
    ``intervals``. ``protocols``: the source's named protocols; those named like a baseline the
    framework computes itself (``best_constant``, ``default``, a schedule family) are not passed
    to ``op.solve`` (the published value checks the framework's fit). ``value_factor``: published
    loss values are ``value_factor`` times the model's loss (0.5 for [FSL25]'s excess risk).
    """

    name: str
    model_name: str
    section: int
    source: str
    t_final: float
    params: Mapping[str, Any] = field(default_factory=dict)
    initial: Mapping[str, Any] = field(default_factory=dict)
    controls: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    static: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    budgets: tuple[Mapping[str, Any], ...] = ()
    intervals: int | None = None
    protocols: Mapping[str, Any] = field(default_factory=dict)
    published: Mapping[str, Published] = field(default_factory=dict)
    value_factor: float = 1.0
    notes: str = ""

    def __post_init__(self):
        for name in ("params", "initial", "controls", "fixed", "static", "budgets", "protocols"):
            object.__setattr__(self, name, _freeze(getattr(self, name)))
        object.__setattr__(self, "published", MappingProxyType(dict(self.published)))

    # ---- model ----------------------------------------------------------------------------------
    def model_params(self, **overrides: Any) -> dict[str, Any]:
        """The model parameters (arrays as numpy arrays), with ``overrides``."""
        return {**_array(dict(self.params)), **overrides}

    def model(self, **overrides: Any) -> Model:
        """The model with this setup's parameters (``overrides`` replace some of them)."""
        from .model import load_model
        return load_model(self.model_name, **self.model_params(**overrides))

    def x0(self, model: Model | None = None) -> np.ndarray:
        """The initial state (of ``model``, default: :meth:`model`)."""
        model = self.model() if model is None else model
        return model.initial_state(**_array(dict(self.initial)))

    # ---- problem --------------------------------------------------------------------------------
    @property
    def is_problem(self) -> bool:
        """Whether the setup states an optimal-control problem (else only simulations)."""
        return bool(self.controls)

    def problem(self, model: Model | None = None) -> dict[str, Any]:
        """Problem keywords of :func:`opt_protocols.solve` / ``make_problem``: t_final, x0,
        controls, fixed, static, budgets (fresh copies)."""
        if not self.is_problem:
            raise ValueError(f"reference {self.name!r} states no optimal-control problem (only simulations)")
        return {"t_final": self.t_final, "x0": self.x0(model),
                "controls": {k: tuple(v) for k, v in self.controls.items()}, "fixed": dict(self.fixed),
                "static": {k: tuple(v) for k, v in self.static.items()}, "budgets": [dict(b) for b in self.budgets]}

    def given_baselines(self) -> dict[str, Any]:
        """The source's protocols that ``op.solve`` should evaluate as named baselines."""
        computed = {"best_constant", "default", *schedules.FAMILIES}
        return {k: self.protocol(k) for k in self.protocols if k not in computed}

    def solve_kwargs(self, model: Model | None = None, **overrides: Any) -> dict[str, Any]:
        """Keywords of :func:`opt_protocols.solve` for the published problem: :meth:`problem`, the
        published ``intervals`` and the source's baselines; ``overrides`` replace or add keywords
        (``baselines`` given there are added to the source's)."""
        kw: dict[str, Any] = {**self.problem(model), "intervals": self.intervals, "baselines": self.given_baselines()}
        extra = overrides.pop("baselines", None)
        if extra:
            kw["baselines"] = {**kw["baselines"], **extra}
        kw.update(overrides)
        return kw

    def solve(self, model: Model | None = None, **overrides: Any) -> Solution:
        """``op.solve`` of the published problem (see :meth:`solve_kwargs`)."""
        from .control.solve import solve
        model = self.model() if model is None else model
        return solve(model, **self.solve_kwargs(model, **overrides))

    # ---- protocols and values ---------------------------------------------------------------------
    def protocol(self, name: str) -> Any:
        """The source's protocol ``name`` as a fresh protocol specification."""
        if name not in self.protocols:
            raise ValueError(f"reference {self.name!r} has no protocol {name!r}; protocols: "
                             f"{', '.join(self.protocols) or 'none'}")
        return _protocol_spec(self.protocols[name])

    def simulate(self, name: str, model: Model | None = None, **kwargs: Any) -> Trajectory:
        """Simulate the source's protocol ``name`` from :meth:`x0` over ``t_final`` (``kwargs`` go to
        :func:`opt_protocols.simulate`, default 2 output points at rtol 1e-10)."""
        from .simulate import simulate
        model = self.model() if model is None else model
        kwargs = {"n_out": 2, "rtol": 1e-10, "atol": 1e-12, **kwargs}
        return simulate(model, self.x0(model), self.protocol(name), self.t_final, **kwargs)

    def value(self, key: str) -> float:
        """A published value as a float."""
        return self[key].value

    def __getitem__(self, key: str) -> Published:
        if key not in self.published:
            raise KeyError(f"reference {self.name!r} has no published value {key!r}; "
                           f"values: {', '.join(self.published)}")
        return self.published[key]


def _values(source: str, convention: str, entries: Mapping[str, tuple[str, str]]) -> dict[str, Published]:
    return {k: Published(text, what, convention, source) for k, (text, what) in entries.items()}


# ---- 1. soft committee machine: adaptive dropout [MM25] ------------------------------------------

_SRC_1 = "docs/models.md, section 1 [MM25]"
_EG_FULL = ("eg(alpha_F) of the committee machine with the test output rescaled by p_test, exact ODE "
            "(adaptive integration); the full eg (the authors' notebook minimises half of it)")
_COMMITTEE_21 = {"K": 2, "M": 1, "sigma": 0.2, "T": [[1.0]], "v": [1.0, 1.0], "v_teacher": [1.0]}
_ZERO_OVERLAPS = {"Q": np.zeros((2, 2)), "R": np.zeros((2, 1))}

#: Adaptive dropout: r(alpha) in [0, 1] on 50 intervals and a static test-time scale p_test.
DROPOUT = Setup(
    name="dropout", model_name="committee", section=1, source=_SRC_1, t_final=5.0,
    params=_COMMITTEE_21, initial=_ZERO_OVERLAPS, controls={"r": (0.0, 1.0)}, fixed={"eta": 1.0},
    static={"p_test": (0.0, 1.0)}, intervals=50,
    published=_values(_SRC_1, _EG_FULL, {
        "default": ("0.0348562", "no dropout, r = p_test = 1"),
        "best_constant": ("0.0252980", "best constant r with a free p_test"),
        "best_constant.r": ("0.74148", "r of the best constant with a free p_test"),
        "best_constant.p_test": ("0.76722", "p_test of the best constant with a free p_test"),
        "best_constant_ptest_eq_r": ("0.0253333", "best constant r with p_test = r"),
        "best_constant_ptest_eq_r.r": ("0.76639", "r (= p_test) of the best constant with p_test = r"),
    }),
    notes="The published optimum keeps r = 1 early, then lowers r smoothly; it beats every constant r.")

#: The dropout ODE over alpha in [0, 0.1] at r = 0.1: the states printed by the source.
DROPOUT_ONE_INTERVAL = Setup(
    name="dropout_one_interval", model_name="committee", section=1, source=_SRC_1, t_final=0.1,
    params=_COMMITTEE_21, initial=_ZERO_OVERLAPS, protocols={"r0.1": {"eta": 1.0, "r": 0.1}},
    published=_values(_SRC_1, "states after alpha = 0.1 as printed by the source: a first-order (Euler-like) "
                              "integration; the exact ODE solution differs by a few units of the last digit", {
                                  "Q[0,0]": ("0.00237012", "Q[0,0](0.1)"),
                                  "Q[0,1]": ("0.000252981", "Q[0,1](0.1)"),
                                  "R[0,0]": ("0.00448323", "R[0,0](0.1)"),
                              }))

# ---- 2. curriculum [MM25] -------------------------------------------------------------------------

_SRC_2 = "docs/models.md, section 2 [MM25]"
_EXACT_2 = "test error eg(alpha_F) on the p1 = 0.5 mixture, exact ODE (adaptive integration)"
_EULER_2 = ("the authors' explicit Euler map (dt = 0.05, eg weight 120/241, 119 effective easy steps), "
            "found by a Pontryagin sweep: not the exact-ODE optimum")

#: Easy/hard curriculum for the perceptron: u(alpha) in [0, 1] under mean(u) = p1.
CURRICULUM = Setup(
    name="curriculum", model_name="curriculum", section=2, source=_SRC_2, t_final=12.0,
    params={"T": 2.0, "Delta1": 0.0, "Delta2": 2.0, "p1": 0.5, "lam": 0.0, "eta": 3.0,
            "Q11_0": 1.0, "Q22_0": 1.0, "M_0": 0.0},
    controls={"u": (0.0, 1.0)}, fixed={"eta": 3.0}, budgets=({"control": "u", "mean": 0.5},), intervals=240,
    protocols={
        "curriculum": {"u": ((0.0, 6.0, 12.0), (1.0, 0.0))},
        "anti_curriculum": {"u": ((0.0, 6.0, 12.0), (0.0, 1.0))},
        "alternation": {"u": np.tile([1.0, 0.0], 120)},   # 240 intervals of width 0.05, easy first
        "best_constant": {"u": 0.5},                       # the budget holds a constant u at its mean
    },
    published={**_values(_SRC_2, _EXACT_2, {
        "curriculum": ("0.1558618", "easy on [0, 6], then hard"),
        "anti_curriculum": ("0.1628201", "hard on [0, 6], then easy"),
        "alternation": ("0.1527166", "easy and hard alternating on 240 intervals, easy first"),
        "best_constant": ("0.1527775", "constant u = 0.5 (the best constant under the budget)"),
    }), "optimal_euler_map": Published("0.14668", "published optimum", _EULER_2, _SRC_2)},
    notes="Published optimum: easy until alpha ~ 2.75, mostly hard, easy again from alpha ~ 9.05.")

# ---- 3. denoising autoencoder [MM25] --------------------------------------------------------------

_SRC_3 = "docs/models.md, section 3 [MM25]"
_DAE_LOSS = "test MSE at D_F at tau_F = 4, limit (N -> infinity) equations, the source's loss expression"
_DAE_PARAMS = {"C": 2, "K": 2, "N": 1000, "eta": 5.0, "s": 0.1, "priors": [0.5, 0.5], "b0": 0.0,
               "Q0": [[0.25, 0.0], [0.0, 0.25]], "M0": [[0.1165, 0.0289], [-0.0052, 0.1039]],
               "S": [[0.9471, 0.0313], [0.0313, 0.9900]], "finite_n": False, "loss_exact": False}
_DAE_CONSTANT = {0.1: "8.886888", 0.3: "9.519856"}
#: The test noise levels of the published DAE problems.
DAE_TEST_NOISE = tuple(_DAE_CONSTANT)


def dae(D_F: float) -> Setup:
    """DAE noise schedule at test noise ``D_F`` (0.1 or 0.3): D(tau) in [0.01, 0.99] on 399 intervals."""
    if D_F not in _DAE_CONSTANT:
        raise ValueError(f"D_F = {D_F!r}: the published DAE setups have D_F in {DAE_TEST_NOISE}")
    notes = ("The optimum improves on constant D = D_F"
             + ("; it starts high (~0.76), falls to ~0.015 near alpha ~ 0.53 and ends slightly up." if D_F == 0.3
                else "."))
    return Setup(name=f"dae_DF{D_F}", model_name="dae", section=3, source=_SRC_3, t_final=4.0,
                 params={**_DAE_PARAMS, "D_F": D_F}, controls={"D": (0.01, 0.99)}, intervals=399,
                 protocols={"constant_D_F": {"D": D_F}},
                 published=_values(_SRC_3, _DAE_LOSS, {"constant_D_F": (_DAE_CONSTANT[D_F], "constant D = D_F")}),
                 notes=notes)


# ---- 5. power-law random features [BM26] -----------------------------------------------------------

_SRC_5 = "docs/models.md, section 5 [BM26]"
_RF_LOSS = "L(T) of the exact discrete recursion, excess loss over the N kept modes (no tail)"

#: (a, b, sigma, m, N, T) = (2, 2, 0.5, 5, 500, 100), eta in [0, 2] on 100 blocks.
BM26 = Setup(
    name="bm26", model_name="random_features", section=5, source=_SRC_5, t_final=100,
    params={"a": 2.0, "b": 2.0, "sigma": 0.5, "batch": 5.0, "N": 500, "momentum": False, "tail": False},
    controls={"eta": (0.0, 2.0)}, intervals=100,
    protocols={
        "eta_1": {"eta": 1.0},
        "best_constant": {"eta": 0.46977},
        # step t = 0, 1, ... uses 1.863 (t + 1)^(-0.3517): c t^(-chi) with t counted from 1
        "power_law": {"eta": schedules.PowerLaw(base_lr=1.863, chi=0.3517)},
    },
    published={**_values(_SRC_5, _RF_LOSS, {
        "optimal": ("0.08136", "optimal eta(t) on 100 blocks (a local optimum of a rugged landscape)"),
        "best_constant": ("0.124404", "the best constant eta"),
        "eta_1": ("0.203689", "constant eta = 1"),
        "power_law": ("0.11069", "the best power law c (t + 1)^(-chi)"),
    }), **_values(_SRC_5, "parameters of the schedules above", {
        "best_constant.eta": ("0.46977", "eta of the best constant"),
        "power_law.base_lr": ("1.863", "c of the best power law"),
        "power_law.chi": ("0.3517", "chi of the best power law"),
    })})

# ---- 6. functional scaling law reference [FSL25] ------------------------------------------------

_SRC_6 = "docs/models.md, section 6 [FSL25]"


#: The [FSL25] schedules on the exact recursion: (s, beta) = (0.5, 4), N = 128, sigma = 3,
#: batch 1, 10^4 steps, peak eta 0.01, no warmup; values are the excess risk E = L/2.
FSL = Setup(
    name="fsl", model_name="random_features", section=6, source=_SRC_6, t_final=10_000,
    # lambda_j = j^(-beta), lambda_j (w*_j)^2 = j^(-(s beta + 1)): a = s beta + 1 = 3, b = beta = 4
    params={"a": 3.0, "b": 4.0, "sigma": 3.0, "batch": 1.0, "N": 128, "momentum": False, "tail": False},
    protocols={
        "constant": {"eta": schedules.Constant(base_lr=0.01)},
        "cosine": {"eta": schedules.Cosine(base_lr=0.01)},                       # 0.01 (1 + cos(pi t/K))/2
        "wsd": {"eta": schedules.WSD(base_lr=0.01, decay_fraction=0.2)},         # 80% stable, linear to 0
    },
    published=_values(_SRC_6, "final excess risk E = L/2 of the exact recursion (step t = 0..K-1 uses eta_t)", {
        "constant": ("0.04037", "constant eta = 0.01"),
        "cosine": ("0.02448", "cosine from 0.01 to 0"),
        "wsd": ("0.02235", "WSD: 0.01 for 80% of the steps, then linear to 0"),
    }),
    value_factor=0.5)


def all_setups() -> dict[str, Setup]:
    """Every reference setup by name."""
    out = [DROPOUT, DROPOUT_ONE_INTERVAL, CURRICULUM, *(dae(d) for d in DAE_TEST_NOISE), BM26, FSL]
    return {s.name: s for s in out}


__all__ = ["Published", "Setup", "DROPOUT", "DROPOUT_ONE_INTERVAL", "CURRICULUM", "DAE_TEST_NOISE", "dae",
           "BM26", "FSL", "all_setups"]
