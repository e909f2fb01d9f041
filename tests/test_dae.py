"""Denoising autoencoder (models/dae.py, docs/models.md section 3) [MM25].

* backend agreement: numba vs CasADi at random valid states and controls;
* the reference baselines (limit equations, the source's loss);
* the equations against the exact finite-N expected SGD increment, computed by
  Gauss-Hermite quadrature over the data distribution (deterministic, exact to rounding);
* the loss formula against the test MSE of actual weights (exact and sampled);
* the ODE (finite-N corrected db) against the autoencoder's own online SGD.

SGD tolerances: the mean over S fixed seeds must be within Z = 4.5 standard errors
of the ODE (estimated from the same seeds), plus a finite-size allowance C_FS/N.
The ODE is the N -> infinity limit (with the leading db correction). Its dM and
db equations are the exact expected SGD increment at any N, and dQ is exact up to a
1/N term (both checked below by quadrature). The remaining O(1/N) gap between the mean
SGD run and the ODE comes from fluctuations: the O(1/sqrt N) fluctuations of the
order parameters, fed through the nonlinear drift, shift the mean by O(1/N). It was
measured for the protocol used below (D falling linearly from 0.8 to 0.05, D_F = 0.3):
N * (SGD mean - ODE) at tau = 4 is -14.8 +- 0.6 (N = 250, 3200 seeds) and
-18.9 +- 2.4 (N = 1000, 600 seeds) for M[0,0], -17.8 / -19.4 for M[1,1],
-10.6 / -14.3 for Q[1,1], +10.3 / +12.4 for the loss and 0.016 / 0.013 for b;
the same coefficient at both N is the signature of an O(1/N) effect.
The slow test test_sgd_gap_is_order_one_over_n checks that scaling.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import opt_protocols as op
from opt_protocols.models import dae
from opt_protocols.protocol import as_protocol
from opt_protocols.references import DAE_TEST_NOISE
from opt_protocols.references import dae as dae_reference
from opt_protocols.sgd import simulate_sgd
from opt_protocols.simulate import simulate

Z = 4.5
ATOL0 = 1e-12
TAU_F = dae_reference(0.1).t_final
#: finite-size allowance coefficients (see the module docstring): M and Q entries, b, loss
C_FS_STATE, C_FS_B, C_FS_LOSS = 25.0, 0.05, 15.0
FALLING = {"D": (np.array([0.0, TAU_F]), np.array([0.8, 0.05]))}


@pytest.fixture(scope="module")
def model():
    return op.load_model("dae")


def test_declarations(model):
    assert model.time_name == "tau" and model.kind == "ode"
    assert model.state_names == ["M[0,0]", "M[0,1]", "M[1,0]", "M[1,1]", "Q[0,0]", "Q[0,1]", "Q[1,1]", "b"]
    assert model.control_names == ["D"]
    assert (model.controls["D"].lo, model.controls["D"].hi) == (0.01, 0.99)
    np.testing.assert_array_equal(model.initial_state(),
                                  [0.1165, 0.0289, -0.0052, 0.1039, 0.25, 0.0, 0.25, 0.0])
    c = dict(zip(model.constants.names, model.c))
    assert (c["eta"], c["s"], c["D_F"], c["N"]) == (5.0, 0.1, 0.1, 1000.0)
    assert (c["S[0,0]"], c["S[0,1]"], c["S[1,1]"]) == (0.9471, 0.0313, 0.9900)
    assert "[MM25]" in model.doc
    # the defaults are the reference setup (D_F = 0.1)
    ref = dae_reference(0.1).model()
    np.testing.assert_array_equal(ref.c, model.c)
    np.testing.assert_array_equal(dae_reference(0.1).x0(ref), model.initial_state())
    with pytest.raises(ValueError, match="positive semi-definite"):
        model.initial_state(M=np.array([[2.0, 0.0], [0.0, 0.1]]))
    with pytest.raises(ValueError, match="priors"):
        op.load_model("dae", priors=[0.7, 0.7])


@pytest.mark.parametrize("params", [
    {},
    {"finite_n": True, "loss_exact": True, "D_F": 0.3},
    {"C": 3, "K": 2, "priors": [0.2, 0.3, 0.5], "s": 0.3, "eta": 1.0, "finite_n": True, "N": 200},
    {"C": 1, "K": 3, "loss_exact": True},
])
def test_backends_agree(params):
    """numba rhs/loss == CasADi rhs/loss to ~1e-12 relative at random valid states and controls."""
    model = op.load_model("dae", **params)
    cas = model.casadi
    rng = np.random.default_rng(11)
    for _ in range(40):
        x = model.random_state(rng)
        u = np.array([rng.uniform(0.01, 0.99)])
        f_nb = model.rhs(x, u)
        f_ca = np.array(cas.rhs(x, u, model.c)).ravel()
        np.testing.assert_allclose(f_ca, f_nb, rtol=1e-12, atol=1e-12 * np.abs(f_nb).max())
        assert float(cas.loss(x, model.c)) == pytest.approx(model.loss(x), rel=1e-12)


@pytest.mark.parametrize("D_F", DAE_TEST_NOISE)
def test_reference_baselines(D_F):
    """docs/models.md section 3: constant D = D_F over tau in [0, 4], limit equations, source loss.

    dopri5 at rtol 1e-10 (changes by < 1e-9 at rtol 1e-12); 7 significant digits published.
    """
    ref = dae_reference(D_F)
    model = ref.model()
    protocol = ref.protocol("constant_D_F")
    assert protocol == {"D": D_F}
    traj = simulate(model, None, protocol, TAU_F, rtol=1e-10, atol=1e-12, n_out=2)
    assert traj.status == "ok"
    assert ref["constant_D_F"].matches(traj.final_loss), (traj.final_loss, ref["constant_D_F"].text)
    finer = simulate(model, None, protocol, TAU_F, rtol=1e-12, atol=1e-14, n_out=2)
    assert abs(finer.final_loss - traj.final_loss) < 1e-9


def test_loss_exact_adds_mean_term():
    """loss_exact adds sum_k c_k S_kk (1 - b sqrt(1 - D_F))^2, and nothing else."""
    plain = op.load_model("dae", D_F=0.3)
    full = op.load_model("dae", D_F=0.3, loss_exact=True)
    rng = np.random.default_rng(3)
    S = dae.REF_S
    for _ in range(5):
        x = plain.random_state(rng)
        extra = 0.5 * (S[0, 0] + S[1, 1]) * (1.0 - x[-1] * math.sqrt(0.7)) ** 2
        assert full.loss(x) - plain.loss(x) == pytest.approx(extra, rel=1e-12)


# ---- exact finite-N expected increment of one SGD step ------------------------------------

def _exact_rate(x, p, D, N):
    """(N/eta) E[one-step increment of (M, Q, b)] of the SGD rule, exactly, at input dimension N.

    Means and weight rows span d = C + K dimensions (Gram matrix [[S, M], [M^T, Q]]);
    z and xi split into their projections on that span (2d Gaussian coordinates) and
    orthogonal parts, which enter only through |z_perp|^2, z_perp.xi_perp, |xi_perp|^2
    and can be replaced by their means. The integrand is a polynomial of degree <= 4 in
    the 2d coordinates, integrated exactly by the 3-point Gauss-Hermite tensor rule.
    """
    C, K = p["C"], p["K"]
    eta, s = p["eta"], p["s"]
    o = dae.overlaps(x, p)
    priors = np.full(C, 1.0 / C) if p["priors"] is None else np.asarray(p["priors"])
    G = np.block([[o["S"], o["M"]], [o["M"].T, o["Q"]]])
    w, V = np.linalg.eigh(G)
    F = V * np.sqrt(np.clip(w, 0.0, None))
    d = C + K
    Fmu, Fw = F[:C], F[C:]                  # coordinates of mu_l and of w_i / sqrt N
    nodes, weights = np.polynomial.hermite_e.hermegauss(3)
    weights = weights / weights.sum()
    pts = np.array(list(itertools.product(nodes, repeat=2 * d)))
    wts = np.prod(np.array(list(itertools.product(weights, repeat=2 * d))), axis=1)
    b = o["b"]
    r, sd = math.sqrt(1.0 - D), math.sqrt(D)
    ee = (1.0 - b * r) ** 2 * s * s + b * b * D          # per-coordinate E[(x - b x~)^2]
    ex = (1.0 - b * r) * r * s * s - b * D               # per-coordinate E[(x - b x~) x~]
    xtxt = r * r * s * s + D
    dQ, dM, db = np.zeros((K, K)), np.zeros((C, K)), 0.0
    for a in range(C):
        zeta, xi = pts[:, :d], pts[:, d:]
        xp = Fmu[a] + s * zeta                       # projection of x
        xtp = r * xp + sd * xi                       # projection of x~
        lt = xtp @ Fw.T                              # l~ = W x~ / sqrt N
        ep = xp - b * xtp - lt @ Fw                  # projection of e = x - xhat
        E = ep @ Fw.T                                # W e / sqrt N
        xe = np.sum(xtp * ep, 1) + (N - d) * ex      # x~.e
        e2 = np.sum(ep * ep, 1) + (N - d) * ee       # |e|^2
        xt2 = np.sum(xtp * xtp, 1) + (N - d) * xtxt  # |x~|^2
        sym = lt[:, :, None] * E[:, None, :] + E[:, :, None] * lt[:, None, :]
        inc_Q = (2.0 * eta / N * sym
                 + eta ** 2 / N ** 2 * (lt[:, :, None] * lt[:, None, :] * e2[:, None, None]
                                        + sym * xe[:, None, None] + E[:, :, None] * E[:, None, :] * xt2[:, None, None]))
        inc_M = eta / N * ((ep @ Fmu.T)[:, :, None] * lt[:, None, :] + (xtp @ Fmu.T)[:, :, None] * E[:, None, :])
        dQ += priors[a] * np.tensordot(wts, inc_Q, axes=1)
        dM += priors[a] * np.tensordot(wts, inc_M, axes=1)
        db += priors[a] * np.dot(wts, eta / N ** 2 * xe)
    f = N / eta
    return (f * dM).ravel(), f * np.array([dQ[i, k] for i in range(K) for k in range(i, K)]), f * db


@pytest.mark.parametrize("params", [{}, {"C": 3, "K": 1, "priors": [0.5, 0.25, 0.25], "s": 0.3, "eta": 2.0}])
def test_equations_are_the_exact_expected_sgd_increment(params):
    """dM and the finite-N db are exact at any N; dQ is exact up to a term in 1/N (Richardson to N = inf)."""
    rng = np.random.default_rng(5)
    for N in (100, 1000):
        model = op.load_model("dae", N=N, finite_n=True, **params)
        C, K = model.params["C"], model.params["K"]
        nm, nq = C * K, K * (K + 1) // 2
        for x in (model.initial_state(), model.random_state(rng)):
            D = rng.uniform(0.01, 0.99)
            f = model.rhs(x, {"D": D})
            scale = np.abs(f).max()
            m1, q1, b1 = _exact_rate(x, model.params, D, N)
            np.testing.assert_allclose(m1, f[:nm], rtol=0, atol=1e-12 * scale)
            assert b1 == pytest.approx(f[-1], rel=1e-12, abs=1e-13 * scale)
            # dQ: exact = limit + c/N exactly (the N-dependence is affine in 1/N)
            _, q2, _ = _exact_rate(x, model.params, D, 2 * N)
            np.testing.assert_allclose(2.0 * q2 - q1, f[nm:nm + nq], rtol=0, atol=1e-11 * scale)
            # and the 1/N term is a correction, not an O(1) error: c/N small against the drift scale
            assert np.max(np.abs(q1 - f[nm:nm + nq])) < 20.0 / N * max(scale, 0.1)


# ---- the loss of actual weights ------------------------------------------------------------

def test_loss_is_the_mse_of_the_weights():
    """model loss (loss_exact) == E||x - xhat||^2 of weights with those overlaps, exact and sampled."""
    model = op.load_model("dae", D_F=0.3, loss_exact=True, N=400)
    p = model.params
    rng = np.random.default_rng(2)
    x = model.random_state(rng)
    mu, W, b = dae.weights_from_overlaps(p, x, 400, rng)
    np.testing.assert_allclose(dae.measure(mu, W, b), x, rtol=0, atol=1e-12)
    priors = np.full(2, 0.5)
    exact = dae.mse_exact(mu, W, b, priors, p["s"], p["D_F"])
    assert exact == pytest.approx(model.loss(x), rel=1e-12)
    mean, sem = dae.mse_sampled(mu, W, b, priors, p["s"], p["D_F"], 20000, rng)
    assert abs(mean - exact) < Z * sem


# ---- the ODE against SGD at finite N ---------------------------------------------------------

def _assert_close(res, traj, N, z=Z):
    n = res.x.shape[0]
    mean = res.x.mean(axis=0)
    sem = res.x.std(axis=0, ddof=1) / np.sqrt(n)
    allow = np.full(mean.shape[1], C_FS_STATE / N)
    allow[-1] = C_FS_B / N
    dev = np.abs(mean - traj.x)
    ratio = dev / (z * sem + allow + ATOL0)
    assert np.all(ratio <= 1.0), f"states: worst deviation at {np.unravel_index(ratio.argmax(), ratio.shape)}, " \
                                 f"{ratio.max():.2f} x tolerance"
    ldev = np.abs(res.loss_mean - traj.loss)
    assert np.all(ldev <= z * res.loss_sem + C_FS_LOSS / N + ATOL0), "loss"


def test_sgd_matches_ode():
    """D falling 0.8 -> 0.05 over tau in [0, 4], D_F = 0.3, N = 1000 (800 steps), 24 seeds.

    The SGD loss is E||x - xhat||^2 of the weights (exact expectation), compared with
    the model at loss_exact = true and finite_n = true.
    """
    N = 1000
    model = op.load_model("dae", D_F=0.3, N=N, finite_n=True, loss_exact=True)
    res = simulate_sgd(model, FALLING, TAU_F, N=N, seeds=24, n_out=5)
    traj = simulate(model, None, FALLING, TAU_F, t_eval=res.t, rtol=1e-10, atol=1e-12)
    _assert_close(res, traj, N)
    # the run learnt: M grew from ~0.1 to ~0.6 on the diagonal
    assert np.all(res.x.mean(axis=0)[-1, [0, 3]] > 0.5)
    # the db correction is needed: the limit form misses b by many standard errors
    limit = simulate(op.load_model("dae", D_F=0.3, N=N, loss_exact=True), None, FALLING, TAU_F, t_eval=res.t,
                     rtol=1e-10, atol=1e-12)
    sem_b = res.x[:, -1, -1].std(ddof=1) / np.sqrt(24)
    assert abs(res.x[:, -1, -1].mean() - limit.x[-1, -1]) > 10 * sem_b + C_FS_B / N


def test_sgd_loss_convention():
    """sgd() returns the loss in the model's convention; "mse" is always the full E||x - xhat||^2."""
    for exact in (False, True):
        model = op.load_model("dae", D_F=0.3, N=300, loss_exact=exact)
        proto = as_protocol(model, 0.3, 1.0)
        out = dae.sgd(model.params, model.initial_state(), proto, np.array([0.0, 1.0]), 300,
                      np.random.default_rng(0))
        for row, loss, mse in zip(out["x"], out["loss"], out["mse"]):
            assert loss == pytest.approx(model.loss(row), rel=1e-12)
            assert mse == pytest.approx(op.load_model("dae", D_F=0.3, N=300, loss_exact=True).loss(row), rel=1e-12)


