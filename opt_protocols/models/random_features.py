"""Power-law random features / linear regression trained by minibatch SGD: the exact recursion
[BM26, FSL25, NS26] (docs/models.md sections 5 and 6).

Features in their eigenbasis, psi ~ N(0, diag(lambda)), lambda_k = k^(-b) for the modes
k = 1..N; target w* with lambda_k (w*_k)^2 = k^(-a) (we take w*_k = k^((b-a)/2) > 0; the sign
plays no role); labels y = psi.w* + sigma zeta, zeta ~ N(0, 1); the student w starts at 0 and
takes minibatch SGD steps on (1/2)(psi.w - y)^2 with batch size m_t and learning rate eta_t.
Time ``t`` is the step count: one call of :func:`step` is one SGD step, and step t uses the
controls at time t (``eta``, ``m`` and, with momentum, ``beta``).

Without momentum the state is c_k = E[(w_k - w*_k)^2] (names ``"c[i]"``, 0-based: ``c[0]`` is
the mode k = 1, lambda = 1) and the exact recursion for Gaussian features is

    d_k(eta, m) = 1 - 2 eta lambda_k + ((m + 1)/m) eta^2 lambda_k^2
    c_k(t+1)    = d_k c_k(t) + (eta_t^2/m_t) lambda_k (L(t) + sigma^2),   L(t) = sum_k lambda_k c_k(t).

It is exact, not a large-N limit: only the diagonal second moments of D = w - w* enter.
Stability under a constant eta: d_k < 1 for all k iff eta < 2m/((m+1) lambda_1) (docs/models.md),
but that is only necessary: the coupling through L makes the loss diverge already above a
smaller eta_c (for the defaults eta_c = 1.40569 < 1.66667); see :func:`stability_threshold`.

Momentum (``momentum=True``) in EMA form, beta = 1 being plain SGD:
v_t = (1 - beta_t) v_{t-1} + beta_t g_t (g_t the minibatch gradient at w_t, batch m_t),
w_{t+1} = w_t - eta_t v_t, with v_{-1} = 0. The state per mode is (names ``"C[i]"``,
``"R[i]"``, ``"V[i]"``)

    C = E[D_k(t)^2],   R = E[D_k(t) v_k(t-1)],   V = E[v_k(t-1)^2],

i.e. R and V involve the velocity *before* step t adds its gradient, so the initial state is
R = V = 0 and every control of step t (eta_t, m_t, beta_t) acts in step t. With
E[g_k^2 | D] = ((m+1)/m) lambda_k^2 D_k^2 + (lambda_k/m) (sum_j lambda_j D_j^2 + sigma^2):

    Rh = (1 - beta) R + beta lambda C                                  (= E[D v_t])
    Vh = (1 - beta)^2 V + 2 beta (1 - beta) lambda R
         + beta^2 [ ((m+1)/m) lambda^2 C + (lambda/m)(L + sigma^2) ]   (= E[v_t^2])
    C' = C - 2 eta Rh + eta^2 Vh,   R' = Rh - eta Vh,   V' = Vh.

This is the (C, R, V) recursion of docs/models.md section 5 cut half a step later: docs/models.md's
R, V (defined with the velocity about to be applied) are our Rh, Vh, and its update
``C' = C - 2 eta R + eta^2 V; R' = (1-beta)(R - eta V) + beta lambda C'; V' = ...`` is the
composition of the same operations (tests/test_random_features.py checks the equivalence).
In docs/models.md's cut the beta and m of a step act on the gradient of the *next* step and the
initial R, V depend on the first batch size; the cut used here avoids that off-by-one.
With beta = 1: Rh = lambda C, C' = d_k C + (eta^2/m) lambda (L + sigma^2), plain SGD.

Controls: ``eta`` in [0, inf); ``m`` in [1, inf), the batch size treated as a continuous
control (the recursion is analytic in m > 0, but a batch holds at least one sample, and the
control declaration has no open bounds); ``beta`` in [0, 1] exists ONLY when ``momentum=True``
(without momentum it has no effect, and a control without effect would make optimal-control
problems singular: asking for it is an error "model has no control 'beta'").
The control vector is ``u = (eta, m)`` or ``(eta, m, beta)``.

Loss: L = sum_{k<=N} lambda_k c_k, the excess loss E[(psi.(w - w*))^2] over the N kept modes
(no factor 1/2; [FSL25]'s excess risk is E = L/2). With ``tail=True`` the constant
approximation tail sum_{k>N} k^(-a) = zeta(a, N+1) (Hurwitz zeta, closed form, needs a > 1)
is added to the reported loss only, as in docs/models.md. (If the target's modes beyond N are real
and the student cannot represent them, they act on SGD exactly like extra label noise of
variance equal to the tail, since Gaussian features are independent: to model that, use
sigma^2 + tail as the noise variance.)

The [FSL25] parametrisation of docs/models.md section 6, lambda_j = j^(-beta),
lambda_j (w*_j)^2 = j^(-(s beta + 1)), is b = beta, a = s beta + 1: see :func:`fsl_params`.

Parameters: ``a``, ``b`` (target and spectrum exponents), ``sigma`` (label noise), ``N``
(modes), ``batch`` (the default batch size, i.e. the default of the control ``m``), ``momentum``,
``tail``.
Defaults are the [BM26] reference (a, b, sigma, m, N) = (2, 2, 0.5, 5, 500).

Finite-sample check: :func:`sgd` runs real minibatch SGD with Gaussian features.

Sources: Bordelon & Mori, arXiv:2602.04774 [BM26]; Li et al., arXiv:2509.19189 [FSL25];
Naganuma et al., arXiv:2603.10301 [NS26].
"""
from __future__ import annotations

