"""The adjoint method: block-constant controls of a discrete map, optimised on the exact gradient.

For a map model x_{t+1} = f(x_t, u_t) (one call of the model's ``step`` = one SGD step) with
controls piecewise constant on blocks of steps, the objective J = sum_t w_t loss(x_t) (final
loss: w_T = 1) and its gradient with respect to every block's controls cost one forward pass
and one backward (adjoint) pass,

    p_T = w_T dloss/dx(x_T),   p_t = J_x(x_t, u_t)^T p_{t+1} + w_t dloss/dx(x_t),
    dJ/du_t = J_u(x_t, u_t)^T p_{t+1},   dJ/du_block = sum over the block's steps,

i.e. O(n_x T) work and O(n_x sqrt(T)) memory, instead of a collocation NLP with one element per
step (n_x T variables and constraints). The per-step vector-Jacobian products are derived from
the model's own source (:mod:`opt_protocols.ad`).

Optimisers: the block controls are scaled to [0, 1] by their bounds and the optimisers minimise
:func:`.evaluate.log_scale` of J (+ the smoothness penalty): log J where J is not tiny, finite and
smooth down to J = 0. The defaults (:func:`default_strategy`) are SLSQP (a dense BFGS on the few
hundred block variables; also handles data budgets sum_t m_t = D and monotonicity) from the best
constant; L-BFGS-B, ``trust-constr`` (BFGS) and IPOPT through a CasADi Callback that supplies the
adjoint gradient (limited-memory Hessian) are available. BLAS is limited to one thread during the
optimisation. Multi-start from the baselines named in ``Adjoint.starts`` (and a previous solution),
then optional basin hopping (:func:`_hop`); the winner (lowest J) is recorded. Everything else
(baselines, verification, the Solution) is the shared pipeline's
(:func:`opt_protocols.control.solve.solve`). See docs/adjoint.md.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from .. import interrupt
from ..protocol import Protocol
from .baselines import family_baseline, single_thread_blas
from .evaluate import log_scale, log_scale_delta
from .methods import Adjoint, Context, MethodResult
from .problem import Problem


def block_starts(T: int, n_blocks: int) -> np.ndarray:
    """First step of every block and T: step t belongs to block t * n_blocks // T (the convention
    of the collocation transcription of maps), i.e. block b starts at ceil(b T / n_blocks)."""
    b = np.arange(n_blocks + 1, dtype=np.int64)
    return (b * T + n_blocks - 1) // n_blocks


@dataclass
class _Setup:
    """Everything the optimiser needs about a problem, in per-step form."""

    problem: Problem
    ev: Any                 # opt_protocols.ad.MapAdjoint
    T: int
    n_blocks: int
    starts: np.ndarray
    counts: np.ndarray
    block_of: np.ndarray
    opt: list[str]
    opt_idx: list[int]
    lo: np.ndarray
    hi: np.ndarray
    base_row: np.ndarray

    def blocks_to_steps(self, Z: np.ndarray) -> np.ndarray:
        """(n_opt, n_blocks) block values -> (T, n_u) table."""
        U = np.repeat(self.base_row[None, :], self.T, axis=0)
        for i, j in enumerate(self.opt_idx):
            U[:, j] = Z[i][self.block_of]
        return np.ascontiguousarray(U)

    def steps_to_blocks(self, values: np.ndarray) -> np.ndarray:
        """Block means of a per-step schedule."""
        return np.add.reduceat(np.asarray(values, dtype=float), self.starts[:-1]) / self.counts

    def block_grad(self, G: np.ndarray) -> np.ndarray:
        return np.array([np.add.reduceat(G[:, j], self.starts[:-1]) for j in self.opt_idx])


def _setup(problem: Problem, method: Adjoint, ev) -> _Setup:
    m = problem.model
    T = int(round(problem.t_final))
    nb = method.intervals
    st = block_starts(T, nb)
    opt = list(problem.controls)
    return _Setup(problem=problem, ev=ev, T=T, n_blocks=nb, starts=st,
                  counts=np.diff(st).astype(float), block_of=(np.arange(T) * nb) // T, opt=opt,
                  opt_idx=[m.control_names.index(n) for n in opt],
                  lo=np.array([problem.controls[n][0] for n in opt]),
                  hi=np.array([problem.controls[n][1] for n in opt]),
                  base_row=np.array([problem.fixed.get(n, m.controls[n].default) for n in m.control_names]))


def _constraints(setup: _Setup):
    """Linear constraints on the scaled block variables z: (A, lb, ub) rows (budgets, monotone)."""
    p = setup.problem
    nb = setup.n_blocks
    n = len(setup.opt) * nb
    rows, lbs, ubs = [], [], []
    wts = setup.counts / setup.T
    for b in p.budgets:
        i = setup.opt.index(b.control)
        lo, hi = p.controls[b.control]
        a = np.zeros(n)
        a[i * nb:(i + 1) * nb] = wts * (hi - lo)
        rhs = b.mean - lo   # sum_b w_b (lo + (hi - lo) z_b) = mean
        rows.append(a)
        lbs.append(rhs if b.relation == "==" else -np.inf)
        ubs.append(rhs)
    for name, how in p.monotone.items():
        i = setup.opt.index(name)
        sign = 1.0 if how == "decreasing" else -1.0
        for k in range(nb - 1):
            a = np.zeros(n)
            a[i * nb + k + 1] = sign
            a[i * nb + k] = -sign
            rows.append(a)
            lbs.append(-np.inf)
            ubs.append(0.0)
    if not rows:
        return None
    return np.array(rows), np.array(lbs), np.array(ubs)


def _run_optimizer(setup: _Setup, z0: np.ndarray, optimizer: str, tol: float, max_iter: int,
                   smoothness: float, options: Mapping[str, Any] | None = None) -> dict:
    """One local optimisation from z0 (scaled block controls). Returns a record.

    Minimised: f = log_scale(J + penalty) (:func:`.evaluate.log_scale`: log J for J well above
    tol * J(z0), finite down to J = 0), i.e. the same minimiser as J + penalty, scaled alike
    across horizons. The record's ``J`` is J + penalty at its ``z``.
    """
    ev = setup.ev
    nb = setup.n_blocks
    n_opt = len(setup.opt)
    scale = np.repeat(setup.hi - setup.lo, nb)
    lo = np.repeat(setup.lo, nb)
    cons = _constraints(setup)
    nfev = [0]
    best = {"J": np.inf, "z": z0.copy()}

    def penalty(u):
        if smoothness <= 0 or nb < 2:
            return 0.0, np.zeros_like(u)
        U = u.reshape(n_opt, nb)
        d = np.diff(U, axis=1)
        g = np.zeros_like(U)
        g[:, 1:] += 2 * d
        g[:, :-1] -= 2 * d
        return smoothness * float(np.sum(d * d)), smoothness * g.ravel()

    last: dict[str, Any] = {"z": None}

    def total(z):
        if last["z"] is not None and np.array_equal(z, last["z"]):
            return last["J"], last["g"]
        u = lo + scale * z
        J, G = ev.value_and_grad(setup.blocks_to_steps(u.reshape(n_opt, nb)))
        g = np.zeros_like(z)
        if np.isfinite(J):
            pen, gp = penalty(u)
            with np.errstate(over="ignore", invalid="ignore"):
                g = (setup.block_grad(G).ravel() + gp) * scale
            J = J + pen
        if not (np.isfinite(J) and np.all(np.isfinite(g))):   # states (or their adjoints) overflowed
            J, g = np.inf, np.zeros_like(z)
        last.update(z=z.copy(), J=J, g=g)
        return J, g

    J0, _ = total(z0)
    delta = log_scale_delta(J0, tol)

    def fg(z):
        nfev[0] += 1
        J, g = total(z)
        if not np.isfinite(J):
            return _OVERFLOW, np.zeros_like(z)
        f, dfdJ = log_scale(J, delta)
        if J < best["J"]:
            best["J"], best["z"] = J, z.copy()
        return f, g * dfdJ

    bounds = [(0.0, 1.0)] * z0.size
    t0 = time.perf_counter()
    with single_thread_blas():
        rec = _dispatch(fg, z0, bounds, cons, optimizer, tol, max_iter, dict(options or {}))
    z = np.clip(rec["z"], 0.0, 1.0)
    f, g = fg(z)
    J, _ = total(z)
    rec.update(z=z, f=f, J=J, nfev=nfev[0], time=time.perf_counter() - t0, grad=g)
    # projected gradient (bounds only) as a stationarity measure, in log-objective units
    pg = np.where((z <= 1e-12) & (g > 0) | (z >= 1 - 1e-12) & (g < 0), 0.0, g)
    rec["projected_gradient"] = float(np.max(np.abs(pg))) if cons is None else float("nan")
    return rec


#: What the optimisers see when the states overflow (log of a loss far above any finite one).
_OVERFLOW = 1e3


def _dispatch(fg, z0, bounds, cons, optimizer, tol, max_iter, options) -> dict:
    if optimizer == "L-BFGS-B":
        if cons is not None:
            raise ValueError("optimizer 'L-BFGS-B' handles bounds only: use 'SLSQP', 'trust-constr' or 'ipopt' "
                             "with budgets or monotonicity")
        res = optimize.minimize(fg, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"ftol": tol, "gtol": tol, "maxiter": max_iter, "maxcor": 30,
                                         "maxfun": 20 * max_iter, **options})
        rec = {"z": res.x, "success": bool(res.success), "message": str(res.message), "nit": int(res.nit)}
    elif optimizer == "SLSQP":
        constraints = []
        if cons is not None:
            A, lb, ub = cons
            eq = np.isfinite(lb) & (lb == ub)
            if eq.any():
                constraints.append({"type": "eq", "fun": lambda z, A=A[eq], b=ub[eq]: A @ z - b,
                                    "jac": lambda z, A=A[eq]: A})
            if (~eq).any():
                constraints.append({"type": "ineq", "fun": lambda z, A=A[~eq], b=ub[~eq]: b - A @ z,
                                    "jac": lambda z, A=A[~eq]: -A})
        res = optimize.minimize(fg, z0, jac=True, method="SLSQP", bounds=bounds, constraints=constraints,
                                options={"ftol": tol, "maxiter": max_iter, **options})
        rec = {"z": res.x, "success": bool(res.success), "message": str(res.message), "nit": int(res.nit)}
    elif optimizer == "trust-constr":
        constraints = []
        if cons is not None:
            A, lb, ub = cons
            constraints.append(optimize.LinearConstraint(A, lb, ub))
        res = optimize.minimize(fg, z0, jac=True, method="trust-constr", bounds=optimize.Bounds(0.0, 1.0),
                                constraints=constraints, hess=optimize.BFGS(),
                                options={"gtol": tol, "xtol": 1e-14, "maxiter": max_iter, **options})
        rec = {"z": res.x, "success": bool(res.status in (1, 2)), "message": str(res.message),
               "nit": int(res.nit)}
    elif optimizer == "ipopt":
        rec = _ipopt(fg, z0, cons, tol, max_iter, options)
    else:
        raise ValueError(f"optimizer {optimizer!r}: expected one of {', '.join(Adjoint.OPTIMIZERS)}")
    return rec


def _ipopt(fg, z0, cons, tol, max_iter, options) -> dict:
    """IPOPT (limited-memory Hessian) on f(z) through a CasADi Callback supplying the adjoint gradient."""
    import casadi as ca
    n = z0.size
    cache = {}

    def evaluate(z):
        key = z.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = fg(z)
        return cache[key]

    class Grad(ca.Callback):
        def __init__(self):
            ca.Callback.__init__(self)
            self.construct("adjoint_grad", {})

        def get_n_in(self): return 2
        def get_n_out(self): return 1
        def get_sparsity_in(self, i): return ca.Sparsity.dense(n, 1) if i == 0 else ca.Sparsity.dense(1, 1)
        def get_sparsity_out(self, i): return ca.Sparsity.dense(1, n)

        def eval(self, arg):
            return [evaluate(np.array(arg[0]).ravel())[1][None, :]]

    class Obj(ca.Callback):
        def __init__(self):
            ca.Callback.__init__(self)
            self.construct("adjoint_obj", {})

        def get_n_in(self): return 1
        def get_n_out(self): return 1
        def get_sparsity_in(self, i): return ca.Sparsity.dense(n, 1)
        def get_sparsity_out(self, i): return ca.Sparsity.dense(1, 1)
        def has_jacobian(self): return True

        def get_jacobian(self, name, inames, onames, opts):
            self._g = Grad()
            x = ca.MX.sym("x", n)
            out = ca.MX.sym("out", 1)
            return ca.Function(name, [x, out], [self._g(x, out)], inames, onames, opts)

        def eval(self, arg):
            return [evaluate(np.array(arg[0]).ravel())[0]]

    obj = Obj()
    x = ca.MX.sym("x", n)
    nlp = {"x": x, "f": obj(x)}
    args = {"x0": z0, "lbx": np.zeros(n), "ubx": np.ones(n)}
    if cons is not None:
        A, lb, ub = cons
        nlp["g"] = ca.mtimes(ca.DM(A), x)
        args["lbg"], args["ubg"] = lb, ub
    solver = ca.nlpsol("adjoint_ipopt", "ipopt", nlp,
                       {"print_time": False, "ipopt": {"print_level": 0, "sb": "yes", "tol": max(tol, 1e-12),
                                                        "hessian_approximation": "limited-memory",
                                                        "limited_memory_max_history": 30,
                                                        "max_iter": max_iter, **options}})
    res = solver(**args)
    interrupt.check()      # CasADi swallows Ctrl-C inside IPOPT
    st = solver.stats()
    rs = st.get("return_status", "unknown")
    return {"z": np.array(res["x"]).ravel(), "success": rs == "Solve_Succeeded", "message": rs,
            "acceptable": rs == "Solved_To_Acceptable_Level", "nit": int(st.get("iter_count", -1))}


def _project_budgets(setup: _Setup, z: np.ndarray) -> np.ndarray:
    """Rescale the blocks of every '=='-budgeted control so that the budget holds (then clip)."""
    z = z.copy()
    nb, T = setup.n_blocks, setup.T
    for b in setup.problem.budgets:
        if b.relation != "==":
            continue
        i = setup.opt.index(b.control)
        lo_i, hi_i = setup.lo[i], setup.hi[i]
        blk = slice(i * nb, (i + 1) * nb)
        u = lo_i + (hi_i - lo_i) * z[blk]
        for _ in range(50):   # rescaling and clipping alternate until the mean is met
            mean = np.sum(u * setup.counts) / T
            if abs(mean - b.mean) <= 1e-13 * max(1.0, abs(b.mean)):
                break
            u = np.clip(u * (b.mean / mean) if mean > 0 else np.full(nb, b.mean), lo_i, hi_i)
        z[blk] = (u - lo_i) / (hi_i - lo_i)
    return z


def _hop(setup: _Setup, z: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A random perturbation of a block schedule for basin hopping.

    Moves (on one optimised control): swap two blocks 1-3 apart; rotate a window of 3-10
    blocks by one; push one block to its upper bound (or, if it is there, to the mean of its
    neighbours); repeat a motif of 2-4 blocks over its neighbouring window. Near-commuting steps
    make schedules that differ by such rearrangements nearly equally good, and their local minima
    are separated by barriers that the quasi-Newton methods do not cross.
    """
    nb = setup.n_blocks
    z = z.copy()
    i = int(rng.integers(len(setup.opt)))
    row = z[i * nb:(i + 1) * nb]
    move = int(rng.integers(4))
    if nb < 8:
        move = 2
    if move == 0:
        j = int(rng.integers(nb - 1))
        k = min(nb - 1, j + int(rng.integers(1, 4)))
        row[[j, k]] = row[[k, j]]
        name = "swap"
    elif move == 1:
        w = int(rng.integers(3, min(10, nb) + 1))
        j = int(rng.integers(nb - w + 1))
        row[j:j + w] = np.roll(row[j:j + w], int(rng.choice([-1, 1])))
        name = "rotate"
    elif move == 2:
        j = int(rng.integers(nb))
        if row[j] < 0.95:
            row[j] = 1.0
        else:
            row[j] = 0.5 * (row[max(j - 1, 0)] + row[min(j + 1, nb - 1)])
        name = "push"
    else:
        w = int(rng.integers(2, 5))
        j = int(rng.integers(w, nb - w + 1))
        if rng.random() < 0.5:
            row[j:j + w] = row[j - w:j]
        else:
            row[j - w:j] = row[j:j + w]
        name = "repeat"
    z[i * nb:(i + 1) * nb] = row
    return z, name


