"""Optimal curriculum and DAE noise schedules at the reference setups (docs/models.md sections 2, 3) [MM25].

Each test solves one optimal-control problem with ``op.solve`` and checks: IPOPT converged
("optimal"), the collocation objective re-simulates (verification ok), the reference baselines,
the budget, a margin over every baseline, and the qualitative shape of the optimum.

Tolerances:

* baselines are integrated by dopri5 at rtol 1e-10 (global error ~1e-9); docs/models.md publishes
  7 digits, hence 5e-8 for the curriculum (eg ~ 0.15) and 5e-7 for the DAE (MSE ~ 9);
* optimal objectives: the discretisation error of piecewise-constant controls, measured by
  refining the grid (curriculum: eg(240) - eg(960) = 1.4e-8; DAE D_F = 0.3: MSE(100) - MSE(399)
  = 1.7e-6, D_F = 0.1: 4.2e-7), bounds the regression tolerances below;
* margins: the optimum beats a baseline by the measured gain minus a safety factor of about 1.5;
  the smallest one (DAE D_F = 0.1 against its best constant, 5.1e-5) is still 1e4 times the
  collocation error (verification gap 5e-10 relative, i.e. 4e-9).

The reference-size DAE solves (399 intervals, ~10 s each) and the curriculum grid refinement are
marked slow; the default run uses 240 curriculum intervals (~1.5 s) and 100 DAE intervals (~3 s).
"""
from __future__ import annotations

import numpy as np
import pytest

import opt_protocols as op
from opt_protocols.references import CURRICULUM, DAE_TEST_NOISE
from opt_protocols.references import dae as dae_reference

# ---- curriculum (docs/models.md section 2) ------------------------------------------------------------

P1 = CURRICULUM.budgets[0]["mean"]
#: the source's baselines, evaluated by op.solve (the best constant is the framework's)
CURRICULUM_PUBLISHED = ("curriculum", "anti_curriculum", "alternation", "best_constant")
#: exact-ODE optimum over piecewise-constant u, converged in the number of intervals (0.14684128 at 960)
CURRICULUM_OPTIMUM = 0.1468413


def solve_curriculum(intervals: int) -> op.Solution:
    return CURRICULUM.solve(intervals=intervals)


def switching_times(sol: op.Solution) -> tuple[float, float]:
    """End of the first easy phase and start of the last one (a partial interval read as easy first / last)."""
    u, tc = sol.controls["u"], sol.t_controls
    dt = tc[1] - tc[0]
    below = np.nonzero(u < 0.99)[0]
    i1, i2 = below[0], below[-1]
    return float(tc[i1] + u[i1] * dt), float(tc[i2 + 1] - u[i2] * dt)


@pytest.fixture(scope="module")
def curriculum_240():
    assert CURRICULUM.intervals == 240
    return solve_curriculum(240)


def test_curriculum_optimum_status_and_baselines(curriculum_240):
    sol = curriculum_240
    assert sol.status == "optimal" and sol.return_status == "Solve_Succeeded"
    assert sol.verification["ok"] and sol.verification["relative_gap"] < 1e-8
    for name in CURRICULUM_PUBLISHED:
        assert CURRICULUM[name].matches(sol.baselines[name].objective), name
    # the framework holds a budgeted control at its mean: the best constant is u = 0.5
    assert sol.baselines["best_constant"].values["u"] == 0.5
    assert sol.objective == pytest.approx(CURRICULUM_OPTIMUM, abs=1e-7)


def test_curriculum_budget_and_margin(curriculum_240):
    sol = curriculum_240
    u = sol.controls["u"]
    assert u.size == 240 and np.all(u >= 0.0) and np.all(u <= 1.0)
    assert u.mean() == pytest.approx(P1, abs=1e-9)               # int u dalpha = p1 alpha_F = 6
    best = min(b.objective for b in sol.baselines.values())     # alternation, 0.1527166
    assert sol.objective < best - 5e-3                          # measured gain 5.9e-3 (3.8%)
    for name, b in sol.baselines.items():
        assert sol.objective < b.objective, name


def test_curriculum_optimum_is_easy_hard_easy(curriculum_240):
    """Published shape [MM25]: easy until alpha ~ 2.75, mostly hard, easy again from alpha ~ 9.05."""
    sol = curriculum_240
    u, tc = sol.controls["u"], sol.t_controls
    mid = 0.5 * (tc[1:] + tc[:-1])
    easy_until, easy_from = switching_times(sol)
    assert 2.7 < easy_until < 2.8 and 9.0 < easy_from < 9.1
    assert np.all(u[mid < 2.7] > 0.99) and np.all(u[mid > 9.1] > 0.99)
    middle = u[(mid > 2.8) & (mid < 9.0)]
    assert middle.max() < 0.2 and middle.mean() < 0.1           # mostly hard
    assert np.all(u[(mid > 2.8) & (mid < 6.0)] < 1e-3)          # purely hard right after the first switch


