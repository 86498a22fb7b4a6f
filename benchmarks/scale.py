"""How jaxmle's batched fit grows with the batch and the data, its memory, and stragglers.

Three tables (Newton, float64, SEs included):

1. growth: steady seconds of one ``fit_batch`` call of Normal(mu, sigma) datasets from
   (0, 1) as the number of datasets B doubles (n = 1,000) and as the observations per
   dataset n double (B = 1,000), with the ratio to the previous row (linear growth: about
   2 per doubling; the target is <= 2.2); the fastest of three calls per shape, taken in
   rounds that visit every shape once, after a first, untimed call (every dataset starts
   at its reduced optimum and is certified there, ``batch/_reduced``);
2. memory: peak resident memory of a fresh process that fits B x n datasets, minus the
   same process's peak before the fit (imports and a tiny warm-up fit), against the
   size of the data (target: <= 3x the data plus a fixed overhead);
3. stragglers: B = 10,000 Weibull datasets from the common start (shape 1, scale 1), of
   which 1% sit on a scale 1e8 larger (they need about four times the Newton iterations of
   the rest), fitted with straggler compaction and with it turned off (each chunk then
   runs as long as its slowest dataset), against the same batch without stragglers. A
   Weibull density has no sufficient statistics, so every dataset iterates on its data (a
   Normal batch starts every dataset at its reduced optimum: no stragglers).

Run:  python benchmarks/scale.py [--max-datasets 100000] [--max-obs 100000] [--quick]
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from jax.scipy import stats

import jaxmle as jm
from jaxmle.batch import _batch

def normal(p, x):
    return stats.norm.logpdf(x, p["mu"], p["sigma"])


def normal_fits(x, **options):
    return jm.fit_batch(normal, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": jm.positive},
                        **options)


def weibull_fits(x, **options):
    return jm.fit_batch(jm.models.weibull, {"shape": 1.0, "scale": 1.0}, x, **options)


def timed_fit(fits, x, repeats: int = 3, warm: bool = True, **options):
    """Median seconds of steady calls of ``fits(x, **options)`` (after a first call of the
    same shapes unless ``warm`` is False, the shapes being compiled already) and the fit."""
    if warm:
        fits(x, **options)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fits(x, **options)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)), result


def doublings(low: int, high: int) -> list[int]:
    """``low, 2 low, 4 low, ...`` up to the first size >= ``high``."""
    sizes = [low]
    while sizes[-1] < high:
        sizes.append(sizes[-1] * 2)
    return sizes


def growth(max_datasets: int, max_obs: int, rounds: int = 3) -> None:
    """Steady time per shape, the fastest of ``rounds`` calls taken in interleaved rounds.

    The machine's speed drifts by up to 2x within minutes (measured): timing each shape in
    turn would put the drift into the ratios, so every round visits every shape once.
    """
    shapes = [("B", (size, 1_000)) for size in doublings(1_000, max_datasets)]
    shapes += [("n", (1_000, size)) for size in doublings(1_000, max_obs)]
    best = {shape: float("inf") for _, shape in shapes}
    converged = {}
    distinct = list(dict.fromkeys(shape for _, shape in shapes))  # (1,000, 1,000) is in both
    for round_ in range(rounds):
        for index, shape in enumerate(distinct):
            x = simulate(np.random.default_rng(index), shape)
            seconds, fits = timed_fit(normal_fits, x, repeats=1, warm=round_ == 0)
            best[shape] = min(best[shape], seconds)
            converged[shape] = float(fits.converged.mean())
    print(f"growth (steady s: fastest of {rounds} calls in interleaved rounds; ratio to the row "
          "above; target <= 2.2 per doubling)")
    print(f"{'B':>8} {'n':>8} {'steady s':>9} {'ratio':>6} {'fits/s':>9} {'converged':>9}")
    previous_axis, previous = None, None
    for axis, shape in shapes:
        seconds = best[shape]
        ratio = "" if axis != previous_axis else f"{seconds / previous:6.2f}"
        print(f"{shape[0]:8,} {shape[1]:8,} {seconds:9.3f} {ratio:>6} {shape[0] / seconds:9,.0f} "
              f"{converged[shape]:9.4f}", flush=True)
        previous_axis, previous = axis, seconds


def simulate(rng: np.random.Generator, shape) -> np.ndarray:
    """Normal(7.2, 2.8^2) draws built in place (no temporaries beyond the array itself),
    in 64-byte-aligned memory: JAX reads such a host array in place, while it copies a
    plain numpy array (16-byte aligned) on every call (docs/performance.md, "Large inputs"), a
    cost of the input, not of the fit, that would blur the growth table."""
    x = _batch.aligned_empty(shape, np.float64)
    rng.standard_normal(out=x)
    x *= 2.8
    x += 7.2
    return x


def _peak_mb() -> float:
    """This process's peak resident memory (Linux ``VmHWM``; ``ru_maxrss`` would carry
    the parent's peak over into a child process)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def measure_memory(datasets: int, obs: int) -> dict:
    """Runs in a fresh process: peak RSS growth from before the data to after the fit."""
    rng = np.random.default_rng(1)
    normal_fits(simulate(rng, (4, 50)))
    before = _peak_mb()
    x = simulate(rng, (datasets, obs))
    fits = normal_fits(x)
    return {"data_mb": x.nbytes / 2**20, "peak_growth_mb": _peak_mb() - before,
            "converged": float(fits.converged.mean())}


