"""Scale features: straggler compaction, streaming blocks, devices, the compilation cache.

These run the full solve (``_batch.solve``) even for the Normal model, which a batch would
otherwise fit from its reduced optima without iterating (``batch/_reduced``)."""

import io
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmle as jm
from jaxmle.batch import _batch, _reduced
from jaxmle.core import _xla
from conftest import ESTIMATE_RTOL
from models import CASES, simulate

NORMAL = CASES["normal"]
# Datasets vectorised in groups of different widths round differently in the last bits.
REGROUP_RTOL = 1e-12


def _normal_batch(x, **options):
    return jm.fit_batch(NORMAL.log_density, NORMAL.init, x, constraints=NORMAL.constraints,
                        **options)


def _assert_same_fits(actual, expected, rtol=REGROUP_RTOL):
    np.testing.assert_array_equal(actual.status, expected.status)
    np.testing.assert_array_equal(actual.n_iter, expected.n_iter)
    for key in ("mu", "sigma"):
        np.testing.assert_allclose(actual.params[key], expected.params[key], rtol=rtol)
        np.testing.assert_allclose(actual.se[key], expected.se[key], rtol=rtol)
    np.testing.assert_allclose(actual.loglik, expected.loglik, rtol=rtol)


@pytest.fixture(autouse=True)
def _full_solve(monkeypatch):
    """The full solve's own path (compaction, subsample starts): neither the reduced start
    nor the quick pass (``batch/_reduced``)."""
    monkeypatch.setattr(_reduced, "reducible", lambda spec, data: False)
    monkeypatch.setattr(_reduced, "quick_applies", lambda spec: False)


@pytest.fixture(scope="module")
def straggling():
    """64 Normal datasets; every 16th on a scale 300x larger needs about twice the iterations."""
    x = simulate("normal", batch=64, seed=11)
    x[::16] *= 300.0
    return x


def test_layout_pads_less_than_one_dataset_per_chunk_and_none_where_it_can():
    for batch, chunk_size, devices in [(1, 256, 1), (1000, 256, 1), (1025, 256, 1), (10, 4, 4),
                                       (3, 256, 4), (4097, 512, 2), (100_003, 128, 1)]:
        lay = _batch.layout(batch, chunk_size, devices)
        assert lay.chunk <= chunk_size and lay.devices <= devices
        assert batch <= lay.padded < batch + lay.devices * lay.windows * lay.chunks
    # Where chunks of 3/4 to all of chunk_size can cover the batch exactly, nothing is padded:
    # in the fewest windows when they split the chunks evenly, else in windows of at least
    # a quarter of WINDOW_CHUNKS (1,000 chunks of one dataset: 100 windows of 10, not 63
    # windows of 16 and 8 padded datasets).
    for batch, chunk_size in [(96_000, 128), (128_000, 128), (10_000, 128), (1_000, 256),
                              (1_000, 1), (1_000, 4)]:
        lay = _batch.layout(batch, chunk_size, 1)
        assert lay.padded == batch and 0.75 * chunk_size <= lay.chunk <= chunk_size
        assert _batch.WINDOW_CHUNKS // 4 <= lay.chunks <= _batch.WINDOW_CHUNKS
    assert _batch.layout(10_000, 128, 1).windows == 5  # the fewest: 5 windows of 16 chunks


@pytest.mark.heavy
def test_stragglers_are_compacted_and_results_do_not_depend_on_the_chunk(straggling):
    # chunk 32 -> quota 2: rounds end with stragglers still running, which are gathered
    # with fresh datasets into the next round; chunk 8 -> quota 0: plain chunks.
    compacted = _normal_batch(straggling, chunk_size=32)
    plain = _normal_batch(straggling, chunk_size=8)
    slow = np.arange(64) % 16 == 0
    assert compacted.converged.all()
    assert compacted.n_iter[slow].min() > compacted.n_iter[~slow].max()
    _assert_same_fits(compacted, plain)
    for b in (0, 1, 16):
        one = jm.fit(NORMAL.log_density, NORMAL.init, straggling[b], constraints=NORMAL.constraints)
        assert int(one.n_iter) == int(compacted.n_iter[b])
        np.testing.assert_allclose(compacted.params["mu"][b], one.params["mu"], rtol=1e-9)


