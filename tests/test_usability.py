"""From install to analysis without surprises: interrupts, problem files, provenance, model-file
mistakes, failed runs, integrity, API edges, small-loss accuracy (each failed before its fix)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import opt_protocols as op
from opt_protocols import storage
from opt_protocols.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "linear_regression.py"


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "opt_protocols", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# ---- 1. Ctrl-C ---------------------------------------------------------------------------------

def _interrupt_when(cmd: list[str], marker: str, tmp_path: Path) -> tuple[int, float, str]:
    """Start the CLI, send SIGINT once ``marker`` appears on stderr; (exit code, seconds to exit, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "opt_protocols", *cmd], stderr=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    seen = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line and p.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            break
    time.sleep(0.5)        # inside the stage
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = -9
    rest = p.stderr.read()
    return rc, time.monotonic() - t0, "".join(seen) + rest


def test_ctrl_c_during_ipopt_stops_at_once_and_stores_nothing(tmp_path):
    """A solve that takes minutes (K = M = 3, 200 intervals): one SIGINT while IPOPT runs ends the process
    with 130 within seconds, no second attempt starts, and the results file keeps only its old run."""
    out = tmp_path / "r.h5"
    assert main(["solve", str(EXAMPLE), "-T", "2", "--control", "eta=0:2", "--intervals", "5", "-o", str(out),
                 "--run-id", "old", "-q"]) == 0
    before = out.read_bytes()
    rc, dt, err = _interrupt_when(["solve", "committee", "-p", "K=3", "-p", "M=3", "-p", "sigma=0.3", "-T", "60",
                                   "--control", "eta=0:3", "--intervals", "200", "-o", str(out)], "solving", tmp_path)
    assert rc == 130, err
    assert dt < 10.0, f"took {dt:.1f} s to stop"
    assert "second attempt" not in err and "interrupted" in err
    assert out.read_bytes() == before and storage.list_runs(out) == ["old"]


def test_ctrl_c_during_validate_stops_and_keeps_the_file(tmp_path):
    out = tmp_path / "r.h5"
    assert main(["solve", "committee", "-p", "K=2", "-p", "M=2", "-p", "sigma=0.3", "-T", "20", "--control",
                 "eta=0:3", "--intervals", "20", "-o", str(out), "--run-id", "a", "-q"]) == 0
    before = out.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "opt_protocols", "validate", str(out), "--N", "3000",
                          "--seeds", "400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(8.0)          # well inside the SGD runs (400 seeds take minutes)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=60)
    assert rc == 130 and time.monotonic() - t0 < 5.0
    assert out.read_bytes() == before


def test_sgd_in_chunks_is_the_same_run(monkeypatch):
    """The committee SGD runs in chunks of steps (so Ctrl-C is seen between them): same numbers."""
    from opt_protocols.models import committee
    m = op.load_model("committee", K=2, M=2, sigma=0.3)
    runs = []
    for chunk in (10**9, 777):
        monkeypatch.setattr(committee, "SGD_CHUNK_STEPS", chunk)
        runs.append(op.simulate_sgd(m, {"eta": 0.5, "r": 0.8}, 3.0, N=500, seeds=2, n_out=7).x)
    np.testing.assert_array_equal(runs[0], runs[1])


# ---- 3. problem files --------------------------------------------------------------------------

@pytest.mark.parametrize("text, bad", [("intervls = 50\n", "intervls"), ("[fixd]\neta = 1.0\n", "fixd")])
def test_unknown_keys_in_a_problem_file_are_errors(tmp_path, text, bad):
    cfg = tmp_path / "p.toml"
    cfg.write_text('model = "committee"\nt_final = 2.0\n' + text + '[controls]\neta = [0.0, 3.0]\n')
    line = _one_line_error(_cli("solve", "-c", str(cfg), "-o", str(tmp_path / "r.h5")))
    assert repr(bad) in line and "allowed" in line and "intervals" in line


