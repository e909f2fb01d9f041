"""The random-feature recursion as a discrete Volterra equation, and its first-order intrinsic-time
form, the functional scaling law [FSL25] (docs/models.md, section 6).

With d_k(eta, m) = 1 - 2 eta lambda_k + ((m+1)/m) eta^2 lambda_k^2, the exact recursion of
:mod:`opt_protocols.models.random_features` (docs/models.md section 5) unrolls into

    L(t) = F(t) + sum_{s<t} K(t, s) (L(s) + sigma^2),
    F(t)    = sum_k lambda_k c_k(0) prod_{r<t} d_k(eta_r, m_r),
    K(t, s) = (eta_s^2/m_s) sum_k lambda_k^2 prod_{s<r<t} d_k(eta_r, m_r),

where L(t) is the loss after t steps (step r uses eta_r, m_r). :func:`volterra_loss` evaluates
this sum directly, O(T^2 N) work, and never forms the per-mode state: it is an independent check
of the recursion, equal to it up to rounding.

The first-order form drops the O(eta^2 lambda^2) terms of d_k (prod d_k ~ exp(-2 lambda_k
(tau(t) - tau(s+1)))) and replaces L(s) in the noise term by its noiseless part:

    L(t) ~ e_N(tau(t)) + sum_{s<t} K_N(tau(t) - tau(s+1)) (e_N(tau(s)) + sigma^2) eta_s^2/m_s,
    e_N(tau) = sum_k lambda_k (w*_k)^2 exp(-2 lambda_k tau),  K_N(tau) = sum_k lambda_k^2 exp(-2 lambda_k tau),

with the intrinsic time tau(t) = sum_{r<t} eta_r (the learning rate summed over the steps taken;
docs/models.md writes the same sums with tau(t) = sum_{s<=t} eta_s and s <= t, i.e. with the loss
index shifted by one step). :func:`intrinsic_time_loss` evaluates it in O(T N) with one
exponentially decaying accumulator per mode.
"""
from __future__ import annotations

import numba
import numpy as np

from ..model import Model
from ..schedules import Schedule


def rf_arrays(model: Model) -> tuple[np.ndarray, np.ndarray, float]:
    """(lambda, c(0), sigma) of a random-feature model (:mod:`opt_protocols.models.random_features`)
    without momentum; with ``tail`` the tail is a constant added to the loss and is left out here."""
    if model.module.__name__.rsplit(".", 1)[-1] not in ("random_features", "random_features_ode") \
            or model.params.get("momentum"):
        raise ValueError(f"model {model.name!r}: expected the random-feature model without momentum")
    c = model.constants.values
    return np.asarray(c["lam"], dtype=float), model.initial_state(), float(c["sigma"])


def per_step(values, steps: int, name: str) -> np.ndarray:
    """A per-step array of length ``steps`` from a number, an array or a schedule (step t: value(t, T))."""
    if isinstance(values, Schedule):
        return np.asarray(values(np.arange(steps, dtype=float), steps), dtype=float)
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        return np.full(steps, float(arr))
    if arr.shape != (steps,):
        raise ValueError(f"{name}: expected a number or {steps} per-step values, got shape {arr.shape}")
    return arr


def _inputs(lam, c0, sigma, etas, ms):
    lam = np.ascontiguousarray(lam, dtype=float)
    c0 = np.ascontiguousarray(c0, dtype=float)
    etas = np.ascontiguousarray(etas, dtype=float)
    T = etas.size
    ms = np.ascontiguousarray(per_step(1.0 if ms is None else ms, T, "ms"), dtype=float)
    if lam.shape != c0.shape:
        raise ValueError(f"c0: expected one value per mode ({lam.size}), got {c0.size}")
    if np.any(ms <= 0):
        raise ValueError("ms: batch sizes must be positive")
    return lam, c0, float(sigma), etas, ms


def volterra_loss(lam: np.ndarray, c0: np.ndarray, sigma: float, etas: np.ndarray,
                  ms: np.ndarray | float | None = None) -> np.ndarray:
    """L(t), t = 0..T, from the discrete Volterra equation (module docstring), by direct summation."""
    from ..models.random_features import mode_contraction
    lam, c0, sigma, etas, ms = _inputs(lam, c0, sigma, etas, ms)
    d = np.ascontiguousarray(mode_contraction(lam[None, :], etas[:, None], ms[:, None]))   # d[r, k] = d_k(eta_r, m_r)
    return _volterra(lam, c0, sigma, etas, ms, d)


@numba.njit(cache=True)
def _volterra(lam, c0, sigma, etas, ms, d):
    T = etas.shape[0]
    N = lam.shape[0]
    lam2 = lam * lam
    L = np.empty(T + 1)
    acc = np.empty(N)
    s2 = sigma * sigma
    for t in range(T + 1):
        for k in range(N):
            acc[k] = 1.0                    # prod_{s<r<t} d_k(r), starting from s = t - 1
        total = 0.0
        for s in range(t - 1, -1, -1):
            kts = 0.0
            for k in range(N):
                kts += lam2[k] * acc[k]
                acc[k] *= d[s, k]
            total += etas[s] * etas[s] / ms[s] * kts * (L[s] + s2)
        F = 0.0                             # acc is now prod_{r<t} d_k(r)
        for k in range(N):
            F += lam[k] * c0[k] * acc[k]
        L[t] = F + total
    return L


def intrinsic_time_loss(lam: np.ndarray, c0: np.ndarray, sigma: float, etas: np.ndarray,
                        ms: np.ndarray | float | None = None) -> np.ndarray:
    """L(t), t = 0..T, of the first-order intrinsic-time form (module docstring), O(T N)."""
    lam, c0, sigma, etas, ms = _inputs(lam, c0, sigma, etas, ms)
    return _intrinsic(lam, c0, sigma, etas, ms)


@numba.njit(cache=True)
def _intrinsic(lam, c0, sigma, etas, ms):
    T = etas.shape[0]
    N = lam.shape[0]
    # A_k = sum_{s<t} exp(-2 lambda_k (tau(t) - tau(s+1))) g_s,  g_s = eta_s^2 (e_N(tau(s)) + sigma^2)/m_s
    A = np.zeros(N)
    L = np.empty(T + 1)
    tau = 0.0
    s2 = sigma * sigma
    for t in range(T + 1):
        e = 0.0
        v = 0.0
        for k in range(N):
            e += lam[k] * c0[k] * np.exp(-2.0 * lam[k] * tau)
            v += lam[k] * lam[k] * A[k]
        L[t] = e + v
        if t == T:
            break
        g = etas[t] * etas[t] * (e + s2) / ms[t]
        for k in range(N):
            A[k] = np.exp(-2.0 * lam[k] * etas[t]) * A[k] + g
        tau += etas[t]
    return L
