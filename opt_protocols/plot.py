"""Figures of solutions: the protocol(s) and the loss curve against the baselines (matplotlib).

Everything drawn is stored in the solution (re-simulation, baseline curves, finite-N check), so
a figure needs neither the model file nor a simulator. The title names the problem (model,
parameters that differ from the defaults, horizon, method), the legend the fixed controls and
static values, and each control is drawn on its full admissible range in the problem, so a
control that sits on a bound is not auto-scaled into a fake schedule.
"""
from __future__ import annotations

import os

import numpy as np

from .solution import Solution


def problem_title(sol: Solution) -> str:
    """One line naming the problem a solution belongs to."""
    # sizes (integers) and the parameters set away from the model's defaults
    chosen = sol.spec.get("params_set", sol.params)
    params = {k: v for k, v in sol.params.items() if (k in chosen or (isinstance(v, int) and not isinstance(v, bool)))
              and not isinstance(v, (list, np.ndarray)) and v is not None}
    shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    T = sol.t[-1] if len(sol.t) else float("nan")
    method = sol.method.get("name", "") if sol.method else ""
    return f"{sol.model} ({shown}); {sol.time_name}_F = {T:g}; {method}, {sol.status}"


def loss_name(sol: Solution) -> str:
    return str(sol.attrs.get("loss_name") or sol.spec.get("loss_name") or "loss")


def plot_solution(sol: Solution, path: str | os.PathLike | None = None, title: str | None = None):
    """Protocol panel(s) and loss panel (log scale), optimum against every baseline; saves PNG if ``path``."""
    import matplotlib
    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sol.controls)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 3.6), squeeze=False)
    axes = axes[0]
    failed = sol.status == "failed"
    t_fine = sol.trajectory.t if sol.trajectory is not None else \
        np.linspace(sol.t_controls[0], sol.t_controls[-1], 401)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    extra = []
    fixed = sol.spec.get("fixed", {})
    if fixed:
        extra.append("fixed " + ", ".join(f"{k}={v:g}" for k, v in fixed.items()))
    if sol.static:
        extra.append("static " + ", ".join(f"{k}={v:.4g}" for k, v in sol.static.items()))
    bounds = sol.spec.get("controls", {})
    for ax, name in zip(axes, names):
        if not failed:
            values = sol.protocol.values(t_fine)[name]
            ax.plot(t_fine, values, color="k", lw=2, label="optimal" + (f" ({'; '.join(extra)})" if extra else ""),
                    drawstyle="steps-post" if sol.control_type == "constant" else "default")
        for i, (bname, b) in enumerate(sol.baselines.items()):
            ax.plot(t_fine, b.protocol.values(np.minimum(t_fine, b.protocol.tk[-1]))[name],
                    color=colors[i % len(colors)], lw=1, ls="--", label=bname)
        if name in bounds:
            lo, hi = bounds[name]
            pad = 0.04 * (hi - lo)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(sol.time_name)
        ax.set_ylabel(name)
    ax = axes[-1]
    if failed:
        ax.text(0.5, 0.5, f"solve failed:\n{sol.return_status}", transform=ax.transAxes, ha="center",
                va="center", color="C3")
    elif sol.trajectory is not None:
        ax.plot(sol.trajectory.t, sol.trajectory.loss, color="k", lw=2, label=f"optimal {sol.objective:.5g}")
    else:
        ax.plot(sol.t, sol.loss, color="k", lw=2, label=f"optimal {sol.objective:.5g}")
    for i, (bname, b) in enumerate(sol.baselines.items()):
        if b.loss is not None:
            ax.plot(b.t if b.t is not None else t_fine, b.loss, color=colors[i % len(colors)], lw=1, ls="--",
                    label=f"{bname} {b.objective:.5g}")
    if sol.validation:
        v = sol.validation
        for key, marker in (("optimal", "o"), ("best_constant", "s")):
            if key in v["cases"]:
                ax.errorbar(v["t"], v["cases"][key]["sgd_mean"], yerr=v["cases"][key]["sgd_sem"],
                            fmt=marker, ms=3, color="0.3", alpha=0.7,
                            label=f"SGD N={v['summary']['N']} ({key})")
    if not failed:
        ax.set_yscale("log")
    ax.set_xlabel(sol.time_name)
    ax.set_ylabel(loss_name(sol))
    for a in (ax, axes[0]):
        if a.get_legend_handles_labels()[1]:
            a.legend(fontsize=7)
    fig.suptitle(title or problem_title(sol), fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
