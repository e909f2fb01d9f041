"""Crash-safe HDF5 store for runs (optimal-control solves, simulations), readable by xarray.

One file holds many runs, each a :class:`RunRecord`. This module is model-agnostic: a record is
metadata (``attrs``) plus named arrays with dimension names (``variables``) and 1-D dimension
coordinates (``coords``). Paths with ``/`` place arrays in subgroups of the run.

File layout::

    /                       attrs: format="opt-protocols", format_version=1
    /runs/<run_id>/         attrs: the record's attrs (see below)
        t, state, ...       coordinates: HDF5 dimension scales named after their dimension
        x, loss, ...        variables: every axis attached to a dimension scale
        controls/eta        subgroups, e.g. controls/, baselines/<name>/...

Dimensions (netCDF-4 rules, so every group opens with ``xr.open_dataset(..., engine="h5netcdf")``):
a variable's dimension ``d`` in group ``G`` is the coordinate ``d`` of ``G`` or, failing that, of the
nearest enclosing group inside the run (so ``controls/eta`` on ``("t",)`` shares the run's ``t``).
A dimension with no coordinate anywhere gets a data-less netCDF "dimension but not a variable"
scale in the variable's own group: h5netcdf refuses datasets with only some axes scaled.

Attributes: str, int and float values are stored as HDF5 attributes directly. Everything else that
JSON can express (dict, list, tuple, bool, None, numpy scalars and arrays) is stored as the string
``"json:" + json.dumps(value)`` and decoded by the readers (a str that itself starts with ``"json:"``
is encoded the same way, so decoding is unambiguous). Tuples come back as lists.

Integrity (format version 2): the file's first 512 bytes (an HDF5 user block, which HDF5 readers
skip) hold the SHA-256 of everything after them, written last and checked before the file is opened,
so a file changed after it was written (disk or copy errors, stray writes) is refused with one line
instead of being read silently or, as a corrupted HDF5 B-tree can, hanging the reader. Numeric
datasets also carry Fletcher-32 checksums, so reading a corrupted chunk names the run it belongs to.
Version 1 files (no user block) are still read, without the file check.

Crash safety: a write never modifies the file in place. It copies the file to a temporary file in the
same directory, appends there, flushes and fsyncs, and atomically renames it over the original with
``os.replace``. A killed writer leaves the original untouched (at worst a stale hidden
``.<name>.<hex>.tmp`` next to it); a run is wholly present or absent. One writer per file at a time
(concurrent writers would each rename their own copy: the last one wins). Cost: each write copies the
whole file; :func:`write_runs` appends several runs with one copy.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import xarray

__all__ = [
    "RunRecord",
    "StorageError",
    "RunNotFoundError",
    "write_run",
    "write_runs",
    "write_fresh",
    "list_runs",
    "read_run",
    "read_runs",
    "read_attrs",
    "to_xarray",
    "open_xarray",
    "FORMAT",
    "FORMAT_VERSION",
]

FORMAT = "opt-protocols"
FORMAT_VERSION = 2
#: Bytes reserved before the HDF5 data (HDF5's user block, ignored by every HDF5 reader); they hold
#: the SHA-256 of the rest of the file (format version 2), checked before the file is opened.
USERBLOCK = 512
_SEAL = b"opt-protocols sha256 "
_RUNS = "runs"
_JSON = "json:"
# netCDF-4 marker for a dimension scale that is not a coordinate variable (understood by h5netcdf)
_NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."
_BOOL_ATTR = ("dtype", "bool")  # xarray's convention for booleans stored as int8


class StorageError(ValueError):
    """A file that is not a readable opt-protocols results file (foreign, not HDF5, truncated, corrupt)."""


class RunNotFoundError(KeyError, ValueError):
    """A run_id (or group) that the file or record does not hold. Both a KeyError and a ValueError."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass
