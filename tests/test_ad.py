"""The self-checking adjoint (opt_protocols/ad): the accepted language, the self-check, the fallback.

Each construct of the accepted language is tested on a small map whose step uses it: the derived
kernel must be the one used, its VJPs must agree with CasADi's reverse mode of the traced step
and loss (check_kernel) and the gradient of a T-step objective with the recursion unrolled in
CasADi, both to 1e-10 relative (the derived code and CasADi's evaluate the same expressions in
different orders: rounding differences are ~1e-15).

The model files are written to a fixed temporary folder so that numba's disk cache is reused
between runs (the first run compiles each model's kernel for a few seconds).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import casadi as ca
import numpy as np
import pytest

import opt_protocols as op
from opt_protocols import ad
from opt_protocols.ad import kernel as adk
from opt_protocols.ad import transform

RTOL = 1e-10

HEADER = '''
import math
import numpy as np
from opt_protocols import ops
from opt_protocols.spec import Control, Param

TIME = "t"
KIND = "map"
PARAMETERS = {"n": Param(4, int, lo=1)}
K0 = 1


def dims(p):
    return (p["n"],)


def state_names(p):
    return [f"x[{i}]" for i in range(p["n"])]


def controls(p):
    return {"eta": Control(0.2, 0.0, 1.0, "step"), "g": Control(0.5, 0.0, 2.0, "gain")}


def constants(p):
    return {"w": np.linspace(0.5, 1.5, p["n"])}


def initial_state(p):
    return np.linspace(0.2, 0.9, p["n"])


def random_state(p, rng):
    return rng.uniform(0.1, 1.0, p["n"])


def loss(x, c, dims):
    n = dims[0]
    L = 0.0
    for i in range(n):
        L = L + c[i] * x[i] * x[i]
    return L / n
'''


def _model_file(name: str, body: str) -> Path:
    path = Path(tempfile.gettempdir()) / "opt_protocols_tests" / f"ad_{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER + body
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _unrolled(model, U):
    """J and dJ/dU of the final loss with the recursion unrolled in CasADi (independent of ad)."""
    T = U.shape[0]
    Us = ca.SX.sym("U", T, model.n_u)
    x = ca.DM(model.initial_state())
    for t in range(T):
        x = model.casadi.rhs(x, Us[t, :].T, model.c)
    J = model.casadi.loss(x, model.c)
    Jv, G = ca.Function("f", [Us], [J, ca.gradient(J, Us)])(U)
    return float(Jv), np.array(G)


def _assert_exact(model, T=6):
    k = ad.get_kernel(model)
    assert k.kind == "source", k.reason
    assert k.check["error"] <= RTOL
    assert ad.check_kernel(model, n=5, seed=3) <= RTOL
    U = np.column_stack([np.linspace(0.1, 0.4, T), np.linspace(1.2, 0.3, T)])
    J, G = ad.MapAdjoint(model, T).value_and_grad(U)
    J_ref, G_ref = _unrolled(model, U)
    assert J == pytest.approx(J_ref, rel=1e-13)
    np.testing.assert_allclose(G, G_ref, rtol=RTOL, atol=RTOL * np.abs(G_ref).max())


def _load(name: str, body: str, **params):
    return op.load_model(str(_model_file(name, body)), **params)


# ---- one test per construct ---------------------------------------------------------------------

def test_tuple_unpacking():
    _assert_exact(_load("tuple", '''
def step(x, u, c, dims):
    eta, g = u[0], u[1]
    a, b = x[0], x[1]
    a, b = b, a * g          # swap-like: all values are read before any name is set
    out = ops.zeros(x.shape[0])
    out[0] = a - eta * b
    out[1] = b + eta * a * a
    for i in range(2, dims[0]):
        p, q = x[i], c[i]
        out[i] = p - eta * q * p
    return out
'''))


def test_scalar_reassignment():
    _assert_exact(_load("reassign", '''
def step(x, u, c, dims):
    eta = u[0]
    y = x[0] * eta
    y = y * y + u[1]          # re-assigned from its own value
    y = ops.sin(y)            # and again
    s = 0.0
    for i in range(dims[0]):
        s = s + x[i]
    z = s * 2.0
    s = s * s + z             # the accumulator re-assigned after its loop
    out = ops.zeros(x.shape[0])
    for i in range(dims[0]):
        t = x[i] * c[i]
        t = t * t - eta * t   # re-assigned inside the loop body
        t *= 0.5
        out[i] = x[i] - eta * (t + y * s * 0.01)
    return out
'''))


def test_alias_of_arrays():
    """``z = x`` then ``z[k]``: today's reference (the construct that used to be accepted and wrong)."""
    _assert_exact(_load("alias", '''
def step(x, u, c, dims):
    z = x
    w = c
    e = u
    out = ops.zeros(x.shape[0])
    o = out
    for k in range(dims[0]):
        o[k] = z[k] - e[0] * w[k] * z[k] * z[k] + e[1] * 0.01
    return out
'''))


