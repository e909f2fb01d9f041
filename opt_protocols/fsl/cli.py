"""``opt-protocols fsl fit | predict | optimise``: the loss-curve ansatz on a user's own curves.

Wire into the main parser with ``add_parsers(subparsers)``; each command's function takes the
parsed arguments and returns the exit code; user mistakes are ValueErrors (one line).

    opt-protocols fsl fit run1.csv run2.csv --out fit.h5 --plot fit.png
    opt-protocols fsl predict new_schedule.csv --fit fit.h5 --out pred.h5 --plot pred.png
    opt-protocols fsl optimise --fit fit.h5 --steps 24000 --warmup 2160 --eta-max 3e-4 --out opt.h5

A curve is a CSV with the header ``step,lr,loss`` (``predict`` also takes ``step,lr``), or one of
the shipped curves as ``builtin:SIZE/NAME`` (e.g. ``builtin:25M/cosine_24000``; sizes 25M, 100M,
400M). Results are appended to the HDF5 file as runs (:mod:`opt_protocols.fsl.records`).
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - the heavy modules load only when a command runs
    from . import data
    from .law import LossLaw

BUILTIN = "builtin:"


def load_curve(spec: str, require_loss: bool = True, horizon: int | None = None) -> data.LossCurve:
    """A curve from a CSV path or ``builtin:SIZE/NAME``."""
    from . import data
    if spec.startswith(BUILTIN):
        size, _, name = spec[len(BUILTIN):].partition("/")
        return data.builtin_curve(size, name)
    return data.read_curve(spec, horizon=horizon, require_loss=require_loss)


def _positive(kind):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
        return v
    return parse


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add ``fsl`` with its commands ``fit``, ``predict``, ``optimise`` to the main CLI's subparsers."""
    p = subparsers.add_parser("fsl", help="functional-scaling-law surrogate of loss curves: fit, predict, optimise")
    sub = p.add_subparsers(dest="fsl_command", required=True)

    s = sub.add_parser("fit", help="fit the loss-curve ansatz to training-loss curves (CSV step,lr,loss)")
    s.add_argument("curves", nargs="+", metavar="CURVE", help="CSV files or builtin:SIZE/NAME")
    s.add_argument("--eta-ref", type=_positive(float), help="learning-rate unit of the intrinsic time "
                   "(default: the largest learning rate of the curves)")
    s.add_argument("--delta", type=_positive(float), default=1e-3, help="Huber threshold on log-loss (1e-3)")
    s.add_argument("--quick", action="store_true", help="coarse starting grid, one start")
    _outputs(s)
    s.set_defaults(func=cmd_fit)

    s = sub.add_parser("predict", help="predict loss curves of new schedules with a stored fit")
    s.add_argument("curves", nargs="+", metavar="CURVE", help="CSV files (step,lr[,loss]) or builtin:SIZE/NAME")
    s.add_argument("--fit", required=True, metavar="FILE", help="HDF5 file with a fit (from 'fsl fit')")
    s.add_argument("--fit-run", metavar="RUN", help="the fit's run id (if the file holds several)")
    s.add_argument("--steps", type=_positive(int), help="length of the schedules (default: last step + 1)")
    _outputs(s)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("optimise", aliases=["optimize"],
                       help="the non-increasing schedule that minimises the predicted final loss")
    s.add_argument("--fit", required=True, metavar="FILE", help="HDF5 file with a fit (from 'fsl fit')")
    s.add_argument("--fit-run", metavar="RUN", help="the fit's run id (if the file holds several)")
    s.add_argument("--steps", type=_positive(int), required=True, help="total training steps K")
    s.add_argument("--warmup", type=_positive(int), required=True, help="warmup steps W (linear from 0 to --eta-max)")
    s.add_argument("--eta-max", type=_positive(float), required=True, help="peak (and upper bound) learning rate")
    s.add_argument("--eta-min", type=float, default=0.0, help="lower bound of the learning rate (default 0)")
    s.add_argument("--intervals", type=_positive(int), default=200, help="control blocks after the warmup (200)")
    s.add_argument("--compare", nargs="*", default=[], metavar="CURVE",
                   help="schedules (CSV or builtin:SIZE/NAME) whose predicted final loss to print beside")
    _outputs(s)
    s.set_defaults(func=cmd_optimise)
    return p


