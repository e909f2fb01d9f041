"""Regenerate every result of this folder: python results/run_all.py [name ...] [--quick] [--out DIR]

Runs each script results/<name>.py (all but this one and the ``_`` helpers) in turn, from the
repository root, passing ``--quick`` and ``--out DIR`` on; each rewrites its own HDF5/JSON files and
figures in DIR (default: results/), and without ``--quick`` the README's figures in docs/figures/.
Prints the wall time of each; the exit code is 1 if any script failed.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The result scripts: every results/*.py but this driver and the helper modules (``_*.py``)."""
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the results (every script, or the named ones).")
    parser.add_argument("names", nargs="*", help="scripts to run (default: all), e.g. 'dropout'")
    parser.add_argument("--quick", action="store_true", help="reduced sizes (passed to every script)")
    parser.add_argument("--out", metavar="DIR", help="output directory (passed to every script; default results/)")
    args = parser.parse_args(argv)
    todo = scripts()
    if args.names:
        unknown = set(args.names) - {p.stem for p in todo}
        if unknown:
            print(f"error: no result script {sorted(unknown)[0]!r}; have {', '.join(p.stem for p in todo)}",
                  file=sys.stderr)
            return 2
        todo = [p for p in todo if p.stem in args.names]
    flags = (["--quick"] if args.quick else []) + (["--out", str(Path(args.out).resolve())] if args.out else [])
    failed = []
    for path in tqdm(todo, desc="results", unit="script"):
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(path), *flags], cwd=HERE.parent).returncode
        tqdm.write(f"{path.name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f} s")
        if rc:
            failed.append(path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
