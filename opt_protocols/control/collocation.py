"""Direct collocation of a :class:`~opt_protocols.problem.Problem` into an NLP solved by IPOPT.

Structure (what keeps it fast to build):

* the model's right-hand side is an SX Function, traced once per model;
* one collocation *element* -- its ``degree`` collocation equations, its end
  state and its quadrature of the loss -- is one SX Function, built once;
* the whole horizon is that Function ``map``-ed over all elements, composed in
  MX with the decision variables, and expanded to SX by ``nlpsol``;
* initial state, model constants, horizon, fixed controls, budget values and
  the target are NLP *parameters*, so a built solver serves a whole family of
  solves (:func:`get_transcription` caches it by structure).

Collocation coefficients follow the construction in CasADi's ``direct_collocation``
example (Lagrange basis on ``[0] + collocation_points(degree, scheme)``).
Discrete maps are transcribed the same way with one element per map step and
the step function in place of the collocation equations.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import casadi as ca
import numpy as np

from .. import interrupt
from .ipopt_progress import IterationReporter
from .lumping import Lumping, find_lumping, state_box
from .methods import Collocation, Context, MethodResult
from .problem import Problem

OPTIMAL = {"Solve_Succeeded"}
ACCEPTABLE = {"Solved_To_Acceptable_Level"}

_CACHE: OrderedDict[tuple, Transcription] = OrderedDict()
#: IPOPT settings of a first attempt. Measured on the committee (K = M = 2..4) and DAE problems: the
#: adaptive barrier update needs 2-8x fewer iterations than the monotone one where both converge, and
#: MUMPS with the PORD ordering factorises 3-10x faster than AMD at K = M = 4 and for the DAE.
IPOPT_DEFAULTS = {"print_level": 0, "sb": "yes", "tol": 1e-10, "max_iter": 300, "mu_strategy": "adaptive",
                  "honor_original_bounds": "yes", "mumps_pivot_order": 4}
#: Added for NLPs with at least WIDE_STATES state variables per point (dense n_x-blocks in the KKT
#: matrix): MUMPS without its own scaling (IPOPT scales the NLP already). Measured on the committee
#: with every state a variable: the factorisation 2.6x cheaper at K = M = 6, and convergence where
#: the scaled factorisation's steps stall (K = M = 4: 11 instead of 106 iterations from the symmetric
#: start, 12 instead of none from an asymmetric one; K = M = 6 asymmetric: 25). Below that size the
#: default is kept: the DAE (8 states) takes the same iterations either way, and the curriculum (3
#: states, a singular arc) stops 2e-12 higher without the scaling at 960 intervals.
IPOPT_WIDE = {"mumps_scaling": 0}
WIDE_STATES = 10
#: Changes for a second attempt when the first did not converge (measured: committee K = M = 2, sigma =
#: 0.35 takes 1223 adaptive iterations but 22 monotone ones).
IPOPT_FALLBACK = {"mu_strategy": "monotone", "max_iter": 3000}
#: Changes for a solve started from a previous solution's dual values (same NLP structure, e.g. the
#: neighbour in a sweep) and the re-simulation of its protocol. Measured on the committee learning-rate
#: problem (50 intervals) along a horizon grid 0.2 apart: 3-6 iterations instead of 5 from the previous
#: protocol alone and 10-34 from the best constant protocol, the same optimum to 1e-10. Smaller warm-start
#: bound pushes (1e-6) save about one iteration more but stop 1e-9 (relative) above the optimum; the
#: monotone barrier takes 5 iterations; mu_init has no effect with the adaptive barrier.
IPOPT_WARM = {"warm_start_init_point": "yes"}
CACHE_SIZE = 16


def collocation_coefficients(degree: int, scheme: str):
    """(tau, C, D, B) of the scheme on [0, 1], tau[0] = 0 followed by the collocation points.

    C[r, j]: derivative at tau[j] of the r-th Lagrange polynomial on tau (the collocation
    equations), D[r]: its value at 1 (continuity); B[j]: quadrature weights of the
    collocation points alone (Gauss-Legendre or Radau IIA: exact up to degree 2d-1 or 2d-2).
    """
    tau = np.append(0.0, ca.collocation_points(degree, scheme))
    C = np.zeros((degree + 1, degree + 1))
    D = np.zeros(degree + 1)
    for j in range(degree + 1):
        p = np.poly1d([1.0])
        for r in range(degree + 1):
            if r != j:
                p *= np.poly1d([1.0, -tau[r]]) / (tau[j] - tau[r])
        D[j] = p(1.0)
        dp = np.polyder(p)
        for r in range(degree + 1):
            C[j, r] = dp(tau[r])
    B = np.zeros(degree)
    for j in range(degree):
        p = np.poly1d([1.0])
        for r in range(degree):
            if r != j:
                p *= np.poly1d([1.0, -tau[r + 1]]) / (tau[j + 1] - tau[r + 1])
        B[j] = np.polyint(p)(1.0)
    return tau, C, D, B


@dataclass
class Transcription:
    """A built NLP and the bookkeeping to map between it and states/controls."""

    solver: ca.Function
    disc: Collocation
    kind: str
    n_x: int
    n_el: int
    n_cols: int                 # control columns (intervals or intervals + 1)
    opt_controls: list[str]
    fixed_controls: list[str]
    static: list[str]
    free_time: bool
    tau: np.ndarray
    slices: dict[str, slice]
    n_w: int
    g_kinds: list[tuple[str, int]] = field(default_factory=list)  # (kind, size) blocks of g
    build_time: float = 0.0
    nlp: dict = field(default_factory=dict, repr=False)
    options: dict = field(default_factory=dict, repr=False)
    fallback: ca.Function | None = None   # same NLP, IPOPT_FALLBACK settings (None: user chose the barrier)
    warm_solver: ca.Function | None = None  # same NLP, IPOPT_WARM settings (built on first use)
    reporter: IterationReporter | None = None  # the solvers' iteration_callback
    key: str = ""                           # the structure, as text (a restart must match it)
    lumping: Lumping | None = None        # states solved as one block (None: every state is a variable)

    def reduce(self, x: np.ndarray) -> np.ndarray:
        """The NLP's state variables from full state vectors (along the first axis)."""
        return x if self.lumping is None else self.lumping.reduce(x)

    def expand(self, z: np.ndarray) -> np.ndarray:
        """Full state vectors from the NLP's state variables (along the first axis)."""
        return z if self.lumping is None else self.lumping.expand(z)

    def constants(self, c: np.ndarray) -> np.ndarray:
        """The NLP's constant parameters from the model's constant vector."""
        return c if self.lumping is None else c[self.lumping.c_reps]

    def element_times(self, t_final: float) -> np.ndarray:
        return np.linspace(0.0, t_final, self.n_el + 1)

    def collocation_times(self, t_final: float) -> np.ndarray:
        """Times of all collocation points, shape (n_el, degree) (maps: empty)."""
        if self.kind == "map":
            return np.zeros((self.n_el, 0))
        h = t_final / self.n_el
        return (np.arange(self.n_el)[:, None] + self.tau[None, 1:]) * h


