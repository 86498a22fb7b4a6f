"""Convergence against the closed forms: every ready model with a closed-form MLE, every method.

For each model, ``--datasets`` datasets of ``--obs`` observations are simulated from known
parameters (``model.simulate``) and fitted in one ``jm.fit_batch`` call per method from a
fixed start far from the answer (not the model's data-driven start, which is the closed form
itself). Three tables:

1. **Closed form**: max and median ``|estimate - closed form| / |closed form|`` over datasets
   and parameters; the same for the standard errors against ``model.closed_form_se`` (the
   inverse observed information at the closed-form MLE); converged fraction; median and max
   iterations; compile time (first call minus steady) and steady time of the whole batch.
2. **Cramer-Rao** (Newton fits): per parameter, the empirical variance of the estimates across
   datasets over the mean of SE^2 (about 1 when the SEs are right: the Fisher bound is
   attained), and the coverage of the 95% Wald interval of the true value. Monte-Carlo
   standard errors of both are printed with them.
3. **1/sqrt(n)**: relative RMSE of each estimate against the true parameter for n = 10 ...
   100,000 (Newton), and the slope of log RMSE on log n (about -1/2), also plotted
   (``--plot DIR``, matplotlib optional). Fewer datasets at large n keep memory bounded.

Run:  python benchmarks/closed_forms.py [--datasets 10000] [--obs 1000] [--plot DIR]
      python benchmarks/closed_forms.py --quick      (small sizes, every model and method:
                                                      ~5 min on 2 cores, mostly compiling;
                                                      the tests run it on the Normal model)
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmle as jm

# The examples' optional-matplotlib helper.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import _plots  # noqa: E402


class Benchmark(NamedTuple):
    model: jm.models.ReadyModel
    truth: dict
    start: dict  # a generic start far from the truth


MODELS = {
    "bernoulli": Benchmark(jm.models.bernoulli, {"p": 0.3}, {"p": 0.5}),
    "binomial": Benchmark(jm.models.binomial, {"p": 0.35}, {"p": 0.5}),
    "geometric": Benchmark(jm.models.geometric, {"p": 0.25}, {"p": 0.5}),
    "poisson": Benchmark(jm.models.poisson, {"rate": 4.2}, {"rate": 1.0}),
    "exponential": Benchmark(jm.models.exponential, {"rate": 2.5}, {"rate": 1.0}),
    "normal": Benchmark(jm.models.normal, {"mu": 7.2, "sigma": 2.8}, {"mu": 0.0, "sigma": 1.0}),
    "lognormal": Benchmark(jm.models.lognormal, {"mu": 0.4, "sigma": 0.9},
                           {"mu": 0.0, "sigma": 1.0}),
    "categorical(3)": Benchmark(jm.models.categorical(3), {"probs": np.array([0.2, 0.5, 0.3])},
                                {"probs": np.full(3, 1 / 3)}),
    "linear_regression": Benchmark(
        jm.models.linear_regression, {"beta": np.array([1.0, -2.0, 0.5]), "sigma": 1.5},
        {"beta": np.zeros(3), "sigma": 1.0}),
}
# The optax method: Adam on the mean log-likelihood per observation (learning rates do not
# depend on n), stopped at a relative gradient of 1e-8 (it converges linearly).
METHODS = {"newton": ("newton", {}), "bfgs": ("bfgs", {}), "lbfgs": ("lbfgs", {}),
           "adam(0.05)": (optax.adam(0.05), {"gtol": 1e-8})}
SIZES = (10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
# Datasets per n in the 1/sqrt(n) check: at most this many observations in one batch.
SHRINKAGE_OBSERVATIONS = 20_000_000
WALD_LEVEL = 0.95


def simulate(bench: Benchmark, datasets: int, obs: int, seed: int):
    """``datasets`` datasets of ``obs`` observations at the true parameters (float64)."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(seed), datasets)
        data = jax.vmap(lambda key: bench.model.simulate(key, bench.truth, obs))(keys)
        return jax.tree_util.tree_map(np.asarray, data)


def closed_forms(model, data):
    """The closed-form MLEs and their SEs of every dataset, as host pytrees."""
    with jax.enable_x64(True):
        mle = jax.vmap(model.closed_form)(data)
        se = jax.vmap(model.closed_form_se)(data)
        return jax.tree_util.tree_map(np.asarray, (mle, se))