class RunRecord:
    """One run: metadata plus arrays, independent of any model.

    Attributes:
        run_id: unique name of the run in its file (no ``/``).
        attrs: JSON-able metadata (model, params, problem spec, status, objective, versions, ...).
        variables: ``path -> (dims, array)``; ``path`` may contain ``/`` for subgroups,
            e.g. ``"x": (("t", "state"), x)``, ``"controls/eta": (("interval",), eta)``.
        coords: ``path -> 1-D array`` for dimension coordinates, e.g. ``"t"``, ``"state"`` (str array),
            ``"baselines/constant/t"``; a coordinate belongs to the group of its path's parent.
    """

    run_id: str
    attrs: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = field(default_factory=dict)
    coords: dict[str, np.ndarray] = field(default_factory=dict)

    def groups(self) -> list[str]:
        """All groups of the run ("" is the run itself), parents before children."""
        out = {""}
        for path in [*self.variables, *self.coords]:
            parts = path.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return sorted(out, key=lambda g: (g.count("/") + bool(g), g))

    def to_xarray(self, group: str = "") -> xarray.Dataset:
        """Shortcut for :func:`to_xarray`."""
        return to_xarray(self, group)


# ----------------------------------------------------------------------------------------- helpers


def _split(path: str) -> tuple[str, str]:
    """``"a/b/c" -> ("a/b", "c")``, ``"x" -> ("", "x")``."""
    group, _, name = path.rpartition("/")
    return group, name


def _ancestors(group: str) -> Iterator[str]:
    """``"a/b"`` -> ``"a/b"``, ``"a"``, ``""`` (nearest first)."""
    while True:
        yield group
        if not group:
            return
        group = _split(group)[0]


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name or name.startswith("/") or name.endswith("/") \
            or any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"invalid {what} {name!r}: use non-empty names separated by single '/'")


def _resolve_dim(coords: dict[str, np.ndarray], group: str, dim: str) -> str | None:
    """Path of the coordinate that dimension ``dim`` of group ``group`` refers to, or None."""
    for g in _ancestors(group):
        path = f"{g}/{dim}" if g else dim
        if path in coords:
            return path
    return None


def _as_array(rid: str, path: str, value: Any) -> np.ndarray:
    """``value`` as a numpy array of a storable dtype (numbers, bool, str)."""
    arr = np.asarray(value)
    if arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr.flat):  # e.g. lists of str
        arr = arr.astype(str)
    if arr.dtype.kind not in "biufcSU":
        raise ValueError(f"run {rid!r}: {path!r} has dtype {arr.dtype}; store numbers, bool or str")
    return arr


def _validate(record: RunRecord) -> tuple[dict[str, tuple[tuple[str, ...], np.ndarray]], dict[str, np.ndarray]]:
    """Check a record for consistency before anything touches the file; return normalised arrays."""
    if not isinstance(record.run_id, str) or not record.run_id or "/" in record.run_id \
            or record.run_id in (".", ".."):
        raise ValueError(f"invalid run_id {record.run_id!r}: a non-empty name without '/'")
    rid = record.run_id
    for key in record.attrs:
        if not isinstance(key, str) or not key:
            raise ValueError(f"run {rid!r}: attribute names must be non-empty str, got {key!r}")
    coords: dict[str, np.ndarray] = {}
    for path, value in record.coords.items():
        _check_name("coordinate path", path)
        arr = _as_array(rid, path, value)
        if arr.ndim != 1:
            raise ValueError(f"run {rid!r}: coordinate {path!r} must be 1-D, got shape {arr.shape}")
        coords[path] = arr
    variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for path, item in record.variables.items():
        _check_name("variable path", path)
        if path in coords:
            raise ValueError(f"run {rid!r}: {path!r} is both a variable and a coordinate")
        try:
            dims, value = item
        except (TypeError, ValueError):
            raise ValueError(f"run {rid!r}: variable {path!r} must be a (dims, array) pair") from None
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        arr = _as_array(rid, path, value)
        if len(dims) != arr.ndim or len(set(dims)) != len(dims):
            raise ValueError(f"run {rid!r}: variable {path!r} has shape {arr.shape} but dims {dims}")
        for dim in dims:
            _check_name("dimension name", dim)
            if "/" in dim:
                raise ValueError(f"run {rid!r}: dimension name {dim!r} of {path!r} must not contain '/'")
        variables[path] = (dims, arr)
    leaves = set(coords) | set(variables)
    groups = set(RunRecord(rid, {}, variables, coords).groups())
    if leaves & groups:
        raise ValueError(f"run {rid!r}: {sorted(leaves & groups)} used both as an array and as a group")
    index_dims: dict[tuple[str, str], tuple[int, str]] = {}
    for path, (dims, arr) in variables.items():
        group = _split(path)[0]
        for dim, n in zip(dims, arr.shape):
            cpath = _resolve_dim(coords, group, dim)
            if cpath is not None:
                expected, origin = len(coords[cpath]), f"coordinate {cpath!r}"
            else:  # a dimension without coordinate: one length per group, stored as a scale named dim
                if (f"{group}/{dim}" if group else dim) in variables:
                    raise ValueError(f"run {rid!r}: dimension {dim!r} of {path!r} has no coordinate and "
                                     f"its name is taken by a variable: add a coordinate {dim!r} or rename")
                expected, origin = index_dims.setdefault((group, dim), (n, f"variable {path!r}"))
            if n != expected:
                raise ValueError(f"run {rid!r}: dimension {dim!r} of {path!r} has length {n}, "
                                 f"but {origin} has length {expected}")
    return variables, coords


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _encode_attr(key: str, value: Any) -> Any:
    """An attribute value as stored in HDF5 (see module docstring)."""
    if isinstance(value, str) and not value.startswith(_JSON):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
            and -(2**63) <= int(value) < 2**63:
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    try:
        return _JSON + json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"attribute {key!r}: cannot store {type(value).__name__} ({exc})") from None


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return json.loads(value[len(_JSON):]) if value.startswith(_JSON) else value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):  # not written by this module, but readable
        return value.tolist()
    return value