import math

import numba
import numpy as np
import scipy.optimize
import scipy.special

from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "t"
KIND = "map"
LOSS_NAME = "excess loss L"

PARAMETERS = {
    "a": Param(2.0, float, lo=0.0, lo_open=True, doc="target exponent: lambda_k (w*_k)^2 = k^(-a)"),
    "b": Param(2.0, float, lo=0.0, doc="spectrum exponent: lambda_k = k^(-b)"),
    "sigma": Param(0.5, float, lo=0.0, doc="label-noise standard deviation"),
    "N": Param(500, int, lo=1, hi=10_000_000, doc="number of modes kept"),
    "batch": Param(5.0, float, lo=1.0, doc="default batch size m (the default of the control m)"),
    "momentum": Param(False, bool, doc="EMA momentum: states (C, R, V) per mode and control beta"),
    "tail": Param(False, bool, doc="add the tail sum_{k>N} k^(-a) to the loss (needs a > 1)"),
}

# positions in the constant vector c: scalars, then lambda (N), then w* (N)
SIGMA, TAIL, LAM = 0, 1, 2
# controls
ETA, BATCH, BETA = 0, 1, 2
# dims
DIM_N, DIM_MOM = 0, 1


def fsl_params(s: float, beta: float) -> dict:
    """Exponents (a, b) of the [FSL25] parametrisation lambda_j = j^(-beta),
    lambda_j (w*_j)^2 = j^(-(s beta + 1)) (docs/models.md section 6): b = beta, a = s beta + 1."""
    return {"a": s * beta + 1.0, "b": float(beta)}


def check(p):
    if p.get("tail") and not p["a"] > 1.0:
        raise ValueError(f"parameter 'tail': the tail sum_(k>N) k^(-a) diverges for a = {p['a']:g} <= 1")


def spectrum(p) -> np.ndarray:
    """lambda_k = k^(-b), k = 1..N."""
    return np.arange(1, p["N"] + 1, dtype=float) ** (-p["b"])


def target(p) -> np.ndarray:
    """w*_k = k^((b - a)/2), so that lambda_k (w*_k)^2 = k^(-a)."""
    return np.arange(1, p["N"] + 1, dtype=float) ** (0.5 * (p["b"] - p["a"]))


def tail_value(p) -> float:
    """sum_{k>N} k^(-a) in closed form (Hurwitz zeta(a, N+1)); 0 when ``tail`` is off."""
    if not p.get("tail"):
        return 0.0
    return float(scipy.special.zeta(p["a"], p["N"] + 1))


def contraction(p, eta, m) -> np.ndarray:
    """d_k(eta, m) = 1 - 2 eta lambda_k + ((m+1)/m) eta^2 lambda_k^2, the diagonal of the step's
    Jacobian. Always >= 1/(m+1) > 0; d_k < 1 for all k iff 0 < eta < 2m/((m+1) lambda_1)."""
    return mode_contraction(spectrum(p), eta, m)


