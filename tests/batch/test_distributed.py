"""process_shard and gather_fits: shards partition the batch; two processes equal one.

The two-process test runs this file as a script twice
(``python tests/test_distributed.py PORT PROCESS_ID OUT_DIR``): each process joins a
``jax.distributed`` job on localhost, fits its shard of the same simulated batch, gathers the
fits with a real cross-process collective (gloo CPU collectives) and saves its local and
gathered results for the test to compare.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.scipy import stats

import jaxmle as jm

N_PROCESSES = 2
# 41 datasets split 21 + 20: unequal shards exercise the padding in gather_fits.
BATCH, N_OBS, SEED = 41, 50, 11
INIT = {"mu": 0.0, "sigma": 1.0}
CONSTRAINTS = {"sigma": jm.positive}
# A shard and the whole batch vectorise over different batch sizes, so XLA may sum in a
# different order: the same iterations, estimates equal to a few ulps, not bit for bit.
SHARD_RTOL = 1e-12
# Two interpreter start-ups, a coordinator handshake and two compilations take a few seconds.
INITIALIZATION_TIMEOUT_S = 20
RUN_TIMEOUT_S = 90


def _log_density(params, x):
    return stats.norm.logpdf(x, params["mu"], params["sigma"])


def _batch():
    return np.random.default_rng(SEED).normal(1.0, 2.0, size=(BATCH, N_OBS))


def _fit(x):
    return jm.fit_batch(_log_density, INIT, x, constraints=CONSTRAINTS)


@pytest.fixture(scope="module")
def whole():
    return _fit(_batch())


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_partition_the_batch_in_process_order(monkeypatch, count):
    monkeypatch.setattr(jax, "process_count", lambda: count)
    for batch in range(count, 3 * count + 2):
        shards = []
        for index in range(count):
            monkeypatch.setattr(jax, "process_index", lambda index=index: index)
            shards.append(jm.process_shard(batch))
        assert [i for shard in shards for i in range(batch)[shard]] == list(range(batch))
        sizes = [shard.stop - shard.start for shard in shards]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_single_process_shard_is_the_whole_batch():
    assert jm.process_shard(BATCH) == slice(0, BATCH)


def test_batch_smaller_than_process_count_raises(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    with pytest.raises(ValueError, match="smaller than the number of processes"):
        jm.process_shard(2)


@pytest.mark.heavy
def test_single_process_gather_returns_the_fit(whole):
    assert jm.gather_fits(whole) is whole


def test_gather_of_a_single_dataset_fit_raises(whole):
    with pytest.raises(TypeError, match="batched Fit"):
        jm.gather_fits(whole[0])


@pytest.mark.heavy
def test_two_processes_on_localhost_equal_one(whole, tmp_path):
    # Not overlapped with the reference fit: three compilations on two cores take longer.
    results = _results(_start_workers(tmp_path), tmp_path)
    names = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(whole)]
    expected_shards = [[0, 21], [21, BATCH]]
    for process, result in enumerate(results):
        np.testing.assert_array_equal(result["shard"], expected_shards[process])
    for i, name in enumerate(names):
        # gather_fits itself is exact: the gathered leaf is the processes' local leaves, in order.
        local = np.concatenate([result[f"local{i}"] for result in results])
        for result in results:
            np.testing.assert_array_equal(result[f"gathered{i}"], local, err_msg=name)
    gathered = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(whole), [results[0][f"gathered{i}"] for i in range(len(names))])
    for key in INIT:
        np.testing.assert_allclose(gathered.params[key], whole.params[key], rtol=SHARD_RTOL)
        np.testing.assert_allclose(gathered.se[key], whole.se[key], rtol=SHARD_RTOL)
    np.testing.assert_allclose(gathered.loglik, whole.loglik, rtol=SHARD_RTOL)
    np.testing.assert_array_equal(gathered.status, whole.status)
    np.testing.assert_array_equal(gathered.n_iter, whole.n_iter)
    assert whole.converged.all()


def _start_workers(out_dir: Path) -> list[subprocess.Popen]:
    """Starts the worker processes, each logging stdout and stderr to ``out_dir``."""
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    workers = []
    for process_id in range(N_PROCESSES):
        with _log(out_dir, process_id).open("w") as stream:
            workers.append(subprocess.Popen(
                [sys.executable, __file__, str(port), str(process_id), str(out_dir)],
                stdout=stream, stderr=subprocess.STDOUT, env=env))
    return workers


def _log(out_dir: Path, process_id: int) -> Path:
    return out_dir / f"process{process_id}.log"


def _results(workers: list[subprocess.Popen], out_dir: Path) -> list[dict]:
    """The workers' saved results; fails (or skips) with both processes' logs otherwise."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        codes = [worker.wait(timeout=max(deadline - time.monotonic(), 0.0)) for worker in workers]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    if codes is not None and not any(codes):
        return [dict(np.load(out_dir / f"process{i}.npz")) for i in range(N_PROCESSES)]
    report = "\n".join(f"--- process {i} (exit code {worker.returncode}) ---\n"
                       f"{_log(out_dir, i).read_text()}" for i, worker in enumerate(workers))
    # A failed jax.distributed.initialize may abort the process rather than raise, so
    # "initialized" is told by a marker file each worker writes once it has joined the job.
    if not all(_initialized(out_dir, i).exists() for i in range(N_PROCESSES)):
        pytest.skip(f"jax.distributed cannot initialize on this machine\n{report}")
    if codes is None:
        pytest.fail(f"the {N_PROCESSES} processes did not finish within {RUN_TIMEOUT_S} s\n{report}")
    pytest.fail(f"a worker process failed\n{report}")


def _initialized(out_dir: Path, process_id: int) -> Path:
    return out_dir / f"process{process_id}.initialized"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _worker(port: int, process_id: int, out_dir: Path) -> None:
    """One process of the job: fit this process's shard, gather, save local and gathered."""
    # Cross-process CPU collectives; "gloo" is the default since jax 0.5.1, named here
    # because gather_fits relies on it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                               num_processes=N_PROCESSES, process_id=process_id,
                               initialization_timeout=INITIALIZATION_TIMEOUT_S)
    _initialized(out_dir, process_id).touch()
    shard = jm.process_shard(BATCH)
    local = _fit(_batch()[shard])
    gathered = jm.gather_fits(local)
    np.savez(out_dir / f"process{process_id}.npz", shard=[shard.start, shard.stop],
             **{f"local{i}": leaf for i, leaf in enumerate(jax.tree_util.tree_leaves(local))},
             **{f"gathered{i}": leaf for i, leaf in enumerate(jax.tree_util.tree_leaves(gathered))})


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