@pytest.mark.slow
def test_sgd_matches_ode_large_n():
    """Constant D = D_F = 0.1, N = 8000 (6400 steps), 12 seeds (about 30 s)."""
    N = 8000
    model = op.load_model("dae", D_F=0.1, N=N, finite_n=True, loss_exact=True)
    res = simulate_sgd(model, 0.1, TAU_F, N=N, seeds=12, n_out=5)
    traj = simulate(model, None, 0.1, TAU_F, t_eval=res.t, rtol=1e-10, atol=1e-12)
    # t_11 two-sided 5.5-sigma point: exceeded with probability 2e-4 per comparison
    _assert_close(res, traj, N, z=5.5)


@pytest.mark.slow
def test_sgd_gap_is_order_one_over_n():
    """N * (SGD mean - ODE) at tau = 4 agrees between N = 250 and N = 1000 (about 25 s).

    An error in the equations would give a gap that does not shrink with N; the
    finite-size gap shrinks as 1/N, so N * gap is the same at both sizes.
    """
    out = {}
    for N, seeds in ((250, 2000), (1000, 400)):
        model = op.load_model("dae", D_F=0.3, N=N, finite_n=True, loss_exact=True)
        res = simulate_sgd(model, FALLING, TAU_F, N=N, seeds=seeds, n_out=2)
        traj = simulate(model, None, FALLING, TAU_F, t_eval=res.t, rtol=1e-10, atol=1e-12)
        gap = np.append(res.x.mean(axis=0)[-1] - traj.x[-1], res.loss_mean[-1] - traj.loss[-1])
        sem = np.append(res.x[:, -1].std(axis=0, ddof=1), res.loss[:, -1].std(ddof=1)) / np.sqrt(seeds)
        out[N] = (N * gap, N * sem)
    (g1, s1), (g2, s2) = out[250], out[1000]
    assert np.all(np.abs(g1 - g2) <= Z * np.hypot(s1, s2))
    # the gap is real (several standard errors at N = 250) for the diagonal overlaps
    assert np.all(np.abs(g1[[0, 3]]) > 10 * s1[[0, 3]])
