"""Tests of the HDF5 run store: round trips, xarray access, refusal of foreign files, crash safety."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from opt_protocols import storage
from opt_protocols.storage import (
    RunNotFoundError,
    RunRecord,
    StorageError,
    list_runs,
    open_xarray,
    read_run,
    read_runs,
    to_xarray,
    write_run,
    write_runs,
)

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

STATES = np.array(["Q[0,0]", "Q[0,1]", "R[1,0]", "c[17]"])
GROUPS = ["", "controls", "static", "baselines/constant", "baselines/constant/controls"]


def make_record(run_id: str = "run-0", seed: int = 0) -> RunRecord:
    """A record using every feature: nested groups, inherited and shadowed dims, strings, bools, scalars."""
    rng = np.random.default_rng(seed)
    return RunRecord(
        run_id=run_id,
        attrs={
            "model": "committee",
            "params": {"K": 2, "M": 2, "sigma": 0.1, "shape": [2, 2]},
            "spec": {"controls": {"eta": [0, 3]}, "t_final": 10.0, "x0": None},
            "status": "Solve_Succeeded",
            "optimal": True,
            "objective": 0.0123,
            "iterations": 42,
            "missing": None,
            "tags": ["a", "b"],
            "tricky": "json:this string only looks encoded",
            "numpy_scalar": np.float32(0.5),
        },
        variables={
            "x": (("t", "state"), rng.random((6, 4))),
            "loss": (("t",), rng.random(6)),
            "controls/eta": (("interval",), rng.random(5)),
            "hist": (("bin",), np.arange(7)),  # a dimension without coordinate
            "converged": (("t",), np.array([True, False, True, True, False, True])),
            "labels": (("bin",), np.array([f"b{i}" for i in range(7)])),
            "static/T": ((), np.float64(2.5)),
            "baselines/constant/loss": (("t",), rng.random(9)),  # its own t (shadows the run's t)
            "baselines/constant/controls/eta": (("interval",), np.full(5, 0.7)),  # the run's interval
        },
        coords={
            "t": np.linspace(0.0, 10.0, 6),
            "state": STATES,
            "interval": np.arange(5),
            "baselines/constant/t": np.linspace(0.0, 10.0, 9),
        },
    )


def assert_same(a: RunRecord, b: RunRecord) -> None:
    assert a.run_id == b.run_id
    expected_attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in b.attrs.items()}
    assert a.attrs == expected_attrs
    assert sorted(a.variables) == sorted(b.variables) and sorted(a.coords) == sorted(b.coords)
    for path, (dims, data) in b.variables.items():
        got_dims, got = a.variables[path]
        assert got_dims == tuple(dims), path
        assert got.dtype == np.asarray(data).dtype, path
        np.testing.assert_array_equal(got, data, err_msg=path)
    for path, data in b.coords.items():
        assert a.coords[path].dtype == data.dtype, path
        np.testing.assert_array_equal(a.coords[path], data, err_msg=path)


# ------------------------------------------------------------------------------------ round trips


def test_round_trip_and_append(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    records = [make_record(f"run-{i}", seed=i) for i in range(3)]
    write_run(path, records[0])
    write_runs(path, records[1:])
    assert list_runs(path) == ["run-0", "run-1", "run-2"]  # appended, in writing order
    for record in records:
        assert_same(read_run(path, record.run_id), record)
    assert [r.run_id for r in read_runs(path)] == ["run-0", "run-1", "run-2"]
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "opt-protocols" and f.attrs["format_version"] == storage.FORMAT_VERSION


def test_large_attributes(tmp_path: Path) -> None:
    """A problem spec can exceed HDF5's 64 kB compact-attribute limit."""
    path = tmp_path / "runs.h5"
    spec = {"x0": np.linspace(0, 1, 20_000), "names": [f"c[{i}]" for i in range(5_000)]}
    write_run(path, RunRecord("a", {"spec": spec}, {"y": (("k",), np.ones(2))}))
    got = read_run(path, "a").attrs["spec"]
    assert got["x0"] == spec["x0"].tolist() and got["names"] == spec["names"]


