"""Run the benchmarks and print one table.

    python benchmarks/run.py               # every benchmarks/bench_*.py
    python benchmarks/run.py simulate      # only bench_simulate.py (several names allowed)
    python benchmarks/run.py --list        # the available benchmarks
    python benchmarks/run.py --json out.json   # also write the rows as JSON

A benchmark is a module ``benchmarks/bench_<name>.py`` with a function ``run() -> list[dict]``.
Each row has the columns of :data:`COLUMNS`:

``benchmark``  short name of the benchmark (defaults to <name>)
``case``       what was measured
``value``      the measured number (e.g. wall time of the framework's code path)
``unit``       unit of ``value`` and ``baseline``
``baseline``   the same quantity for the baseline, measured in the same run (or None)
``ratio``      baseline / value (speed-up for times); filled in by the runner when omitted
``note``       accuracy, targets, anything needed to read the row

A benchmark that raises is reported as one row with its error; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("benchmark", "case", "value", "unit", "baseline", "ratio", "note")


def discover() -> dict[str, Path]:
    """Available benchmarks: name -> file (``bench_<name>.py`` next to this script)."""
    return {p.stem[len("bench_"):]: p for p in sorted(HERE.glob("bench_*.py"))}


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"benchmarks_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise ValueError(f"{path.name} has no run() function")
    return module


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def normalise(name: str, row: dict) -> dict:
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"benchmark {name!r}: unknown column(s) {sorted(unknown)}; columns are {COLUMNS}")
    out = {c: row.get(c) for c in COLUMNS}
    out["benchmark"] = out["benchmark"] or name
    if out["ratio"] is None and _number(out["value"]) and _number(out["baseline"]) and out["value"] != 0:
        out["ratio"] = out["baseline"] / out["value"]
    return out


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    cells = [[_fmt(r[c]) for c in COLUMNS] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(COLUMNS)]
    widths[-1] = len(COLUMNS[-1])             # the note is last and not padded
    numeric = {"value", "baseline", "ratio"}

    def line(values):
        parts = [v.rjust(w) if c in numeric else v.ljust(w) for c, v, w in zip(COLUMNS, values, widths)]
        return "  ".join(parts).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(COLUMNS), sep] + [line(c) for c in cells])


def host_line() -> str:
    """Where and under what load the numbers were taken (timings on a busy machine are noisy)."""
    try:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return (f"# {platform.node()}: {os.cpu_count()} CPUs, load average {load} (1/5/15 min) at start; "
            f"python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the opt-protocols benchmarks and print one table.")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. 'simulate'")
    parser.add_argument("--list", action="store_true", help="list the available benchmarks and exit")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    available = discover()
    if args.list:
        print("\n".join(available) if available else "(no benchmarks found)")
        return 0
    names = [n[len("bench_"):] if n.startswith("bench_") else n for n in args.names]
    names = [n[:-3] if n.endswith(".py") else n for n in names]
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; available: {', '.join(available) or 'none'}",
              file=sys.stderr)
        return 2
    selected = names or list(available)
    print(host_line())
    rows, failed = [], False
    for name in selected:
        t0 = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            result = load(name, available[name]).run()
            rows.extend(normalise(name, r) for r in result)
        except Exception as exc:  # a broken benchmark must not hide the others
            failed = True
            traceback.print_exc()
            rows.append(normalise(name, {"case": "ERROR", "note": f"{type(exc).__name__}: {exc}"}))
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