def _z_from(setup: _Setup, per_step: Mapping[str, Any], default: Mapping[str, float]) -> np.ndarray:
    """Scaled block variables from per-step (or per-block) values of the optimised controls."""
    rows = []
    T, nb = setup.T, setup.n_blocks
    for i, n in enumerate(setup.opt):
        v = per_step.get(n, default.get(n, 0.5 * (setup.lo[i] + setup.hi[i])))
        v = np.full(T, float(v)) if np.ndim(v) == 0 else np.asarray(v, dtype=float)
        vb = setup.steps_to_blocks(v) if v.size == T else v
        if vb.size != nb:
            vb = np.interp((np.arange(nb) + 0.5) / nb, (np.arange(vb.size) + 0.5) / vb.size, vb)
        rows.append((np.clip(vb, setup.lo[i], setup.hi[i]) - setup.lo[i]) / (setup.hi[i] - setup.lo[i]))
    return _project_budgets(setup, np.concatenate(rows))


#: Above this many optimised block values SLSQP's dense subproblems (cost ~ n^3 per iteration) dominate,
#: and a rugged per-step problem needs thousands of iterations, so the default is then L-BFGS-B (bounds
#: only) or IPOPT with a limited-memory Hessian (tests/test_ad.py; timings in the issue notes).
SLSQP_MAX_VARIABLES = 300