def _structure_key(problem: Problem, disc: Collocation, lump: Lumping | None) -> tuple:
    m = problem.model
    return (m.module.__name__, getattr(m.module, "__file__", None), m.kind, tuple(m.dims), m.n_x, m.c.size,
            tuple(m.control_names), tuple(problem.controls), tuple(problem.static),
            tuple((b.control, b.relation) for b in problem.budgets), problem.smoothness > 0,
            problem.smoothness, tuple(sorted(problem.monotone.items())), problem.objective,
            disc.intervals, disc.degree, disc.scheme, disc.elements, disc.control_type,
            None if lump is None else lump.key())


def lumping_for(problem: Problem, disc: Collocation) -> Lumping | None:
    """The states the NLP solves as one (:mod:`.lumping`), or None (none lump, or ``disc.symmetry`` is off)."""
    return find_lumping(problem) if disc.symmetry else None


def _cache_key(problem: Problem, disc: Collocation, lump: Lumping | None) -> tuple:
    return _structure_key(problem, disc, lump) + (repr(sorted(disc.solver_options.items())),)


def is_cached(problem: Problem, disc: Collocation, lump: Lumping | None = None) -> bool:
    """Whether the NLP of this problem's structure is already built in this process."""
    return _cache_key(problem, disc, lump) in _CACHE