def test_existing_run_is_refused_or_replaced(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    write_runs(path, [make_record("a", 0), make_record("b", 1)])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="'a' already exist.*exist_ok"):
        write_run(path, make_record("a", 5))
    assert path.read_bytes() == before
    write_run(path, make_record("a", 5), exist_ok=True)
    assert sorted(list_runs(path)) == ["a", "b"]
    assert_same(read_run(path, "a"), make_record("a", 5))
    assert_same(read_run(path, "b"), make_record("b", 1))
    big = RunRecord("big", variables={"x": (("t",), np.zeros(100_000))})
    write_run(path, big)
    size = path.stat().st_size
    for _ in range(5):  # replacing reuses the space of the data (HDF5 keeps a few kB of metadata)
        write_run(path, big, exist_ok=True)
    assert path.stat().st_size < size + 5 * 8_000
    with pytest.raises(ValueError, match="duplicate run_id"):
        write_runs(path, [make_record("c"), make_record("c")])


def test_missing_run_lists_available(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    write_runs(path, [make_record("a"), make_record("b")])
    for exc in (KeyError, ValueError, RunNotFoundError):
        with pytest.raises(exc):
            read_run(path, "zzz")
    with pytest.raises(RunNotFoundError) as info:
        read_run(path, "zzz")
    assert str(info.value) == f"{path}: no run 'zzz' (available: a, b)"
    with pytest.raises(RunNotFoundError, match="no group 'nope'"):
        open_xarray(path, "a", "nope")
    with pytest.raises(FileNotFoundError, match="no such file"):
        list_runs(tmp_path / "absent.h5")


def test_invalid_records_touch_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    bad = {
        "run_id": RunRecord("a/b"),
        "has shape": RunRecord("r", variables={"x": (("t",), np.ones((2, 2)))}),
        "coordinate 't' has length 3": RunRecord("r", variables={"x": (("t",), np.ones(2))},
                                                  coords={"t": np.arange(3)}),
        "variable 'x' has length 2": RunRecord("r", variables={"x": (("k",), np.ones(2)),
                                                               "y": (("k",), np.ones(3))}),
        "both a variable and a coordinate": RunRecord("r", variables={"t": (("t",), np.ones(2))},
                                                      coords={"t": np.arange(2)}),
        "as an array and as a group": RunRecord("r", variables={"c": ((), 1.0), "c/eta": ((), 2.0)}),
        "must be 1-D": RunRecord("r", coords={"t": np.ones((2, 2))}),
        "attribute 'obj'": RunRecord("r", attrs={"obj": object()}),
        "has dtype object": RunRecord("r", variables={"x": (("k",), np.array([{}, None]))}),
        "name is taken by a variable": RunRecord("r", variables={"h": (("k",), np.ones(2)),
                                                                 "k": ((), 1.0)}),
    }
    for match, record in bad.items():
        with pytest.raises(ValueError, match=match):
            write_run(path, record)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------- xarray


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_opens_in_xarray(tmp_path: Path, group: str) -> None:
    path = tmp_path / "runs.h5"
    record = make_record("run-0")
    write_run(path, record)
    prefix = f"{group}/" if group else ""
    expected_vars = {p[len(prefix):]: v for p, v in record.variables.items()
                     if p.startswith(prefix) and "/" not in p[len(prefix):]}

    # plain xarray + h5netcdf, no help from this package
    with xr.open_dataset(path, group=f"runs/run-0/{group}".rstrip("/"), engine="h5netcdf") as raw:
        assert set(raw.data_vars) == set(expected_vars)
        for name, (dims, data) in expected_vars.items():
            assert raw[name].dims == dims
            np.testing.assert_array_equal(raw[name].values, data)

    # open_xarray: inherited coordinates, decoded attributes; identical to to_xarray of the record
    with open_xarray(path, "run-0", group) as ds:
        expected = to_xarray(record, group)
        xr.testing.assert_identical(ds.load(), expected)
        assert ds.attrs["params"] == record.attrs["params"] and ds.attrs["optimal"] is True
        for name, (dims, _) in expected_vars.items():
            for dim in dims:
                if dim != "bin":
                    assert dim in ds.coords, (name, dim)


def test_xarray_values_coords_dims(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    record = make_record("r")
    write_run(path, record)
    with open_xarray(path, "r") as ds:
        assert ds["x"].dims == ("t", "state")
        assert list(ds["state"].values) == list(STATES)  # string coordinate round trip
        np.testing.assert_array_equal(ds["t"], record.coords["t"])
        np.testing.assert_array_equal(ds["x"].sel(state="R[1,0]"), record.variables["x"][1][:, 2])
        assert "bin" not in ds.coords and ds.sizes["bin"] == 7  # no fake index coordinate
        assert ds["converged"].dtype == bool
    with open_xarray(path, "r", "controls") as ds:  # inherits the run's interval coordinate
        np.testing.assert_array_equal(ds["interval"], np.arange(5))
    with open_xarray(path, "r", "baselines/constant/controls") as ds:
        np.testing.assert_array_equal(ds["eta"], 0.7)
        assert ds["eta"].dims == ("interval",)
    with open_xarray(path, "r", "baselines/constant") as ds:  # own t shadows the run's t
        assert ds.sizes["t"] == 9
        np.testing.assert_array_equal(ds["t"], record.coords["baselines/constant/t"])


def test_open_dataset_sees_runs_written_later(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    write_run(path, make_record("a"))
    with open_xarray(path, "a") as lazy:  # a reader holding the file open does not block writers
        write_run(path, make_record("b", 1))
        with open_xarray(path, "b") as ds:
            np.testing.assert_array_equal(ds["x"], make_record("b", 1).variables["x"][1])
        np.testing.assert_array_equal(lazy["x"], make_record("a").variables["x"][1])


# ------------------------------------------------------------------------------------ bad files


def test_foreign_and_broken_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5 at all\n")
    good = tmp_path / "good.h5"
    write_runs(good, [make_record("a"), make_record("b")])
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")

    with pytest.raises(StorageError, match=f"^{foreign}: not an opt-protocols results file$"):
        list_runs(foreign)
    for broken in (text, empty):
        with pytest.raises(StorageError, match=f"^{broken}: not a readable HDF5 file"):
            read_runs(broken)
    # a truncated file fails its content checksum before HDF5 reads it
    with pytest.raises(StorageError, match=f"^{truncated}: corrupt: its content changed after it was written"):
        read_runs(truncated)
    for target in (foreign, text, truncated):  # writing into them is refused too, and changes nothing
        before = target.read_bytes()
        with pytest.raises(StorageError):
            write_run(target, make_record("c"))
        assert target.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_write_leaves_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "runs.h5"
    write_run(path, make_record("a"))
    before = path.read_bytes()
    original = storage._write_run_group

    def fail_on_second(runs, record, *args):
        original(runs, record, *args)  # the first run is written to the temporary copy ...
        if record.run_id == "c":
            raise RuntimeError("boom")  # ... then the process fails mid-transaction

    monkeypatch.setattr(storage, "_write_run_group", fail_on_second)
    with pytest.raises(RuntimeError, match="boom"):
        write_runs(path, [make_record("b"), make_record("c")])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.h5"]


def test_permissions_and_symlinks_are_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.h5"
    write_run(real, make_record("a"))
    real.chmod(0o640)
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    write_run(link, make_record("b"))
    assert link.is_symlink() and list_runs(real) == ["a", "b"]
    assert real.stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------------- crash safety

WRITER = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("storage", {module!r})
storage = importlib.util.module_from_spec(spec)
sys.modules["storage"] = storage
spec.loader.exec_module(storage)
path = sys.argv[1]
i = len(storage.list_runs(path)) if __import__("os").path.exists(path) else 0
print("ready", flush=True)
while True:
    storage.write_run(path, storage.RunRecord(
        f"run-{{i:05d}}", {{"i": i, "params": {{"n": i}}}},
        {{"x": (("t", "state"), np.full((400, 60), float(i))), "controls/eta": (("t",), np.full(400, i))}},
        {{"t": np.arange(400.0), "state": np.array([f"s{{k}}" for k in range(60)])}}))
    i += 1
"""


def check_complete(path: Path) -> int:
    """Every listed run reads back whole and right; runs are numbered 0..n-1. Returns n."""
    ids = list_runs(path)
    assert ids == [f"run-{i:05d}" for i in range(len(ids))]
    for i, record in enumerate(read_runs(path)):
        assert record.attrs == {"i": i, "params": {"n": i}}
        dims, x = record.variables["x"]
        assert dims == ("t", "state") and x.shape == (400, 60) and np.all(x == i)
        assert np.all(record.variables["controls/eta"][1] == i)
        assert record.coords["state"][-1] == "s59"
    return len(ids)


def test_sigkill_never_corrupts(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(module=storage.__file__))
    rng = random.Random(1234)
    n_runs, kills_mid_write = 0, 0
    for kill in range(12):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.02, 0.3))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        stale = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        kills_mid_write += bool(stale)
        for p in stale:  # the killed writer's leftover; the next writer does not need it
            p.unlink()
        if path.exists():
            n = check_complete(path)
            assert n >= n_runs
            n_runs = n
        if kill >= 5 and kills_mid_write >= 3:
            break
    assert n_runs > 0 and kills_mid_write >= 1
    write_run(path, RunRecord("after", {}, {"y": (("k",), np.arange(3))}))
    assert list_runs(path)[-1] == "after"
