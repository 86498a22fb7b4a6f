"""The Normal log-likelihood surface, and why the MLE of the variance is biased.

Part 1: n draws from N(7.2, 2.8^2), fitted with ``jm.models.normal``; the log-likelihood
over a grid of (mu, sigma), computed with ``jax.vmap`` of the model's own log-density, is
contour-plotted with the MLE marked. The surface peaks at the sample mean and the biased
sample standard deviation.

Part 2: the MLE of the variance is RSS / n, not the unbiased s^2 = RSS / (n - 1): on average
it is (n - 1) / n times the true variance. For each n, one ``jm.fit_batch`` call fits many
simulated datasets, and the table compares the mean of sigma_hat^2 / sigma^2 with (n - 1) / n
(and the mean of s^2 / sigma^2 with 1).

Run:  python examples/normal_surface.py [--out plots]
"""

import argparse

import _plots  # examples/_plots.py: matplotlib if installed, else None
import jax
import jax.numpy as jnp
import numpy as np

import jaxmle as jm

MU, SIGMA = 7.2, 2.8
model = jm.models.normal


def surface(x, mu_grid, sigma_grid):
    """Total log-likelihood at every (sigma, mu) grid pair: shape (len(sigma), len(mu))."""
    with jax.enable_x64(True):
        total = lambda mu, sigma: jnp.sum(model.log_density({"mu": mu, "sigma": sigma}, x))
        over_mu = jax.vmap(total, in_axes=(0, None))
        return np.asarray(jax.vmap(over_mu, in_axes=(None, 0))(mu_grid, sigma_grid))


def main(n: int = 200, grid: int = 121, sizes=(5, 10, 20, 50, 100, 1000),
         datasets: int = 4000, seed: int = 0, out="plots") -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(MU, SIGMA, n)
    fit = jm.fit(model, None, x)
    mu_hat, sigma_hat = float(fit.params["mu"]), float(fit.params["sigma"])
    print(f"n = {n}: mu = {mu_hat:.6f} (mean {x.mean():.6f}), "
          f"sigma = {sigma_hat:.6f} (biased sd {x.std():.6f}), loglik {float(fit.loglik):.4f}")

    mu_grid = np.linspace(MU - 1.5, MU + 1.5, grid)
    sigma_grid = np.linspace(0.6 * SIGMA, 1.6 * SIGMA, grid)
    loglik = surface(x, mu_grid, sigma_grid)
    row, col = np.unravel_index(np.argmax(loglik), loglik.shape)
    print(f"grid maximum {loglik[row, col]:.4f} at mu = {mu_grid[col]:.4f}, "
          f"sigma = {sigma_grid[row]:.4f} (grid {grid} x {grid})")

    # Many datasets per n, one batched fit each: the average MLE of the variance.
    table = []
    print(f"\n{datasets} datasets per n, true sigma^2 = {SIGMA**2:.2f}")
    print(f"{'n':>6} {'mean sigma_hat^2/sigma^2':>25} {'(n-1)/n':>9} {'mean s^2/sigma^2':>17}")
    for size in sizes:
        samples = rng.normal(MU, SIGMA, (datasets, size))
        fits = jm.fit_batch(model, None, samples)
        mle = np.mean(fits.params["sigma"] ** 2) / SIGMA**2
        unbiased = mle * size / (size - 1)
        table.append({"n": size, "mle": mle, "expected": (size - 1) / size,
                      "unbiased": unbiased, "converged": float(np.mean(fits.converged)),
                      "samples": samples, "sigma": fits.params["sigma"]})
        print(f"{size:>6} {mle:>25.4f} {(size - 1) / size:>9.4f} {unbiased:>17.4f}")

    plt = _plots.pyplot() if out is not None else None
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        levels = -np.array([50, 20, 10, 5, 3, 2, 1, 0.5, 0.1])
        contours = ax.contour(mu_grid, sigma_grid, loglik - loglik.max(), levels=levels,
                              cmap="viridis")
        ax.clabel(contours, fontsize=7)
        ax.plot(mu_hat, sigma_hat, "r*", markersize=12, label="MLE")
        ax.plot(MU, SIGMA, "k+", markersize=10, label="truth")
        ax.set(xlabel="mu", ylabel="sigma",
               title=f"Normal log-likelihood minus its maximum, n = {n}")
        ax.legend()
        _plots.save(fig, out, "normal_surface.png")

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ns = np.array(sizes)
        ax.semilogx(ns, [r["mle"] for r in table], "o", label="mean sigma_hat^2 / sigma^2 (MLE)")
        ax.semilogx(ns, [r["unbiased"] for r in table], "s", label="mean s^2 / sigma^2")
        curve = np.geomspace(ns.min(), ns.max(), 200)
        ax.semilogx(curve, (curve - 1) / curve, "k-", lw=1, label="(n - 1) / n")
        ax.axhline(1.0, color="gray", ls=":")
        ax.set(xlabel="n", ylabel="ratio to the true variance",
               title="The MLE of the variance is biased by (n - 1) / n")
        ax.legend()
        _plots.save(fig, out, "variance_bias.png")

    return {"x": x, "mu": mu_hat, "sigma": sigma_hat, "se": fit.se, "loglik": float(fit.loglik),
            "converged": bool(fit.converged), "mu_grid": mu_grid, "sigma_grid": sigma_grid,
            "surface": loglik, "table": table}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="plots",
                        help="directory for the PNG plots (default: plots/ in the current "
                             "directory; needs matplotlib)")
    args = parser.parse_args()
    main(out=args.out)
