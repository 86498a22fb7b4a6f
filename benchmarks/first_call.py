"""First-call latency: what a fresh process pays before its first result.

Each row runs in a new Python process and reports, in seconds: ``import`` (import jaxmle
and generate the data), ``first`` (the first fit call: validation, tracing, lowering,
compilation or a cache load, and the run), ``steady`` (a second call of the same shapes)
and ``first - steady`` (the one-time cost). Rows "+ cache" run twice in fresh processes
with ``jm.enable_compilation_cache`` on an emptied directory; the second process is the
one reported (its compiled program comes from the disk cache).

Workloads: a single Normal fit (n = 1,000, two parameters), and the batched PEERS.md
workloads (Normal and Gamma 10,000 x 1,000, logistic p = 5 1,000 x 1,000), Newton.
Targets (performance issue): first call <= 1 s for the single fit, <= 2 s for each batch;
a second process with the persistent cache <= 0.5 s.

Run:  python benchmarks/first_call.py
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import jax.numpy as jnp
import numpy as np
from jax.scipy import stats
import jaxmle as jm
workload, cache = sys.argv[1], sys.argv[2]
if cache:
    jm.enable_compilation_cache(cache)
rng = np.random.default_rng(0)
# One function object per model: a new lambda per call would be a new model to compile.
normal = lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"])
gamma = lambda p, x: stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"])
if workload == "single":
    x = rng.normal(7.2, 2.8, size=1_000)
    run = lambda: jm.fit(normal, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": jm.positive})
elif workload == "normal":
    x = rng.normal(7.2, 2.8, size=(10_000, 1_000))
    run = lambda: jm.fit_batch(normal, {"mu": 0.0, "sigma": 1.0}, x,
                               constraints={"sigma": jm.positive})
elif workload == "gamma":
    x = rng.gamma(2.5, 1 / 1.7, size=(10_000, 1_000))
    run = lambda: jm.fit_batch(gamma, {"shape": 1.0, "rate": 1.0}, x, constraints=jm.positive)
else:
    X = np.concatenate([np.ones((1_000, 1_000, 1)), rng.normal(size=(1_000, 1_000, 4))], axis=2)
    y = (rng.uniform(size=(1_000, 1_000)) < 0.5).astype(float)

    def logistic(beta, data):
        X, y = data
        eta = X @ beta
        return y * eta - jnp.logaddexp(0.0, eta)

    run = lambda: jm.fit_batch(logistic, jnp.zeros(5), (X, y))
imported = time.perf_counter()
fits = run()
first = time.perf_counter()
run()
steady = time.perf_counter() - first
print(json.dumps({"import": imported - start, "first": first - imported, "steady": steady,
                  "converged": float(fits.converged.mean())}))
"""

TARGETS = {"single": 1.0, "normal": 2.0, "gamma": 2.0, "logistic": 2.0}


def child(workload: str, cache: str = "") -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, workload, cache], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"{'workload':14} {'import s':>8} {'first s':>8} {'steady s':>9} {'first-steady':>12} "
          f"{'target':>7} {'met':>4}")
    for workload, uncached_target in TARGETS.items():
        for cached in (False, True):
            if cached:
                directory = tempfile.mkdtemp(prefix="jaxmle-cache-")
                child(workload, directory)  # fills the cache
                row = child(workload, directory)
                shutil.rmtree(directory)
                target = 0.5
            else:
                row = child(workload)
                target = uncached_target
            label = workload + (" + cache" if cached else "")
            # The cache target is on the one-time cost; the others on the whole first call.
            measured = row["first"] - row["steady"] if cached else row["first"]
            print(f"{label:14} {row['import']:8.2f} {row['first']:8.2f} {row['steady']:9.3f} "
                  f"{row['first'] - row['steady']:12.2f} {target:7.1f} "
                  f"{'yes' if measured <= target else 'no':>4}", flush=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(total {time.perf_counter() - start:.0f} s)")
