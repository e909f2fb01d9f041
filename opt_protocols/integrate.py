"""Numba integrators for model dynamics under a tabulated protocol.

The protocol is tabulated on knots ``tk`` (n_seg + 1 increasing times): on
segment s the control vector varies linearly from ``U0[s]`` to ``U1[s]``
(``U0 == U1`` for piecewise-constant controls). Integration restarts at every
knot, so control discontinuities never fall inside a step, and it stops exactly
at every output time.

* ``rk4``: classical fixed-step Runge-Kutta, order 4.
* ``dopri5``: Dormand-Prince 5(4) embedded pair with local extrapolation and
  the standard step-size controller (Hairer, Norsett & Wanner, Solving ODEs I,
  section II.4), error norm RMS(err / (atol + rtol max(|x|, |x_new|))). With
  ``loss_rtol > 0`` the step is also accepted only if the loss of the two
  embedded solutions agrees to ``loss_atol + loss_rtol |loss|``: losses are small
  differences of O(1) order parameters (eg ~ Q - 2R + T), so a state tolerance
  alone leaves a loss of 1e-9 with an error of the order of atol.
* ``iterate_map``: exact stepping of a discrete map, one call per SGD step.

All functions have explicit signatures and are cached on disk.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types

from .backends.numba import LOSS_TYPE, RHS_TYPE

f8 = types.float64
i8 = types.int64
v1 = types.float64[::1]
m2 = types.float64[:, ::1]
iv = types.int64[::1]

OK, MAX_STEPS, NOT_FINITE = 0, 1, 2
STATUS_TEXT = {OK: "ok", MAX_STEPS: "maximum number of steps reached", NOT_FINITE: "state became non-finite"}

# Dormand-Prince 5(4) tableau
_C2, _C3, _C4, _C5 = 1 / 5, 3 / 10, 4 / 5, 8 / 9
_A21 = 1 / 5
_A31, _A32 = 3 / 40, 9 / 40
_A41, _A42, _A43 = 44 / 45, -56 / 15, 32 / 9
_A51, _A52, _A53, _A54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
_A61, _A62, _A63, _A64, _A65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
_B1, _B3, _B4, _B5, _B6 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
# error coefficients b - b_hat
_E1, _E3, _E4, _E5, _E6, _E7 = 71 / 57600, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40


@numba.njit(v1(f8, i8, v1, m2, m2), cache=True)
def control_at(t, s, tk, U0, U1):
    """Control vector at time t on segment s."""
    width = tk[s + 1] - tk[s]
    theta = (t - tk[s]) / width if width > 0 else 0.0
    return U0[s] + theta * (U1[s] - U0[s])


@numba.njit(types.Tuple((v1, i8))(RHS_TYPE, v1, v1, iv, f8, f8, f8, i8, v1, m2, m2), cache=True)
def _rk4_span(f, x, c, dims, a, b, dt, s, tk, U0, U1):
    n = max(1, int(np.ceil((b - a) / dt - 1e-9)))
    h = (b - a) / n
    for k in range(n):
        t = a + k * h
        ua = control_at(t, s, tk, U0, U1)
        um = control_at(t + 0.5 * h, s, tk, U0, U1)
        ub = control_at(t + h, s, tk, U0, U1)
        k1 = f(x, ua, c, dims)
        k2 = f(x + 0.5 * h * k1, um, c, dims)
        k3 = f(x + 0.5 * h * k2, um, c, dims)
        k4 = f(x + h * k3, ub, c, dims)
        x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return x, n


@numba.njit(types.Tuple((v1, i8, i8, f8))(RHS_TYPE, LOSS_TYPE, v1, v1, iv, f8, f8, f8, f8, f8, f8, f8, i8, v1, m2,
                                          m2, i8), cache=True)
def _dopri5_span(f, g, x, c, dims, a, b, h, rtol, atol, lrtol, latol, s, tk, U0, U1, max_steps):
    """Integrate from a to b; returns (x(b), steps taken, status, proposed size of the next step)."""
    t = a
    n_steps = 0
    nx = x.shape[0]
    k1 = f(x, control_at(t, s, tk, U0, U1), c, dims)
    if h <= 0.0:
        # initial step (Hairer et al., II.4)
        sc = atol + rtol * np.abs(x)
        d0 = np.sqrt(np.mean((x / sc) ** 2))
        d1 = np.sqrt(np.mean((k1 / sc) ** 2))
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, b - a)
        x1 = x + h0 * k1
        k2 = f(x1, control_at(t + h0, s, tk, U0, U1), c, dims)
        d2 = np.sqrt(np.mean(((k2 - k1) / sc) ** 2)) / h0
        dm = max(d1, d2)
        h1 = max(1e-6, h0 * 1e-3) if dm <= 1e-15 else (0.01 / dm) ** 0.2
        h = min(100.0 * h0, h1)
    while t < b:
        if n_steps >= max_steps:
            return x, n_steps, MAX_STEPS, h
        final = False
        h_proposed = h
        if t + h >= b or (b - t - h) < 1e-12 * max(1.0, abs(b)):
            h = b - t   # shortened to land on the stop; the next span starts from the proposal
            final = True
        k2 = f(x + h * (_A21 * k1), control_at(t + _C2 * h, s, tk, U0, U1), c, dims)
        k3 = f(x + h * (_A31 * k1 + _A32 * k2), control_at(t + _C3 * h, s, tk, U0, U1), c, dims)
        k4 = f(x + h * (_A41 * k1 + _A42 * k2 + _A43 * k3), control_at(t + _C4 * h, s, tk, U0, U1), c, dims)
        k5 = f(x + h * (_A51 * k1 + _A52 * k2 + _A53 * k3 + _A54 * k4),
               control_at(t + _C5 * h, s, tk, U0, U1), c, dims)
        k6 = f(x + h * (_A61 * k1 + _A62 * k2 + _A63 * k3 + _A64 * k4 + _A65 * k5),
               control_at(t + h, s, tk, U0, U1), c, dims)
        xn = x + h * (_B1 * k1 + _B3 * k3 + _B4 * k4 + _B5 * k5 + _B6 * k6)
        k7 = f(xn, control_at(t + h, s, tk, U0, U1), c, dims)
        err = h * (_E1 * k1 + _E3 * k3 + _E4 * k4 + _E5 * k5 + _E6 * k6 + _E7 * k7)
        en = 0.0
        for i in range(nx):
            sc = atol + rtol * max(abs(x[i]), abs(xn[i]))
            en += (err[i] / sc) ** 2
        en = np.sqrt(en / nx)
        if lrtol > 0.0:   # the loss of the 5th- and 4th-order solutions must agree too
            l5 = g(xn, c, dims)
            l4 = g(xn - err, c, dims)
            el = abs(l5 - l4) / (latol + lrtol * abs(l5))
            if el > en or not np.isfinite(el):
                en = el
        n_steps += 1
        if not np.isfinite(en):
            if h < 1e-14 * max(1.0, abs(t)):
                return x, n_steps, NOT_FINITE, h
            h = 0.1 * h
            continue
        if en <= 1.0:
            t = b if final else t + h
            x = xn
            k1 = k7
            fac = 5.0 if en == 0.0 else min(5.0, max(0.2, 0.9 * en ** -0.2))
            h = max(h * fac, h_proposed) if final else h * fac
        else:
            h = h * max(0.2, 0.9 * en ** -0.2)
    return x, n_steps, OK, h


@numba.njit(types.Tuple((m2, i8, i8))(RHS_TYPE, LOSS_TYPE, v1, v1, iv, v1, m2, m2, v1, i8, f8, f8, f8, f8, f8, i8),
            cache=True)
def integrate(f, g, x0, c, dims, tk, U0, U1, t_out, method, dt, rtol, atol, lrtol, latol, max_steps):
    """Integrate from tk[0] and return the states at the times ``t_out`` (sorted, within [tk[0], tk[-1]]).

    method 0: rk4 with step <= dt; method 1: dopri5 with (rtol, atol) on the states and, if
    lrtol > 0, (lrtol, latol) on the loss ``g``.
    Returns (X (len(t_out), n_x), total steps, status).
    """
    n_out = t_out.shape[0]
    X = np.empty((n_out, x0.shape[0]))
    x = x0.copy()
    t = tk[0]
    j = 0
    while j < n_out and t_out[j] <= t:
        X[j] = x
        j += 1
    total = 0
    h = 0.0
    n_seg = tk.shape[0] - 1
    for s in range(n_seg):
        while t < tk[s + 1]:
            b = tk[s + 1]
            if j < n_out and t_out[j] < b:
                b = t_out[j]
            if b > t:
                if method == 0:
                    x, n = _rk4_span(f, x, c, dims, t, b, dt, s, tk, U0, U1)
                    total += n
                    for i in range(x.shape[0]):
                        if not np.isfinite(x[i]):
                            X[j:] = np.nan
                            return X, total, NOT_FINITE
                else:
                    x, n, status, h = _dopri5_span(f, g, x, c, dims, t, b, h, rtol, atol, lrtol, latol, s, tk,
                                                   U0, U1, max_steps - total)
                    total += n
                    if status != OK:
                        X[j:] = np.nan
                        return X, total, status
            t = b
            while j < n_out and t_out[j] <= t:
                X[j] = x
                j += 1
    return X, total, OK


@numba.njit(types.Tuple((m2, i8))(RHS_TYPE, v1, v1, iv, v1, m2, m2, i8, iv), cache=True)
def iterate_map(f, x0, c, dims, tk, U0, U1, n_steps, out_steps):
    """Apply a map ``n_steps`` times; step k uses the control at time k. Returns states after ``out_steps``."""
    X = np.empty((out_steps.shape[0], x0.shape[0]))
    x = x0.copy()
    j = 0
    s = 0
    while j < out_steps.shape[0] and out_steps[j] <= 0:
        X[j] = x
        j += 1
    for k in range(n_steps):
        while s < tk.shape[0] - 2 and k >= tk[s + 1]:
            s += 1
        x = f(x, control_at(float(k), s, tk, U0, U1), c, dims)
        for i in range(x.shape[0]):
            if not np.isfinite(x[i]):
                X[j:] = np.nan
                return X, NOT_FINITE
        while j < out_steps.shape[0] and out_steps[j] <= k + 1:
            X[j] = x
            j += 1
    return X, OK


@numba.njit(v1(LOSS_TYPE, m2, v1, iv), cache=True)
def loss_along(loss, X, c, dims):
    """The loss at every row of X (NaN rows give NaN)."""
    out = np.empty(X.shape[0])
    for j in range(X.shape[0]):
        if np.isfinite(X[j, 0]):
            out[j] = loss(X[j].copy(), c, dims)
        else:
            out[j] = np.nan
    return out
