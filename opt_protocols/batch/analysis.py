"""A sweep file as one xarray Dataset on its grid, tables of its runs, and a loss-vs-axis plot.

:func:`load_sweep` reads every run a sweep wrote (``attrs["sweep"]`` names the sweep, its
dimensions and the run's coordinates) and arranges them on the grid:

* one dimension per crossed axis, and one per group of zipped axes (named after its first axis;
  the others are coordinates along it); coordinates sorted, numbers as numbers;
* ``objective`` (the optimum; NaN where the solve failed or the run is missing), ``status``
  (``"optimal"``, ``"acceptable"``, ``"failed"``, ``"error"``, or ``""`` for a run not (yet) in
  the file), ``run_id``, ``message`` (the solver's or the error's), ``iterations``, ``wall_time``;
* ``baseline_objective`` (..., ``baseline``): the best constant, the model default and the other
  baselines of each run; ``gain``: relative improvement over the best constant;
* ``static_<name>``: the optimised static values;
* the optimised controls on a common normalised time axis ``s = t / T`` in [0, 1] (``T`` the
  run's horizon): ``<control>`` (..., ``s``) sampled at the midpoints of the finest control grid
  among the runs (exact for piecewise-constant controls on that grid), and ``loss_curve`` (...,
  ``s_curve``) the re-simulated loss of the optimum at 101 points of ``s``.

So a scaling plot is ``ds.objective.plot.line(x="t_final", xscale="log", yscale="log")``.
"""
from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

import numpy as np

from .spec import canonical

GOOD = ("optimal", "acceptable")
CURVE_POINTS = 101
#: comparison operators of the filters, longest first
OPERATORS = ("<=", ">=", "!=", "==", "=", "<", ">")


def _select(path: str | os.PathLike, name: str | None, runs: Mapping[str, Mapping[str, Any]]):
    """(sweep description, run ids) of the sweep ``name`` (the only one if None) among ``runs``
    (run_id -> attrs)."""
    ids = [rid for rid, a in runs.items() if isinstance(a.get("sweep"), Mapping)]
    if not ids:
        raise ValueError(f"{os.fspath(path)}: holds no sweep runs")
    names = list(dict.fromkeys(runs[rid]["sweep"]["name"] for rid in ids))
    if name is None:
        if len(names) > 1:
            raise ValueError(f"{os.fspath(path)}: holds several sweeps ({', '.join(names)}): pass name=...")
        name = names[0]
    elif name not in names:
        raise ValueError(f"{os.fspath(path)}: no sweep {name!r} (sweeps: {', '.join(names)})")
    ids = [rid for rid in ids if runs[rid]["sweep"]["name"] == name]
    last = runs[ids[-1]]["sweep"]
    dims = [tuple(d) for d in last["dims"]]
    for rid in ids:
        if [tuple(d) for d in runs[rid]["sweep"]["dims"]] != dims:
            raise ValueError(f"{os.fspath(path)}: runs of sweep {name!r} have different grids "
                             f"({runs[rid]['sweep']['dims']} and {[list(d) for d in dims]}): rename one of the sweeps")
    return {"name": name, "dims": dims, "continuation": last.get("continuation")}, ids


def is_sweep_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds runs written by a sweep."""
    from .. import storage
    return any(isinstance(a.get("sweep"), Mapping) for a in storage.read_attrs(path).values())


def _coordinate(values: list) -> np.ndarray:
    """Axis values as an array: numbers as float (or int), anything else as its JSON text."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=int if all(isinstance(v, int) for v in values) else float)
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=str)
    return np.array([json.dumps(v) for v in values], dtype=str)


def _sort_key(point: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, canonical(v))
                 for v in point)


