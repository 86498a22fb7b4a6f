"""Every jaxmle method on the PEERS.md workloads: time, convergence, iterations, accuracy.

Workloads (as in ../shared/PEERS.md): Normal(mu, sigma) and Gamma(shape, rate) from the
start (0, 1) / (1, 1), logistic regression with p = 5 (intercept included) from zero;
B datasets x 1,000 observations. "first" is the first call (trace + compile + run),
"steady" a second call of the same shapes. Accuracy is the largest relative difference from the closed form
(Normal) or from the first method's estimates (Gamma, logistic: the other methods' agreement).

Run:  python benchmarks/engine.py [--datasets 1000] [--methods newton,bfgs,lbfgs]
"""

import argparse
import time

import jax.numpy as jnp
import numpy as np
from jax.scipy import stats

import jaxmle as jm


def normal(p, x):
    return stats.norm.logpdf(x, p["mu"], p["sigma"])


def gamma(p, x):
    return stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"])


def logistic(beta, data):
    X, y = data
    eta = X @ beta
    return y * eta - jnp.logaddexp(0.0, eta)


def workloads(datasets: int, rng: np.random.Generator):
    n, p = 1_000, 5
    X = np.concatenate([np.ones((datasets, n, 1)), rng.normal(size=(datasets, n, p - 1))], axis=2)
    y = (rng.uniform(size=(datasets, n)) < 1 / (1 + np.exp(-(X @ np.array([0.5, -1.0, 0.7, 0.3, -0.2]))))).astype(float)
    return {
        "normal": (normal, {"mu": 0.0, "sigma": 1.0}, rng.normal(7.2, 2.8, size=(datasets, n)),
                   {"sigma": jm.positive}),
        "gamma": (gamma, {"shape": 1.0, "rate": 1.0}, rng.gamma(2.5, 1 / 1.7, size=(datasets, n)),
                  jm.positive),
        "logistic": (logistic, jnp.zeros(p), (X, y), None),
    }


def _flat(params, batch):
    return np.concatenate([np.asarray(v).reshape(batch, -1) for v in
                           (params.values() if isinstance(params, dict) else [params])], axis=1)


def main(datasets: int = 1_000, methods=("newton", "bfgs", "lbfgs")) -> None:
    rng = np.random.default_rng(42)
    print(f"{'workload':9} {'method':7} {'first s':>8} {'steady s':>9} {'fits/s':>9} "
          f"{'converged':>9} {'iter mean':>9} {'iter max':>8} {'max rel err':>11}")
    for name, (log_density, init, data, constraints) in workloads(datasets, rng).items():
        reference = None
        for method in methods:
            def run(log_density=log_density, init=init, data=data, constraints=constraints,
                    method=method):
                return jm.fit_batch(log_density, init, data, constraints=constraints, method=method)

            start = time.perf_counter(); run(); first = time.perf_counter() - start
            start = time.perf_counter(); fits = run(); steady = time.perf_counter() - start
            estimate = _flat(fits.params, datasets)
            if reference is None:
                reference = estimate if name != "normal" else np.column_stack(
                    [data.mean(axis=1), data.std(axis=1)])
            error = np.max(np.abs(estimate - reference) / np.abs(reference))
            print(f"{name:9} {method:7} {first:8.2f} {steady:9.3f} {datasets / steady:9.0f} "
                  f"{fits.converged.mean():9.4f} {fits.n_iter.mean():9.2f} {fits.n_iter.max():8d} "
                  f"{error:11.1e}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=1_000)
    parser.add_argument("--methods", default="newton,bfgs,lbfgs")
    parser.add_argument("--write-results", action="store_true",
                        help="write the printed tables into benchmarks/RESULTS.md")
    args = parser.parse_args()
    import _report

    with _report.results_section("engine", "Engine, by method: `python benchmarks/engine.py "
                                 f"--datasets {args.datasets} --methods {args.methods}`",
                                 write=args.write_results, fenced=True):
        main(args.datasets, tuple(args.methods.split(",")))
