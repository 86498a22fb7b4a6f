"""Inference tools over a batch: what profile intervals and multistart cost next to the fit.

Workloads (float64, simulated; the fit itself is timed as the reference):

1. ``profile``: Normal(mu, sigma), ``--datasets`` x ``--obs``: ``jm.fit_batch`` then
   ``jm.profile`` of both parameters of every dataset (four interval ends per dataset), and
   ``jm.diagnose`` of the same fits.
2. ``multistart``: a two-component Gaussian mixture, ``--datasets / 10`` datasets x 500,
   ``jm.multistart(..., starts=8, batched=True)`` against one ``jm.fit_batch``.

"first" is the first call (trace + compile + run), "steady" a second call on the same shapes.

Run:  python benchmarks/inference.py [--datasets 10000] [--obs 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import jaxmle as jm


def timed(function):
    """``(result, first, steady)``: the first and second call of ``function()``."""
    times = []
    for _ in range(2):
        begin = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - begin)
    return result, times[0], times[1]


def profile_rows(datasets: int, obs: int):
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(datasets, obs))
    fits, fit_first, fit_steady = timed(lambda: jm.fit_batch(jm.models.normal, None, x))
    prof, first, steady = timed(lambda: jm.profile(fits, x))
    ends = np.stack([prof.lower["mu"], prof.upper["mu"], prof.lower["sigma"], prof.upper["sigma"]])
    found = np.isfinite(ends).all(axis=0).mean()
    report, diagnose_first, diagnose_steady = timed(lambda: jm.diagnose(fits, x))
    ratio = np.nanmedian(report.im_ratio)
    return [("fit_batch (Normal)", datasets, fit_first, fit_steady, f"{fits.converged.mean():.2%} converged"),
            ("profile, 2 parameters", datasets, first, steady,
             f"{found:.2%} with all 4 ends; {prof.better.sum()} better optima; "
             f"{sum(v.sum() for v in prof.failed.values())} failed"),
            ("diagnose", datasets, diagnose_first, diagnose_steady,
             f"median information-matrix ratio {ratio:.3f}; "
             f"{sum(v.sum() for v in report.weak.values())} weak flags")]


def multistart_rows(datasets: int):
    rng = np.random.default_rng(1)
    first = rng.uniform(size=(datasets, 500)) < 0.3
    x = np.where(first, rng.normal(-2.0, 0.5, first.shape), rng.normal(1.5, 1.5, first.shape))
    model = jm.models.gaussian_mixture(2)
    fits, fit_first, fit_steady = timed(lambda: jm.fit_batch(model, None, x))
    ms, ms_first, ms_steady = timed(lambda: jm.multistart(model, None, x, starts=8, spread=1.5,
                                                          batched=True))
    gain = np.mean(ms.best.loglik > fits.loglik + 1e-6)
    status = np.asarray(ms.fits.status)
    starts = (f"the 8 starts' mean Newton iterations {np.mean(ms.fits.n_iter):.0f} against "
              f"{np.mean(fits.n_iter):.0f} from the data-driven start; "
              f"{np.sum(status == int(jm.Status.MAX_ITER)):,} of the {status.size:,} fits "
              "stop at the iteration cap, "
              f"{np.mean(status == int(jm.Status.SINGULAR_HESSIAN)):.0%} at a singular "
              "Hessian (a component collapsing onto one point)")
    return [("fit_batch (mixture, 1 start)", datasets, fit_first, fit_steady,
             f"{fits.converged.mean():.2%} converged"),
            ("multistart, 8 starts", datasets, ms_first, ms_steady,
             f"{ms.best.converged.mean():.2%} converged; {np.mean(ms.multimodal):.1%} multimodal; "
             f"better than 1 start in {gain:.1%}")], starts


def main(datasets: int = 10_000, obs: int = 1_000) -> list:
    rows = profile_rows(datasets, obs)
    mixture, starts = multistart_rows(max(datasets // 10, 1))
    rows += mixture
    print("| workload | datasets | first s | steady s | notes |")
    print("|---|---|---|---|---|")
    for name, count, first, steady, notes in rows:
        print(f"| {name} | {count:,} | {first:.2f} | {steady:.2f} | {notes} |")
    steady = {name: seconds for name, _, _, seconds, _ in rows}
    print(f"\nNormal data, {obs:,} observations per dataset; the mixture has 500. Profiling "
          f"both parameters (four interval ends per dataset, each a continuation of Newton "
          f"fits) costs {steady['profile, 2 parameters'] / steady['fit_batch (Normal)']:.0f}x "
          f"the fit. Multistart costs "
          f"{steady['multistart, 8 starts'] / steady['fit_batch (mixture, 1 start)']:.0f}x the "
          f"single-start fit for 8x the fits: {starts}.")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--obs", type=int, default=1_000)
    parser.add_argument("--write-results", action="store_true",
                        help="write the printed tables into benchmarks/RESULTS.md")
    args = parser.parse_args()
    import _report

    with _report.results_section("inference", "Inference over a batch: "
                                 "`python benchmarks/inference.py`", write=args.write_results):
        main(args.datasets, args.obs)