def _create_dataset(group: h5py.Group, name: str, arr: np.ndarray) -> h5py.Dataset:
    """Numeric datasets carry a Fletcher-32 checksum, so a corrupted chunk is an error on reading,
    never silently wrong numbers (variable-length strings and scalars cannot take HDF5 filters)."""
    if arr.dtype.kind == "U":
        return group.create_dataset(name, data=arr.astype(object), dtype=h5py.string_dtype())
    checksum = {"fletcher32": True} if arr.ndim > 0 else {}
    if arr.dtype.kind == "b":
        ds = group.create_dataset(name, data=arr.astype(np.int8), **checksum)
        ds.attrs[_BOOL_ATTR[0]] = _BOOL_ATTR[1]
        return ds
    return group.create_dataset(name, data=arr, **checksum)


def _read_dataset(ds: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[()], dtype=str)
    data = np.asarray(ds[()])
    if ds.attrs.get(_BOOL_ATTR[0]) in (_BOOL_ATTR[1], _BOOL_ATTR[1].encode()):
        data = data.astype(bool)
    return data


def _is_index_dim(ds: h5py.Dataset) -> bool:
    """True for a data-less 'dimension but not a variable' scale."""
    name = ds.attrs.get("NAME", b"")
    return (name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)).startswith(_NOT_A_VARIABLE)


def _write_run_group(runs: h5py.Group, record: RunRecord,
                     variables: dict[str, tuple[tuple[str, ...], np.ndarray]],
                     coords: dict[str, np.ndarray]) -> None:
    """Write one validated record as ``runs/<run_id>``."""
    run = runs.create_group(record.run_id, track_order=True)
    for key, value in record.attrs.items():
        run.attrs[key] = _encode_attr(key, value)

    def require(group: str) -> h5py.Group:  # create groups on first use, keeping the record's order
        if not group:
            return run
        if group not in run:
            require(_split(group)[0]).create_group(_split(group)[1], track_order=True)
        return run[group]

    scales: dict[str, h5py.Dataset] = {}
    for path, arr in coords.items():
        group, name = _split(path)
        ds = _create_dataset(require(group), name, arr)
        ds.make_scale(name)
        scales[path] = ds
    for path, (dims, arr) in variables.items():
        group, name = _split(path)
        grp = require(group)
        ds = _create_dataset(grp, name, arr)
        for axis, (dim, n) in enumerate(zip(dims, arr.shape)):
            cpath = _resolve_dim(coords, group, dim)
            if cpath is None:  # dimension without coordinate: group-local index dimension
                cpath = f"{group}/{dim}" if group else dim
                if cpath not in scales:
                    scale = grp.create_dataset(dim, shape=(n,), dtype=">f4")  # no data is allocated
                    scale.make_scale(f"{_NOT_A_VARIABLE}{n:10d}")
                    scales[cpath] = scale
            ds.dims[axis].attach_scale(scales[cpath])


