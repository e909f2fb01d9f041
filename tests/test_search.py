"""Shape search with the base LR factored out (opt_protocols/search.py; docs/models.md section 7) [NS26]."""
import numpy as np
import pytest
from scipy import stats

import opt_protocols as op
from opt_protocols import schedules as S
from opt_protocols import search
from opt_protocols.control.evaluate import Evaluator
from opt_protocols.control.problem import make_problem
from opt_protocols.protocol import as_protocol

RF = dict(t_final=100, controls={"eta": (0.0, 2.0)})   # [BM26] reference (a, b, sigma, m, N) = (2, 2, 0.5, 5, 500)


@pytest.fixture(scope="module")
def rf():
    return op.load_model("random_features")


@pytest.mark.parametrize("family", ["polynomial", "cosine", "power_law"])
def test_search_finds_the_direct_family_optimum_on_the_random_feature_map(rf, family):
    """Random search + coordinate descent (each shape at its own best base LR) reaches the optimum
    that the gradient-based direct optimisation of (base LR, shape) finds. Tolerance 2e-5 relative:
    the coordinate descent stops at steps of 1/512 of a parameter's range, where the loss (quadratic
    near the optimum) is within ~1e-6 of its minimum."""
    res = search.shape_search(rf, family, n_random=16, n_refine=2, **RF)
    direct = search.family_optimum(rf, family, fixed_params={}, **RF)
    assert res.best.loss == pytest.approx(direct.objective, rel=2e-5)
    assert res.best.schedule.base_lr == pytest.approx(direct.values["base_lr"], rel=0.02)
    # the score is the loss of the schedule, re-simulated independently
    tr = op.simulate(rf, protocol={"eta": res.best.schedule}, t_final=100)
    assert tr.final_loss == pytest.approx(res.best.loss, rel=1e-12)
    # ... and the best over the base LR: a fine scan around it does not go lower
    scan = [op.simulate(rf, protocol={"eta": res.best.schedule.replace(base_lr=b)}, t_final=100).final_loss
            for b in res.best.schedule.base_lr * np.linspace(0.97, 1.03, 13)]
    assert min(scan) >= res.best.loss * (1 - 1e-6)
    if family == "power_law":   # docs/models.md section 5: optimal power law 1.863 t^(-0.3517), L = 0.11069
        assert res.best.loss == pytest.approx(0.11069, abs=1e-5)
        assert res.best.schedule.chi == pytest.approx(0.3517, abs=2e-3)


def test_candidates_record_their_grid_scores(rf):
    res = search.shape_search(rf, "wsd", n_random=4, n_refine=0, base_lrs=np.geomspace(0.1, 2.0, 9), **RF)
    assert len(res.candidates) == 5 and res.n_evaluations >= 5 * 9
    for c in res.candidates:
        assert c.grid_losses.shape == (9,) and c.stage == "random"
        assert c.loss <= np.nanmin(c.grid_losses) * (1 + 1e-14)      # Brent only improves on the grid
    assert [c.loss for c in res.candidates] == sorted(c.loss for c in res.candidates)
    # the family's default member (decay_fraction 0.2, floor 0) is always a candidate
    assert any(c.schedule.replace(base_lr=1.0) == S.WSD() for c in res.candidates)


def test_median_interval_by_hand():
    # n = 10: j = 2 gives coverage 1 - 2 P(Bin(10, 1/2) <= 1) = 1 - 2 * 11/1024 >= 0.95, j = 3 gives 0.89
    med, lo, hi, cov = search.median_interval(np.arange(10, 0, -1.0))
    assert (med, lo, hi) == (5.5, 2.0, 9.0) and cov == pytest.approx(1 - 22 / 1024, abs=1e-15)
    # n = 5 cannot reach 95%: the full range, coverage 1 - 2/32
    med, lo, hi, cov = search.median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (med, lo, hi) == (3.0, 1.0, 5.0) and cov == pytest.approx(0.9375)
    # coverage is what it says: the true median of a continuous law falls in the interval that often
    rng = np.random.default_rng(0)
    hits = [lo <= 0.0 <= hi for lo, hi in (search.median_interval(rng.standard_normal(15))[1:3] for _ in range(2000))]
    cov15 = search.median_interval(np.arange(15.0))[3]
    assert abs(np.mean(hits) - cov15) < 4 * np.sqrt(cov15 * (1 - cov15) / 2000)
    assert cov15 == pytest.approx(1 - 2 * stats.binom.cdf(3, 15, 0.5))


