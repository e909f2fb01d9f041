"""The functional-scaling-law surrogate (docs/models.md section 6) [FSL25]: the Volterra form against the
random-feature recursion, the LLM loss-curve ansatz, its fit, its map model and optimal schedule, the
shipped data and the CLI."""
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import opt_protocols as op
from opt_protocols import schedules as S
from opt_protocols import storage
from opt_protocols.fsl import cli, data, law, optimise, records, volterra
from opt_protocols.fsl.fit import curve_errors, fit
from opt_protocols.models.random_features import fsl_params

ROOT = Path(__file__).resolve().parents[1]
REF = dict(**fsl_params(0.5, 4.0), sigma=3.0, batch=1.0, N=128)     # docs/models.md section 6
REF_E = {"constant": (S.Constant(base_lr=0.01), 0.04037), "cosine": (S.Cosine(base_lr=0.01), 0.02448),
         "wsd": (S.WSD(base_lr=0.01, decay_fraction=0.2), 0.02235)}


# ---- random features: Volterra form and first-order intrinsic-time form ------------------------------

@pytest.mark.parametrize("batch", [1.0, 3.0])
def test_volterra_equals_the_recursion_to_rounding(batch):
    """The direct O(T^2 N) sum of the Volterra equation never forms the per-mode state, yet equals
    the random-feature recursion (op.simulate) at every step, to rounding (1e-12 relative)."""
    m = op.load_model("random_features", **{**REF, "batch": batch})
    lam, c0, sigma = volterra.rf_arrays(m)
    T = 400
    rng = np.random.default_rng(0)
    eta = 0.01 + 0.3 * rng.uniform(size=T)                          # an arbitrary schedule, large steps too
    ms = np.where(np.arange(T) % 2 == 0, batch, batch + 1.0)         # and a varying batch size
    exact = op.simulate(m, protocol={"eta": (np.arange(T + 1.0), eta), "m": (np.arange(T + 1.0), ms)},
                        t_final=T, n_out=T + 1).loss
    L = volterra.volterra_loss(lam, c0, sigma, eta, ms)
    assert L.shape == (T + 1,) and L[0] == pytest.approx(float(lam @ c0), rel=1e-15)
    np.testing.assert_allclose(L, exact, rtol=1e-12)


def test_first_order_form_within_one_percent_at_the_reference():
    """At the section-6 reference the recursion reproduces the published excess risks and the
    first-order intrinsic-time form is within 1% of the recursion along the whole run."""
    m = op.load_model("random_features", **REF)
    lam, c0, sigma = volterra.rf_arrays(m)
    T = 10_000
    for name, (s, ref) in REF_E.items():
        exact = op.simulate(m, protocol={"eta": s}, t_final=T, n_out=T + 1).loss
        assert exact[-1] / 2 == pytest.approx(ref, abs=5e-6), name
        first = volterra.intrinsic_time_loss(lam, c0, sigma, volterra.per_step(s, T, "eta"))
        assert np.max(np.abs(first - exact) / exact) < 0.01, name


@pytest.mark.slow
def test_volterra_at_the_full_reference():
    """The direct Volterra sum at the section-6 reference itself (10^4 steps, ~1 min): the published
    excess risks to their rounding, the recursion to rounding."""
    m = op.load_model("random_features", **REF)
    lam, c0, sigma = volterra.rf_arrays(m)
    for name, (s, ref) in REF_E.items():
        L = volterra.volterra_loss(lam, c0, sigma, volterra.per_step(s, 10_000, "eta"))
        exact = op.simulate(m, protocol={"eta": s}, t_final=10_000).final_loss
        assert L[-1] / 2 == pytest.approx(ref, abs=5e-6) and L[-1] == pytest.approx(exact, rel=1e-12), name


