"""Finite-N simulation of the learning process itself, to validate a model's equations.

A model module may define ``sgd(p, x0, protocol, t_out, N, rng)``: run the
actual online SGD (or whatever learning process the equations describe) at input
dimension ``N`` from weights whose order parameters are ``x0``, under the
tabulated ``protocol`` (:class:`opt_protocols.protocol.Protocol`), and return a
dict with ``"x"``: the order parameters measured from the weights at the times
``t_out`` (shape (len(t_out), n_x)) and optionally ``"loss"``: a loss measured
directly (otherwise ``model.loss`` of the measured order parameters is used).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .model import Model, load_model
from .protocol import as_protocol
from .simulate import output_times


@dataclass
class SGDResult:
    """Learning curves of ``n_seeds`` independent finite-N runs."""

    t: np.ndarray
    loss: np.ndarray        # (n_seeds, n_t)
    x: np.ndarray           # (n_seeds, n_t, n_x)
    N: int
    seeds: list[int]

    @property
    def loss_mean(self) -> np.ndarray:
        return self.loss.mean(axis=0)

    @property
    def loss_sem(self) -> np.ndarray:
        """Standard error of the mean over seeds (NaN for a single seed)."""
        n = self.loss.shape[0]
        return self.loss.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(self.loss.shape[1], np.nan)


def simulate_sgd(model: Model | str, protocol: Any = None, t_final: float | None = None, *, N: int = 1000,
                 seeds: int | list[int] = 4, x0: np.ndarray | None = None, n_out: int = 51,
                 t_eval=None) -> SGDResult:
    """Run the model's finite-N learning process over several seeds; see the module docstring."""
    model = load_model(model) if isinstance(model, str) else model
    if not model.has_sgd:
        raise ValueError(f"model {model.name!r} has no finite-N simulator (no sgd() in its module)")
    if t_final is None or not (float(t_final) > 0):
        raise ValueError("t_final: expected a positive number")
    if int(N) < 1:
        raise ValueError(f"N = {N}: expected a positive integer")
    seed_list = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds: expected at least one seed")
    x0 = model.initial_state() if x0 is None else model.check_state(x0)
    proto = as_protocol(model, protocol, float(t_final))
    t_out = output_times(0.0, float(t_final), n_out, t_eval, model.kind)
    xs, losses = [], []
    for s in seed_list:
        out = model.module.sgd(model.params, x0, proto, t_out, int(N), np.random.default_rng(s))
        x = np.asarray(out["x"], dtype=float)
        xs.append(x)
        losses.append(np.asarray(out["loss"], dtype=float) if "loss" in out
                      else np.array([model.loss(np.ascontiguousarray(row)) for row in x]))
    return SGDResult(t=t_out, loss=np.array(losses), x=np.array(xs), N=int(N), seeds=seed_list)
