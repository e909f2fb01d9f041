"""Committee machines at research widths: shared-root equations, exact lumping of symmetric states,
and the optimal learning-rate schedules they give (docs/models.md section 1).

The optima are pinned to the values of the formulation before these changes (every state an NLP
variable, per-term integrals), measured at K = M = 2, 4 and 6: they agree to 3e-11 relative, which is
the IPOPT tolerance (1e-10 on the scaled KKT error); the pins use 1e-9.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

import opt_protocols as op
from opt_protocols.control import collocation
from opt_protocols.control.lumping import find_lumping
from opt_protocols.control.problem import make_problem
from opt_protocols.control.structured_nlp import _dm

LR = dict(t_final=20.0, controls={"eta": (0.0, 3.0)})
#: final eg of the optimal eta(alpha), sigma = 0.3, alpha_F = 20, 50 intervals: K = M = 2, 4 with every
#: state a variable (the code before lumping); 6, 8 from the lumped NLP (the full one did not finish in
#: 700 s and 15 min)
LR_OPTIMUM = {2: 0.0190048915896, 4: 0.0424570358126, 6: 0.0640538954322, 8: 0.0851622034160}


# ---- the equations: an independent per-term implementation of the integrals [SS95, Goldt19, MM25] ----

def _reference_rhs(model, x, u):
    """dQ, dR (and dv) term by term from the textbook integrals I2, I3, I4, J2 (no shared roots)."""
    K, M = model.params["K"], model.params["M"]
    o = model.overlaps(x)
    C = np.block([[o["Q"], o["R"]], [o["R"].T, o["T"]]])
    const = model.constants.values
    v, vt = o["v"], np.asarray(const["v_teacher"], dtype=float)
    sigma, wd, eta_v = const["sigma"], const["wd"], const["eta_v"]
    eta, r = u

    def I2(a, b):
        return 2 / math.pi * math.asin(C[a, b] / math.sqrt((1 + C[a, a]) * (1 + C[b, b])))

    def I3(a, b, d):
        L3 = (1 + C[a, a]) * (1 + C[d, d]) - C[a, d] ** 2
        return 2 / math.pi / math.sqrt(L3) * (C[b, d] * (1 + C[a, a]) - C[a, b] * C[a, d]) / (1 + C[a, a])

    def I4(a, b, d, e):
        L4 = (1 + C[a, a]) * (1 + C[b, b]) - C[a, b] ** 2
        L0 = (L4 * C[d, e] - C[b, d] * C[b, e] * (1 + C[a, a]) - C[a, d] * C[a, e] * (1 + C[b, b])
              + C[a, b] * C[a, d] * C[b, e] + C[a, b] * C[a, e] * C[b, d])
        L1 = (L4 * (1 + C[d, d]) - C[b, d] ** 2 * (1 + C[a, a]) - C[a, d] ** 2 * (1 + C[b, b])
              + 2 * C[a, b] * C[a, d] * C[b, d])
        L2 = (L4 * (1 + C[e, e]) - C[b, e] ** 2 * (1 + C[a, a]) - C[a, e] ** 2 * (1 + C[b, b])
              + 2 * C[a, b] * C[a, e] * C[b, e])
        return 4 / math.pi ** 2 / math.sqrt(L4) * math.asin(L0 / math.sqrt(L1 * L2))

    def rho(*students):
        return r ** len(set(students))

    t = [K + n for n in range(M)]
    dQ, dR = np.zeros((K, K)), np.zeros((K, M))
    for i in range(K):
        for n in range(M):
            acc = sum(rho(i) * vt[m] * I3(i, t[n], t[m]) for m in range(M))
            acc -= sum(rho(i, j) * v[j] * I3(i, t[n], j) for j in range(K))
            dR[i, n] = eta * v[i] * acc - wd * C[i, t[n]]
        for k in range(K):
            lin = sum(rho(i) * vt[m] * (v[i] * I3(i, k, t[m]) + v[k] * I3(k, i, t[m])) for m in range(M))
            lin -= sum(rho(i, j) * v[i] * v[j] * I3(i, k, j) + rho(k, j) * v[k] * v[j] * I3(k, i, j) for j in range(K))
            quad = sum(rho(i, k) * vt[n] * vt[m] * I4(i, k, t[n], t[m]) for n in range(M) for m in range(M))
            quad -= 2 * sum(rho(i, k, j) * v[j] * vt[n] * I4(i, k, j, t[n]) for j in range(K) for n in range(M))
            quad += sum(rho(i, k, j, l) * v[j] * v[l] * I4(i, k, j, l) for j in range(K) for l in range(K))
            quad += rho(i, k) * sigma ** 2 * 2 / math.pi / math.sqrt((1 + C[i, i]) * (1 + C[k, k]) - C[i, k] ** 2)
            dQ[i, k] = eta * lin + eta ** 2 * v[i] * v[k] * quad - 2 * wd * C[i, k]
    out = [dQ[i, k] for i in range(K) for k in range(i, K)] + list(dR.ravel())
    if model.params["learn_v"]:
        out += [eta_v * (sum(rho(i) * vt[n] * I2(i, t[n]) for n in range(M))
                         - sum(rho(i, j) * v[j] * I2(i, j) for j in range(K))) for i in range(K)]
    return np.array(out)


@pytest.mark.parametrize("cfg", [dict(K=3, M=2, sigma=0.2, wd=0.05, learn_v=True, T=[[1.2, -0.2], [-0.2, 0.9]],
                                      v_teacher=[0.8, 1.1]),
                                 dict(K=4, M=4, sigma=0.3), dict(K=2, M=5, v=[0.7, 1.3])],
                         ids=["K3M2-learn_v", "K4M4", "K2M5"])
def test_shared_root_equations_match_the_integrals_term_by_term(cfg):
    """The rewritten rhs (one square root per pair and unit) equals the per-term integrals (measured 2e-15)."""
    model = op.load_model("committee", **cfg)
    rng = np.random.default_rng(11)
    for trial in range(4):
        x = model.random_state(rng)
        u = np.array([rng.uniform(0.1, 2.0), 1.0 if trial == 0 else rng.uniform(0.2, 1.0)])
        ref = _reference_rhs(model, x, u)
        assert np.max(np.abs(model.rhs(x, u) - ref)) <= 1e-12 * np.max(np.abs(ref))


# ---- lumping -----------------------------------------------------------------------------------

def _lr_problem(K, **kw):
    return make_problem(op.load_model("committee", K=K, M=K, sigma=0.3), **LR, **kw)


def test_symmetric_students_lump_to_four_states():
    """Q = q0 I, R = r0 I, T = I, v = v* = 1: Q_ii, Q_ik, R_ii, R_in stay equal (permutation symmetry)."""
    problem = _lr_problem(4)
    lump = find_lumping(problem)
    m = problem.model
    assert lump is not None and lump.n_x == 4
    kinds = {}
    for name, b in zip(m.state_names, lump.x_blocks):
        i, k = map(int, name[2:-1].split(","))
        kinds.setdefault((name[0], i == k), set()).add(int(b))
    assert sorted(kinds) == [("Q", False), ("Q", True), ("R", False), ("R", True)]
    assert all(len(bs) == 1 for bs in kinds.values()) and len({next(iter(b)) for b in kinds.values()}) == 4
    # the lumped NLP dynamics are the full model's derivatives of one member per block
    dyn, loss = collocation._block_functions(problem, lump)
    x = problem.x0 * 1.3 + 0.01
    z = np.concatenate([lump.reduce(x), [0.7, 1.0, 1.0]])       # [states, eta, r, h]
    full = m.rhs(lump.expand(lump.reduce(x)), np.array([0.7, 1.0]))
    got = np.asarray(dyn(z, problem.c[lump.c_reps])).ravel()
    np.testing.assert_allclose(got, full[lump.x_reps], rtol=1e-13, atol=1e-15)
    assert float(loss(lump.reduce(x), problem.c[lump.c_reps])) == pytest.approx(m.loss(lump.expand(lump.reduce(x))),
                                                                                rel=1e-14)


def test_nothing_lumps_without_symmetry():
    m = op.load_model("committee", K=3, M=3, sigma=0.3)
    R0 = 0.01 * np.eye(3) + 1e-3 * np.random.default_rng(0).uniform(-1, 1, (3, 3))
    assert find_lumping(make_problem(m, x0=m.initial_state(R=R0), **LR)) is None
    # a teacher with its own norm breaks the symmetry between its student and the others
    m2 = op.load_model("committee", K=3, M=3, sigma=0.3, T=np.diag([1.0, 1.0, 2.0]))
    lump = find_lumping(make_problem(m2, **LR))
    assert lump is not None and 4 < lump.n_x < m2.n_x


def test_static_constants_keep_their_own_block():
    """p_test = 1 equals T_nn = v_n = 1, but as a decision variable it must stay a separate parameter."""
    m = op.load_model("committee", K=2, M=2, sigma=0.2)
    problem = make_problem(m, t_final=5.0, controls={"r": (0, 1)}, fixed={"eta": 1.0}, static={"p_test": (0, 1)})
    lump = find_lumping(problem)
    i = m.constants.slices()["p_test"].start
    assert lump is not None and np.sum(lump.c_blocks == lump.c_blocks[i]) == 1


def test_lumped_and_full_nlp_give_the_same_optimum():
    """Same discretised problem, 4 or 15 NLP states: same optimum and trajectory (measured 1e-12)."""
    m = op.load_model("committee", K=3, M=3, sigma=0.3)
    sols = {sym: op.solve(m, **LR, method=op.Collocation(intervals=20, symmetry=sym)) for sym in (True, False)}
    assert sols[True].stats["nlp_states"] == 4 and sols[False].stats["nlp_states"] == m.n_x
    for s in sols.values():
        assert s.status == "optimal" and s.verification["ok"]
    assert sols[True].objective == pytest.approx(sols[False].objective, rel=1e-9)
    np.testing.assert_allclose(sols[True].x, sols[False].x, rtol=0, atol=1e-8)
    np.testing.assert_allclose(sols[True].controls["eta"], sols[False].controls["eta"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("K", [2, 4, 6, pytest.param(8, marks=pytest.mark.slow)])
def test_committee_lr_optimum(K):
    """The benchmark's problem (sigma = 0.3, eta in [0, 3], alpha_F = 20, 50 intervals)."""
    sol = op.solve(op.load_model("committee", K=K, M=K, sigma=0.3), **LR, intervals=50)
    assert sol.status == "optimal" and sol.verification["ok"] and sol.stats["nlp_states"] == 4
    assert sol.objective == pytest.approx(LR_OPTIMUM[K], rel=1e-9)
    assert sol.objective < sol.baselines["best_constant"].objective


def test_dm_from_sparse_matches_dense():
    A = sp.random(40, 30, density=0.1, format="coo", random_state=3)
    A = sp.coo_matrix((np.append(A.data, [1.0, 2.0]), (np.append(A.row, [0, 0]), np.append(A.col, [1, 1]))),
                      shape=A.shape)                                    # a duplicate entry is summed
    np.testing.assert_array_equal(np.array(_dm(A)), A.toarray())


def test_split_tells_small_derivatives_apart():
    """Equality is relative to each pair (and 1e-14 of the largest): 1e-12 and 2e-12 differ even next to 1."""
    from opt_protocols.control.lumping import _split
    values = np.array([1.0, 1e-12, 2e-12, 1e-12 * (1 + 1e-14), 1.0 + 1e-15])
    blocks = _split(np.zeros(5, dtype=int), values)
    assert blocks[1] == blocks[3] and blocks[0] == blocks[4]
    assert len({blocks[0], blocks[1], blocks[2]}) == 3