def load_sweep(path: str | os.PathLike, name: str | None = None, spec: Any = None):
    """The runs of a sweep as an ``xarray.Dataset`` on its grid (see the module docstring).

    ``name``: which sweep, when the file holds runs of several. ``spec``: only the runs of this
    sweep spec (a dict, TOML file or SweepSpec), e.g. when an earlier grid of the same sweep left
    other runs in the file.
    """
    import xarray as xr

    from .. import storage
    from ..solution import from_record
    from ..storage import RunRecord
    from .spec import load_spec
    everything = {r.run_id: r for r in storage.read_runs(path)}
    if spec is not None:
        s = load_spec(spec, check=False)
        wanted = {t.run_id for t in s.tasks}
        everything = {rid: r for rid, r in everything.items() if rid in wanted}
        name = name or s.name
    info, ids = _select(path, name, {rid: r.attrs for rid, r in everything.items()})
    records = [everything[rid] for rid in ids]
    dims = info["dims"]
    points: list[list[tuple]] = [[] for _ in dims]
    keyed = {}
    for r in records:
        coords = r.attrs["sweep"]["coords"]
        index = []
        for k, group in enumerate(dims):
            p = tuple(coords[a] for a in group)
            if canonical(p) not in {canonical(q) for q in points[k]}:
                points[k].append(p)
            index.append(canonical(p))
        keyed[tuple(index)] = r
    for k in range(len(dims)):
        points[k].sort(key=_sort_key)
    shape = tuple(len(p) for p in points)
    pos = [{canonical(p): i for i, p in enumerate(pk)} for pk in points]
    sols = {}
    for key, r in keyed.items():
        where = tuple(pos[k][c] for k, c in enumerate(key))
        sols[where] = from_record(r) if r.attrs.get("kind") == "solution" else r
    coords: dict[str, Any] = {}
    dim_names = [g[0] for g in dims]
    for k, group in enumerate(dims):
        for j, a in enumerate(group):
            coords[a] = (dim_names[k], _coordinate([p[j] for p in points[k]]))
    objective = np.full(shape, np.nan)
    status = np.full(shape, "", dtype=object)
    run_id = np.full(shape, "", dtype=object)
    message = np.full(shape, "", dtype=object)
    iterations = np.full(shape, -1, dtype=int)
    wall = np.full(shape, np.nan)
    solved = {w: s for w, s in sols.items() if not isinstance(s, RunRecord)}
    base_names = list(dict.fromkeys(b for s in solved.values() for b in s.baselines))
    static_names = list(dict.fromkeys(n for s in solved.values() for n in s.static))
    control_names = list(dict.fromkeys(n for s in solved.values() for n in s.controls))
    n_s = max([len(s.t_controls) - 1 for s in solved.values()] or [1])
    s_grid = (np.arange(n_s) + 0.5) / n_s
    s_curve = np.linspace(0.0, 1.0, CURVE_POINTS)
    baseline = np.full(shape + (len(base_names),), np.nan)
    static = {n: np.full(shape, np.nan) for n in static_names}
    controls = {n: np.full(shape + (n_s,), np.nan) for n in control_names}
    curve = np.full(shape + (CURVE_POINTS,), np.nan)
    for w, s in sols.items():
        if isinstance(s, RunRecord):          # a task that raised: no solution
            status[w], run_id[w], message[w] = "error", s.run_id, s.attrs.get("message", "")
            continue
        status[w], run_id[w], message[w] = s.status, s.run_id, s.return_status
        iterations[w] = int(s.stats.get("iterations", -1))
        wall[w] = float(s.stats.get("wall_time", np.nan))
        for i, b in enumerate(base_names):
            if b in s.baselines:
                baseline[w + (i,)] = s.baselines[b].objective
        if s.status not in GOOD:
            continue
        objective[w] = s.objective
        for n, v in s.static.items():
            static[n][w] = v
        T = float(s.t_controls[-1])
        values = s.protocol.values(s_grid * T)
        for n in s.controls:
            controls[n][w] = values[n]
        if s.trajectory is not None:
            curve[w] = np.interp(s_curve * T, s.trajectory.t, s.trajectory.loss)
    data = {"objective": (dim_names, objective), "status": (dim_names, status.astype(str)),
            "run_id": (dim_names, run_id.astype(str)), "message": (dim_names, message.astype(str)),
            "iterations": (dim_names, iterations), "wall_time": (dim_names, wall),
            "baseline_objective": ([*dim_names, "baseline"], baseline),
            "loss_curve": ([*dim_names, "s_curve"], curve)}
    for n, v in static.items():
        data[f"static_{n}"] = (dim_names, v)
    for n, v in controls.items():
        data[n] = ([*dim_names, "s"], v)
    coords.update(baseline=np.array(base_names, dtype=str), s=s_grid, s_curve=s_curve)
    ds = xr.Dataset(data, coords=coords, attrs={"sweep": info["name"], "file": os.fspath(path),
                                                "continuation": info["continuation"] or ""})
    if "best_constant" in base_names:
        best = ds.baseline_objective.sel(baseline="best_constant", drop=True)
        ds["gain"] = (best - ds.objective) / abs(best)
    ds["s"].attrs["long_name"] = "t / T"
    ds["objective"].attrs["long_name"] = "optimal objective"
    return ds


