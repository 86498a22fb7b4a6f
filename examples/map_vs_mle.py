"""MAP versus MLE: 3 heads in 3 flips.

The likelihood p^3 keeps rising all the way to p = 1, so the MLE sits on the boundary of
the parameter space: there is no interior optimum with a finite standard error. jaxmle says
so (status BOUNDARY, ``converged`` False) instead of reporting a confident 1.0 +/- 0.
A Beta(2, 2) prior, a ``jm.Model`` with ``log_prior=``, pulls the estimate inside: the MAP, the mode of
the Beta(heads + 2, tails + 2) posterior, is (3 + 2 - 1) / (3 + 2 + 2 - 2) = 0.8 exactly, and
that fit converges. The plot shows the likelihood, prior and posterior (each scaled to
maximum 1) with the MLE and MAP marked.

Run:  python examples/map_vs_mle.py [--out plots]
"""

import argparse

import _plots  # examples/_plots.py: matplotlib if installed, else None
import numpy as np
from jax.scipy.stats import beta

import jaxmle as jm


def main(heads: int = 3, flips: int = 3, a: float = 2.0, b: float = 2.0, out="plots") -> dict:
    y = np.concatenate([np.ones(heads), np.zeros(flips - heads)])
    mle = jm.fit(jm.models.bernoulli, None, y)
    status = jm.Status(int(mle.status)).name
    print(f"{heads} heads in {flips} flips")
    print(f"MLE: p = {float(mle.params['p']):.9f}, status {status}, "
          f"converged {bool(mle.converged)}")
    if not mle.converged:
        print("  the likelihood keeps rising up to p = 1: no interior optimum with a finite "
              "standard error exists, so the fit is flagged, not trusted")

    bernoulli = jm.models.bernoulli
    with_prior = jm.Model(bernoulli.log_density, constraints=bernoulli.constraints,
                          log_prior=lambda params: beta.logpdf(params["p"], a, b))
    map_fit = jm.fit(with_prior, bernoulli.start, y)
    map_p, expected = float(map_fit.params["p"]), (heads + a - 1) / (flips + a + b - 2)
    lower, upper = (float(bound["p"]) for bound in map_fit.conf_int(0.95))
    print(f"MAP with a Beta({a:g}, {b:g}) prior: p = {map_p:.10f} "
          f"(closed form (h + a - 1) / (n + a + b - 2) = {expected:.10f}), "
          f"status {jm.Status(int(map_fit.status)).name}")
    print(f"  SE {float(map_fit.se['p']):.6f} (from the curvature of the log-posterior), "
          f"95% Wald interval [{lower:.4f}, {upper:.4f}]; "
          f"log-likelihood at the MAP {float(map_fit.loglik):.6f} (prior excluded)")
    if upper > 1.0:
        print("  the Wald interval p -/+ 1.96 SE crosses p = 1: after 3 flips the posterior is far "
              "from the normal curve that interval assumes")

    plt = _plots.pyplot() if out is not None else None
    if plt is not None:
        p = np.linspace(0.0, 1.0, 501)
        curves = {"likelihood p^h (1-p)^t": p**heads * (1 - p) ** (flips - heads),
                  f"prior Beta({a:g}, {b:g})": p ** (a - 1) * (1 - p) ** (b - 1),
                  "posterior": p ** (heads + a - 1) * (1 - p) ** (flips - heads + b - 1)}
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for (label, curve), style in zip(curves.items(), ("-", ":", "--")):
            ax.plot(p, curve / curve.max(), style, label=label)
        ax.axvline(float(mle.params["p"]), color="C0", alpha=0.5, label=f"MLE ({status})")
        ax.axvline(map_p, color="C2", alpha=0.5, label=f"MAP = {map_p:.2f}")
        ax.set(xlabel="p", ylabel="scaled to maximum 1", title=f"{heads} heads in {flips} flips")
        ax.legend(loc="upper left", fontsize=8)
        _plots.save(fig, out, "map_vs_mle.png")

    return {"mle_p": float(mle.params["p"]), "mle_status": int(mle.status),
            "mle_converged": bool(mle.converged), "map_p": map_p, "map_expected": expected,
            "map_se": float(map_fit.se["p"]), "map_loglik": float(map_fit.loglik),
            "map_converged": bool(map_fit.converged)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="plots",
                        help="directory for the PNG plots (default: plots/ in the current "
                             "directory; needs matplotlib)")
    args = parser.parse_args()
    main(out=args.out)
