"""Optimal control: collocation correctness, problem features, honest status, reference problems."""
import numpy as np
import pytest
from scipy import optimize

import opt_protocols as op
from opt_protocols.control.collocation import collocation_coefficients
from opt_protocols.control.evaluate import Evaluator
from opt_protocols.control.problem import make_problem
from opt_protocols.protocol import as_protocol
from opt_protocols.references import DROPOUT


def evaluate(problem, protocol, static):
    return Evaluator(problem).objective(protocol, static)


@pytest.fixture(scope="module")
def linear(example_model_path_module):
    return op.load_model(example_model_path_module, sigma=0.2)


@pytest.fixture(scope="module")
def example_model_path_module():
    from conftest import EXAMPLE_MODEL
    return EXAMPLE_MODEL


# ---- collocation building blocks ------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["legendre", "radau"])
@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
def test_collocation_coefficients_are_exact_for_polynomials(scheme, degree):
    """Quadrature B integrates t^k exactly up to the scheme's order; C differentiates the interpolant."""
    tau, C, D, B = collocation_coefficients(degree, scheme)
    exact_up_to = 2 * degree - 1 if scheme == "legendre" else 2 * degree - 2
    for k in range(exact_up_to + 1):
        assert abs(B @ tau[1:] ** k - 1.0 / (k + 1)) < 1e-12
    for k in range(degree + 1):   # derivative of t^k at the collocation points
        assert np.allclose(C[:, 1:].T @ tau ** k, k * tau[1:] ** max(k - 1, 0) * (k > 0), atol=1e-11)
        assert abs(D @ tau ** k - 1.0) < 1e-12


def test_linear_model_optimum_matches_an_independent_optimisation(linear):
    """The collocation optimum equals a direct optimisation of the piecewise-constant schedule."""
    T, n = 4.0, 8
    sol = op.solve(linear, t_final=T, controls={"eta": (0, 2)}, intervals=n, degree=4)
    assert sol.status == "optimal"

    def f(u):
        return evaluate(make_problem(linear, t_final=T, controls={"eta": (0, 2)}),
                        as_protocol(linear, {"eta": np.asarray(u)}, T), {})
    res = optimize.minimize(f, np.full(n, 0.8), method="L-BFGS-B", bounds=[(0, 2)] * n,
                            options={"ftol": 1e-15, "gtol": 1e-11})
    assert abs(sol.objective - res.fun) < 1e-8 * res.fun
    assert np.allclose(sol.controls["eta"], res.x, atol=2e-3)


def test_collocation_error_converges_with_degree(linear):
    """Gap between collocation objective and exact re-simulation shrinks fast with the degree."""
    gaps = []
    for degree in (1, 2, 3):
        sol = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=10, degree=degree,
                       scheme="legendre")
        gaps.append(sol.verification["relative_gap"])
    assert gaps[0] > 10 * gaps[1] > 100 * gaps[2]
    assert gaps[2] < 1e-6


def test_learning_rate_schedule_committee_beats_constant():
    """Issue problem: eta(alpha) for K = M = 2 with label noise beats the best constant eta."""
    m = op.load_model("committee", K=2, M=2, sigma=0.3)
    sol = op.solve(m, t_final=20.0, controls={"eta": (0, 3)}, intervals=50)
    assert sol.status == "optimal" and sol.success
    assert sol.verification["ok"] and sol.verification["relative_gap"] < 1e-6
    best = sol.baselines["best_constant"]
    assert sol.objective < best.objective * (1 - 0.05)
    # the best constant is a minimum of the simulated final loss in eta
    T = 20.0
    for de in (-0.01, 0.01):
        eta = best.values["eta"] + de
        assert op.simulate(m, None, eta, T, n_out=2).final_loss > best.objective
    # the optimal schedule anneals: it ends below where it peaks
    eta = sol.controls["eta"]
    assert eta[-1] < 0.5 * eta.max()


def test_dropout_reference_problem():
    """docs/models.md section 1 adaptive dropout: baselines to the published digits; the optimum beats them."""
    m = DROPOUT.model()
    sol = DROPOUT.solve(m)
    assert sol.status == "optimal" and sol.verification["ok"]
    assert sol.t_controls.size == DROPOUT.intervals + 1 == 51
    default, best = sol.baselines["default"], sol.baselines["best_constant"]
    assert DROPOUT["default"].matches(default.objective)
    assert DROPOUT["best_constant"].matches(best.objective)
    assert DROPOUT["best_constant.r"].matches(best.values["r"])
    assert DROPOUT["best_constant.p_test"].matches(best.static["p_test"])
    # best constant r with p_test = r
    kw = DROPOUT.problem(m)
    problem = make_problem(m, **kw)
    T, eta = kw["t_final"], kw["fixed"]["eta"]
    res = optimize.minimize_scalar(lambda r: evaluate(problem, as_protocol(m, {"r": r, "eta": eta}, T),
                                                      {"p_test": r}), bounds=(0.5, 1.0), method="bounded",
                                   options={"xatol": 1e-9})
    assert DROPOUT["best_constant_ptest_eq_r.r"].matches(res.x)
    assert DROPOUT["best_constant_ptest_eq_r"].matches(res.fun)
    # the optimum beats every constant r, keeps r = 1 early and then lowers it
    assert sol.objective < best.objective - 1e-3
    r = sol.controls["r"]
    assert np.all(r[:10] > 1 - 1e-6)
    assert np.all(np.diff(r[15:]) < 1e-9) and r[-1] < 0.6
    assert 0 < sol.static["p_test"] < 1


