"""Sweeps: spec validation and expansion, planning, the process pool and a dask LocalCluster,
failures recorded, lost workers retried, resume after SIGKILL and Ctrl-C, analysis as xarray."""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import opt_protocols as op
from opt_protocols import storage
from opt_protocols.batch import load_spec, load_sweep, plot_sweep, sweep, sweep_rows
from opt_protocols.batch.cli import main as batch_main
from opt_protocols.batch.progress import Progress
from opt_protocols.batch.runner import plan
from opt_protocols.batch.spec import axis_values
from opt_protocols.control.problem import make_problem
from opt_protocols.protocol import as_protocol

ROOT = Path(__file__).resolve().parents[1]
FAULTS = str(ROOT / "tests" / "models_for_tests" / "sweep_faults.py")
#: IPOPT stops at a KKT error of 1e-10; on these objectives (~0.1) warm- and cold-started optima
#: agree to ~1e-12 (measured), so 1e-8 relative is far above the solver's noise and far below any
#: real difference between protocols.
AGREE = 1e-8


def base_spec(**changes) -> dict:
    spec = {"name": "faults", "model": FAULTS,
            "problem": {"controls": {"eta": [0.0, 3.0]}},
            "method": {"name": "collocation", "intervals": 10},
            "grid": {"t_final": [1.0, 2.0, 3.0, 4.0], "sigma": [0.2, 0.5]},
            "continuation": {"axis": "t_final"}}
    spec.update(changes)
    return spec


# ------------------------------------------------------------------------------ the spec


def test_axis_values_lists_ranges_and_rounding():
    assert axis_values("a", [3, 1, 2]) == (3, 1, 2)
    assert axis_values("a", {"linear": [0.0, 1.0, 5]}) == (0.0, 0.25, 0.5, 0.75, 1.0)
    log = axis_values("a", {"log": [1.0, 1000.0, 4]})
    assert log == (1.0, 10.0, 100.0, 1000.0)          # exact: values kept to 12 significant digits
    assert axis_values("T", {"log": [100, 10000, 5], "integer": True}) == (100, 316, 1000, 3162, 10000)
    with pytest.raises(ValueError, match=r"grid axis 'a': unknown key 'step'; allowed: values, linear, log, integer"):
        axis_values("a", {"linear": [0, 1, 3], "step": 1})
    with pytest.raises(ValueError, match="rounding to integers repeats values"):
        axis_values("a", {"linear": [1, 2, 5], "integer": True})
    with pytest.raises(ValueError, match="start and stop must be > 0"):
        axis_values("a", {"log": [0, 1, 3]})
    with pytest.raises(ValueError, match="repeated values"):
        axis_values("a", [1, 1.0])


@pytest.mark.parametrize("change, message", [
    ({"grids": {}}, r"top level: unknown key 'grids'; allowed: name, model, out, params, initial, problem, method, "
                    r"grid, continuation"),
    ({"problem": {"control": {"eta": [0, 1]}}}, r"problem: unknown key 'control'; allowed: t_final, controls, "),
    ({"method": {"name": "collocation", "interval": 5}}, r"method \(collocation\): unknown key 'interval'; "
                                                         r"allowed: name, intervals, degree"),
    ({"method": {"name": "shooting"}}, r"method: name = 'shooting'; allowed: auto, collocation, adjoint"),
    ({"grid": {"width": [1, 2]}}, r"grid axis 'width': not a problem keyword, method option or model parameter"),
    ({"grid": {"fixed.eta": [1, 2], "bogus.x": [1]}}, r"grid axis 'bogus.x': unknown section 'bogus'"),
    ({"continuation": {"axis": "sigma", "order": "up"}}, r"continuation: unknown key 'order'; allowed: axis"),
    ({"continuation": "delta"}, r"continuation: axis = 'delta' is not a grid axis; axes: t_final, sigma"),
    ({"grid": {"t_final": [1.0], "zip": [{"sigma": [0.1, 0.2], "delay": [0.0]}]}}, "zipped axes need equal lengths"),
])
def test_unknown_keys_and_bad_values_are_errors_naming_them(change, message):
    with pytest.raises(ValueError, match=message):
        load_spec(base_spec(**change))