def flat(tree, datasets: int) -> np.ndarray:
    """``(datasets, k)``: the leaves of a batched pytree side by side (``Fit.names`` order)."""
    return np.concatenate([np.asarray(leaf, float).reshape(datasets, -1)
                           for leaf in jax.tree_util.tree_leaves(tree)], axis=1)


def timed_fit(bench: Benchmark, data, method, options):
    """The batch fit and its first (trace + compile + run) and steady (second call) times."""
    times = []
    for _ in range(2):
        begin = time.perf_counter()
        fits = jm.fit_batch(bench.model, bench.start, data, method=method, **options)
        times.append(time.perf_counter() - begin)
    return fits, times[0], times[1]


def closed_form_row(name, method_name, bench, data, closed, closed_se, datasets):
    method, options = METHODS[method_name]
    fits, first, steady = timed_fit(bench, data, method, options)
    error = np.abs(flat(fits.params, datasets) / flat(closed, datasets) - 1.0)
    se_error = np.abs(flat(fits.se, datasets) / flat(closed_se, datasets) - 1.0)
    return {"model": name, "method": method_name, "max_err": np.max(error),
            "median_err": np.median(error), "max_se_err": np.max(se_error),
            "converged": np.mean(fits.converged), "median_iter": np.median(fits.n_iter),
            "max_iter": int(np.max(fits.n_iter)), "compile": first - steady, "steady": steady,
            "fits": fits}


def cramer_rao_rows(name, bench, fits):
    """Per parameter: var(estimate) / mean(SE^2) and Wald coverage, with Monte-Carlo errors."""
    datasets = len(fits)
    estimate, se = flat(fits.params, datasets), flat(fits.se, datasets)
    lower, upper = (flat(bound, datasets) for bound in fits.conf_int(WALD_LEVEL))
    truth = flat(jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[None], bench.truth), 1)[0]
    covered = (lower <= truth) & (truth <= upper)
    rows = []
    for j, parameter in enumerate(fits.names):
        ratio = np.var(estimate[:, j]) / np.mean(se[:, j] ** 2)
        rows.append({"model": name, "parameter": parameter, "ratio": ratio,
                     # var of a sample variance ~ 2 var^2 / (B - 1) for near-normal estimates
                     "ratio_mc": ratio * math.sqrt(2.0 / (datasets - 1)),
                     "coverage": np.mean(covered[:, j]),
                     "coverage_mc": math.sqrt(WALD_LEVEL * (1 - WALD_LEVEL) / datasets)})
    return rows


