"""A two-component Gaussian mixture: local optima, multistart, and 1 vs 2 components.

The mixture likelihood has several local maxima (and saddles where the two components merge
into one). Single fits from different starts end in different places; ``jm.multistart``
fits all starts in one call, keeps the best, and counts the distinct optima. Then one
component against two: likelihood-ratio statistic, AIC and BIC. (The chi-squared reference
of the LR test is not valid for the number of components, whose null hypothesis lies on the
boundary of the parameter space — McLachlan & Peel 2000, section 6.4 — so AIC/BIC or a
parametric bootstrap decide; the naive p-value is printed only to show it.)

Run:  python examples/mixture.py [--obs 500] [--starts 24] [--out plots]
"""

import argparse
import collections

import numpy as np
from jax.scipy import stats

import _plots
import jaxmle as jm

MIXTURE = jm.models.gaussian_mixture(2)


def simulate(obs: int, seed: int) -> np.ndarray:
    """0.3 N(-2, 0.5^2) + 0.7 N(1.5, 1.5^2)."""
    rng = np.random.default_rng(seed)
    first = rng.uniform(size=obs) < 0.3
    return np.where(first, rng.normal(-2.0, 0.5, obs), rng.normal(1.5, 1.5, obs))


def plot(x, one, two, out) -> None:
    plt = _plots.pyplot()
    if plt is None:
        return
    grid = np.linspace(x.min() - 1, x.max() + 1, 400)
    p = two.params
    components = p["weights"] * stats.norm.pdf(grid[:, None], p["mu"], p["sigma"])
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(x, bins=40, density=True, color="0.85", label="data")
    axes.plot(grid, components.sum(axis=1), "C0", linewidth=2, label="2 components (best of multistart)")
    axes.plot(grid, components, "C0--", linewidth=1)
    axes.plot(grid, stats.norm.pdf(grid, one.params["mu"], one.params["sigma"]), "C3",
              label="1 component")
    axes.set_xlabel("x")
    axes.set_ylabel("density")
    axes.legend()
    _plots.save(figure, out, "mixture.png")


def main(obs: int = 500, starts: int = 24, seed: int = 1, out=None) -> dict:
    x = simulate(obs, seed)

    ms = jm.multistart(MIXTURE, None, x, starts=starts, spread=1.5)
    print(f"{starts} starts around the quantile start (spread 1.5 in unconstrained coordinates)")
    print("where single starts end:")
    endings = collections.Counter(
        (round(float(ll), 2), jm.Status(int(code)).name) for ll, code in zip(ms.fits.loglik, ms.fits.status))
    for (loglik, status), count in sorted(endings.items(), reverse=True):
        print(f"  {count:3d} starts -> log-likelihood {loglik:10.2f}  {status}")
    print(f"distinct converged optima: {int(ms.n_optima)} (multimodal: {bool(ms.multimodal)}); "
          f"best is {float(ms.loglik_gap):.2f} log-likelihood units above the next")
    best = ms.best
    print(best.summary())

    one = jm.fit(jm.models.normal, None, x)
    statistic, df, naive_p = jm.lr_test(one, best)
    print(f"\n1 vs 2 components: LR statistic {float(statistic):.2f} on {df} parameters "
          f"(naive chi-squared p = {float(naive_p):.2g}; not valid here, see the docstring)")
    print(f"  AIC  {float(one.aic):9.2f} (1)  {float(best.aic):9.2f} (2)")
    print(f"  BIC  {float(one.bic):9.2f} (1)  {float(best.bic):9.2f} (2)")
    if out is not None:
        plot(x, one, best, out)
    return {"x": x, "multistart": ms, "one": one, "lr_statistic": float(statistic), "df": df}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obs", type=int, default=500)
    parser.add_argument("--starts", type=int, default=24)
    parser.add_argument("--out", default="plots", help="directory for mixture.png")
    args = parser.parse_args()
    main(args.obs, args.starts, out=args.out)
