"""A coin: 73 heads in 100 flips. The MLE, its standard error and Wald interval, and why
likelihoods are maximised on the log scale.

The Bernoulli MLE is the proportion of heads, p = 0.73, with standard error
sqrt(p (1 - p) / n). The plot shows the likelihood curve (scaled to maximum 1) with the MLE
and the 95% interval. Then the underflow lesson: with 100,000 flips the likelihood, a
product of 100,000 probabilities, is exactly 0.0 in float64, while its logarithm is a
perfectly ordinary number, and jaxmle (which works with log-likelihoods) fits it exactly.

Run:  python examples/coin.py [--out plots]
"""

import argparse

import _plots  # examples/_plots.py: matplotlib if installed, else None
import numpy as np

import jaxmle as jm


def flips(n: int, heads: int) -> np.ndarray:
    """``heads`` ones then ``n - heads`` zeros (the order does not matter to the likelihood)."""
    return np.concatenate([np.ones(heads), np.zeros(n - heads)])


def bernoulli_loglik(p, heads: int, n: int):
    """log L(p) = heads log p + tails log(1 - p)."""
    return heads * np.log(p) + (n - heads) * np.log1p(-p)


def main(n: int = 100, heads: int = 73, big_n: int = 100_000, out="plots") -> dict:
    fit = jm.fit(jm.models.bernoulli, None, flips(n, heads))
    p_hat, se = float(fit.params["p"]), float(fit.se["p"])
    se_closed = np.sqrt(p_hat * (1 - p_hat) / n)
    lower, upper = (float(bound["p"]) for bound in fit.conf_int(0.95))
    print(f"{heads} heads in {n} flips: p = {p_hat:.6f} (closed form {heads / n})")
    print(f"SE {se:.6f}  (sqrt(p(1-p)/n) = {se_closed:.6f});  "
          f"95% Wald interval [{lower:.4f}, {upper:.4f}]")

    # The same proportion of heads in big_n flips: the likelihood underflows to zero.
    big_heads = round(big_n * heads / n)
    y = flips(big_n, big_heads)
    probabilities = np.where(y == 1.0, heads / n, 1 - heads / n)
    product = float(np.prod(probabilities))
    loglik = float(np.sum(np.log(probabilities)))
    big = jm.fit(jm.models.bernoulli, None, y)
    big_p = float(big.params["p"])
    big_error = abs(big_p - big_heads / big_n) / (big_heads / big_n)
    print(f"\n{big_heads:,} heads in {big_n:,} flips:")
    print(f"likelihood as a product of probabilities: {product!r}  (underflow)")
    print(f"log-likelihood as a sum of logs:          {loglik:.4f}")
    print(f"jaxmle: p = {big_p:.10f}, relative error {big_error:.1e}, "
          f"SE {float(big.se['p']):.6f}, status {jm.Status(int(big.status)).name}")

    plt = _plots.pyplot() if out is not None else None
    if plt is not None:
        p = np.linspace(0.001, 0.999, 999)
        relative = np.exp(bernoulli_loglik(p, heads, n) - bernoulli_loglik(p_hat, heads, n))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(p, relative, color="C0", label="likelihood / maximum")
        ax.axvspan(lower, upper, color="C0", alpha=0.15, label="95% Wald interval")
        ax.axvline(p_hat, color="C3", linestyle="--", label=f"MLE p = {p_hat:.2f}")
        ax.set(xlabel="p (probability of heads)", ylabel="relative likelihood",
               title=f"{heads} heads in {n} flips")
        ax.legend(loc="upper left")
        _plots.save(fig, out, "coin_likelihood.png")

    return {"p": p_hat, "se": se, "se_closed_form": se_closed, "lower": lower,
            "upper": upper, "converged": bool(fit.converged), "big_n": big_n,
            "big_heads": big_heads, "big_product": product, "big_loglik": loglik,
            "big_fit_loglik": float(big.loglik), "big_p": big_p,
            "big_converged": bool(big.converged)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="plots",
                        help="directory for the PNG plots (default: plots/ in the current "
                             "directory; needs matplotlib)")
    args = parser.parse_args()
    main(out=args.out)