def test_unknown_method_option_in_a_problem_file(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('model = "committee"\nt_final = 2.0\n[controls]\neta = [0.0, 3.0]\n'
                   '[method]\nname = "collocation"\nintervalz = 5\n')
    line = _one_line_error(_cli("solve", "-c", str(cfg), "-o", str(tmp_path / "r.h5")))
    assert "'intervalz'" in line and "degree" in line


# ---- 4. provenance -----------------------------------------------------------------------------

def test_validate_keeps_created_and_refuses_a_changed_model_file(tmp_path):
    model = tmp_path / "lin.py"
    shutil.copy(EXAMPLE, model)
    out = tmp_path / "r.h5"
    assert main(["solve", str(model), "-p", "sigma=0.2", "-T", "2", "--control", "eta=0:2", "--intervals", "5",
                 "-o", str(out), "--run-id", "a", "-q"]) == 0
    created = op.load(out, "a").attrs["created"]
    assert op.load(out, "a").attrs["model_code"] == EXAMPLE.read_text()
    time.sleep(1.1)
    assert main(["validate", str(out), "--N", "200", "--seeds", "2"]) == 0
    back = op.load(out, "a")
    assert back.attrs["created"] == created and back.validation is not None
    assert back.to_xarray().attrs["created"] == created
    # an edit of the model file after the run: validate refuses with one line
    model.write_text(model.read_text().replace("out[1] = eta * (T - R)", "out[1] = 1.5 * eta * (T - R)"))
    line = _one_line_error(_cli("validate", str(out), "--N", "200", "--seeds", "2"))
    assert "changed since run a was made" in line


def test_an_unsaved_solution_reports_when_it_was_made(linear_solution):
    created = linear_solution.to_xarray().attrs["created"]
    time.sleep(1.1)
    assert linear_solution.to_xarray().attrs["created"] == created


@pytest.fixture(scope="module")
def linear_solution():
    return op.solve(str(EXAMPLE), t_final=2.0, controls={"eta": (0, 2)}, intervals=5, params={"sigma": 0.2})


# ---- 5. mistakes in a model file ---------------------------------------------------------------

BASE = EXAMPLE.read_text()
MISTAKES = {
    "syntax": (BASE.replace("def loss(x, c, dims):", "def loss(x, c, dims)"), "syntax error"),
    "numpy_array": (BASE.replace("out = ops.zeros(2)", "out = np.zeros(2)"), "use ops.zeros(n)"),
    "python_if": (BASE.replace("    out = ops.zeros(2)\n", "    out = ops.zeros(2)\n    if Q > 0.5:\n"
                                                             "        eta = eta * 0.5\n"), "ops.if_else"),
    "index": (BASE.replace("out[1] = eta * (T - R)", "out[1] = eta * (T - R) + x[5]"), "index out of range"),
    "no_loss": (BASE.replace("def loss(x, c, dims):", "def lossx(x, c, dims):"), "lacks loss(x, c, dims)"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_model_file_mistakes_give_one_line_with_file_line_and_fix(tmp_path, case):
    text, fix = MISTAKES[case]
    path = tmp_path / f"{case}.py"
    path.write_text(text)
    line = _one_line_error(_cli("solve", str(path), "-T", "2", "--control", "eta=0:2", "--intervals", "5",
                                "-o", str(tmp_path / "r.h5")))
    assert str(path) in line and fix in line
    if case != "no_loss":
        lineno = int(line.split(f"{path}:")[1].split(":")[0])
        assert 1 <= lineno <= len(text.splitlines())


# ---- 6./7. failed runs and show ----------------------------------------------------------------

def test_failed_runs_are_shown_and_plotted_as_failed(tmp_path, capsys):
    out = tmp_path / "r.h5"
    m = op.load_model("committee", K=2, M=2, sigma=0.3)
    bad = op.solve(m, t_final=10.0, controls={"eta": (0, 3)}, intervals=10, solver_options={"ipopt.max_iter": 3})
    assert bad.status == "failed" and np.isnan(bad.objective)
    bad.save(out, run_id="bad")
    good = op.solve(op.load_model("committee", K=2, M=2, sigma=0.1), t_final=10.0, controls={"eta": (0, 3)},
                    intervals=10)
    good.save(out, run_id="good")
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(ln for ln in text.splitlines() if ln.startswith("bad"))
    assert "failed" in row and " 0 " not in row and "nan" not in row
    assert f"{bad.baselines['best_constant'].objective:.7g}" in row        # the computed baseline is shown
    assert "sigma=0.3" in row and "sigma=0.1" in text                     # the parameter that differs
    assert main(["show", str(out), "--status", "optimal"]) == 0
    assert "bad" not in capsys.readouterr().out
    fig = __import__("opt_protocols.plot", fromlist=["plot_solution"]).plot_solution(op.load(out, "bad"))
    assert "failed" in fig._suptitle.get_text()
    assert not any("optimal" in t.get_text() for ax in fig.axes for t in ax.get_legend_handles_labels()[1:][0]
                   if hasattr(t, "get_text"))


# ---- 8. integrity ------------------------------------------------------------------------------

def _data_offset(path, dataset: str) -> int:
    import h5py
    with h5py.File(path, "r") as f:
        return int(f[dataset].id.get_chunk_info(0).byte_offset)


def test_corrupted_results_file_is_an_error(tmp_path, linear_solution):
    """2000 zero bytes over a run's data: refused with one line (the file's checksum), never read."""
    out = tmp_path / "r.h5"
    linear_solution.save(out, run_id="a")
    data = bytearray(out.read_bytes())
    mid = _data_offset(out, "runs/a/x_sim")
    assert any(data[mid:mid + 2000])
    data[mid:mid + 2000] = bytes(2000)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))
    with pytest.raises(storage.StorageError, match="corrupt"):
        op.load(bad)
    line = _one_line_error(_cli("show", str(bad)))
    assert "corrupt" in line


def test_a_corrupted_chunk_names_its_run(tmp_path, linear_solution):
    """Inside the file, a damaged numeric dataset fails its Fletcher-32 checksum and names the run."""
    out = tmp_path / "r.h5"
    linear_solution.save(out, run_id="a")
    offset = _data_offset(out, "runs/a/x_sim")
    data = bytearray(out.read_bytes())
    data[offset:offset + 64] = bytes(64)
    out.write_bytes(bytes(data))
    storage._seal(str(out))      # the file checksum is made to match: only the dataset checksum is left
    with pytest.raises(storage.StorageError, match="run 'a' is corrupt: 'x_sim'"):
        op.load(out)


# ---- 9. API and CLI edges ----------------------------------------------------------------------

def test_api_edges():
    m = op.load_model("committee", K=2, M=1, sigma=0.2)
    with pytest.raises(ValueError, match="intervals = 2.5"):
        op.solve(m, t_final=1.0, controls={"r": (0, 1)}, intervals=2.5)
    sol = op.solve(m, m.initial_state(Q=np.zeros((2, 2)), R=np.zeros((2, 1))), 1.0, controls=["r"], intervals=4)
    assert sol.spec["controls"] == {"r": [0.0, 1.0]}
    with pytest.raises(ValueError, match="finite bounds"):
        op.solve(m, t_final=1.0, controls=["eta"], intervals=4)
    with pytest.raises(ValueError, match="seeds = 1"):
        op.validate(sol, N=100, seeds=1)
    with pytest.raises(ValueError, match="option 'degree' is not used by method Adjoint"):
        op.solve("random_features", t_final=10, controls={"eta": (0, 2)}, method="adjoint", intervals=5, degree=3)


def test_cli_edges():
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"opt-protocols {op.__version__}"
    r = _cli("solve", "--help")
    assert r.returncode == 0 and "(default: 2000)" in r.stdout and "--family" in r.stdout
    r = _cli("models")
    assert r.returncode == 0
    for line in r.stdout.splitlines():
        if line.startswith("    "):
            assert line.rstrip().endswith("."), line       # whole sentences, not cut


# ---- 10. accuracy at small losses --------------------------------------------------------------

def test_small_losses_keep_their_relative_accuracy():
    """Noise-free committee K = M = 2 at eta = 1: eg falls to 6.6e-9 at alpha = 260. With the default
    tolerances the loss is accurate to 1e-5 relative (state tolerances alone gave 5e-3, measured);
    the reference is dopri5 at rtol 1e-13, whose own error is below 1e-9 relative here."""
    m = op.load_model("committee", K=2, M=2, sigma=0.0)
    ref = op.simulate(m, None, {"eta": 1.0}, 260.0, n_out=2, rtol=1e-13, atol=1e-16, loss_atol=1e-30)
    assert 1e-9 < ref.final_loss < 1e-8
    default = op.simulate(m, None, {"eta": 1.0}, 260.0, n_out=2)
    states_only = op.simulate(m, None, {"eta": 1.0}, 260.0, n_out=2, loss_rtol=0.0)
    assert abs(default.final_loss / ref.final_loss - 1) < 1e-5
    assert abs(states_only.final_loss / ref.final_loss - 1) > 1e-3      # what the loss control fixes


# ---- 11. the repository stands alone -----------------------------------------------------------

#: What a reference outside the repository would look like: the sibling folder the project was specified
#: in, and its science notes (assembled here, so that this file does not contain them itself).
OUTSIDE = ("/".join(("..", "shared")), "SCIENCE" + ".md")


def test_nothing_refers_outside_the_repository():
    offenders = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".toml", ".cfg") or ".git" in path.parts or "build" in path.parts:
            continue
        text = path.read_text(errors="replace")
        if any(name in text for name in OUTSIDE):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], offenders
    assert (ROOT / "LICENSE").is_file() and "MIT" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "docs" / "models.md").is_file()