def mode_contraction(lam, eta, m) -> np.ndarray:
    """d_k(eta, m) of :func:`contraction` for eigenvalues ``lam`` (NumPy broadcasting over all three)."""
    return 1.0 - 2.0 * eta * lam + (m + 1.0) / m * eta * eta * lam * lam


def stability_threshold(p, m=None) -> dict:
    """Largest stable constant learning rate at batch size ``m`` (default: parameter ``m``).

    The step is affine, c' = A c + (eta^2/m) sigma^2 lambda with
    A = diag(d_k) + (eta^2/m) lambda lambda^T (elementwise positive), so the loss stays bounded
    under a constant eta iff the Perron root of A is < 1, i.e. iff all d_k < 1 AND
    (eta/m) sum_k lambda_k / (2 - ((m+1)/m) eta lambda_k) < 1 (secular equation of a
    diagonal-plus-rank-one matrix). Returns ``{"eta_d": 2m/((m+1) lambda_1)`` (the bound
    d_k < 1 of docs/models.md section 5, necessary only) and ``"eta_c"`` (the exact threshold, the
    root of the secular equation, < eta_d)``}``.
    """
    m = float(p["batch"] if m is None else m)
    lam = spectrum(p)
    eta_d = float(2.0 * m / ((m + 1.0) * lam.max()))

    def secular(eta):
        return eta / m * np.sum(lam / (2.0 - (m + 1.0) / m * eta * lam)) - 1.0

    eta_c = scipy.optimize.brentq(secular, 1e-300, eta_d * (1.0 - 1e-15), xtol=1e-15)
    return {"eta_d": eta_d, "eta_c": float(eta_c)}


def dims(p):
    return (p["N"], int(bool(p.get("momentum", False))))


def state_names(p):
    N = p["N"]
    if p.get("momentum", False):
        return [f"C[{i}]" for i in range(N)] + [f"R[{i}]" for i in range(N)] + [f"V[{i}]" for i in range(N)]
    return [f"c[{i}]" for i in range(N)]


def controls(p):
    out = {"eta": Control(0.5, 0.0, math.inf, "learning rate"),
           "m": Control(float(p["batch"]), 1.0, math.inf, "batch size (continuous)")}
    if p.get("momentum", False):
        out["beta"] = Control(0.1, 0.0, 1.0, "EMA momentum weight of the new gradient (1 = plain SGD)")
    return out


def constants(p):
    return {"sigma": p["sigma"], "tail": tail_value(p), "lam": spectrum(p), "wstar": target(p)}


def _vector(name, v, N):
    v = np.asarray(v, dtype=float).ravel()
    if v.shape != (N,):
        raise ValueError(f"initial state {name!r}: expected {N} values (one per mode), got {v.size}")
    return v


def initial_state(p, c=None, C=None, R=None, V=None):
    """c_k(0) = (w*_k)^2 = k^(b - a) (w starts at 0); with momentum R = V = 0 (v_{-1} = 0).

    Overrides: ``c`` (no momentum) or ``C``, ``R``, ``V`` (momentum), one value per mode.
    """
    N = p["N"]
    c0 = target(p) ** 2
    if not p.get("momentum", False):
        if C is not None or R is not None or V is not None:
            raise ValueError("initial state: C, R, V exist only with momentum = true; give 'c'")
        return c0.copy() if c is None else _vector("c", c, N)
    if c is not None:
        raise ValueError("initial state 'c': with momentum = true give 'C' (and 'R', 'V')")
    C = c0.copy() if C is None else _vector("C", C, N)
    R = np.zeros(N) if R is None else _vector("R", R, N)
    V = np.zeros(N) if V is None else _vector("V", V, N)
    return np.concatenate([C, R, V])


def check_state(x, p):
    """Second moments: c, C, V >= 0 and R^2 <= C V (Cauchy-Schwarz)."""
    N = p["N"]
    tol = 1e-12
    if not p.get("momentum", False):
        if np.any(x < -tol * max(1.0, np.abs(x).max())):
            raise ValueError("state: c_k = E[(w_k - w*_k)^2] must be >= 0")
        return
    C, R, V = x[:N], x[N:2 * N], x[2 * N:]
    if np.any(C < -tol * max(1.0, np.abs(C).max())) or np.any(V < -tol * max(1.0, np.abs(V).max())):
        raise ValueError("state: C_k and V_k are second moments and must be >= 0")
    if np.any(R * R > C * V * (1.0 + 1e-9) + tol):
        raise ValueError("state: R_k^2 <= C_k V_k is violated (not a valid covariance of (D_k, v_k))")


