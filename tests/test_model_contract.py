"""The model contract: loading, parameter validation, one-source backends for every model."""
import math

import numpy as np
import pytest

import opt_protocols as op
from opt_protocols.spec import Param

ALL_MODELS = op.list_models()


def test_builtin_models_listed():
    assert {"committee", "curriculum", "dae", "random_features"} <= set(ALL_MODELS)


def test_load_by_name_dotted_module_and_path(example_model_path):
    assert op.load_model("committee").name == "committee"
    assert op.load_model("opt_protocols.models.committee").state_names == op.load_model("committee").state_names
    m = op.load_model(example_model_path, sigma=0.1)
    assert m.name == "linear_regression" and m.state_names == ["Q", "R"]
    assert m.params["sigma"] == 0.1
    # the stored source loads the same model again
    assert op.load_model(m.source).state_names == ["Q", "R"]


@pytest.mark.parametrize("kwargs, message", [
    ({"K": 0}, "parameter 'K' = 0 is out of range: expected an integer in [1, 32]"),
    ({"K": 2.5}, "parameter 'K': expected an integer in [1, 32], got 2.5"),
    ({"sigma": -1.0}, "parameter 'sigma' = -1.0 is out of range: expected a number in [0.0, inf)"),
    ({"sigma": "abc"}, "parameter 'sigma': expected a number in [0.0, inf), got 'abc'"),
    ({"nosuch": 1}, "model 'committee' has no parameter 'nosuch'"),
    ({"learn_v": "maybe"}, "parameter 'learn_v': expected true or false"),
    ({"M": 2, "T": [[1.0, 2.0], [2.0, 1.0]]}, "parameter 'T': must be a symmetric positive semi-definite matrix"),
])
def test_parameter_errors_name_parameter_and_range(kwargs, message):
    with pytest.raises(ValueError) as err:
        op.load_model("committee", **kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_model_and_missing_file():
    with pytest.raises(ValueError, match="unknown model 'nosuch'"):
        op.load_model("nosuch")
    with pytest.raises(ValueError, match="does not exist"):
        op.load_model("no/such/file.py")


def test_param_kinds():
    assert Param(1, int, lo=0).validate("n", "3") == 3
    assert Param(True, bool).validate("b", "false") is False
    assert Param(0.5, float, lo=0, hi=1, hi_open=True).allowed() == "a number in [0, 1)"
    with pytest.raises(ValueError, match=r"expected a number in \[0, 1\)"):
        Param(0.5, float, lo=0, hi=1, hi_open=True).validate("x", 1.0)
    with pytest.raises(ValueError):
        Param(0.5, float).validate("x", math.nan)


def test_controls_and_states_by_name():
    m = op.load_model("committee", K=2, M=1)
    assert m.control_names == ["eta", "r"]
    assert m.state_names == ["Q[0,0]", "Q[0,1]", "Q[1,1]", "R[0,0]", "R[1,0]"]
    np.testing.assert_array_equal(m.control_vector({"r": 0.5}), [0.5, 0.5])
    with pytest.raises(ValueError, match="has no control 'lr'"):
        m.control_vector({"lr": 0.1})
    with pytest.raises(ValueError, match=r"control 'r' = 1.5 is out of range: expected a number in \[0.0, 1.0\]"):
        m.control_vector({"r": 1.5})


def test_ops_namespaces_define_the_same_names():
    from opt_protocols import ops, ops_casadi
    public = {n for n in vars(ops) if not n.startswith("_") and n not in ("annotations", "math", "np",
                                                                             "register_jitable")}
    missing = public - set(vars(ops_casadi))
    assert not missing


@pytest.mark.parametrize("name", ALL_MODELS)
def test_numba_and_casadi_agree_at_random_states(name):
    """Backend agreement for every built-in model, at its default parameters."""
    m = op.load_model(name)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = m.random_state(rng)
        u = np.array([rng.uniform(max(c.lo, 0.0) if math.isfinite(c.lo) else 0.0,
                                  min(c.hi, 1.0) if math.isfinite(c.hi) else 1.0)
                      for c in m.controls.values()])
        u = np.clip(u, [c.lo for c in m.controls.values()], [c.hi for c in m.controls.values()])
        nb = m.numba.rhs(x, u, m.c, m.dims)
        ca_ = np.array(m.casadi.rhs(x, u, m.c)).ravel()
        scale = np.maximum(np.abs(nb), 1e-300)
        assert np.all(np.abs(nb - ca_) <= 1e-12 * np.maximum(scale, np.abs(nb).max() * 1e-3)), name
        ln, lc = m.loss(x), float(m.casadi.loss(x, m.c))
        assert abs(ln - lc) <= 1e-12 * max(abs(ln), 1e-300)


def test_numba_cache_means_no_recompile_in_a_second_process():
    """Compiled equations and integrators are cached on disk: a second process loads, not compiles."""
    import subprocess
    import sys
    code = ("import opt_protocols as op; from opt_protocols import integrate as ig; "
            "m = op.load_model('committee', K=2, M=2); op.simulate(m, None, 0.5, 10.0); "
            "print(len(m.numba.rhs.stats.cache_hits), len(m.numba.rhs.stats.cache_misses), "
            "len(ig.integrate.stats.cache_hits), len(ig.integrate.stats.cache_misses))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    hits_rhs, misses_rhs, hits_int, misses_int = map(int, out)
    assert hits_rhs >= 1 and misses_rhs == 0
    assert hits_int >= 1 and misses_int == 0