def get_transcription(problem: Problem, disc: Collocation, lump: Lumping | None = None) -> Transcription:
    """The built NLP for this problem's structure (cached; constants and x0 are parameters).

    ``lump``: the partition of states (and constants) into blocks solved as one variable, from
    :func:`lumping_for`; None transcribes every state.
    """
    key = _cache_key(problem, disc, lump)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    import time
    t0 = time.perf_counter()
    tr = build(problem, disc, dict(disc.solver_options), lump)
    tr.build_time = time.perf_counter() - t0
    tr.key = repr(key)
    _CACHE[key] = tr
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return tr


def _block_functions(problem: Problem, lump: Lumping | None):
    """SX Functions of the nonlinear pieces, each F(z, q) with q = the model constants c.

    dyn:  z = [x, u, h, s] -> h * rhs(x, u, c_eff)   (ODE, at one collocation point)
          z = [x, u, h, s] -> step(x, u, c_eff)      (map, one step; h unused)
    loss: z = [x, s] -> loss(x, c_eff)
    where s are the static decision variables, written into c_eff at their constant positions.
    With a lumping, x and c are block values: the model sees x[x_blocks] and c[c_blocks] and
    dyn returns the derivatives of one member per block (identical subexpressions of the
    symmetric members are merged by CasADi's common-subexpression elimination).
    """
    m = problem.model
    n_u = m.n_u
    n_x, n_c = (m.n_x, m.c.size) if lump is None else (lump.n_x, lump.n_c)
    idx = problem.static_indices()
    n_s = len(idx)
    c = ca.SX.sym("c", n_c)

    def full(v, blocks):
        return v if lump is None else ca.vertcat(*[v[int(b)] for b in blocks])

    def c_eff(s):
        cf = full(c, None if lump is None else lump.c_blocks)
        if not n_s:
            return cf
        cols = [cf[i] for i in range(m.c.size)]
        for j, i in enumerate(idx):
            cols[i] = s[j]
        return ca.vertcat(*cols)

    z = ca.SX.sym("z", n_x + n_u + 1 + n_s)
    x, u, h, s = z[:n_x], z[n_x:n_x + n_u], z[n_x + n_u], z[n_x + n_u + 1:]
    xf = full(x, None if lump is None else lump.x_blocks)
    out = m.casadi.rhs(xf, u, c_eff(s))
    if lump is not None:
        out = ca.cse(ca.vertcat(*[out[int(k)] for k in lump.x_reps]))
    dyn = ca.Function("dyn", [z, c], [out if m.kind == "map" else h * out])
    zl = ca.SX.sym("zl", n_x + n_s)
    xl = full(zl[:n_x], None if lump is None else lump.x_blocks)
    loss = ca.Function("loss", [zl, c], [ca.cse(m.casadi.loss(xl, c_eff(zl[n_x:])))])
    return dyn, loss


def _sparse(triples, shape):
    import scipy.sparse as sp
    if not triples:
        return sp.csr_matrix(shape)
    r, c, v = zip(*triples)
    return sp.csr_matrix((v, (r, c)), shape=shape)


