"""Optimal control of the random-feature recursion with the exact adjoint method
(opt_protocols/control/adjoint.py, opt_protocols/ad/; docs/models.md, section 5).

Tolerances: the derived VJPs and the adjoint gradient are exact up to rounding (compared with
CasADi's reverse mode: 1e-12 relative; the VJPs are compiled with reassociation, which changes
rounding at the 1e-16 level). Optimal objectives are compared at the optimisers' tolerances
(relative decrease of log J below 1e-12): 1e-9 relative between two methods converged to the same
local minimum. Reference numbers of docs/models.md are checked to half a unit of their last digit.
"""
from __future__ import annotations

import casadi as ca
import numpy as np
import pytest

import opt_protocols as op
from opt_protocols import ad as adj
from opt_protocols.references import BM26 as REF


def solve_adjoint(model, *, intervals=100, families=(), starts=None, hops=0, seed=0, optimizer=None, **kw):
    """op.solve with an explicit Adjoint method object."""
    opts = {"starts": starts} if starts is not None else {}
    method = op.Adjoint(intervals=intervals, hops=hops, seed=seed, optimizer=optimizer, **opts)
    return op.solve(model, method=method, families=families, **kw)


BM26 = REF.model_params()          # docs/models.md section 5 reference (opt_protocols.references)
T_BM26 = int(REF.t_final)


def _half_unit(ref: str) -> float:
    assert any(p.text == ref for p in REF.published.values()), f"{ref} is not a published BM26 number"
    return 0.5 * 10.0 ** (-len(ref.split(".")[1]))


def _assert_matches_ref(value: float, ref: str):
    assert abs(value - float(ref)) <= _half_unit(ref), f"{value!r} does not round to {ref}"


# ---- the derived adjoint ----------------------------------------------------------------------

@pytest.mark.parametrize("params", [dict(N=40), dict(N=40, momentum=True, tail=True),
                                    dict(N=30, batch=1.0, sigma=2.0, a=3.0, b=4.0)])
def test_derived_vjp_matches_casadi(params):
    """VJPs derived from the model's step/loss source vs CasADi reverse mode of the traced step."""
    model = op.load_model("random_features", **params)
    assert adj.get_kernel(model).kind == "source"
    assert adj.check_kernel(model, n=5) <= 1e-12


def _unrolled_gradient(model, U, objective="final"):
    """J and dJ/dU from the recursion unrolled symbolically in CasADi (independent of the adjoint)."""
    T = U.shape[0]
    Us = ca.SX.sym("U", T, model.n_u)
    x = ca.DM(model.initial_state())
    J = 0
    for t in range(T):
        x = model.casadi.rhs(x, Us[t, :].T, model.c)
        if objective == "integral":
            J += model.casadi.loss(x, model.c) / T
    if objective == "final":
        J = model.casadi.loss(x, model.c)
    f = ca.Function("f", [Us], [J, ca.gradient(J, Us)])
    Jv, G = f(U)
    return float(Jv), np.array(G)


@pytest.mark.parametrize("momentum,objective", [(False, "final"), (True, "final"), (False, "integral")])
def test_adjoint_gradient_is_exact(momentum, objective):
    model = op.load_model("random_features", N=8, sigma=0.7, momentum=momentum)
    T = 25
    rng = np.random.default_rng(2)
    cols = [rng.uniform(0.2, 1.2, T), rng.uniform(1.0, 8.0, T)] + ([rng.uniform(0.1, 1.0, T)] if momentum else [])
    U = np.column_stack(cols)
    ev = adj.MapAdjoint(model, T, objective=objective)
    J, G = ev.value_and_grad(U)
    J_ref, G_ref = _unrolled_gradient(model, U, objective)
    assert J == pytest.approx(J_ref, rel=1e-13)
    np.testing.assert_allclose(G, G_ref, rtol=1e-11, atol=1e-13 * np.abs(G_ref).max())


def test_checkpointing_gives_the_same_gradient(monkeypatch):
    model = op.load_model("random_features", N=50)
    T = 300
    U = np.column_stack([0.4 + 0.3 * np.sin(np.arange(T) / 17.0), np.full(T, 5.0)])
    J1, G1 = adj.MapAdjoint(model, T).value_and_grad(U)
    monkeypatch.setattr(adj.kernel, "STORE_ALL_BYTES", 50 * 8 * 16)      # segments of 16 steps
    ev = adj.MapAdjoint(model, T)
    assert ev.S == 16
    J2, G2 = ev.value_and_grad(U)
    assert J1 == J2
    np.testing.assert_allclose(G2, G1, rtol=1e-13, atol=1e-16)


# ---- agreement with the collocation solve -------------------------------------------------------