def random_state(p, rng):
    """A random valid state: c (or C) around the initial state, V ~ lambda^2 C, |R| <= sqrt(C V)."""
    N = p["N"]
    lam = spectrum(p)
    C = target(p) ** 2 * rng.uniform(0.05, 1.5, N)
    if not p.get("momentum", False):
        return C
    V = lam * lam * C * rng.uniform(0.1, 3.0, N) + lam * rng.uniform(0.0, 0.1, N)
    R = rng.uniform(-1.0, 1.0, N) * np.sqrt(C * V)
    return np.concatenate([C, R, V])


# ---- equations (one source: numba and CasADi) ------------------------------------------------

def coupling(x, c, N):
    """L = sum_{k<=N} lambda_k c_k, the loss over the kept modes and the coupling of the modes in the
    step (docs/models.md section 5); shared by :func:`step`, :func:`loss` and random_features_ode."""
    L = 0.0
    for k in range(N):
        L = L + c[LAM + k] * x[k]
    return L


def step(x, u, c, dims):
    """One SGD step of the exact recursion (docs/models.md section 5) [BM26].

    The coupling L(t) = sum_k lambda_k c_k is formed once, then every mode is updated
    from (its own state, lambda_k, eta, m, beta, L + sigma^2).
    """
    N = dims[DIM_N]
    momentum = dims[DIM_MOM]
    eta = u[ETA]
    m = u[BATCH]
    sigma = c[SIGMA]
    L = coupling(x, c, N)
    excess = (L + sigma * sigma) / m          # (L + sigma^2)/m, shared by all modes
    curv = (m + 1.0) / m                      # E[g^2] factor (1 + 1/m) of the lambda^2 C term
    out = ops.zeros(x.shape[0])
    if momentum:
        beta = u[BETA]
        keep = 1.0 - beta
        for k in range(N):
            lam = c[LAM + k]
            C = x[k]
            R = x[N + k]
            V = x[2 * N + k]
            Rh = keep * R + beta * lam * C
            Vh = (keep * keep * V + 2.0 * beta * keep * lam * R
                  + beta * beta * (curv * lam * lam * C + lam * excess))
            out[k] = C - 2.0 * eta * Rh + eta * eta * Vh
            out[N + k] = Rh - eta * Vh
            out[2 * N + k] = Vh
    else:
        noise = eta * eta * excess
        for k in range(N):
            lam = c[LAM + k]
            d = 1.0 - 2.0 * eta * lam + curv * eta * eta * lam * lam
            out[k] = d * x[k] + noise * lam
    return out


def loss(x, c, dims):
    """L = sum_{k<=N} lambda_k c_k (+ the constant tail sum_{k>N} k^(-a) when ``tail``)
    (docs/models.md section 5). Plain arithmetic only: random_features_ode shares it."""
    return c[TAIL] + coupling(x, c, dims[DIM_N])


# ---- finite-sample simulation of the learning process ----------------------------------------

@numba.njit(cache=True)
def _sgd_runs(rng, lam, D0, v0_mean, v0_std, sigma, etas, ms, betas, momentum, out_steps, n_rep):
    """Run averages over ``n_rep`` independent runs of D^2, D v_prev, v_prev^2 (n_out, 3, N) and of
    the loss sum_k lambda_k D_k^2 (n_out) after each step in ``out_steps``."""
    N = lam.shape[0]
    T = etas.shape[0]
    n_out = out_steps.shape[0]
    acc = np.zeros((n_out, 3, N))
    sq = np.sqrt(lam)
    loss_acc = np.zeros(n_out)
    D = np.empty(N)
    v = np.empty(N)
    g = np.empty(N)
    psi = np.empty(N)
    for _rep in range(n_rep):
        for k in range(N):
            D[k] = D0[k]
            v[k] = v0_mean[k] + v0_std[k] * rng.standard_normal() if momentum else 0.0
        j = 0
        for t in range(-1, T):
            if t >= 0:
                _sgd_step(rng, D, v, g, psi, sq, sigma, etas[t], ms[t], betas[t], momentum)
            while j < n_out and out_steps[j] <= t + 1:
                Lr = 0.0
                for k in range(N):
                    acc[j, 0, k] += D[k] * D[k]
                    acc[j, 1, k] += D[k] * v[k]
                    acc[j, 2, k] += v[k] * v[k]
                    Lr += lam[k] * D[k] * D[k]
                loss_acc[j] += Lr
                j += 1
    return acc / n_rep, loss_acc / n_rep


