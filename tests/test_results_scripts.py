"""Every results script (results/*.py, found by glob) runs in its quick mode and writes what it promises.

Each script runs in a subprocess with ``--quick --out <tmp>`` (the repository first on the path) and
must exit with 0, write every file its module-level ``OUTPUTS`` names into the given directory, and
nothing into results/ or docs/figures/ (quick runs never touch the committed figures). Its HDF5
files must hold runs that load, are marked as quick runs and whose solves converged.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import opt_protocols as op

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
WATCHED = (RESULTS, ROOT / "docs" / "figures")
GENERATED = (".h5", ".json", ".png")
SCRIPTS = sorted(p for p in RESULTS.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")
#: a subprocess taking longer than this has lost its quick mode (each takes ~3-15 s on 2 shared cores)
TIMEOUT_S = 300


def outputs(script: Path) -> tuple[str, ...]:
    """The script's module-level ``OUTPUTS`` (a tuple of file names), read without importing it."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "OUTPUTS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"{script.name} declares no OUTPUTS (the files it writes into --out DIR)")


def snapshot() -> dict[Path, float]:
    """The generated files in results/ and docs/figures/ with their modification times."""
    return {p: p.stat().st_mtime for d in WATCHED if d.exists() for p in d.iterdir() if p.suffix in GENERATED}


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def test_scripts_are_found():
    assert {p.stem for p in SCRIPTS} >= {"dropout", "curriculum", "dae_toy", "dae_digits", "random_features_scaling"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_quick_run_writes_its_outputs(script, tmp_path):
    promised = outputs(script)
    before = snapshot()
    res = run([str(script), "--quick", "--out", str(tmp_path)])
    assert res.returncode == 0, f"{script.name} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert "WARNING" not in res.stderr, res.stderr[-3000:]
    missing = [name for name in promised if not (tmp_path / name).is_file()]
    assert not missing, f"{script.name} did not write {missing}"
    assert snapshot() == before, f"{script.name} --quick wrote outside --out"
    for name in promised:
        if name.endswith(".h5"):
            sols = op.load(tmp_path / name)
            assert sols, name
            for sol in sols:
                quick = sol.attrs.get("quick") is True or sol.attrs.get("sweep", {}).get("name", "").endswith("-quick")
                assert quick, f"{name}: {sol.run_id} not marked as a quick run"
                assert sol.status == "optimal" and sol.verification["ok"], f"{name}: {sol.run_id} {sol.status}"


def test_run_all_passes_its_flags_on(tmp_path):
    before = snapshot()
    res = run([str(RESULTS / "run_all.py"), "curriculum", "--quick", "--out", str(tmp_path)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert all((tmp_path / name).is_file() for name in outputs(RESULTS / "curriculum.py"))
    assert snapshot() == before
    bad = run([str(RESULTS / "run_all.py"), "nosuch"])
    assert bad.returncode == 2 and "no result script 'nosuch'" in bad.stderr