# ---- 12. figures name their problem -------------------------------------------------------------

def test_figures_name_the_problem_and_draw_controls_on_their_range():
    m = op.load_model("committee", K=2, M=1, sigma=0.2)
    x0 = m.initial_state(Q=np.zeros((2, 2)), R=np.zeros((2, 1)))
    sol = op.solve(m, x0, 5.0, controls={"r": (0, 1)}, fixed={"eta": 1.0}, static={"p_test": (0, 1)}, intervals=10)
    from opt_protocols.plot import plot_solution
    fig = plot_solution(sol)
    title = fig._suptitle.get_text()
    assert "committee" in title and "sigma=0.2" in title and "alpha_F = 5" in title and "collocation" in title
    ax_r, ax_loss = fig.axes[0], fig.axes[1]
    lo, hi = ax_r.get_ylim()
    assert lo < 0.0 and hi > 1.0                  # the whole admissible range [0, 1], not auto-scaled
    labels = ax_r.get_legend_handles_labels()[1]
    assert any("fixed eta=1" in lab and "static p_test=" in lab for lab in labels)
    assert ax_loss.get_ylabel() == "eg"


def test_example_walkthrough_shows_the_step_signature():
    text = (ROOT / "examples" / "README.md").read_text()
    assert "def step(x, u, c, dims)" in text
    readme = (ROOT / "README.md").read_text()
    for arg in ("`method`", "`baselines`", "`solver_options`", "`verify`", "`progress`", "`families`"):
        assert arg in readme, arg


def test_layout_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in ("baseline_loss", "x_sim", "interval_start", "open_datatree"):
        assert name in readme, name
