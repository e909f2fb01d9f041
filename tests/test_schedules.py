"""Schedule families (docs/models.md section 7) [NS26]: hand-checked values, peaks, bounds, parsing,
and use as protocols (per step on maps, tabulated on ODEs, as baselines of both solve methods)."""
import math

import numpy as np
import pytest

import opt_protocols as op
from opt_protocols import schedules as S

T = 10.0          # horizon of the hand-checked values
W = 2.0           # warmup 0.2 * T: u = (t - 2)/8

# (schedule, t, value) with the value worked out by hand from docs/models.md section 7
HAND = [
    # constant: 1 after the warmup, linear warmup t/W before
    (S.Constant(warmup=0.2), 0.0, 0.0), (S.Constant(warmup=0.2), 1.0, 0.5), (S.Constant(warmup=0.2), 2.0, 1.0),
    (S.Constant(warmup=0.2), 9.9, 1.0),
    # cosine a = 0, p = 1: (1 + cos(pi u))/2; u = 1/2 at t = 6 -> 1/2; u = 1/4 at t = 4 -> (1 + 1/sqrt 2)/2
    (S.Cosine(warmup=0.2), 2.0, 1.0), (S.Cosine(warmup=0.2), 6.0, 0.5),
    (S.Cosine(warmup=0.2), 4.0, (1 + 1 / math.sqrt(2)) / 2), (S.Cosine(warmup=0.2), 10.0, 0.0),
    # generalized cosine a = 0.1, p = 2 at u = 1/2: 0.9 * 0.25 + 0.1; at the end: a
    (S.Cosine(a=0.1, p=2.0), 5.0, 0.325), (S.Cosine(a=0.1, p=2.0), 10.0, 0.1), (S.Cosine(a=0.1, p=2.0), 0.0, 1.0),
    # square root a = 1 at u = 1/2: sqrt(3/4); a = 2 at u = 1/2: 3/4
    (S.SquareRoot(), 5.0, math.sqrt(0.75)), (S.SquareRoot(a=2.0), 5.0, 0.75), (S.SquareRoot(), 10.0, 0.0),
    # REX beta = 1/2 at u = 1/2: (1/2)/(3/4); beta = 1 is linear
    (S.Rex(beta=0.5), 5.0, 2.0 / 3.0), (S.Rex(beta=1.0), 2.5, 0.75), (S.Rex(beta=0.5), 10.0, 0.0),
    # WSD, decay over the last 20%: stable at u = 0.5, half-way down at u = 0.9
    (S.WSD(floor=0.1), 5.0, 1.0), (S.WSD(floor=0.1), 8.0, 1.0), (S.WSD(floor=0.1), 9.0, 0.1 + 0.9 * 0.5),
    (S.WSD(floor=0.1, decay="cosine"), 9.0, 0.55),
    (S.WSD(floor=0.1, decay="cosine"), 8.5, 0.1 + 0.9 * 0.5 * (1 + 1 / math.sqrt(2))),
    (S.WSD(floor=0.01, decay="geometric"), 9.0, 0.1), (S.WSD(floor=0.01, decay="geometric"), 10.0, 0.01),
    (S.WSD(decay="geometric"), 9.0, 0.0), (S.WSD(decay="geometric"), 8.0, 1.0), (S.WSD(decay="geometric"), 7.9, 1.0),
    (S.WSD(decay_fraction=0.5, warmup=0.2), 6.0, 1.0), (S.WSD(decay_fraction=0.5, warmup=0.2), 8.0, 0.5),
    # polynomial delta = 2 at u = 1/2: 1/4; power law chi = 1/2 at t = 3: 4^(-1/2)
    (S.Polynomial(delta=2.0), 5.0, 0.25), (S.Polynomial(delta=0.5), 7.5, 0.5),
    (S.PowerLaw(chi=0.5), 3.0, 0.5), (S.PowerLaw(chi=1.0, warmup=0.2), 5.0, 0.25), (S.PowerLaw(chi=0.0), 9.0, 1.0),
    # every decay family starts at 1 (u = 0) and the ones that decay to 0 end there (u = 1)
    (S.SquareRoot(), 0.0, 1.0), (S.Rex(beta=0.5), 0.0, 1.0), (S.Polynomial(delta=2.0), 0.0, 1.0),
    (S.Polynomial(delta=2.0), 10.0, 0.0), (S.PowerLaw(chi=0.5), 0.0, 1.0), (S.PowerLaw(chi=0.5), 10.0, 11 ** -0.5),
    (S.WSD(floor=0.1), 10.0, 0.1), (S.WSD(floor=0.1), 0.0, 1.0),
    # two-point linear x0 = 0.1, dx1 = 0.5, y1 = 0.6, dx2 = 0.5, dy2 = 0.5: knots (0.1, 1), (0.55, 0.6),
    # (0.775, 0.3), (1, 0); at s = 0.325 half-way down the first line: 0.8; s = 0.05 warmup: 0.5
    (S.TwoPointLinear(x0=0.1, y1=0.6), 0.5, 0.5), (S.TwoPointLinear(x0=0.1, y1=0.6), 1.0, 1.0),
    (S.TwoPointLinear(x0=0.1, y1=0.6), 3.25, 0.8), (S.TwoPointLinear(x0=0.1, y1=0.6), 5.5, 0.6),
    (S.TwoPointLinear(x0=0.1, y1=0.6), 7.75, 0.3), (S.TwoPointLinear(x0=0.1, y1=0.6), 8.875, 0.15),
    # a jump (dx1 = 0): left-continuous, the peak is reached at x0 = 0.2, just after it y1
    (S.TwoPointLinear(x0=0.2, dx1=0.0, y1=0.5), 2.0, 1.0),
    (S.TwoPointLinear(x0=0.2, dx1=0.0, y1=0.5), 2.0 + 1e-9, 0.5 - 1e-10 * 0.25 / 0.4),
    # the monotone spline through the same knots agrees at the knots and in the warmup
    (S.TwoPointSpline(x0=0.1, y1=0.6), 0.5, 0.5), (S.TwoPointSpline(x0=0.1, y1=0.6), 5.5, 0.6),
    (S.TwoPointSpline(x0=0.1, y1=0.6), 7.75, 0.3), (S.TwoPointSpline(x0=0.1, y1=0.6), 10.0, 0.0),
    (S.TwoPointSpline(x0=0.2, dx1=0.0, y1=0.5), 2.0, 1.0), (S.TwoPointSpline(x0=0.2, dx1=0.0, y1=0.5), 6.0, 0.25),
    # smooth spline: knots (0, 0.2), (0.15, 0.5), (0.225, 0.75), (0.3, 1), (1, 0.1)
    (S.SmoothSpline(y_start=0.2, x_peak=0.3, y_end=0.1), 0.0, 0.2),
    (S.SmoothSpline(y_start=0.2, x_peak=0.3, y_end=0.1), 1.5, 0.5),
    (S.SmoothSpline(y_start=0.2, x_peak=0.3, y_end=0.1), 2.25, 0.75),
    (S.SmoothSpline(y_start=0.2, x_peak=0.3, y_end=0.1), 3.0, 1.0),
    (S.SmoothSpline(y_start=0.2, x_peak=0.3, y_end=0.1), 10.0, 0.1),
    # warmups at the middle of the warmup (t = 1 of W = 2): linear 1/2, cosine 1/2, exponential 0.01^(1/2),
    # polynomial 1/4; all four start at 0 (exponential at 0.01) and reach 1 at W
    (S.Cosine(warmup=0.2, warmup_shape="cosine"), 1.0, 0.5),
    (S.Cosine(warmup=0.2, warmup_shape="exponential"), 1.0, 0.1),
    (S.Cosine(warmup=0.2, warmup_shape="polynomial"), 1.0, 0.25),
    (S.Cosine(warmup=0.2, warmup_shape="exponential"), 0.0, 0.01),
    (S.Cosine(warmup=0.2, warmup_shape="cosine"), 0.5, 0.5 * (1 - 1 / math.sqrt(2))),
    (S.Rex(warmup=0.2, warmup_shape="polynomial"), 2.0, 1.0),
]


