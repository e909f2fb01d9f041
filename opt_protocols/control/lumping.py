"""Exact lumping: states that stay equal along every trajectory of a problem are solved as one.

A model with a symmetry keeps some states equal for all times when they start equal: the soft
committee machine with Q0 = q0 I, R0 = r0 I, T = I and uniform second layers keeps every Q_ii
equal, every Q_ik (i != k) equal, and likewise for R, whatever the learning-rate schedule (the
equations are invariant under permuting students and teachers together). Then K(K+1)/2 + KM
states are really 4, and the collocation NLP shrinks by that factor.

The partition is found numerically and model-independently, as the coarsest *equitable*
partition: start from states grouped by their initial value (and bounds) and constants grouped by
their value; evaluate the dynamics at random points of the lumped subspace (random block values,
random controls); split every block whose members' derivatives differ; repeat until no block
splits. On the result the dynamics map the subspace into itself at every sampled point, which
for equations analytic in the states (a single random point decides an analytic identity with
probability one) means for all points: the lumped NLP is the same NLP restricted to the
subspace that holds its solution. The test is numerical: derivatives that differ by less than
EQUAL_RTOL (relative) at every sampled point are taken as equal, so a term that small against the
rest of a derivative would be lost; the pipeline's verification re-simulates the optimum with the
full model and flags a gap above 1e-6. ``op.Collocation(symmetry=False)`` turns lumping off.

Constants are lumped too (they become NLP parameters by block), so a built solver still serves
every problem with the same partitions; constants chosen as static decision variables stay alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .problem import Problem

#: Two derivatives count as equal when they differ by less than EQUAL_RTOL of the larger plus
#: EQUAL_ATOL of the largest derivative of the state vector (roundoff of sums evaluated in
#: different orders is ~1e-15 of the terms' scale). A pair wrongly told apart only loses a lumping.
EQUAL_RTOL = 1e-10
EQUAL_ATOL = 1e-14
#: Random points of the lumped subspace at which the partition is checked (per refinement round).
SAMPLES = 3
#: Size of the random perturbation of block values, relative to |value| + 0.1.
SPREAD = 0.05


@dataclass(frozen=True)
class Lumping:
    """A partition of the states and constants; ``*_blocks[i]`` is the block of entry i."""

    x_blocks: np.ndarray
    c_blocks: np.ndarray

    @property
    def n_x(self) -> int:
        return int(self.x_blocks.max()) + 1

    @property
    def n_c(self) -> int:
        return int(self.c_blocks.max()) + 1

    @property
    def x_reps(self) -> np.ndarray:
        """One state index per block (the first)."""
        return _first_members(self.x_blocks)

    @property
    def c_reps(self) -> np.ndarray:
        return _first_members(self.c_blocks)

    def key(self) -> tuple:
        return tuple(self.x_blocks.tolist()), tuple(self.c_blocks.tolist())

    def reduce(self, x: np.ndarray) -> np.ndarray:
        """Block values of full state vectors (along the first axis)."""
        return np.asarray(x)[self.x_reps]

    def expand(self, z: np.ndarray) -> np.ndarray:
        """Full state vectors from block values (along the first axis)."""
        return np.asarray(z)[self.x_blocks]


def _first_members(blocks: np.ndarray) -> np.ndarray:
    _, first = np.unique(blocks, return_index=True)
    return first


def _groups(*keys: np.ndarray) -> np.ndarray:
    """Block numbers (in order of first appearance) of the distinct tuples of the keys."""
    rows = np.stack([np.asarray(k, dtype=float) for k in keys], axis=1)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse.ravel()]


def state_box(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper state bounds (the model's declared domain and the problem's)."""
    m = problem.model
    lo, hi = np.full(m.n_x, -np.inf), np.full(m.n_x, np.inf)
    declared = m.module.state_bounds(m.params) if hasattr(m.module, "state_bounds") else {}
    for name, (a, b) in {**declared, **problem.state_bounds}.items():
        k = m.state_index(name)
        lo[k], hi[k] = max(lo[k], a), min(hi[k], b)
    return lo, hi


def _control_sample(problem: Problem, rng: np.random.Generator) -> np.ndarray:
    """Random controls: optimised ones inside their bounds, fixed ones near their value."""
    m = problem.model
    u = np.empty(m.n_u)
    for j, name in enumerate(m.control_names):
        if name in problem.controls:
            lo, hi = problem.controls[name]
        else:
            v = problem.fixed[name]
            lo = max(m.controls[name].lo, v - SPREAD * (abs(v) + 0.1))
            hi = min(m.controls[name].hi, v + SPREAD * (abs(v) + 0.1))
        u[j] = rng.uniform(lo, hi)
    return u


def _split(blocks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Refine ``blocks`` so that members of a block have equal ``values`` (EQUAL_RTOL, EQUAL_ATOL)."""
    floor = EQUAL_ATOL * float(np.max(np.abs(values)))
    label = np.empty(blocks.size)
    for b in np.unique(blocks):
        idx = np.nonzero(blocks == b)[0]
        order = idx[np.argsort(values[idx], kind="stable")]
        v = values[order]
        larger = np.maximum(np.abs(v[1:]), np.abs(v[:-1]))
        gaps = np.diff(v) > EQUAL_RTOL * larger + floor
        label[order] = np.concatenate([[0], np.cumsum(gaps)])
    return _groups(blocks, label)


def find_lumping(problem: Problem, seed: int = 0) -> Lumping | None:
    """The coarsest equitable partition of the problem's states (None when no two states lump)."""
    m = problem.model
    lo, hi = state_box(problem)
    x_blocks = _groups(problem.x0, lo, hi)
    if x_blocks.max() + 1 == m.n_x:
        return None
    c = problem.c
    free = np.arange(c.size, dtype=float)            # static variables never share a block
    static = set(problem.static_indices())
    c_blocks = _groups(c, np.array([free[i] if i in static else -1.0 for i in range(c.size)]))
    rng = np.random.default_rng(seed)
    for _ in range(m.n_x):                           # each round splits a block or ends
        before = x_blocks.max()
        for _ in range(SAMPLES):
            z = problem.x0[_first_members(x_blocks)]
            z = z + SPREAD * (np.abs(z) + 0.1) * rng.uniform(-1.0, 1.0, z.size)
            zc = c[_first_members(c_blocks)]
            zc = zc + SPREAD * (np.abs(zc) + 0.1) * rng.uniform(0.0, 1.0, zc.size)
            x = np.clip(z[x_blocks], lo, hi)
            dx = m.numba.rhs(np.ascontiguousarray(x), _control_sample(problem, rng),
                             np.ascontiguousarray(zc[c_blocks]), m.dims)
            if not np.all(np.isfinite(dx)):
                return None
            x_blocks = _split(x_blocks, dx)
        if x_blocks.max() == before:
            break
    if x_blocks.max() + 1 == m.n_x:
        return None
    return Lumping(x_blocks=x_blocks, c_blocks=c_blocks)