@numba.njit(cache=True)
def _sgd_step(rng, D, v, g, psi, sq, sigma, eta, m, beta, momentum):
    """One minibatch SGD step on D = w - w* in place (EMA momentum when ``momentum``)."""
    N = D.shape[0]
    for k in range(N):
        g[k] = 0.0
    for _i in range(m):
        r = -sigma * rng.standard_normal()   # residual psi.D - sigma zeta
        for k in range(N):
            psi[k] = sq[k] * rng.standard_normal()
            r += psi[k] * D[k]
        for k in range(N):
            g[k] += psi[k] * r
    if momentum:
        for k in range(N):
            v[k] = (1.0 - beta) * v[k] + beta * g[k] / m
            D[k] -= eta * v[k]
    else:
        for k in range(N):
            D[k] -= eta * g[k] / m


def sgd(p, x0, protocol, t_out, N, rng):
    """Real minibatch SGD of the linear regression, averaged over ``N`` independent runs.

    There is no large-dimension limit here: the recursion is exact for the expectation over
    data, so the finite-sample check averages independent runs. ``N`` is the number of runs
    averaged inside one call (``simulate_sgd``'s seeds then give independent averages; with
    ``N = 1`` each seed is a single run and "x" its squared errors). Each run works with
    D = w - w*: features psi = sqrt(lambda) * z, z ~ N(0, I), labels with noise sigma, batch
    ``m_t`` (must be a whole number), step ``eta_t``, optional EMA momentum with v_{-1} = 0.
    The initial D_k = -sqrt(x0_k) (w = 0 at the default state); with momentum an initial
    velocity with the given R, V is drawn as v = R/D + Gaussian noise of variance V - R^2/C.

    Returns "x" (len(t_out), n_x): the run average of D_k^2 (and D_k v_k(t-1), v_k(t-1)^2 with
    momentum) and "loss": the run average of sum_k lambda_k D_k^2 (+ tail).
    """
    n_modes = p["N"]
    momentum = bool(p.get("momentum", False))
    lam = spectrum(p)
    x0 = np.asarray(x0, dtype=float)
    T = int(round(float(t_out[-1])))
    U = np.asarray(protocol(np.arange(T, dtype=float)), dtype=float).reshape(T, -1)
    etas = np.ascontiguousarray(U[:, ETA])
    m_float = U[:, BATCH]
    ms = np.rint(m_float).astype(np.int64)
    if np.any(np.abs(m_float - ms) > 1e-9) or np.any(ms < 1):
        raise ValueError("sgd: the batch size m must be a whole number >= 1 at every step for a real SGD run")
    betas = np.ascontiguousarray(U[:, BETA]) if momentum else np.ones(T)
    C0 = x0[:n_modes]
    D0 = -np.sqrt(np.maximum(C0, 0.0))
    if momentum:
        R0, V0 = x0[n_modes:2 * n_modes], x0[2 * n_modes:]
        safe = np.where(C0 > 0, C0, 1.0)
        v_mean = np.where(C0 > 0, R0 / np.where(D0 != 0, D0, 1.0), 0.0)
        v_std = np.sqrt(np.maximum(V0 - np.where(C0 > 0, R0 * R0 / safe, 0.0), 0.0))
    else:
        v_mean = v_std = np.zeros(n_modes)
    out_steps = np.rint(np.asarray(t_out, dtype=float)).astype(np.int64)
    acc, L = _sgd_runs(rng, lam, D0, v_mean, v_std, float(p["sigma"]), etas, ms, betas, momentum,
                       out_steps, int(N))
    x = acc.reshape(len(out_steps), -1) if momentum else acc[:, 0, :].copy()
    return {"x": x, "loss": L + tail_value(p)}
