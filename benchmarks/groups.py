"""Fitting a table of groups of ragged size: time, peak memory, and what the buckets save.

``--groups`` groups (default 1,000,000) of uniform random size ``--min-size`` ..
``--max-size`` (10 .. 1,000) are simulated in memory as long-format rows (one value and one
group id per row, rows sorted by group as in a file written group by group), and every
group is fitted with the two-parameter Normal model by ``jm.fit_groups`` (Newton, float64,
standard errors included). Printed:

1. buckets against one padded batch: ``--compare`` groups (200,000) fitted by
   ``fit_groups`` and by ``fit_batch`` with a mask, each layout in a fresh process (run
   first, while this process is small: Linux carries a parent's ``ru_maxrss`` over fork
   and exec): padded observations, compiled shapes, first-call and steady seconds, peak
   memory against the data alone;
2. the data: rows, bytes, and the padded observations with size buckets against padding
   every group to the largest;
3. the fit of all ``--groups``: wall time (compilation of the bucket shapes included),
   groups per second, converged fraction, largest error of mu and sigma against the closed
   form (mean, and sqrt(RSS / n)) in units of their standard errors;
4. peak resident memory (``getrusage`` maxrss) after the simulation and after the fit:
   the fit's own memory beyond the data.

Run:  python benchmarks/groups.py [--groups 1000000] [--compare 200000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

import jaxmle as jm
from jaxmle.tabular import _groups

PIECE = 10_000_000  # rows simulated at a time (bounded temporaries)


def simulate(groups: int, low: int, high: int, seed: int):
    """Sizes, sorted group ids (int32) and float64 Normal values with per-group mu, sigma."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(low, high + 1, size=groups)
    mu, sigma = rng.normal(0.0, 3.0, size=groups), rng.uniform(0.5, 2.0, size=groups)
    ids = np.repeat(np.arange(groups, dtype=np.int32), sizes)
    values = np.empty(ids.size)
    for start in range(0, ids.size, PIECE):
        piece = ids[start:start + PIECE]
        values[start:start + PIECE] = mu[piece] + sigma[piece] * rng.standard_normal(piece.size)
    return sizes, ids, values


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def closed_form_errors(fits: jm.GroupFits, sizes, values) -> tuple[float, float]:
    """Largest |estimate - closed form| of mu and sigma, in units of their standard errors
    (a relative error of mu means little where the mean is near 0); two passes over
    pieces of groups, so no temporary is as large as the data."""
    errors, ends = np.zeros(2), np.cumsum(sizes)
    for first in range(0, sizes.size, 100_000):
        n = sizes[first:first + 100_000]
        x = values[ends[first] - n[0]:ends[first + n.size - 1]]
        starts = np.concatenate([[0], np.cumsum(n)[:-1]])
        mean = np.add.reduceat(x, starts) / n
        sd = np.sqrt(np.add.reduceat((x - np.repeat(mean, n)) ** 2, starts) / n)
        part = fits.fit[first:first + n.size]
        errors = np.maximum(errors, [np.abs((part.params["mu"] - mean) / part.se["mu"]).max(),
                                     np.abs((part.params["sigma"] - sd) / part.se["sigma"]).max()])
    return float(errors[0]), float(errors[1])


def layout_run(layout: str, groups: int, low: int, high: int, seed: int) -> dict:
    """One layout in this (fresh) process: first and steady seconds, peak memory."""
    sizes, ids, values = simulate(groups, low, high, seed)
    before = peak_gib()  # the padded batch below is the layout's memory, not the data's
    if layout == "buckets":
        cells = int(_groups.bucket_lengths(sizes).sum())
        shapes = len(set(_groups.bucket_lengths(sizes).tolist()))
        run = lambda: jm.fit_groups(jm.models.normal, None, values, ids)
    else:
        longest = int(sizes.max())
        batch, mask = np.zeros((groups, longest)), np.arange(longest) < sizes[:, None]
        batch[mask] = values
        cells, shapes = batch.size, 1
        run = lambda: jm.fit_batch(jm.models.normal, None, batch, mask=mask)
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    start = time.perf_counter()
    run()
    return {"cells": cells, "rows": int(sizes.sum()), "shapes": shapes, "first": first,
            "steady": time.perf_counter() - start, "before": before, "peak": peak_gib()}


