"""The layout shows the architecture: built-in models inside the package, one pipeline that chooses
its method and says so, and an output layer that is data (no simulator, no model loader)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import opt_protocols as op

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "opt_protocols"


def _imports(path: Path) -> set[str]:
    """Modules a file imports (relative imports resolved inside opt_protocols), at any depth."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(ROOT).with_suffix("").parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - node.level])
                mod = ".".join(base + ([node.module] if node.module else []))
                out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
            else:
                out.add(node.module or "")
    return out


@pytest.mark.parametrize("module", ["storage.py", "solution.py", "trajectory.py", "protocol.py"])
def test_the_output_layer_imports_no_simulator_and_no_model_loader(module):
    imported = _imports(PKG / module)
    for forbidden in ("opt_protocols.simulate", "opt_protocols.model", "opt_protocols.integrate",
                      "opt_protocols.control", "opt_protocols.validate", "casadi", "numba"):
        assert not any(m == forbidden or m.startswith(forbidden + ".") for m in imported), (module, forbidden)


def test_a_users_models_package_does_not_shadow_the_built_ins(tmp_path):
    """ML projects often have a models/ folder of their own: the built-in names still load."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("raise ImportError('the user package')\n")
    (tmp_path / "models" / "committee.py").write_text("x = 1\n")
    code = "import opt_protocols as op; m = op.load_model('committee', K=2, M=2); print(m.name, m.n_x)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["committee", "7"]
    assert op.load_model("committee").module.__name__ == "opt_protocols.models.committee"


def test_auto_picks_the_method_from_the_problem_size_and_says_why():
    ode = op.solve("committee", t_final=2.0, controls={"eta": (0, 3)}, intervals=5)
    assert ode.method["name"] == "collocation" and ode.method["chosen"] == "auto: ODE model"
    small = op.solve("random_features", t_final=40, controls={"eta": (0, 2)}, intervals=10, params={"N": 20})
    assert small.method["name"] == "collocation" and "800 state variables <= 2000" in small.method["chosen"]
    big = op.solve("random_features", t_final=100, controls={"eta": (0, 2)}, intervals=10, params={"N": 100})
    assert big.method["name"] == "adjoint" and "10000 state variables > 2000" in big.method["chosen"]
    assert big.method["options"]["intervals"] == 10
    # the same problem, same optimum, through either method object
    both = [op.solve("random_features", t_final=40, controls={"eta": (0, 2)}, intervals=10, params={"N": 20},
                     method=meth) for meth in (op.Collocation(intervals=10), op.Adjoint(intervals=10))]
    assert both[0].objective == pytest.approx(both[1].objective, rel=1e-8)
    assert {s.stats["method"] for s in both} == {"collocation", "adjoint"}
    # one schema for verification, whatever the method
    assert set(both[0].verification) == set(both[1].verification) == {
        "quantity", "method_value", "simulated", "relative_gap", "rtol", "ok"}


def test_method_objects_validate_their_options():
    with pytest.raises(ValueError, match="scheme 'gauss'"):
        op.Collocation(scheme="gauss")
    with pytest.raises(ValueError, match="optimizer 'bfgs'"):
        op.Adjoint(optimizer="bfgs")
    with pytest.raises(ValueError, match="method Adjoint needs a discrete map"):
        op.solve("committee", t_final=2.0, controls={"eta": (0, 3)}, method=op.Adjoint(intervals=5))
    with pytest.raises(ValueError, match="option 'hops' is not used by method Collocation"):
        op.Collocation().replace(hops=3)


def test_a_solution_saves_loads_and_plots_after_its_model_file_is_gone(tmp_path):
    """Saving needs no simulator and no model file: the curves were computed at solve time."""
    src = ROOT / "examples" / "linear_regression.py"
    model_file = tmp_path / "my_model.py"
    model_file.write_text(src.read_text())
    sol = op.solve(str(model_file), t_final=2.0, controls={"eta": (0, 2)}, intervals=5, params={"sigma": 0.2})
    model_file.unlink()
    out = tmp_path / "r.h5"
    sol.save(out, run_id="a")
    back = op.load(out, "a")
    assert back.baselines["best_constant"].loss is not None
    assert back.attrs["model_code"] == src.read_text()
    from opt_protocols.plot import plot_solution
    plot_solution(back, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0
