"""Does the optimal DAE noise schedule survive on real data? Handwritten digits 0 and 1 [MM25].

    python results/dae_digits.py [--quick] [--out DIR]  # from the repository root; ~4 min (--quick ~10 s)

The theory (docs/models.md section 3, ``models/dae.py``) describes data x = mu_k + s z from a Gaussian
mixture with isotropic within-cluster noise. Here it is fitted to real images and its optimal
training-noise schedule is tested by training the same network on the images themselves.

Data. ``sklearn.datasets.load_digits`` (8 x 8 images, N = 64 pixels, shipped with scikit-learn),
classes 0 and 1 (360 images), split 50/50 stratified into train and test. Pixels are centred by the
train mean (overall, both classes) and scaled by one global factor so that sum_k c_k ||mu_k||^2 = 1
(the O(1) norm of the theory's cluster means).

Mixture fit (train split). Priors c_k = class fractions, mu_k = class means, S = [mu_k.mu_l], and one
isotropic within-cluster variance s^2 per pixel: the model has a single s, so the pooled value
s^2 = sum_k c_k E||x - mu_k||^2 / N is used (the per-class values and the anisotropy of the real
within-class covariance are printed and stored: the theory ignores both).

Network and training: exactly the model's architecture and update rule (``models/dae.py`` ``sgd``):
tied weights W (K = 2 x N), skip b, xhat = b x~ + W^T W x~ / N, x~ = sqrt(1-D) x + sqrt(D) xi,
W <- W + (eta/N)[(W x~) e^T + (W e) x~^T], b <- b + (eta/N^2) x~.e, one image per step drawn with
replacement from the train split, fresh corruption noise xi every step. W starts from one fixed
random draw W0 with i.i.d. N(0, 1/4) entries (Q0 ~ 0.25 I, as in the reference), b0 = 0; the ODE
starts from the overlaps of that W0 with the fitted means, computed exactly.

Time. The ODE runs in tau = eta * alpha and alpha = steps / N, so with N = 64 a horizon tau_F is
tau_F * 64 / eta SGD steps: the reference horizon (eta = 5, tau_F = 4, alpha_F = 0.8) is only 51
steps (51.2, rounded as the model's own ``sgd`` does: the SGD runs end at tau = 3.984). Two
settings are run: "reference" (eta = 5, tau_F = 4: 51 steps) and "long" (eta = 1, tau_F = 10:
640 steps, about 3.6 passes over the 180 training images); each at D_F = 0.3 and 0.1.

ODE model: ``dae`` with the fitted S, s, priors, N = 64, K = 2, ``finite_n = true`` (the O(1/N)
correction of db matters at N = 64) and ``loss_exact = true`` (the full E||x - xhat||^2, the quantity
measured on the test images). The schedule is optimised on 200 intervals.

Measurement: the test MSE at D_F, averaged over the held-out images and computed exactly over the
corruption noise: E||x - xhat||^2 = ||(I - sqrt(1-D_F) P) x||^2 + D_F ||P||_F^2, P = bI + W^T W / N.
Each protocol is trained with the same 50 random streams (the same image sequence and the same
standard-normal corruption draws; common random numbers), so differences are paired. Also run:
the model's own finite-N SGD on synthetic Gaussian-mixture data with the fitted overlaps (same N,
same schedule) to separate finite-N effects from the non-Gaussian data, a scan of constant D on the
real data (is the ODE's best constant the real best constant?), and a robustness check over
20 random train/test splits, each with its own W0, refit and re-solved schedule.

Outputs in DIR: ``dae_digits.h5`` (rewritten on every run; one solution run per case, with the
real-data measurements under ``real_data/``) and ``dae_digits.png`` (also ``docs/figures/`` without
``--quick``). ``--quick``: 100 intervals, 8 seeds, 2 resplits of 4 seeds.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from _common import parse_args, pyplot, record, save_figure, write_runs
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import opt_protocols as op
from opt_protocols.control.evaluate import Evaluator
from opt_protocols.control.problem import make_problem
from opt_protocols.protocol import as_protocol
from opt_protocols.references import dae as dae_reference

#: the files the script writes into DIR (checked by tests/test_results_scripts.py)
OUTPUTS = ("dae_digits.h5", "dae_digits.png")

CLASSES = (0, 1)
N, K = 64, 2
W0_STD = 0.5
BOUNDS = dae_reference(0.1).controls["D"]
D_FS = (0.3, 0.1)
SCAN = np.round(np.concatenate([[0.01], np.arange(0.05, 0.99, 0.05), [0.99]]), 4)
N_CHECK = 21                    # checkpoints along training
#: horizons: name -> (eta, tau_F); "reference" is the published DAE's
REFERENCE_SETTING = (dae_reference(0.1).params["eta"], dae_reference(0.1).t_final)


@dataclass(frozen=True)
class Config:
    settings: tuple[str, ...]
    intervals: int
    seeds: int                  # SGD runs per protocol (common random numbers across protocols)
    resplits: int
    resplit_seeds: int


SETTINGS = {"reference": REFERENCE_SETTING, "long": (1.0, 10.0)}
FULL = Config(settings=("reference", "long"), intervals=200, seeds=50, resplits=20, resplit_seeds=10)
QUICK = Config(settings=("reference", "long"), intervals=100, seeds=8, resplits=2, resplit_seeds=4)


# ---- data and fit -----------------------------------------------------------------------------

def load_split(split_seed: int = 0):
    """Train/test images of the two classes, centred by the train mean and scaled (see the docstring)."""
    d = load_digits()
    sel = np.isin(d.target, CLASSES)
    X, y = d.data[sel].astype(float), (d.target[sel] == CLASSES[1]).astype(int)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, stratify=y, random_state=split_seed)
    centre = Xtr.mean(axis=0)
    Xtr, Xte = Xtr - centre, Xte - centre
    pri = np.array([np.mean(ytr == k) for k in range(2)])
    mus = np.array([Xtr[ytr == k].mean(axis=0) for k in range(2)])
    scale = 1.0 / math.sqrt(float(np.sum(pri * np.sum(mus ** 2, axis=1))))
    return Xtr * scale, ytr, Xte * scale, yte, scale


def fit_mixture(Xtr: np.ndarray, ytr: np.ndarray) -> dict:
    """Priors, means, S, pooled isotropic s, per-class s and the within-class covariance spectrum."""
    pri = np.array([np.mean(ytr == k) for k in range(2)])
    mus = np.array([Xtr[ytr == k].mean(axis=0) for k in range(2)])
    per_class = np.array([np.mean(np.sum((Xtr[ytr == k] - mus[k]) ** 2, axis=1)) / N for k in range(2)])
    s2 = float(np.sum(pri * per_class))
    R = Xtr - mus[ytr]
    eig = np.sort(np.linalg.eigvalsh(R.T @ R / len(R)))[::-1]
    return {"priors": pri, "mus": mus, "S": mus @ mus.T, "s": math.sqrt(s2), "s_per_class": np.sqrt(per_class),
            "within_eigenvalues": eig}


def initial_weights(seed: int) -> np.ndarray:
    return W0_STD * np.random.default_rng(seed).standard_normal((K, N))


def dae_model(fit: dict, W0: np.ndarray, eta: float, D_F: float):
    Q0 = W0 @ W0.T / N
    M0 = fit["mus"] @ W0.T / math.sqrt(N)
    return op.load_model("dae", C=2, K=K, N=N, eta=eta, s=fit["s"], D_F=D_F, priors=fit["priors"], S=fit["S"],
                         Q0=Q0, M0=M0, b0=0.0, finite_n=True, loss_exact=True)


def solve(m, tau_F: float, D_F: float, cfg: Config) -> op.Solution:
    return op.solve(m, t_final=tau_F, controls={"D": BOUNDS}, intervals=cfg.intervals,
                    baselines={"constant_D_F": {"D": D_F}})


# ---- the real network on the real images -------------------------------------------------------

def n_steps(eta: float, tau_F: float) -> int:
    return int(np.rint(tau_F * N / eta))


def random_streams(n_train: int, steps: int, seeds) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: the training-image indices (with replacement) and the standard-normal corruption draws."""
    idx = np.empty((len(seeds), steps), dtype=np.int64)
    Z = np.empty((len(seeds), steps, N))
    for i, sd in enumerate(seeds):
        rng = np.random.default_rng(10_000 + int(sd))
        idx[i] = rng.integers(0, n_train, steps)
        Z[i] = rng.standard_normal((steps, N))
    return idx, Z