def _read_checked(run: h5py.Group, path: str, ds: h5py.Dataset) -> np.ndarray:
    """A dataset's data, or a StorageError naming the run when its checksum fails or it cannot be read."""
    try:
        return _read_dataset(ds)
    except OSError as exc:
        raise StorageError(f"{run.file.filename}: run {run.name.rsplit('/', 1)[-1]!r} is corrupt: "
                           f"{path!r} cannot be read ({str(exc).splitlines()[0]})") from None


def _read_run_group(run: h5py.Group) -> RunRecord:
    """Inverse of :func:`_write_run_group`."""
    attrs = {key: _decode_attr(value) for key, value in run.attrs.items()}
    variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    coords: dict[str, np.ndarray] = {}
    prefix = len(run.name) + 1

    def visit(group: h5py.Group) -> None:
        for obj in group.values():
            if isinstance(obj, h5py.Group):
                visit(obj)
                continue
            path = obj.name[prefix:]
            if obj.is_scale:
                if not _is_index_dim(obj):
                    coords[path] = _read_checked(run, path, obj)
                continue
            dims = []
            for axis, dim in enumerate(obj.dims):
                if len(dim) == 0:
                    raise StorageError(f"{run.file.filename}: corrupt run {run.name}: axis {axis} of "
                                       f"{path!r} has no dimension scale")
                dims.append(dim[0].name.rsplit("/", 1)[-1])
            variables[path] = (tuple(dims), _read_checked(run, path, obj))

    visit(run)
    return RunRecord(run_id=run.name.rsplit("/", 1)[-1], attrs=attrs, variables=variables, coords=coords)


def _content_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(USERBLOCK)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _seal(path: str) -> None:
    """Write the checksum of the file's content into its user block."""
    header = _SEAL + _content_hash(path).encode() + b"\n"
    with open(path, "r+b") as fh:
        fh.write(header.ljust(USERBLOCK, b"\0"))


