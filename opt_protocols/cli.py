"""The ``opt-protocols`` command line: models, simulate, solve, show, plot, validate.

User mistakes print one line on stderr and exit with code 2; a solve that did not
converge is stored with its failed status and exits with code 1.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

EXIT_USAGE, EXIT_FAILED = 2, 1


class UsageError(ValueError):
    """A mistake in the command line."""


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


def _config(path: str | None) -> dict:
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"config file {path!r}: {err}") from None


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


def _problem_basics(args) -> tuple[dict, Any, float]:
    """Config file contents, the model, and the horizon (from --t-final or the config)."""
    cfg = _config(args.config)
    m = _model(args, cfg)
    T = args.t_final if args.t_final is not None else cfg.get("t_final")
    if T is None:
        raise UsageError("--t-final is required")
    return cfg, m, T


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="built-in model name, dotted module, or path to a .py file")
    p.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", help="model parameter (repeatable)")
    p.add_argument("--config", "-c", metavar="FILE.toml", help="TOML file with model, params and options")
    p.add_argument("--t-final", "-T", type=float, help="horizon (alpha for ODE models, steps for maps)")
    p.add_argument("--initial", action="append", metavar="NAME=VALUE",
                   help="initial-state override passed to the model, e.g. Q=[[0,0],[0,0]] (repeatable)")


# ---- subcommands ----------------------------------------------------------------------------------

def cmd_models(args) -> int:
    from .model import list_models, load_model
    if args.model:
        m = load_model(args.model)
        print(m.doc.splitlines()[0] if m.doc else m.name)
        print(f"kind: {m.kind}, time: {m.time_name}")
        print("parameters:")
        for name, spec in m.module.PARAMETERS.items():
            default = "computed" if spec.default is None else spec.default
            print(f"  {name:12s} default {default!s:10s} {spec.allowed():28s} {spec.doc}")
        print("controls:")
        for name, c in m.controls.items():
            print(f"  {name:12s} default {c.default:<10g} in [{c.lo}, {c.hi}]  {c.doc}")
        print(f"states ({m.n_x}): {', '.join(m.state_names[:12])}{' ...' if m.n_x > 12 else ''}")
        return 0
    for name in list_models():
        m = load_model(name)
        first = m.doc.splitlines()[0] if m.doc else ""
        print(f"{name:20s} {m.kind:4s} controls: {', '.join(m.control_names):16s} {first}")
    return 0


def cmd_simulate(args) -> int:
    from .simulate import simulate
    cfg, m, T = _problem_basics(args)
    protocol = {k: _value(v) for k, v in _pairs(args.control, "--control").items()}
    tr = simulate(m, _initial_state(args, cfg, m), protocol, T, method=args.method, rtol=args.rtol, n_out=args.points)
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
        ax.set_ylabel("loss")
        ax.set_title(f"{m.name} {protocol or 'default controls'}", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0 if tr.status == "ok" else EXIT_FAILED


def _solve_kwargs(args, cfg: dict) -> dict:
    kw: dict[str, Any] = {}
    for key in ("intervals", "degree", "scheme", "elements", "control_type", "objective", "target",
                "smoothness", "t_max", "method"):
        if key in cfg:
            kw[key] = cfg[key]
        val = getattr(args, key, None)
        if val is not None:
            kw[key] = val
    controls = {k: tuple(v) for k, v in cfg.get("controls", {}).items()}
    controls.update({k: _bounds(v, "--control") for k, v in _pairs(args.control, "--control").items()})
    if controls:
        kw["controls"] = controls
    fixed = dict(cfg.get("fixed", {}))
    fixed.update({k: _value(v) for k, v in _pairs(args.fixed, "--fixed").items()})
    if fixed:
        kw["fixed"] = fixed
    static = {k: tuple(v) for k, v in cfg.get("static", {}).items()}
    static.update({k: _bounds(v, "--static") for k, v in _pairs(args.static, "--static").items()})
    if static:
        kw["static"] = static
    budgets = list(cfg.get("budgets", []))
    for item in args.budget or []:
        rel = "<=" if "<=" in item else "=="
        name, val = item.split("<=" if rel == "<=" else "=", 1) if ("=" in item) else (item, None)
        if val is None:
            raise UsageError(f"--budget {item!r}: expected CONTROL=MEAN or CONTROL<=MEAN")
        budgets.append({"control": name.strip(), "mean": float(_value(val)), "relation": rel})
    if budgets:
        kw["budgets"] = budgets
    if "constants" in cfg:
        kw["constants"] = cfg["constants"]
    if "solver_options" in cfg:
        kw["solver_options"] = dict(cfg["solver_options"])
    return kw


def cmd_solve(args) -> int:
    from tqdm import tqdm

    from .control.solve import solve
    cfg, m, T = _problem_basics(args)
    kw = _solve_kwargs(args, cfg)
    x0 = _initial_state(args, cfg, m)
    out = args.out or cfg.get("out") or f"results/{m.name}.h5"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=4, desc=f"{m.name}", bar_format="{desc}: {n}/{total} {postfix}",
              disable=args.quiet, file=sys.stderr) as bar:
        def progress(stage: str) -> None:
            bar.set_postfix_str(stage)
            if stage in ("baselines", "solving", "verifying"):
                bar.update(1)
        sol = solve(m, x0, t_final=T, progress=progress, **kw)
        bar.update(bar.total - bar.n)
    if args.validate:
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
    return 0


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


def cmd_show(args) -> int:
    runs = _runs(args.file, args.run)
    print(f"{'run':40s} {'model':12s} {'status':10s} {'objective':>12s} {'best const':>12s} {'gain':>7s} "
          f"{'verified':>9s} {'time s':>7s}")
    for s in runs:
        b = s.baselines.get("best_constant")
        gain = f"{100 * s.gain:6.2f}%" if s.gain is not None else "-"
        ver = s.verification.get("relative_gap") if s.verification else None
        print(f"{s.run_id:40s} {s.model:12s} {s.status:10s} {s.objective:12.7g} "
              f"{(b.objective if b else float('nan')):12.7g} {gain:>7s} "
              f"{f'{ver:.1e}' if ver is not None else '-':>9s} {s.stats.get('wall_time', float('nan')):7.2f}")
        if args.verbose:
            print("   ", s.summary().replace("\n", "\n    "))
    return 0


def cmd_plot(args) -> int:
    from .plot import plot_solution
    runs = _runs(args.file, args.run)
    outs = []
    for s in runs:
        out = args.out if (args.out and len(runs) == 1) else \
            str(Path(args.out or Path(args.file).with_suffix("")).with_suffix("")) + f"-{s.run_id}.png"
        plot_solution(s, out)
        outs.append(out)
    print("\n".join(f"wrote {o}" for o in outs))
    return 0


def _print_validation(v: dict) -> None:
    print(f"finite-N SGD check (N = {v['N']}, {v['seeds']} seeds):")
    for key in ("optimal", "best_constant"):
        if key in v:
            r = v[key]
            print(f"  {key:14s} ODE {r['ode_final']:.6g}   SGD {r['sgd_final_mean']:.6g} +- {r['sgd_final_sem']:.2g}")
    if "sgd_gain" in v:
        print(f"  SGD gain of the optimum over the best constant: {v['sgd_gain']:.4g} +- {v['sgd_gain_sem']:.2g}")


def cmd_validate(args) -> int:
    from .validate import validate
    runs = _runs(args.file, args.run)
    for s in runs:
        if s.status == "failed":
            print(f"{s.run_id}: skipped (failed run)")
            continue
        validate(s, N=args.N, seeds=args.seeds)
        s.save(args.file, run_id=s.run_id, exist_ok=True)
        print(s.run_id)
        _print_validation(s.validation["summary"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opt-protocols", description="Optimal training protocols from "
                                "the order-parameter equations of learning models.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("models", help="list built-in models, or describe one")
    s.add_argument("model", nargs="?")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("simulate", help="simulate a model under a protocol and print the loss curve")
    _add_model_args(s)
    s.add_argument("--control", action="append", metavar="NAME=VALUE", help="constant control value (repeatable)")
    s.add_argument("--method", default="dopri5", choices=["dopri5", "rk4"])
    s.add_argument("--rtol", type=float, default=1e-8)
    s.add_argument("--points", type=int, default=201, help="output points")
    s.add_argument("--csv", help="write t, loss, controls and states to this CSV file")
    s.add_argument("--plot", help="write a PNG of the loss curve")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("solve", help="compute an optimal protocol and store it in an HDF5 file")
    _add_model_args(s)
    s.add_argument("--control", action="append", metavar="NAME=LO:HI", help="optimised control and bounds")
    s.add_argument("--fixed", action="append", metavar="NAME=VALUE", help="fixed value of another control")
    s.add_argument("--static", action="append", metavar="NAME=LO:HI", help="model constant chosen once")
    s.add_argument("--budget", action="append", metavar="CONTROL=MEAN", help="time-average of a control "
                   "(CONTROL=MEAN, or CONTROL<=MEAN)")
    s.add_argument("--intervals", type=int)
    s.add_argument("--degree", type=int)
    s.add_argument("--scheme", choices=["legendre", "radau"])
    s.add_argument("--elements", type=int, help="collocation elements per control interval")
    s.add_argument("--control-type", dest="control_type", choices=["constant", "linear"])
    s.add_argument("--objective", choices=["final", "integral", "time"])
    s.add_argument("--target", type=float, help="target loss (objective 'time')")
    s.add_argument("--t-max", dest="t_max", type=float, help="largest horizon (objective 'time')")
    s.add_argument("--smoothness", type=float, help="penalty weight on control jumps")
    s.add_argument("--method", choices=["auto", "collocation", "adjoint"],
                   help="auto (default): collocation for ODEs and small maps, adjoint for large maps")
    s.add_argument("--out", "-o", help="HDF5 results file (default results/<model>.h5)")
    s.add_argument("--run-id")
    s.add_argument("--plot", help="also write a PNG of the solution")
    s.add_argument("--validate", action="store_true", help="also run the finite-N SGD check")
    s.add_argument("--N", type=int, default=2000)
    s.add_argument("--seeds", type=int, default=8)
    s.add_argument("--quiet", "-q", action="store_true")
    s.set_defaults(func=cmd_solve)

    s = sub.add_parser("show", help="table of the runs in a results file")
    s.add_argument("file")
    s.add_argument("--run")
    s.add_argument("--verbose", "-v", action="store_true")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("plot", help="PNG of protocol(s) and loss against the baselines")
    s.add_argument("file")
    s.add_argument("--run")
    s.add_argument("--out", "-o", help="PNG path (with several runs: a prefix)")
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("validate", help="finite-N SGD check of stored solutions (stored with the run)")
    s.add_argument("file")
    s.add_argument("--run")
    s.add_argument("--N", type=int, default=2000)
    s.add_argument("--seeds", type=int, default=8)
    s.set_defaults(func=cmd_validate)
    return p


def main(argv: list[str] | None = None) -> int:
    from .storage import StorageError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError, StorageError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
