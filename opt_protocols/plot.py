"""Figures of solutions: the protocol(s) and the loss curve against the baselines (matplotlib)."""
from __future__ import annotations

import os

import numpy as np

from .results import model_of
from .simulate import simulate
from .solution import Solution


def _baseline_curves(sol: Solution, t: np.ndarray) -> dict[str, np.ndarray]:
    model = model_of(sol)
    x0 = np.asarray(sol.spec["x0"], dtype=float)
    curves = {}
    for name, b in sol.baselines.items():
        c = model.with_constants(**sol.spec.get("constants", {}))
        slices = model.constants.slices()
        for n, v in b.static.items():
            c[slices[n]] = v
        T = min(t[-1], b.protocol.tk[-1])
        tr = simulate(model, x0, b.protocol, T, c=c, t_eval=t[t <= T])
        curves[name] = (tr.t, tr.loss)
    return curves


def plot_solution(sol: Solution, path: str | os.PathLike | None = None, title: str | None = None):
    """Protocol panel(s) and loss panel (log scale), optimum against every baseline; saves PNG if ``path``."""
    import matplotlib
    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sol.controls)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 3.4), squeeze=False)
    axes = axes[0]
    t_fine = sol.trajectory.t if sol.trajectory is not None else sol.t
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes, names):
        values = sol.protocol.values(t_fine)[name]
        ax.plot(t_fine, values, color="k", lw=2, label="optimal", drawstyle="steps-post"
                if sol.control_type == "constant" else "default")
        for i, (bname, b) in enumerate(sol.baselines.items()):
            ax.plot(t_fine, b.protocol.values(np.minimum(t_fine, b.protocol.tk[-1]))[name],
                    color=colors[i % len(colors)], lw=1, ls="--", label=bname)
        ax.set_xlabel(sol.time_name)
        ax.set_ylabel(name)
    ax = axes[-1]
    if sol.trajectory is not None:
        ax.plot(sol.trajectory.t, sol.trajectory.loss, color="k", lw=2, label=f"optimal {sol.objective:.5g}")
    else:
        ax.plot(sol.t, sol.loss, color="k", lw=2, label=f"optimal {sol.objective:.5g}")
    for i, (bname, (bt, bl)) in enumerate(_baseline_curves(sol, t_fine).items()):
        ax.plot(bt, bl, color=colors[i % len(colors)], lw=1, ls="--",
                label=f"{bname} {sol.baselines[bname].objective:.5g}")
    if sol.validation:
        v = sol.validation
        t = v["coords"]["t"]
        for key, marker in (("optimal", "o"), ("best_constant", "s")):
            if f"{key}_sgd_mean" in v["arrays"]:
                ax.errorbar(t, v["arrays"][f"{key}_sgd_mean"][1], yerr=v["arrays"][f"{key}_sgd_sem"][1],
                            fmt=marker, ms=3, color="0.3", alpha=0.7,
                            label=f"SGD N={v['summary']['N']} ({key})")
    ax.set_yscale("log")
    ax.set_xlabel(sol.time_name)
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(title or f"{sol.model}: {sol.status}", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