def test_first_order_form_by_hand_single_mode():
    """One mode: L(t) = e(tau_t) + sum_{s<t} lambda^2 exp(-2 lambda (tau_t - tau_{s+1})) eta_s^2 (e(tau_s) + sigma^2)
    with e(tau) = lambda c0 exp(-2 lambda tau), tau_t = sum_{r<t} eta_r (the module's formula, summed here
    term by term); e.g. L(1) = lambda c0 exp(-2 lambda eta_0) + lambda^2 eta_0^2 (lambda c0 + sigma^2)."""
    lam, c0, eta = 0.5, 2.0, np.array([0.1, 0.2, 0.3])
    for sigma in (0.0, 2.0):
        L = volterra.intrinsic_time_loss(np.array([lam]), np.array([c0]), sigma, eta)
        tau = np.array([0.0, 0.1, 0.3, 0.6])

        def e(x):
            return lam * c0 * np.exp(-2 * lam * x)
        by_hand = [e(tau[t]) + sum(lam ** 2 * np.exp(-2 * lam * (tau[t] - tau[s + 1])) * eta[s] ** 2
                                   * (e(tau[s]) + sigma ** 2) for s in range(t)) for t in range(4)]
        np.testing.assert_allclose(L, by_hand, rtol=1e-14)
        assert L[1] == pytest.approx(np.exp(-0.1) + 0.25 * 0.01 * (1.0 + sigma ** 2), rel=1e-14)


def test_volterra_input_errors():
    with pytest.raises(ValueError, match="^c0: expected one value per mode"):
        volterra.volterra_loss(np.ones(3), np.ones(2), 0.0, np.ones(4))
    with pytest.raises(ValueError, match="^ms: expected a number or 4 per-step values"):
        volterra.intrinsic_time_loss(np.ones(3), np.ones(3), 0.0, np.ones(4), np.ones(3))
    with pytest.raises(ValueError, match="expected the random-feature model without momentum"):
        volterra.rf_arrays(op.load_model("random_features", N=5, momentum=True))


# ---- the LLM loss-curve ansatz ------------------------------------------------------------------------

P = np.array([3.0, 40.0, 0.5, 0.5, 0.1, 2e-3, 0.6])


def test_law_by_hand_one_drop():
    """Constant 1 up to step 9, then 0.5: for k >= 10, L = L0 + c1 tau^-s - c2 (1 - 0.5)(c3 + tau_10^-s)
    (1 - (1 + c4 (tau_k - tau_10))^-gamma), tau_k = sum_{j<=k} eta_j."""
    eta = np.array([0.5] * 3 + [1.0] * 7 + [0.5] * 20)   # a 'warmup' of 3 steps, peak first reached at step 3
    L0, c1, s, c2, c3, c4, g = P
    L, _ = law.evaluate(P, eta, np.array([5, 9, 10, 29]))
    tau = np.cumsum(eta)
    assert L[0] == pytest.approx(L0 + c1 * tau[5] ** -s, rel=1e-14)
    assert L[1] == pytest.approx(L0 + c1 * tau[9] ** -s, rel=1e-14)
    assert L[2] == pytest.approx(L0 + c1 * tau[10] ** -s, rel=1e-14)       # no build-up yet at the drop
    build = 1 - (1 + c4 * (tau[29] - tau[10])) ** -g
    assert L[3] == pytest.approx(L0 + c1 * tau[29] ** -s - c2 * 0.5 * (c3 + tau[10] ** -s) * build, rel=1e-14)
    # the warmup's increase (steps 2 -> 3) is not a decay: W is where the peak is first reached
    assert law.warmup_end(eta) == 3


def test_law_jacobian_matches_finite_differences():
    c = data.builtin_curve("25M", "wsdld_20000_24000")
    eta, steps = c.eta / data.PEAK, c.steps[c.fit_mask()][::8]
    _, J = law.evaluate(P, eta, steps, jac=True)
    for i in range(7):
        h = 1e-6 * abs(P[i])
        up, dn = P.copy(), P.copy()
        up[i] += h
        dn[i] -= h
        fd = (law.evaluate(up, eta, steps)[0] - law.evaluate(dn, eta, steps)[0]) / (2 * h)
        assert np.max(np.abs(fd - J[:, i])) <= 1e-6 * np.max(np.abs(J[:, i])), law.PARAM_NAMES[i]


