"""A three-sided die: the MLE on the probability simplex equals the observed proportions.

100 rolls of a die with P = (0.5, 0.2, 0.3) are fitted with ``jm.models.categorical(3)``,
whose probabilities live on the simplex (jaxmle optimises in additive log-ratio
coordinates). The estimate is the vector of observed proportions and each standard error is
a proportion's, sqrt(p (1 - p) / n). A brute-force grid search over the simplex (step 0.001
in (p1, p2), p3 = 1 - p1 - p2) finds its best point within one grid step of the MLE, never
above the MLE's log-likelihood. The plot shows the log-likelihood over the simplex.

Run:  python examples/multinomial_die.py [--out plots]
"""

import argparse

import _plots  # examples/_plots.py: matplotlib if installed, else None
import numpy as np

import jaxmle as jm


def grid_search(counts, step: float):
    """Log-likelihood sum_j counts_j log p_j on the grid p1, p2 = step, 2 step, ...; NaN
    outside the open simplex. Returns (axis, values) with values[i2, i1] at (p1, p2)."""
    axis = np.arange(1, round(1 / step)) * step
    p1, p2 = axis[None, :], axis[:, None]
    p3 = 1.0 - p1 - p2
    inside = p3 > step / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        values = counts[0] * np.log(p1) + counts[1] * np.log(p2) + counts[2] * np.log(p3)
    return axis, np.where(inside, values, np.nan)


def main(n: int = 100, probs=(0.5, 0.2, 0.3), step: float = 0.001, seed: int = 0,
         out="plots") -> dict:
    rolls = np.random.default_rng(seed).choice(3, size=n, p=probs).astype(float)
    counts = np.bincount(rolls.astype(int), minlength=3)
    fit = jm.fit(jm.models.categorical(3), None, rolls)
    p_hat, se = np.asarray(fit.params["probs"]), np.asarray(fit.se["probs"])
    proportions = counts / n
    print(f"{n} rolls, counts {counts.tolist()}, status {jm.Status(int(fit.status)).name}")
    print(f"{'face':>4} {'true P':>7} {'MLE':>10} {'count/n':>8} {'SE':>10} {'sqrt(p(1-p)/n)':>15}")
    for face in range(3):
        closed_se = np.sqrt(proportions[face] * (1 - proportions[face]) / n)
        print(f"{face + 1:>4} {probs[face]:>7.2f} {p_hat[face]:>10.6f} "
              f"{proportions[face]:>8.2f} {se[face]:>10.6f} {closed_se:>15.6f}")

    axis, values = grid_search(counts, step)
    i2, i1 = np.unravel_index(np.nanargmax(values), values.shape)
    best = np.array([axis[i1], axis[i2], 1.0 - axis[i1] - axis[i2]])
    distance = np.max(np.abs(best - p_hat))
    print(f"\ngrid search (step {step}): best {np.round(best, 4).tolist()}, "
          f"log-likelihood {np.nanmax(values):.10f}")
    print(f"jaxmle log-likelihood {float(fit.loglik):.10f}, minus grid best "
          f"{float(fit.loglik) - np.nanmax(values):.1e} (>= 0 up to float64 rounding)")
    print(f"the grid's best point is {distance / step:.2f} grid steps from the MLE")

    plt = _plots.pyplot() if out is not None else None
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
        image = ax.contourf(axis, axis, values - np.nanmax(values),
                            levels=np.linspace(-30, 0, 31), extend="min", cmap="viridis")
        fig.colorbar(image, ax=ax, label="log-likelihood minus its maximum")
        ax.plot(p_hat[0], p_hat[1], "r*", markersize=12, label="MLE (observed proportions)")
        ax.plot(probs[0], probs[1], "x", color="C1", markersize=10, mew=2, label="true P")
        ax.set(xlabel="p1", ylabel="p2", title=f"Three-sided die, {n} rolls (p3 = 1 - p1 - p2)",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper right")
        _plots.save(fig, out, "multinomial_die.png")

    return {"rolls": rolls, "counts": counts, "probs": p_hat, "se": se,
            "loglik": float(fit.loglik), "converged": bool(fit.converged),
            "grid_best": best, "grid_loglik": float(np.nanmax(values)), "step": step}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="plots",
                        help="directory for the PNG plots (default: plots/ in the current "
                             "directory; needs matplotlib)")
    args = parser.parse_args()
    main(out=args.out)
