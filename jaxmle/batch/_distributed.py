"""Multi-process batches: each process fits one contiguous shard, then all gather the results.

Datasets in a batch are independent, so a batch is split across the processes of a
``jax.distributed`` job without any communication during the fit: process ``i`` runs
``fit_batch`` on ``data[process_shard(B)]`` with its local devices, and one collective at
the end (``gather_fits``) hands every process the whole batched ``Fit``. On CPU the
collective needs cross-process CPU collectives (``jax_cpu_collectives_implementation``,
``"gloo"`` by default since jax 0.5.1).
"""

from __future__ import annotations

import dataclasses
import operator
import zlib

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxmle.core import _precision
from jaxmle.core._fit import Fit


def process_shard(batch_size: int) -> slice:
    """The contiguous slice of a batch of ``batch_size`` datasets that this process fits.

    Process ``jax.process_index()`` of ``jax.process_count()`` gets the shard of that rank in
    a split into contiguous shards whose sizes differ by at most one (the first
    ``batch_size % process_count`` shards hold one dataset more). Shards are in process
    order, which is the order in which ``gather_fits`` concatenates them. In a single
    process the shard is the whole batch.

    Args:
        batch_size: ``B``, the number of datasets in the whole batch (the same on every
            process).

    Returns:
        ``slice(start, stop)`` into the batch axis.

    Raises:
        ValueError: if ``batch_size`` is smaller than the number of processes (every
            process must fit at least one dataset).

    Example:
        >>> import jaxmle as jm
        >>> jm.process_shard(10)            # one process: the whole batch
        slice(0, 10, None)
    """
    return _shard(operator.index(batch_size), jax.process_index(), jax.process_count())


def _shard(batch_size: int, index: int, count: int) -> slice:
    """Shard ``index`` of ``count`` contiguous, near-equal shards of ``range(batch_size)``."""
    if batch_size < count:
        raise ValueError(f"batch_size ({batch_size}) is smaller than the number of processes "
                         f"({count}): every process needs at least one dataset")
    base, extra = divmod(batch_size, count)
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))


@_precision.public
def gather_fits(local_fit: Fit) -> Fit:
    """All processes' batched fits, concatenated in process order, on every process.

    A collective: every process of the ``jax.distributed`` job must call it, with the
    ``Fit`` that ``fit_batch`` returned for its shard (``process_shard``). Shards may have
    different sizes; the model, options and parameter structure must be the same on every
    process. In a single process the fit is returned unchanged.

    Args:
        local_fit: this process's batched ``Fit`` (leading batch axis on every array field).

    Returns:
        One batched ``Fit`` of numpy arrays over the whole batch, identical on every process.

    Raises:
        TypeError: if ``local_fit`` is a single-dataset ``Fit``.
        ValueError: if the processes' fits differ in structure (parameters, method,
            covariance kind, dtypes), on every process alike.

    Example:
        >>> import numpy as np
        >>> from jax.scipy import stats
        >>> import jaxmle as jm
        >>> X = np.random.default_rng(2).normal(1.0, 2.0, size=(8, 50))
        >>> local = jm.fit_batch(lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]),
        ...                      {"mu": 0.0, "sigma": 1.0}, X[jm.process_shard(len(X))],
        ...                      constraints={"sigma": jm.positive})
        >>> len(jm.gather_fits(local))      # one process: the local fit itself
        8
    """
    if not local_fit.batch_shape:
        raise TypeError("gather_fits needs a batched Fit (from fit_batch), "
                        "got a single-dataset Fit")
    if jax.process_count() == 1:
        return local_fit
    leaves, treedef = jax.tree_util.tree_flatten(local_fit)
    leaves = [np.asarray(leaf) for leaf in leaves]
    # The model holds functions whose reprs carry per-process addresses: compare the rest.
    sizes = _shard_sizes(len(local_fit), _layout(
        jax.tree_util.tree_structure(dataclasses.replace(local_fit, model=None)), leaves))
    largest = int(sizes.max())
    stacked = multihost_utils.process_allgather([_pad(leaf, largest) for leaf in leaves])
    gathered = [np.concatenate([block[:size] for block, size in zip(leaf, sizes)])
                for leaf in stacked]
    return jax.tree_util.tree_unflatten(treedef, gathered)


def _layout(treedef, leaves: list[np.ndarray]) -> int:
    """A checksum of what must agree across processes: tree, metadata, per-dataset shapes."""
    text = repr((str(treedef), [(leaf.shape[1:], leaf.dtype.str) for leaf in leaves]))
    # 31 bits: the table of sizes and checksums travels as int32 at either precision.
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def _shard_sizes(size: int, layout: int) -> np.ndarray:
    """Every process's shard size, in process order, after checking that layouts agree."""
    table = multihost_utils.process_allgather(np.array([size, layout], np.int32))
    if len(set(table[:, 1].tolist())) != 1:
        raise ValueError("gather_fits needs fits of the same model and options on every "
                         "process (parameters, method, covariance kind, precision); "
                         f"per-process layout checksums differ: {table[:, 1].tolist()}")
    return table[:, 0]


def _pad(leaf: np.ndarray, size: int) -> np.ndarray:
    """``leaf`` padded with zeros along the batch axis to ``size`` (collectives need equal shapes)."""
    filler = np.zeros((size - leaf.shape[0],) + leaf.shape[1:], leaf.dtype)
    return np.concatenate([leaf, filler])