@pytest.mark.parametrize("gamma", [1e-3, 0.3, 1.0, 2.5])
def test_power_as_exponentials(gamma):
    w0, w, r = law.power_as_exponentials(gamma, 500.0)
    y = np.concatenate([[0.0], np.geomspace(1e-8, 500.0, 3000)])
    approx = w0 + np.exp(-np.outer(y, r)) @ w
    assert np.max(np.abs(approx / (1 + y) ** -gamma - 1)) < 1e-7
    assert np.all(r > 0) and np.all(w > 0) and w.size < 100


def test_law_errors():
    with pytest.raises(ValueError, match=r"^loss law: gamma = 0.0: expected a number > 0$"):
        law.LossLaw(3.0, 40.0, 0.5, 0.5, 0.1, 2e-3, 0.0, 3e-4)
    with pytest.raises(ValueError, match="^steps: expected steps in"):
        law.evaluate(P, np.ones(5), np.array([5]))
    with pytest.raises(ValueError, match="^loss law: parameter 'gamma' missing$"):
        law.LossLaw.from_dict({"L0": 1, "c1": 1, "s": 1, "c2": 1, "c3": 1, "c4": 1, "eta_ref": 1})


# ---- data ------------------------------------------------------------------------------------------------

def test_shipped_data_is_the_source_and_schedules_match_the_lr_column():
    root = ROOT / "opt_protocols" / "data" / "llm_loss_curves"
    assert (root / "LICENSE").read_text().startswith("MIT License") and "Luo" in (root / "README.md").read_text()
    for size in data.SIZES:
        for name in data.NAMES:
            with warnings.catch_warnings():
                warnings.simplefilter("error")             # a disagreement would be a loud warning
                c = data.builtin_curve(size, name)
            assert data.check_schedule(c) < 1e-14
            assert c.warmup == data.WARMUP and c.eta[data.WARMUP] == data.PEAK and c.eta[0] == 0.0
            assert np.all(c.steps[c.fit_mask()] < c.horizon) and c.fit_mask().sum() > 90
    # hand-checked values of the definitions
    cos = data.builtin_schedule("cosine_24000")
    assert cos[2160 + 10920] == pytest.approx(3e-5 + 0.5 * 2.7e-4, rel=1e-14)       # half-way: cos = 0
    wsd = data.builtin_schedule("wsd_20000_24000")
    assert wsd[22000] == pytest.approx(math.sqrt(3e-4 * 3e-5), rel=1e-13) and wsd[19999] == 3e-4
    assert data.builtin_schedule("wsdld_20000_24000")[22000] == pytest.approx(1.65e-4, rel=1e-13)
    con = data.builtin_schedule("wsdcon_9")
    assert con.size == 16000 and con[7999] == 3e-4 and con[8000] == 9e-5
    assert data.builtin_schedule("constant_72000")[1080] == 1.5e-4


def test_schedule_disagreement_is_loud():
    c = data.builtin_curve("25M", "cosine_24000")
    c.lr = c.lr.copy()
    c.lr[50] *= 1.01
    with pytest.warns(UserWarning, match=r"^WARNING: loss curve 25M/cosine_24000: the per-step schedule disagrees"):
        assert data.check_schedule(c) == pytest.approx(0.01 / 1.01, rel=1e-6)


