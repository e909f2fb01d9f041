"""Sweep specifications: a grid of optimal-control problems, validated and expanded into tasks.

A spec is a TOML file or the same content as a dict (docs/sweeps.md has the full reference)::

    name = "committee-horizons"          # label stored with every run (default: the file's stem)
    model = "committee"                  # built-in name, dotted module or path to a .py file
    out = "results/committee_sweep.h5"   # the HDF5 file the runs are appended to

    [params]                             # model parameters kept fixed
    K = 2
    [initial]                            # initial-state overrides (model.initial_state(**initial))
    [problem]                            # keywords of op.solve: controls, fixed, static, budgets, ...
    controls = {eta = [0.0, 3.0]}
    [method]                             # name = "auto" | "collocation" | "adjoint", plus its options
    name = "collocation"
    intervals = 50

    [grid]                               # axes, crossed with each other
    t_final = {linear = [2.0, 20.0, 10]} # also {log = [lo, hi, n]}, {values = [...]}, a list;
    sigma = [0.1, 0.3]                   #   integer = true rounds (e.g. steps of a map)
    [[grid.zip]]                         # axes that vary together (same length)
    N = [100, 200]
    T = [1.0, 2.0]

    [continuation]                       # neighbours along this axis warm-start each other
    axis = "t_final"
    [store]                              # what each stored run keeps (default: everything)
    trajectory_points = 201              # points of the fine re-simulation (states, loss, baselines)

An axis is addressed by a dotted name (``params.sigma``, ``problem.t_final``, ``fixed.eta``,
``constants.x``, ``controls.eta``, ``static.p``, ``method.intervals``, ``initial.Q``) or, when
unambiguous, by its short name: a problem keyword, a method option or a model parameter.

:func:`load_spec` validates everything before anything runs (unknown keys are errors naming the
allowed ones; every grid point's model and problem are checked) and expands the grid into
:class:`Task` objects, each with a stable ``run_id``: a hash of its full task spec (model and its
file's SHA-256, parameters, initial state, problem, method), independent of key order and of
whether a number was written as ``2`` or ``2.0``.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TOP_KEYS = ("name", "model", "out", "params", "initial", "problem", "method", "grid", "continuation", "store")
#: keywords of op.solve a spec's [problem] table may hold (the model, method and warm start are set elsewhere)
PROBLEM_KEYS = ("t_final", "controls", "fixed", "static", "budgets", "smoothness", "monotone", "state_bounds",
                "objective", "target", "t_max", "constants", "families", "baselines", "verify")
#: sections an axis can address with a dotted name; the subsections of [problem] are addressed directly
SECTIONS = ("params", "initial", "problem", "method")
PROBLEM_TABLES = ("fixed", "constants", "controls", "static", "monotone", "state_bounds")
AXIS_KEYS = ("values", "linear", "log", "integer")
CONTINUATION_KEYS = ("axis",)
STORE_KEYS = ("trajectory_points",)
#: digits kept of generated grid values (so that run ids do not depend on the last bits of np.logspace)
GRID_DIGITS = 12


@dataclass(frozen=True)
class Axis:
    """One grid axis: its name as written, where its values go, and the values."""

    name: str
    target: tuple[str, ...]          # ("params", "sigma"), ("problem", "t_final"), ("problem", "fixed", "eta")
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Dim:
    """A dimension of the grid: one axis, or several zipped axes that vary together."""

    axes: tuple[Axis, ...]

    @property
    def name(self) -> str:
        return self.axes[0].name

    def __len__(self) -> int:
        return len(self.axes[0].values)

    def point(self, i: int) -> dict[str, Any]:
        return {a.name: a.values[i] for a in self.axes}


@dataclass
class Task:
    """One optimal-control problem of the sweep.

    ``index``: position on each dimension; ``coords``: axis name -> value; ``spec``: the full,
    JSON-able task spec that a worker solves (model, params, initial, problem, method);
    ``run_id``: ``<model>-<hash>``, stable for the same spec.
    """

    index: tuple[int, ...]
    coords: dict[str, Any]
    spec: dict[str, Any]
    run_id: str


@dataclass
class SweepSpec:
    """A validated sweep: the base problem, the grid, the continuation axis and the tasks."""

    name: str
    out: str | None
    base: dict[str, Any]                  # the task spec without the grid values
    dims: list[Dim]
    continuation: str | None              # name of the axis along which tasks warm-start each other
    trajectory_points: int | None = None  # points kept of each run's fine trajectory (None: all)
    tasks: list[Task] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)   # the spec as given (stored with every run)

    @property
    def axis_names(self) -> list[str]:
        return [a.name for d in self.dims for a in d.axes]

    @property
    def continuation_dim(self) -> int | None:
        """Index of the dimension holding the continuation axis (None without continuation)."""
        if self.continuation is None:
            return None
        return next(i for i, d in enumerate(self.dims) if any(a.name == self.continuation for a in d.axes))

    def chains(self) -> list[list[Task]]:
        """Tasks grouped into continuation chains, each ordered along the continuation axis as the
        axis values were given; without continuation every task is its own chain."""
        k = self.continuation_dim
        if k is None:
            return [[t] for t in self.tasks]
        groups: dict[tuple[int, ...], list[Task]] = {}
        for t in self.tasks:
            groups.setdefault(t.index[:k] + t.index[k + 1:], []).append(t)
        return [sorted(g, key=lambda t: t.index[k]) for g in groups.values()]

    def describe(self) -> dict[str, Any]:
        """What each run stores about the sweep (``attrs["sweep"]``): the name, the dimensions
        (lists of zipped axis names) and the continuation axis."""
        return {"name": self.name, "dims": [[a.name for a in d.axes] for d in self.dims],
                "continuation": self.continuation}


# ------------------------------------------------------------------------------------ helpers


def _fail(where: str, message: str) -> ValueError:
    return ValueError(f"sweep spec: {where}: {message}")


def _check_keys(where: str, table: Any, allowed: Sequence[str]) -> dict:
    if not isinstance(table, Mapping):
        raise _fail(where, f"expected a table, got {type(table).__name__}")
    for key in table:
        if key not in allowed:
            raise _fail(where, f"unknown key {key!r}; allowed: {', '.join(allowed)}")
    return dict(table)


def _table(where: str, table: Any) -> dict:
    if not isinstance(table, Mapping):
        raise _fail(where, f"expected a table, got {type(table).__name__}")
    return dict(table)


def _round(v: float) -> float:
    return float(f"{v:.{GRID_DIGITS}g}")


def axis_values(name: str, given: Any, unique: bool = True) -> tuple[Any, ...]:
    """The values of an axis from a list, ``{values = [...]}``, ``{linear = [start, stop, num]}``
    or ``{log = [start, stop, num]}`` (geometric, start and stop > 0); ``integer = true`` rounds
    to whole numbers. ``unique``: repeated values are an error (not for zipped axes, where only
    the combinations must differ)."""
    where = f"grid axis {name!r}"
    if isinstance(given, Mapping):
        table = _check_keys(where, given, AXIS_KEYS)
        kinds = [k for k in ("values", "linear", "log") if k in table]
        if len(kinds) != 1:
            raise _fail(where, "give exactly one of values = [...], linear = [start, stop, num], "
                               "log = [start, stop, num]")
        kind, arg = kinds[0], table[kinds[0]]
        integer = table.get("integer", False)
        if not isinstance(integer, bool):
            raise _fail(where, f"integer = {integer!r}: expected true or false")
        if kind == "values":
            values = _value_list(where, arg, unique)
        else:
            if not (isinstance(arg, Sequence) and len(arg) == 3
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg)):
                raise _fail(where, f"{kind} = {arg!r}: expected [start, stop, num]")
            start, stop, num = arg
            if not (float(num).is_integer() and num >= 1):
                raise _fail(where, f"{kind}: num = {num!r} must be a whole number >= 1")
            if not (math.isfinite(start) and math.isfinite(stop)):
                raise _fail(where, f"{kind}: start and stop must be finite numbers")
            if kind == "log":
                if start <= 0 or stop <= 0:
                    raise _fail(where, f"log = {list(arg)}: start and stop must be > 0")
                raw = np.geomspace(start, stop, int(num))
            else:
                raw = np.linspace(start, stop, int(num))
            values = [_round(v) for v in raw]
        if integer:
            ints = [int(round(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                    for v in values]
            if None in ints:
                raise _fail(where, "integer = true needs numeric values")
            if unique and len(set(ints)) != len(ints):
                raise _fail(where, f"rounding to integers repeats values: {ints}; use fewer points")
            values = ints
        return tuple(values)
    return tuple(_value_list(where, given, unique))


def _value_list(where: str, given: Any, unique: bool = True) -> list:
    if isinstance(given, (str, bytes, Mapping)) or not isinstance(given, Sequence) or not len(given):
        raise _fail(where, f"expected a non-empty list of values or a table with values/linear/log, got {given!r}")
    values = list(given)
    keys = [canonical(v) for v in values]
    if unique and len(set(keys)) != len(keys):
        raise _fail(where, "repeated values")
    return values


def canonical(value: Any) -> str:
    """The canonical JSON of a value: sorted keys, every number as a float (``2`` == ``2.0``),
    numpy arrays as lists. Equal problems give equal strings."""
    return json.dumps(_canon(value), sort_keys=True, separators=(",", ":"))


def _canon(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _canon(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return _canon(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else repr(f)
    if v is None or isinstance(v, str):
        return v
    raise TypeError(f"{type(v).__name__} is not a JSON value")


def spec_digest(task_spec: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a task spec's canonical JSON."""
    return hashlib.sha256(canonical(task_spec).encode()).hexdigest()


