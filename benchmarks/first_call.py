"""Time to first result: jaxmle and the fastest JAX peer side by side, in fresh processes.

Every measurement runs in a new Python process; jaxmle's and the peer's processes alternate
and each number is the median of ``--runs`` of them. Per workload and tool:

* ``first``: the first fit call after imports and data (validation, tracing, compilation,
  the run and the copy of the results to numpy);
* ``steady``: the fastest of three more calls with the same shapes (a single later call
  moved by up to 2x on this machine);
* ``process``: the whole one-shot script as a user runs it, from the interpreter's start to
  its end (imports, data, the first call), i.e. the process's wall time less its later calls.

Workloads (float64, standard errors included, as in ``../shared/PEERS.md``): ``single``, one
Normal fit of n = 1,000 (two parameters); ``normal`` and ``gamma``, 10,000 datasets x 1,000
observations; ``logistic``, 1,000 regressions of p = 5 on 1,000 observations. jaxmle runs
Newton from the common start; the peer is optimistix 0.1: BFGS at rtol = atol = 1e-8 under
``lax.map`` (``single``: one call), with standard errors from ``jax.hessian``, and for the
logistic model its Newton root find on the gradient under ``vmap`` (same number of passes as
Newton). ``bare`` is the floor against which a target is judged unreachable: a plain Newton
program with no checks (``BARE``), compiled with jaxmle's XLA options. ``cli`` is ``jaxmle fit`` on a 96-row, 4-group CSV, whole process: compiling
(``--no-cache``), filling an empty cache, and reading a filled one (the default).

Targets (time-to-first-result issue): first call >= 2x faster than the peer's on normal,
gamma and logistic; normal first call <= 2 s; single <= 0.5 s; the CLI <= 3 s; steady
>= 10x the peer on normal and gamma, >= 1.5x on logistic.

Run:  python benchmarks/first_call.py [--runs 3] [--only normal] [--write-results]
      (``--write-results`` writes the table into RESULTS.md and docs/performance.md)
"""

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import _report

HERE = pathlib.Path(__file__).resolve().parent

DATA = r"""
import numpy as np
rng = np.random.default_rng(0)
if workload == "single":
    data = rng.normal(7.2, 2.8, size=1_000)
elif workload == "normal":
    data = rng.normal(7.2, 2.8, size=(10_000, 1_000))
elif workload == "gamma":
    data = rng.gamma(2.5, 1 / 1.7, size=(10_000, 1_000))
else:
    X = np.concatenate([np.ones((1_000, 1_000, 1)), rng.normal(size=(1_000, 1_000, 4))], axis=2)
    y = (rng.uniform(size=(1_000, 1_000)) < 0.5).astype(float)
    data = (X, y)
"""

JAXMLE = r"""
import jax.numpy as jnp
from jax.scipy import stats
import jaxmle as jm

def logistic(beta, data):
    X, y = data
    eta = X @ beta
    return y * eta - jnp.logaddexp(0.0, eta)

normal = lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"])
gamma = lambda p, x: stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"])
model = {"single": (normal, {"mu": 0.0, "sigma": 1.0}, {"sigma": jm.positive}),
         "normal": (normal, {"mu": 0.0, "sigma": 1.0}, {"sigma": jm.positive}),
         "gamma": (gamma, {"shape": 1.0, "rate": 1.0}, jm.positive),
         "logistic": (logistic, jnp.zeros(5), None)}[workload]
fit = jm.fit if workload == "single" else jm.fit_batch
run = lambda: fit(model[0], model[1], data, constraints=model[2])
converged = lambda result: float(result.converged.mean())
"""

# The peer's and the floor's model, in the coordinates jaxmle fits: log of the positive
# parameters.
DENSITY = r"""
import jax, jax.numpy as jnp
from jax.scipy import stats
jax.config.update("jax_enable_x64", True)

def density(theta, x):
    if workload in ("single", "normal"):
        return stats.norm.logpdf(x, theta[0], theta[1])
    if workload == "gamma":
        return stats.gamma.logpdf(x, theta[0], scale=1 / theta[1])
    X, y = x
    eta = X @ theta
    return y * eta - jnp.logaddexp(0.0, eta)

normal_theta = lambda z: jnp.stack([z[0], jnp.exp(z[1])])
to_theta = {"single": normal_theta, "normal": normal_theta, "gamma": jnp.exp,
            "logistic": lambda z: z}[workload]
"""