def test_a_bad_spec_leaves_no_worker_behind(tmp_path):
    """sweep() starts the pool's workers while it validates the spec; a bad spec stops them."""
    import multiprocessing as mp
    with pytest.raises(ValueError, match="unknown key 'grids'"):
        sweep(base_spec(grids={}), out=tmp_path / "s.h5", workers=2, progress=False)
    assert not [p for p in mp.active_children() if p.name == "opt-protocols-worker"]
    assert not (tmp_path / "s.h5").exists()


def test_an_axis_must_not_repeat_a_fixed_value():
    with pytest.raises(ValueError, match=r"grid axis 'sigma': params.sigma is also given in the spec's \[params\]"):
        load_spec(base_spec(params={"sigma": 0.1}))
    with pytest.raises(ValueError, match=r"problem.t_final is also given in the spec's \[problem\]"):
        load_spec(base_spec(problem={"t_final": 2.0, "controls": {"eta": [0, 3]}}))


def test_every_grid_point_is_validated_before_anything_runs():
    with pytest.raises(ValueError, match=r"grid point t_final = 1.0, sigma = -1.0: parameter 'sigma'"):
        load_spec(base_spec(grid={"t_final": [1.0], "sigma": [0.5, -1.0]}))
    with pytest.raises(ValueError, match=r"grid point t_final = 2.5: .*model 'sweep_faults' has no control 'lr'"):
        load_spec(base_spec(grid={"t_final": [2.5]}, problem={"controls": {"lr": [0, 1]}}))
    with pytest.raises(ValueError, match="schedule family 'cosin'"):
        load_spec(base_spec(problem={"controls": {"eta": [0, 3]}, "families": ["cosin"]}))


def test_crossed_and_zipped_axes_and_their_targets():
    s = load_spec(base_spec(method={"name": "collocation"},
                            grid={"t_final": [1.0, 2.0], "method.intervals": [5, 10],
                                  "zip": [{"sigma": [0.1, 0.2, 0.3], "delay": [0.0, 0.0, 0.0]}]}))
    assert [d.name for d in s.dims] == ["t_final", "method.intervals", "sigma"]
    assert len(s.tasks) == 2 * 2 * 3
    t = s.tasks[-1]
    assert t.coords == {"t_final": 2.0, "method.intervals": 10, "sigma": 0.3, "delay": 0.0}
    assert t.spec["problem"]["t_final"] == 2.0 and t.spec["method"]["intervals"] == 10
    assert t.spec["params"] == {"sigma": 0.3, "delay": 0.0}
    chains = s.chains()
    assert len(chains) == 6 and all([c.coords["t_final"] for c in chain] == [1.0, 2.0] for chain in chains)
    fixed = load_spec({"model": "committee", "params": {"K": 2, "M": 1},
                       "problem": {"t_final": 2.0, "controls": {"r": [0, 1]}}, "grid": {"fixed.eta": [0.5, 1.0]}})
    assert [t.spec["problem"]["fixed"] for t in fixed.tasks] == [{"eta": 0.5}, {"eta": 1.0}]


def test_run_ids_are_stable_hashes_of_the_task_spec():
    a = load_spec(base_spec())
    again = load_spec({**base_spec(name="other", out="x.h5", continuation=None),
                       "grid": {"sigma": [0.2, 0.5], "t_final": [1, 2, 3, 4]}})
    assert {t.run_id for t in a.tasks} == {t.run_id for t in again.tasks}     # order, names, 2 vs 2.0
    assert len({t.run_id for t in a.tasks}) == len(a.tasks)
    assert all(re.fullmatch(r"sweep_faults-[0-9a-f]{16}", t.run_id) for t in a.tasks)
    other = load_spec(base_spec(method={"name": "collocation", "intervals": 11}))
    assert not {t.run_id for t in a.tasks} & {t.run_id for t in other.tasks}