def shrinkage(bench: Benchmark, sizes, max_datasets: int, seed: int):
    """Relative RMSE against the truth per n and parameter, and the log-log slope of each."""
    truth = flat(jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[None], bench.truth), 1)[0]
    rmse, converged = [], []
    for n in sizes:
        datasets = int(min(max_datasets, max(200, SHRINKAGE_OBSERVATIONS // n)))
        fits = jm.fit_batch(bench.model, None, simulate(bench, datasets, n, seed + n))
        error = flat(fits.params, datasets) - truth
        rmse.append(np.sqrt(np.mean(error**2, axis=0)) / np.abs(truth))
        converged.append(np.mean(fits.converged))
    rmse = np.array(rmse)  # (len(sizes), k)
    slopes = np.polyfit(np.log(sizes), np.log(rmse), 1)[0]
    return {"names": fits.names, "rmse": rmse, "slopes": np.atleast_1d(slopes),
            "converged": np.array(converged)}


def plot_shrinkage(results: dict, sizes, directory) -> None:
    plt = _plots.pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(figsize=(7, 5))
    for name, result in results.items():
        for j, parameter in enumerate(result["names"]):
            axes.loglog(sizes, result["rmse"][:, j], marker="o", markersize=3,
                        label=f"{name}: {parameter} (slope {result['slopes'][j]:.3f})")
    reference = np.array(sizes, float)
    axes.loglog(reference, 2.0 / np.sqrt(reference), "k--", linewidth=2, label="slope -1/2")
    axes.set_xlabel("observations per dataset n")
    axes.set_ylabel("RMSE / |true value|")
    axes.set_title("Error of the MLE shrinks like 1/sqrt(n)")
    axes.legend(fontsize=6, ncol=2)
    _plots.save(figure, directory, "shrinkage.png")


def print_tables(rows, cr_rows, shrink, sizes, datasets, obs) -> None:
    print(f"\n## Closed forms: {datasets:,} datasets x {obs:,} observations, far start\n")
    print("| model | method | max rel err | median rel err | max SE rel err | converged "
          "| iterations median / max | compile s | steady s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['method']} | {r['max_err']:.1e} | {r['median_err']:.1e} "
              f"| {r['max_se_err']:.1e} | {r['converged']:.2%} | {r['median_iter']:g} / "
              f"{r['max_iter']} | {r['compile']:.2f} | {r['steady']:.3f} |")
    for method_name in dict.fromkeys(r["method"] for r in rows):
        worst = max(r["max_err"] for r in rows if r["method"] == method_name)
        print(f"largest error vs closed form, {method_name}: {worst:.1e}")
    print(f"\n## Cramer-Rao: var(estimate) / mean(SE^2) and {WALD_LEVEL:.0%} Wald coverage "
          f"(Newton, {datasets:,} datasets x {obs:,}; +- one Monte-Carlo SE)\n")
    print("| model | parameter | var / mean SE^2 | Wald coverage |")
    print("|---|---|---|---|")
    for r in cr_rows:
        print(f"| {r['model']} | {r['parameter']} | {r['ratio']:.3f} +- {r['ratio_mc']:.3f} "
              f"| {r['coverage']:.4f} +- {r['coverage_mc']:.4f} |")
    print("\n## 1/sqrt(n): relative RMSE against the truth (Newton)\n")
    print("| model | parameter | " + " | ".join(f"n={n:,}" for n in sizes) + " | slope |")
    print("|---|---|" + "---|" * len(sizes) + "---|")
    for name, result in shrink.items():
        for j, parameter in enumerate(result["names"]):
            cells = " | ".join(f"{value:.2e}" for value in result["rmse"][:, j])
            print(f"| {name} | {parameter} | {cells} | {result['slopes'][j]:.3f} |")
        if np.any(result["converged"] < 1):
            fractions = ", ".join(f"n={n}: {c:.1%}" for n, c in zip(sizes, result["converged"]))
            print(f"|  | converged | {fractions} (the rest: estimates on the boundary) |")


def main(datasets: int = 10_000, obs: int = 1_000, models=None, methods=None, sizes=SIZES,
         shrinkage_datasets: int = 2_000, plot_dir=None, seed: int = 0) -> dict:
    models = list(MODELS) if models is None else list(models)
    methods = list(METHODS) if methods is None else list(methods)
    rows, cr_rows, shrink = [], [], {}
    for name in models:
        bench = MODELS[name]
        data = simulate(bench, datasets, obs, seed)
        closed, closed_se = closed_forms(bench.model, data)
        for method_name in methods:
            row = closed_form_row(name, method_name, bench, data, closed, closed_se, datasets)
            rows.append(row)
            if method_name == "newton":
                cr_rows += cramer_rao_rows(name, bench, row["fits"])
        shrink[name] = shrinkage(bench, sizes, shrinkage_datasets, seed + 1)
    print_tables(rows, cr_rows, shrink, sizes, datasets, obs)
    if plot_dir is not None:
        plot_shrinkage(shrink, sizes, plot_dir)
    return {"rows": rows, "cramer_rao": cr_rows, "shrinkage": shrink}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--obs", type=int, default=1_000)
    parser.add_argument("--models", nargs="+", choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS))
    parser.add_argument("--plot", metavar="DIR", help="write shrinkage.png there")
    parser.add_argument("--quick", action="store_true",
                        help="400 datasets x 200, n up to 3,000 (a smoke run)")
    parser.add_argument("--write-results", action="store_true",
                        help="write the printed tables into benchmarks/RESULTS.md")
    args = parser.parse_args()
    import _report

    with _report.results_section("closed_forms", "Convergence against the closed forms: "
                                 "`python benchmarks/closed_forms.py --plot docs/images`",
                                 "optax", write=args.write_results):
        if args.quick:
            main(400, 200, args.models, args.methods, SIZES[:6], 400, args.plot)
        else:
            main(args.datasets, args.obs, args.models, args.methods, plot_dir=args.plot)
