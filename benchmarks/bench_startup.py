"""Start-up time: ``import opt_protocols`` and ``opt-protocols --help`` in fresh processes.

Targets (architecture issue): import under 0.7 s, ``--help`` under 0.5 s. Baseline, measured in the
same run: the same process importing everything the package used to import eagerly (CasADi, h5py,
the numba integrators, the solve pipeline and the storage layer). Each figure is the median of
fresh-process runs (Python's own start-up included).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 7
TARGETS = {"import": 0.7, "help": 0.5}
EAGER = ("import opt_protocols, casadi, h5py; import opt_protocols.integrate, opt_protocols.control.solve, "
         "opt_protocols.control.collocation, opt_protocols.solution, opt_protocols.storage, opt_protocols.ad")


def _median_seconds(args: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run() -> list[dict]:
    py = sys.executable
    base = _median_seconds([py, "-c", EAGER])
    imp = _median_seconds([py, "-c", "import opt_protocols"])
    helped = _median_seconds([py, "-m", "opt_protocols", "--help"])
    bare = _median_seconds([py, "-c", "pass"])
    rows = []
    for key, value in (("import", imp), ("help", helped)):
        met = "MET" if value < TARGETS[key] else "MISSED"
        case = "import opt_protocols" if key == "import" else "opt-protocols --help (python -m)"
        rows.append({"case": case, "value": value, "unit": "s", "baseline": base,
                     "note": f"target < {TARGETS[key]:g} s {met}; baseline: eager import of casadi, h5py, "
                             f"integrators, pipeline, storage; bare python start {bare:.3f} s"})
    return rows