@pytest.mark.parametrize("sched, t, value", HAND, ids=[f"{s.to_spec()}@{t}" for s, t, _ in HAND])
def test_hand_checked_values(sched, t, value):
    assert float(sched.shape(t, T)) == pytest.approx(value, abs=1e-14)
    # base_lr multiplies the shape; scalar and vector evaluation agree
    s2 = sched.replace(base_lr=0.3)
    assert float(s2(t, T)) == pytest.approx(0.3 * value, abs=1e-14)
    assert float(sched.shape(np.array([t, t]), T)[1]) == float(sched.shape(t, T))


def _random_member(cls, rng):
    kw = {k: p.sample(rng) for k, p in cls.PARAMS.items()}
    if not cls.OWN_WARMUP:
        kw["warmup"] = float(rng.uniform(0, 0.3))
        kw["warmup_shape"] = str(rng.choice(S.WARMUPS))
    if cls is S.WSD:
        kw["decay"] = str(rng.choice(S.WSD_DECAYS))
    return cls(base_lr=float(rng.uniform(0.1, 2)), **kw)


def _peak_time(s, T):
    if isinstance(s, S.SmoothSpline):
        return s.x_peak * T
    if isinstance(s, S.TwoPointLinear):
        return s.x0 * T
    return s.warmup * T


