"""Soft committee machine trained by online SGD, with dropout [SS95, Goldt19, MM25].

Teacher y = sum_n v*_n g(nu_n) + sigma zeta, student yhat = sum_i v_i g(lambda_i),
g(z) = erf(z/sqrt 2), inputs N(0, I_N), one fresh sample per step, time
alpha = steps/N. Order parameters Q_ik = w_i.w_k/N, R_in = w_i.w*_n/N, T_nm
(fixed), and v_i when the second layer is learned. The ODEs are those of
docs/models.md section 1: Saad & Solla, Phys. Rev. E 52, 4225 (1995) [SS95]; Goldt
et al., NeurIPS 2019 [Goldt19]; and, with dropout keep probability r,
Mignacco & Mori, arXiv:2507.07907 [MM25]. The loss is the generalisation error
eg = (1/2) E[(p_test yhat - y)^2] on the noise-free teacher.

Controls: learning rate ``eta`` and dropout keep probability ``r``.
States: "Q[i,k]" (i <= k), "R[i,n]", and "v[i]" when ``learn_v``.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "alpha"
KIND = "ode"
LOSS_NAME = "eg"

PARAMETERS = {
    "K": Param(2, int, lo=1, hi=32, doc="student hidden units"),
    "M": Param(2, int, lo=1, hi=32, doc="teacher hidden units"),
    "sigma": Param(0.0, float, lo=0.0, doc="label-noise standard deviation"),
    "T": Param(None, "matrix", doc="teacher overlaps T_nm (M x M, default identity)"),
    "v_teacher": Param(None, "vector", doc="teacher second layer v* (default ones)"),
    "v": Param(None, "vector", doc="student second layer (default ones); initial value when learned"),
    "learn_v": Param(False, bool, doc="learn the second layer with rate eta_v"),
    "eta_v": Param(0.5, float, lo=0.0, doc="second-layer learning rate (used when learn_v)"),
    "wd": Param(0.0, float, lo=0.0, doc="weight decay"),
    "p_test": Param(1.0, float, lo=0.0, doc="test-time output scale (dropout rescaling)"),
    "q0": Param(0.5, float, lo=0.0, doc="default initial Q = q0 I"),
    "r0": Param(0.01, float, doc="default initial R_in = r0 if i == n else 0"),
}

# positions in the constant vector c: scalars first, then T, v*, v
SIGMA, ETA_V, WD, P_TEST, N_SCALARS = 0, 1, 2, 3, 4
# controls
ETA, KEEP = 0, 1


def _vectors(p):
    K, M = p["K"], p["M"]
    T = np.eye(M) if p["T"] is None else np.asarray(p["T"], dtype=float)
    vt = np.ones(M) if p["v_teacher"] is None else np.asarray(p["v_teacher"], dtype=float)
    v = np.ones(K) if p["v"] is None else np.asarray(p["v"], dtype=float)
    return T, vt, v


def check(p):
    """Cross-parameter validation: shapes of T, v*, v and T a valid covariance."""
    K, M = p["K"], p["M"]
    T, vt, v = _vectors(p)
    if T.shape != (M, M):
        raise ValueError(f"parameter 'T': expected an {M} x {M} matrix (M = {M}), got shape {T.shape}")
    if not np.allclose(T, T.T) or np.linalg.eigvalsh(T).min() < -1e-12:
        raise ValueError("parameter 'T': must be a symmetric positive semi-definite matrix")
    if vt.shape != (M,):
        raise ValueError(f"parameter 'v_teacher': expected {M} values (M = {M}), got {vt.size}")
    if v.shape != (K,):
        raise ValueError(f"parameter 'v': expected {K} values (K = {K}), got {v.size}")


def dims(p):
    return (p["K"], p["M"], int(p["learn_v"]))


def state_names(p):
    K, M = p["K"], p["M"]
    names = [f"Q[{i},{k}]" for i in range(K) for k in range(i, K)]
    names += [f"R[{i},{n}]" for i in range(K) for n in range(M)]
    if p["learn_v"]:
        names += [f"v[{i}]" for i in range(K)]
    return names


def controls(p):
    return {"eta": Control(0.5, 0.0, math.inf, "learning rate"),
            "r": Control(1.0, 0.0, 1.0, "dropout keep probability")}


def constants(p):
    T, vt, v = _vectors(p)
    return {"sigma": p["sigma"], "eta_v": p["eta_v"], "wd": p["wd"], "p_test": p["p_test"],
            "T": T, "v_teacher": vt, "v": v}


def initial_state(p, Q=None, R=None, v=None):
    """Default Q = q0 I, R_in = r0 [i == n], v from the parameters; any of them can be given."""
    K, M = p["K"], p["M"]
    T, _, v_default = _vectors(p)
    Q = p["q0"] * np.eye(K) if Q is None else np.asarray(Q, dtype=float)
    R = p["r0"] * np.eye(K, M) if R is None else np.asarray(R, dtype=float)
    if Q.shape != (K, K) or not np.allclose(Q, Q.T):
        raise ValueError(f"initial state 'Q': expected a symmetric {K} x {K} matrix, got shape {Q.shape}")
    if R.shape != (K, M):
        raise ValueError(f"initial state 'R': expected a {K} x {M} matrix, got shape {R.shape}")
    x = [Q[i, k] for i in range(K) for k in range(i, K)] + list(R.ravel())
    if p["learn_v"]:
        v = v_default if v is None else np.asarray(v, dtype=float).ravel()
        if v.shape != (K,):
            raise ValueError(f"initial state 'v': expected {K} values, got {v.size}")
        x += list(v)
    elif v is not None:
        raise ValueError("initial state 'v': the second layer is fixed (learn_v = false); set parameter 'v' instead")
    return np.array(x, dtype=float)


def overlaps(x, p):
    """The order parameters of state ``x`` as matrices: dict with Q (K x K), R (K x M), T, v."""
    K, M = p["K"], p["M"]
    T, _, v = _vectors(p)
    x = np.asarray(x, dtype=float)
    Q = np.zeros((K, K))
    for i in range(K):
        for k in range(i, K):
            Q[i, k] = Q[k, i] = x[_q(i, k, K)]
    R = x[K * (K + 1) // 2: K * (K + 1) // 2 + K * M].reshape(K, M).copy()
    if p["learn_v"]:
        v = x[K * (K + 1) // 2 + K * M:].copy()
    return {"Q": Q, "R": R, "T": T, "v": v}


METHODS = ("overlaps",)


def state_bounds(p):
    """Physical domain for the optimiser: self-overlaps are non-negative."""
    return {f"Q[{i},{i}]": (0.0, math.inf) for i in range(p["K"])}


def check_state(x, p):
    """The joint covariance [[Q, R], [R^T, T]] must be positive semi-definite."""
    o = overlaps(x, p)
    C = np.block([[o["Q"], o["R"]], [o["R"].T, o["T"]]])
    scale = max(1.0, np.abs(C).max())
    if np.linalg.eigvalsh(C).min() < -1e-10 * scale:
        raise ValueError("initial state: overlaps [[Q, R], [R^T, T]] are not a valid covariance "
                         "(not positive semi-definite)")


# ---- equations (one source: numba and CasADi) ------------------------------------------------

def _q(i, k, K):
    """Position of Q[i,k] (any order of i, k) in the state vector."""
    a = min(i, k)
    b = max(i, k)
    return a * K - (a * (a - 1)) // 2 + (b - a)


def _covariance(x, c, K, M):
    """Joint covariance of student and teacher fields: units 0..K-1 students, K..K+M-1 teachers."""
    C = ops.matrix(K + M, K + M)
    nq = K * (K + 1) // 2
    for i in range(K):
        for k in range(K):
            C[i, k] = x[_q(i, k, K)]
        for n in range(M):
            C[i, K + n] = x[nq + i * M + n]
            C[K + n, i] = x[nq + i * M + n]
    for n in range(M):
        for m in range(M):
            C[K + n, K + m] = c[N_SCALARS + n * M + m]
    return C


def _diag_plus_one(C, n):
    """1 + C[a, a] for every unit a (the variance of u_a plus that of the noise in g)."""
    d = ops.zeros(n)
    for a in range(n):
        d[a] = 1.0 + C[a, a]
    return d


def _unit_weights(x, c, K, M, learn_v):
    """omega[a]: -v_a for a student, v*_n for teacher K + n (the signs of the error y_hat - y)."""
    v = _student_v(x, c, K, M, learn_v)
    w = ops.zeros(K + M)
    for i in range(K):
        w[i] = -v[i]
    for n in range(M):
        w[K + n] = c[N_SCALARS + M * M + n]
    return w


def _keep_powers(r):
    """r ** n for n = 0..4: the dropout factor of a term with n distinct student units."""
    rp = ops.zeros(5)
    rp[0] = 1.0
    rp[1] = r
    rp[2] = r * r
    rp[3] = rp[2] * r
    rp[4] = rp[2] * rp[2]
    return rp


def _first_order_sums(C, D, omega, rp, K, M):
    """S[a, b] = sum_d rho omega_d I3(a, b, d) for students a and all units b [SS95].

    I3(a, b, d) = E[g'(u_a) u_b g(u_d)] = (2/pi) (C_bd - C_ab C_ad / D_a) / sqrt(D_a D_d - C_ad^2),
    D_a = 1 + C_aa; rho = r for a teacher d, r^(number of distinct students among a, d) for a student.
    The square root depends on (a, d) only and the sum over d is linear in C_b., so
    S[a, b] = A_a . C_b - (C_ab / D_a) A_a . C_a with A_ad = rho omega_d (2/pi) / sqrt(D_a D_d - C_ad^2).
    """
    n = K + M
    S = ops.matrix(K, n)
    A = ops.zeros(n)
    for a in range(K):
        for d in range(n):
            rho = rp[1] if (d >= K or d == a) else rp[2]
            A[d] = rho * omega[d] * (2.0 / ops.pi) / ops.safe_sqrt(D[a] * D[d] - C[a, d] * C[a, d])
        G = 0.0
        for d in range(n):
            G = G + A[d] * C[a, d]
        for b in range(n):
            acc = 0.0
            for d in range(n):
                acc = acc + A[d] * C[b, d]
            S[a, b] = acc - C[a, b] / D[a] * G
    return S


def _second_order_sum(C, D, omega, rp, i, k, K, M, sigma, al, be, s):
    """sum over unit pairs d <= e of pair * rho omega_d omega_e I4(i, k, d, e), plus the noise term [SS95, Goldt19].

    I4(a, b, d, e) = E[g'(u_a) g'(u_b) g(u_d) g(u_e)] = (4/pi^2) / sqrt(L4) asin(L0_de / sqrt(L1_d L1_e)) with
    L4 = D_a D_b - C_ab^2, L0_de = L4 C_de - C_bd al_e - C_ad be_e, al_e = D_a C_be - C_ab C_ae,
    be_e = D_b C_ae - C_ab C_be, and L1_d = L0_dd with C_dd -> D_d: per pair (a, b) one square root
    for L4 and one per unit for L1. rho = r^(distinct students among i, k, d, e); pair = 2 for d != e.
    The noise term is r^(distinct students among i, k) sigma^2 J2(i, k), J2 = (2/pi) / sqrt(L4) [Goldt19].
    ``al``, ``be`` and ``s`` are work vectors of length K + M.
    """
    n = K + M
    cab = C[i, k]
    L4 = D[i] * D[k] - cab * cab
    inv4 = 1.0 / ops.safe_sqrt(L4)
    for d in range(n):
        al[d] = D[i] * C[k, d] - cab * C[i, d]
        be[d] = D[k] * C[i, d] - cab * C[k, d]
        s[d] = 1.0 / ops.safe_sqrt(L4 * D[d] - C[k, d] * al[d] - C[i, d] * be[d])
    base = 1 if i == k else 2
    acc = 0.0
    for d in range(n):
        new_d = 1 if (d < K and d != i and d != k) else 0
        r_same = rp[base + new_d]              # e adds no new student
        r_new = rp[base + new_d + 1]           # e is a student not among i, k, d
        ckd = C[k, d]
        cid = C[i, d]
        sd = s[d]
        part = 0.0
        for e in range(d, n):
            pair = 1.0 if e == d else 2.0
            rho = r_new if (e < K and e != i and e != k and e != d) else r_same
            arg = (L4 * C[d, e] - ckd * al[e] - cid * be[e]) * sd * s[e]
            part = part + pair * rho * omega[e] * ops.safe_asin(arg)
        acc = acc + omega[d] * part
    return inv4 * ((4.0 / (ops.pi * ops.pi)) * acc + rp[base] * sigma * sigma * (2.0 / ops.pi))


def _student_v(x, c, K, M, learn_v):
    """Second-layer weights: from the state when learned, else the constants."""
    v = ops.zeros(K)
    off = K * (K + 1) // 2 + K * M if learn_v else N_SCALARS + M * M + M
    src = x if learn_v else c
    for i in range(K):
        v[i] = src[off + i]
    return v


def _inverse_sqrt_diag(D, n):
    """1 / sqrt(D_a) for every unit: I2 and the loss need asin(C_ab / sqrt(D_a D_b))."""
    s = ops.zeros(n)
    for a in range(n):
        s[a] = 1.0 / ops.safe_sqrt(D[a])
    return s


def rhs(x, u, c, dims):
    """d(Q, R, v)/dalpha with dropout keep probability r (docs/models.md section 1) [SS95, Goldt19, MM25].

    The integrals I3 and I4 are summed with their square roots shared between terms
    (:func:`_first_order_sums`, :func:`_second_order_sum`): K (K + M) square roots for the I3
    terms, K (K + 1) (K + M + 1) / 2 for the I4 terms, and one asin per I4 term.
    """
    K = dims[0]
    M = dims[1]
    learn_v = dims[2]
    n = K + M
    eta = u[ETA]
    rp = _keep_powers(u[KEEP])
    sigma = c[SIGMA]
    wd = c[WD]
    v = _student_v(x, c, K, M, learn_v)
    omega = _unit_weights(x, c, K, M, learn_v)
    C = _covariance(x, c, K, M)
    D = _diag_plus_one(C, n)
    nq = K * (K + 1) // 2
    out = ops.zeros(x.shape[0])
    S = _first_order_sums(C, D, omega, rp, K, M)
    # dR_in = eta v_i sum_d rho omega_d I3(i, K + n, d) - wd R_in
    for i in range(K):
        for m in range(M):
            out[nq + i * M + m] = eta * v[i] * S[i, K + m] - wd * x[nq + i * M + m]
    # dQ_ik = eta (v_i S_ik + v_k S_ki) + eta^2 v_i v_k (I4 terms + noise term) - 2 wd Q_ik
    al = ops.zeros(n)
    be = ops.zeros(n)
    s = ops.zeros(n)
    for i in range(K):
        for k in range(i, K):
            quad = _second_order_sum(C, D, omega, rp, i, k, K, M, sigma, al, be, s)
            out[_q(i, k, K)] = (eta * (v[i] * S[i, k] + v[k] * S[k, i]) + eta * eta * v[i] * v[k] * quad
                                - 2.0 * wd * x[_q(i, k, K)])
    # dv_i = eta_v sum_d rho omega_d I2(i, d), I2(a, b) = (2/pi) asin(C_ab / sqrt(D_a D_b)) [SS95]
    if learn_v:
        eta_v = c[ETA_V]
        isd = _inverse_sqrt_diag(D, n)
        for i in range(K):
            acc = 0.0
            for d in range(n):
                rho = rp[1] if (d >= K or d == i) else rp[2]
                acc = acc + rho * omega[d] * ops.safe_asin(C[i, d] * isd[i] * isd[d])
            out[nq + K * M + i] = eta_v * (2.0 / ops.pi) * acc
    return out


def loss(x, c, dims):
    """Generalisation error with test-time scale p_test (docs/models.md section 1) [SS95, MM25].

    eg = (1/pi) sum_ab w_a w_b asin(C_ab / sqrt(D_a D_b)) over students and teachers, with
    w = p_test v for students and -v* for teachers.
    """
    K = dims[0]
    M = dims[1]
    learn_v = dims[2]
    n = K + M
    pt = c[P_TEST]
    omega = _unit_weights(x, c, K, M, learn_v)
    C = _covariance(x, c, K, M)
    isd = _inverse_sqrt_diag(_diag_plus_one(C, n), n)
    w = ops.zeros(n)
    for a in range(n):
        w[a] = -pt * omega[a] if a < K else -omega[a]
    eg = 0.0
    for a in range(n):
        part = 0.0
        for b in range(a + 1, n):
            part = part + w[b] * ops.safe_asin(C[a, b] * isd[a] * isd[b])
        eg = eg + w[a] * (w[a] * ops.safe_asin(C[a, a] * isd[a] * isd[a]) + 2.0 * part)
    return eg / ops.pi


def random_state(p, rng):
    """Overlaps of random weights: rows of a random (K + M) x D matrix, teachers matched to T."""
    K, M = p["K"], p["M"]
    T, _, v = _vectors(p)
    W = rng.standard_normal((K, K + M)) * rng.uniform(0.2, 1.0)
    L = np.linalg.cholesky(T + 1e-12 * np.eye(M))
    Ws = np.hstack([np.zeros((M, K)), L])
    Q = W @ W.T
    R = W @ Ws.T
    x = initial_state(p, Q=Q, R=R, v=rng.uniform(0.5, 1.5, K) if p["learn_v"] else None)
    return x


# ---- finite-N online SGD (validation of the equations; see opt_protocols.sgd) ----------------

from opt_protocols.integrate import control_at as _control_at  # noqa: E402  (numba dispatcher)

#: Steps per numba call of the SGD loop (a fraction of a second at N of a few thousand).
SGD_CHUNK_STEPS = 20_000


@numba.njit(cache=True)
def _sgd_loop(A, B, v, vt, learn_v, eta_v, sigma, wd, tk, U0, U1, out_steps, k0, k1, rng):
    """Online SGD of the soft committee machine, in place on the weights, steps k0 .. k1 - 1.

    ``A`` (K, N) student and ``B`` (M, N) teacher first-layer weights, ``v`` the student
    second layer (updated when ``learn_v``), ``vt`` the teacher's. Step k uses the controls
    (eta, r) at alpha = k/N. Returns Q (n_out, K, K), R (n_out, K, M) and v (n_out, K)
    after ``out_steps[j]`` steps (all within [k0, k1]).
    """
    K = A.shape[0]
    N = A.shape[1]
    M = B.shape[0]
    n_out = out_steps.shape[0]
    Qs = np.empty((n_out, K, K))
    Rs = np.empty((n_out, K, M))
    Vs = np.empty((n_out, K))
    xs = np.empty(N)
    gl = np.empty(K)
    mask = np.empty(K)
    isq = 1.0 / math.sqrt(N)
    is2 = 1.0 / math.sqrt(2.0)
    gp0 = math.sqrt(2.0 / math.pi)
    decay = 1.0 - wd / N
    n_total = k1
    s = 0
    while s < tk.shape[0] - 2 and k0 / N >= tk[s + 1]:
        s += 1
    j = 0
    k = k0
    while True:
        # record the order parameters after k steps
        while j < n_out and out_steps[j] <= k:
            Qs[j] = (A @ A.T) / N
            Rs[j] = (A @ B.T) / N
            Vs[j] = v
            j += 1
        if k >= n_total:
            break
        t = k / N
        while s < tk.shape[0] - 2 and t >= tk[s + 1]:
            s += 1
        u = _control_at(t, s, tk, U0, U1)
        eta = u[ETA]
        r = u[KEEP]
        # fresh input x ~ N(0, I_N) and the pre-activations lambda = A x / sqrt(N), nu = B x / sqrt(N)
        for a in range(N):
            xs[a] = rng.standard_normal()
        lam = (A @ xs) * isq
        nu = (B @ xs) * isq
        # forward pass with a dropout mask (keep probability r) on the student units
        yhat = 0.0
        for i in range(K):
            gl[i] = math.erf(lam[i] * is2)
            mask[i] = 1.0 if (r >= 1.0 or rng.random() < r) else 0.0
            yhat += mask[i] * v[i] * gl[i]
        y = 0.0
        for n in range(M):
            y += vt[n] * math.erf(nu[n] * is2)
        if sigma > 0.0:
            y += sigma * rng.standard_normal()
        delta = yhat - y
        # w_i <- w_i (1 - wd/N) - eta Delta m_i v_i g'(lambda_i) x / sqrt(N)
        for i in range(K):
            ci = -eta * delta * mask[i] * v[i] * gp0 * math.exp(-0.5 * lam[i] * lam[i]) * isq
            if decay != 1.0:
                for a in range(N):
                    A[i, a] = A[i, a] * decay + ci * xs[a]
            elif ci != 0.0:
                for a in range(N):
                    A[i, a] += ci * xs[a]
        # v_i <- v_i - (eta_v/N) Delta m_i g(lambda_i)
        if learn_v:
            for i in range(K):
                v[i] -= (eta_v / N) * delta * mask[i] * gl[i]
        k += 1
    return Qs, Rs, Vs


def sgd(p, x0, protocol, t_out, N, rng):
    """Finite-N online SGD of the soft committee machine (docs/models.md section 1).

    Teacher and student weights are built with order parameters exactly ``x0``: the
    K + M rows of sqrt(N) times a random orthonormal frame (QR of a Gaussian matrix) are
    mixed by the symmetric square root of the joint covariance [[Q, R], [R^T, T]], which
    may be singular (e.g. Q = R = 0). Then alpha N steps, each on a fresh input x ~ N(0, I_N),
    with label noise sigma, a Bernoulli(r) dropout mask per student unit in the forward pass
    and the gradient (no rescaling), the learned second layer (rate eta_v/N) when ``learn_v``
    and weight decay w <- w (1 - wd/N). Controls (eta, r) at alpha = k/N for step k.
    Returns ``{"x": (len(t_out), n_x)}``, the order parameters measured from the weights.
    """
    K, M = p["K"], p["M"]
    N = int(N)
    if N < K + M:
        raise ValueError(f"N = {N}: the finite-N simulation needs N >= K + M = {K + M}")
    o = overlaps(x0, p)
    C = np.block([[o["Q"], o["R"]], [o["R"].T, o["T"]]])
    w, U = np.linalg.eigh(0.5 * (C + C.T))
    S = (U * np.sqrt(np.clip(w, 0.0, None))) @ U.T
    frame, _ = np.linalg.qr(rng.standard_normal((N, K + M)))   # N x (K + M), orthonormal columns
    weights = math.sqrt(N) * (S @ frame.T)                      # rows: students then teachers
    A = np.ascontiguousarray(weights[:K])
    B = np.ascontiguousarray(weights[K:])
    _, vt, _ = _vectors(p)
    v = np.array(o["v"], dtype=float)          # the state's v when learned, else the parameter
    t_out = np.asarray(t_out, dtype=float).ravel()
    out_steps = np.round(t_out * N).astype(np.int64)
    args = (np.ascontiguousarray(vt, dtype=float), bool(p["learn_v"]), float(p["eta_v"]), float(p["sigma"]),
            float(p["wd"]), np.ascontiguousarray(protocol.tk, dtype=float),
            np.ascontiguousarray(protocol.U0, dtype=float), np.ascontiguousarray(protocol.U1, dtype=float))
    # in chunks of SGD_CHUNK_STEPS, so that Ctrl-C (seen between numba calls) stops a long run promptly;
    # the weights and the generator carry over, so the result is the same as one call
    parts = []
    k0, n_total = 0, int(out_steps[-1]) if out_steps.size else 0
    while True:
        k1 = min(n_total, k0 + SGD_CHUNK_STEPS)
        sel = out_steps[(out_steps <= k1) & ((out_steps > k0) if k0 > 0 else (out_steps >= 0))]
        parts.append(_sgd_loop(A, B, v, *args, np.ascontiguousarray(sel), k0, k1, rng))
        if k1 >= n_total:
            break
        k0 = k1
    Qs, Rs, Vs = (np.concatenate([q[i] for q in parts]) for i in range(3))
    X = np.array([initial_state(p, Q=Qs[j], R=Rs[j], v=Vs[j] if p["learn_v"] else None)
                  for j in range(len(t_out))])
    return {"x": X}