def memory(sizes) -> None:
    print("\nmemory (fresh process per row; peak RSS growth from before the data was made to the "
          "end of the fit, so the data itself counts once; target <= 3x data + overhead)")
    print(f"{'B':>8} {'n':>8} {'data MB':>8} {'peak growth MB':>15} {'x data':>7}")
    for datasets, obs in sizes:
        done = subprocess.run([sys.executable, __file__, "--memory-child", f"{datasets},{obs}"],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{datasets:8,} {obs:8,} {row['data_mb']:8.0f} {row['peak_growth_mb']:15.0f} "
              f"{row['peak_growth_mb'] / row['data_mb']:7.2f}", flush=True)


def stragglers(datasets: int) -> None:
    clean = np.random.default_rng(2).weibull(1.5, size=(datasets, 1_000))
    slow = clean.copy()
    slow[::100] *= 1e8
    print(f"\nstragglers (Weibull, B = {datasets:,}, start (1, 1), 1% of datasets on a 1e8 "
          "larger scale; max_iter 200)")
    print(f"{'batch':12} {'compaction':>10} {'steady s':>9} {'iter mean':>9} {'iter max':>8} "
          f"{'converged':>9} {'vs clean':>8}")
    reference = None
    fraction = _batch.STRAGGLER_FRACTION
    for name, x, compaction in (("clean", clean, True), ("stragglers", slow, True),
                                ("stragglers", slow, False)):
        # Compaction off: a quota of 0 makes every round run until its whole chunk stops.
        _batch.STRAGGLER_FRACTION = fraction if compaction else 10**9
        seconds, fits = timed_fit(weibull_fits, x, max_iter=200)
        reference = reference or seconds
        print(f"{name:12} {'on' if compaction else 'off':>10} {seconds:9.3f} {fits.n_iter.mean():9.2f} "
              f"{fits.n_iter.max():8d} {fits.converged.mean():9.4f} {seconds / reference:8.2f}",
              flush=True)
    _batch.STRAGGLER_FRACTION = fraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-datasets", type=int, default=100_000)
    parser.add_argument("--max-obs", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--write-results", action="store_true",
                        help="write the printed tables into benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(measure_memory(*map(int, args.memory_child.split(",")))))
        return
    if args.quick:
        args.max_datasets, args.max_obs = 4_000, 4_000
    import _report

    with _report.results_section("scale", "Growth, memory, stragglers: `python benchmarks/"
                                 f"scale.py --max-datasets {args.max_datasets} --max-obs "
                                 f"{args.max_obs}`", write=args.write_results, fenced=True):
        growth(args.max_datasets, args.max_obs)
        memory([(1_000, 1_000), (10_000, 1_000), (args.max_datasets, 1_000),
                (1_000, args.max_obs)])
        stragglers(2_000 if args.quick else 10_000)


if __name__ == "__main__":
    main()
