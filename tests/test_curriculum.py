"""Curriculum perceptron (models/curriculum.py, docs/models.md section 2) [MM25].

* backend agreement: numba vs CasADi at random valid states and controls;
* the reference baselines under exact (adaptive, rtol 1e-10) integration;
* the closed-form drift against the expected SGD increment (numerical integration) and the
  loss against the test error of actual weights;
* the ODE against the perceptron's own online SGD at finite N.

Statistical tolerances: the SGD runs use fixed seeds, and the mean over S seeds is
compared with the ODE within Z = 4.5 standard errors of that mean (estimated from
the same S seeds; with S = 16 the two-sided 4.5-sigma point of Student's t_15 is
exceeded with probability 4e-4 per comparison). The O(1/N) finite-size bias
was measured (N = 250, 1000 seeds; N = 1000, 150 seeds) at |N * bias| <= 7 for
Q11 and <= 1.3 for M, i.e. <= 0.1 standard errors at the sizes used here, so it
is not part of the tolerance.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

import opt_protocols as op
from opt_protocols.models import curriculum
from opt_protocols.protocol import as_protocol
from opt_protocols.references import CURRICULUM as REF
from opt_protocols.sgd import simulate_sgd
from opt_protocols.simulate import simulate

Z = 4.5          # standard errors allowed between the SGD mean and the ODE
ATOL0 = 1e-12    # the initial weights reproduce x0 to rounding; the SEM there is 0

ALPHA_F = REF.t_final
CURRICULUM = REF.protocol("curriculum")           # easy on [0, 6], then hard
ANTI = REF.protocol("anti_curriculum")
ALTERNATION = REF.protocol("alternation")         # 240 intervals of width 0.05, easy first
CONSTANT = REF.protocol("best_constant")          # u = 0.5


@pytest.fixture(scope="module")
def model():
    return op.load_model("curriculum")


def test_declarations(model):
    assert model.time_name == "alpha" and model.kind == "ode"
    assert model.state_names == ["Q11", "Q22", "M"]
    assert model.control_names == ["u", "eta"]
    assert model.controls["u"].lo == 0.0 and model.controls["u"].hi == 1.0
    assert model.controls["eta"].default == 3.0
    np.testing.assert_array_equal(model.initial_state(), [1.0, 1.0, 0.0])
    assert dict(zip(model.constants.names, model.c)) == {"T": 2.0, "Delta1": 0.0, "Delta2": 2.0, "p1": 0.5,
                                                         "lam": 0.0}
    assert "[MM25]" in model.doc
    # the defaults are the reference setup
    ref = REF.model()
    np.testing.assert_array_equal(ref.c, model.c)
    np.testing.assert_array_equal(REF.x0(ref), model.initial_state())
    # the loss at the reference initial state: M = 0, so eg = acos(0)/pi = 1/2 exactly
    assert model.loss(model.initial_state()) == pytest.approx(0.5, abs=1e-15)
    with pytest.raises(ValueError, match="M\\^2 < Q11 T"):
        model.initial_state(M=2.0)


@pytest.mark.parametrize("params", [{}, {"lam": 0.03, "Delta1": 0.3, "Delta2": 1.5, "p1": 0.3, "T": 1.2}])
def test_backends_agree(params):
    """numba rhs/loss == CasADi rhs/loss to ~1e-12 relative at random valid states and controls."""
    model = op.load_model("curriculum", **params)
    cas = model.casadi
    rng = np.random.default_rng(7)
    for _ in range(50):
        x = model.random_state(rng)
        u = np.array([rng.uniform(0.0, 1.0), rng.uniform(0.1, 5.0)])
        f_nb = model.rhs(x, u)
        f_ca = np.array(cas.rhs(x, u, model.c)).ravel()
        np.testing.assert_allclose(f_ca, f_nb, rtol=1e-12, atol=1e-12 * np.abs(f_nb).max())
        assert float(cas.loss(x, model.c)) == pytest.approx(model.loss(x), rel=1e-12, abs=1e-15)


def test_mixture_is_linear_in_u(model):
    """rhs(u) = u f(Delta1) + (1 - u) f(Delta2) exactly."""
    x = np.array([2.0, 0.7, 0.9])
    f1 = model.rhs(x, {"u": 1.0})
    f0 = model.rhs(x, {"u": 0.0})
    np.testing.assert_allclose(model.rhs(x, {"u": 0.3}), 0.3 * f1 + 0.7 * f0, rtol=1e-14, atol=1e-15)
    assert f1[1] == 0.0   # Delta1 = 0: Q22 frozen on easy examples


@pytest.mark.parametrize("name, protocol, expected", [
    ("curriculum", CURRICULUM, REF["curriculum"]),
    ("anti-curriculum", ANTI, REF["anti_curriculum"]),
    ("alternation", ALTERNATION, REF["alternation"]),
    ("constant", CONSTANT, REF["best_constant"]),
])
def test_reference_baselines(model, name, protocol, expected):
    """docs/models.md section 2: alpha_F = 12, eta = 3, T = 2, p1 = 0.5, (1, 1, 0) start.

    Integrated by dopri5 at rtol 1e-10 (global error ~1e-9, checked against rtol 1e-12
    below); the published values have 7 decimals, so they must agree to 5e-8.
    """
    traj = simulate(model, None, protocol, ALPHA_F, rtol=1e-10, atol=1e-12, n_out=2)
    assert traj.status == "ok"
    assert expected.matches(traj.final_loss), (traj.final_loss, expected.text)
    finer = simulate(model, None, protocol, ALPHA_F, rtol=1e-12, atol=1e-14, n_out=2)
    assert abs(finer.final_loss - traj.final_loss) < 1e-9


def test_budget_of_baselines(model):
    """All four reference protocols spend the same budget, int u = p1 alpha_F = 6."""
    h = ALPHA_F / 48000
    mid = (np.arange(48000) + 0.5) * h     # midpoints of a grid that refines every protocol's knots
    for protocol in (CURRICULUM, ANTI, ALTERNATION, CONSTANT):
        proto = as_protocol(model, protocol, ALPHA_F)
        u = proto(mid)[:, model.control_names.index("u")]
        assert np.sum(u) * h == pytest.approx(6.0, abs=1e-9)   # exact for piecewise-constant u


def _drift_by_quadrature(x, T, delta, eta):
    """Expected drift per unit alpha of one SGD step at difficulty delta, by numerical integration.

    dQ11 = -2 eta E[F lambda_r] + eta^2 E[F^2], dQ22 = -2 eta E[F lambda_i] + eta^2 delta E[F^2],
    dM = -eta E[F nu], F = (g(lambda) - sign(nu)) g'(lambda), g(z) = erf(z/2), over the Gaussian
    fields lambda = lambda_r + lambda_i, nu (lambda_r, lambda_i enter through their regression on
    (lambda, nu)). nu = sqrt(T) t, lambda = (M/sqrt T) t + sd s: adaptive quad in t on each side of
    the jump of sign(nu), 120-point Gauss-Hermite in s (smooth integrand).
    """
    q11, q22, m = x
    qb = q11 + delta * q22
    sig = np.array([[qb, m], [m, T]])
    a_r = np.linalg.solve(sig, [q11, m])
    a_i = np.linalg.solve(sig, [delta * q22, 0.0])
    s_nodes, s_w = np.polynomial.hermite_e.hermegauss(120)
    s_w = s_w / math.sqrt(2 * math.pi)
    sd = math.sqrt(qb - m * m / T)

    def integrand(t, k):
        nu = math.sqrt(T) * t
        lam = m / math.sqrt(T) * t + sd * s_nodes
        F = (special.erf(lam / 2) - math.copysign(1.0, t)) * np.exp(-lam ** 2 / 4) / math.sqrt(math.pi)
        if k == 0:
            v = -2 * eta * F * (a_r[0] * lam + a_r[1] * nu) + eta ** 2 * F ** 2
        elif k == 1:
            v = -2 * eta * F * (a_i[0] * lam + a_i[1] * nu) + eta ** 2 * delta * F ** 2
        else:
            v = -eta * F * nu
        return (v @ s_w) * math.exp(-t * t / 2) / math.sqrt(2 * math.pi)

    return np.array([sum(integrate.quad(integrand, lo, hi, args=(k,), epsabs=1e-13, epsrel=1e-12, limit=200)[0]
                         for lo, hi in ((-np.inf, 0.0), (0.0, np.inf))) for k in range(3)])


@pytest.mark.parametrize("delta", [0.0, 0.7, 2.0])
def test_drift_is_the_expected_sgd_increment(delta):
    """The closed-form f(Delta) equals the expected SGD drift (numerical integration), at random states.

    Agreement 1e-16..1e-9 relative was seen; 1e-8 covers the quadrature's accuracy.
    """
    model = op.load_model("curriculum", Delta1=delta)
    rng = np.random.default_rng(int(10 * delta))
    for _ in range(3):
        x = model.random_state(rng)
        eta = rng.uniform(0.5, 4.0)
        f = model.rhs(x, {"u": 1.0, "eta": eta})
        np.testing.assert_allclose(_drift_by_quadrature(x, 2.0, delta, eta), f, rtol=0,
                                   atol=1e-8 * np.abs(f).max())


def test_loss_is_the_test_error_of_the_weights():
    """eg(Q11, Q22, M) == misclassified fraction of fresh mixture examples, for weights with those overlaps."""
    model = op.load_model("curriculum")
    rng = np.random.default_rng(4)
    x = np.array([3.0, 1.5, 2.0])
    wr, wi, wstar = curriculum.weights_from_overlaps(model.params, x, 400, rng)
    np.testing.assert_allclose([wr @ wr, wi @ wi, wr @ wstar], x, rtol=1e-13)
    n = 40000
    err = curriculum.sampled_test_error(wr, wi, wstar, model.params, n, rng)
    eg = model.loss(x)
    assert abs(err - eg) < Z * math.sqrt(eg * (1 - eg) / n)   # binomial standard error


def _compare(res, traj, z=Z):
    """Assert the SGD mean is within z standard errors of the ODE, for every state and the loss."""
    n = res.x.shape[0]
    mean = res.x.mean(axis=0)
    sem = res.x.std(axis=0, ddof=1) / np.sqrt(n)
    dev = np.abs(mean - traj.x)
    assert np.all(dev <= z * sem + ATOL0), f"states: max |dev|/sem = {np.max(dev / np.maximum(sem, 1e-300)):.2f}"
    ldev = np.abs(res.loss_mean - traj.loss)
    assert np.all(ldev <= z * res.loss_sem + ATOL0), "loss"


def test_sgd_matches_ode_curriculum(model):
    """Easy on [0, 6], hard on [6, 12] (both difficulties and a switch), N = 1000, 16 seeds."""
    res = simulate_sgd(model, CURRICULUM, ALPHA_F, N=1000, seeds=16, n_out=7)
    traj = simulate(model, None, CURRICULUM, ALPHA_F, t_eval=res.t, rtol=1e-10, atol=1e-12)
    _compare(res, traj)
    # the learning really happened: eg fell from 1/2 to ~0.156, the easy phase left Q22 at 1 exactly
    assert res.loss_mean[-1] < 0.17
    np.testing.assert_allclose(res.x[:, :4, 1], 1.0, rtol=0, atol=1e-12)


def test_sgd_matches_ode_l2_and_eta_schedule():
    """L2 penalty lam = 0.05 and a learning rate decaying 3 -> 1 over [0, 4], u = 0.5, N = 1000, 16 seeds."""
    model = op.load_model("curriculum", lam=0.05)
    protocol = {"u": 0.5, "eta": (np.array([0.0, 4.0]), np.array([3.0, 1.0]))}
    res = simulate_sgd(model, protocol, 4.0, N=1000, seeds=16, n_out=5)
    traj = simulate(model, None, protocol, 4.0, t_eval=res.t, rtol=1e-10, atol=1e-12)
    _compare(res, traj)
    # the L2 term matters here: without it the ODE is many standard errors away
    plain = simulate(op.load_model("curriculum"), None, protocol, 4.0, t_eval=res.t, rtol=1e-10, atol=1e-12)
    sem = res.x.std(axis=0, ddof=1) / np.sqrt(16)
    assert np.max(np.abs(res.x.mean(axis=0)[-1] - plain.x[-1]) / sem[-1]) > 10


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [ALTERNATION, ANTI])
def test_sgd_matches_ode_large_n(model, protocol):
    """N = 4000, 8 seeds, the full horizon alpha_F = 12 (about 35 s each)."""
    res = simulate_sgd(model, protocol, ALPHA_F, N=4000, seeds=8, n_out=7)
    traj = simulate(model, None, protocol, ALPHA_F, t_eval=res.t, rtol=1e-10, atol=1e-12)
    # t_7 two-sided 4.5-sigma point is exceeded with probability 3e-3 per comparison: use 6
    _compare(res, traj, z=6.0)