def default_strategy(setup: _Setup, method: Adjoint, constrained: bool) -> tuple[tuple, list[str]]:
    """The starts and optimisers of a run: the method's, or the defaults measured best.

    Defaults (measured on the random-feature map, benchmarks/bench_random_features.py): SLSQP from
    the best constant, which reached the tightest optimum with the fewest gradients wherever blocks
    hold several steps (L-BFGS-B needed several times as many and stopped measurably above it).
    When every block is a single step the landscape is rugged (many nearly equal local minima: the
    steps nearly commute), no optimiser or start was reliably best, and gradients are cheap, so the
    default tries the best-constant and the power-law starts, each with SLSQP and (bounds only)
    L-BFGS-B. Above :data:`SLSQP_MAX_VARIABLES` block values SLSQP is left out: L-BFGS-B for bounds
    only, IPOPT (limited-memory) with budgets or monotonicity.
    """
    rugged = setup.T == setup.n_blocks
    starts = method.starts if method.starts is not None else (
        ("best_constant", "power_law") if rugged else ("best_constant",))
    if method.optimizer is not None:
        return starts, [method.optimizer]
    if setup.n_blocks * len(setup.opt) > SLSQP_MAX_VARIABLES:
        return starts, ["ipopt" if constrained else "L-BFGS-B"]
    return starts, (["SLSQP", "L-BFGS-B"] if rugged and not constrained else ["SLSQP"])