def test_plan_cuts_one_chain_for_the_workers_and_resumes_from_stored_runs():
    s = load_spec(base_spec(grid={"t_final": [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]}))
    ids = [t.run_id for t in s.tasks]
    segs = plan(s, {}, n_workers=2)
    assert [[t.run_id for t in seg.tasks] for seg in segs] == [ids[:3], ids[3:]]
    assert [seg.warm_id for seg in segs] == [None, None]
    stored = {ids[0]: "optimal", ids[1]: "failed", ids[3]: "optimal"}
    segs = plan(s, stored, n_workers=1)
    assert [[t.run_id for t in seg.tasks] for seg in segs] == [[ids[2]], ids[4:]]
    assert [seg.warm_id for seg in segs] == [ids[0], ids[3]]      # the last successful run before each
    segs = plan(s, stored, n_workers=1, retry_failed=True)
    assert [[t.run_id for t in seg.tasks] for seg in segs] == [ids[1:3], ids[4:]]
    assert plan(s, dict.fromkeys(ids, "optimal"), n_workers=2) == []


def test_stored_trajectories_can_be_thinned():
    from opt_protocols.batch.runner import thin
    sol = op.solve(op.load_model(FAULTS), t_final=2.0, controls={"eta": (0, 3)}, intervals=10)
    n = len(sol.trajectory.t)
    small = thin(sol, 5)
    assert n > 5 and len(small.trajectory.t) == 5 and small.trajectory.x.shape == (5, 2)
    np.testing.assert_array_equal(small.trajectory.t[[0, -1]], sol.trajectory.t[[0, -1]])
    assert small.baselines["best_constant"].loss.shape == (5,) and len(sol.trajectory.t) == n   # a copy
    assert small.baselines["best_constant"].loss[-1] == sol.baselines["best_constant"].loss[-1]
    assert thin(sol, None) is sol and load_spec(base_spec(store={"trajectory_points": 5})).trajectory_points == 5
    with pytest.raises(ValueError, match=r"store: trajectory_points = 1: expected a whole number >= 2"):
        load_spec(base_spec(store={"trajectory_points": 1}))


def test_progress_on_a_non_terminal_is_plain_lines():
    out = io.StringIO()
    p = Progress(5, done=1, failed=1, desc="demo", stream=out, interval=0.0)
    p.update(True)
    p.update(False)
    p.update(True)
    p.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 4
    assert lines[0].startswith("demo:  40%") and "done 1, failed 1, remaining 3" in lines[0]
    assert lines[-1].startswith("demo: 100%") and "done 3, failed 2, remaining 0" in lines[-1]
    assert re.search(r"\[\d\d:\d\d<", lines[1])        # elapsed < estimated time left


# --------------------------------------------------------------------- sweeps on the process pool


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "pool.h5"
    report = sweep(base_spec(), out=out, workers=2, progress=False)
    return out, report


def test_pool_sweep_matches_direct_solves_and_loads_as_xarray(pool_sweep):
    out, report = pool_sweep
    assert report.complete and len(report.ran) == 8 and report.n_workers == 2
    ds = load_sweep(out)
    assert ds.objective.dims == ("t_final", "sigma") and ds.objective.shape == (4, 2)
    assert list(ds.t_final.values) == [1.0, 2.0, 3.0, 4.0] and list(ds.sigma.values) == [0.2, 0.5]
    assert (ds.status == "optimal").all()
    for T in (1.0, 4.0):
        for sigma in (0.2, 0.5):
            direct = op.solve(op.load_model(FAULTS, sigma=sigma), t_final=T, controls={"eta": (0, 3)}, intervals=10)
            got = ds.sel(t_final=T, sigma=sigma)
            assert abs(float(got.objective) - direct.objective) < AGREE * direct.objective
            assert float(got.baseline_objective.sel(baseline="best_constant")) == pytest.approx(
                direct.baselines["best_constant"].objective, rel=1e-9)
            np.testing.assert_allclose(got.eta.values, direct.controls["eta"], atol=1e-6)   # s = interval midpoints
            assert float(got.loss_curve[-1]) == pytest.approx(direct.objective, rel=1e-6)
    assert ds.eta.dims == ("t_final", "sigma", "s") and ds.s.size == 10
    assert (ds.gain > 0).all() and float(ds.gain.max()) < 0.2
    # along the continuation axis each run started from its predecessor (one chain per sigma on 2 workers)
    runs = {rid: a for rid, a in storage.read_attrs(out).items()}
    by_coord = {(a["sweep"]["coords"]["t_final"], a["sweep"]["coords"]["sigma"]): (rid, a) for rid, a in runs.items()}
    assert by_coord[(1.0, 0.2)][1]["sweep"]["warm_start"] == "baseline"
    assert by_coord[(2.0, 0.2)][1]["sweep"]["warm_start"] == by_coord[(1.0, 0.2)][0]
    assert by_coord[(4.0, 0.5)][1]["sweep"]["warm_start"] == by_coord[(3.0, 0.5)][0]
    assert by_coord[(4.0, 0.5)][1]["sweep"]["task"]["problem"]["t_final"] == 4.0
    # the runs are ordinary solutions too
    sols = op.load(out)
    assert len(sols) == 8 and {s.run_id for s in sols} == set(runs)