def _jsonable(where: str, value: Any) -> Any:
    try:
        canonical(value)
    except TypeError as err:
        raise _fail(where, f"{err} (a spec holds numbers, strings, booleans, lists and tables)") from None
    return copy.deepcopy(value)


# -------------------------------------------------------------------------------- resolution


def _method_options(name: str) -> tuple[str, ...]:
    import dataclasses

    from ..control.methods import METHODS, SHORTHANDS
    if name == "auto":
        return SHORTHANDS
    return tuple(f.name for f in dataclasses.fields(METHODS[name]))


def _resolve_axis(name: str, base: dict, param_names: Sequence[str]) -> tuple[str, ...]:
    """Where the values of axis ``name`` go in a task spec."""
    method_name = base["method"].get("name", "auto")
    options = _method_options(method_name)
    if "." in name:
        head, _, key = name.partition(".")
        if not key or "." in key:
            raise _fail(f"grid axis {name!r}", "expected SECTION.KEY with one dot")
        if head in PROBLEM_TABLES:
            return ("problem", head, key)
        if head not in SECTIONS:
            raise _fail(f"grid axis {name!r}", f"unknown section {head!r}; allowed: "
                        f"{', '.join(SECTIONS + PROBLEM_TABLES)}")
        if head == "problem" and key not in PROBLEM_KEYS:
            raise _fail(f"grid axis {name!r}", f"{key!r} is not a problem keyword; allowed: {', '.join(PROBLEM_KEYS)}")
        if head == "method" and key not in options:
            raise _fail(f"grid axis {name!r}", f"method {method_name!r} has no option {key!r}; "
                        f"its options: {', '.join(options)}")
        if head == "params" and key not in param_names:
            raise _fail(f"grid axis {name!r}", f"the model has no parameter {key!r}; "
                        f"parameters: {', '.join(param_names)}")
        return (head, key)
    hits = []
    if name in PROBLEM_KEYS:
        hits.append(("problem", name))
    if name in options and name != "name":
        hits.append(("method", name))
    if name in param_names:
        hits.append(("params", name))
    if not hits:
        raise _fail(f"grid axis {name!r}", "not a problem keyword, method option or model parameter; "
                    f"problem keywords: {', '.join(PROBLEM_KEYS)}; method options: {', '.join(options)}; "
                    f"model parameters: {', '.join(param_names)}; or a dotted name such as fixed.eta")
    if len(hits) > 1:
        raise _fail(f"grid axis {name!r}", "ambiguous: use one of " + ", ".join(".".join(h) for h in hits))
    return hits[0]