def _outputs(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", "-o", required=True, metavar="FILE", help="HDF5 file the run is appended to")
    s.add_argument("--run-id", help="run id (default: derived from the command and the time)")
    s.add_argument("--plot", metavar="PNG", help="also write a figure")


def _run_id(args, kind: str) -> str:
    import datetime as dt
    return args.run_id or f"{kind}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def cmd_fit(args) -> int:
    from .. import storage
    from .fit import curve_errors, fit
    from .records import fit_record
    curves = [load_curve(c) for c in args.curves]
    res = fit(curves, eta_ref=args.eta_ref, delta=args.delta, coarse=args.quick, n_starts=1 if args.quick else 2)
    print(res.summary())
    errors = {c.label: curve_errors(res.law, c) for c in curves}
    _print_errors(errors)
    rid = _run_id(args, "fit")
    storage.write_run(args.out, fit_record(res, curves, errors, rid))
    print(f"wrote run {rid!r} to {args.out}")
    if args.plot:
        plot_curves(res.law, curves, args.plot, f"fit on {len(curves)} curve(s)")
    return 0


def cmd_predict(args) -> int:
    from .. import storage
    from .fit import curve_errors
    from .records import prediction_record, read_law
    law, fit_run = read_law(args.fit, args.fit_run)
    curves = [load_curve(c, require_loss=False, horizon=args.steps) for c in args.curves]
    errors = {c.label: curve_errors(law, c) for c in curves if np.any(c.fit_mask())}
    for c in curves:
        final = float(law(c.eta, [c.horizon - 1])[0])
        print(f"{c.label}: predicted loss at step {c.horizon - 1}: {final:.6g}")
    _print_errors(errors)
    rid = _run_id(args, "predict")
    storage.write_run(args.out, prediction_record(law, curves, errors, rid, f"{args.fit}:{fit_run}"))
    print(f"wrote run {rid!r} to {args.out}")
    if args.plot:
        plot_curves(law, curves, args.plot, "prediction")
    return 0


def cmd_optimise(args) -> int:
    from .. import storage
    from .optimise import linear_warmup, optimise
    from .records import optimum_record, read_law
    law, fit_run = read_law(args.fit, args.fit_run)
    if args.warmup + 1 >= args.steps:
        raise ValueError(f"--warmup {args.warmup}: expected fewer steps than --steps {args.steps} minus one")
    opt = optimise(law, args.steps, linear_warmup(args.warmup, args.eta_max), eta_max=args.eta_max,
                   eta_min=args.eta_min, intervals=args.intervals)
    print(opt.summary())
    compare = {}
    for spec in args.compare:
        c = load_curve(spec, require_loss=False, horizon=args.steps)
        compare[c.label] = float(law(c.eta, [c.horizon - 1])[0])
        print(f"  {c.label}: predicted loss at step {c.horizon - 1}: {compare[c.label]:.6g} "
              f"({100 * (compare[c.label] - opt.final_loss) / opt.final_loss:+.3f}% against the optimum)")
    rid = _run_id(args, "optimise")
    storage.write_run(args.out, optimum_record(law, opt, compare, rid, f"{args.fit}:{fit_run}"))
    print(f"wrote run {rid!r} to {args.out}")
    if args.plot:
        plot_optimum(law, opt, [load_curve(s, require_loss=False, horizon=args.steps) for s in args.compare],
                     args.plot)
    return 0


def _print_errors(errors: dict[str, dict]) -> None:
    for name, e in errors.items():
        print(f"  {name}: RMSE {e['rmse']:.4g}, worst relative error {100 * e['worst_rel']:.3f}% "
              f"(step {e['worst_step']}), final {e['final_pred']:.5g} vs {e['final_obs']:.5g} ({e['n']} points)")


def plot_curves(law: LossLaw, curves: list[data.LossCurve], path: str, title: str) -> None:
    """Schedules (left) and losses, data against the law (right)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        ax[0].plot(np.arange(c.horizon), c.eta, color=color, lw=1, label=c.label)
        mask = c.steps < c.horizon
        ax[1].plot(c.steps[mask], c.loss[mask], ".", ms=2, color=color)
        ax[1].plot(c.steps[mask], law(c.eta, c.steps[mask]), color=color, lw=1, label=c.label)
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("learning rate")
    ax[0].legend(fontsize=7)
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("loss (dots: data, lines: law)")
    ax[1].set_xscale("log")
    ax[1].legend(fontsize=7)
    fig.suptitle(f"{title}: L0 = {law.L0:.4g}, c1 = {law.c1:.4g}, s = {law.s:.4g}, c2 = {law.c2:.4g}, "
                 f"c3 = {law.c3:.4g}, c4 = {law.c4:.4g}, gamma = {law.gamma:.4g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def plot_optimum(law: LossLaw, opt, compare: list[data.LossCurve], path: str) -> None:
    """The optimised schedule and its predicted loss beside the compared schedules."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    k = np.arange(opt.eta.size)
    ax[0].plot(k, opt.eta, color="k", lw=2, label="optimal (monotone)")
    L = law(opt.eta)
    ax[1].plot(k[opt.warmup + 1:], L[opt.warmup + 1:], color="k", lw=2, label=f"optimal: {opt.final_loss:.5g}")
    for i, c in enumerate(compare):
        Lc = law(c.eta)
        ax[0].plot(np.arange(c.horizon), c.eta, color=f"C{i}", lw=1, label=c.label)
        ax[1].plot(np.arange(c.horizon)[c.warmup + 1:], Lc[c.warmup + 1:], color=f"C{i}", lw=1,
                   label=f"{c.label}: {Lc[-1]:.5g}")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("learning rate")
    ax[0].legend(fontsize=7)
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("predicted loss")
    lo = min(opt.final_loss, *(float(law(c.eta, [c.horizon - 1])[0]) for c in compare)) if compare else opt.final_loss
    ax[1].set_ylim(lo - 0.02 * abs(lo), lo + 0.1 * abs(lo))
    ax[1].legend(fontsize=7)
    fig.suptitle("surrogate-optimal non-increasing schedule (op.solve, adjoint, monotone)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m opt_protocols.fsl.cli fit ...``) until the main CLI wires ``fsl``."""
    parser = argparse.ArgumentParser(prog="opt-protocols")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fsl", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
