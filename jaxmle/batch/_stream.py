"""``fit_stream``: batches larger than memory, streamed block by block through one compiled fit.

Every block is padded to the same ``block_size``, so the fit compiles once, on the first
block, whatever the number and sizes of the blocks. The next block is dispatched before
the previous one's results are fetched, so reading or simulating data on the host overlaps
with fitting on the device.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

import jax
import numpy as np

from jaxmle.batch import _batch, _progress
from jaxmle.core import _engine, _precision, _validation
from jaxmle.core._fit import Fit


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of datasets for ``fit_stream`` with its own ``mask`` and ``weights``
    (and ``clusters`` labels ``(B, n)`` for ``cov="cluster"``).

    A block given as a bare pytree is ``Block(data)``.
    """

    data: Any
    mask: Any = None
    weights: Any = None
    clusters: Any = None


@_precision.public
def fit_stream(log_density: Callable, init, blocks: Iterable, *, block_size: int,
               total: int | None = None, progress: _progress.ProgressArg = False,
               progress_stream: TextIO | None = None,
               method="newton", constraints=None, log_prior: Callable | None = None,
               cov: str = "observed", max_iter: int | None = None, gtol: float | None = None,
               precision: str = "float64",
               chunk_size: int | None = None) -> Iterator[Fit]:
    """Fits a stream of blocks of datasets, yielding one batched ``Fit`` per block.

    Each block is what ``fit_batch`` takes as ``data`` (a leading batch axis of at most
    ``block_size`` datasets; the last block is usually shorter) or a ``jm.Block`` carrying
    a ``mask``/``weights`` too. All blocks share the shapes after the batch axis. Results
    equal ``fit_batch`` on the concatenated blocks (to rounding: datasets are vectorised
    in different groups); ``jm.concat_fits`` joins them.

    Args:
        blocks: an iterable (a generator reading files, a simulator ...) of blocks.
        block_size: the largest block; every block is padded to it, so nothing recompiles.
        total: datasets expected overall, for the progress line (optional).
        progress: True writes a progress line (datasets done, fits/s, time left) to
            ``progress_stream`` (stderr by default); a callable ``progress(done, total)``
            is called instead after each block (``total`` as given, possibly None).
        method, constraints, log_prior, cov, max_iter, gtol, precision, chunk_size:
            as in ``fit_batch``.

    Yields:
        One ``Fit`` per block, with that block's number of datasets.

    Raises:
        ValueError: a block larger than ``block_size``, or shaped unlike the first block.

    Example:
        >>> import numpy as np
        >>> from jax.scipy import stats
        >>> import jaxmle as jm
        >>> rng = np.random.default_rng(0)
        >>> blocks = (rng.normal(2.0, 1.0, size=(b, 30)) for b in (64, 64, 10))
        >>> fits = jm.concat_fits(jm.fit_stream(
        ...     lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]), {"mu": 0.0, "sigma": 1.0},
        ...     blocks, block_size=64, constraints={"sigma": jm.positive}))
        >>> len(fits), bool(fits.converged.all())
        (138, True)
    """
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    bar = _progress.reporter(progress, total, stream=progress_stream)
    first_spec, pending = None, None
    for number, block in enumerate(blocks):
        block = block if isinstance(block, Block) else Block(block)
        spec, init_values, data, weights, mask = _engine._prepare(
            log_density, init, block.data, method=method, constraints=constraints,
            log_prior=log_prior, cov=cov, weights=block.weights, mask=block.mask,
            max_iter=max_iter, gtol=gtol, precision=precision, batched=True,
            clusters=block.clusters)
        size = _validation.batch_size_of(data)
        if size > block_size:
            raise ValueError(f"block {number} has {size} datasets, more than block_size={block_size}")
        if first_spec is None:
            first_spec = spec
            chunk_size = _engine.resolve_chunk_size(chunk_size, spec, (data, weights, mask))
            lay = _batch.layout(block_size, chunk_size, jax.local_device_count())
        elif spec != first_spec:
            raise ValueError(f"block {number} differs from block 0 in its shapes after the "
                             "batch axis; every block must match")
        # The caller's code runs while this block is fitted (and may refill the
        # arrays it yielded): the fit reads copies, and so does the second fit of the
        # datasets Newton fails, once the block is fetched (``_engine.retried``).
        data, weights, mask = _host_copy((data, weights, mask))
        retry = functools.partial(_engine.retried, spec=spec, lay=lay, init_values=init_values,
                                  data=data, weights=weights, mask=mask,
                                  chunk_size=chunk_size, default_cap=max_iter is None)
        running = (_engine.dispatch(spec, lay, init_values, data, weights, mask), size, retry)
        if pending is not None:
            yield _finished(pending, bar)
        pending = running
    if pending is not None:
        yield _finished(pending, bar)
    bar.close()


def _host_copy(tree):
    """Copies of the host arrays in ``tree``, aligned so that the fit reads them in place."""
    return jax.tree_util.tree_map(lambda leaf: _batch.pad(leaf, leaf.shape[0], copy=True), tree)


def _finished(pending: tuple, bar: _progress.Progress | _progress.Callback) -> Fit:
    dispatched, size, retry = pending
    fits = retry(_engine.fetch(dispatched, size))
    bar.update(size)
    return fits


def concat_fits(fits: Iterable[Fit]) -> Fit:
    """One batched ``Fit`` from several (e.g. the blocks of ``fit_stream``), in order.

    Raises:
        ValueError: no fits, or fits of different models, options or precisions.
    """
    fits = list(fits)
    if not fits:
        raise ValueError("concat_fits needs at least one batched Fit")
    structures = {jax.tree_util.tree_structure(f) for f in fits}
    if len(structures) > 1:
        raise ValueError("concat_fits: the fits differ in parameters, method or options")
    return jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves), *fits)