OPTIMISTIX = DENSITY + r"""
import optimistix as optx
z0 = {"single": [0.0, 0.0], "normal": [0.0, 0.0], "gamma": [0.0, 0.0], "logistic": [0.0] * 5}
z0 = jnp.asarray(z0[workload])

def one(x):
    loss = lambda z, x: -jnp.mean(density(to_theta(z), x))
    if workload == "logistic":
        sol = optx.root_find(lambda z, x: jax.grad(loss)(z, x), optx.Newton(rtol=1e-8, atol=1e-8),
                             z0, args=x, max_steps=256, throw=False)
    else:
        sol = optx.minimise(loss, optx.BFGS(rtol=1e-8, atol=1e-8), z0, args=x, max_steps=256,
                            throw=False)
    theta = to_theta(sol.value)
    information = jax.hessian(lambda t: -jnp.sum(density(t, x)))(theta)
    return theta, jnp.sqrt(jnp.diag(jnp.linalg.inv(information))), sol.result == optx.RESULTS.successful

over = {"single": one, "logistic": jax.vmap(one)}.get(workload, lambda x: jax.lax.map(one, x))
compiled = jax.jit(over)
run = lambda: jax.device_get(compiled(data))
converged = lambda result: float(result[2].mean())
"""

# The floor: the least a compiled Newton fit of the workload does, compiled with jaxmle's
# XLA options (``jaxmle.core._xla``): plain Newton steps from a start where they converge
# (the moment estimates; zeros for the logistic model), a relative-gradient stop and
# standard errors from ``jax.hessian``; no damping, no checks of the data or of the end
# point, no status per dataset, datasets under one ``vmap``.
BARE = DENSITY + r"""
from jaxmle.core import _xla

def initial(x):
    if workload in ("single", "normal"):
        return jnp.stack([jnp.mean(x), jnp.log(jnp.std(x))])
    if workload == "gamma":
        mean, var = jnp.mean(x), jnp.var(x)
        return jnp.log(jnp.stack([mean ** 2 / var, mean / var]))
    return jnp.zeros(5)

def one(x):
    loss = lambda z: -jnp.sum(density(to_theta(z), x))

    def relative(z, g):
        return jnp.max(jnp.abs(g) * jnp.maximum(jnp.abs(z), 1)) / jnp.maximum(jnp.abs(loss(z)), 1)

    def body(state):
        z, _, count = state
        g = jax.grad(loss)(z)
        return z - jnp.linalg.solve(jax.hessian(loss)(z), g), relative(z, g), count + 1

    z, gap, _ = jax.lax.while_loop(lambda s: (s[1] > 1e-10) & (s[2] < 100), body,
                                   (initial(x), jnp.inf, 0))
    theta = to_theta(z)
    information = jax.hessian(lambda t: -jnp.sum(density(t, x)))(theta)
    return theta, jnp.sqrt(jnp.diag(jnp.linalg.inv(information))), gap <= 1e-10

small = workload == "single"
compiled = jax.jit(one if small else jax.vmap(one), compiler_options=_xla.compiler_options(small))
run = lambda: jax.device_get(compiled(data))
converged = lambda result: float(result[2].mean())
"""

CHILD = r"""
import json, sys, time
start = time.perf_counter()
workload = sys.argv[1]
{data}
{tool}
imported = time.perf_counter()
result = run()
first = time.perf_counter() - imported
later = []
for _ in range(3):
    begin = time.perf_counter()
    run()
    later.append(time.perf_counter() - begin)
print(json.dumps({{"import": imported - start, "first": first, "steady": min(later),
                  "later": sum(later), "converged": converged(result)}}))
"""

TOOLS = {"jaxmle": JAXMLE, "optimistix": OPTIMISTIX, "bare": BARE}
WORKLOADS = ("single", "normal", "gamma", "logistic")