def _check_seal(path: str, shown: str) -> None:
    """Refuse a version-2 file whose content does not match the checksum in its user block."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(USERBLOCK)
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: no such file") from None
    if not head.startswith(_SEAL):
        if head.startswith(_SEAL[:8]):
            raise StorageError(f"{shown}: corrupt opt-protocols file (damaged integrity header)")
        return   # a version-1 file or not ours: the format checks below decide
    stored = head[len(_SEAL):len(_SEAL) + 64].decode("ascii", "replace")
    if _content_hash(path) != stored:
        runs = _scan_readable(path)
        detail = f"; unreadable runs: {', '.join(runs)}" if runs else ""
        raise StorageError(f"{shown}: corrupt: its content changed after it was written "
                           f"(checksum mismatch){detail}")


def _scan_readable(path: str, timeout: float = 10.0) -> list[str]:
    """Best effort: the runs of a corrupt file that cannot be read. A damaged HDF5 file can hang the
    library (a looping B-tree), so the scan runs in a child process that is killed after ``timeout``."""
    import subprocess
    import sys
    code = ("import sys, h5py\n"
            "from opt_protocols.storage import _read_run_group, _RUNS\n"
            "with h5py.File(sys.argv[1], 'r') as f:\n"
            "    for name, run in f[_RUNS].items():\n"
            "        try:\n"
            "            _read_run_group(run)\n"
            "        except Exception:\n"
            "            print(name)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=timeout)
    except (subprocess.TimeoutExpired, OSError):
        return []
    return out.stdout.split() if out.returncode == 0 else []


@contextmanager
def _open(path: str, mode: str = "r", shown: str | None = None) -> Iterator[h5py.File]:
    """Open an existing opt-protocols file, turning every way it can be unreadable into StorageError."""
    shown = shown or path
    _check_seal(path, shown)
    try:
        f = h5py.File(path, mode)
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: no such file") from None
    except OSError as exc:  # not HDF5, truncated, unreadable
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"{shown}: not a readable HDF5 file ({reason})") from None
    try:
        fmt = _decode_attr(f.attrs.get("format", ""))
        if fmt != FORMAT:
            raise StorageError(f"{shown}: not an opt-protocols results file")
        version = _decode_attr(f.attrs.get("format_version", -1))
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise StorageError(f"{shown}: unsupported opt-protocols format_version {version!r} "
                               f"(this version reads 1..{FORMAT_VERSION})")
        if not isinstance(f.get(_RUNS, getlink=True), h5py.HardLink) or not isinstance(f[_RUNS], h5py.Group):
            raise StorageError(f"{shown}: corrupt opt-protocols file (no /{_RUNS} group)")
        yield f
    except (StorageError, ValueError, KeyboardInterrupt):
        raise
    except (OSError, RuntimeError, AttributeError, KeyError, TypeError) as exc:   # h5py on damaged metadata
        if mode != "r":  # a failed write is reported as what it is (disk full, ...)
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"{shown}: corrupt opt-protocols file ({type(exc).__name__}: {reason})") from None
    finally:
        f.close()


def _get_run(f: h5py.File, run_id: str, shown: str) -> h5py.Group:
    runs = f[_RUNS]
    if not isinstance(run_id, str) or "/" in run_id or run_id not in runs:
        available = ", ".join(runs) or "none"
        raise RunNotFoundError(f"{shown}: no run {run_id!r} (available: {available})")
    return runs[run_id]


def _fsync(path: str) -> None:
    """fsync a file or (where the OS allows) a directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. directories on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- API