# ------------------------------------------------------------------------- tables and filters


def parse_filter(text: str) -> tuple[str, str, Any]:
    """``"t_final>=10"`` -> ``("t_final", ">=", 10)``; values are JSON (numbers) or plain text."""
    for op in OPERATORS:
        if op in text:
            key, _, value = text.partition(op)
            key, value = key.strip(), value.strip()
            if not key or not value:
                break
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            return key, "==" if op == "=" else op, parsed
    raise ValueError(f"filter {text!r}: expected NAME=VALUE, NAME!=VALUE, NAME<VALUE, ... "
                     "(NAME an axis, status or run_id)")


def _matches(value: Any, op: str, wanted: Any) -> bool:
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        v, w = float(value), float(wanted)
        equal = math.isclose(v, w, rel_tol=1e-9, abs_tol=1e-12)
        return {"==": equal, "!=": not equal, "<": v < w and not equal, "<=": v <= w or equal,
                ">": v > w and not equal, ">=": v >= w or equal}[op]
    if op in ("==", "!="):
        equal = canonical(value) == canonical(wanted) or str(value) == str(wanted)
        return equal if op == "==" else not equal
    raise ValueError(f"filter {op} {wanted!r}: ordering needs numbers")


def sweep_rows(path: str | os.PathLike, where: Sequence[str] = (), name: str | None = None) -> tuple[list, list]:
    """(axis names, rows) of the runs of a sweep that pass every filter of ``where``
    (``"status!=optimal"``, ``"t_final>=10"``, ...); a row holds run_id, the coordinates, status,
    objective, best constant, gain, iterations, wall time and message, in the order written."""
    from .. import storage
    runs = storage.read_attrs(path)
    info, ids = _select(path, name, runs)
    axes = [a for group in info["dims"] for a in group]
    filters = [parse_filter(w) for w in where]
    for key, _, _ in filters:
        if key not in (*axes, "status", "run_id"):
            raise ValueError(f"filter on {key!r}: not an axis of sweep {info['name']!r}; "
                             f"use one of {', '.join([*axes, 'status', 'run_id'])}")
    rows = []
    for rid in ids:
        a = runs[rid]
        base = (a.get("baselines") or {}).get("best_constant", {}).get("objective", float("nan"))
        obj = float(a.get("objective", float("nan")))
        good = a.get("status") in GOOD and math.isfinite(obj) and math.isfinite(base) and base != 0
        row = {"run_id": rid, **a["sweep"]["coords"], "status": a.get("status", "?"),
               "objective": obj if a.get("status") in GOOD else float("nan"), "best_constant": base,
               "gain": (base - obj) / abs(base) if good else float("nan"),
               "iterations": (a.get("stats") or {}).get("iterations", ""),
               "wall_time": (a.get("stats") or {}).get("wall_time", float("nan")),
               "message": a.get("message") or a.get("return_status", "")}
        if all(_matches(row[k], op, v) for k, op, v in filters):
            rows.append(row)
    return axes, rows