@pytest.mark.parametrize("name", list(S.FAMILIES))
def test_peak_is_one_and_values_in_range(name):
    """For random members: shape in [0, 1], exactly 1 at the peak, non-increasing after it (all
    families but the smooth spline), and the warmup ends at the peak."""
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    cls = S.family(name)
    t = np.linspace(0, T, 4001)
    for _ in range(20):
        s = _random_member(cls, rng)
        v = s.shape(t, T)
        assert np.all((v >= 0) & (v <= 1.0))
        tp = _peak_time(s, T)
        assert float(s.shape(tp, T)) == pytest.approx(1.0, abs=1e-12)   # t/T rounds
        if name != "smooth_spline":
            after = v[t >= tp]
            assert np.all(np.diff(after) <= 1e-12), s
            if tp > 0:
                assert np.all(np.diff(v[t <= tp]) >= -1e-12), s


@pytest.mark.parametrize("name", list(S.FAMILIES))
def test_parameter_bounds_are_accepted_and_parse_round_trips(name):
    cls = S.family(name)
    for edge in ("lo", "hi"):
        s = cls(**{k: getattr(p, edge) for k, p in cls.PARAMS.items()})
        v = s.shape(np.linspace(0, T, 1001), T)
        assert np.all(np.isfinite(v)) and v.max() == pytest.approx(1.0, abs=1e-12)
        assert S.parse(s.to_spec()) == s
    rng = np.random.default_rng(1)
    s = _random_member(cls, rng)
    assert S.parse(s.to_spec()) == s


@pytest.mark.parametrize("kwargs, message", [
    ({"base_lr": -1.0}, r"^cosine: base_lr = -1.0: expected a number >= 0$"),
    ({"base_lr": True}, r"^cosine: base_lr = True: expected a number >= 0$"),
    ({"base_lr": float("nan")}, r"^cosine: base_lr = nan: expected a number >= 0$"),
    ({"warmup": 1.0}, r"^cosine: warmup = 1.0: expected a fraction of the horizon in \[0, 1\)$"),
    ({"warmup_shape": "step"},
     r"^cosine: warmup_shape = 'step': expected one of linear, cosine, exponential, polynomial$"),
    ({"a": 1.5}, r"^cosine: a = 1.5 is out of range: expected a number in \[0.0, 1.0\]$"),
    ({"p": 0.0}, r"^cosine: p = 0.0 is out of range: expected a number in \[0.1, 10.0\]$"),
    ({"p": "2"}, r"^cosine: p = '2' is out of range: expected a number in \[0.1, 10.0\]$"),
])
def test_bad_parameters_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        S.Cosine(**kwargs)


def test_rounding_at_a_bound_is_the_bound():
    """exp(log(10)) = 10.000000000000002: a parameter missing its bound by rounding is the bound
    (direct fits work in log coordinates); beyond rounding it is an error."""
    s = S.SquareRoot(a=math.exp(math.log(10.0)) * (1 + 1e-15))
    assert s.a == 10.0
    with pytest.raises(ValueError, match="out of range"):
        S.SquareRoot(a=10.0 * (1 + 1e-9))