def test_rerun_skips_finished_runs(pool_sweep):
    out, _ = pool_sweep
    before = storage.list_runs(out)
    report = sweep(base_spec(), out=out, workers=2, progress=False)
    assert report.ran == [] and report.skipped == 8 and report.executor == "nothing to run"
    assert storage.list_runs(out) == before


def test_show_filters_and_plot(pool_sweep, tmp_path, capsys):
    out, _ = pool_sweep
    axes, rows = sweep_rows(out, ["sigma=0.2", "t_final>=2"])
    assert axes == ["t_final", "sigma"] and sorted(r["t_final"] for r in rows) == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="filter on 'width': not an axis of sweep 'faults'"):
        sweep_rows(out, ["width=1"])
    assert batch_main(["show", str(out), "-w", "status!=optimal"]) == 0
    assert "0 run(s) shown" in capsys.readouterr().out
    png = plot_sweep(out, tmp_path / "loss.png")
    assert Path(png).stat().st_size > 10_000
    with pytest.raises(ValueError, match="axes sigma take several values"):
        plot_sweep(out, tmp_path / "x.png", x="t_final", hue="t_final")


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "faults.h5"
    faults = {"fail": [0.0, 1.0, 0.0], "method.solver_options": [{}, {}, {"ipopt.max_iter": 1}]}
    spec = base_spec(grid={"t_final": [1.0, 2.0, 3.0], "zip": [faults]})
    report = sweep(spec, out=out, workers=2, progress=False)
    assert report.n_tasks == 9 and report.n_remaining == 0
    assert report.counts == {"optimal": 3, "error": 3, "failed": 3}
    ds = load_sweep(out)
    assert ds.objective.dims == ("t_final", "fail") and "method.solver_options" in ds.coords
    errors = ds.where(ds.fail == 1.0, drop=True)
    assert (errors.status == "error").all() and all("RuntimeError: injected failure" in m
                                                     for m in errors.message.values.ravel())
    failed = ds.isel(fail=ds.status.sel(t_final=1.0).values.tolist().index("failed"))
    assert (failed.status == "failed").all() and np.isnan(failed.objective).all()
    assert (failed.message == "Maximum_Iterations_Exceeded").all()
    assert len(op.load(out)) == 6                 # errors have no solution; op.load lists the solutions
    # a rerun leaves them alone, retry_failed solves them again (and they fail again)
    assert sweep(spec, out=out, workers=1, progress=False).ran == []
    again = sweep(spec, out=out, workers=2, progress=False, retry_failed=True)
    assert len(again.ran) == 6 and again.counts == report.counts
    assert len(storage.list_runs(out)) == 9


def test_a_lost_worker_is_replaced_and_its_task_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_TEST_CRASH_MARKER", str(tmp_path / "crashed"))
    out = tmp_path / "lost.h5"
    spec = base_spec(grid={"t_final": [1.0, 2.0], "crash": [0.0, 1.0]}, continuation=None)
    report = sweep(spec, out=out, workers=2, progress=False)
    assert (tmp_path / "crashed").exists()        # a worker really died
    assert report.complete and report.counts == {"optimal": 4}
    attempts = sorted(a["sweep"]["attempts"] for a in storage.read_attrs(out).values())
    assert attempts == [1, 1, 1, 2]