def test_sgd_search_returns_a_median_and_an_interval():
    """On the finite-N simulator each score is the median over seeds of the final loss; the best
    candidate's numbers are those of a direct simulate_sgd run of its schedule with the same seeds."""
    m = op.load_model("random_features", N=60)
    grid = np.geomspace(0.3, 2.0, 5)
    res = search.shape_search(m, "cosine", 60, controls={"eta": (0.0, 2.0)}, base_lrs=grid, n_random=3,
                              n_refine=1, min_step=1 / 16, sgd={"N": 2, "seeds": 11})
    b = res.best
    assert res.stochastic and b.seed_losses.shape == (11,)
    assert b.loss == np.median(b.seed_losses)
    assert b.interval[0] <= b.loss <= b.interval[1]
    assert res.coverage == pytest.approx(1 - 2 * stats.binom.cdf(1, 11, 0.5))   # j = 2 for n = 11
    direct = op.simulate_sgd(m, {"eta": b.schedule}, 60, N=2, seeds=11, n_out=2)
    np.testing.assert_allclose(direct.loss[:, -1], b.seed_losses, rtol=1e-12)
    # the median of single runs sits near the deterministic recursion's mean loss (within the seed spread)
    exact = op.simulate(m, protocol={"eta": b.schedule}, t_final=60).final_loss
    assert b.seed_losses.min() < exact < b.seed_losses.max()


def test_budget_fixes_the_base_curriculum():
    """With an == budget on the control the base follows from the budget: constant u = 0.5 is the
    docs/models.md section 2 baseline 0.1527775, and every member meets the budget."""
    m = op.load_model("curriculum")
    kw = dict(controls={"u": (0.0, 1.0)}, fixed={"eta": 3.0}, budgets=[{"control": "u", "mean": 0.5}])
    const = search.shape_search(m, "constant", 12.0, n_random=0, **kw)
    assert const.best.loss == pytest.approx(0.1527775, abs=1e-7) and const.best.schedule.base_lr == 0.5
    for fam in ("two_point_linear", "cosine", "smooth_spline"):      # piecewise linear, and curved
        res = search.shape_search(m, fam, 12.0, n_random=6, n_refine=1, min_step=1 / 16, **kw)
        p = res.protocol      # the search's tabulation, kept: the budget holds on it exactly
        u = p.names.index("u")
        assert np.sum(0.5 * (p.U0[:, u] + p.U1[:, u]) * np.diff(p.tk)) / 12.0 == pytest.approx(0.5, rel=1e-12)
        ev = Evaluator(make_problem(m, t_final=12.0, **kw))
        assert ev.objective(p) == pytest.approx(res.best.loss, rel=1e-12)
        # the schedule itself, tabulated finer, meets the budget to the tabulation's accuracy
        fine = as_protocol(m, {"u": res.best.schedule, "eta": 3.0}, 12.0)
        assert ev.objective(fine) == pytest.approx(res.best.loss, rel=1e-4)
    assert res.best.loss < const.best.loss          # the order of the easy examples matters
    for c in res.candidates:   # an infeasible shape (mean of the shape < 0.5) is scored inf
        tk, u0, u1 = c.schedule.replace(base_lr=1.0).tabulate(0.0, 12.0, samples=search.SEARCH_SAMPLES)
        feasible = np.sum(0.5 * (u0 + u1) * np.diff(tk)) / 12.0 >= 0.5 * (1 - 1e-12)
        assert feasible == np.isfinite(c.loss)


def test_static_variables_are_searched_with_the_shape_dropout():
    """Adaptive dropout (docs/models.md section 1): the constant family on r with p_test searched is
    the best constant r = 0.74148, p_test = 0.76722, eg = 0.0252980 (p_test to the coordinate
    descent's resolution, 1/512 of [0, 1], whence the tolerances)."""
    m = op.load_model("committee", K=2, M=1, sigma=0.2)
    x0 = m.initial_state(Q=np.zeros((2, 2)), R=np.zeros((2, 1)))
    res = search.shape_search(m, "constant", 5.0, x0=x0, controls={"r": (0.0, 1.0)}, fixed={"eta": 1.0},
                              static={"p_test": (0.0, 1.0)}, base_lrs=np.linspace(0.5, 1.0, 11), n_random=8)
    assert res.control == "r"
    assert res.best.loss == pytest.approx(0.0252980, abs=2e-7)
    assert res.best.schedule.base_lr == pytest.approx(0.74148, abs=2e-3)
    assert res.best.static["p_test"] == pytest.approx(0.76722, abs=2e-3)


def test_bad_input(rf):
    with pytest.raises(ValueError, match="^schedule family 'cosin'"):
        search.shape_search(rf, "cosin", **RF)
    with pytest.raises(ValueError, match=r"^control 'm': the family acts on an optimised control; optimised: eta$"):
        search.shape_search(rf, "cosine", control="m", **RF)
    with pytest.raises(ValueError, match=r"^base_lrs: expected increasing positive values within the bounds"):
        search.shape_search(rf, "cosine", base_lrs=[0.5, 3.0], **RF)
    with pytest.raises(ValueError, match=r"^fixed_params: Cosine has no parameter 'q'"):
        search.shape_search(rf, "cosine", fixed_params={"q": 1}, **RF)
    with pytest.raises(ValueError, match=r"^n_random = -1: expected an integer >= 0$"):
        search.shape_search(rf, "cosine", n_random=-1, **RF)
    with pytest.raises(ValueError, match=r"^sgd: unknown option 'n'"):
        search.shape_search(rf, "cosine", sgd={"n": 3}, **RF)
    with pytest.raises(ValueError, match="^t_final: required"):
        search.shape_search(rf, "cosine")
