"""Denoising autoencoder on a Gaussian mixture: the training-noise schedule [MM25].

Setup (docs/models.md section 3; Mignacco & Mori, arXiv:2507.07907 [MM25]). Data
x = mu_k + s z in R^N from cluster k with prior c_k (C clusters), z ~ N(0, I),
cluster means with overlaps S_kl = mu_k.mu_l (mu_k ~ N(0, I/N), so S ~ I).
Corrupted input x~ = sqrt(1 - D) x + sqrt(D) xi, xi ~ N(0, I). Network: linear,
tied weights W (K x N), trainable scalar skip b,

    xhat = b x~ + W^T (W x~)/N,   loss (1/2)||x - xhat||^2,  e = x - xhat,
    W <- W + (eta/N) [(W x~) e^T + (W e) x~^T],   b <- b + (eta/N^2) x~.e,

one fresh sample per step. Order parameters Q = W W^T/N (K x K), M_kj =
mu_k.W_j/sqrt N (C x K), the skip b, and S (fixed).

**Time.** ``TIME = "tau"``: the equations are written in the scaled time
tau = eta * alpha = eta * (SGD steps)/N, as in the source. The learning rate
``eta`` is a constant of the model (it also enters the right-hand side through
the eta^2 terms), so tau_F = 4 is alpha_F = 0.8 at eta = 5, i.e. 800 SGD
steps at N = 1000.

**Equations** (docs/models.md section 3), per cluster k at noise D, with M_k = row k
of M (length K) and S_k = row k of S:

    <l~l~>_k = (1-D) M_k M_k^T + ((1-D)s^2 + D) Q,  <l~l>_k = sqrt(1-D)(M_k M_k^T + s^2 Q),
    <ll>_k = M_k M_k^T + s^2 Q,
    <l~n~>_k = (1-D) M_k S_k^T + ((1-D)s^2 + D) M^T,  <l~n>_k = <ln~>_k = sqrt(1-D)(M_k S_k^T + s^2 M^T),
    xx = s^2,  x~x~ = (1-D)s^2 + D,  xx~ = sqrt(1-D) s^2,
    L~ = <l~l> - <l~l~>(bI + Q),  LL = <ll> - A - A^T + (bI+Q)<l~l~>(bI+Q),  A = (bI+Q)<l~l>,

    dM/dtau = sum_k c_k [<l~n>^T - 2b <l~n~>^T - M <l~l~> + <ln~>^T - <l~n~>^T Q]
    dQ/dtau = sym(sum_k c_k [(L~ + L~^T)(2 + eta(xx~ - b x~x~)) + eta LL x~x~
                             + eta <l~l~>(xx - 2b xx~ + b^2 x~x~)])
    db/dtau = sum_k c_k [sqrt(1-D) s^2 - b((1-D)s^2 + D)]                       (N -> infinity)
            + sum_k c_k [sqrt(1-D) S_kk - b(1-D) S_kk - tr<l~l~>_k] / N          (finite_n = true)

The limit form of db (default) reproduces the published numbers; the finite-N
correction (about 10% of db at N = 1000, s = 0.1) is what a simulation at finite
N follows (parameter ``finite_n``).

**Loss**: the test MSE at the fixed test noise D_F (correlators at D = D_F),

    L = sum_k c_k [tr(Q<l~l~>) - 2 tr<l~l> + 2b tr<l~l~> + b^2 N x~x~ - 2b N xx~ + N s^2]

(the full ||x - xhat||^2, not halved). This is the source's expression; the
exact expectation E||x - xhat||^2 over a fresh test sample adds

    sum_k c_k S_kk (1 - b sqrt(1 - D_F))^2   (about 0.9 at the reference),

the contribution of the cluster means themselves. It does not depend on the
weights W, but it does depend on b. Parameter ``loss_exact = true`` includes it
(use it when comparing with simulated MSEs); the default is the source's form.

Control: the training noise ``D`` in [0.01, 0.99] (default D_F). Constants:
eta, s, D_F, N, priors c_k, S. States "M[k,j]" (k < C, j < K), "Q[i,k]"
(i <= k), "b".

Reference [MM25] (the defaults): C = K = 2, c = (1/2, 1/2), N = 1000, eta = 5,
s = 0.1, b0 = 0, Q0 = diag(0.25, 0.25), M0 = [[0.1165, 0.0289], [-0.0052, 0.1039]],
S = [[0.9471, 0.0313], [0.0313, 0.9900]], horizon tau_F = 4. Baselines (limit
equations, source loss): constant D = D_F gives 8.886888 at D_F = 0.1 and
9.519856 at D_F = 0.3.

Optimal-control problem [MM25]: choose D(tau) in [0.01, 0.99], piecewise
constant on 399 intervals of [0, tau_F], minimising the test MSE at D_F at
tau_F. The optimum beats the constant D = D_F baseline; for D_F = 0.3 it starts
high (~0.76), falls to ~0.015 near alpha ~ 0.53 (tau ~ 2.65) and ends slightly up.

Finite-N check: :func:`sgd` runs the autoencoder's online SGD itself.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "tau"
KIND = "ode"
LOSS_NAME = "test MSE"

REF_S = np.array([[0.9471, 0.0313], [0.0313, 0.9900]])
REF_M0 = np.array([[0.1165, 0.0289], [-0.0052, 0.1039]])

PARAMETERS = {
    "C": Param(2, int, lo=1, hi=64, doc="number of clusters"),
    "K": Param(2, int, lo=1, hi=64, doc="hidden units"),
    "eta": Param(5.0, float, lo=0.0, lo_open=True, doc="learning rate (time is tau = eta alpha)"),
    "s": Param(0.1, float, lo=0.0, doc="within-cluster standard deviation of the data"),
    "D_F": Param(0.1, float, lo=0.0, hi=1.0, doc="test noise level"),
    "N": Param(1000, int, lo=1, doc="input dimension (enters the loss and the finite-N db correction)"),
    "priors": Param(None, "vector", doc="cluster priors c_k (default uniform)"),
    "S": Param(None, "matrix", doc="cluster-mean overlaps S_kl = mu_k.mu_l (default: reference for C = 2, else I)"),
    "finite_n": Param(False, bool, doc="use the finite-N corrected db equation"),
    "loss_exact": Param(False, bool, doc="add sum_k c_k S_kk (1 - b sqrt(1-D_F))^2: the exact E||x - xhat||^2"),
    "Q0": Param(None, "matrix", doc="default initial Q (default 0.25 I)"),
    "M0": Param(None, "matrix", doc="default initial M, C x K (default: reference for C = K = 2, else 0.1 I)"),
    "b0": Param(0.0, float, doc="default initial skip b"),
}

# positions in the constant vector c: scalars, then priors (C), then S (C x C)
ETA_, S_, DF_, N_, N_SCALARS = 0, 1, 2, 3, 4
# control
D_ = 0


def _defaults(p):
    C, K = p["C"], p["K"]
    priors = np.full(C, 1.0 / C) if p["priors"] is None else np.asarray(p["priors"], dtype=float)
    if p["S"] is not None:
        S = np.asarray(p["S"], dtype=float)
    else:
        S = REF_S.copy() if C == 2 else np.eye(C)
    Q0 = 0.25 * np.eye(K) if p["Q0"] is None else np.asarray(p["Q0"], dtype=float)
    if p["M0"] is not None:
        M0 = np.asarray(p["M0"], dtype=float)
    else:
        M0 = REF_M0.copy() if (C, K) == (2, 2) else 0.1 * np.eye(C, K)
    return priors, S, Q0, M0


def _gram(S, M, Q):
    """Joint Gram matrix of the C cluster means and the K rows of W/sqrt N."""
    return np.block([[S, M], [M.T, Q]])


def _check_psd(G, what):
    if not np.allclose(G, G.T, rtol=0, atol=1e-12 * max(1.0, np.abs(G).max())):
        raise ValueError(f"{what}: must be symmetric")
    if np.linalg.eigvalsh(G).min() < -1e-10 * max(1.0, np.abs(G).max()):
        raise ValueError(f"{what}: not positive semi-definite")


def check(p):
    """Shapes of priors, S, Q0, M0; priors a distribution; S and the initial Gram matrix valid."""
    C, K = p["C"], p["K"]
    priors, S, Q0, M0 = _defaults(p)
    if priors.shape != (C,) or np.any(priors < 0) or abs(priors.sum() - 1.0) > 1e-12:
        raise ValueError(f"parameter 'priors': expected {C} non-negative numbers summing to 1 (C = {C})")
    if S.shape != (C, C):
        raise ValueError(f"parameter 'S': expected a {C} x {C} matrix (C = {C}), got shape {S.shape}")
    _check_psd(S, "parameter 'S'")
    if Q0.shape != (K, K):
        raise ValueError(f"parameter 'Q0': expected a {K} x {K} matrix (K = {K}), got shape {Q0.shape}")
    if M0.shape != (C, K):
        raise ValueError(f"parameter 'M0': expected a {C} x {K} matrix (C = {C}, K = {K}), got shape {M0.shape}")
    _check_psd(_gram(S, M0, Q0), "parameters 'S', 'M0', 'Q0' (overlaps [[S, M0], [M0^T, Q0]])")


def dims(p):
    return (p["C"], p["K"], int(p["finite_n"]), int(p["loss_exact"]))


def state_names(p):
    C, K = p["C"], p["K"]
    names = [f"M[{k},{j}]" for k in range(C) for j in range(K)]
    names += [f"Q[{i},{k}]" for i in range(K) for k in range(i, K)]
    return names + ["b"]


def controls(p):
    return {"D": Control(min(max(p["D_F"], 0.01), 0.99), 0.01, 0.99, "training noise level")}


def constants(p):
    priors, S, _, _ = _defaults(p)
    return {"eta": p["eta"], "s": p["s"], "D_F": p["D_F"], "N": float(p["N"]), "priors": priors, "S": S}


def initial_state(p, M=None, Q=None, b=None):
    """Default M0, Q0, b0 from the parameters (the reference overlaps); any of them can be given."""
    C, K = p["C"], p["K"]
    _, _, Q0, M0 = _defaults(p)
    M = M0 if M is None else np.asarray(M, dtype=float)
    Q = Q0 if Q is None else np.asarray(Q, dtype=float)
    b = p["b0"] if b is None else float(b)
    if M.shape != (C, K):
        raise ValueError(f"initial state 'M': expected a {C} x {K} matrix, got shape {M.shape}")
    if Q.shape != (K, K) or not np.allclose(Q, Q.T):
        raise ValueError(f"initial state 'Q': expected a symmetric {K} x {K} matrix, got shape {Q.shape}")
    return np.array(list(M.ravel()) + [Q[i, k] for i in range(K) for k in range(i, K)] + [b], dtype=float)


def overlaps(x, p):
    """The order parameters of state ``x`` as matrices: dict with M (C x K), Q (K x K), b, S."""
    C, K = p["C"], p["K"]
    _, S, _, _ = _defaults(p)
    x = np.asarray(x, dtype=float)
    M = x[:C * K].reshape(C, K).copy()
    Q = np.zeros((K, K))
    for i in range(K):
        for k in range(i, K):
            Q[i, k] = Q[k, i] = x[_q(i, k, C, K)]
    return {"M": M, "Q": Q, "b": float(x[-1]), "S": S}


METHODS = ("overlaps",)


def check_state(x, p):
    """The overlaps [[S, M], [M^T, Q]] must be a valid (positive semi-definite) Gram matrix."""
    o = overlaps(x, p)
    _check_psd(_gram(o["S"], o["M"], o["Q"]), "state: overlaps [[S, M], [M^T, Q]]")


def random_state(p, rng):
    """Overlaps of random weights W/sqrt N in the span of the means and K more directions; b in [-0.2, 1]."""
    C, K = p["C"], p["K"]
    _, S, _, _ = _defaults(p)
    w, V = np.linalg.eigh(S)
    A = np.hstack([V * np.sqrt(np.clip(w, 0, None)), np.zeros((C, K))])   # A A^T = S
    B = rng.standard_normal((K, C + K)) * rng.uniform(0.2, 0.8)
    return initial_state(p, M=A @ B.T, Q=B @ B.T, b=rng.uniform(-0.2, 1.0))


# ---- equations (one source: numba and CasADi) ------------------------------------------------

def _q(i, k, C, K):
    """Position of Q[i,k] (any order of i, k) in the state vector."""
    a = min(i, k)
    d = max(i, k)
    return C * K + a * K - (a * (a - 1)) // 2 + (d - a)


def _unpack(x, C, K):
    M = ops.matrix(C, K)
    for k in range(C):
        for j in range(K):
            M[k, j] = x[k * K + j]
    Q = ops.matrix(K, K)
    for i in range(K):
        for k in range(K):
            Q[i, k] = x[_q(i, k, C, K)]
    return M, Q, x[C * K + K * (K + 1) // 2]


def _correlators(M, Q, S, a, D, s, C, K):
    """<l~l~>, <l~l>, <ll> (K x K) and <l~n~>, <l~n> (K x C) of cluster ``a`` at noise D."""
    r = ops.sqrt(1.0 - D)
    xtxt = (1.0 - D) * s * s + D
    Ltt = ops.matrix(K, K)
    Ltl = ops.matrix(K, K)
    Lll = ops.matrix(K, K)
    for i in range(K):
        for j in range(K):
            mm = M[a, i] * M[a, j]
            Ltt[i, j] = (1.0 - D) * mm + xtxt * Q[i, j]
            Lll[i, j] = mm + s * s * Q[i, j]
            Ltl[i, j] = r * Lll[i, j]
    Ltnt = ops.matrix(K, C)
    Ltn = ops.matrix(K, C)
    for i in range(K):
        for l in range(C):
            Ltnt[i, l] = (1.0 - D) * M[a, i] * S[a, l] + xtxt * M[l, i]
            Ltn[i, l] = r * (M[a, i] * S[a, l] + s * s * M[l, i])
    return Ltt, Ltl, Lll, Ltnt, Ltn


def _read_constants(c, C):
    pri = ops.zeros(C)
    S = ops.matrix(C, C)
    for k in range(C):
        pri[k] = c[N_SCALARS + k]
        for l in range(C):
            S[k, l] = c[N_SCALARS + C + k * C + l]
    return pri, S


def rhs(x, u, c, dims):
    """d(M, Q, b)/dtau (docs/models.md section 3) [MM25]; dims[2] = 1 adds the finite-N db correction."""
    C = dims[0]
    K = dims[1]
    finite_n = dims[2]
    D = u[D_]
    eta = c[ETA_]
    s = c[S_]
    Nd = c[N_]
    pri, S = _read_constants(c, C)
    M, Q, b = _unpack(x, C, K)
    r = ops.sqrt(1.0 - D)
    xx = s * s
    xtxt = (1.0 - D) * s * s + D
    xxt = r * s * s
    dM = ops.matrix(C, K)
    dQ = ops.matrix(K, K)
    db = 0.0
    for a in range(C):
        Ltt, Ltl, Lll, Ltnt, Ltn = _correlators(M, Q, S, a, D, s, C, K)
        # B = bI + Q; Lt = <l~l> - <l~l~> B; A = B <l~l>; LL = <ll> - A - A^T + B <l~l~> B
        Bm = ops.matrix(K, K)
        for i in range(K):
            for j in range(K):
                Bm[i, j] = Q[i, j]
            Bm[i, i] = Q[i, i] + b
        Lt = ops.matrix(K, K)
        A = ops.matrix(K, K)
        TB = ops.matrix(K, K)   # <l~l~> B
        for i in range(K):
            for j in range(K):
                acc_t = 0.0
                acc_a = 0.0
                for m in range(K):
                    acc_t = acc_t + Ltt[i, m] * Bm[m, j]
                    acc_a = acc_a + Bm[i, m] * Ltl[m, j]
                TB[i, j] = acc_t
                A[i, j] = acc_a
                Lt[i, j] = Ltl[i, j] - acc_t
        for i in range(K):
            for j in range(i, K):
                bb = 0.0
                for m in range(K):
                    bb = bb + Bm[i, m] * TB[m, j]
                LL = Lll[i, j] - A[i, j] - A[j, i] + bb
                term = ((Lt[i, j] + Lt[j, i]) * (2.0 + eta * (xxt - b * xtxt)) + eta * LL * xtxt
                        + eta * Ltt[i, j] * (xx - 2.0 * b * xxt + b * b * xtxt))
                dQ[i, j] = dQ[i, j] + pri[a] * term
        for l in range(C):
            for j in range(K):
                mt = 0.0
                tq = 0.0
                for m in range(K):
                    mt = mt + M[l, m] * Ltt[m, j]
                    tq = tq + Ltnt[m, l] * Q[m, j]
                dM[l, j] = dM[l, j] + pri[a] * (2.0 * Ltn[j, l] - 2.0 * b * Ltnt[j, l] - mt - tq)
        db = db + pri[a] * (xxt - b * xtxt)
        if finite_n:
            tr = 0.0
            for i in range(K):
                tr = tr + Ltt[i, i]
            db = db + pri[a] * (r * S[a, a] - b * (1.0 - D) * S[a, a] - tr) / Nd
    out = ops.zeros(x.shape[0])
    for k in range(C):
        for j in range(K):
            out[k * K + j] = dM[k, j]
    for i in range(K):
        for j in range(i, K):
            # dQ as computed is symmetric term by term: "sym" is the identity on its upper triangle
            out[_q(i, j, C, K)] = dQ[i, j]
    out[C * K + K * (K + 1) // 2] = db
    return out


def loss(x, c, dims):
    """Test MSE at D_F (docs/models.md section 3) [MM25]; dims[3] = 1 adds sum_k c_k S_kk (1 - b sqrt(1-D_F))^2."""
    C = dims[0]
    K = dims[1]
    exact = dims[3]
    s = c[S_]
    D = c[DF_]
    Nd = c[N_]
    pri, S = _read_constants(c, C)
    M, Q, b = _unpack(x, C, K)
    r = ops.sqrt(1.0 - D)
    xtxt = (1.0 - D) * s * s + D
    xxt = r * s * s
    total = 0.0
    for a in range(C):
        Ltt, Ltl, Lll, Ltnt, Ltn = _correlators(M, Q, S, a, D, s, C, K)
        tqt = 0.0
        tr_tt = 0.0
        tr_tl = 0.0
        for i in range(K):
            tr_tt = tr_tt + Ltt[i, i]
            tr_tl = tr_tl + Ltl[i, i]
            for j in range(K):
                tqt = tqt + Q[i, j] * Ltt[j, i]
        val = tqt - 2.0 * tr_tl + 2.0 * b * tr_tt + b * b * Nd * xtxt - 2.0 * b * Nd * xxt + Nd * s * s
        if exact:
            val = val + S[a, a] * (1.0 - b * r) * (1.0 - b * r)
        total = total + pri[a] * val
    return total


# ---- finite-N simulation of the autoencoder's online SGD -------------------------------------

def _orthonormal_frame(d, N, rng):
    """d orthonormal vectors of R^N in a uniformly random orientation (rows of a d x N matrix)."""
    G = rng.standard_normal((N, d))
    Qm, R = np.linalg.qr(G)
    return (Qm * np.sign(np.diag(R))).T


def weights_from_overlaps(p, x0, N, rng):
    """Cluster means mu (C x N) and weights W (K x N) with mu mu^T = S, W W^T/N = Q, mu W^T/sqrt N = M.

    Both live in a random (C + K)-dimensional subspace; by the rotational invariance
    of the data given the means, the learning dynamics depend on the initial weights
    only through these overlaps.
    """
    C, K = p["C"], p["K"]
    o = overlaps(x0, p)
    G = _gram(o["S"], o["M"], o["Q"])
    w, V = np.linalg.eigh(G)
    F = V * np.sqrt(np.clip(w, 0.0, None))       # F F^T = G
    if N < C + K:
        raise ValueError(f"N = {N}: need at least C + K = {C + K} dimensions")
    E = _orthonormal_frame(C + K, N, rng)
    mu = F[:C] @ E
    W = math.sqrt(N) * (F[C:] @ E)
    return mu, W, o["b"]


def measure(mu, W, b):
    """Order parameters (state vector layout) of means ``mu``, weights ``W`` and skip ``b``."""
    K, N = W.shape
    Q = W @ W.T / N
    M = mu @ W.T / math.sqrt(N)
    return np.array(list(M.ravel()) + [Q[i, k] for i in range(K) for k in range(i, K)] + [b])


def mse_exact(mu, W, b, priors, s, D):
    """E||x - xhat||^2 over a fresh test sample at noise D, exactly, from the weights (no sampling).

    With P = bI + W^T W/N and r = sqrt(1-D): e = (I - rP) x - sqrt(D) P xi, so
    E||e||^2 = sum_k c_k [ ||(I - rP) mu_k||^2 + s^2 ||I - rP||_F^2 + D ||P||_F^2 ].
    The Frobenius norms use the K x K Gram matrix G = W W^T / N:
    ||P||_F^2 = N b^2 + 2b tr G + tr G^2, ||I - rP||_F^2 = N(1 - rb)^2 - 2r(1 - rb) tr G + r^2 tr G^2.
    """
    K, N = W.shape
    r = math.sqrt(1.0 - D)
    G = W @ W.T / N
    trG, trG2 = np.trace(G), np.sum(G * G)
    fro_P = N * b * b + 2.0 * b * trG + trG2
    fro_I = N * (1.0 - r * b) ** 2 - 2.0 * r * (1.0 - r * b) * trG + r * r * trG2
    total = 0.0
    for k in range(mu.shape[0]):
        v = (1.0 - r * b) * mu[k] - r * (W.T @ (W @ mu[k])) / N
        total += priors[k] * (v @ v + s * s * fro_I + D * fro_P)
    return float(total)


def mse_sampled(mu, W, b, priors, s, D, n_samples, rng):
    """Monte Carlo estimate of E||x - xhat||^2 on ``n_samples`` fresh test samples: (mean, standard error)."""
    C, N = mu.shape
    ks = rng.choice(C, size=n_samples, p=priors)
    x = mu[ks] + s * rng.standard_normal((n_samples, N))
    xt = math.sqrt(1.0 - D) * x + math.sqrt(D) * rng.standard_normal((n_samples, N))
    xhat = b * xt + (xt @ W.T) @ W / N
    err = np.sum((x - xhat) ** 2, axis=1)
    return float(err.mean()), float(err.std(ddof=1) / math.sqrt(n_samples))


@numba.njit(cache=True)
def _sgd_run(mu, W, b, cum_priors, s, eta, D_step, out_steps, rng):
    """Online SGD of the tied-weight DAE; step k uses the noise D_step[k]. Returns W, b after out_steps."""
    C, N = mu.shape
    K = W.shape[0]
    n_out = out_steps.shape[0]
    Ws = np.empty((n_out, K, N))
    bs = np.empty(n_out)
    j = 0
    while j < n_out and out_steps[j] <= 0:
        Ws[j] = W
        bs[j] = b
        j += 1
    n_steps = out_steps[n_out - 1] if n_out > 0 else 0
    x = np.empty(N)
    xt = np.empty(N)
    e = np.empty(N)
    h = np.empty(K)
    We = np.empty(K)
    for step in range(n_steps):
        D = D_step[step]
        r = math.sqrt(1.0 - D)
        sd = math.sqrt(D)
        uc = rng.random()
        k = 0
        while k < C - 1 and uc >= cum_priors[k]:
            k += 1
        for n in range(N):
            x[n] = mu[k, n] + s * rng.standard_normal()
            xt[n] = r * x[n] + sd * rng.standard_normal()
        for i in range(K):
            acc = 0.0
            for n in range(N):
                acc += W[i, n] * xt[n]
            h[i] = acc
        xte = 0.0
        for n in range(N):
            rec = b * xt[n]
            for i in range(K):
                rec += W[i, n] * h[i] / N
            e[n] = x[n] - rec
            xte += xt[n] * e[n]
        for i in range(K):
            acc = 0.0
            for n in range(N):
                acc += W[i, n] * e[n]
            We[i] = acc
        # simultaneous update of W and b from the same sample
        for i in range(K):
            for n in range(N):
                W[i, n] += eta / N * (h[i] * e[n] + We[i] * xt[n])
        b += eta / (N * N) * xte
        while j < n_out and out_steps[j] <= step + 1:
            Ws[j] = W
            bs[j] = b
            j += 1
    return Ws, bs


def sgd(p, x0, protocol, t_out, N, rng):
    """Online SGD of the autoencoder at input dimension ``N`` from weights with overlaps ``x0``.

    Means and weights come from :func:`weights_from_overlaps` (so S, M0, Q0, b0
    hold exactly). Time is tau = eta * steps / N: output time tau is after
    round(tau N / eta) steps, and step k uses the noise D(eta (k + 1/2)/N).
    Returns ``"x"``, the measured (M, Q, b), and ``"loss"``: the test MSE at D_F
    computed exactly from the weights by :func:`mse_exact` (the expectation over a
    fresh test sample, no sampling noise), in the convention of the model's loss:
    the full E||x - xhat||^2 when ``loss_exact``, otherwise that minus
    sum_k c_k S_kk (1 - b sqrt(1-D_F))^2 (the source's expression). ``"mse"``
    always holds the full E||x - xhat||^2.

    Note: the parameter ``N`` of the model (used by its loss and db correction)
    is not the ``N`` of this simulation unless they are set equal.
    """
    priors, S, _, _ = _defaults(p)
    eta, s, DF = p["eta"], p["s"], p["D_F"]
    mu, W, b = weights_from_overlaps(p, np.asarray(x0, dtype=float), N, rng)
    t_out = np.asarray(t_out, dtype=float)
    out_steps = np.rint(t_out * N / eta).astype(np.int64)
    n_steps = int(out_steps.max()) if out_steps.size else 0
    names = list(protocol.names)
    D_step = np.ascontiguousarray(protocol(eta * (np.arange(n_steps) + 0.5) / N)[:, names.index("D")])
    cum = np.cumsum(priors)
    Ws, bs = _sgd_run(mu, np.ascontiguousarray(W), float(b), cum, s, eta, D_step, out_steps, rng)
    X = np.array([measure(mu, Ws[j], bs[j]) for j in range(len(t_out))])
    mse = np.array([mse_exact(mu, Ws[j], bs[j], priors, s, DF) for j in range(len(t_out))])
    r = math.sqrt(1.0 - DF)
    extra = np.array([sum(priors[k] * S[k, k] * (1.0 - bs[j] * r) ** 2 for k in range(len(priors)))
                      for j in range(len(t_out))])
    return {"x": X, "loss": mse if p["loss_exact"] else mse - extra, "mse": mse}
