"""IPOPT's iterations reported while it runs: a CasADi ``iteration_callback`` that forwards the
iteration count and the current objective to the pipeline's progress sink.

The callback is part of a built solver (``nlpsol`` takes it at construction), so it forwards to a
target that each solve sets (:meth:`IterationReporter.attach`); with no target it does nothing
but count. It returns 0 (carry on) unless a Ctrl-C has been recorded (:mod:`opt_protocols.interrupt`),
in which case it asks IPOPT to stop.
"""
from __future__ import annotations

from collections.abc import Callable

import casadi as ca

from .. import interrupt


class IterationReporter(ca.Callback):
    """``iteration_callback`` for ``nlpsol`` with ``n_x`` variables and ``n_g`` constraints."""

    def __init__(self, n_x: int, n_g: int, every: int = 1):
        ca.Callback.__init__(self)
        self.n_x, self.n_g = n_x, n_g
        self.every = max(1, int(every))
        self.target: Callable[..., None] | None = None
        self.attempt = ""
        self.count = 0
        self.construct("iteration_reporter", {})

    def attach(self, target: Callable[..., None] | None, attempt: str = "") -> None:
        self.target, self.attempt, self.count = target, attempt, 0

    def get_n_in(self):
        return ca.nlpsol_n_out()

    def get_n_out(self):
        return 1

    def get_name_in(self, i):
        return ca.nlpsol_out(i)

    def get_name_out(self, i):
        return "ret"

    def get_sparsity_in(self, i):
        name = ca.nlpsol_out(i)
        if name == "f":
            return ca.Sparsity.scalar()
        if name in ("x", "lam_x"):
            return ca.Sparsity.dense(self.n_x)
        if name in ("g", "lam_g"):
            return ca.Sparsity.dense(self.n_g)
        return ca.Sparsity(0, 0)

    def eval(self, arg):
        self.count += 1
        if self.target is not None and self.count % self.every == 0:
            try:
                self.target("solving" + (f" ({self.attempt})" if self.attempt else ""), iteration=self.count,
                            objective=float(arg[ca.nlpsol_out().index("f")]))
            except Exception:
                self.target = None
        return [1 if interrupt.interrupted() else 0]