def test_helper_functions_inlined():
    _assert_exact(_load("helpers", '''
def shrink(v, eta, scale=0.1):
    return v * (1.0 - eta) + scale * eta * eta * ops.sin(v)


def weighted_sum(x, c, n):
    s = 0.0
    for i in range(n):
        s = s + c[i] * x[i]
    return s


def pair(a, b):
    return a * b, a + b


def update(x, u, c, n):
    L = weighted_sum(x, c, n)
    out = ops.zeros(n)
    for k in range(n):
        prod, total = pair(x[k], u[1])
        out[k] = shrink(x[k], u[0]) + 0.01 * L * prod + shrink(total, u[0], scale=0.2) * 0.001
    return out


def step(x, u, c, dims):
    return update(x, u, c, dims[0])
'''))


def test_conditional_expressions():
    _assert_exact(_load("ifexp", '''
def step(x, u, c, dims):
    n = dims[0]
    eta = u[0]
    out = ops.zeros(n)
    for i in range(n):
        left = x[i - 1] if i > 0 else x[n - 1]        # passive condition
        r = ops.if_else(x[i] > 0.5, x[i] ** 2, ops.fmax(x[i], 0.3))   # active condition
        scale = 2.0 if n > 10 else u[1]
        out[i] = x[i] - eta * (x[i] - left) * scale + 0.01 * r * (1.0 if i % 2 == 0 else eta)
    return out
'''))


def test_values_set_in_a_loop_read_after_it():
    _assert_exact(_load("loopexit", '''
def step(x, u, c, dims):
    n = dims[0]
    eta = u[0]
    for i in range(n):
        last = x[i] * eta + c[i]          # read after the loop: the value of its last iteration
    for i in range(n):
        for j in range(i + 1):
            inner = x[j] * u[1]           # set in the inner loop, read after the outer loop
        row = inner * x[i]
    out = ops.zeros(n)
    for i in range(n):
        out[i] = x[i] - eta * x[i] * last * 0.1 + 0.01 * row * inner
    return out
'''))


def test_accumulations_and_nested_loops():
    """Loops, accumulators (v = v + e and +=, read after their loops), ops functions, a module constant."""
    _assert_exact(_load("synthetic", '''
def step(x, u, c, dims):
    n = dims[0]
    eta = u[0]
    g = u[1]
    s = 0.0
    for i in range(n):
        s = s + c[i] * ops.sqrt(1.0 + x[i] * x[i])
    s2 = 0.0
    for i in range(n):
        s2 += ops.exp(-x[i]) * eta
    out = ops.zeros(n)
    for i in range(n):
        acc = 0.0
        for j in range(K0, n):
            acc = acc + ops.tanh(x[j] * g) / (1.0 + j)
        out[i] = x[i] - eta * (s * x[i] - acc) + g ** 1.5 * ops.safe_asin(0.3 * x[i]) - s2 * 0.01
        out[i] += ops.erf(x[i] * eta) * 0.1
    return out
''', n=5))