@pytest.mark.slow
def test_curriculum_optimum_converges_in_intervals(curriculum_240):
    """Refining the control grid: the objective decreases and converges, the switches stay put."""
    sols = {n: solve_curriculum(n) for n in (120, 480, 960)}
    sols[240] = curriculum_240
    n = sorted(sols)
    obj = np.array([sols[k].objective for k in n])
    assert all(sols[k].status == "optimal" and sols[k].verification["ok"] for k in n)
    assert np.all(np.diff(obj) < 0)
    steps = -np.diff(obj)
    assert steps[-1] < steps[0] / 10 and steps[-1] < 1e-8
    times = np.array([switching_times(sols[k]) for k in n])
    assert np.ptp(times[:, 0]) < 0.01 and np.ptp(times[:, 1]) < 0.02


# ---- DAE noise schedule (docs/models.md section 3) ------------------------------------------------------

#: limit-ODE optima (source loss) at 100 and 399 intervals, and the framework's best constant D
DAE_OPTIMUM = {(0.3, 100): 9.4270713, (0.3, 399): 9.4270697, (0.1, 100): 8.7940201, (0.1, 399): 8.7940196}
DAE_BEST_CONSTANT = {0.3: (0.136628, 9.4401515), 0.1: (0.01, 8.7940713)}


def solve_dae(D_F: float, intervals: int) -> op.Solution:
    """The published problem (op.solve's default IPOPT settings) on ``intervals`` intervals."""
    return dae_reference(D_F).solve(intervals=intervals)


def check_dae(sol: op.Solution, D_F: float, intervals: int, margin_best: float) -> None:
    assert sol.status == "optimal"
    assert sol.verification["ok"] and sol.verification["relative_gap"] < 1e-8
    D = sol.controls["D"]
    assert D.size == intervals and np.all(D >= 0.01) and np.all(D <= 0.99)
    published = dae_reference(D_F)["constant_D_F"]
    assert published.matches(sol.baselines["constant_D_F"].objective)
    assert published.matches(sol.baselines["default"].objective)
    D_best, L_best = DAE_BEST_CONSTANT[D_F]
    best = sol.baselines["best_constant"]
    assert best.values["D"] == pytest.approx(D_best, abs=1e-4)
    assert best.objective == pytest.approx(L_best, abs=2e-7)
    assert sol.objective == pytest.approx(DAE_OPTIMUM[(D_F, intervals)], abs=2e-7)
    assert sol.objective < sol.baselines["constant_D_F"].objective - 0.09      # measured 0.0928 / 0.0929
    assert sol.objective < best.objective - margin_best


def check_dae_shape_03(sol: op.Solution) -> None:
    """Published shape for D_F = 0.3: starts high (~0.76), falls to ~0.015 near alpha ~ 0.53, ends slightly up."""
    D, tc = sol.controls["D"], sol.t_controls
    alpha = 0.5 * (tc[1:] + tc[:-1]) / sol.params["eta"]
    k = int(np.argmin(D))
    assert 0.74 < D[0] < 0.78
    assert 0.012 < D[k] < 0.018 and 0.50 < alpha[k] < 0.56
    assert np.all(np.diff(D[alpha < 0.5]) < 0)                 # falls monotonically from the start
    assert np.all(D[alpha < 0.2] > 0.55)                        # high early (0.59 at alpha = 0.2)
    assert 0.06 < D[-1] < 0.1                                   # slightly up at the end
    assert np.all(np.diff(D[alpha > 0.56]) > 0)


@pytest.fixture(scope="module")
def dae_03_100():
    return solve_dae(0.3, 100)


def test_dae_schedule_DF03(dae_03_100):
    sol = dae_03_100
    check_dae(sol, 0.3, 100, margin_best=0.009)                # measured 0.0131 below the best constant
    check_dae_shape_03(sol)


def test_dae_schedule_DF01():
    """For D_F = 0.1 the optimum sits on the lower bound D = 0.01 (like the best constant) and only
    rises at the very end (to ~0.02): its gain over the best constant is small (5.1e-5) but real."""
    sol = solve_dae(0.1, 100)
    check_dae(sol, 0.1, 100, margin_best=3e-5)
    D = sol.controls["D"]
    assert np.all(D[:90] < 0.0105) and D[-1] > 0.015 and np.argmax(D) == D.size - 1


@pytest.mark.slow
@pytest.mark.parametrize("D_F", DAE_TEST_NOISE)
def test_dae_schedule_reference_size(D_F):
    """399 intervals, as published."""
    assert dae_reference(D_F).intervals == 399
    sol = solve_dae(D_F, 399)
    check_dae(sol, D_F, 399, margin_best=0.009 if D_F == 0.3 else 3e-5)
    if D_F == 0.3:
        check_dae_shape_03(sol)
