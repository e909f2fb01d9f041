"""Optimal-control methods as objects: what algorithm turns a :class:`Problem` into a protocol.

A method is chosen by passing an object to :func:`opt_protocols.solve` (as rockit's
``ocp.method(...)`` or diffrax's ``adjoint=``):

* :class:`Collocation`: direct collocation of the ODE (or the map, one element per step) into one
  NLP with exact derivatives, solved by IPOPT (:mod:`.collocation`). Supports everything a
  :class:`~.problem.Problem` can say.
* :class:`Adjoint`: block-constant controls of a discrete map optimised by a quasi-Newton method on
  the exact adjoint gradient (:mod:`.adjoint`, :mod:`opt_protocols.ad`). O(n_x T) work per
  gradient: for maps with thousands of states and 10^5 steps.

``method="auto"`` (the default) picks collocation for ODE models and small maps and the adjoint
for maps whose collocation NLP would hold more than :data:`AUTO_MAP_STATES` state variables
(decided from the problem's size before anything is built); the choice and its reason are kept
in ``Solution.method["chosen"]``.

Every method implements ``check(problem)`` (raise ValueError for what it does not support) and
``run(problem, context) -> MethodResult``; the shared pipeline (:func:`.solve.solve`) does the
rest: model loading, validation, baselines, warm start, verification, statistics, assembly.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..protocol import Protocol
    from ..solution import Baseline
    from .evaluate import Evaluator
    from .problem import Problem

#: ``method="auto"`` uses collocation for a map while n_x * steps is at most this (measured on the
#: random-feature map: collocation 0.9 s at 2,000 state variables, 6.7 s at 5,000 and 31 s at
#: 10,000, where the adjoint takes 0.3 s).
AUTO_MAP_STATES = 2000


@dataclass
class MethodResult:
    """What a method returns to the pipeline (everything else is computed there)."""

    status: str                        # "optimal" | "acceptable" | "failed" | "interrupted"
    return_status: str                 # the optimiser's own message
    objective: float                   # the method's own value of the objective (nan if failed)
    protocol: Protocol               # all model controls, tabulated
    static: dict[str, float]
    t: np.ndarray                      # the method's grid (element / block boundaries)
    x: np.ndarray                      # states on t
    t_controls: np.ndarray             # control interval boundaries
    controls: dict[str, np.ndarray]    # optimised controls per interval (or per boundary)
    control_type: str
    t_final: float                     # the horizon of the optimum (free for time objectives)
    iterations: int
    build_time: float = 0.0
    solve_time: float = 0.0
    n_variables: int = 0
    n_constraints: int = 0
    details: dict[str, Any] = field(default_factory=dict)   # method-specific record (attempts, starts, ...)
    warm: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Context:
    """What the pipeline hands a method: the baselines, the initial guess and the progress sink."""

    baselines: dict[str, Baseline]
    guess: Baseline | None            # protocol + static values to start from (None: a constant guess)
    evaluator: Evaluator
    report: Callable[..., None]
    previous: Any = None                 # a previous Solution given as warm start (or None)


class Method:
    """Base class of the optimal-control methods (see the module docstring)."""

    name: ClassVar[str] = ""

    def settings(self) -> dict[str, Any]:
        """The method's settings, JSON-able (stored with every run)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Method:
        """A copy with some settings changed; a setting this method does not have is a ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"option {unknown[0]!r} is not used by method {type(self).__name__} "
                             f"(its options: {', '.join(sorted(known))})")
        return dataclasses.replace(self, **changes)

    def required_baselines(self) -> tuple[str, ...]:
        """Names of baselines the method starts from (computed by the pipeline)."""
        return ()

    def check(self, problem: Problem) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, problem: Problem, context: Context) -> MethodResult:  # pragma: no cover - abstract
        raise NotImplementedError


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)


def _positive_int(name: str, value: Any, lo: int = 1, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
            isinstance(value, (float, np.floating)) and float(value).is_integer()):
        raise ValueError(f"{name} = {value!r}: expected an integer >= {lo}" + (f" and <= {hi}" if hi else ""))
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} = {value}: expected an integer in [{lo}, {hi if hi else 'inf'})")
    return value


@dataclass(frozen=True)
class Collocation(Method):
    """Direct collocation on finite elements, solved by IPOPT with exact derivatives.

    ``intervals`` control intervals, each split into ``elements`` collocation elements of
    ``degree`` points of the ``scheme`` (``"legendre"`` or ``"radau"``); controls ``"constant"`` on
    each interval or ``"linear"`` (continuous, linear within an interval). ``solver_options`` are
    passed to ``casadi.nlpsol`` (``"ipopt.<name>"`` for IPOPT's own options). ``symmetry``: states
    that provably stay equal (e.g. permutation-symmetric students, :mod:`.lumping`) are one NLP
    variable; the optimum is the same, the NLP smaller.
    Maps are transcribed with one element per step (``degree``, ``scheme``, ``elements`` unused).
    """

    name: ClassVar[str] = "collocation"
    intervals: int = 100
    degree: int = 3
    scheme: str = "legendre"
    elements: int = 1
    control_type: str = "constant"
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    symmetry: bool = True

    def __post_init__(self):
        object.__setattr__(self, "intervals", _positive_int("intervals", self.intervals))
        object.__setattr__(self, "degree", _positive_int("degree", self.degree, 1, 9))
        object.__setattr__(self, "elements", _positive_int("elements", self.elements))
        if self.scheme not in ("legendre", "radau"):
            raise ValueError(f"scheme {self.scheme!r}: expected 'legendre' or 'radau'")
        if self.control_type not in ("constant", "linear"):
            raise ValueError(f"control_type {self.control_type!r}: expected 'constant' or 'linear'")
        if not isinstance(self.solver_options, Mapping):
            raise ValueError("solver_options: expected a mapping of option names to values")
        object.__setattr__(self, "solver_options", dict(self.solver_options))
        if not isinstance(self.symmetry, bool):
            raise ValueError(f"symmetry = {self.symmetry!r}: expected True or False")

    def __hash__(self):
        return hash((self.intervals, self.degree, self.scheme, self.elements, self.control_type,
                     repr(sorted(self.solver_options.items())), self.symmetry))

    def check(self, problem: Problem) -> None:
        if problem.model.kind == "map":
            steps = int(round(problem.t_final))
            if steps < self.intervals:
                raise ValueError(f"intervals = {self.intervals}: a map of {steps} steps has at most {steps} blocks")

    def run(self, problem: Problem, context: Context) -> MethodResult:
        from .collocation import run_collocation
        return run_collocation(problem, self, context)


@dataclass(frozen=True)
class Adjoint(Method):
    """Block-constant controls of a discrete map, optimised on the exact adjoint gradient.

    ``intervals``: number of control blocks (step t uses block t * intervals // steps).
    ``starts``: multi-start points, each ``"best_constant"``, ``"power_law"``, ``"wsd"`` (the
    fitted baselines of those names), ``"best_baseline"`` (one start from the best of them), or a
    mapping control -> block (or per-step) values; ``None`` (default): the best constant, and when
    every block is a single step (a rugged landscape, see :mod:`.adjoint`) also the power law.
    ``optimizer``: ``"SLSQP"`` (bounds, budgets and monotonicity), ``"L-BFGS-B"`` (bounds only),
    ``"trust-constr"`` or ``"ipopt"``; ``None`` (default): SLSQP, and with single-step blocks and
    bounds only both SLSQP and L-BFGS-B from every start (the best run wins); above 300 block
    values (SLSQP's dense subproblems grow as their cube) L-BFGS-B, or IPOPT with constraints.
    ``hops``: basin-hopping rounds after the starts (``seed`` seeds them). ``tol`` and
    ``max_iter``: optimiser tolerance (on the log-scaled objective, i.e. about relative to J) and
    iteration limit; ``options`` go to the optimiser.
    ``kernel``: ``"auto"`` (derived VJPs, checked against CasADi, falling back to CasADi's reverse
    mode with a warning), ``"source"`` or ``"casadi"``.
    """

    name: ClassVar[str] = "adjoint"
    intervals: int = 100
    starts: tuple[str, ...] | None = None
    optimizer: str | None = None
    hops: int = 0
    seed: int = 0
    tol: float = 1e-13
    max_iter: int = 3000
    options: Mapping[str, Any] = field(default_factory=dict)
    kernel: str = "auto"

    OPTIMIZERS: ClassVar[tuple[str, ...]] = ("L-BFGS-B", "SLSQP", "trust-constr", "ipopt")
    START_NAMES: ClassVar[tuple[str, ...]] = ("best_constant", "power_law", "wsd", "best_baseline")

    def __post_init__(self):
        object.__setattr__(self, "intervals", _positive_int("intervals", self.intervals))
        object.__setattr__(self, "hops", _positive_int("hops", self.hops, 0))
        object.__setattr__(self, "max_iter", _positive_int("max_iter", self.max_iter))
        starts = None if self.starts is None else (self.starts,) if isinstance(self.starts, (str, Mapping)) \
            else tuple(self.starts)
        if starts is not None and not starts:
            raise ValueError("starts: at least one starting point is needed")
        bad = [s for s in starts or () if not isinstance(s, Mapping) and s not in self.START_NAMES]
        if bad:
            raise ValueError(f"start {bad[0]!r}: expected one of {', '.join(self.START_NAMES)} "
                             "or a mapping control -> block (or per-step) values")
        object.__setattr__(self, "starts", starts)
        if self.optimizer is not None and self.optimizer not in self.OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: expected one of {', '.join(self.OPTIMIZERS)}")
        if self.kernel not in ("auto", "source", "casadi"):
            raise ValueError(f"kernel {self.kernel!r}: expected 'auto', 'source' or 'casadi'")
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ValueError(f"tol = {self.tol!r}: expected a positive number")
        object.__setattr__(self, "options", dict(self.options))

    def __hash__(self):
        return hash((self.intervals, repr(self.starts), self.optimizer, self.hops, self.seed, self.tol,
                     self.max_iter, repr(sorted(self.options.items())), self.kernel))

    def required_baselines(self) -> tuple[str, ...]:
        starts = self.starts or ()     # the default starts fit the power law themselves when they need it
        need = {s for s in starts if isinstance(s, str) and s in ("power_law", "wsd")}
        if "best_baseline" in starts:
            need |= {"power_law"}
        return tuple(sorted(need))

    def check(self, problem: Problem) -> None:
        m = problem.model
        if m.kind != "map":
            raise ValueError(f"model {m.name!r} is an ODE: method Adjoint needs a discrete map (KIND='map'); "
                             "use Collocation")
        bad = problem.uses_collocation_only
        if bad:
            raise ValueError(f"method Adjoint does not support {', '.join(bad)}: use Collocation")
        if problem.objective not in ("final", "integral"):
            raise ValueError(f"objective {problem.objective!r}: method Adjoint supports 'final' and 'integral'")
        steps = int(round(problem.t_final))
        if self.intervals > steps:
            raise ValueError(f"intervals = {self.intervals}: a map of {steps} steps has at most {steps} blocks")
        if self.optimizer == "L-BFGS-B" and (problem.budgets or problem.monotone):
            raise ValueError("optimizer 'L-BFGS-B' handles bounds only: use 'SLSQP', 'trust-constr' or 'ipopt' "
                             "with budgets or monotonicity")

    def run(self, problem: Problem, context: Context) -> MethodResult:
        from .adjoint import run_adjoint
        return run_adjoint(problem, self, context)


#: The method names accepted as strings (each stands for the class with its defaults).
METHODS: dict[str, type[Method]] = {"collocation": Collocation, "adjoint": Adjoint}
#: Keyword shorthands of :func:`opt_protocols.solve` that set method options.
SHORTHANDS = ("intervals", "degree", "scheme", "elements", "control_type", "solver_options")


def check_model(method: Any, model) -> None:
    """Reject a method that cannot handle this kind of model, before the problem is validated."""
    cls = METHODS.get(method) if isinstance(method, str) else (method if isinstance(method, type) else type(method))
    if cls is Adjoint and model.kind != "map":
        raise ValueError(f"model {model.name!r} is an ODE: method Adjoint needs a discrete map (KIND='map'); "
                         "use Collocation")


def resolve(method: Any, problem: Problem, shorthands: Mapping[str, Any]) -> tuple[Method, str]:
    """The method object for ``problem`` and how it was chosen (``"given"`` or ``"auto: <reason>"``).

    ``method`` is ``"auto"``, a method name, a :class:`Method` class or instance. ``shorthands``
    (the ``intervals=``, ``degree=``, ... keywords that were given) replace the method's options;
    one the chosen method does not use is a ValueError naming it.
    """
    given = {k: v for k, v in shorthands.items() if v is not None}
    how = "given"
    if isinstance(method, str):
        if method == "auto":
            cls, how = _auto(problem)
            method = cls
        elif method in METHODS:
            method = METHODS[method]
        else:
            raise ValueError(f"method {method!r}: expected 'auto', {', '.join(map(repr, METHODS))}, "
                             "or a method object (op.Collocation(...), op.Adjoint(...))")
    if isinstance(method, type) and issubclass(method, Method):
        method = method()
    if not isinstance(method, Method):
        raise ValueError(f"method: expected 'auto', a method name or a method object, got {type(method).__name__}")
    if given:
        try:
            method = method.replace(**given)
        except ValueError as err:
            if how != "given":
                raise ValueError(f"{err}; {type(method).__name__} was chosen automatically ({how[6:]})") from None
            raise
    return method, how


def _auto(problem: Problem) -> tuple[type[Method], str]:
    m = problem.model
    if m.kind == "ode":
        return Collocation, "auto: ODE model"
    steps = int(round(problem.t_final))
    size = m.n_x * steps
    if size <= AUTO_MAP_STATES:
        return Collocation, f"auto: map with {size} state variables <= {AUTO_MAP_STATES}"
    if problem.uses_collocation_only:
        return Collocation, (f"auto: map with {size} state variables, but {', '.join(problem.uses_collocation_only)} "
                             "needs collocation (slow at this size)")
    return Adjoint, f"auto: map with {size} state variables > {AUTO_MAP_STATES}"