def test_mse(W: np.ndarray, b: np.ndarray, X: np.ndarray, D: float) -> np.ndarray:
    """Mean over the images X of E_xi ||x - xhat||^2 at noise D, per network (W: (S, K, N), b: (S,))."""
    r = math.sqrt(1.0 - D)
    P = b[:, None, None] * np.eye(N)[None] + np.einsum("skn,skm->snm", W, W) / N
    A = np.eye(N)[None] - r * P
    E = np.einsum("snm,im->sin", A, X)
    return np.mean(np.sum(E ** 2, axis=2), axis=1) + D * np.sum(P * P, axis=(1, 2))


def train(D_steps: np.ndarray, eta: float, W0: np.ndarray, Xtr: np.ndarray, idx: np.ndarray, Z: np.ndarray,
          Xte: np.ndarray, D_F: float, check_steps: np.ndarray) -> np.ndarray:
    """Online SGD of the tied-weight DAE, all seeds at once; test MSE at D_F at the ``check_steps``."""
    S, steps = idx.shape
    W = np.repeat(W0[None], S, axis=0).copy()
    b = np.zeros(S)
    out = np.full((S, len(check_steps)), np.nan)
    j = 0
    with np.errstate(all="ignore"):
        for k in range(steps + 1):
            while j < len(check_steps) and check_steps[j] == k:
                out[:, j] = test_mse(W, b, Xte, D_F)
                j += 1
            if k == steps:
                break
            D = D_steps[k]
            x = Xtr[idx[:, k]]
            xt = math.sqrt(1.0 - D) * x + math.sqrt(D) * Z[:, k]
            h = np.einsum("skn,sn->sk", W, xt)
            e = x - b[:, None] * xt - np.einsum("skn,sk->sn", W, h) / N
            We = np.einsum("skn,sn->sk", W, e)
            W += (eta / N) * (h[:, :, None] * e[:, None, :] + We[:, :, None] * xt[:, None, :])
            b += (eta / N ** 2) * np.sum(xt * e, axis=1)
    out[~np.isfinite(out)] = np.nan
    return out