def test_agrees_with_collocation():
    """op.solve (CasADi collocation, one element per step) and the adjoint method on N = 50, T = 100,
    20 blocks: same optimum. The objective is flat along some directions of the controls
    (measured: controls differ by 1.6e-6 while the objectives agree to 2e-13)."""
    model = op.load_model("random_features", a=2.0, b=2.0, sigma=0.5, batch=5.0, N=50)
    ref = op.solve(model, t_final=100, controls={"eta": (0.0, 2.0)}, intervals=20)
    sol = solve_adjoint(model, t_final=100, controls={"eta": (0.0, 2.0)}, intervals=20)
    assert ref.status == "optimal" and sol.status == "optimal"
    assert sol.objective == pytest.approx(ref.objective, rel=1e-9)
    np.testing.assert_allclose(sol.controls["eta"], ref.controls["eta"], atol=1e-4)
    assert sol.baselines["best_constant"].values["eta"] == pytest.approx(
        ref.baselines["best_constant"].values["eta"], abs=1e-6)
    np.testing.assert_array_equal(sol.t_controls, ref.t_controls)


# ---- reference numbers --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bm26_solution():
    model = op.load_model("random_features", **BM26)
    return solve_adjoint(model, t_final=T_BM26, controls={"eta": (0.0, 2.0)}, intervals=100,
                         families=("power_law", "wsd"), hops=100, seed=1, optimizer="L-BFGS-B")


def test_bm26_baselines(bm26_solution):
    """docs/models.md section 5: optimal constant eta = 0.46977 (L = 0.124404), optimal power law
    1.863 (t+1)^(-0.3517) (L = 0.11069), both found by the adjoint method's baseline fits."""
    b = bm26_solution.baselines
    _assert_matches_ref(b["best_constant"].values["eta"], "0.46977")
    _assert_matches_ref(b["best_constant"].objective, "0.124404")
    _assert_matches_ref(b["power_law"].values["base_lr"], "1.863")
    _assert_matches_ref(b["power_law"].values["chi"], "0.3517")
    _assert_matches_ref(b["power_law"].objective, "0.11069")
    assert b["wsd"].objective < b["power_law"].objective


def test_bm26_optimum(bm26_solution):
    """Published optimum 0.08136, reproduced to its digits (or better). The landscape has many local
    minima with eta = 2 spikes (one step per block; steps nearly commute, so rearranged spike
    patterns are nearly equally good): the two L-BFGS-B starts alone end at 0.081373-0.081376;
    with 100 basin-hopping rounds they reached 0.0813677, 0.0813638, 0.0813677, 0.0813595
    (seeds 0 to 3; the hop sequence is chaotic: any change of rounding or tolerance reshuffles these).
    test_bm26_better_than_published (slow) shows a protocol below the published value (0.081351):
    0.08136 is a local optimum, not the global one."""
    sol = bm26_solution
    assert sol.status == "optimal" and sol.verification["ok"]
    assert sol.objective <= 0.08136 + _half_unit("0.08136")
    assert sol.objective > 0.08134
    eta = sol.controls["eta"]
    assert eta.min() >= 0.0 and eta.max() <= 2.0
    assert sol.stats["winner"].split("+")[0] in ("best_constant", "power_law")
    assert {s["start"] for s in sol.stats["starts"]} == {"best_constant", "power_law"}
    assert sol.objective < min(b.objective for b in sol.baselines.values())


@pytest.mark.slow
def test_bm26_better_than_published():
    """The published 0.08136 is not the global optimum: period-3 spikes (2, 0.92, 0.92) on blocks
    3-29 as a start, re-optimised, give 0.0813508 (long basin hopping from the default starts
    reached 0.081349-0.081359 depending on optimiser and seed), verified by simulation."""
    model = op.load_model("random_features", **BM26)
    kw = dict(t_final=T_BM26, controls={"eta": (0.0, 2.0)}, intervals=100)
    first = solve_adjoint(model, **kw)
    eta = first.controls["eta"].copy()
    eta[3:30] = np.tile([2.0, 0.92, 0.92], 9)
    sol = solve_adjoint(model, starts=({"eta": eta},), families=(), **kw)
    assert sol.status == "optimal" and sol.objective < 0.081355
    assert op.simulate(model, None, sol.protocol, T_BM26, n_out=2).final_loss == pytest.approx(sol.objective,
                                                                                                rel=1e-13)


# ---- momentum, batch size under a data budget, optimisers --------------------------------------

def test_momentum_beats_constants():
    model = op.load_model("random_features", N=200, a=2.0, b=2.0, sigma=0.5, batch=5.0, momentum=True)
    sol = solve_adjoint(model, t_final=300, controls={"eta": (0.0, 2.0), "beta": (0.02, 1.0)}, intervals=30,
                        families=("power_law",))
    assert sol.status == "optimal" and sol.verification["ok"]
    const = sol.baselines["best_constant"]
    assert set(const.values) == {"eta", "beta"}
    assert sol.objective < 0.9 * const.objective
    assert sol.objective < sol.baselines["power_law"].objective
    # momentum can only help: beta = 1 is plain SGD, inside the admissible range
    plain = solve_adjoint(op.load_model("random_features", N=200, a=2.0, b=2.0, sigma=0.5, batch=5.0),
                              t_final=300, controls={"eta": (0.0, 2.0)}, intervals=30)
    assert sol.objective <= plain.objective * (1 + 1e-9)


