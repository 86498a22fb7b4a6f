"""Random effects by ``jm.fit_mixed``: first and steady calls against statsmodels ``MixedLM``.

1. A linear mixed model with a random intercept and slope per group, ``--groups`` groups
   (default 10,000) x ``--rows`` observations (10): ``jm.fit_mixed`` with the ready
   Gaussian pieces (the closed-form marginal), the same density wrapped in a function (the
   inner-Newton Laplace path any other density takes; exact here too) and statsmodels
   ``MixedLM(...).fit(reml=False)`` (ML) on the same simulated data, each in a fresh
   process per run (medians of ``--runs`` runs, the tools alternating): the
   first call (compilation included for jaxmle) and a steady second call on the same data,
   log-likelihoods of both.
2. A Poisson GLMM with a random intercept, ``--poisson-groups`` groups (100,000) x 10.
3. Time and peak memory (``getrusage`` maxrss of the fresh process) against the number of
   groups for the LMM.

The table is printed and written into ``benchmarks/mixed.md``.

Run:  python benchmarks/mixed.py [--groups 10000] [--poisson-groups 100000] [--runs 3]
      [--no-statsmodels]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def simulate(kind: str, groups: int, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows)
    x = rng.normal(size=g.size)
    X = np.column_stack([np.ones_like(x), x])
    if kind == "lmm":
        u = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], groups)
        y = X @ np.array([1.0, 0.5]) + (X * u[g]).sum(1) + rng.normal(0, 0.5, g.size)
        return X, X.copy(), y, g
    eta = X @ np.array([0.3, 0.4]) + rng.normal(0, 0.6, groups)[g]
    return X, X[:, :1].copy(), rng.poisson(np.exp(eta)).astype(float), g


def worker(tool: str, kind: str, groups: int, rows: int) -> dict:
    X, Z, y, g = simulate(kind, groups, rows)
    if tool == "statsmodels":
        import statsmodels.api as sm

        def call():
            return sm.MixedLM(y, X, groups=g, exog_re=Z).fit(reml=False)
        read = lambda fit: (float(fit.llf), bool(fit.converged))
    else:
        import jaxmle as jm
        q = Z.shape[1]
        init = {"beta": np.zeros(2), "L": np.eye(q)}
        constraints = {"L": jm.cholesky}
        density = jm.mixed.poisson
        if kind == "lmm":
            init["sigma"], constraints["sigma"], density = 1.0, jm.positive, jm.mixed.gaussian
        if tool == "jaxmle-laplace":  # any other density: inner Newton and Laplace terms
            density = (lambda inner: lambda params, u, data: inner(params, u, data))(density)

        def call():
            return jm.fit_mixed(density, jm.mixed.gaussian_random(q), init, (X, Z, y), g,
                                random=np.zeros(q), constraints=constraints)
        read = lambda fit: (float(fit.loglik), bool(fit.converged))
    start = time.perf_counter()
    first = call()
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    call()
    steady_s = time.perf_counter() - start
    loglik, converged = read(first)
    return {"first": first_s, "steady": steady_s, "loglik": loglik, "converged": converged,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def fresh(tool: str, kind: str, groups: int, rows: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", tool, kind, str(groups),
                          str(rows)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def medians(tools, kind: str, groups: int, rows: int, runs: int) -> list[dict]:
    """Each tool's fresh-process result with the median first and steady times of ``runs``
    runs, the tools alternating (this machine's speed drifts within minutes)."""
    results = [[] for _ in tools]
    for _ in range(runs):
        for tool, out in zip(tools, results):
            out.append(fresh(tool, kind, groups, rows))
    return [dict(out[0], first=float(np.median([r["first"] for r in out])),
                 steady=float(np.median([r["steady"] for r in out]))) for out in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--poisson-groups", type=int, default=100_000)
    parser.add_argument("--scaling", default="1000,3000,10000,30000")
    parser.add_argument("--no-statsmodels", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per tool (medians)")
    parser.add_argument("--worker", nargs=4)
    args = parser.parse_args()
    if args.worker:
        tool, kind, groups, rows = args.worker
        print(json.dumps(worker(tool, kind, int(groups), int(rows))))
        return

    sys.path.insert(0, str(HERE))
    import _report

    lines = [f"Machine: {_report.machine('statsmodels')}", "",
             f"### LMM, random intercept + slope, {args.groups:,} groups x {args.rows} rows "
             f"(fresh process per run, medians of {args.runs} alternating runs)", "",
             "| tool | first call s | steady call s | log-likelihood | converged | peak MiB |",
             "|---|---:|---:|---:|---|---:|"]
    names = {"jaxmle": "jaxmle fit_mixed", "jaxmle-laplace": "jaxmle fit_mixed, Laplace path",
             "statsmodels": "statsmodels MixedLM (ML)"}
    tools = [*names][:2 if args.no_statsmodels else 3]
    results = list(zip(map(names.get, tools),
                       medians(tools, "lmm", args.groups, args.rows, args.runs)))
    ours = results[0][1]
    for name, r in results:
        lines.append(f"| {name} | {r['first']:.2f} | {r['steady']:.2f} | {r['loglik']:.6f} | "
                     f"{r['converged']} | {r['peak_mib']:.0f} |")
    if not args.no_statsmodels:
        theirs = results[-1][1]
        lines += ["", f"First call: statsmodels / jaxmle = {theirs['first'] / ours['first']:.2f}x; "
                  f"steady: {theirs['steady'] / ours['steady']:.2f}x; log-likelihood jaxmle - "
                  f"statsmodels = {ours['loglik'] - theirs['loglik']:.3g}"]
    poisson = fresh("jaxmle", "poisson", args.poisson_groups, args.rows)
    lines += ["", f"### Poisson GLMM, random intercept, {args.poisson_groups:,} groups x "
              f"{args.rows} rows", "", "| first call s | steady call s | log-likelihood | "
              "converged | peak MiB |", "|---:|---:|---:|---|---:|",
              f"| {poisson['first']:.2f} | {poisson['steady']:.2f} | {poisson['loglik']:.4f} | "
              f"{poisson['converged']} | {poisson['peak_mib']:.0f} |"]
    lines += ["", f"### LMM: time and memory against the number of groups ({args.rows} rows "
              "each)", "", "| groups | first call s | steady call s | peak MiB |",
              "|---:|---:|---:|---:|"]
    for groups in map(int, args.scaling.split(",")):
        r = fresh("jaxmle", "lmm", groups, args.rows)
        lines.append(f"| {groups:,} | {r['first']:.2f} | {r['steady']:.2f} | "
                     f"{r['peak_mib']:.0f} |")
    text = "\n".join(lines)
    print(text)
    path = HERE / "mixed.md"
    if not path.exists():
        path.write_text("# Random effects: jm.fit_mixed against statsmodels MixedLM\n\n"
                        "Generated by `python benchmarks/mixed.py`.\n")
    _report.write_section(path, "mixed", text)


if __name__ == "__main__":
    main()