def step_noise(proto, eta: float, steps: int) -> np.ndarray:
    """The noise of step k: the protocol at tau = eta (k + 1/2) / N (as the model's own sgd)."""
    names = list(proto.names)
    return np.ascontiguousarray(proto(eta * (np.arange(steps) + 0.5) / N)[:, names.index("D")])


def mean_sem(a: np.ndarray) -> tuple[float, float]:
    a = np.asarray(a, dtype=float)
    ok = a[np.isfinite(a)]
    if ok.size < a.size:
        return float("nan"), float("nan")
    return float(ok.mean()), float(ok.std(ddof=1) / math.sqrt(ok.size))


# ---- one case ------------------------------------------------------------------------------------

def run_case(setting: str, D_F: float, data, fit, W0, cfg: Config) -> dict:
    eta, tau_F = SETTINGS[setting]
    Xtr, ytr, Xte, yte, _ = data
    m = dae_model(fit, W0, eta, D_F)
    sol = solve(m, tau_F, D_F, cfg)
    steps = n_steps(eta, tau_F)
    check = np.unique(np.rint(np.linspace(0, steps, N_CHECK)).astype(int))
    t_check = check * eta / N                         # tau of each checkpoint
    idx, Z = random_streams(len(Xtr), steps, range(cfg.seeds))
    protos = {"optimal": sol.protocol, "best_constant": sol.baselines["best_constant"].protocol,
              "constant_D_F": sol.baselines["constant_D_F"].protocol}
    real = {name: train(step_noise(p, eta, steps), eta, W0, Xtr, idx, Z, Xte, D_F, check) for name, p in protos.items()}
    x0 = m.initial_state()
    ode = {name: op.simulate(m, x0, p, tau_F, t_eval=t_check, rtol=1e-10, atol=1e-12).loss
           for name, p in protos.items()}
    synth = {name: op.simulate_sgd(m, p, tau_F, N=N, seeds=cfg.seeds, x0=x0, t_eval=t_check).loss
             for name, p in protos.items()}
    # constant-D scan: ODE and real data
    ev = Evaluator(make_problem(m, t_final=tau_F, controls={"D": BOUNDS}))
    scan_ode = np.array([ev.objective(as_protocol(m, {"D": float(D)}, tau_F)) for D in SCAN])
    scan_real = np.array([train(np.full(steps, D), eta, W0, Xtr, idx, Z, Xte, D_F, np.array([steps]))[:, 0]
                          for D in SCAN])                                  # (n_scan, seeds)
    return {"setting": setting, "eta": eta, "tau_F": tau_F, "D_F": D_F, "steps": steps, "sol": sol, "t_check": t_check,
            "real": real, "ode": ode, "synth": synth, "scan_ode": scan_ode, "scan_real": scan_real}


def summarise(case: dict) -> dict:
    sol, real, synth = case["sol"], case["real"], case["synth"]
    out = {"ode": {"optimal": sol.objective, "best_constant": sol.baselines["best_constant"].objective,
                   "constant_D_F": sol.baselines["constant_D_F"].objective},
           "best_constant_D": sol.baselines["best_constant"].values["D"]}
    for kind, data in (("real", real), ("synthetic", synth)):
        out[kind] = {n: mean_sem(v[:, -1]) for n, v in data.items()}
        out[kind]["optimal_minus_best_constant"] = mean_sem(data["optimal"][:, -1] - data["best_constant"][:, -1])
        out[kind]["optimal_minus_constant_D_F"] = mean_sem(data["optimal"][:, -1] - data["constant_D_F"][:, -1])
    sr = case["scan_real"]
    means = np.nanmean(sr, axis=1)
    k = int(np.nanargmin(means))
    out["real_best_scanned_constant"] = {"D": float(SCAN[k]), "mse": mean_sem(sr[k]),
                                         "optimal_minus_it": mean_sem(real["optimal"][:, -1] - sr[k])}
    out["diverged_runs"] = {n: int(np.sum(~np.isfinite(v[:, -1]))) for n, v in real.items()}
    return out


def resplit_check(setting: str, D_F: float, cfg: Config) -> dict:
    """Over ``cfg.resplits`` random splits (each with its own W0): refit, re-solve, train ``cfg.resplit_seeds`` runs of
    the optimal and the best constant schedule; the paired difference per split, then over splits."""
    eta, tau_F = SETTINGS[setting]
    diffs, ode_diffs, statuses = [], [], []
    for split in range(1, cfg.resplits + 1):
        data = load_split(split)
        Xtr, ytr, Xte, yte, _ = data
        fit = fit_mixture(Xtr, ytr)
        W0 = initial_weights(split)
        m = dae_model(fit, W0, eta, D_F)
        sol = solve(m, tau_F, D_F, cfg)
        statuses.append(sol.status)
        steps = n_steps(eta, tau_F)
        idx, Z = random_streams(len(Xtr), steps, range(100 * split, 100 * split + cfg.resplit_seeds))
        end = np.array([steps])
        a = train(step_noise(sol.protocol, eta, steps), eta, W0, Xtr, idx, Z, Xte, D_F, end)[:, 0]
        c = train(step_noise(sol.baselines["best_constant"].protocol, eta, steps), eta, W0, Xtr, idx, Z, Xte, D_F,
                  end)[:, 0]
        diffs.append(np.mean(a - c))
        ode_diffs.append(sol.objective - sol.baselines["best_constant"].objective)
    diffs = np.array(diffs)
    return {"splits": cfg.resplits, "seeds_per_split": cfg.resplit_seeds, "real_diff": mean_sem(diffs),
            "ode_diff": mean_sem(ode_diffs), "splits_where_optimal_better": int(np.sum(diffs < 0)),
            "statuses": sorted(set(statuses)), "per_split_real_diff": diffs.tolist()}


# ---- storage and figure ------------------------------------------------------------------------------

def case_record(case: dict, summ: dict, fit: dict, resplit: dict, args, cfg: Config):
    rec = record(case["sol"], f"digits-{case['setting']}-DF{case['D_F']}", args,
                 experiment="dae_digits", setting=case["setting"], sgd_steps=case["steps"], seeds=cfg.seeds,
                 summary=summ, resplit=resplit,
                 fit={"priors": fit["priors"].tolist(), "S": fit["S"].tolist(), "s": fit["s"],
                      "s_per_class": fit["s_per_class"].tolist(),
                      "within_top_eigenvalues": fit["within_eigenvalues"][:8].tolist()},
                 data=f"sklearn load_digits classes {CLASSES}, 50/50 stratified split (random_state 0)")
    rec.coords["real_data/tau"] = case["t_check"]
    rec.coords["real_data/seed"] = np.arange(cfg.seeds)
    rec.coords["real_data/D_scan"] = SCAN
    for name in case["real"]:
        rec.variables[f"real_data/{name}_test_mse"] = (("seed", "tau"), case["real"][name])
        rec.variables[f"real_data/{name}_synthetic_mse"] = (("seed", "tau"), case["synth"][name])
        rec.variables[f"real_data/{name}_ode_mse"] = (("tau",), case["ode"][name])
    rec.variables["real_data/scan_test_mse"] = (("D_scan", "seed"), case["scan_real"])
    rec.variables["real_data/scan_ode_mse"] = (("D_scan",), case["scan_ode"])
    return rec


def figure(cases: list[dict], args) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(len(cases), 3, figsize=(14.5, 3.6 * len(cases)), squeeze=False)
    colors = {"optimal": "k", "best_constant": "C2", "constant_D_F": "C1"}
    for row, case in enumerate(cases):
        sol, eta = case["sol"], case["eta"]
        tag = (f"{case['setting']} (eta = {eta:g}, tau_F = {case['tau_F']:g}, {case['steps']} steps), "
               f"D_F = {case['D_F']}")
        a = ax[row, 0]
        a.step(sol.t_controls / eta, np.append(sol.controls["D"], sol.controls["D"][-1]), where="post", color="k",
               lw=2, label="optimal (ODE)")
        a.axhline(sol.baselines["best_constant"].values["D"], color="C2", ls="--",
                  label=f"best constant (ODE) D = {sol.baselines['best_constant'].values['D']:.3f}")
        a.axhline(case["D_F"], color="C1", ls="--", label="D = D_F")
        a.set_ylim(0, 1)
        a.set_xlabel("alpha = steps / 64")
        a.set_ylabel("training noise D")
        a.set_title(tag, fontsize=8)
        a.legend(fontsize=6)
        a = ax[row, 1]
        t = case["t_check"] / eta
        for name, color in colors.items():
            a.plot(t, case["ode"][name], color=color, lw=1.2, label=f"ODE {name}")
            mr = np.nanmean(case["real"][name], axis=0)
            sr = np.nanstd(case["real"][name], axis=0, ddof=1) / math.sqrt(len(case["real"][name]))
            a.errorbar(t, mr, yerr=sr, fmt="o", ms=3, mfc="none", capsize=2, color=color, label=f"digits {name}")
            ms = case["synth"][name].mean(axis=0)
            a.plot(t, ms, color=color, lw=0.8, ls=":", label=f"synthetic GM SGD {name}" if row == 0 else None)
        a.set_xlabel("alpha")
        a.set_ylabel("test MSE at D_F")
        a.set_title(f"ODE vs SGD on digits (test split, {len(case['real']['optimal'])} seeds, mean +- s.e.)",
                    fontsize=8)
        a.legend(fontsize=5.5, ncol=2)
        a = ax[row, 2]
        sr = case["scan_real"]
        ok = np.all(np.isfinite(sr), axis=1)
        a.plot(SCAN, case["scan_ode"], color="C0", lw=1.2, label="ODE, constant D")
        a.errorbar(SCAN[ok], sr[ok].mean(axis=1), yerr=sr[ok].std(axis=1, ddof=1) / math.sqrt(sr.shape[1]), fmt="s",
                   ms=3, color="C0", mfc="none", capsize=2, label="digits, constant D")
        a.axhline(sol.objective, color="k", lw=1.2, label="ODE, optimal schedule")
        mo, so = mean_sem(case["real"]["optimal"][:, -1])
        a.axhspan(mo - so, mo + so, color="k", alpha=0.25, label="digits, optimal schedule (+- s.e.)")
        a.set_xlabel("constant training noise D")
        a.set_ylabel("final test MSE at D_F")
        a.set_title("constant schedules against the optimal one", fontsize=8)
        lo = min(np.nanmin(case["scan_ode"]), np.nanmin(sr.mean(axis=1)), mo)
        a.set_ylim(lo - 0.05, lo + 0.6)
        a.legend(fontsize=6)
    fig.suptitle("Optimal DAE noise schedule from the Gaussian-mixture ODE, tested on digits 0/1 (N = 64, K = 2)"
                 + (" (quick run)" if args.quick else ""), fontsize=10)
    fig.tight_layout()
    save_figure(fig, "dae_digits.png", args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    cfg = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    data = load_split(0)
    Xtr, ytr, Xte, yte, scale = data
    fit = fit_mixture(Xtr, ytr)
    W0 = initial_weights(0)
    ev = fit["within_eigenvalues"]
    print(f"digits {CLASSES}: {len(Xtr)} train / {len(Xte)} test images, N = {N}; pixel scale {scale:.5f}")
    print(f"fit: priors {np.round(fit['priors'], 4).tolist()}, S = {np.round(fit['S'], 4).tolist()}, pooled s = "
          f"{fit['s']:.4f} (per class {np.round(fit['s_per_class'], 4).tolist()}); within-class covariance: top "
          f"eigenvalues {np.round(ev[:4], 4).tolist()} against s^2 = {fit['s'] ** 2:.4f} (isotropic in the theory), "
          f"{int(np.sum(ev < 1e-12))} null directions")
    cases, records = [], []
    for setting in cfg.settings:
        for D_F in D_FS:
            t0 = time.perf_counter()
            case = run_case(setting, D_F, data, fit, W0, cfg)
            summ = summarise(case)
            sol = case["sol"]
            resplit = resplit_check(setting, D_F, cfg)
            cases.append(case)
            records.append(case_record(case, summ, fit, resplit, args, cfg))
            D = sol.controls["D"]
            alpha_min = (sol.t_controls[np.argmin(D)] + 0.5 * (sol.t_controls[1] - sol.t_controls[0])) / case["eta"]
            print(f"\n[{setting}: eta = {case['eta']:g}, tau_F = {case['tau_F']:g} -> {case['steps']} SGD steps; "
                  f"D_F = {D_F}] solve {sol.status}, verification gap {sol.verification['relative_gap']:.1e}; "
                  f"schedule D: start {D[0]:.3f}, min {D.min():.3f} at alpha "
                  f"{alpha_min:.3f}, "
                  f"end {D[-1]:.3f}; best constant D (ODE) {summ['best_constant_D']:.4f}")
            print(f"  {'':14s} {'ODE':>9s} {'synthetic GM SGD':>20s} {'digits SGD (test)':>20s}")
            for name in ("optimal", "best_constant", "constant_D_F"):
                sm, ss = summ["synthetic"][name]
                rm, rs = summ["real"][name]
                print(f"  {name:14s} {summ['ode'][name]:9.4f} {sm:12.4f} +- {ss:.4f} {rm:12.4f} +- {rs:.4f}")
            for ref in ("best_constant", "constant_D_F"):
                key = f"optimal_minus_{ref}"
                o = summ["ode"]["optimal"] - summ["ode"][ref]
                sm, ss = summ["synthetic"][key]
                rm, rs = summ["real"][key]
                print(f"  optimal - {ref}: ODE {o:+.4f}; synthetic {sm:+.4f} +- {ss:.4f}; digits {rm:+.4f} +- {rs:.4f} "
                      f"(paired, {cfg.seeds} seeds)")
            b = summ["real_best_scanned_constant"]
            print(f"  best constant D on the digits (scan): D = {b['D']:.2f}, test MSE {b['mse'][0]:.4f} +- "
                  f"{b['mse'][1]:.4f}; optimal schedule minus it {b['optimal_minus_it'][0]:+.4f} +- "
                  f"{b['optimal_minus_it'][1]:.4f}")
            if any(summ["diverged_runs"].values()):
                print(f"  diverged runs: {summ['diverged_runs']}")
            rm, rs = resplit["real_diff"]
            om, os_ = resplit["ode_diff"]
            print(f"  {cfg.resplits} random splits x {cfg.resplit_seeds} seeds (own W0, refit, re-solved): optimal - "
                  f"best constant on digits {rm:+.4f} +- {rs:.4f} (ODE {om:+.4f} +- {os_:.4f}); optimal better in "
                  f"{resplit['splits_where_optimal_better']}/{cfg.resplits} splits; solves {resplit['statuses']}")
            print(f"  ({time.perf_counter() - t0:.0f} s)")
    write_runs(args.out / "dae_digits.h5", records)
    figure(cases, args)
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