# ------------------------------------------------------------------ the driver killed, interrupted


def _spec_file(tmp_path, n: int, delay: float) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(f'name = "slow"\nmodel = "{FAULTS}"\nout = "{tmp_path / "slow.h5"}"\n'
                    f'[params]\ndelay = {delay}\n[problem]\ncontrols = {{eta = [0.0, 3.0]}}\n'
                    f'[method]\nname = "collocation"\nintervals = 8\n'
                    f'[grid]\nt_final = {{linear = [1.0, 3.0, {n}]}}\n[continuation]\naxis = "t_final"\n')
    return path


def _driver(spec: Path, *options: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "opt_protocols.batch", "sweep", str(spec), "-j", "2", *options],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_runs(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        if path.exists() and len(storage.list_runs(path)) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} runs in {path} after {timeout} s")


def test_resume_after_the_driver_is_killed(tmp_path):
    n = 12
    spec = _spec_file(tmp_path, n, delay=0.3)
    out = tmp_path / "slow.h5"
    first = _driver(spec)
    _wait_for_runs(out, 3, first)
    try:
        import psutil  # (installed with dask.distributed)
        workers = psutil.Process(first.pid).children()
    except ImportError:
        psutil, workers = None, []
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    if psutil is not None:                                    # the workers die with the driver
        assert len(workers) >= 2 and not psutil.wait_procs(workers, timeout=10)[1]
    kept = storage.list_runs(out)                 # whatever was written is whole and readable
    assert 3 <= len(kept) < n and len(op.load(out)) == len(kept)
    second = subprocess.run([sys.executable, "-m", "opt_protocols.batch", "sweep", str(spec), "-j", "2", "-q"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    runs = storage.read_attrs(out)
    expected = {t.run_id for t in load_spec(spec).tasks}
    assert set(runs) == expected and len(storage.list_runs(out)) == n      # none lost, none twice
    assert set(kept) <= set(runs)
    assert all(a["status"] == "optimal" for a in runs.values())
    # the second session solved exactly the runs the first had not written
    assert sweep(spec, workers=1, progress=False).ran == []
    pids = {a["sweep"]["worker"] for rid, a in runs.items() if rid not in kept}
    assert not pids & {a["sweep"]["worker"] for rid, a in runs.items() if rid in kept}


@pytest.mark.parametrize("options", [(), ("--cluster", "local")], ids=["pool", "dask"])
def test_ctrl_c_stops_the_driver_quickly_and_the_file_stays_consistent(tmp_path, options):
    if options:
        pytest.importorskip("distributed")
    spec = _spec_file(tmp_path, 10, delay=1.0)
    out = tmp_path / "slow.h5"
    proc = _driver(spec, *options)
    _wait_for_runs(out, 1, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    stopped = time.monotonic() - t0
    print(f"driver stopped {stopped:.2f} s after SIGINT")
    assert proc.returncode == 130 and "rerun to complete" in err
    assert stopped < 10            # liveness (about a second when the machine is idle): it does not wait for tasks
    kept = storage.list_runs(out)
    assert 1 <= len(kept) < 10 and len(op.load(out)) == len(kept)
    report = sweep(spec, workers=2, progress=False)
    assert report.complete and len(report.ran) == 10 - len(kept)


# -------------------------------------- what continuation saves, pinned to the full computations


@pytest.fixture(scope="module")
def committee():
    return op.load_model("committee", K=2, M=2, sigma=0.3)


def test_bracketed_best_constant_equals_the_full_search_along_a_continuation(committee):
    """Each horizon's best constant searched near the previous horizon's (a few simulations)
    equals the full grid-and-Brent search. Brent stops once x is known to ~sqrt(eps) |x|, and the
    objective carries the integrator's ~1e-12 noise, so the minimisers agree to ~1e-7 (1e-5 here)
    and the objectives, flat to second order there, to ~1e-14 (1e-11 here)."""
    from opt_protocols.control.baselines import best_constant
    from opt_protocols.control.evaluate import Evaluator
    previous, saved = None, 0
    for T in (5.0, 5.2, 6.0, 9.0, 14.0, 20.0, 24.8):    # steps of 0.2 (as in the benchmark) to 6
        problem = make_problem(committee, t_final=T, controls={"eta": (0.0, 3.0)})
        ev_full = Evaluator(problem)
        full = best_constant(problem, ev_full)
        if previous is not None:
            ev = Evaluator(problem)
            near = best_constant(problem, ev, near=previous.values)
            assert near.values["eta"] == pytest.approx(full.values["eta"], rel=1e-5)
            assert near.objective == pytest.approx(full.objective, rel=1e-11)
            assert near.objective == ev.objective(near.protocol, near.static)   # the reported value is exact
            saved += ev_full.n_evaluations - ev.n_evaluations
        previous = full
    assert saved > 6 * 20          # ~46 simulations per search without the bracket, ~15 with it


def test_bracket_walks_downhill_and_gives_up_at_a_bound(committee):
    from opt_protocols.control.baselines import _bracket_near, best_constant
    from opt_protocols.control.evaluate import Evaluator
    a, b, m, fm = _bracket_near(lambda x: (x - 0.3) ** 2, 2.0, 0.0, 3.0, 3.0)    # from far away
    assert a < 0.3 < b and a < m < b and fm < (a - 0.3) ** 2 and fm < (b - 0.3) ** 2
    assert _bracket_near(lambda x: -x, 1.0, 0.0, 3.0, 3.0) is None               # the minimum is at the bound
    assert _bracket_near(lambda x: x, 0.0, 0.0, 3.0, 3.0) is None
    # a minimum at the upper bound (the best constant at T = 10 is ~0.38): the full search decides
    problem = make_problem(committee, t_final=10.0, controls={"eta": (0.0, 0.3)})
    full = best_constant(problem, Evaluator(problem))
    near = best_constant(problem, Evaluator(problem), near={"eta": 0.25})
    assert full.values["eta"] == near.values["eta"] == pytest.approx(0.3, abs=1e-6)
    assert near.objective == full.objective


def test_warm_started_solve_keeps_the_cold_solves_baselines_and_optimum(committee):
    from opt_protocols.batch.worker import light
    kw = {"controls": {"eta": (0.0, 3.0)}, "intervals": 20}
    first = op.solve(committee, t_final=8.0, **kw)
    cold = op.solve(committee, t_final=8.4, **kw)
    warm = op.solve(committee, t_final=8.4, warm_start=light(first), **kw)
    assert light(first).baselines["best_constant"].loss is None                  # no curves sent along
    assert warm.objective == pytest.approx(cold.objective, rel=AGREE)
    np.testing.assert_array_equal(warm.baselines["default"].loss, cold.baselines["default"].loss)
    assert warm.baselines["default"].objective == cold.baselines["default"].objective
    assert warm.baselines["best_constant"].objective == pytest.approx(cold.baselines["best_constant"].objective,
                                                                      rel=1e-11)
    # the curve is first order in the constant, which both searches fix to ~1e-7
    np.testing.assert_allclose(warm.baselines["best_constant"].loss, cold.baselines["best_constant"].loss, rtol=1e-6)
    assert warm.stats["n_simulations"] < cold.stats["n_simulations"] - 20


def test_constant_protocols_are_the_tables_as_protocol_makes(committee):
    from opt_protocols.control.baselines import constant_protocol
    rf = op.load_model("random_features")
    for model, controls, fixed, values in [(committee, {"eta": (0.0, 3.0)}, {}, {"eta": 1.25}),
                                           (committee, {"eta": (0.0, 3.0)}, {"r": 0.5}, {"eta": 0}),
                                           (committee, {"eta": (0.0, 3.0), "r": (0.0, 1.0)}, {}, {"r": 1.0}),
                                           (rf, {"eta": (0.0, 3.0)}, {}, {"eta": 2.0})]:
        problem = make_problem(model, t_final=7.0 if model is committee else 50.0, controls=controls, fixed=fixed)
        got = constant_protocol(problem, values)
        want = as_protocol(model, {**problem.fixed, **values}, problem.horizon)
        assert got.names == want.names
        for key in ("tk", "U0", "U1"):
            np.testing.assert_array_equal(getattr(got, key), getattr(want, key))
            assert getattr(got, key).dtype == getattr(want, key).dtype
    problem = make_problem(committee, t_final=7.0, controls={"eta": (0.0, 3.0)})
    for bad in (-1.0, float("nan")):      # the same error as as_protocol's
        with pytest.raises(ValueError, match="leave the admissible range"):
            constant_protocol(problem, {"eta": bad})


def test_the_verification_simulation_is_the_fine_trajectory(committee):
    """The verified objective is the fine trajectory's last loss: the same adaptive integrator and
    tolerances as Evaluator.objective (rtol 1e-10 on the states, 1e-8 on the loss), its steps also
    ending at the output times, so the two agree to the loss tolerance (1e-8; ~4e-10 measured)."""
    from opt_protocols.control.evaluate import Evaluator
    sol = op.solve(committee, t_final=6.0, controls={"eta": (0.0, 3.0)}, intervals=20)
    v = sol.verification
    assert v["simulated"] == sol.trajectory.loss[-1]
    separate = Evaluator(make_problem(committee, t_final=6.0, controls={"eta": (0.0, 3.0)})).objective(
        sol.protocol, sol.static)
    assert v["simulated"] == pytest.approx(separate, rel=1e-8)
    assert v["ok"] and v["relative_gap"] == abs(v["simulated"] - v["method_value"]) / v["simulated"]


def test_the_writer_thread_writes_every_run_once_and_reports_a_failed_write(tmp_path, monkeypatch):
    from opt_protocols.batch import runner
    s = load_spec(base_spec(grid={"t_final": [1.0, 2.0, 3.0]}))
    records = [runner._record(s, t, None, "lost", None, 1)[0] for t in s.tasks]
    out = str(tmp_path / "w.h5")
    w = runner._Writer(out, set())
    for r in records[:2]:
        w.add(r)
    w.flush()
    assert storage.list_runs(out) == [r.run_id for r in records[:2]]
    real = storage.write_runs

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(storage, "write_runs", broken)
    w = runner._Writer(out, set())
    w.add(records[2])
    w._thread.join(timeout=10)                 # the write failed: the thread stops, the run stays pending
    with pytest.raises(OSError, match="disk full"):
        w.add(records[2])
    monkeypatch.setattr(storage, "write_runs", real)
    w.flush()                                  # retried (once: the duplicate add is left out)
    assert storage.list_runs(out) == [r.run_id for r in records]


# ----------------------------------------------------------------------------- dask LocalCluster


def test_dask_local_cluster_gives_the_same_runs_and_retries_a_lost_worker(pool_sweep, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("SWEEP_TEST_CRASH_MARKER", str(tmp_path / "crashed"))
    out = tmp_path / "dask.h5"
    spec = base_spec()
    spec["grid"] = {**spec["grid"], "crash": [0.0, 1.0]}
    report = sweep(spec, out=out, workers=2, cluster="local", progress=False)
    assert report.executor == "dask LocalCluster" and report.n_workers == 2
    assert (tmp_path / "crashed").exists() and report.complete and len(report.ran) == 16
    ds = load_sweep(out)
    pool = load_sweep(pool_sweep[0])
    np.testing.assert_allclose(ds.objective.sel(crash=0.0).values, pool.objective.values, rtol=AGREE)
    np.testing.assert_allclose(ds.objective.sel(crash=1.0).values, pool.objective.values, rtol=AGREE)
    workers = {a["sweep"]["worker"] for a in storage.read_attrs(out).values()}
    assert os.getpid() not in {int(w.rsplit(":", 1)[1]) for w in workers}     # solved in worker processes


def test_cli_reports_spec_errors_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "committee"\n[grid]\nt_final = [1.0]\nwidth = [1, 2]\n')
    assert batch_main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: sweep spec: grid axis 'width'")
    assert batch_main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert batch_main(["sweep", str(ROOT / "examples" / "sweep.toml"), "--dry-run"]) == 0
    assert "tasks ->" in capsys.readouterr().out
