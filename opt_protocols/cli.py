"""The ``opt-protocols`` command line: models, simulate, solve, show, plot, validate.

Exit codes: 0 success; 1 a solve or simulation that did not succeed (stored as such); 2 a user
mistake (one line on stderr naming the argument, file and line, and the allowed values); 130
interrupted by Ctrl-C (nothing half-written is left behind).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Keys a problem file (TOML) may hold, and what each is.
PROBLEM_KEYS = {
    "model": "built-in name, dotted module or path to a .py file",
    "t_final": "horizon", "out": "HDF5 results file",
    "params": "[params] table: model parameters", "initial": "[initial] table: initial-state overrides",
    "controls": "[controls] table: optimised control = [lo, hi]", "fixed": "[fixed] table: control = value",
    "static": "[static] table: constant = [lo, hi]", "constants": "[constants] table: constant = value",
    "budgets": "list of {control, mean, relation}", "monotone": "[monotone] table: control = 'increasing'|...",
    "state_bounds": "[state_bounds] table: state = [lo, hi]", "objective": "'final' | 'integral' | 'time'",
    "target": "target loss (objective 'time')", "t_max": "longest horizon (objective 'time')",
    "smoothness": "penalty weight on control jumps", "method": "'auto' | 'collocation' | 'adjoint', or a table",
    "intervals": "control intervals", "degree": "collocation degree", "scheme": "'legendre' | 'radau'",
    "elements": "collocation elements per interval", "control_type": "'constant' | 'linear'",
    "solver_options": "[solver_options] table passed to CasADi's nlpsol", "families": "schedule families",
    "baselines": "schedules to compare with (text forms, see --baseline)",
}


class UsageError(ValueError):
    """A mistake in the command line or a problem file."""


def _value(text: str) -> Any:
    """Parse a command-line value: JSON (numbers, lists, true/false), inf, or a plain string."""
    low = text.strip().lower()
    if low in ("inf", "+inf", "infinity"):
        return math.inf
    if low == "-inf":
        return -math.inf
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{what} {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _bounds(text: str, what: str) -> tuple[float, float]:
    parts = text.split(":")
    if len(parts) != 2:
        raise UsageError(f"{what} {text!r}: expected LO:HI")
    try:
        return float(_value(parts[0])), float(_value(parts[1]))
    except (TypeError, ValueError):
        raise UsageError(f"{what} {text!r}: bounds must be numbers") from None


def _config(path: str | None, allowed: dict[str, str] | set[str]) -> dict:
    """A problem file, with every key checked against ``allowed`` (unknown keys and sections are errors)."""
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"config file {path}: {err}") from None
    unknown = [k for k in cfg if k not in allowed]
    if unknown:
        kind = "section" if isinstance(cfg[unknown[0]], dict) else "key"
        raise UsageError(f"config file {path}: unknown {kind} {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    for key in ("params", "initial", "controls", "fixed", "static", "constants", "monotone", "state_bounds",
                "solver_options"):
        if key in cfg and not isinstance(cfg[key], dict):
            raise UsageError(f"config file {path}: {key!r} must be a table ([{key}])")
    return cfg


def _model(args, cfg: dict):
    from .model import load_model
    name = args.model or cfg.get("model")
    if not name:
        raise UsageError("no model given (a built-in name, a dotted module or a path to a .py file)")
    params = dict(cfg.get("params", {}))
    params.update({k: _value(v) for k, v in _pairs(args.param, "--param").items()})
    return load_model(name, **params)


def _initial_state(args, cfg: dict, m):
    """The model's initial state with overrides from the config's [initial] table and --initial."""
    over = dict(cfg.get("initial", {}))
    over.update({k: _value(v) for k, v in _pairs(args.initial, "--initial").items()})
    try:
        return m.initial_state(**over)
    except TypeError as err:
        raise UsageError(f"initial state: {err}") from None


def _problem_basics(args, allowed) -> tuple[dict, Any, float]:
    """Config file contents, the model, and the horizon (from --t-final or the config)."""
    cfg = _config(args.config, allowed)
    m = _model(args, cfg)
    T = args.t_final if args.t_final is not None else cfg.get("t_final")
    if T is None:
        raise UsageError("--t-final is required (or t_final in the problem file)")
    return cfg, m, T


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="built-in model name, dotted module, or path to a .py file")
    p.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", help="model parameter (repeatable)")
    p.add_argument("--config", "-c", metavar="FILE.toml", help="problem file (TOML); command-line options win")
    p.add_argument("--t-final", "-T", type=float, help="horizon, in the model's time unit (see `models NAME`)")
    p.add_argument("--initial", action="append", metavar="NAME=VALUE",
                   help="initial-state override passed to the model, e.g. Q=[[0,0],[0,0]] (repeatable)")


class _Progress:
    """Stage (and, on long solves, iteration) progress: a tqdm line on a terminal, plain lines otherwise."""

    def __init__(self, name: str, quiet: bool):
        self.quiet = quiet
        self.name = name
        self.tty = sys.stderr.isatty()
        self.bar = None
        if not quiet and self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=None, desc=name, bar_format="{desc}: {postfix} [{elapsed}]", file=sys.stderr)

    def __call__(self, stage: str, **info: Any) -> None:
        if self.quiet:
            return
        text = stage + (" " + " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in info.items()) if info else "")
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif not info:          # plain lines for stages only (no flood of iteration lines in logs)
            print(f"{self.name}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- subcommands ----------------------------------------------------------------------------------

def _first_sentence(doc: str) -> str:
    text = " ".join(doc.strip().split("\n\n")[0].split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def cmd_models(args) -> int:
    from .model import list_models, load_model
    if args.model:
        m = load_model(args.model)
        print(_first_sentence(m.doc) if m.doc else m.name)
        print(f"kind: {m.kind} ({'one step per call' if m.kind == 'map' else 'ODE'}), time: {m.time_name}")
        print("parameters:")
        for name, spec in m.module.PARAMETERS.items():
            default = "computed" if spec.default is None else spec.default
            print(f"  {name:12s} default {default!s:10s} {spec.allowed():28s} {spec.doc}")
        print("controls:")
        for name, c in m.controls.items():
            print(f"  {name:12s} default {c.default:<10g} in [{c.lo}, {c.hi}]  {c.doc}")
        print(f"states ({m.n_x}): {', '.join(m.state_names[:12])}{' ...' if m.n_x > 12 else ''}")
        return EXIT_OK
    for name in list_models():
        m = load_model(name)
        print(f"{name:20s} {m.kind:4s} time {m.time_name:6s} controls: {', '.join(m.control_names):10s}")
        print(f"    {_first_sentence(m.doc)}")
    return EXIT_OK


def _control_value(text: str) -> Any:
    """A control given on the command line: a number, or a schedule (``cosine:base_lr=0.5``)."""
    value = _value(text)
    if isinstance(value, str):
        from . import schedules
        return schedules.parse(value)
    return value


def cmd_simulate(args) -> int:
    import numpy as np

    from .simulate import simulate
    cfg, m, T = _problem_basics(args, PROBLEM_KEYS)   # a problem file simulates under default controls
    protocol = {k: _control_value(v) for k, v in _pairs(args.control, "--control").items()}
    tr = simulate(m, _initial_state(args, cfg, m), protocol, T, method=args.method, rtol=args.rtol,
                  n_out=args.points)
    print(f"# {m.name} {m.time_name} loss  ({tr.method}, {tr.n_steps} steps, {tr.status})")
    step = max(1, (len(tr.t) - 1) // 10)
    for t, loss in zip(tr.t[::step], tr.loss[::step]):
        print(f"{t:12.6g} {loss:.10g}")
    if (len(tr.t) - 1) % step:
        print(f"{tr.t[-1]:12.6g} {tr.loss[-1]:.10g}")
    if args.csv:
        cols = [tr.t, tr.loss] + [tr.controls[n] for n in m.control_names] + list(tr.x.T)
        header = ",".join([m.time_name, "loss"] + m.control_names + m.state_names)
        np.savetxt(args.csv, np.column_stack(cols), delimiter=",", header=header, comments="")
        print(f"wrote {args.csv}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(tr.t, tr.loss)
        ax.set_yscale("log")
        ax.set_xlabel(m.time_name)
        ax.set_ylabel(getattr(m.module, "LOSS_NAME", "loss"))
        ax.set_title(f"{m.name}, {m.time_name}_F = {T:g}: {protocol or 'default controls'}", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return EXIT_OK if tr.status == "ok" else EXIT_FAILED


def _solve_kwargs(args, cfg: dict) -> dict:
    kw: dict[str, Any] = {}
    for key in ("intervals", "degree", "scheme", "elements", "control_type", "objective", "target",
                "smoothness", "t_max"):
        if key in cfg:
            kw[key] = cfg[key]
        val = getattr(args, key, None)
        if val is not None:
            kw[key] = val
    method = cfg.get("method")
    if isinstance(method, dict):
        method = _method_from_table(method, args.config)
    if args.method is not None:
        method = args.method
    if method is not None:
        kw["method"] = method
    controls = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.get("controls", {}).items()}
    controls.update({k: _bounds(v, "--control") for k, v in _pairs(args.control, "--control").items()})
    if controls:
        kw["controls"] = controls
    fixed = dict(cfg.get("fixed", {}))
    fixed.update({k: _value(v) for k, v in _pairs(args.fixed, "--fixed").items()})
    if fixed:
        kw["fixed"] = fixed
    static = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.get("static", {}).items()}
    static.update({k: _bounds(v, "--static") for k, v in _pairs(args.static, "--static").items()})
    if static:
        kw["static"] = static
    budgets = list(cfg.get("budgets", []))
    for item in args.budget or []:
        rel = "<=" if "<=" in item else "=="
        if "=" not in item:
            raise UsageError(f"--budget {item!r}: expected CONTROL=MEAN or CONTROL<=MEAN")
        name, val = item.split("<=" if rel == "<=" else "=", 1)
        budgets.append({"control": name.strip(), "mean": float(_value(val)), "relation": rel})
    for b in budgets:
        if not isinstance(b, dict) or set(b) - {"control", "mean", "relation"} or not {"control", "mean"} <= set(b):
            raise UsageError(f"budget {b!r}: expected a table with control, mean and optionally relation")
    if budgets:
        kw["budgets"] = budgets
    for key in ("constants", "monotone", "state_bounds"):
        if key in cfg:
            kw[key] = dict(cfg[key])
    if "solver_options" in cfg:
        kw["solver_options"] = dict(cfg["solver_options"])
    baselines = {}
    for text in list(cfg.get("baselines", [])) + list(args.baseline or []):
        from . import schedules
        cls, given = schedules.parse_spec(text)    # validates the text: one line naming what is wrong
        if "base_lr" in given:
            baselines[text] = cls(**given)
        else:
            args.family = [*(args.family or []), text]
    if baselines:
        kw["baselines"] = baselines
    families = cfg.get("families", [])
    families = (["default"] if families == "default" else list(families)) + list(args.family or [])
    if args.families:
        families.append("default")
    if "default" in families:
        from .control.baselines import DEFAULT_FAMILIES
        families = [f for f in families if f != "default"] + list(DEFAULT_FAMILIES)
        families = list(dict.fromkeys(families))
    if families:
        kw["families"] = families
    return kw


def _method_from_table(table: dict, path: str | None):
    """A method object from a [method] table: name plus the method's options."""
    from .control.methods import METHODS
    table = dict(table)
    name = table.pop("name", None)
    if name not in METHODS:
        raise UsageError(f"config file {path}: [method] needs name = one of {', '.join(map(repr, METHODS))}")
    cls = METHODS[name]
    import dataclasses
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(f"config file {path}: [method] has no option {unknown[0]!r} for {name}; "
                         f"allowed: {', '.join(sorted(known))}")
    if "starts" in table and isinstance(table["starts"], list):
        table["starts"] = tuple(table["starts"])
    return cls(**table)


