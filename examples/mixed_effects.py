"""A random intercept and slope per group: shrinkage of the conditional modes.

Each of 60 groups (schools, patients, sensors ...) has its own line ``y = a_g + b_g x``
with ``(a_g, b_g) = beta + u_g``, ``u_g ~ N(0, L L')``, and between 3 and 20 noisy
observations. Fitting every group alone (least squares per group) gives wild lines for
the small groups; ``jm.fit_mixed`` estimates ``beta``, ``L`` and ``sigma`` by maximum
likelihood with the random effects integrated out (exact for this linear-Gaussian model)
and reports each group's conditional mode ``beta + u_g*``: pulled from the group's own
estimate towards the population line, the more the fewer rows the group has.

Run:  python examples/mixed_effects.py [--groups 60] [--out plots]
"""

import argparse

import _plots
import numpy as np

import jaxmle as jm

TRUTH = {"beta": np.array([2.0, 0.8]), "sigma": 1.0,
         "L": np.array([[1.0, 0.0], [0.3, 0.4]])}


def simulate(groups: int, seed: int):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 21, groups)
    labels = np.repeat([f"g{k:03d}" for k in range(groups)], sizes)
    index = np.repeat(np.arange(groups), sizes)
    x = rng.uniform(-2, 2, index.size)
    X = np.column_stack([np.ones_like(x), x])
    u = rng.normal(size=(groups, 2)) @ TRUTH["L"].T
    y = X @ TRUTH["beta"] + (X * u[index]).sum(1) + rng.normal(0, TRUTH["sigma"], index.size)
    return X, y, labels, index, sizes


def plot(raw, conditional, population, sizes, out) -> None:
    plt = _plots.pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for j, (ax, name) in enumerate(zip(axes, ("intercept", "slope"))):
        lo = min(raw[:, j].min(), conditional[:, j].min())
        hi = max(raw[:, j].max(), conditional[:, j].max())
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, label="no shrinkage")
        ax.axhline(population[j], color="C3", lw=1, ls="--", label="population (beta)")
        points = ax.scatter(raw[:, j], conditional[:, j], c=sizes, cmap="viridis", s=25)
        ax.set_title(name)
        ax.set_xlabel("each group fitted alone (least squares)")
        ax.set_ylabel("conditional mode beta + u_g")
        ax.legend(loc="upper left", fontsize=8)
    figure.colorbar(points, ax=axes, label="rows in the group")
    figure.suptitle("Random effects shrink small groups towards the population line")
    _plots.save(figure, out, "mixed_effects.png")


def main(groups: int = 60, seed: int = 0, out=None) -> dict:
    X, y, labels, index, sizes = simulate(groups, seed)
    init = {"beta": np.zeros(2), "sigma": 1.0, "L": np.eye(2)}
    fit = jm.fit_mixed(jm.mixed.gaussian, jm.mixed.gaussian_random(2), init, (X, X, y),
                       labels, random=np.zeros(2),
                       constraints={"sigma": jm.positive, "L": jm.cholesky})
    print(fit.summary())
    raw = np.array([np.linalg.lstsq(X[index == k], y[index == k], rcond=None)[0]
                    for k in range(groups)])
    conditional = fit.params["beta"] + fit.random        # labels sort like the groups here
    population = fit.params["beta"]
    # Shrinkage: the distance to the population line, conditional over raw, per group.
    ratio = (np.linalg.norm(conditional - population, axis=1)
             / np.linalg.norm(raw - population, axis=1))
    small, large = sizes <= 6, sizes >= 15
    print(f"distance to beta, conditional / raw: median {np.median(ratio[small]):.2f} for "
          f"groups of <= 6 rows, {np.median(ratio[large]):.2f} for groups of >= 15 rows")
    if out is not None:
        plot(raw, conditional, population, sizes, out)
    return {"fit": fit, "raw": raw, "conditional": conditional, "ratio": ratio,
            "sizes": sizes, "data": (X, y, labels)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=60)
    parser.add_argument("--out", default="plots", help="directory for mixed_effects.png")
    args = parser.parse_args()
    main(groups=args.groups, out=args.out)
