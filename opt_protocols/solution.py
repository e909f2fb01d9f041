"""The result of an optimal-control solve."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .baselines import Baseline
from .protocol import Protocol
from .simulate import Trajectory

#: Relative gap between the collocation objective and its re-simulation above which a solution is flagged.
VERIFY_RTOL = 1e-6


@dataclass
class Solution:
    """An optimal protocol with its trajectory, baselines, verification and solver record.

    ``status`` is ``"optimal"`` only when IPOPT reports success; otherwise
    ``"acceptable"`` (IPOPT's looser criterion) or ``"failed"``, with IPOPT's
    own ``return_status`` kept as is.
    """

    status: str
    return_status: str
    objective: float
    t: np.ndarray                       # element boundaries (n_el + 1)
    x: np.ndarray                       # states at t (n_el + 1, n_x)
    loss: np.ndarray                    # loss at t
    t_controls: np.ndarray              # control interval boundaries (intervals + 1)
    controls: dict[str, np.ndarray]     # per interval (constant) or per boundary (linear)
    control_type: str
    static: dict[str, float]
    protocol: Protocol                  # all model controls, tabulated
    state_names: list[str]
    time_name: str
    model: str
    params: dict[str, Any]
    model_source: str
    spec: dict[str, Any]
    stats: dict[str, Any]
    verification: dict[str, Any]
    baselines: dict[str, Baseline] = field(default_factory=dict)
    trajectory: Trajectory | None = None   # fine re-simulation of the optimum
    warm: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # solver-specific restart data
    run_id: str | None = None
    validation: dict[str, Any] | None = None
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def success(self) -> bool:
        return self.status == "optimal"

    @property
    def gain(self) -> float | None:
        """Relative improvement of the objective over the best constant protocol."""
        b = self.baselines.get("best_constant")
        if b is None or not np.isfinite(b.objective) or b.objective == 0:
            return None
        return float((b.objective - self.objective) / abs(b.objective))

    def summary(self) -> str:
        lines = [f"{self.model}: {self.status} ({self.return_status}), objective {self.objective:.8g}"]
        for name, b in self.baselines.items():
            lines.append(f"  baseline {name}: {b.objective:.8g}"
                         + (f"  {b.values}" if b.values else "") + (f"  static {b.static}" if b.static else ""))
        if self.static:
            lines.append(f"  static: {self.static}")
        v = self.verification
        if v:
            lines.append(f"  re-simulated objective {v['simulated']:.10g} (relative gap {v['relative_gap']:.2e}"
                         + ("" if v["ok"] else ", FLAGGED") + ")")
        s = self.stats
        lines.append(f"  {s.get('iterations')} iterations, build {s.get('build_time', 0):.2f} s, "
                     f"solve {s.get('solve_time', 0):.2f} s")
        return "\n".join(lines)

    def to_xarray(self, group: str = ""):
        """The run as an ``xarray.Dataset`` (``group``: "", "controls", "simulation", "baselines/<name>", ...)."""
        from .results import solution_record
        from .storage import to_xarray
        return to_xarray(solution_record(self, self.run_id or "solution"), group)

    def save(self, path, run_id: str | None = None, exist_ok: bool = False) -> str:
        """Append this solution as a run to the HDF5 file ``path``; returns the run id."""
        from .results import save_solution
        return save_solution(self, path, run_id=run_id, exist_ok=exist_ok)