def cmd_solve(args) -> int:
    from .control.solve import solve
    cfg, m, T = _problem_basics(args, PROBLEM_KEYS)
    kw = _solve_kwargs(args, cfg)
    x0 = _initial_state(args, cfg, m)
    out = args.out or cfg.get("out") or f"results/{m.name}.h5"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    progress = _Progress(m.name, args.quiet)
    try:
        sol = solve(m, x0, t_final=T, progress=progress, **kw)
    finally:
        progress.close()
    if args.validate and sol.status != "failed":
        from .validate import validate
        validate(sol, N=args.N, seeds=args.seeds)
    run_id = sol.save(out, run_id=args.run_id)
    print(sol.summary())
    if sol.validation:
        _print_validation(sol.validation["summary"])
    print(f"stored run {run_id} in {out}")
    if args.plot:
        from .plot import plot_solution
        plot_solution(sol, args.plot)
        print(f"wrote {args.plot}")
    if sol.status == "failed":
        print(f"error: the solve failed ({sol.return_status}); the run is stored with status 'failed'",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _runs(path: str, run: str | None):
    from .solution import load
    if not Path(path).exists():
        raise UsageError(f"{path}: no such file")
    if run:
        return [load(path, run)]
    runs = load(path)
    if not runs:
        raise UsageError(f"{path}: holds no runs")
    return runs


def _differing_params(runs) -> list[str]:
    keys = sorted({k for s in runs for k in s.params})
    out = []
    for k in keys:
        vals = {json.dumps(s.params.get(k), sort_keys=True, default=str) for s in runs}
        if len(vals) > 1:
            out.append(k)
    return out


def _fmt_num(v: float | None, width: int = 12) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return f"{'-':>{width}s}"
    return f"{v:{width}.7g}"


def _sweep_module(args):
    """The sweep CLI module when ``args.file`` is a sweep file shown or plotted as a whole, else None."""
    from .batch import cli as batch_cli
    if not Path(args.file).exists():
        raise UsageError(f"{args.file}: no such file")
    return batch_cli if not args.run and batch_cli.is_sweep_file(args.file) else None


def cmd_show(args) -> int:
    sweep = _sweep_module(args)
    if sweep is not None:
        return sweep.cmd_show(args)
    runs = _runs(args.file, args.run)
    if args.status:
        runs = [s for s in runs if s.status == args.status]
    if args.model:
        runs = [s for s in runs if s.model == args.model]
    if not runs:
        print("no runs match")
        return EXIT_OK
    differ = _differing_params(runs)
    w_run = max(3, *(len(s.run_id or "") for s in runs))
    w_model = max(5, *(len(s.model) for s in runs))
    header = (f"{'run':{w_run}s} {'model':{w_model}s} {'status':10s} {'objective':>12s} {'best const':>12s} "
              f"{'gain':>7s} {'method':11s} {'int.':>5s} {'T':>8s}  problem")
    print(header)
    for s in runs:
        b = s.baselines.get("best_constant")
        gain = f"{100 * s.gain:6.2f}%" if s.gain is not None else "-"
        obj = _fmt_num(s.objective) if s.status != "failed" else f"{'failed':>12s}"
        method = s.method.get("name", s.stats.get("method", "?")) if s.method else s.stats.get("method", "?")
        intervals = len(s.t_controls) - 1
        T = float(s.t[-1]) if len(s.t) else float("nan")
        bits = [f"{k}={s.params.get(k)}" for k in differ]
        fixed = s.spec.get("fixed", {})
        if fixed:
            bits.append("fixed " + ",".join(f"{k}={v:g}" for k, v in fixed.items()))
        if s.static:
            bits.append("static " + ",".join(f"{k}={v:.4g}" for k, v in s.static.items()))
        ver = s.verification.get("relative_gap") if s.verification else None
        if ver is not None and not s.verification.get("ok", True):
            bits.append(f"VERIFICATION FLAGGED (gap {ver:.1e})")
        print(f"{s.run_id:{w_run}s} {s.model:{w_model}s} {s.status:10s} {obj} {_fmt_num(b.objective if b else None)} "
              f"{gain:>7s} {method:11s} {intervals:5d} {T:8.4g}  {'; '.join(bits)}")
        if args.verbose:
            print("   ", s.summary().replace("\n", "\n    "))
            if s.validation:
                _print_validation(s.validation["summary"], indent="    ")
    return EXIT_OK


def cmd_plot(args) -> int:
    sweep = _sweep_module(args)
    if sweep is not None:
        return sweep.cmd_plot(args)
    from .plot import plot_solution
    runs = _runs(args.file, args.run)
    outs = []
    for s in runs:
        out = args.out if (args.out and len(runs) == 1) else \
            str(Path(args.out or Path(args.file).with_suffix("")).with_suffix("")) + f"-{s.run_id}.png"
        plot_solution(s, out)
        outs.append(out)
    print("\n".join(f"wrote {o}" for o in outs))
    return EXIT_OK


def _print_validation(v: dict, indent: str = "") -> None:
    print(f"{indent}finite-N SGD check (N = {v['N']}, {v['seeds']} seeds):")
    for key in ("optimal", "best_constant"):
        if key in v:
            r = v[key]
            print(f"{indent}  {key:14s} ODE {r['ode_final']:.6g}   SGD {r['sgd_final_mean']:.6g} "
                  f"+- {r['sgd_final_sem']:.2g}")
    if "sgd_gain" in v:
        print(f"{indent}  SGD gain of the optimum over the best constant: {v['sgd_gain']:.4g} "
              f"+- {v['sgd_gain_sem']:.2g}")


def cmd_validate(args) -> int:
    from . import storage
    from .validate import validate
    runs = _runs(args.file, args.run)
    done = []
    for s in runs:
        if s.status == "failed":
            print(f"{s.run_id}: skipped (failed run)")
            continue
        validate(s, N=args.N, seeds=args.seeds)
        done.append(s)
        print(s.run_id)
        _print_validation(s.validation["summary"])
    if done:   # one crash-safe write for all runs
        from .solution import to_record
        storage.write_runs(args.file, [to_record(s, s.run_id) for s in done], exist_ok=True)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .batch import cli as batch_cli
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="opt-protocols", formatter_class=fmt,
                                description="Optimal training protocols from the order-parameter equations of "
                                            "learning models.")
    p.add_argument("--version", action="version", version=f"opt-protocols {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("models", formatter_class=fmt, help="list built-in models, or describe one")
    s.add_argument("model", nargs="?", help="model name or path (omit to list the built-in models)")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("simulate", formatter_class=fmt, help="simulate a model under a protocol, print the loss")
    _add_model_args(s)
    s.add_argument("--control", action="append", metavar="NAME=VALUE",
                   help="a constant value or a schedule, e.g. eta=0.5 or eta=cosine:base_lr=0.5 (repeatable)")
    s.add_argument("--method", default="dopri5", choices=["dopri5", "rk4"], help="integrator (ODE models)")
    s.add_argument("--rtol", type=float, default=1e-8, help="relative tolerance of dopri5")
    s.add_argument("--points", type=int, default=201, help="output points")
    s.add_argument("--csv", help="write t, loss, controls and states to this CSV file")
    s.add_argument("--plot", help="write a PNG of the loss curve")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("solve", formatter_class=fmt, help="compute an optimal protocol and store it (HDF5)")
    _add_model_args(s)
    s.add_argument("--control", action="append", metavar="NAME=LO:HI", help="optimised control and its bounds")
    s.add_argument("--fixed", action="append", metavar="NAME=VALUE", help="fixed value of another control")
    s.add_argument("--static", action="append", metavar="NAME=LO:HI", help="model constant chosen once")
    s.add_argument("--budget", action="append", metavar="CONTROL=MEAN",
                   help="time-average of a control (CONTROL=MEAN, or CONTROL<=MEAN)")
    s.add_argument("--method", choices=["auto", "collocation", "adjoint"],
                   help="auto (default): collocation for ODEs and small maps, adjoint for large maps")
    s.add_argument("--intervals", type=int, help="control intervals (default 100)")
    s.add_argument("--degree", type=int, help="collocation degree (default 3)")
    s.add_argument("--scheme", choices=["legendre", "radau"], help="collocation points (default legendre)")
    s.add_argument("--elements", type=int, help="collocation elements per control interval (default 1)")
    s.add_argument("--control-type", dest="control_type", choices=["constant", "linear"],
                   help="controls per interval (default constant)")
    s.add_argument("--objective", choices=["final", "integral", "time"], help="what is minimised (default final)")
    s.add_argument("--target", type=float, help="target loss (objective 'time')")
    s.add_argument("--t-max", dest="t_max", type=float, help="largest horizon (objective 'time')")
    s.add_argument("--smoothness", type=float, help="penalty weight on control jumps (default 0)")
    s.add_argument("--family", action="append", metavar="NAME",
                   help="also fit the best member of this schedule family as a baseline (repeatable; "
                        "see docs/schedules.md)")
    s.add_argument("--baseline", action="append", metavar="SCHEDULE",
                   help="a schedule to compare with, e.g. cosine:base_lr=0.5 (evaluated as given) or "
                        "wsd:decay=cosine (its free parameters fitted); repeatable")
    s.add_argument("--families", action="store_true",
                   help="fit the default families as baselines: cosine, wsd, power_law")
    s.add_argument("--out", "-o", help="HDF5 results file (default results/<model>.h5)")
    s.add_argument("--run-id", help="name of the run in the file (default: model-date-time-hex)")
    s.add_argument("--plot", help="also write a PNG of the solution")
    s.add_argument("--validate", action="store_true", help="also run the finite-N SGD check")
    s.add_argument("--N", type=int, default=2000, help="input dimension of the SGD check")
    s.add_argument("--seeds", type=int, default=8, help="SGD runs of the check (at least 2)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    s.set_defaults(func=cmd_solve)

    s = sub.add_parser("show", formatter_class=fmt, help="table of the runs in a results file")
    s.add_argument("file", help="HDF5 results file")
    s.add_argument("--run", help="only this run")
    s.add_argument("--status", choices=["optimal", "acceptable", "failed"], help="only runs with this status")
    s.add_argument("--model", help="only runs of this model")
    s.add_argument("--verbose", "-v", action="store_true", help="baselines, verification and SGD check per run")
    batch_cli.add_show_arguments(s)
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("plot", formatter_class=fmt, help="PNG of protocol(s) and loss against the baselines")
    s.add_argument("file", help="HDF5 results file")
    s.add_argument("--run", help="only this run")
    s.add_argument("--out", "-o", help="PNG path (with several runs: a prefix)")
    batch_cli.add_plot_arguments(s)
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("validate", formatter_class=fmt,
                       help="finite-N SGD check of stored solutions (stored with the run)")
    s.add_argument("file", help="HDF5 results file")
    s.add_argument("--run", help="only this run")
    s.add_argument("--N", type=int, default=2000, help="input dimension")
    s.add_argument("--seeds", type=int, default=8, help="SGD runs (at least 2)")
    s.set_defaults(func=cmd_validate)
    batch_cli.add_parsers(sub)
    from .fsl.cli import add_parsers as add_fsl_parsers
    add_fsl_parsers(sub)
    return p


def _interrupted() -> int:
    print("interrupted: nothing was stored for the interrupted work", file=sys.stderr)
    return EXIT_INTERRUPTED


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings
    warnings.formatwarning = _one_line_warning      # warnings are one line on the command line too
    parser = build_parser()
    args = parser.parse_args(argv)
    from .storage import StorageError
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _interrupted()
    except SystemError as err:
        from .interrupt import caused_by_interrupt
        if caused_by_interrupt(err):
            return _interrupted()
        raise
    except (UsageError, ValueError, StorageError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg.splitlines()[0] if msg else type(err).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
