"""Solutions in HDF5: round trip, xarray, append-not-overwrite, failed runs stored as failed, validation."""
import numpy as np
import pytest
import xarray as xr

import opt_protocols as op
from opt_protocols import storage


@pytest.fixture(scope="module")
def dropout_solution():
    m = op.load_model("committee", K=2, M=1, sigma=0.2)
    x0 = m.initial_state(Q=np.zeros((2, 2)), R=np.zeros((2, 1)))
    return op.solve(m, x0, 5.0, controls={"r": (0, 1)}, fixed={"eta": 1.0}, static={"p_test": (0, 1)},
                    intervals=50)


def test_round_trip_and_xarray(dropout_solution, results_file):
    sol = dropout_solution
    rid = sol.save(results_file, run_id="dropout")
    back = op.load(results_file, "dropout")
    assert rid == "dropout" and back.status == "optimal"
    assert back.objective == sol.objective and back.static == sol.static
    np.testing.assert_array_equal(back.controls["r"], sol.controls["r"])
    np.testing.assert_array_equal(back.x, sol.x)
    np.testing.assert_array_equal(back.t_controls, sol.t_controls)
    assert back.baselines["best_constant"].objective == sol.baselines["best_constant"].objective
    np.testing.assert_array_equal(back.baselines["best_constant"].loss, sol.baselines["best_constant"].loss)
    assert back.spec["static"] == {"p_test": [0.0, 1.0]}
    assert back.attrs["casadi_version"] and back.attrs["opt_protocols_version"] == op.__version__
    assert back.method["name"] == "collocation" and back.method["options"]["intervals"] == 50
    # the stored protocol re-simulates to the stored objective
    m = op.load_model("committee", K=2, M=1, sigma=0.2, p_test=back.static["p_test"])
    tr = op.simulate(m, np.asarray(back.spec["x0"]), back, 5.0, rtol=1e-11, atol=1e-13)
    assert abs(tr.final_loss - sol.objective) < 1e-6 * sol.objective
    # one Dataset holds the analysis: controls, re-simulation, baselines with their curves
    ds = back.to_xarray()
    assert "r" in ds and ds["r"].dims == ("interval",) and ds["r"].size == 50
    assert float(ds["interval_end"][-1]) == 5.0
    assert ds["baseline_loss"].dims == ("baseline", "t_sim")
    bc = ds["baseline_loss"].sel(baseline="best_constant")
    assert float(bc[-1]) == pytest.approx(sol.baselines["best_constant"].objective, rel=1e-6)
    assert float(ds["loss_sim"][-1]) == pytest.approx(sol.objective, rel=1e-6)
    assert isinstance(ds.attrs["spec"], dict) and ds.attrs["status"] == "optimal"
    # every group opens with plain xarray, with coordinates on every axis
    raw = xr.open_dataset(results_file, group="runs/dropout", engine="h5netcdf")
    assert raw["x"].dims == ("t", "state") and list(raw["state"].values[:2]) == ["Q[0,0]", "Q[0,1]"]
    assert raw.attrs["status"] == "optimal"
    assert "interval" in raw.coords and "t_sim" in raw.coords and "baseline" in raw.coords
    for group in ("protocol", "baselines/best_constant"):
        xr.open_dataset(results_file, group=f"runs/dropout/{group}", engine="h5netcdf").load()


def test_existing_file_is_appended_never_overwritten(dropout_solution, results_file):
    dropout_solution.save(results_file, run_id="a")
    dropout_solution.save(results_file, run_id="b")
    assert storage.list_runs(results_file) == ["a", "b"]
    with pytest.raises(ValueError, match="already"):
        dropout_solution.save(results_file, run_id="a")
    assert len(op.load(results_file)) == 2


def test_failed_solve_is_stored_as_failed(results_file):
    m = op.load_model("committee", K=2, M=2, sigma=0.3)
    sol = op.solve(m, t_final=10.0, controls={"eta": (0, 3)}, intervals=10,
                   solver_options={"ipopt.max_iter": 3})
    assert sol.status == "failed"
    sol.save(results_file, run_id="bad")
    back = op.load(results_file, "bad")
    assert back.status == "failed" and back.return_status == "Maximum_Iterations_Exceeded"


def test_foreign_and_broken_files_are_refused(tmp_path):
    import h5py
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(storage.StorageError, match="not an opt-protocols results file"):
        op.load(foreign)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(storage.StorageError, match="not a readable HDF5 file"):
        op.load(text)


def test_validate_against_finite_N_sgd(dropout_solution, results_file):
    """The optimum is real: finite-N SGD with the optimal protocol beats SGD with the best constant."""
    sol = dropout_solution
    summary = op.validate(sol, N=1000, seeds=6, n_out=11)
    for key in ("optimal", "best_constant"):
        r = summary[key]
        # ODE prediction within the statistical error plus the O(1/N) finite-size bias
        assert abs(r["sgd_final_mean"] - r["ode_final"]) < 4 * r["sgd_final_sem"] + 5.0 / 1000
    sol.save(results_file, run_id="validated")
    back = op.load(results_file, "validated")
    assert back.validation["summary"]["N"] == 1000
    assert back.validation["cases"]["optimal"]["sgd_mean"].shape == (11,)
    ds = back.to_xarray()
    assert ds["sgd_mean"].dims == ("case", "t_sgd") and "t_sgd" in ds.coords
    # the whole file opens as one tree once a run is validated
    tree = xr.open_datatree(results_file, engine="h5netcdf")
    assert "sgd_mean" in tree["runs/validated"].dataset


def test_write_fresh_replaces_the_whole_file(dropout_solution, results_file):
    from opt_protocols.solution import to_record as solution_record
    dropout_solution.save(results_file, run_id="old")
    storage.write_fresh(results_file, [solution_record(dropout_solution, "new")])
    assert storage.list_runs(results_file) == ["new"]
