"""Regenerate every result of this folder: python results/run_all.py [name ...]

Runs each script results/<name>.py (all but this one) in turn, from the repository root; each
rewrites its own results/<name>.h5 and figures. Prints the wall time of each.
"""
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    if names:
        unknown = set(names) - {p.stem for p in scripts}
        if unknown:
            print(f"error: no result script {sorted(unknown)[0]!r}; have {', '.join(p.stem for p in scripts)}",
                  file=sys.stderr)
            return 2
        scripts = [p for p in scripts if p.stem in names]
    failed = []
    for path in tqdm(scripts, desc="results", unit="script"):
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(path)], cwd=HERE.parent).returncode
        tqdm.write(f"{path.name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f} s")
        if rc:
            failed.append(path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
