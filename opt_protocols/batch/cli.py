"""Command-line pieces for sweeps: ``opt-protocols sweep``, and ``show``/``plot`` of a sweep file.

The main CLI (:mod:`opt_protocols.cli`) adds the ``sweep`` subcommand with :func:`add_parsers`
and hands a sweep file to :func:`cmd_show` / :func:`cmd_plot` (whose extra options
:func:`add_show_arguments` / :func:`add_plot_arguments` add to its ``show`` and ``plot``
parsers). ``python -m opt_protocols.batch`` runs the same three subcommands on their own.

Exit codes of ``sweep``: 0 when every run is in the file and none failed, 1 when some failed,
2 for a mistake in the command or the spec, 130 when interrupted (rerun to complete).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def add_parsers(subparsers) -> None:
    """Add the ``sweep`` subcommand to an ``argparse`` subparsers object."""
    s = subparsers.add_parser("sweep", help="solve a grid of problems from a TOML spec into one HDF5 file",
                              description="Solve every problem of a sweep spec (docs/sweeps.md), appending each "
                              "run to the output file as it completes; rerun to resume.")
    s.add_argument("spec", help="sweep spec (TOML)")
    s.add_argument("--out", "-o", help="HDF5 file (default: the spec's out)")
    s.add_argument("--workers", "-j", type=int, help="worker processes (default: one per core)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing dask.distributed cluster")
    where.add_argument("--cluster", choices=["local"], help="start a dask LocalCluster of --workers processes")
    s.add_argument("--retry-failed", action="store_true", help="solve the runs stored as failed again")
    s.add_argument("--dry-run", action="store_true", help="list the tasks and what is already done; solve nothing")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    s.set_defaults(func=cmd_sweep)


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``show`` for a sweep file."""
    parser.add_argument("--where", "-w", action="append", default=[], metavar="FILTER",
                        help="sweep runs only: AXIS=VALUE, AXIS>=VALUE, status!=optimal, ... (repeatable)")
    parser.add_argument("--sweep", metavar="NAME", help="which sweep, when the file holds several")


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``plot`` for a sweep file."""
    add_show_arguments(parser)
    parser.add_argument("--x", metavar="AXIS", help="sweep file: the axis on the x axis (default: the "
                        "continuation axis or the first)")
    parser.add_argument("--hue", metavar="AXIS", help="sweep file: one line per value of this axis")
    parser.add_argument("--logx", action=argparse.BooleanOptionalAction, default=None, help="log x axis")
    parser.add_argument("--logy", action=argparse.BooleanOptionalAction, default=None, help="log y axis")


def cmd_sweep(args) -> int:
    from .runner import sweep
    if args.dry_run:
        return _dry_run(args)
    try:
        report = sweep(args.spec, out=args.out, workers=args.workers, scheduler=args.scheduler,
                       cluster=args.cluster, retry_failed=args.retry_failed, progress=not args.quiet)
    except KeyboardInterrupt as exc:
        print(f"\n{exc}" if str(exc) else "\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:   # the output file is locked by another sweep
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0 if report.complete else EXIT_FAILED


def _dry_run(args) -> int:
    from .runner import stored_statuses
    from .spec import load_spec
    s = load_spec(args.spec)
    path = args.out or s.out
    stored = stored_statuses(path) if path else {}
    axes = s.axis_names
    print(f"sweep {s.name!r}: {len(s.tasks)} tasks -> {path or '(no out)'}"
          + (f", continuation along {s.continuation}" if s.continuation else ""))
    for t in s.tasks:
        status = stored.get(t.run_id, {}).get("status", "to do")
        print(f"  {t.run_id}  {'  '.join(f'{a} = {t.coords[a]}' for a in axes)}  {status}")
    return 0


def is_sweep_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds runs written by a sweep (for ``show`` and ``plot`` to hand it here)."""
    from .analysis import is_sweep_file as check
    return check(path)


def cmd_show(args) -> int:
    """``show`` of a sweep file: the runs with their coordinates, filtered by ``--where``."""
    from .analysis import show_sweep
    show_sweep(args.file, args.where, args.sweep)
    return 0


def cmd_plot(args) -> int:
    """``plot`` of a sweep file: the optimum (and best constant) against an axis."""
    from pathlib import Path

    from .analysis import plot_sweep
    out = args.out or str(Path(args.file).with_suffix(".png"))
    written = plot_sweep(args.file, out, x=args.x, hue=args.hue, where=args.where, name=args.sweep,
                         logx=args.logx, logy=args.logy)
    print(f"wrote {written}")
    return 0


def results_script(argv: list[str] | None, description: str, spec_for: Callable[[bool], dict], stem: str,
                   default_out: str | os.PathLike):
    """The shared part of a results script made of one sweep: options ``--quick`` (a small grid),
    ``--out DIR`` (default ``default_out``) and ``--workers N``; runs (or resumes) the sweep
    ``spec_for(quick)`` into ``DIR/<stem>.h5`` and returns (its Dataset, the
    :class:`~.progress.SweepReport`, the figure's path ``DIR/<stem>.png``). A quick sweep's name
    ends in ``-quick`` (stored with every run)."""
    from pathlib import Path

    from .analysis import load_sweep
    from .runner import sweep
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a small grid (well under a minute)")
    parser.add_argument("--out", default=os.fspath(default_out), help=f"output directory (default: {default_out})")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec_for(args.quick)
    report = sweep(spec, out=out / f"{stem}.h5", workers=args.workers)
    return load_sweep(out / f"{stem}.h5", spec=spec), report, out / f"{stem}.png"


def build_parser() -> argparse.ArgumentParser:
    """``python -m opt_protocols.batch``: sweep, show and plot."""
    p = argparse.ArgumentParser(prog="python -m opt_protocols.batch", description="Sweeps of optimal-control problems.")
    sub = p.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    s = sub.add_parser("show", help="table of the runs of a sweep file")
    s.add_argument("file")
    add_show_arguments(s)
    s.set_defaults(func=cmd_show)
    s = sub.add_parser("plot", help="PNG of the optimum against a sweep axis")
    s.add_argument("file")
    s.add_argument("--out", "-o", help="PNG path (default: the file with .png)")
    add_plot_arguments(s)
    s.set_defaults(func=cmd_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    from ..storage import StorageError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, StorageError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE
