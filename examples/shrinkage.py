"""The 1/sqrt(n) shrinkage of the MLE and the coverage of Wald intervals, by simulation.

For each sample size n, thousands of Normal(1, 2^2) datasets are drawn at once
(``jm.models.normal.simulate`` vmapped over keys) and fitted in ONE ``jm.fit_batch`` call.
Every n uses the same array shape, datasets x the largest n, with only the first n
observations of each row active (``mask=``): one compiled fit serves all sizes, and masked
entries affect neither the values nor the derivatives of the log-likelihood.
Across datasets: the root-mean-square error of mu_hat and sigma_hat against the truth
(theory: sigma / sqrt(n) and about sigma / sqrt(2 n), so slope -1/2 on log-log axes), the
mean standard error against the empirical SD of the estimates (ratio -> 1: the inverse
observed information is the right variance), and the share of 95% Wald intervals
``conf_int(0.95)`` that contain the truth (-> 0.95; below it at small n, where the
interval uses z instead of t and, for sigma, a skewed estimator gets a symmetric interval).

Run:  python examples/shrinkage.py [--datasets 2000] [--out plots]
"""

import argparse

import _plots
import jax
import numpy as np

import jaxmle as jm

SIZES = (10, 30, 100, 300, 1_000, 3_000, 10_000)
TRUTH = {"mu": 1.0, "sigma": 2.0}
# A fixed start: the ready model's data-driven start (init=None) would also read the masked
# entries, since ``start(data)`` is not given the mask.
START = {"mu": 0.0, "sigma": 1.0}
NAMES = ("mu", "sigma")


def simulate(seed: int, n: int, datasets: int) -> np.ndarray:
    """``(datasets, n)`` draws, one key per dataset, in float64."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(seed), datasets)
        draw = jax.vmap(lambda key: jm.models.normal.simulate(key, TRUTH, n))
        return np.asarray(draw(keys))


def plot(sizes, rmse, out) -> None:
    plt = _plots.pyplot()
    if plt is None:
        return
    sizes = np.asarray(sizes, float)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for name, factor, theory, color in (("mu", 1.0, "sigma / sqrt(n)", "C0"),
                                        ("sigma", 2.0, "sigma / sqrt(2 n)", "C1")):
        axes.loglog(sizes, rmse[name], "o", color=color, label=f"RMSE of {name}_hat")
        axes.loglog(sizes, TRUTH["sigma"] / np.sqrt(factor * sizes), "-", color=color,
                    alpha=0.6, label=f"{theory}: slope -1/2")
    axes.set_xlabel("n (observations per dataset)")
    axes.set_ylabel("RMSE across datasets")
    axes.legend()
    _plots.save(figure, out, "shrinkage.png")


def main(sizes=SIZES, datasets: int = 2_000, seed: int = 0, out=None) -> dict:
    rows, longest = [], max(sizes)
    for i, n in enumerate(sizes):
        x = simulate(seed + i, longest, datasets)
        mask = np.broadcast_to(np.arange(longest) < n, x.shape)  # the first n are the data
        fits = jm.fit_batch(jm.models.normal, START, x, mask=mask)  # all datasets at once
        lower, upper = fits.conf_int(0.95)
        row = {"n": n, "x": x[:, :n].copy(), "fits": fits,
               "converged": float(np.mean(fits.converged))}
        for name in NAMES:
            estimate, truth = fits.params[name], TRUTH[name]
            row[f"rmse_{name}"] = float(np.sqrt(np.mean((estimate - truth) ** 2)))
            row[f"se_ratio_{name}"] = float(np.mean(fits.se[name]) / np.std(estimate))
            row[f"coverage_{name}"] = float(np.mean((lower[name] < truth) & (truth < upper[name])))
        rows.append(row)

    print(f"{datasets:,} Normal(mu = {TRUTH['mu']}, sigma = {TRUTH['sigma']}) datasets per n, "
          "one fit_batch call per n")
    print(f"{'n':>6s} {'RMSE mu':>9s} {'RMSE sigma':>11s} {'SE/SD mu':>9s} {'SE/SD sigma':>12s} "
          f"{'cover mu':>9s} {'cover sigma':>12s} {'converged':>10s}")
    for r in rows:
        print(f"{r['n']:6d} {r['rmse_mu']:9.5f} {r['rmse_sigma']:11.5f} {r['se_ratio_mu']:9.4f} "
              f"{r['se_ratio_sigma']:12.4f} {r['coverage_mu']:9.4f} {r['coverage_sigma']:12.4f} "
              f"{r['converged']:10.2%}")
    rmse = {name: np.array([r[f"rmse_{name}"] for r in rows]) for name in NAMES}
    slopes = {name: float(np.polyfit(np.log(sizes), np.log(rmse[name]), 1)[0])
              for name in NAMES}
    coverage_se = np.sqrt(0.95 * 0.05 / datasets)
    print(f"log-log slope of RMSE vs n: mu {slopes['mu']:.4f}, sigma {slopes['sigma']:.4f} "
          "(theory -0.5)")
    print(f"Monte-Carlo SE of a coverage near 0.95: {coverage_se:.4f}")
    if out is not None:
        plot(sizes, rmse, out)
    return {"rows": rows, "slopes": slopes, "coverage_se": coverage_se}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=2_000)
    parser.add_argument("--out", default="plots", help="directory for shrinkage.png")
    args = parser.parse_args()
    main(datasets=args.datasets, out=args.out)