def _set(spec: dict, target: tuple[str, ...], value: Any) -> None:
    node = spec
    for key in target[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise _fail(f"grid axis {'.'.join(target)}", "its section is not a table in the spec")
    node[target[-1]] = copy.deepcopy(value)


def _model_identity(model: str) -> dict[str, str]:
    """The model reference and, for a model file, the SHA-256 of its source (editing the file
    changes the run ids)."""
    out = {"model": model}
    if model.endswith(".py") and Path(model).is_file():
        out["model_sha256"] = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------------------------- loading


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of a TOML spec file (a ValueError naming the file for a syntax error)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"sweep spec {os.fspath(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"sweep spec {os.fspath(path)!r}: {err}") from None


def load_spec(spec: SweepSpec | Mapping[str, Any] | str | os.PathLike, *, check: bool = True) -> SweepSpec:
    """A validated :class:`SweepSpec` from a dict, a TOML file or an existing spec.

    ``check``: also validate every grid point's model parameters and problem (loads the model
    once per distinct parameter set; nothing is compiled). The model is loaded once in any case,
    to resolve the axis names.
    """
    if isinstance(spec, SweepSpec):
        return spec
    default_name = "sweep"
    if isinstance(spec, (str, os.PathLike)):
        default_name = Path(spec).stem
        spec = read_toml(spec)
    raw = _check_keys("top level", spec, TOP_KEYS)
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise _fail("name", f"expected a non-empty string, got {name!r}")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise _fail("model", "required: a built-in model name, a dotted module or a path to a .py file")
    out = raw.get("out")
    if out is not None and not isinstance(out, str):
        raise _fail("out", f"expected a file path, got {out!r}")
    params = _jsonable("params", _table("params", raw.get("params", {})))
    initial = _jsonable("initial", _table("initial", raw.get("initial", {})))
    problem = _jsonable("problem", _check_keys("problem", raw.get("problem", {}), PROBLEM_KEYS))
    method = raw.get("method", "auto")
    method = {"name": method} if isinstance(method, str) else _jsonable("method", dict(method))
    if not isinstance(method, dict):
        raise _fail("method", f"expected a name or a table, got {method!r}")
    _check_method(method)
    base = {**_model_identity(model), "params": params, "initial": initial, "problem": problem, "method": method}

    from ..model import load_model
    try:
        param_names = list(load_model(model, **params).module.PARAMETERS)
    except ValueError as err:
        raise _fail("model", str(err)) from None
    dims = _dims(raw.get("grid", {}), base, param_names)
    continuation = _continuation(raw.get("continuation"), dims)
    store = _check_keys("store", raw.get("store", {}), STORE_KEYS)
    points = store.get("trajectory_points")
    if points is not None and (isinstance(points, bool) or not isinstance(points, int) or points < 2):
        raise _fail("store", f"trajectory_points = {points!r}: expected a whole number >= 2")
    out_spec = SweepSpec(name=name, out=out, base=base, dims=dims, continuation=continuation,
                         trajectory_points=points, source=_jsonable("spec", dict(raw)))
    out_spec.tasks = _tasks(out_spec)
    if check:
        _check_tasks(out_spec)
    return out_spec


def _check_method(method: dict) -> None:
    from ..control.methods import METHODS
    name = method.get("name", "auto")
    if name != "auto" and name not in METHODS:
        raise _fail("method", f"name = {name!r}; allowed: auto, {', '.join(METHODS)}")
    allowed = ("name", *_method_options(name))
    _check_keys(f"method ({name})", method, allowed)


def _dims(grid: Any, base: dict, param_names: Sequence[str]) -> list[Dim]:
    grid = _table("grid", grid)
    dims: list[Dim] = []
    zips = grid.pop("zip", [])
    for name, given in grid.items():
        dims.append(Dim((Axis(name, _resolve_axis(name, base, param_names), axis_values(name, given)),)))
    if isinstance(zips, Mapping):
        zips = [zips]
    if not isinstance(zips, list):
        raise _fail("grid.zip", "expected a list of tables ([[grid.zip]] in TOML), each of axes of equal length")
    for k, group in enumerate(zips):
        group = _table(f"grid.zip[{k}]", group)
        if not group:
            raise _fail(f"grid.zip[{k}]", "empty")
        axes = tuple(Axis(n, _resolve_axis(n, base, param_names), axis_values(n, g, unique=False))
                     for n, g in group.items())
        lengths = {a.name: len(a.values) for a in axes}
        if len(set(lengths.values())) != 1:
            raise _fail(f"grid.zip[{k}]", f"zipped axes need equal lengths, got {lengths}")
        combos = [canonical([a.values[i] for a in axes]) for i in range(len(axes[0].values))]
        if len(set(combos)) != len(combos):
            raise _fail(f"grid.zip[{k}]", "repeated combinations of values")
        dims.append(Dim(axes))
    names = [a.name for d in dims for a in d.axes]
    targets = [a.target for d in dims for a in d.axes]
    for i, t in enumerate(targets):
        if targets.count(t) > 1:
            raise _fail("grid", f"axis {names[i]!r} sets {'.'.join(t)} twice")
        node = base
        for key in t:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            raise _fail(f"grid axis {names[i]!r}", f"{'.'.join(t)} is also given in the spec's "
                        f"[{'.'.join(t[:-1])}]: give it in one place")
    return dims


def _continuation(given: Any, dims: list[Dim]) -> str | None:
    if given is None:
        return None
    if isinstance(given, str):
        given = {"axis": given}
    table = _check_keys("continuation", given, CONTINUATION_KEYS)
    axis = table.get("axis")
    names = [a.name for d in dims for a in d.axes]
    if axis not in names:
        raise _fail("continuation", f"axis = {axis!r} is not a grid axis; axes: {', '.join(names) or 'none'}")
    return axis


def _tasks(spec: SweepSpec) -> list[Task]:
    tasks = []
    for index in itertools.product(*(range(len(d)) for d in spec.dims)):
        task = copy.deepcopy(spec.base)
        coords: dict[str, Any] = {}
        for d, i in zip(spec.dims, index):
            for a in d.axes:
                _set(task, a.target, a.values[i])
                coords[a.name] = a.values[i]
        digest = spec_digest(task)
        short = Path(task["model"]).stem if task["model"].endswith(".py") else task["model"].rsplit(".", 1)[-1]
        tasks.append(Task(index=tuple(index), coords=coords, spec=task, run_id=f"{short}-{digest[:16]}"))
    ids = [t.run_id for t in tasks]
    if len(set(ids)) != len(ids):  # only possible if two axes cancel out, e.g. the same value set twice
        raise _fail("grid", "two grid points give the same problem")
    return tasks


def _check_tasks(spec: SweepSpec) -> None:
    """Validate every grid point's model parameters, initial state, problem and method (cheap:
    nothing is compiled); the first error names the grid point."""
    from .. import schedules
    from ..control.methods import resolve
    from ..control.problem import make_problem
    from ..model import load_model
    models: dict[str, Any] = {}
    for task in spec.tasks:
        s = task.spec
        try:
            key = canonical(s["params"])
            if key not in models:
                models[key] = load_model(s["model"], **s["params"])
            m = models[key]
            x0 = m.initial_state(**s["initial"]) if s["initial"] else None
            problem_kw = {k: v for k, v in s["problem"].items() if k not in ("families", "baselines", "verify")}
            if "t_final" not in problem_kw:
                raise ValueError("t_final: required (in [problem] or as a grid axis)")
            problem = make_problem(m, x0=x0, **problem_kw)
            families = s["problem"].get("families", ())
            for fam in [families] if isinstance(families, str) else families:
                schedules.family(fam)
            method, shorthands = method_arguments(s["method"])
            meth, _ = resolve(method, problem, shorthands)
            meth.check(problem)
        except (ValueError, TypeError) as err:
            where = ", ".join(f"{k} = {v!r}" for k, v in task.coords.items()) or "the problem"
            raise ValueError(f"sweep spec: grid point {where}: {err}") from None


def method_arguments(method: Mapping[str, Any]):
    """(method argument, shorthand keywords) for ``op.solve`` from a spec's [method] table:
    ``{"name": "collocation", "intervals": 50}`` -> ``(Collocation(intervals=50), {})``;
    with ``name = "auto"`` the options are passed as ``op.solve``'s shorthands."""
    from ..control.methods import METHODS
    opts = {k: v for k, v in method.items() if k != "name"}
    name = method.get("name", "auto")
    if name == "auto":
        return "auto", opts
    if "starts" in opts and isinstance(opts["starts"], list):
        opts["starts"] = tuple(opts["starts"])
    return METHODS[name](**opts), {}