def compare(groups: int, low: int, high: int, seed: int) -> None:
    """Buckets (fit_groups) vs one masked batch (fit_batch), each in a fresh process."""
    print(f"## buckets vs one padded batch ({groups:,} groups, each layout in a fresh process)\n")
    print("| layout | padded observations | compiled shapes | first call s | steady s | "
          "peak memory GiB (data alone) |")
    print("|---|---|---|---|---|---|")
    steady = {}
    for layout in ("buckets", "batch"):
        done = subprocess.run([sys.executable, __file__, "--layout", layout, "--groups", str(groups),
                               "--min-size", str(low), "--max-size", str(high), "--seed", str(seed)],
                              capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.splitlines()[-1])
        steady[layout] = r["steady"]
        name = "buckets (fit_groups)" if layout == "buckets" else "one padded batch (fit_batch)"
        print(f"| {name} | {r['cells']:,} ({r['cells'] / r['rows']:.2f}x the rows) | {r['shapes']} | "
              f"{r['first']:.1f} | {r['steady']:.1f} | {r['peak']:.2f} ({r['before']:.2f}) |")
    print(f"\nsteady time, buckets / one batch: {steady['buckets'] / steady['batch']:.2f}")


def main(groups: int, low: int, high: int, compare_groups: int, chunk_groups: int, seed: int = 0):
    if compare_groups:
        # First, while this process is small: Linux carries a parent's ru_maxrss over
        # fork and exec, so a child's peak is only its own while the parent's is lower.
        compare(compare_groups, low, high, seed)
    start = time.perf_counter()
    sizes, ids, values = simulate(groups, low, high, seed)
    simulated = time.perf_counter() - start
    rows = int(sizes.sum())
    peak_data = peak_gib()
    bucket_cells = int(_groups.bucket_lengths(sizes).sum())
    print(f"\n## {groups:,} groups of {low}..{high} observations (Normal, Newton, float64)\n")
    print(f"rows {rows:,} ({values.nbytes / 2**30:.2f} GiB of values, {ids.nbytes / 2**30:.2f} GiB "
          f"of group ids), simulated in {simulated:.1f} s")
    print(f"padded observations: buckets {bucket_cells:,} ({bucket_cells / rows:.2f}x the rows); "
          f"every group padded to the largest {groups * int(sizes.max()):,} "
          f"({groups * int(sizes.max()) / rows:.2f}x, {groups * int(sizes.max()) * 9 / 2**30:.1f} GiB "
          "of values and mask as one batch)")

    start = time.perf_counter()
    fits = jm.fit_groups(jm.models.normal, None, values, ids, chunk_groups=chunk_groups,
                         progress=True)
    seconds = time.perf_counter() - start
    peak_fit = peak_gib()
    mu_error, sigma_error = closed_form_errors(fits, sizes, values)
    print(f"\nfit: {seconds:.1f} s ({groups / seconds:,.0f} groups/s, compilation of "
          f"{len(set(_groups.bucket_lengths(sizes).tolist()))} bucket shape(s) included); "
          f"converged {fits.fit.converged.mean():.4%}; largest error vs the closed form in "
          f"standard errors: mu {mu_error:.1e}, sigma {sigma_error:.1e}")
    print(f"peak resident memory: {peak_data:.2f} GiB after simulating, {peak_fit:.2f} GiB after "
          f"the fit (+{peak_fit - peak_data:.2f} GiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1_000_000)
    parser.add_argument("--min-size", type=int, default=10)
    parser.add_argument("--max-size", type=int, default=1_000)
    parser.add_argument("--compare", type=int, default=200_000,
                        help="groups for the buckets-vs-one-batch table (0: skip)")
    parser.add_argument("--layout", choices=["buckets", "batch"],
                        help="(internal) time one layout of the comparison in this process")
    parser.add_argument("--chunk-groups", type=int, default=_groups.DEFAULT_CHUNK_GROUPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-results", action="store_true",
                        help="write the printed tables into benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.layout:
        print(json.dumps(layout_run(args.layout, args.groups, args.min_size, args.max_size,
                                    args.seed)))
    else:
        import _report

        with _report.results_section("groups", "Grouped data: `python benchmarks/groups.py "
                                     f"--groups {args.groups}`", "pandas",
                                     write=args.write_results):
            main(args.groups, args.min_size, args.max_size, args.compare, args.chunk_groups,
                 args.seed)
