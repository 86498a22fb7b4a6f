"""Logistic regression as a Bernoulli MLE, and what perfect separation does to it.

y_i ~ Bernoulli(sigmoid(x_i' beta)): the log-likelihood sum y eta - log(1 + e^eta) with
eta = X beta. On simulated data (an intercept and two covariates) ``jm.fit`` with
``jm.models.logistic_regression`` matches statsmodels' ``Logit`` (Newton on the same
likelihood; skipped with a note if statsmodels is not installed).

Then perfect separation: y = 1 exactly when x > 0.1. Any slope can be beaten by a larger
one that sharpens the step at the threshold, so the log-likelihood rises towards 0 as the
slope grows and no finite MLE exists. jaxmle does not present the huge coefficient where
its optimiser stopped as an estimate: ``converged`` is False and ``status`` says why. The
profile log-likelihood of the slope (the intercept maximised for each fixed slope, one
``jm.fit_batch`` call over a grid of slopes) shows the rise.

Run:  python examples/logistic_separation.py [--obs 500] [--out plots]
"""

import argparse

import _plots
import jax.numpy as jnp
import numpy as np

import jaxmle as jm

TRUE_BETA = np.array([-0.5, 1.0, -2.0])
THRESHOLD = 0.1
SLOPES = np.geomspace(0.5, 500.0, 40)


def intercept_only(params, data):
    """Logistic log-likelihood terms with the slope fixed (the data carry it)."""
    x, y, slope = data
    eta = params["intercept"] + slope * x
    return y * eta - jnp.logaddexp(0.0, eta)


def compare_with_statsmodels(fit, X, y) -> dict | None:
    try:
        import statsmodels.api as sm
    except ImportError:
        print("statsmodels is not installed: comparison skipped")
        return None
    reference = sm.Logit(y, X).fit(disp=0, tol=1e-12)
    beta, se = fit.params["beta"], fit.se["beta"]
    print(f"vs statsmodels Logit: max rel. difference beta "
          f"{np.max(np.abs(beta / reference.params - 1)):.1e}, SE "
          f"{np.max(np.abs(se / reference.bse - 1)):.1e}, log-likelihood "
          f"{float(fit.loglik) - reference.llf:.1e}")
    return {"params": reference.params, "bse": reference.bse, "llf": reference.llf}


def plot(x, y, fit, profile, out) -> None:
    plt = _plots.pyplot()
    if plt is None:
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    grid = np.linspace(x.min(), x.max(), 200)
    beta = fit.params["beta"]
    left.plot(x, y, "k|", alpha=0.4, label="y (0/1)")
    left.plot(grid, 1 / (1 + np.exp(-(beta[0] + beta[1] * grid))), "C0",
              label="fitted P(y = 1), second covariate 0")
    left.set_xlabel("first covariate")
    left.legend(loc="center left")
    left.set_title("regular case")
    right.semilogx(SLOPES, profile.loglik, "C3.-")
    right.axhline(0.0, color="0.5", linestyle="--")
    right.set_xlabel("slope")
    right.set_ylabel("profile log-likelihood")
    right.set_title(f"separated at x = {THRESHOLD}: rises towards 0")
    _plots.save(figure, out, "logistic_separation.png")


def main(obs: int = 500, seed: int = 0, out=None) -> dict:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(obs), rng.standard_normal((obs, 2))])
    y = (rng.uniform(size=obs) < 1 / (1 + np.exp(-X @ TRUE_BETA))).astype(float)
    fit = jm.fit(jm.models.logistic_regression, None, (X, y))
    print(f"regular case, n = {obs}, true beta = {TRUE_BETA.tolist()}")
    print(fit.summary())
    reference = compare_with_statsmodels(fit, X, y)

    x = X[:, 1]
    separated_y = (x > THRESHOLD).astype(float)
    separated = jm.fit(jm.models.logistic_regression, None, (X[:, :2], separated_y))
    intercept, slope = separated.params["beta"]
    print(f"\nseparated case: y = 1 exactly when x > {THRESHOLD}")
    print(f"newton stopped at intercept {intercept:.4g}, slope {slope:.4g} "
          f"(threshold -intercept/slope = {-intercept / slope:.4f}) after "
          f"{int(separated.n_iter)} iterations, log-likelihood {float(separated.loglik):.2e}")
    print(f"status {jm.Status(int(separated.status)).name}, converged "
          f"{bool(separated.converged)}")
    print("  the likelihood keeps rising as the slope grows (separation): there is no finite "
          "MLE, so the stopping point is flagged, not reported as an estimate")

    batch = len(SLOPES)
    profile = jm.fit_batch(intercept_only, {"intercept": 0.0},
                           (np.broadcast_to(x, (batch, obs)),
                            np.broadcast_to(separated_y, (batch, obs)), SLOPES))
    print(f"profile log-likelihood of the slope: {float(profile.loglik[0]):.3g} at slope "
          f"{SLOPES[0]:g}, {float(profile.loglik[-1]):.3g} at slope {SLOPES[-1]:g}")
    if out is not None:
        plot(x, y, fit, profile, out)
    return {"X": X, "y": y, "fit": fit, "statsmodels": reference,
            "separated_y": separated_y, "separated": separated,
            "slopes": SLOPES, "profile": profile}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obs", type=int, default=500)
    parser.add_argument("--out", default="plots", help="directory for logistic_separation.png")
    args = parser.parse_args()
    main(args.obs, out=args.out)
