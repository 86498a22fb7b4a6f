"""Censored durations: Weibull or log-normal? Kaplan-Meier against two fitted survival curves.

A sample of lifetimes (Weibull, shape 1.6, scale 12) is observed under random censoring
(each unit leaves the study at a uniform time in [2, 30]): about a third of the durations
are only known to exceed the time at which observation stopped. ``jm.censored`` turns the
ready Weibull and log-normal models into their censored versions; each fit's survival curve
``S(t)`` gets pointwise 95% Wald intervals by the delta method (``jm.delta_method``), and
the Kaplan-Meier estimate (computed here in a few lines) is the model-free reference.
AIC chooses between the two models.

Run:  python examples/survival.py [--n 300] [--out plots]
"""

import argparse

import _plots  # examples/_plots.py: matplotlib if installed, else None
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

import jaxmle as jm


def simulate(n: int, seed: int = 7):
    """``(x, observed)``: Weibull(1.6, 12) lifetimes censored at uniform [2, 30] times."""
    rng = np.random.default_rng(seed)
    life = 12.0 * rng.weibull(1.6, size=n)
    leaves = rng.uniform(2.0, 30.0, size=n)
    return np.minimum(life, leaves), (life <= leaves).astype(float)


def kaplan_meier(x, observed):
    """Event times and the Kaplan-Meier survival just after each: the product over event
    times t of (1 - deaths at t / number at risk at t) (Kaplan & Meier 1958)."""
    times = np.unique(x[observed == 1])
    at_risk = np.array([(x >= t).sum() for t in times])
    deaths = np.array([((x == t) & (observed == 1)).sum() for t in times])
    return times, np.cumprod(1.0 - deaths / at_risk)


SURVIVAL = {
    "weibull": lambda p, t: jnp.exp(-(t / p["scale"]) ** p["shape"]),
    "lognormal": lambda p, t: special.ndtr((p["mu"] - jnp.log(t)) / p["sigma"]),
}


def main(n: int = 300, out="plots", seed: int = 7) -> dict:
    x, observed = simulate(n, seed)
    print(f"{n} units, {int(observed.sum())} events, {int(n - observed.sum())} censored")
    times, km = kaplan_meier(x, observed)
    grid = np.linspace(0.2, float(x.max()), 200)

    results = {}
    for name, survival in SURVIVAL.items():
        fit = jm.fit(jm.censored(getattr(jm.models, name)), None, (x, observed))
        curve, se = jm.delta_method(lambda p: survival(p, grid), fit)
        at_events = np.asarray(survival(fit.params, times))
        results[name] = {"fit": fit, "curve": np.asarray(curve), "se": np.asarray(se),
                         "km_gap": float(np.max(np.abs(at_events - km)))}
        estimates = ", ".join(f"{k} {float(v):.3f} (se {float(fit.se[k]):.3f})"
                              for k, v in fit.params.items())
        print(f"{name:>9}: {estimates}; loglik {float(fit.loglik):.2f}, AIC {float(fit.aic):.2f}, "
              f"largest gap to Kaplan-Meier {results[name]['km_gap']:.3f}")
    chosen = min(results, key=lambda name: float(results[name]["fit"].aic))
    gap = abs(float(results["weibull"]["fit"].aic) - float(results["lognormal"]["fit"].aic))
    print(f"AIC chooses the {chosen} model (by {gap:.1f})")

    plt = _plots.pyplot() if out is not None else None
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        ax.step(np.concatenate([[0.0], times]), np.concatenate([[1.0], km]), where="post",
                color="black", label="Kaplan-Meier")
        for color, (name, result) in zip(("C0", "C3"), results.items()):
            fit = result["fit"]
            lower = np.clip(result["curve"] - 1.96 * result["se"], 0.0, 1.0)
            upper = np.clip(result["curve"] + 1.96 * result["se"], 0.0, 1.0)
            ax.plot(grid, result["curve"], color=color,
                    label=f"{name} (AIC {float(fit.aic):.1f})")
            ax.fill_between(grid, lower, upper, color=color, alpha=0.2)
        censored_at = x[observed == 0]
        step = np.searchsorted(times, censored_at, side="right") - 1  # the curve's value there
        ax.plot(censored_at, np.where(step >= 0, km[np.maximum(step, 0)], 1.0), "|", color="gray",
                markersize=6, label="censored")
        ax.set(xlabel="time", ylabel="S(t), survival",
               title=f"{n} censored lifetimes: fitted curves with 95% pointwise intervals")
        ax.legend(loc="upper right")
        _plots.save(fig, out, "survival.png")

    return {"x": x, "observed": observed, "km_times": times, "km": km, "chosen": chosen,
            **{name: result for name, result in results.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="units (default 300)")
    parser.add_argument("--out", default="plots",
                        help="directory for the PNG plot (default: plots/ in the current "
                             "directory; needs matplotlib)")
    args = parser.parse_args()
    main(n=args.n, out=args.out)