@pytest.mark.heavy
def test_windows_read_their_own_datasets(straggling):
    # 63 datasets in chunks of 2: two windows of 16 chunks, padded to 64; every window reads
    # its datasets' data, mask and weights from the whole batch at its own offset (the
    # data-driven start comes from them too), with stragglers gathered into lanes by
    # index. One chunk of all 63 must give the same fits (fails with every offset 0).
    x = straggling[:63]
    rng = np.random.default_rng(12)
    mask = np.arange(x.shape[1])[None, :] < rng.integers(20, x.shape[1] + 1, size=(63, 1))
    weights = rng.integers(1, 4, size=x.shape).astype(float)
    start = lambda data: {"mu": jnp.median(data), "sigma": 1.0}
    fit = lambda chunk: jm.fit_batch(NORMAL.log_density, start, x, mask=mask, weights=weights,
                                     constraints=NORMAL.constraints, chunk_size=chunk)
    assert _batch.layout(63, 2, 1).windows == 2
    windowed, whole = fit(2), fit(64)
    assert windowed.converged.all()
    _assert_same_fits(windowed, whole)


@pytest.mark.heavy
def test_compiler_options_do_not_change_a_fit(straggling, monkeypatch):
    # jaxmle compiles with its own XLA CPU options (_xla: other code emitters, YNNPACK for
    # dot products only); the same batch compiled with XLA's defaults must give the same
    # fits. Different code may round differently: 1e-10 relative.
    ours = _normal_batch(straggling, chunk_size=32)
    monkeypatch.setattr(_batch, "solve", jax.jit(_batch._solve_batch, static_argnums=(0, 1)))
    defaults = _normal_batch(straggling, chunk_size=32)
    _assert_same_fits(ours, defaults, rtol=1e-10)


def test_small_programs_compile_unoptimised_and_fit_the_same(monkeypatch):
    # A program whose array arguments hold at most _xla.SMALL_ELEMENTS numbers compiles
    # without LLVM's optimisations (others at level 1); static arguments do not count. The fit is the same as
    # with the optimised compile, to rounding (different code: 1e-10 relative).
    assert _xla._small([np.zeros(_xla.SMALL_ELEMENTS)])
    assert not _xla._small([np.zeros(_xla.SMALL_ELEMENTS), np.zeros(1)])
    assert _xla._small([{"a": np.zeros((4, 5)), "b": 1.0}, None])
    if jax.default_backend() == "cpu":
        assert _xla.compiler_options(True)["xla_backend_optimization_level"] == 0
        assert _xla.compiler_options(False)["xla_backend_optimization_level"] == 1
    seen = []
    monkeypatch.setattr(_xla, "compiler_options",
                        lambda small=False: seen.append(small) or None)
    _xla.jit(lambda spec, x: x * 2.0, static_argnums=0)(tuple(range(10 ** 5)), np.ones(3))
    assert seen == [True]

    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(400), rng.normal(size=(400, 3))])
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-X @ np.array([0.2, 1.0, -0.5, 0.3])))) * 1.0

    def logistic(beta, data):
        X, y = data
        eta = X @ beta
        return y * eta - jnp.logaddexp(0.0, eta)

    monkeypatch.undo()
    small = jm.fit(logistic, np.zeros(4), (X, y))
    monkeypatch.setattr(_xla, "SMALL_ELEMENTS", -1)
    optimised = jm.fit(logistic, np.zeros(4), (X, y))
    assert small.converged and optimised.converged
    np.testing.assert_allclose(small.params, optimised.params, rtol=1e-10)
    np.testing.assert_allclose(small.se, optimised.se, rtol=1e-10)


def test_an_xla_without_the_options_compiles_with_its_defaults(monkeypatch):
    # jaxmle's CPU options are not probed ahead: the first compile that XLA refuses for an
    # unknown option is retried without them, and later programs go without.
    if jax.default_backend() != "cpu":
        pytest.skip("the options apply on CPU only")
    monkeypatch.setattr(_xla, "CPU_OPTIONS", {"xla_no_such_option": True})
    monkeypatch.setattr(_xla, "_options_accepted", True)
    assert float(_xla.jit(lambda x: x + 1.0)(1.0)) == 2.0
    assert not _xla._options_accepted and _xla.compiler_options() is None