def child(tool: str, workload: str) -> dict:
    """One fresh process: its own timings, and ``process`` (wall time less the later calls)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD.format(data=DATA, tool=TOOLS[tool]),
                           workload], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {workload} failed:\n{done.stderr[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return dict(row, process=wall - row["later"])


def cli(runs: int) -> dict:
    """Wall seconds of ``jaxmle fit`` on a tiny CSV: compiling, filling a cache, reading it."""
    import numpy as np

    folder = pathlib.Path(tempfile.mkdtemp(prefix="jaxmle-first-call-"))
    try:
        rng = np.random.default_rng(0)
        rows = ["store,sales"] + [f"{'abcd'[i // 24]},{value:.6f}"
                                  for i, value in enumerate(rng.normal(10.0, 2.0, 96))]
        (folder / "tiny.csv").write_text("\n".join(rows) + "\n")
        script = shutil.which("jaxmle") or "jaxmle"
        command = [script, "fit", str(folder / "tiny.csv"), "--model", "normal", "--value",
                   "sales", "--group", "store", "--quiet", "-o", str(folder / "out.csv")]

        def wall(*options):
            start = time.perf_counter()
            subprocess.run([*command, *options], check=True, capture_output=True)
            return time.perf_counter() - start

        times = {"no cache": [], "empty cache": [], "filled cache": []}
        for run in range(runs):
            cache = str(folder / f"cache-{run}")
            times["no cache"].append(wall("--no-cache"))
            times["empty cache"].append(wall("--cache", cache))
            times["filled cache"].append(wall("--cache", cache))
        return {case: statistics.median(values) for case, values in times.items()}
    finally:
        shutil.rmtree(folder)


def measure(workloads, runs: int) -> dict:
    results = {}
    for workload in workloads:
        rows = {tool: [] for tool in TOOLS}
        for _ in range(runs):  # alternating processes: drifts of the machine hit both tools
            for tool in TOOLS:
                rows[tool].append(child(tool, workload))
        results[workload] = {tool: {key: statistics.median(row[key] for row in tool_rows)
                                    for key in tool_rows[0]}
                             for tool, tool_rows in rows.items()}
        print(workload, json.dumps(results[workload]), flush=True)
    return results


def report(results: dict, cli_times: dict | None, runs: int) -> str:
    intro = (f"{_report.machine('optimistix')}; float64; fresh processes, medians of {runs} "
             "alternating runs. Seconds; *peer* is optimistix (the script's docstring says "
             "which solver); *x* is the peer's time over jaxmle's (above 1: jaxmle is "
             "faster); *process* is the whole one-shot script; *bare* is the floor: a plain "
             "Newton program with no checks of the data or of the end point, compiled with "
             "jaxmle's XLA options (`BARE` in the script).")
    lines = ["## Time to first result: `python benchmarks/first_call.py --write-results`", "",
             textwrap.fill(intro, 92), "",
             "| workload | jaxmle first | peer first | x | bare first | jaxmle steady "
             "| peer steady | x | bare steady | jaxmle process | peer process | x "
             "| converged (jaxmle / peer / bare) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for workload, tools in results.items():
        ours, peer, bare = tools["jaxmle"], tools["optimistix"], tools["bare"]
        cells = []
        for key, digits in (("first", 2), ("steady", 3), ("process", 2)):
            cells += [f"{ours[key]:.{digits}f}", f"{peer[key]:.{digits}f}",
                      f"{peer[key] / ours[key]:.2f}"]
            if key != "process":  # bare's process time includes importing jaxmle
                cells.append(f"{bare[key]:.{digits}f}")
        lines.append(f"| {workload} | " + " | ".join(cells) + " | "
                     + " / ".join(f"{tools[tool]['converged']:.4f}" for tool in TOOLS) + " |")
    if cli_times:
        lines += ["", textwrap.fill(
            "`jaxmle fit` on a 96-row, 4-group CSV, whole process: "
            + ", ".join(f"{case} {value:.2f} s" for case, value in cli_times.items())
            + " (the default keeps the cache).", 92)]
    checks = []
    for workload in ("normal", "gamma", "logistic"):
        if workload in results:
            ours, peer, bare = (results[workload][tool] for tool in TOOLS)
            checks.append(f"{workload} first {peer['first'] / ours['first']:.2f}x the peer's "
                          f"(>= 2): {'met' if peer['first'] >= 2 * ours['first'] else 'not met'}"
                          f" (bare {peer['first'] / bare['first']:.2f}x)")
            need = 1.5 if workload == "logistic" else 10.0
            ratio = peer["steady"] / ours["steady"]
            checks.append(f"{workload} steady {ratio:.2f}x (>= {need:g}): "
                          f"{'met' if ratio >= need else 'not met'}")
    for workload, bound in (("normal", 2.0), ("single", 0.5)):
        if workload in results:
            first = results[workload]["jaxmle"]["first"]
            checks.append(f"{workload} first {first:.2f} s (<= {bound:g} s): "
                          f"{'met' if first <= bound else 'not met'} "
                          f"(bare {results[workload]['bare']['first']:.2f} s)")
    if cli_times:
        value = cli_times["filled cache"]
        checks.append(f"cli {value:.2f} s (<= 3 s): {'met' if value <= 3.0 else 'not met'}")
    lines += ["", textwrap.fill("Targets: " + "; ".join(checks) + ".", 92)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=WORKLOADS + ("cli",))
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    workloads = [w for w in WORKLOADS if args.only in (None, w)]
    results = measure(workloads, args.runs)
    cli_times = cli(args.runs) if args.only in (None, "cli") else None
    text = report(results, cli_times, args.runs)
    print(text)
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if args.write_results:
        _report.write_section(HERE / "RESULTS.md", "first_call", text)
        # The user guide shows the tables without the project's target checks.
        _report.write_section(HERE.parent / "docs" / "performance.md", "first_call",
                              text.split("\n\nTargets: ")[0])


if __name__ == "__main__":
    main()
