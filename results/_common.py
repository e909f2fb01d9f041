"""Command line and output handling shared by the results scripts (a helper, not a result script).

Every script takes ``--quick`` (reduced sizes: seconds, what CI runs) and ``--out DIR`` (where its
HDF5/JSON files and figures go; default: this folder). Without ``--quick`` the figures the main
README shows are also written to ``docs/figures/``.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS_FIGURES = HERE.parent / "docs" / "figures"
#: Resolution of every figure (small PNGs for the repository).
FIGURE_DPI = 100


def parse_args(doc: str, argv: list[str] | None = None,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """``--quick`` and ``--out`` (created if missing), plus the script's own options from ``extra``."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="reduced sizes (seconds; for CI): the numbers are not the reference ones, and "
                             "docs/figures/ is left alone")
    parser.add_argument("--out", type=Path, default=HERE, metavar="DIR",
                        help="directory for the HDF5/JSON files and figures (default: results/)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        print("quick mode: reduced sizes, the numbers below are not the reference results")
    return args


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, name: str, args: argparse.Namespace, readme: bool = True) -> list[Path]:
    """Write ``fig`` as ``DIR/name`` and, for a full run of a figure the README shows
    (``readme``), as ``docs/figures/name``; close it. Returns the paths written."""
    paths = [args.out / name]
    if readme and not args.quick:
        DOCS_FIGURES.mkdir(parents=True, exist_ok=True)
        paths.append(DOCS_FIGURES / name)
    for path in paths:
        fig.savefig(path, dpi=FIGURE_DPI)
        print(f"wrote {path}")
    pyplot().close(fig)
    return paths


def record(sol, run_id: str, args: argparse.Namespace, **attrs):
    """The storage record of a solution, with the script's extra attributes and the run's mode."""
    from opt_protocols.solution import to_record
    rec = to_record(sol, run_id)
    rec.attrs.update(attrs)
    rec.attrs["quick"] = bool(args.quick)
    return rec


def write_runs(path: Path, records: list) -> None:
    """Rewrite ``path`` with exactly these runs (atomically) and say so."""
    from opt_protocols import storage
    storage.write_fresh(path, records)
    print(f"wrote {path} ({len(records)} runs)")
