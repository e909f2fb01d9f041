"""Batch optimal-control runs: sweeps over a grid of problems, on a process pool or dask.

``sweep(spec)`` solves every problem of a sweep spec (:mod:`.spec`; a TOML file or a dict) and
appends each run to one HDF5 file as it completes (:mod:`.runner`); it resumes an interrupted
sweep, records failures and carries on, and warm-starts neighbours along a continuation axis.
Tasks run on a local process pool or a dask.distributed cluster (:mod:`.executors`, one task:
:mod:`.worker`). ``load_sweep(path)`` opens the results as an xarray Dataset on the grid
(:mod:`.analysis`). docs/sweeps.md is the user's guide.
"""
from __future__ import annotations

from .analysis import load_sweep, plot_sweep, show_sweep, sweep_rows
from .progress import SweepReport
from .runner import sweep
from .spec import SweepSpec, Task, load_spec

__all__ = ["sweep", "load_sweep", "load_spec", "plot_sweep", "show_sweep", "sweep_rows", "SweepSpec",
           "SweepReport", "Task"]