# ---- the fallback and the self-check -------------------------------------------------------------

_RECURRENCE = '''
def step(x, u, c, dims):
    n = dims[0]
    s = 0.0
    for i in range(n):
        s = s * 0.5 + x[i] * u[0]
    out = ops.zeros(n)
    for i in range(n):
        out[i] = x[i] - u[0] * x[i] * c[i] + 0.01 * s * u[1]
    return out
'''


def test_unsupported_construct_falls_back_with_a_warning():
    """A value carried from one loop iteration to the next (needs a tape): the CasADi kernel is used,
    with a warning naming the construct and its file:line; its gradient is exact."""
    path = _model_file("recurrence", _RECURRENCE)
    line = (HEADER + _RECURRENCE).splitlines().index("        s = s * 0.5 + x[i] * u[0]") + 1
    model = op.load_model(str(path))
    with pytest.raises(ad.UnsupportedStep, match="carried") as err:
        ad.derive_vjp(model.module.step, (0, 1), "v")
    assert err.value.where == f"{path}:{line}"
    with pytest.warns(ad.AdjointKernelWarning, match=f"{path}:{line}.*CasADi"):
        k = ad.get_kernel(model)
    assert k.kind == "casadi" and f"{path}:{line}" in k.reason
    T = 7
    U = np.column_stack([np.linspace(0.1, 0.4, T), np.linspace(1.2, 0.3, T)])
    J, G = ad.MapAdjoint(model, T).value_and_grad(U)
    J_ref, G_ref = _unrolled(model, U)
    assert J == pytest.approx(J_ref, rel=1e-13)
    np.testing.assert_allclose(G, G_ref, rtol=RTOL, atol=RTOL * np.abs(G_ref).max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ad.AdjointKernelWarning)
        sol = op.solve(model, t_final=T, controls={"eta": (0.0, 1.0)}, method=op.Adjoint(intervals=T))
    assert sol.stats["kernel"] == "casadi" and f"{path}:{line}" in sol.stats["kernel_note"]
    assert sol.status == "optimal" and sol.verification["ok"]


def test_wrong_derived_kernel_is_detected_and_not_used(monkeypatch, tmp_path):
    """A deliberately wrong derivative rule (d sin = sin): the self-check sees the mismatch, the
    derived kernel is not used, and the warning says so."""
    model = _load("reassign_wrong", _SIN_STEP)
    monkeypatch.setenv("OPT_PROTOCOLS_CACHE", str(tmp_path))
    for cache in ("_GENERATED", "_KERNELS", "_CHECKS"):
        monkeypatch.setattr(adk, cache, {})
    monkeypatch.setitem(transform._UNARY_DERIV, "sin", lambda a: f"ops.sin({a})")
    assert ad.check_kernel(model) > 1e-3
    with pytest.warns(ad.AdjointKernelWarning, match="self-check"):
        k = ad.get_kernel(model)
    assert k.kind == "casadi" and "self-check" in k.reason
    checks = list(tmp_path.glob("adjoint/*.checks.json"))
    assert len(checks) == 1 and '"error"' in checks[0].read_text()
    with pytest.raises(ValueError, match="self-check"):
        ad.get_kernel(model, "source")


_SIN_STEP = '''
def step(x, u, c, dims):
    out = ops.zeros(x.shape[0])
    for i in range(dims[0]):
        out[i] = x[i] - u[0] * ops.sin(x[i] * u[1]) * c[i]
    return out
'''


