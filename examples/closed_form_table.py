"""The closed-form MLEs of the classic distributions, one line each, against jaxmle.

Dice (categorical, 6 faces: the proportions), heights (normal: the mean and the biased
standard deviation), Poisson counts (the mean), binomial successes (total successes / total
trials), exponential waiting times (1 / mean) and geometric trials to a first success
(1 / mean). Each dataset is drawn with the model's own ``simulate``; ``jm.fit(model, None,
data)`` starts from the model's data-driven start, which for these models already is the
closed form, so jaxmle certifies it (zero gradient, positive definite information) in 0
iterations; a second fit from a neutral start far away (column "neutral") shows the
optimiser itself reaching the same value. SEs come from the exact Hessian and match the
closed-form inverse observed information (``model.closed_form_se``).

Run:  python examples/closed_form_table.py [--n 1000]
"""

import argparse

import jax
import numpy as np

import jaxmle as jm

M = jm.models
# (label, model, true parameters, a neutral start far from the data)
CASES = [
    ("dice", M.categorical(6), {"probs": np.full(6, 1 / 6)},
     {"probs": np.array([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])}),
    ("heights (cm)", M.normal, {"mu": 170.0, "sigma": 7.0}, {"mu": 0.0, "sigma": 1.0}),
    ("counts", M.poisson, {"rate": 3.5}, {"rate": 1.0}),
    ("binomial", M.binomial, {"p": 0.3}, {"p": 0.5}),
    ("waiting times", M.exponential, {"rate": 0.5}, {"rate": 1.0}),
    ("geometric", M.geometric, {"p": 0.25}, {"p": 0.5}),
]


def flat(tree) -> np.ndarray:
    """The entries of a parameter pytree in the order of ``fit.names``, as float64 numpy
    (``jax.flatten_util.ravel_pytree`` would round them to float32 outside ``enable_x64``)."""
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(tree)])


def main(n: int = 1000, seed: int = 0, neutral: bool = True) -> dict:
    """Prints the table and returns its rows and the simulated data; ``neutral=False`` skips
    the fits from the neutral starts (half the compilation time)."""
    rows, data = [], {}
    keys = jax.random.split(jax.random.key(seed), len(CASES))
    header = (f"{'data':<14} {'model':<15} {'param':<9} {'jaxmle':>12} {'closed form':>12} "
              f"{'rel diff':>8} {'neutral':>8} {'iters':>5} {'SE':>10} {'closed SE':>10}")
    print(f"n = {n} observations per dataset\n{header}\n{'-' * len(header)}")
    for key, (label, model, truth, start) in zip(keys, CASES):
        with jax.enable_x64(True):  # simulate and the closed forms compute in jax.numpy
            x = jax.tree_util.tree_map(np.asarray, model.simulate(key, truth, n))
            closed, closed_se = flat(model.closed_form(x)), flat(model.closed_form_se(x))
        fit = jm.fit(model, None, x)
        far = jm.fit(model, start, x) if neutral else fit
        estimate, se, far_estimate = flat(fit.params), flat(fit.se), flat(far.params)
        data[label] = x
        for i, name in enumerate(fit.names):
            row = {"data": label, "model": model.name, "parameter": name,
                   "estimate": estimate[i], "closed_form": closed[i],
                   "rel_diff": abs(estimate[i] - closed[i]) / abs(closed[i]),
                   "neutral_rel_diff": abs(far_estimate[i] - closed[i]) / abs(closed[i]),
                   "n_iter": int(far.n_iter), "se": se[i], "closed_form_se": closed_se[i],
                   "converged": bool(fit.converged and far.converged)}
            rows.append(row)
            print(f"{label:<14} {model.name:<15} {name:<9} {row['estimate']:>12.6f} "
                  f"{row['closed_form']:>12.6f} {row['rel_diff']:>8.1e} "
                  f"{row['neutral_rel_diff']:>8.1e} {row['n_iter']:>5} {row['se']:>10.6f} "
                  f"{row['closed_form_se']:>10.6f}")
    print("rel diff: |jaxmle - closed form| / |closed form|; neutral: the same for the fit "
          "from the neutral start, which took 'iters' Newton iterations")
    return {"rows": rows, "data": data}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="observations per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-neutral", action="store_true", help="skip the neutral-start fits")
    args = parser.parse_args()
    main(args.n, args.seed, neutral=not args.no_neutral)