def test_other_bad_input():
    with pytest.raises(ValueError, match=r"^wsd: decay = 'exp': expected one of linear, cosine, geometric$"):
        S.WSD(decay="exp")
    with pytest.raises(ValueError,
                       match=r"^wsd: decay_fraction = 0.0 is out of range: expected a number in \[0.0001, 1.0\]$"):
        S.WSD(decay_fraction=0.0)
    with pytest.raises(ValueError, match=r"^two_point_linear: warmup = 0.1: this family carries its own warmup"):
        S.TwoPointLinear(warmup=0.1)
    with pytest.raises(ValueError, match=r"^smooth_spline: x_peak = 1.2 is out of range"):
        S.SmoothSpline(x_peak=1.2)
    with pytest.raises(ValueError, match=r"^cosine: horizon T = 0.0: expected a positive number$"):
        S.Cosine().shape(0.5, 0.0)


def test_parse():
    s = S.parse("wsd:decay_fraction=0.2,floor=0.1")
    assert s == S.WSD(decay_fraction=0.2, floor=0.1) and s.base_lr == 1.0
    assert S.parse("cosine") == S.Cosine()
    assert S.parse(" Two-Point-Spline : x0 = 0.1 , y1=0.3") == S.TwoPointSpline(x0=0.1, y1=0.3)
    assert S.parse("wsd:decay=geometric,floor=0.1,warmup=0.05,warmup_shape=cosine,base_lr=3e-4") == S.WSD(
        decay="geometric", floor=0.1, warmup=0.05, warmup_shape="cosine", base_lr=3e-4)
    assert S.parse_spec("power_law:chi=0.3") == (S.PowerLaw, {"chi": 0.3})
    for text, message in [
        ("cosin", r"^schedule family 'cosin': expected one of constant, cosine, square_root, rex, wsd, polynomial, "
                  r"power_law, two_point_linear, two_point_spline, smooth_spline$"),
        ("wsd:fraction=0.2", r"^schedule 'wsd:fraction=0.2': WSD has no parameter 'fraction'; parameters: base_lr, "
                             r"warmup, warmup_shape, decay_fraction, floor, decay$"),
        ("wsd:floor", r"^schedule 'wsd:floor': 'floor': expected key=value$"),
        ("wsd:floor=low", r"^schedule 'wsd:floor=low': floor = 'low': expected a number$"),
        ("wsd:floor=0.1,floor=0.2", r"given twice$"),
        ("wsd:floor=2", r"^wsd: floor = 2.0 is out of range: expected a number in \[0.0, 1.0\]$"),
    ]:
        with pytest.raises(ValueError, match=message):
            S.parse(text)


def test_map_uses_the_schedule_at_every_step():
    """On a discrete map step k applies schedule(k, T) exactly (no tabulation error)."""
    m = op.load_model("random_features", N=20)
    steps = 50
    for s in (S.Cosine(base_lr=0.8, warmup=0.1, a=0.2), S.WSD(base_lr=0.7, decay="geometric", floor=0.05),
              S.TwoPointSpline(base_lr=0.9, x0=0.1, dx1=0.0, y1=0.5)):
        tr = op.simulate(m, protocol={"eta": s}, t_final=steps, n_out=steps + 1)
        k = np.arange(steps)
        np.testing.assert_array_equal(tr.protocol(k.astype(float))[:, 0], s(k, steps))
        # the same run from the explicit per-step values
        ref = op.simulate(m, protocol={"eta": list(s(k, steps))}, t_final=steps)
        assert tr.final_loss == ref.final_loss