def test_self_check_is_cached_next_to_the_kernel(monkeypatch):
    model = _load("sin", _SIN_STEP)
    k = ad.get_kernel(model)
    assert k.kind == "source" and k.check["error"] <= RTOL
    _, _, path = adk._GENERATED[(adk._module_key(model.module), "source")]
    assert path.with_suffix(".checks.json").exists()
    # a new process: nothing in memory, the record on disk is used (the check is not run again)
    for cache in ("_KERNELS", "_CHECKS"):
        monkeypatch.setattr(adk, cache, {})
    monkeypatch.setattr(adk, "_compare", lambda *a: pytest.fail("the self-check ran again"))
    k2 = ad.get_kernel(model)
    assert k2.kind == "source" and k2.check["cached"] and k2.check["error"] == k.check["error"]


# ---- the optimiser with a loss that reaches zero --------------------------------------------------

def test_loss_reaching_zero():
    """x <- (1 - u) x, loss x^2: any block with u = 1 makes the loss exactly 0. The optimiser works on
    a logarithm of J that stays finite at J = 0 (asinh(J / delta)): no -inf, no NaN."""
    model = op.load_model(str(Path(__file__).parent / "models_for_tests" / "affine_map.py"), b=0.0)
    kw = dict(t_final=3, controls={"u": (0.0, 2.0)}, families=())
    sol = op.solve(model, method=op.Adjoint(intervals=3), **kw)        # best constant u = 1: J = 0
    assert sol.baselines["best_constant"].objective == 0.0
    assert sol.objective == 0.0 and sol.status == "optimal"
    start = {"u": np.array([0.3, 0.5, 0.2])}
    sol = op.solve(model, method=op.Adjoint(intervals=3, starts=(start,)), **kw)
    J0 = float(np.prod((1 - start["u"]) ** 2))
    assert np.isfinite(sol.objective) and 0.0 <= sol.objective <= 1e-12 * J0
    assert sol.status in ("optimal", "acceptable") and np.all(np.isfinite(sol.controls["u"]))


def test_kernel_option_of_the_method():
    """op.Adjoint(kernel="casadi") uses the CasADi kernel (same optimum as the derived one)."""
    model = _load("sin", _SIN_STEP)
    kw = dict(t_final=8, controls={"eta": (0.0, 1.0)}, families=())
    src = op.solve(model, method=op.Adjoint(intervals=4), **kw)
    cas = op.solve(model, method=op.Adjoint(intervals=4, kernel="casadi"), **kw)
    assert src.stats["kernel"] == "source" and src.stats["kernel_check_error"] <= RTOL
    assert cas.stats["kernel"] == "casadi" and cas.stats["kernel_note"] == "requested"
    assert cas.objective == pytest.approx(src.objective, rel=1e-9)


def test_default_optimisers_leave_slsqp_out_above_its_size_limit():
    """SLSQP's dense subproblems cost 0.56 s per iteration at 1,000 block values (a rugged per-step
    problem needs ~10^4 iterations): above SLSQP_MAX_VARIABLES the defaults are L-BFGS-B or IPOPT."""
    from types import SimpleNamespace

    from opt_protocols.control.adjoint import SLSQP_MAX_VARIABLES, default_strategy
    m = op.Adjoint()
    small = SimpleNamespace(T=100, n_blocks=100, opt=["eta"])
    big = SimpleNamespace(T=1000, n_blocks=1000, opt=["eta"])
    coarse = SimpleNamespace(T=10_000, n_blocks=SLSQP_MAX_VARIABLES, opt=["eta"])
    assert default_strategy(small, m, False) == (("best_constant", "power_law"), ["SLSQP", "L-BFGS-B"])
    assert default_strategy(big, m, False) == (("best_constant", "power_law"), ["L-BFGS-B"])
    assert default_strategy(big, m, True)[1] == ["ipopt"]
    assert default_strategy(coarse, m, True) == (("best_constant",), ["SLSQP"])
    assert default_strategy(SimpleNamespace(T=500, n_blocks=200, opt=["eta", "m"]), m, False)[1] == ["L-BFGS-B"]
    assert default_strategy(big, op.Adjoint(optimizer="SLSQP"), False)[1] == ["SLSQP"]