def test_read_curve_and_its_errors(tmp_path):
    p = tmp_path / "run.csv"
    p.write_text("step,lr,loss\n10,0.1,3.0\n20,0.2,2.5\n30,0.1,2.4\n")
    c = data.read_curve(p)
    assert c.horizon == 31 and c.warmup == 20
    np.testing.assert_allclose(c.eta[[0, 5, 10, 15, 20, 25, 30]], [0.0, 0.05, 0.1, 0.15, 0.2, 0.15, 0.1])
    assert list(c.steps[c.fit_mask()]) == [30]
    for text, message in [("step,loss\n1,2\n2,3\n", "no column 'lr'"),
                          ("step,lr,loss\n1,0.1,x\n2,0.1,2\n", "line 2: loss = 'x' is not a number"),
                          ("step,lr,loss\n2,0.1,3\n1,0.1,2\n", "line 3: steps must be increasing"),
                          ("step,lr,loss\n1,0.1,3\n2.5,0.1,2\n", "line 3: step must be a non-negative integer"),
                          ("step,lr,loss\n1,-0.1,3\n2,0.1,2\n", r"line 2: lr must be finite and >= 0 \(got -0.1\)"),
                          ("step,lr,loss\n1,0.1,3\n\n3,0.1,nan\n", r"line 4: loss must be finite and > 0 \(leave"),
                          ("step,lr,loss\n1,0.1,3\n2,0.1,-2\n", r"line 3: loss must be finite and > 0 .*\(got -2\)")]:
        p.write_text(text)
        with pytest.raises(ValueError, match=message):
            data.read_curve(p)
    with pytest.raises(ValueError, match="cannot be read"):
        data.read_curve(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="^model size '1B': expected one of 25M, 100M, 400M$"):
        data.builtin_curve("1B", "cosine_24000")


# ---- fitting ------------------------------------------------------------------------------------------

def _synthetic(true: law.LossLaw, K=3000, W=200, every=25):
    """Curves generated by the law itself: constant, cosine to 10% and WSD (last 25%) after a linear warmup."""
    k = np.arange(K, dtype=float)
    warm = np.minimum(k / W, 1.0)
    u = np.clip((k - W) / (K - W), 0, 1)
    shapes = {"constant": warm, "cosine": np.where(k < W, warm, 0.1 + 0.45 * (1 + np.cos(np.pi * u))),
              "wsd": np.where(k < W, warm, np.minimum(1.0, 0.1 + 0.9 * (1 - u) / 0.25))}
    steps = np.arange(every, K, every)
    out = []
    for name, shape in shapes.items():
        eta = 3e-4 * shape
        out.append(data.LossCurve(name=name, steps=steps, lr=eta[steps], loss=true(eta, steps), eta=eta, source=name))
    return out


def test_fit_recovers_the_parameters_of_synthetic_curves():
    true = law.LossLaw(L0=2.5, c1=20.0, s=0.6, c2=0.4, c3=0.2, c4=0.01, gamma=0.8, eta_ref=3e-4)
    curves = _synthetic(true)
    res = fit(curves, n_starts=1)
    assert res.success and res.rms_log_residual < 1e-9 and not res.at_bounds
    for name in law.PARAM_NAMES:
        assert getattr(res.law, name) == pytest.approx(getattr(true, name), rel=1e-4), name
    for c in curves:
        e = curve_errors(res.law, c)
        assert e["worst_rel"] < 1e-8 and e["n"] == np.sum(c.steps > 200)


def test_fit_starts_in_the_large_c3_limit_when_the_data_prefer_it():
    """On constant_24000 + cosine_24000 + wsdcon_9 every projected start has c2 = 0 < c2 c3 (the limit
    c3 -> infinity): such starts begin at the bound of c3 instead of being dropped (the coarse grid had
    no other start and raised), and the coarse one-start fit reaches the full fit's optimum."""
    curves = data.builtin_curves("25M")
    chosen = [curves[n] for n in ("constant_24000", "cosine_24000", "wsdcon_9")]
    coarse = fit(chosen, coarse=True, n_starts=1)
    full = fit(chosen)
    assert coarse.success and coarse.at_bounds == ["c3"] == full.at_bounds
    assert coarse.cost == pytest.approx(full.cost, rel=1e-9)
    e = curve_errors(full.law, curves["wsd_20000_24000"])     # held out: -0.26% at the last logged step
    assert e["final_rel"] == pytest.approx(-0.00257, abs=1e-4)