def test_radau_and_legendre_find_the_same_optimum(linear):
    a = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=10, scheme="legendre", degree=4)
    b = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=10, scheme="radau", degree=4)
    assert abs(a.objective - b.objective) < 1e-7 * a.objective


def test_piecewise_linear_controls_are_continuous_and_at_least_as_good(linear):
    c = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=10)
    lin = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=10, control_type="linear")
    assert lin.status == "optimal" and lin.controls["eta"].size == 11
    assert lin.verification["relative_gap"] < 1e-6
    assert lin.objective < c.objective * (1 + 1e-4)


def test_budget_monotone_and_smoothness(linear):
    sol = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=20,
                   budgets=[{"control": "eta", "mean": 0.5}], monotone={"eta": "decreasing"})
    eta = sol.controls["eta"]
    assert sol.status == "optimal"
    assert abs(eta.mean() - 0.5) < 1e-9
    assert np.all(np.diff(eta) <= 1e-9)
    free = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=20)
    smooth = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=20, smoothness=1.0)
    assert np.abs(np.diff(smooth.controls["eta"])).sum() < np.abs(np.diff(free.controls["eta"])).sum()


def test_integral_objective_matches_simulated_average(linear):
    sol = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=20, objective="integral")
    assert sol.status == "optimal" and sol.verification["relative_gap"] < 1e-6
    assert sol.objective <= sol.baselines["best_constant"].objective


def test_time_to_target(linear):
    target = 0.05
    sol = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=20, objective="time",
                   target=target, t_max=20.0)
    assert sol.status == "optimal"
    T = sol.objective
    assert abs(sol.loss[-1] - target) < 1e-8
    assert abs(sol.t[-1] - T) < 1e-12
    assert T <= sol.baselines["best_constant"].objective + 1e-6


def test_state_bounds_are_respected():
    m = op.load_model("committee", K=2, M=2, sigma=0.3)
    sol = op.solve(m, t_final=10.0, controls={"eta": (0, 3)}, intervals=20, state_bounds={"Q[0,0]": (0, 0.6)})
    assert sol.status == "optimal"
    assert sol.x[:, 0].max() <= 0.6 + 1e-8


def test_one_build_serves_many_solves_and_warm_start_helps():
    m = op.load_model("committee", K=2, M=2, sigma=0.3)
    first = op.solve(m, t_final=10.0, controls={"eta": (0, 3)}, intervals=20)
    other = op.load_model("committee", K=2, M=2, sigma=0.25)
    cold = op.solve(other, t_final=10.0, controls={"eta": (0, 3)}, intervals=20)
    warm = op.solve(other, t_final=10.0, controls={"eta": (0, 3)}, intervals=20, warm_start=first)
    assert cold.stats["cached_build"] and warm.stats["cached_build"]
    assert abs(cold.objective - warm.objective) < 1e-9 * cold.objective
    assert warm.stats["iterations"] < cold.stats["iterations"]
    # horizon and initial state are parameters too
    x0 = m.initial_state(R=0.05 * np.eye(2))
    again = op.solve(m, x0, 12.0, controls={"eta": (0, 3)}, intervals=20)
    assert again.stats["cached_build"] and again.status == "optimal"
    assert abs(again.verification["relative_gap"]) < 1e-6


def test_failed_solve_is_reported_failed_never_optimal(linear):
    sol = op.solve(linear, t_final=4.0, controls={"eta": (0, 2)}, intervals=10,
                   solver_options={"ipopt.max_iter": 2})
    assert sol.status == "failed" and not sol.success
    assert sol.return_status == "Maximum_Iterations_Exceeded"
    assert sol.verification == {}


@pytest.mark.parametrize("kwargs, message", [
    ({"t_final": -1.0}, "t_final = -1 must be a positive number"),
    ({"t_final": 1.0, "controls": {"lr": (0, 1)}}, "has no control 'lr'"),
    ({"t_final": 1.0, "controls": {"eta": (2, 1)}}, "lower bound 2.0 exceeds upper bound 1.0"),
    ({"t_final": 1.0, "controls": {"eta": (-1, 1)}}, "leave the admissible range"),
    ({"t_final": 1.0, "controls": {"eta": (0, float("inf"))}}, "need finite bounds"),
    ({"t_final": 1.0, "static": {"nosuch": (0, 1)}}, "has no constant of that name"),
    ({"t_final": 1.0, "objective": "time"}, "needs a target"),
    ({"t_final": 1.0, "intervals": 0}, "intervals = 0"),
    ({"t_final": 1.0, "controls": None}, "optimised controls need finite bounds, got (0.0, inf)"),
])
def test_bad_problem_input(linear, kwargs, message):
    kwargs = {"controls": {"eta": (0, 1)}, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        op.solve(linear, **kwargs)