def build(problem: Problem, disc: Collocation, solver_options: dict, lump: Lumping | None = None) -> Transcription:
    """Transcribe and create the IPOPT solver (see module docstring and :mod:`.structured_nlp`).

    Decision vector w = [Xn (state at the end of every element), Xc (state at every collocation
    point), U (optimised control columns), S (static variables), T (free horizon)]; parameters
    p = [x0, c, t_final, fixed controls, budget values, target]. Collocation residuals
    h f(X_j, u_j) - sum_r C_rj X_r and continuity X_end - sum_r D_r X_r are affine in the
    outputs of the ``dyn`` copies and in w, so the only nonlinear pieces are copies of the
    model's right-hand side and loss.
    """
    import scipy.sparse as sp

    from .structured_nlp import Block, build_structured_nlp

    m = problem.model
    n_u = m.n_u
    n_x, n_c = (m.n_x, m.c.size) if lump is None else (lump.n_x, lump.n_c)
    is_map = m.kind == "map"
    if is_map:
        n_el = int(round(problem.t_final))
        if n_el < disc.intervals:
            raise ValueError(f"intervals = {disc.intervals}: a map of {n_el} steps has at most {n_el} blocks")
        d = 0
        tau = np.zeros(1)
    else:
        n_el, d = disc.intervals * disc.elements, disc.degree
        tau, Ccoef, Dcoef, Bcoef = collocation_coefficients(d, disc.scheme)
    opt = list(problem.controls)
    fixed = [n for n in m.control_names if n not in problem.controls]
    n_uo, n_uf = len(opt), len(fixed)
    linear = disc.control_type == "linear"
    n_cols = disc.intervals + (1 if linear else 0)
    free_time = problem.objective == "time"
    static = list(problem.static)
    n_s, n_b = len(static), len(problem.budgets)

    slices, i = {}, 0
    for name, n in [("Xn", n_x * n_el), ("Xc", n_x * d * n_el), ("U", n_uo * n_cols), ("S", n_s),
                    ("T", int(free_time))]:
        slices[name] = slice(i, i + n)
        i += n
    n_w = i
    ps, i = {}, 0
    for name, n in [("x0", n_x), ("c", n_c), ("T", 1), ("fixed", n_uf), ("budgets", n_b), ("target", int(free_time))]:
        ps[name] = slice(i, i + n)
        i += n
    n_p = i

    def xn(e, k):      # w index of state k at the end of element e
        return slices["Xn"].start + e * n_x + k

    def xc(e, j, k):   # w index of state k at collocation point j (0-based) of element e
        return slices["Xc"].start + (e * d + j) * n_x + k

    def u_col(j, col):
        return slices["U"].start + col * n_uo + j

    def control_weights(e, theta):
        """[(column, weight)] giving the optimised controls at fraction theta of element e."""
        if is_map:
            return [(min(e * disc.intervals // n_el, disc.intervals - 1), 1.0)]
        k, frac = e // disc.elements, (e % disc.elements + theta) / disc.elements
        return [(k, 1.0 - frac), (k + 1, frac)] if linear else [(k, 1.0)]

    def state_at(e, r, k, tw, tp, row, coef=1.0):
        """Add coef * (state k at node r of element e; r = 0 is the element start) to a row."""
        if r == 0:
            if e == 0:
                tp.append((row, ps["x0"].start + k, coef))
            else:
                tw.append((row, xn(e - 1, k), coef))
        else:
            tw.append((row, xc(e, r - 1, k), coef))

    # ---- dynamics copies: one per collocation point (ODE) or per step (map) ----
    dyn, loss_fn = _block_functions(problem, lump)
    n_z = n_x + n_u + 1 + n_s
    points = [(e, j) for e in range(n_el) for j in range(max(d, 1))]
    tw, tp, tq = [], [], []
    for b, (e, j) in enumerate(points):
        base = b * n_z
        for k in range(n_x):
            if is_map:
                state_at(e, 0, k, tw, tp, base + k)
            else:
                tw.append((base + k, xc(e, j, k), 1.0))
        for ui, name in enumerate(m.control_names):
            row = base + n_x + ui
            if name in opt:
                for col, wgt in control_weights(e, 0.0 if is_map else tau[j + 1]):
                    if wgt:
                        tw.append((row, u_col(opt.index(name), col), wgt))
            else:
                tp.append((row, ps["fixed"].start + fixed.index(name), 1.0))
        row = base + n_x + n_u
        (tw if free_time else tp).append((row, slices["T"].start if free_time else ps["T"].start, 1.0 / n_el))
        for si in range(n_s):
            tw.append((base + n_x + n_u + 1 + si, slices["S"].start + si, 1.0))
        for ci in range(n_c):
            tq.append((b * n_c + ci, ps["c"].start + ci, 1.0))
    n_pts = len(points)

    # ---- constraint rows ----
    n_cont, n_coll = n_x * n_el, n_x * d * n_el
    g_kinds = [("eq", n_cont)] + ([("eq", n_coll)] if n_coll else [])
    row_budget = n_cont + n_coll
    g_kinds += [("eq" if b.relation == "==" else "le", 1) for b in problem.budgets]
    row_mono = row_budget + n_b
    n_mono = (n_cols - 1) * len(problem.monotone)
    g_kinds += [("le", n_mono)] if n_mono else []
    row_target = row_mono + n_mono
    g_kinds += [("le", 1)] if free_time else []
    n_g = row_target + int(free_time)

    gr, gw, gp = [], [], []
    for e in range(n_el):
        for k in range(n_x):
            row = e * n_x + k
            gw.append((row, xn(e, k), 1.0))
            if is_map:      # x_{e+1} - step(x_e) = 0
                gr.append((row, e * n_x + k, -1.0))
            else:           # X_end - sum_r D_r X_r = 0
                for r in range(d + 1):
                    state_at(e, r, k, gw, gp, row, -Dcoef[r])
        for j in range(d):  # h f(X_j) - sum_r C_rj X_r = 0
            for k in range(n_x):
                row = n_cont + (e * d + j) * n_x + k
                gr.append((row, (e * d + j) * n_x + k, 1.0))
                for r in range(d + 1):
                    state_at(e, r, k, gw, gp, row, -Ccoef[r, j + 1])
    for bi, bud in enumerate(problem.budgets):
        j = opt.index(bud.control)
        for col in range(n_cols):
            wgt = (0.5 if col in (0, n_cols - 1) else 1.0) if linear else 1.0
            gw.append((row_budget + bi, u_col(j, col), wgt / disc.intervals))
        gp.append((row_budget + bi, ps["budgets"].start + bi, -1.0))
    for mi, (name, how) in enumerate(problem.monotone.items()):
        j, sign = opt.index(name), (1.0 if how == "decreasing" else -1.0)
        for col in range(n_cols - 1):
            gw.append((row_mono + mi * (n_cols - 1) + col, u_col(j, col + 1), sign))
            gw.append((row_mono + mi * (n_cols - 1) + col, u_col(j, col), -sign))

    blocks = [Block(dyn, n_pts, _sparse(tw, (n_z * n_pts, n_w)), _sparse(tp, (n_z * n_pts, n_p)),
                    _sparse(tq, (n_c * n_pts, n_p)), _sparse(gr, (n_g, n_x * n_pts)), np.zeros(n_x * n_pts))]

    def loss_block(states, weights, g_row=None):
        """Copies of the loss at the given (w index of state 0) positions, objective weights, optional g row."""
        n_zl = n_x + n_s
        lw, lq = [], []
        for b, first in enumerate(states):
            for k in range(n_x):
                lw.append((b * n_zl + k, first + k, 1.0))
            for si in range(n_s):
                lw.append((b * n_zl + n_x + si, slices["S"].start + si, 1.0))
            for ci in range(n_c):
                lq.append((b * n_c + ci, ps["c"].start + ci, 1.0))
        cnt = len(states)
        grl = [(g_row, 0, 1.0)] if g_row is not None else []
        return Block(loss_fn, cnt, _sparse(lw, (n_zl * cnt, n_w)), sp.csr_matrix((n_zl * cnt, n_p)),
                     _sparse(lq, (n_c * cnt, n_p)), _sparse(grl, (n_g, cnt)), np.asarray(weights, dtype=float))

    if problem.objective == "integral":
        if is_map:   # mean loss after each step
            blocks.append(loss_block([xn(e, 0) for e in range(n_el)], np.full(n_el, 1.0 / n_el)))
        else:        # Gauss quadrature of the time-averaged loss
            blocks.append(loss_block([xc(e, j, 0) for e in range(n_el) for j in range(d)],
                                     np.tile(Bcoef, n_el) / n_el))
    if problem.objective == "final" or free_time:
        blocks.append(loss_block([xn(n_el - 1, 0)], [1.0 if problem.objective == "final" else 0.0],
                                 row_target if free_time else None))
        if free_time:
            gp.append((row_target, ps["target"].start, -1.0))
    fw = np.zeros(n_w)
    if free_time:
        fw[slices["T"].start] = 1.0
    Q = None
    if problem.smoothness > 0 and n_cols > 1:
        Dm = []
        for j in range(n_uo):
            for col in range(n_cols - 1):
                r = j * (n_cols - 1) + col
                Dm += [(r, u_col(j, col + 1), 1.0), (r, u_col(j, col), -1.0)]
        Dmat = _sparse(Dm, (n_uo * (n_cols - 1), n_w))
        Q = sp.csr_matrix(2.0 * problem.smoothness * (Dmat.T @ Dmat))

    w = ca.MX.sym("w", n_w)
    p = ca.MX.sym("p", n_p)
    nlp, derivs = build_structured_nlp(w, p, blocks, _sparse(gw, (n_g, n_w)), _sparse(gp, (n_g, n_p)), fw, Q)
    opts = {"print_time": False, **derivs,
            "ipopt": {**IPOPT_DEFAULTS, **(IPOPT_WIDE if n_x >= WIDE_STATES else {})}}
    reporter = IterationReporter(n_w, n_g)       # IPOPT's iterations to the progress sink (and Ctrl-C)
    opts["iteration_callback"] = reporter
    for key, val in solver_options.items():
        if key.startswith("ipopt."):
            opts["ipopt"][key[6:]] = val
        else:
            opts[key] = val
    solver = ca.nlpsol("ocp", "ipopt", nlp, opts)
    fallback = None
    if "ipopt.mu_strategy" not in solver_options:
        user = {k[6:]: v for k, v in solver_options.items() if k.startswith("ipopt.")}
        fallback = ca.nlpsol("ocp_fallback", "ipopt", nlp,
                             {**opts, "ipopt": {**opts["ipopt"], **IPOPT_FALLBACK, **user}})
    return Transcription(solver=solver, disc=disc, kind=m.kind, n_x=n_x, n_el=n_el, n_cols=n_cols,
                         opt_controls=opt, fixed_controls=fixed, static=static, free_time=free_time, tau=tau,
                         slices=slices, n_w=n_w, g_kinds=g_kinds, nlp=nlp, options=opts, fallback=fallback,
                         lumping=lump, reporter=reporter)


def bounds_and_parameters(tr: Transcription, problem: Problem) -> dict:
    """lbx, ubx, lbg, ubg and p for one solve of ``problem`` on the built transcription."""
    lbx = np.full(tr.n_w, -np.inf)
    ubx = np.full(tr.n_w, np.inf)
    lo_x, hi_x = (tr.reduce(b) for b in state_box(problem))
    for key in ("Xn", "Xc"):
        sl = tr.slices[key]
        n = (sl.stop - sl.start) // tr.n_x
        lbx[sl] = np.tile(lo_x, n)
        ubx[sl] = np.tile(hi_x, n)
    sl = tr.slices["U"]
    lo_u = np.array([problem.controls[n][0] for n in tr.opt_controls])
    hi_u = np.array([problem.controls[n][1] for n in tr.opt_controls])
    lbx[sl] = np.tile(lo_u, tr.n_cols)
    ubx[sl] = np.tile(hi_u, tr.n_cols)
    sl = tr.slices["S"]
    lbx[sl] = [problem.static[n][0] for n in tr.static]
    ubx[sl] = [problem.static[n][1] for n in tr.static]
    if tr.free_time:
        sl = tr.slices["T"]
        lbx[sl] = 1e-6 * problem.t_final
        ubx[sl] = problem.t_max
    lbg, ubg = [], []
    for kind, n in tr.g_kinds:
        lbg.append(np.zeros(n) if kind == "eq" else np.full(n, -np.inf))
        ubg.append(np.zeros(n))
    p = np.concatenate([tr.reduce(problem.x0), tr.constants(problem.c), [problem.t_final],
                        [problem.fixed[n] for n in tr.fixed_controls],
                        [b.mean for b in problem.budgets],
                        [problem.target] if tr.free_time else []])
    return {"lbx": lbx, "ubx": ubx, "lbg": np.concatenate(lbg), "ubg": np.concatenate(ubg), "p": p}


def pack_guess(tr: Transcription, Xn: np.ndarray, Xc: np.ndarray, U: np.ndarray, S: np.ndarray,
               T: float | None) -> np.ndarray:
    """Decision vector from node states (n_x, n_el), collocation states (n_x, d*n_el), controls, statics."""
    w = np.zeros(tr.n_w)
    w[tr.slices["Xn"]] = np.asarray(Xn).ravel(order="F")
    w[tr.slices["Xc"]] = np.asarray(Xc).ravel(order="F")
    w[tr.slices["U"]] = np.asarray(U).ravel(order="F")
    w[tr.slices["S"]] = np.asarray(S).ravel()
    if tr.free_time:
        w[tr.slices["T"]] = T
    return w


def unpack(tr: Transcription, w: np.ndarray) -> dict:
    """Node states, collocation states, control columns, statics and horizon from a decision vector."""
    n_x = tr.n_x
    n_uo = len(tr.opt_controls)
    d = 0 if tr.kind == "map" else tr.disc.degree
    return {"Xn": w[tr.slices["Xn"]].reshape((n_x, tr.n_el), order="F"),
            "Xc": w[tr.slices["Xc"]].reshape((n_x, d * tr.n_el), order="F"),
            "U": w[tr.slices["U"]].reshape((n_uo, tr.n_cols), order="F"),
            "S": w[tr.slices["S"]].copy(),
            "T": float(w[tr.slices["T"]][0]) if tr.free_time else None}


# ---- the method: guess, solve, unpack -------------------------------------------------------------

def _protocol_from_columns(problem: Problem, tr: Transcription, U: np.ndarray, T: float):
    """The tabulated protocol of all model controls from the optimised control columns."""
    from ..protocol import Protocol
    m = problem.model
    grid = np.linspace(0.0, T, tr.disc.intervals + 1)
    n_seg = tr.disc.intervals
    U0 = np.empty((n_seg, m.n_u))
    U1 = np.empty((n_seg, m.n_u))
    for j, name in enumerate(m.control_names):
        if name in tr.opt_controls:
            row = np.clip(U[tr.opt_controls.index(name)], *problem.controls[name])
            if tr.disc.control_type == "linear":
                U0[:, j], U1[:, j] = row[:-1], row[1:]
            else:
                U0[:, j] = U1[:, j] = row
        else:
            U0[:, j] = U1[:, j] = problem.fixed[name]
    return Protocol(grid, U0, U1, list(m.control_names))


def _guess_from(problem: Problem, tr: Transcription, guess) -> np.ndarray:
    """Decision vector from a forward simulation of a guess protocol (a Baseline)."""
    from ..simulate import simulate
    m = problem.model
    T = problem.t_final
    t_nodes = tr.element_times(T)
    t_coll = tr.collocation_times(T).ravel()
    c = problem.c_with(guess.static)
    if m.kind == "map":
        traj = simulate(m, problem.x0, guess.protocol, T, c=c, t_eval=t_nodes)
        Xn, Xc = traj.x[1:].T, np.zeros((m.n_x, 0))
    else:
        t_all = np.unique(np.concatenate([t_nodes, t_coll]))
        traj = simulate(m, problem.x0, guess.protocol, T, c=c, t_eval=t_all, rtol=1e-8, atol=1e-10)
        pos = {t: i for i, t in enumerate(t_all)}
        Xn = traj.x[[pos[t] for t in t_nodes[1:]]].T
        Xc = traj.x[[pos[t] for t in t_coll]].T
    if not np.all(np.isfinite(Xn)) or not np.all(np.isfinite(Xc)):
        Xn = np.repeat(problem.x0[:, None], tr.n_el, axis=1)
        Xc = np.repeat(problem.x0[:, None], Xc.shape[1], axis=1)
    Xn, Xc = tr.reduce(Xn), tr.reduce(Xc)
    grid = np.linspace(0.0, T, tr.disc.intervals + 1)
    pts = grid if tr.disc.control_type == "linear" else 0.5 * (grid[:-1] + grid[1:])
    values = guess.protocol.values(np.minimum(pts, guess.protocol.tk[-1]))
    U = np.array([np.clip(values[n], *problem.controls[n]) for n in tr.opt_controls])
    S = np.array([guess.static.get(n, 0.5 * sum(problem.static[n])) for n in tr.static])
    return pack_guess(tr, Xn, Xc, U, S, T if tr.free_time else None)


def _constant_guess(problem: Problem, tr: Transcription) -> np.ndarray:
    n_c = (tr.slices["Xc"].stop - tr.slices["Xc"].start) // tr.n_x
    x0 = tr.reduce(problem.x0)
    return pack_guess(tr, np.repeat(x0[:, None], tr.n_el, axis=1), np.repeat(x0[:, None], n_c, axis=1),
                      np.array([[0.5 * sum(problem.controls[n])] * tr.n_cols for n in tr.opt_controls]),
                      np.array([0.5 * sum(problem.static[n]) for n in tr.static]),
                      problem.t_final if tr.free_time else None)


def run_collocation(problem: Problem, method: Collocation, ctx: Context) -> MethodResult:
    """Build (or reuse) the NLP, solve it with IPOPT (a second attempt with the monotone barrier
    when the first does not converge), and unpack the optimum."""
    import time
    ctx.report("building")
    lump = lumping_for(problem, method)
    cached = is_cached(problem, method, lump)
    tr = get_transcription(problem, method, lump)
    args = bounds_and_parameters(tr, problem)
    args["x0"] = _constant_guess(problem, tr) if ctx.guess is None else _guess_from(problem, tr, ctx.guess)
    args["x0"] = np.clip(args["x0"], args["lbx"], args["ubx"])
    ctx.report("solving")
    t_s = time.perf_counter()
    tr.reporter.attach(ctx.report)
    attempts = []
    restart = getattr(ctx.previous, "warm", None) or {}
    if restart.get("structure") == tr.key:   # dual values of a solution of the same NLP
        if tr.warm_solver is None:
            tr.warm_solver = ca.nlpsol("ocp_warm", "ipopt", tr.nlp,
                                       {**tr.options, "ipopt": {**tr.options["ipopt"], **IPOPT_WARM}})
        res = tr.warm_solver(**{**args,
                                "lam_x0": restart["lam_x"], "lam_g0": restart["lam_g"]})
        interrupt.check()      # CasADi swallows Ctrl-C inside IPOPT: never take it for a failed attempt
        st = tr.warm_solver.stats()
        attempts.append({"start": "previous solution (primal-dual)", "return_status": st.get("return_status"),
                         "iterations": int(st.get("iter_count", -1))})
    if not attempts or st.get("return_status") not in OPTIMAL:
        res = tr.solver(**args)
        interrupt.check()
        st = tr.solver.stats()
        attempts.append({"return_status": st.get("return_status"), "iterations": int(st.get("iter_count", -1))})
    if st.get("return_status") not in OPTIMAL and tr.fallback is not None:
        ctx.report("solving (second attempt, monotone barrier)")
        tr.reporter.attach(ctx.report, "second attempt")
        res = tr.fallback(**args)
        interrupt.check()
        st = tr.fallback.stats()
        attempts.append({"return_status": st.get("return_status"), "iterations": int(st.get("iter_count", -1))})
    tr.reporter.attach(None)
    solve_time = time.perf_counter() - t_s
    w = np.array(res["x"]).ravel()
    parts = unpack(tr, w)
    obj = float(res["f"])
    rs = st.get("return_status", "unknown")
    status = "optimal" if rs in OPTIMAL else ("acceptable" if rs in ACCEPTABLE else "failed")
    if not np.isfinite(obj) or not np.all(np.isfinite(w)):
        status = "failed"
    T = parts["T"] if tr.free_time else problem.t_final
    X = np.vstack([problem.x0[None, :], tr.expand(parts["Xn"]).T])
    return MethodResult(
        status=status, return_status=rs, objective=obj, protocol=_protocol_from_columns(problem, tr, parts["U"], T),
        static={n: float(v) for n, v in zip(tr.static, parts["S"])}, t=np.linspace(0.0, T, tr.n_el + 1), x=X,
        t_controls=np.linspace(0.0, T, method.intervals + 1),
        controls={n: parts["U"][j].copy() for j, n in enumerate(tr.opt_controls)},
        control_type=method.control_type, t_final=T, iterations=int(st.get("iter_count", -1)),
        build_time=0.0 if cached else tr.build_time, solve_time=solve_time, n_variables=tr.n_w,
        n_constraints=int(args["lbg"].size),
        details={"attempts": attempts, "cached_build": cached, "nlp_states": tr.n_x},
        warm={"structure": tr.key, "w": w, "lam_x": np.array(res["lam_x"]).ravel(),
              "lam_g": np.array(res["lam_g"]).ravel()})