def test_fit_errors():
    true = law.LossLaw(L0=2.5, c1=20.0, s=0.6, c2=0.4, c3=0.2, c4=0.01, gamma=0.8, eta_ref=3e-4)
    with pytest.raises(ValueError, match="no curve changes its learning rate after the warmup"):
        fit(_synthetic(true)[:1])
    with pytest.raises(ValueError, match="^fit: no loss curves given$"):
        fit([])


# ---- the ansatz as a map model, and its optimal monotone schedule -------------------------------------------

LAW = law.LossLaw(L0=3.15, c1=30.5, s=0.5, c2=0.3, c3=0.5, c4=0.005, gamma=0.7, eta_ref=3e-4)


def test_surrogate_map_is_the_law_and_its_backends_agree():
    K, W = 2000, 100
    warm = optimise.linear_warmup(W, 3e-4)
    m = optimise.surrogate(LAW, warm, K)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x, u = m.random_state(rng), np.array([rng.uniform()])
        nb, ca = m.numba.rhs(x, u, m.c, m.dims), np.array(m.casadi.rhs(x, u, m.c)).ravel()
        assert np.max(np.abs(nb - ca) / np.maximum(np.abs(nb), 1e-300)) < 1e-13
        assert m.loss(x) == pytest.approx(float(m.casadi.loss(x, m.c)), rel=1e-14)
    post = 3e-4 * np.sort(rng.uniform(0.0, 1.0, K - 1 - W))[::-1]          # a random non-increasing schedule
    post[:300] = 3e-4
    tr = op.simulate(m, protocol={"eta": (np.arange(post.size + 1.0), post / 3e-4)}, t_final=post.size,
                     n_out=post.size + 1)
    eta = np.concatenate([warm, post])
    np.testing.assert_allclose(tr.loss, LAW(eta, np.arange(W, K)), rtol=1e-10)


@pytest.fixture(scope="module")
def small_optimum():
    return optimise.optimise(LAW, 2000, optimise.linear_warmup(100, 3e-4), intervals=8)


def test_optimal_schedule_is_monotone_bounded_and_beats_the_families(small_optimum):
    opt = small_optimum
    sol = opt.solution
    assert sol.status == "optimal" and sol.verification["ok"]
    assert opt.surrogate_error < 1e-9
    post = opt.eta[opt.warmup + 1:]
    assert np.all(np.diff(post) <= 1e-15) and post.max() <= 3e-4 * (1 + 1e-12) and post.min() >= 0
    K = 2000
    for name in ("best_constant", "wsd"):
        assert opt.final_loss <= sol.baselines[name].objective + 1e-12
    # a cosine decay and a WSD after the same warmup are predicted worse
    k = np.arange(K)
    for shape in (S.Cosine(base_lr=3e-4, warmup=100 / K), S.WSD(base_lr=3e-4, warmup=100 / K, decay_fraction=0.2)):
        eta = shape(k, K)
        assert LAW(eta, [K - 1])[0] > opt.final_loss


def test_optimal_schedule_agrees_with_a_direct_optimisation_of_the_exact_law(small_optimum):
    """The same 8 monotone blocks optimised directly on the exact law (no exponential sums, no map
    model): SLSQP on the block values with finite-difference gradients."""
    from scipy import optimize as so
    opt = small_optimum
    K, W, n = 2000, 100, 8
    starts = (np.arange(n + 1) * (K - 1 - W) + n - 1) // n
    warm = optimise.linear_warmup(W, 3e-4)

    def f(z):
        post = np.repeat(z, np.diff(starts)) * 3e-4
        return float(LAW(np.concatenate([warm, post]), [K - 1])[0])

    cons = {"type": "ineq", "fun": lambda z: z[:-1] - z[1:]}
    res = so.minimize(f, np.full(n, 0.8), method="SLSQP", bounds=[(0, 1)] * n, constraints=[cons],
                      options={"ftol": 1e-14, "maxiter": 500})
    assert abs(res.fun - opt.final_loss) < 1e-7 * opt.final_loss
    blocks = opt.solution.controls["eta"]
    assert np.max(np.abs(blocks - res.x)) < 2e-3


