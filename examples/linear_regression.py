"""Gaussian linear regression: the MLE is ordinary least squares, with RSS / n.

y = X beta + e, e ~ N(0, sigma^2). The log-likelihood
-n/2 log(2 pi sigma^2) - |y - X beta|^2 / (2 sigma^2) is maximised over beta by least
squares whatever sigma is, and then over sigma by sigma^2 = RSS / n. So ``jm.fit`` with
``jm.models.linear_regression`` returns the least-squares beta, but the *biased* variance
RSS / n, not the unbiased RSS / (n - p) that OLS software reports. The MLE standard errors
of beta, from the inverse observed information, are sigma_hat sqrt(diag((X'X)^-1)) with that
same sigma_hat; statsmodels' OLS standard errors are larger by sqrt(n / (n - p)).
The fits start from beta = 0, sigma = 1: the ready model's own start is the closed form,
which would leave Newton nothing to do.

Run:  python examples/linear_regression.py [--obs 200] [--out plots]
"""

import argparse

import _plots
import numpy as np

import jaxmle as jm

TRUE_BETA = np.array([1.0, 2.0, -0.5])
TRUE_SIGMA = 1.5
LINE_BETA = np.array([1.0, 2.0])  # the one-covariate case that is plotted


def simulate(rng, obs: int, beta: np.ndarray):
    X = np.column_stack([np.ones(obs), rng.standard_normal((obs, len(beta) - 1))])
    return X, X @ beta + TRUE_SIGMA * rng.standard_normal(obs)


def start(p: int) -> dict:
    return {"beta": np.zeros(p), "sigma": 1.0}


def plot(line_data, line_fit, out) -> None:
    plt = _plots.pyplot()
    if plt is None:
        return
    X, y = line_data
    grid = np.linspace(X[:, 1].min(), X[:, 1].max(), 2)
    intercept, slope = line_fit.params["beta"]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(X[:, 1], y, "k.", alpha=0.5, label="data")
    axes.plot(grid, intercept + slope * grid, "C0", linewidth=2,
              label=f"MLE: y = {intercept:.3f} + {slope:.3f} x")
    axes.set_xlabel("x")
    axes.set_ylabel("y")
    axes.legend()
    _plots.save(figure, out, "linear_regression.png")


def main(obs: int = 200, seed: int = 0, out=None) -> dict:
    rng = np.random.default_rng(seed)
    X, y = simulate(rng, obs, TRUE_BETA)
    n, p = X.shape
    fit = jm.fit(jm.models.linear_regression, start(p), (X, y))
    beta, sigma = fit.params["beta"], float(fit.params["sigma"])
    print(f"n = {n}, p = {p}, true beta = {TRUE_BETA.tolist()}, sigma = {TRUE_SIGMA}")
    print(fit.summary())

    least_squares = np.linalg.lstsq(X, y, rcond=None)[0]
    rss = float(np.sum((y - X @ least_squares) ** 2))
    ols_se = np.sqrt(rss / (n - p) * np.diag(np.linalg.inv(X.T @ X)))
    print(f"\nmax |beta_MLE - lstsq| / |lstsq|    {np.max(np.abs(beta / least_squares - 1)):.1e}")
    print(f"sigma_MLE^2 = {sigma**2:.6f}   RSS / n = {rss / n:.6f}   "
          f"RSS / (n - p) = {rss / (n - p):.6f} (unbiased, what OLS reports)")
    print(f"{'':8s} {'MLE SE':>10s} {'OLS SE':>10s} {'ratio':>8s}   sqrt(n / (n - p)) = "
          f"{np.sqrt(n / (n - p)):.6f}")
    for name, mle_se, reported in zip(fit.names, fit.se["beta"], ols_se):
        print(f"{name:8s} {mle_se:10.6f} {reported:10.6f} {reported / mle_se:8.6f}")

    line_data = simulate(rng, obs, LINE_BETA)
    line_fit = jm.fit(jm.models.linear_regression, start(len(LINE_BETA)), line_data)
    intercept, slope = line_fit.params["beta"]
    print(f"\none covariate: y = {intercept:.4f} + {slope:.4f} x, sigma = "
          f"{float(line_fit.params['sigma']):.4f} (true {LINE_BETA.tolist()}, {TRUE_SIGMA})")
    if out is not None:
        plot(line_data, line_fit, out)
    return {"X": X, "y": y, "fit": fit, "ols_se": ols_se,
            "line_data": line_data, "line_fit": line_fit}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obs", type=int, default=200)
    parser.add_argument("--out", default="plots", help="directory for linear_regression.png")
    args = parser.parse_args()
    main(args.obs, out=args.out)