def _start_points(setup: _Setup, starts: tuple, ctx: Context, problem: Problem) -> list[tuple[str, np.ndarray]]:
    base = ctx.baselines
    const = base["best_constant"].values or {}
    steps = np.arange(setup.T, dtype=float)

    def from_protocol(proto: Protocol) -> np.ndarray:
        return _z_from(setup, proto.values(np.minimum(steps, proto.tk[-1])), const)

    points = []
    for s in starts:
        if s == "best_baseline":   # one start from the best of the fitted baselines
            s = min((n for n in base if n != "default"), key=lambda n: base[n].objective)
        if isinstance(s, str) and s in ("power_law", "wsd") and s not in base:   # a default start: fit it now
            fit = family_baseline(problem, ctx.evaluator, s, base["best_constant"])
            if fit is None:
                continue
            base[s] = fit
        if isinstance(s, Mapping):
            points.append(("given", _z_from(setup, s, const)))
        elif s in base:
            points.append((s, from_protocol(base[s].protocol)))
        else:
            raise ValueError(f"start {s!r}: no baseline of that name (have {', '.join(base)})")
    if ctx.previous is not None and ctx.guess is not None:
        points.append(("warm_start", from_protocol(ctx.guess.protocol)))
    return points


def run_adjoint(problem: Problem, method: Adjoint, ctx: Context) -> MethodResult:
    """Multi-start quasi-Newton optimisation of the block controls, then optional basin hopping."""
    ctx.report("building")
    ev = ctx.evaluator.adjoint
    if ev is None:
        raise ValueError("method Adjoint: no adjoint evaluator for this problem")
    if method.kernel != "auto" and method.kernel != ev.kernel.kind:   # the kernel asked for, not the default
        from ..ad import MapAdjoint
        ev = MapAdjoint(problem.model, ev.T, ev.x0, ev.c, ev.objective, kernel=method.kernel)
    setup = _setup(problem, method, ev)
    cons = _constraints(setup)
    starts, optimizers = default_strategy(setup, method, cons is not None)
    points = _start_points(setup, starts, ctx, problem)
    ctx.report("solving")
    t_s = time.perf_counter()
    runs = []
    for name, z0 in points:
        for optimizer in optimizers:
            rec = _run_optimizer(setup, z0, optimizer, method.tol, method.max_iter, problem.smoothness,
                                 method.options)
            rec["start"], rec["optimizer"] = name, optimizer
            runs.append(rec)
    win = min(runs, key=lambda r: r["J"])
    optimizer = win["optimizer"]
    hop_log = {"tried": 0, "accepted": 0, "moves": {}, "improvement": 0.0, "time": 0.0}
    if method.hops > 0:
        t_h = time.perf_counter()
        rng = np.random.default_rng(method.seed)
        J0 = win["J"]
        for _ in range(method.hops):
            z1, move = _hop(setup, win["z"], rng)
            rec = _run_optimizer(setup, _project_budgets(setup, z1), optimizer, method.tol, method.max_iter,
                                 problem.smoothness, method.options)
            hop_log["tried"] += 1
            if rec["J"] < win["J"] * (1.0 - 1e-15):
                rec["optimizer"] = optimizer
                rec["start"] = win["start"] if win["start"].endswith("+hops") else win["start"] + "+hops"
                win = rec
                hop_log["accepted"] += 1
                hop_log["moves"][move] = hop_log["moves"].get(move, 0) + 1
        hop_log["improvement"] = float(1.0 - win["J"] / J0) if J0 > 0 else 0.0
        hop_log["time"] = time.perf_counter() - t_h
    solve_time = time.perf_counter() - t_s
    nb, opt = setup.n_blocks, setup.opt
    Z = setup.lo[:, None] + (setup.hi - setup.lo)[:, None] * win["z"].reshape(len(opt), nb)
    J = setup.ev.value(setup.blocks_to_steps(Z))
    pen = problem.smoothness * float(np.sum(np.diff(Z, axis=1) ** 2)) if problem.smoothness > 0 else 0.0
    obj = J + pen
    if win["success"]:
        status = "optimal"
    elif win.get("acceptable") or (np.isfinite(win["projected_gradient"]) and win["projected_gradient"] <= 1e-6):
        status = "acceptable"
    else:
        status = "failed"
    if not np.isfinite(obj):
        status = "failed"
    tk = setup.starts.astype(float)
    U0 = np.repeat(setup.base_row[None, :], nb, axis=0)
    for i, j in enumerate(setup.opt_idx):
        U0[:, j] = Z[i]
    proto = Protocol(tk, np.ascontiguousarray(U0), np.ascontiguousarray(U0.copy()),
                     list(problem.model.control_names))
    from ..simulate import simulate
    blocks = simulate(problem.model, problem.x0, proto, setup.T, c=problem.c, t_eval=tk)

    k = ev.kernel
    details = {"optimizer": optimizer, "kernel": k.kind, "kernel_note": k.note,
               "kernel_check_error": k.check.get("error", float("nan")), "n_gradients": int(ev.n_backward),
               "checkpoint_every": ev.S, "winner": win["start"],
               "starts": [{"start": r["start"], "optimizer": r["optimizer"], "objective": float(r["J"]),
                           "iterations": r["nit"],
                           "evaluations": r["nfev"], "message": r["message"], "success": r["success"],
                           "time": r["time"], "projected_gradient": r["projected_gradient"]} for r in runs],
               "hops": hop_log}
    return MethodResult(status=status, return_status=win["message"], objective=float(obj), protocol=proto,
                        static={}, t=tk, x=blocks.x, t_controls=tk,
                        controls={n: Z[i].copy() for i, n in enumerate(opt)},
                        control_type="constant", t_final=float(setup.T), iterations=int(win["nit"]),
                        build_time=k.build_time, solve_time=solve_time,
                        n_variables=int(win["z"].size), n_constraints=0 if cons is None else int(cons[0].shape[0]),
                        details=details, warm={"z": win["z"].copy()})