def _blocks(x, size):
    return (x[start:start + size] for start in range(0, len(x), size))


def test_stream_equals_one_call_and_compiles_once(straggling):
    whole = _normal_batch(straggling, chunk_size=32)
    traces = []

    def counting_density(params, x):
        traces.append(1)
        return NORMAL.log_density(params, x)

    stream = jm.fit_stream(counting_density, NORMAL.init, _blocks(straggling, 24),
                           block_size=24, chunk_size=32, constraints=NORMAL.constraints)
    blocks = [next(stream)]
    traced_first_block = len(traces)
    # The later blocks (the last one shorter, padded to block_size) reuse the compiled fit:
    # a retrace would call the density again (validation's abstract evaluation is cached).
    blocks += list(stream)
    assert len(traces) == traced_first_block
    assert [len(b) for b in blocks] == [24, 24, 16]
    _assert_same_fits(jm.concat_fits(blocks), whole)


def test_stream_reads_copies_of_blocks_whose_buffer_the_caller_refills(straggling):
    # A reader that refills one buffer: while block b is fitted, the generator is already
    # writing block b + 1 into the same memory. The buffer is aligned so that JAX could use
    # it in place (it would, without the copy the stream makes): the fits must not see it.
    whole = _normal_batch(straggling, chunk_size=32)

    def refilled(size):
        buffer = _batch.aligned_empty((size, straggling.shape[1]), straggling.dtype)
        for start in range(0, len(straggling), size):
            block = straggling[start:start + size]
            buffer[:len(block)] = block
            yield buffer[:len(block)]

    streamed = jm.concat_fits(jm.fit_stream(NORMAL.log_density, NORMAL.init, refilled(24),
                                            block_size=24, chunk_size=32,
                                            constraints=NORMAL.constraints))
    _assert_same_fits(streamed, whole)


def test_padding_is_one_aligned_copy_and_full_batches_are_not_copied():
    x = np.arange(12.0).reshape(4, 3)
    assert _batch.pad(x, 4) is x
    for padded, copy in ((6, False), (4, True)):
        out = _batch.pad(x, padded, copy=copy)
        assert out.ctypes.data % _batch.ZERO_COPY_ALIGNMENT == 0 and out.dtype == x.dtype
        np.testing.assert_array_equal(out, np.concatenate([x, np.repeat(x[:1], padded - 4, 0)]))
    assert _batch.pad(None, 6) is None


def test_stream_masks_progress_and_errors():
    rng = np.random.default_rng(3)
    x = rng.exponential(0.5, size=(10, 40))
    mask = np.arange(40)[None, :] < rng.integers(5, 41, size=(10, 1))
    expon = CASES["exponential"]
    whole = jm.fit_batch(expon.log_density, expon.init, x, mask=mask, constraints=expon.constraints)
    out = io.StringIO()
    streamed = jm.concat_fits(jm.fit_stream(
        expon.log_density, expon.init, (jm.Block(x[i:i + 4], mask=mask[i:i + 4]) for i in (0, 4, 8)),
        block_size=4, total=10, progress=True, progress_stream=out, constraints=expon.constraints))
    np.testing.assert_array_equal(streamed.n_obs, mask.sum(axis=1))
    np.testing.assert_allclose(streamed.params["rate"], whole.params["rate"], rtol=REGROUP_RTOL)
    assert "fitted 10 / 10 datasets (100%)" in out.getvalue()
    calls = []  # a callable instead of the line: called once per block, total as given
    jm.concat_fits(jm.fit_stream(
        expon.log_density, expon.init, (jm.Block(x[i:i + 4], mask=mask[i:i + 4]) for i in (0, 4, 8)),
        block_size=4, progress=lambda done, total: calls.append((done, total)),
        constraints=expon.constraints))
    assert calls == [(4, None), (8, None), (10, None)]
    with pytest.raises(TypeError, match="progress must be a bool or a callable"):
        list(jm.fit_stream(expon.log_density, expon.init, [x[:4]], block_size=4,
                           progress="yes", constraints=expon.constraints))

    with pytest.raises(ValueError, match="more than block_size=4"):
        list(jm.fit_stream(expon.log_density, expon.init, [x[:5]], block_size=4,
                           constraints=expon.constraints))
    with pytest.raises(ValueError, match="differs from block 0"):
        list(jm.fit_stream(expon.log_density, expon.init, [x[:4], x[4:8, :20]], block_size=4,
                           constraints=expon.constraints))
    with pytest.raises(ValueError, match="at least one"):
        jm.concat_fits([])