def format_rows(axes: list[str], rows: list[dict]) -> str:
    """A plain-text table of :func:`sweep_rows`."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.7g}"
        return json.dumps(v) if isinstance(v, (list, dict)) else str(v)

    cols = ["run_id", *axes, "status", "objective", "best_constant", "gain", "iterations", "wall_time", "message"]
    table = [[cell(r[c]) if c != "gain" or math.isnan(r[c]) else f"{100 * r[c]:.2f}%" for c in cols] for r in rows]
    widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
    text = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    text += ["  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip() for t in table]
    return "\n".join(text)


def show_sweep(path: str | os.PathLike, where: Sequence[str] = (), name: str | None = None,
               stream: IO[str] | None = None) -> int:
    """Print the table of a sweep's runs (filtered by ``where``) and a count line; returns the number
    of rows shown."""
    stream = stream or sys.stdout
    axes, rows = sweep_rows(path, where, name)
    print(format_rows(axes, rows), file=stream)
    n_good = sum(r["status"] in GOOD for r in rows)
    print(f"{len(rows)} run(s) shown: {n_good} optimal or acceptable, {len(rows) - n_good} failed", file=stream)
    return len(rows)


# ------------------------------------------------------------------------------------ plot


def plot_sweep(path: str | os.PathLike, out: str | os.PathLike, x: str | None = None, hue: str | None = None,
               where: Sequence[str] = (), name: str | None = None, baseline: bool = True,
               logx: bool | None = None, logy: bool | None = None) -> str:
    """A PNG of the optimal objective against the axis ``x`` (default: the continuation axis, else
    the first), one line per value of ``hue`` (default: the next axis, if any), with the
    best constant protocol dashed (``baseline``); failed runs are left out (marked x at their best-constant value).
    ``where`` filters as in :func:`sweep_rows`; the other axes must then be single-valued.
    Log scales are chosen when the values span more than a factor 20 (``logx``/``logy`` force)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import storage
    info, _ = _select(path, name, storage.read_attrs(path))
    axes, rows = sweep_rows(path, where, name)
    if not rows:
        raise ValueError(f"{os.fspath(path)}: no runs pass the filters {list(where)}")
    numeric = [a for a in axes if all(isinstance(r[a], (int, float)) for r in rows)]
    if x is None:
        x = info["continuation"] if info["continuation"] in numeric else (numeric or [None])[0]
    if x not in numeric:
        raise ValueError(f"x = {x!r}: expected a numeric axis of the sweep ({', '.join(numeric) or 'none'})")
    others = [a for a in axes if a != x and len({canonical(r[a]) for r in rows}) > 1]
    if hue is None:
        hue = others[0] if others else None
    elif hue not in axes:
        raise ValueError(f"hue = {hue!r}: expected an axis of the sweep ({', '.join(axes)})")
    rest = [a for a in others if a != hue]
    if rest:
        raise ValueError(f"axes {', '.join(rest)} take several values: fix them with --where (e.g. "
                         f"{rest[0]}={rows[0][rest[0]]!r}) or choose them as x/hue")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault("" if hue is None else canonical(r[hue]), []).append(r)
    fig, ax = plt.subplots(figsize=(6, 4))
    values = []
    for group in (groups[k] for k in sorted(groups, key=lambda k: _sort_key((json.loads(k) if k else 0,)))):
        group.sort(key=lambda r: r[x])
        label = "" if hue is None else f"{hue} = {group[0][hue]}"
        ok = [r for r in group if r["status"] in GOOD]
        line, = ax.plot([r[x] for r in ok], [r["objective"] for r in ok], "o-", ms=3,
                        label=f"optimal{', ' + label if label else ''}")
        values += [r["objective"] for r in ok]
        if baseline:
            ax.plot([r[x] for r in group], [r["best_constant"] for r in group], "--", color=line.get_color(),
                    lw=1, label=f"best constant{', ' + label if label else ''}")
            values += [r["best_constant"] for r in group]
        bad = [r for r in group if r["status"] not in GOOD and math.isfinite(r["best_constant"])]
        if bad:
            ax.plot([r[x] for r in bad], [r["best_constant"] for r in bad], "x", color="k", ms=7)
    xs = [float(r[x]) for r in rows]
    positive = [v for v in values if math.isfinite(v) and v > 0]
    if logx if logx is not None else (min(xs) > 0 and max(xs) / min(xs) > 20):
        ax.set_xscale("log")
    if logy if logy is not None else (positive and len(positive) == len([v for v in values if math.isfinite(v)])
                                       and max(positive) / min(positive) > 20):
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("objective")
    ax.set_title(f"sweep {info['name']}" + (f" ({', '.join(where)})" if where else ""), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return os.fspath(out)
