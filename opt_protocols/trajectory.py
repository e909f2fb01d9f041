"""A simulated learning curve as data (made by :func:`opt_protocols.simulate`, kept in solutions)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .protocol import Protocol


@dataclass
class Trajectory:
    """A simulated learning curve: times ``t``, states ``x`` (n_t, n_x), ``loss`` and applied ``controls``."""

    t: np.ndarray
    x: np.ndarray
    loss: np.ndarray
    controls: dict[str, np.ndarray]
    state_names: list[str]
    time_name: str
    model: str
    params: dict[str, Any]
    protocol: Protocol
    method: str
    n_steps: int
    status: str = "ok"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    def state(self, name: str) -> np.ndarray:
        """One state variable along the trajectory, by name (e.g. "Q[0,1]")."""
        return self.x[:, self.state_names.index(name)]

    def to_xarray(self):
        """An ``xarray.Dataset`` with dims (time, state) and the controls as variables."""
        import xarray as xr
        ds = xr.Dataset(
            {"x": ((self.time_name, "state"), self.x), "loss": ((self.time_name,), self.loss)},
            coords={self.time_name: self.t, "state": self.state_names})
        for name, values in self.controls.items():
            ds[name] = ((self.time_name,), values)
        ds.attrs.update(model=self.model, method=self.method, status=self.status, n_steps=self.n_steps)
        return ds
