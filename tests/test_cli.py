"""The opt-protocols command line: the main job, and one-line errors with exit code 2."""
import subprocess
import sys

import pytest

from opt_protocols.cli import main


def run(*args):
    """Run the CLI in a subprocess (so exit codes and stderr are the real ones)."""
    return subprocess.run([sys.executable, "-m", "opt_protocols.cli", *args], capture_output=True, text=True)


def test_models_lists_and_describes(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "committee" in out and "curriculum" in out
    assert main(["models", "committee"]) == 0
    out = capsys.readouterr().out
    assert "an integer in [1, 32]" in out and "eta" in out


def test_simulate_prints_curve(tmp_path, capsys):
    csv = tmp_path / "curve.csv"
    assert main(["simulate", "committee", "-p", "K=2", "-p", "M=2", "-T", "10", "--control", "eta=0.5",
                 "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[0] == "0"
    assert csv.read_text().startswith("alpha,loss,eta,r,Q[0,0]")


def test_solve_show_plot_validate(tmp_path, capsys):
    out = tmp_path / "r.h5"
    cfg = tmp_path / "dropout.toml"
    cfg.write_text("""
model = "committee"
t_final = 5.0
intervals = 50
[params]
K = 2
M = 1
sigma = 0.2
[initial]
Q = [[0.0, 0.0], [0.0, 0.0]]
R = [[0.0], [0.0]]
[controls]
r = [0.0, 1.0]
[fixed]
eta = 1.0
[static]
p_test = [0.0, 1.0]
""")
    assert main(["solve", "-c", str(cfg), "-o", str(out), "--run-id", "dropout", "-q"]) == 0
    text = capsys.readouterr().out
    assert "optimal (Solve_Succeeded), objective 0.023795" in text
    assert "baseline best_constant: 0.025298" in text
    assert main(["show", str(out)]) == 0
    assert "dropout" in capsys.readouterr().out
    png = tmp_path / "fig.png"
    assert main(["plot", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000
    assert main(["validate", str(out), "--N", "500", "--seeds", "2"]) == 0
    assert "finite-N SGD check (N = 500, 2 seeds)" in capsys.readouterr().out


def test_failed_solve_exits_1_and_is_stored(tmp_path):
    """IPOPT stopped early: exit code 1, one error line, and the run stored with status 'failed'."""
    out = tmp_path / "r.h5"
    cfg = tmp_path / "opts.toml"
    cfg.write_text("[solver_options]\n\"ipopt.max_iter\" = 2\n")
    r = run("solve", "committee", "-c", str(cfg), "-T", "10", "--control", "eta=0:3", "--intervals", "10",
            "-o", str(out), "-q", "--run-id", "x")
    assert r.returncode == 1
    assert "error: the solve failed (Maximum_Iterations_Exceeded)" in r.stderr
    r = run("show", str(out))
    assert r.returncode == 0 and "failed" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["solve", "nosuch", "-T", "5"], "error: unknown model 'nosuch'"),
    (["solve", "committee", "-T", "5", "--control", "lr=0:1"], "error: model 'committee' has no control 'lr'"),
    (["solve", "committee", "-T", "5", "--control", "eta=3:0"], "lower bound 3.0 exceeds upper bound 0.0"),
    (["solve", "committee", "-T", "-1", "--control", "eta=0:3"], "error: t_final = -1 must be a positive number"),
    (["solve", "committee", "-T", "5", "--control", "eta=0:3", "-p", "K=0"], "parameter 'K' = 0 is out of range"),
    (["solve", "committee", "-T", "5", "--control", "eta=0:3", "--initial", "R=[[3,0],[0,0]]"],
     "not a valid covariance"),
    (["simulate", "committee", "-T", "5", "--control", "r=2"], "values in [2, 2] leave the admissible range"),
    (["show", "no/such/file.h5"], "no such file"),
])
def test_user_errors_are_one_line_exit_2(args, message):
    r = run(*args)
    assert r.returncode == 2
    err = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert len(err) == 1 and message in err[0]
    assert "Traceback" not in r.stderr


def test_foreign_file_exit_2(tmp_path):
    import h5py
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["a"] = 1
    r = run("show", str(p))
    assert r.returncode == 2 and "not an opt-protocols results file" in r.stderr
    r = run("plot", str(tmp_path / "missing.h5"))
    assert r.returncode == 2 and "no such file" in r.stderr