def test_stream_does_not_leak_float64_between_blocks():
    stream = jm.fit_stream(NORMAL.log_density, NORMAL.init, _blocks(simulate("normal", 8, 2), 4),
                           block_size=4, constraints=NORMAL.constraints)
    next(stream)
    assert jnp.zeros(1).dtype == (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    with jax.enable_x64(False):
        assert jnp.zeros(1).dtype == jnp.float32
        next(stream)
        assert jnp.zeros(1).dtype == jnp.float32


def _run_python(code: str, env_extra: dict) -> str:
    env = {**os.environ, **env_extra}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.heavy
def test_batch_spreads_over_four_local_devices_with_unchanged_results(tmp_path, straggling,
                                                                     monkeypatch):
    # Both paths: the full solve, then the reduced start with its certification.
    np.save(tmp_path / "x.npy", straggling)
    out = _run_python(f"""
        import json, jax, numpy as np, jaxmle as jm
        from jaxmle.batch import _batch, _reduced
        from jax.scipy import stats
        x = np.load({str(tmp_path / "x.npy")!r})
        ld = lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"])
        fit = lambda: jm.fit_batch(ld, {{"mu": 0.0, "sigma": 1.0}}, x,
                                   constraints={{"sigma": jm.positive}}, chunk_size=32)
        reduced = fit()
        _reduced.reducible = lambda spec, data: False
        _reduced.quick_applies = lambda spec: False
        for name, fits in (("full", fit()), ("reduced", reduced)):
            np.savez({str(tmp_path)!r} + f"/{{name}}.npz", mu=fits.params["mu"],
                     sigma=fits.params["sigma"], se=fits.se["sigma"], status=fits.status,
                     n_iter=fits.n_iter)
        print(json.dumps({{"devices": jax.local_device_count(),
                          "layout": _batch.layout(len(x), 32, jax.local_device_count()).devices}}))
        """, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"})
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {"devices": 4, "layout": 4}
    for name in ("full", "reduced"):
        if name == "reduced":
            monkeypatch.undo()
        sharded = np.load(tmp_path / f"{name}.npz")
        single = _normal_batch(straggling, chunk_size=32)
        assert (single.n_iter > 0).all() == (name == "full")
        np.testing.assert_array_equal(sharded["status"], single.status)
        np.testing.assert_array_equal(sharded["n_iter"], single.n_iter)
        np.testing.assert_allclose(sharded["mu"], single.params["mu"], rtol=REGROUP_RTOL)
        np.testing.assert_allclose(sharded["sigma"], single.params["sigma"], rtol=REGROUP_RTOL)
        np.testing.assert_allclose(sharded["se"], single.se["sigma"], rtol=REGROUP_RTOL)


@pytest.mark.heavy
def test_compilation_cache_is_reused_by_a_second_process(tmp_path):
    code = f"""
        import logging, numpy as np, jaxmle as jm
        from jax.scipy import stats
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("jax._src.compiler").setLevel(logging.DEBUG)
        jm.enable_compilation_cache({str(tmp_path / "cache")!r})
        x = np.random.default_rng(0).normal(1.0, 2.0, size=50)
        f = jm.fit(lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]), {{"mu": 0.0, "sigma": 1.0}},
                   x, constraints={{"sigma": jm.positive}})
        print(repr(float(f.params["mu"])))
        """
    first = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                           text=True, timeout=300, check=True)
    assert os.listdir(tmp_path / "cache")
    second = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300, check=True)
    assert "Persistent compilation cache hit" in second.stderr
    assert "Persistent compilation cache hit" not in first.stderr
    assert first.stdout == second.stdout