def write_runs(path: str | os.PathLike, records: Iterable[RunRecord], *, exist_ok: bool = False) -> None:
    """Append runs to ``path`` (created if missing) in one crash-safe transaction.

    All records are validated before the file is touched. A run_id already in the file raises
    ValueError unless ``exist_ok``, in which case that run is replaced. Either all records are written
    or (on any error, or if the process is killed) the file is left exactly as it was.

    Raises:
        ValueError: invalid record, duplicate run_id.
        StorageError: ``path`` exists but is not a readable opt-protocols file (it is left untouched).
    """
    records = list(records)
    checked = [_validate(r) for r in records]
    ids = [r.run_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate run_id among the records to write: {ids}")
    shown = os.fspath(path)
    target = os.path.realpath(shown)  # write through a symlink, don't replace it
    directory, base = os.path.split(target)
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
    exists = os.path.exists(target)
    try:
        if exists:
            shutil.copyfile(target, tmp)
            shutil.copymode(target, tmp)
            context = _open(tmp, "r+", shown=shown)
        else:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies
            context = h5py.File(tmp, "w", track_order=True, userblock_size=USERBLOCK)
        with context as f:
            if not exists:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = np.int64(FORMAT_VERSION)
                f.create_group(_RUNS, track_order=True)
            runs = f[_RUNS]
            clash = [i for i in ids if i in runs]
            if clash and not exist_ok:
                raise ValueError(f"{shown}: run(s) {', '.join(map(repr, clash))} already exist; "
                                 "pass exist_ok=True to replace")
            for run_id in clash:
                del runs[run_id]
            for record, (variables, coords) in zip(records, checked):
                _write_run_group(runs, record, variables, coords)
            f.flush()
            sealed = f.userblock_size >= USERBLOCK
        if sealed:
            _seal(tmp)
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(directory)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def write_run(path: str | os.PathLike, record: RunRecord, *, exist_ok: bool = False) -> None:
    """Append one run to ``path`` (see :func:`write_runs`)."""
    write_runs(path, [record], exist_ok=exist_ok)


def write_fresh(path: str | os.PathLike, records: Iterable[RunRecord]) -> None:
    """Replace ``path`` by a file holding exactly ``records`` (written aside, then renamed atomically).

    For scripts that regenerate a whole results file; :func:`write_runs` appends instead.
    """
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.new")
    if os.path.exists(tmp):
        os.unlink(tmp)
    write_runs(tmp, records)
    os.replace(tmp, path)


def list_runs(path: str | os.PathLike) -> list[str]:
    """The run_ids in ``path``, in the order they were written."""
    with _open(os.fspath(path)) as f:
        return list(f[_RUNS])


def read_run(path: str | os.PathLike, run_id: str) -> RunRecord:
    """Read one run. A missing run_id raises :class:`RunNotFoundError` listing the available runs."""
    shown = os.fspath(path)
    with _open(shown) as f:
        return _read_run_group(_get_run(f, run_id, shown))


def read_runs(path: str | os.PathLike) -> list[RunRecord]:
    """Read every run in ``path``, in the order they were written."""
    with _open(os.fspath(path)) as f:
        return [_read_run_group(run) for run in f[_RUNS].values()]


def read_attrs(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The attributes of every run in ``path`` (run_id -> decoded attrs, in the order written),
    without reading any array."""
    with _open(os.fspath(path)) as f:
        return {rid: {k: _decode_attr(v) for k, v in run.attrs.items()} for rid, run in f[_RUNS].items()}


def _xarray():
    try:
        import xarray
    except ImportError:  # pragma: no cover
        raise ImportError("xarray support needs the 'xarray' extra: pip install 'opt-protocols[xarray]'") from None
    return xarray


def to_xarray(record: RunRecord, group: str = "") -> xarray.Dataset:
    """The variables and coordinates of one group of a run as an ``xarray.Dataset``.

    ``group`` is "" for the run's top level, or e.g. "controls", "baselines/constant". Coordinates of
    dimensions defined in an enclosing group (e.g. "t" for "controls/eta") are included, as netCDF
    inheritance implies. ``attrs`` are the run's decoded attributes (dicts stay dicts).
    """
    xr = _xarray()
    variables, coords = _validate(record)
    group = group.strip("/")
    if group not in record.groups():
        raise RunNotFoundError(f"run {record.run_id!r}: no group {group!r} (groups: {record.groups()})")
    data_vars = {_split(p)[1]: v for p, v in variables.items() if _split(p)[0] == group}
    ds_coords = {_split(p)[1]: (_split(p)[1], c) for p, c in coords.items() if _split(p)[0] == group}
    for dims, _ in data_vars.values():
        for dim in dims:
            cpath = _resolve_dim(coords, group, dim)
            if cpath is not None and dim not in ds_coords:
                ds_coords[dim] = (dim, coords[cpath])
    return xr.Dataset(data_vars, coords=ds_coords, attrs=dict(record.attrs))


def open_xarray(path: str | os.PathLike, run_id: str, group: str = "") -> xarray.Dataset:
    """Open one group of a stored run lazily with xarray's h5netcdf engine.

    Same content as ``to_xarray(read_run(path, run_id), group)``: coordinates inherited from enclosing
    groups are added and the run's attributes are decoded.
    """
    xr = _xarray()
    shown = os.fspath(path)
    group = group.strip("/")
    with _open(shown) as f:
        run = _get_run(f, run_id, shown)
        grp = run.get(group) if group else run
        if not isinstance(grp, h5py.Group):
            groups = []
            run.visit(lambda name: groups.append(name) if isinstance(run[name], h5py.Group) else None)
            raise RunNotFoundError(f"{shown}: run {run_id!r} has no group {group!r} (groups: {['', *groups]})")
        h5_group = grp.name
        attrs = {key: _decode_attr(value) for key, value in run.attrs.items()}
        inherited: dict[str, np.ndarray] = {}
        for obj in grp.values():
            if isinstance(obj, h5py.Dataset) and not obj.is_scale:
                for dim in obj.dims:
                    scale = dim[0]
                    if scale.parent.name != grp.name and not _is_index_dim(scale):
                        inherited[scale.name.rsplit("/", 1)[-1]] = _read_dataset(scale)
    ds = xr.open_dataset(shown, group=h5_group, engine="h5netcdf")
    ds = ds.assign_coords({dim: (dim, values) for dim, values in inherited.items()})
    ds.attrs = attrs
    return ds