def test_batch_size_with_data_budget():
    model = op.load_model("random_features", N=200, a=2.0, b=2.0, sigma=0.5, batch=5.0)
    T = 200
    sol = solve_adjoint(model, t_final=T, controls={"eta": (0.0, 2.0), "m": (1.0, 50.0)},
                            budgets=[op.Budget("m", 5.0)], intervals=20)
    assert sol.status == "optimal" and sol.verification["ok"]
    m_steps = sol.protocol.values(np.arange(T) + 0.5)["m"]
    assert np.sum(m_steps) == pytest.approx(5.0 * T, rel=1e-10)
    const = sol.baselines["best_constant"]
    assert const.values["m"] == 5.0
    eta_only = solve_adjoint(model, t_final=T, controls={"eta": (0.0, 2.0)}, intervals=20)
    assert sol.objective < eta_only.objective < const.objective


@pytest.mark.parametrize("optimizer", ["L-BFGS-B", "trust-constr", "ipopt"])
def test_optimizers_agree(optimizer):
    model = op.load_model("random_features", N=100, a=2.0, b=2.0, sigma=0.5, batch=5.0)
    kw = dict(t_final=316, controls={"eta": (0.0, 2.0)}, intervals=20, families=(), starts=("best_constant",))
    ref = solve_adjoint(model, optimizer="SLSQP", **kw)
    sol = solve_adjoint(model, optimizer=optimizer, **kw)
    assert ref.stats["optimizer"] == "SLSQP" and sol.stats["optimizer"] == optimizer
    assert sol.status in ("optimal", "acceptable")
    assert sol.objective == pytest.approx(ref.objective, rel=1e-8)


def test_overflowing_start_is_recovered():
    """A start far above the stability threshold: the forward pass overflows, the objective says
    so, and the optimiser backs off into the stable region."""
    model = op.load_model("random_features", N=50, a=2.0, b=2.0, sigma=0.5, batch=5.0)
    T = 2000
    ev = adj.MapAdjoint(model, T)
    assert ev.value(np.column_stack([np.full(T, 1.9), np.full(T, 5.0)])) == np.inf
    sol = solve_adjoint(model, t_final=T, controls={"eta": (0.0, 2.0)}, intervals=10, families=(),
                            starts=({"eta": np.full(10, 1.9)}, "best_constant"))
    assert sol.status in ("optimal", "acceptable") and np.isfinite(sol.objective)
    assert sol.objective < sol.baselines["best_constant"].objective


def test_solution_roundtrip(tmp_path):
    model = op.load_model("random_features", N=30)
    sol = solve_adjoint(model, t_final=120, controls={"eta": (0.0, 2.0)}, intervals=12,
                            families=("power_law", "wsd"))
    path = tmp_path / "rf.h5"
    run = sol.save(path)
    back = op.load(path, run)
    assert back.objective == sol.objective and back.status == sol.status
    np.testing.assert_array_equal(back.controls["eta"], sol.controls["eta"])
    assert set(back.baselines) == {"best_constant", "default", "power_law", "wsd"}
    assert back.stats["method"] == "adjoint" and back.stats["winner"] == sol.stats["winner"]
    assert op.simulate(model, None, back, 120, n_out=2).final_loss == pytest.approx(sol.objective, rel=1e-13)


def test_rejects_what_it_cannot_do():
    model = op.load_model("random_features", N=10)
    with pytest.raises(ValueError, match="ODE"):
        solve_adjoint(op.load_model("random_features_ode", N=10), t_final=10)
    with pytest.raises(ValueError, match="static"):
        solve_adjoint(model, t_final=10, intervals=5, controls={"eta": (0, 2)}, static={"sigma": (0.0, 1.0)})
    with pytest.raises(ValueError, match="objective 'time'"):
        solve_adjoint(model, t_final=10, intervals=5, controls={"eta": (0, 2)}, objective="time", target=0.1)
    with pytest.raises(ValueError, match="at most 10 blocks"):
        solve_adjoint(model, t_final=10, intervals=20, controls={"eta": (0.0, 2.0)})
    with pytest.raises(ValueError, match="finite bounds"):
        solve_adjoint(model, t_final=10, intervals=5)
    with pytest.raises(ValueError, match="L-BFGS-B"):
        solve_adjoint(model, t_final=10, intervals=5, controls={"eta": (0, 2), "m": (1, 10)},
                          budgets=[op.Budget("m", 5.0)], optimizer="L-BFGS-B")