@pytest.mark.heavy
def test_a_subsample_fit_that_is_not_certified_is_not_used_as_the_start():
    # Every 16th observation is perfectly separated (its fit drifts to a boundary, status
    # BOUNDARY); the full data overlap near 0 and have an interior optimum. The single fit
    # must then start from the given start, as the batch does: same iterations, same estimate.
    from jaxmle.core import _solve
    n = _solve.SUBSAMPLE_MIN_OBS
    x = np.linspace(-1.0, 1.0, n)
    y = (x > 0).astype(float)
    near = np.flatnonzero(np.abs(x) < 0.01)
    flipped = near[near % 16 != 0]
    y[flipped] = 1.0 - y[flipped]

    def logistic(beta, data):
        x, y = data
        eta = beta[0] + beta[1] * x
        return y * eta - jnp.logaddexp(0.0, eta)

    one = jm.fit(logistic, jnp.zeros(2), (x, y))
    batch = jm.fit_batch(logistic, jnp.zeros(2), (x[None], y[None]))
    assert one.converged and batch.converged[0]
    assert int(one.n_iter) == int(batch.n_iter[0])  # 32 when started from the drifted fit
    np.testing.assert_allclose(one.params, batch.params[0], rtol=1e-12)


@pytest.mark.heavy
def test_long_datasets_are_evaluated_in_blocks_with_every_observation_counted_once():
    # n >= BLOCKED_OBS: passes run block by block, the last block slid back to end at n and
    # its repeated observations masked. Any observation dropped or counted twice would move
    # the log-likelihood, the estimates and their closed-form standard errors.
    from jaxmle.core import _objective
    n = _objective.BLOCKED_OBS + 12_345  # not a multiple of the block length
    rng = np.random.default_rng(11)
    x = rng.normal(3.0, 2.0, size=(2, n))
    mask = np.ones((2, n), bool)
    mask[1, n // 3:] = False  # a ragged dataset: the padding is masked in every block
    fits = _normal_batch(x, mask=mask)
    for b, used in ((0, x[0]), (1, x[1, : n // 3])):
        mu, sigma = used.mean(), used.std()
        assert fits.converged[b]
        np.testing.assert_allclose(fits.params["mu"][b], mu, rtol=1e-10)
        np.testing.assert_allclose(fits.params["sigma"][b], sigma, rtol=1e-10)
        np.testing.assert_allclose(fits.se["mu"][b], sigma / np.sqrt(used.size), rtol=1e-8)
        loglik = -0.5 * used.size * (np.log(2 * np.pi * sigma**2) + 1.0)
        np.testing.assert_allclose(fits.loglik[b], loglik, rtol=1e-12)
    weights = rng.integers(0, 3, size=n).astype(float)  # frequency weights, zeros included
    single = jm.fit(NORMAL.log_density, NORMAL.init, x[0], constraints=NORMAL.constraints,
                    weights=weights)
    mu = np.average(x[0], weights=weights)
    np.testing.assert_allclose(single.params["mu"], mu, rtol=1e-10)
    np.testing.assert_allclose(single.params["sigma"],
                               np.sqrt(np.average((x[0] - mu) ** 2, weights=weights)), rtol=1e-10)
    assert single.n_obs == weights.sum()
    # A single long fit starts from its fit on every 16th observation (weighted by 16):
    # near the optimum, where Newton needs few iterations; the batch from (0, 1) needs more.
    assert single.converged and single.n_iter <= 3 < fits.n_iter[0]
    # BFGS's line search differentiates the blocked value itself (a custom derivative).
    bfgs = jm.fit(NORMAL.log_density, NORMAL.init, x[0], constraints=NORMAL.constraints,
                  method="bfgs")
    assert bfgs.converged
    np.testing.assert_allclose(bfgs.params["mu"], x[0].mean(), rtol=ESTIMATE_RTOL)
    np.testing.assert_allclose(bfgs.params["sigma"], x[0].std(), rtol=ESTIMATE_RTOL)