def test_optimise_errors():
    with pytest.raises(ValueError, match="^horizon = 100: expected more steps than the warmup"):
        optimise.surrogate(LAW, optimise.linear_warmup(100, 3e-4), 100)
    with pytest.raises(ValueError, match=r"^eta_min = 0.001: expected 0 <= eta_min < eta_max"):
        optimise.optimise(LAW, 2000, optimise.linear_warmup(100, 3e-4), eta_min=1e-3)


# ---- storage and the command line -----------------------------------------------------------------------

def _write_csv(path, curve, with_loss=True):
    """Every step's learning rate (so the CSV's schedule is exact), the loss at the logged steps."""
    logged = dict(zip(curve.steps.tolist(), curve.loss.tolist()))
    rows = ["step,lr,loss" if with_loss else "step,lr"]
    for k in range(curve.horizon):
        loss = f",{float(logged[k])!r}" if k in logged else ","           # an empty cell: no loss at this step
        rows.append(f"{k},{float(curve.eta[k])!r}" + (loss if with_loss else ""))
    path.write_text("\n".join(rows) + "\n")


def test_cli_fit_predict_optimise(tmp_path):
    true = law.LossLaw(L0=2.5, c1=20.0, s=0.6, c2=0.4, c3=0.2, c4=0.01, gamma=0.8, eta_ref=3e-4)
    curves = _synthetic(true)
    paths = []
    for c in curves:
        paths.append(tmp_path / f"{c.name}.csv")
        _write_csv(paths[-1], c, with_loss=c.name != "wsd")
    out = tmp_path / "fsl.h5"
    assert cli.main(["fit", str(paths[0]), str(paths[1]), "--out", str(out), "--run-id", "fit",
                     "--plot", str(tmp_path / "fit.png")]) == 0
    fitted, rid = records.read_law(out)
    assert rid == "fit" and fitted.c4 == pytest.approx(true.c4, rel=1e-3)
    assert cli.main(["predict", str(paths[2]), "--fit", str(out), "--out", str(out), "--run-id", "pred"]) == 0
    assert cli.main(["optimise", "--fit", str(out), "--fit-run", "fit", "--steps", "3000", "--warmup", "200",
                     "--eta-max", "3e-4", "--intervals", "60", "--compare", str(paths[2]), "--out", str(out),
                     "--run-id", "opt", "--plot", str(tmp_path / "opt.png")]) == 0
    assert storage.list_runs(out) == ["fit", "pred", "opt"]
    pred = storage.read_run(out, "pred")
    assert pred.attrs["kind"] == "fsl_prediction" and pred.attrs["errors"] == {}      # no loss column
    steps = pred.coords["curves/wsd/step"]
    after = steps > 200
    np.testing.assert_allclose(pred.variables["curves/wsd/loss_law"][1][after], true(curves[2].eta, steps[after]),
                               rtol=1e-4)
    opt = storage.read_run(out, "opt")
    assert opt.attrs["status"] == "optimal" and opt.attrs["final_loss"] <= opt.attrs["compare"]["wsd"]
    assert opt.variables["eta"][1].size == 3000 and (tmp_path / "opt.png").is_file()
    storage.write_run(out, storage.RunRecord(run_id="fit2", attrs={"kind": "fsl_fit", "law": fitted.to_dict()}))
    with pytest.raises(ValueError, match="holds 2 fits"):     # a second fit makes the choice ambiguous
        records.read_law(out)
    with pytest.raises(ValueError, match="has no run 'nosuch'"):
        records.read_law(out, "nosuch")


def test_cli_user_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("step,loss\n1,2\n2,3\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "opt_protocols.fsl.cli", "fit", str(bad), "--out",
                          str(tmp_path / "x.h5")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"error: loss curve {str(bad)!r}: no column 'lr' (expected a " \
                                                  "header step,lr,loss)"