def test_ode_tabulation_is_piecewise_linear_with_small_error():
    """On an ODE the schedule is tabulated on SAMPLES segments plus its breakpoints: between knots
    the error is at most h^2/8 max|f''| (smooth shapes), kinks and jumps are knots."""
    m = op.load_model("random_features_ode", N=10)
    horizon = 20.0
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, horizon, 5000))
    h = horizon / S.SAMPLES
    s = S.Cosine(base_lr=0.5, warmup=0.1, warmup_shape="cosine")
    proto = op.protocol.as_protocol(m, {"eta": s}, horizon)
    # |f''| <= base_lr (pi / (T - W))^2 / 2 in the decay and base_lr (pi / W)^2 / 2 in the warmup
    bound = h * h / 8 * 0.5 * (math.pi / 2.0) ** 2 / 2
    assert np.max(np.abs(proto(t)[:, 0] - s(t, horizon))) <= bound * 1.0001
    for s in (S.WSD(base_lr=0.5, floor=0.2, decay_fraction=0.3), S.TwoPointLinear(base_lr=0.5, x0=0.1, y1=0.7),
              S.TwoPointLinear(base_lr=0.5, x0=0.2, dx1=0.0, y1=0.4)):
        proto = op.protocol.as_protocol(m, {"eta": s}, horizon)
        # piecewise linear: exact up to rounding and the right limit of a jump, taken JUMP_EPS * T after it
        assert np.max(np.abs(proto(t)[:, 0] - s(t, horizon))) < 1e-12
        for b in s.breakpoints(horizon):
            assert b in proto.tk
    # the jump of the last schedule: the protocol steps from 0.5 to 0.5 * 0.4 at t = 4
    j = s.jumps(horizon)
    assert j == [4.0]
    k = int(np.searchsorted(proto.tk, 4.0))
    assert proto.U1[k - 1, 0] == pytest.approx(0.5) and proto.U0[k, 0] == pytest.approx(0.2, abs=1e-12)
    # simulation with the schedule equals simulation with its exact tabulation
    tr = op.simulate(m, protocol={"eta": s}, t_final=horizon, rtol=1e-10, atol=1e-12)
    tk, u0, u1 = s.tabulate(0.0, horizon)
    ref = op.simulate(m, protocol={"eta": (tk, np.append(u0, u1[-1]))}, t_final=horizon, rtol=1e-10, atol=1e-12)
    assert abs(tr.final_loss - ref.final_loss) < 1e-3 * ref.final_loss


def test_schedules_as_baselines_of_both_methods():
    """A schedule given in ``baselines={...}`` is evaluated by simulation, whatever the method."""
    from conftest import EXAMPLE_MODEL
    lin = op.load_model(EXAMPLE_MODEL, sigma=0.2)
    cos = S.Cosine(base_lr=1.0, a=0.1)
    sol = op.solve(lin, t_final=4.0, controls={"eta": (0, 2)}, intervals=8, baselines={"cos": cos})
    b = sol.baselines["cos"]
    ref = op.simulate(lin, protocol={"eta": cos}, t_final=4.0, rtol=1e-10, atol=1e-12).final_loss
    assert b.objective == pytest.approx(ref, rel=1e-8) and b.values["a"] == 0.1
    assert sol.objective <= b.objective
    rf = op.load_model("random_features", N=40)
    wsd = S.parse("wsd:base_lr=0.6,decay_fraction=0.3")
    sol = op.solve(rf, t_final=60, controls={"eta": (0, 1)}, method="adjoint", intervals=6,
                   baselines={"wsd": wsd})
    ref = op.simulate(rf, protocol={"eta": wsd}, t_final=60).final_loss
    assert sol.baselines["wsd"].objective == pytest.approx(ref, rel=1e-12)


def test_a_clipped_schedule_stays_within_the_control_bounds():
    """A segment ending on the control's lower bound keeps it exactly when protocols are merged (it
    used to become 0.01 - 5e-18 and be refused: u0 + (u1 - u0) != u1 in floating point), so a
    schedule clipped to D in [0.01, 0.99] is a valid DAE protocol."""
    m = op.load_model("dae", D_F=0.3)
    tk = np.array([0.0, 2.0, 4.0])
    u0, u1 = np.array([0.13179761096957265, 0.01]), np.array([0.01, 0.01])
    assert u0[0] + (u1[0] - u0[0]) < 0.01          # the rounding that used to leave the bound
    proto = op.protocol.as_protocol(m, {"D": (tk, np.append(u0, u1[-1]))}, 4.0)
    assert proto.U1[0, 0] == 0.01 and proto.U0.min() >= 0.01
