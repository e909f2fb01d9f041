"""opt_protocols.references: the published setups are read-only, hand out fresh copies, and say
what each number is (the numbers themselves are checked by the model and solve tests)."""
from __future__ import annotations

import numpy as np
import pytest

from opt_protocols import references as R


def test_published_rounding():
    p = R.Published("0.0252980", "x", "c", "s")
    assert p.value == 0.025298 and p.half_unit == pytest.approx(5e-8, rel=1e-12)
    assert p.matches(0.02529804) and p.matches(0.02529795) and not p.matches(0.0252981)
    assert R.Published("2", "x", "c", "s").half_unit == 0.5


def test_every_value_states_its_convention_and_source():
    setups = R.all_setups()
    assert set(setups) == {"dropout", "dropout_one_interval", "curriculum", "dae_DF0.1", "dae_DF0.3", "bm26", "fsl"}
    for s in setups.values():
        assert s.published, s.name
        for key, p in s.published.items():
            assert p.convention and p.what and p.source.startswith(f"docs/models.md, section {s.section}"), key
            base = key.split(".")[0]
            # every published objective names a protocol of the setup, a baseline, the optimum or a state
            assert base in s.protocols or base.startswith(("best_constant", "default", "optimal")) or "[" in base


def test_setups_are_read_only_and_hand_out_copies():
    s = R.CURRICULUM
    with pytest.raises(AttributeError):
        s.t_final = 1.0
    with pytest.raises(TypeError):
        s.params["T"] = 3.0
    kw = s.solve_kwargs()
    kw["controls"]["u"] = (0.2, 0.3)
    kw["budgets"][0]["mean"] = 0.1
    kw["baselines"]["alternation"]["u"][:] = 0.0
    again = s.solve_kwargs()
    assert again["controls"] == {"u": (0.0, 1.0)} and again["budgets"] == [{"control": "u", "mean": 0.5}]
    np.testing.assert_array_equal(again["baselines"]["alternation"]["u"], np.tile([1.0, 0.0], 120))
    # the framework's own baselines are not passed as given protocols; their published values check the fit
    assert set(again["baselines"]) == {"curriculum", "anti_curriculum", "alternation"}
    assert again["intervals"] == 240 and again["fixed"] == {"eta": 3.0}


def test_solve_kwargs_overrides_and_errors():
    s = R.dae(0.3)
    kw = s.solve_kwargs(intervals=50, baselines={"mine": {"D": 0.5}})
    assert kw["intervals"] == 50 and set(kw["baselines"]) == {"constant_D_F", "mine"}
    np.testing.assert_array_equal(kw["x0"], s.model().initial_state())
    with pytest.raises(ValueError, match="D_F = 0.2: the published DAE setups have D_F in"):
        R.dae(0.2)
    with pytest.raises(ValueError, match="states no optimal-control problem"):
        R.FSL.problem()
    with pytest.raises(ValueError, match="has no protocol 'nosuch'"):
        R.BM26.protocol("nosuch")
    with pytest.raises(KeyError, match="has no published value 'nosuch'"):
        R.BM26["nosuch"]


def test_initial_state_overrides():
    m = R.DROPOUT.model()
    x0 = R.DROPOUT.x0(m)
    assert m.state_names == ["Q[0,0]", "Q[0,1]", "Q[1,1]", "R[0,0]", "R[1,0]"]
    np.testing.assert_array_equal(x0, np.zeros(5))
    assert R.DROPOUT.problem(m)["static"] == {"p_test": (0.0, 1.0)}
