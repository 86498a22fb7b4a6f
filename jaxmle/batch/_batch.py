"""The batched driver: chunks, straggler compaction, and the spread over local devices.

A batch of ``B`` datasets is laid out as ``devices x windows x chunks x chunk`` (padded at
the end with blocked copies of dataset 0 that never iterate and are dropped). On each
device, the windows (at most 16 chunks each) are solved one after another, each thus:

1. Every dataset is started (loss and derivatives at its start, stopping test), from its
   start point or, where one is given (``found``), from that point in unconstrained
   coordinates: the optimum of its reduced problem (``reduced_starts``, a program of its
   own), when the model is affine in functions of the data (``_reduce``: Normal, Gamma,
   Poisson, linear regression ...). That start is fitted by Newton on sufficient
   statistics from one pass over the data, and the fit on all observations then usually
   stops at its first stopping test: ``certify``, a program without iterations, then
   gives the result, and this solve runs only where it leaves a dataset running
   (``_reduced``). A Newton fit of another model starts with ``quick``, a program of the
   small Newton and the certification a chunk at a time, and this solve fits only the
   datasets it leaves undecided.
2. Rounds of continuous batching over ``chunk`` lanes: the datasets in the lanes step
   together (``vmap`` of one iteration) until at most ``quota = chunk // 16`` of them
   still run; their states are written back, and the lanes of finished datasets take the
   next datasets in order, while the stragglers stay. A vmapped loop costs as much as its
   slowest member; this way a slow dataset holds one lane, not a whole chunk. Once no fresh
   dataset is left, the last round runs until every dataset has stopped. A round costs
   O(window) whatever the batch size, so time grows linearly with B.
3. Every dataset's final iterate is certified and its covariance computed (chunked again,
   so per-observation scores never exist for the whole batch at once).

Each dataset's arithmetic is the same whichever chunk it runs in, so a result does not
depend on the batch it came with. Devices: ``jax.shard_map`` over a one-axis mesh of the
local devices; datasets are independent, so no device talks to another.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, PartitionSpec

from jaxmle.core import _loop, _solve, _xla
from jaxmle.core._fit import Fit
from jaxmle.core._status import RUNNING, Status
from jaxmle.solvers import _newton, _start_newton

STRAGGLER_FRACTION = 16  # a round ends when <= chunk // 16 of its datasets still run
# A chunk's data and per-observation derivative terms should stay in cache, while each
# chunk carries enough work to amortise the launch of a round's many small kernels.
# Measured on the project's 2-core CPU (steady calls, ``docs/design.md``): logistic
# regressions (1,000 observations) were fastest at 96-128 datasets per chunk for k = 5
# and at 32 for k = 20; Weibull and Normal batches at 128 (Weibull 7-27% slower at 256).
CHUNK_BYTES = 8 * 2**20
MIN_CHUNK, MAX_CHUNK = 1, 128  # one dataset per chunk when a single one fills the cache
# The quick pass (``quick``) gives up on a chunk after this many iterations: statistical
# fits from ordinary starts take a handful, and a dataset not converged by then is fitted
# by the full solve from its start.
QUICK_MAX_ITER = 30
# Continuous batching runs over windows of at most this many chunks, one window after
# another: a round then costs O(window), not O(batch), so time stays linear in B.
WINDOW_CHUNKS = 16


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static shape of a batched solve: ``devices * windows * chunks * chunk`` datasets.

    ``quota``: a round of ``chunk`` datasets ends when at most this many still run.
    """

    devices: int
    windows: int
    chunks: int  # per window
    chunk: int
    quota: int

    @property
    def padded(self) -> int:
        return self.devices * self.windows * self.chunks * self.chunk


def auto_chunk_size(bytes_per_dataset: int, n_obs: int | None, n_free: int) -> int:
    """Datasets per chunk: a power of two whose working set is about ``CHUNK_BYTES``.

    The working set of a dataset is its data plus ``k`` derivative terms per observation
    (``k`` free parameters): a Hessian pass reduces its ``k x k`` products as it goes.
    """
    per_dataset = bytes_per_dataset + 8 * (n_obs or 1) * n_free
    chunk = 2 ** round(np.log2(max(CHUNK_BYTES / per_dataset, 1.0)))
    return int(min(MAX_CHUNK, max(MIN_CHUNK, chunk)))


def _window_count(total: int, relaxed: bool) -> int | None:
    """The fewest windows of equal size, at most ``WINDOW_CHUNKS`` chunks each, that cover
    ``total`` chunks; ``relaxed``: any such count whose windows have at least a quarter of
    ``WINDOW_CHUNKS``, not just the fewest. None if there is none."""
    fewest = -(-total // WINDOW_CHUNKS)
    most = total // (WINDOW_CHUNKS // 4) if relaxed else fewest
    return next((count for count in range(fewest, most + 1) if total % count == 0), None)


def layout(batch: int, chunk_size: int, devices: int) -> Layout:
    """Equal chunks of at most ``chunk_size`` covering ``batch`` datasets on ``devices``.

    A layout that covers the batch exactly, with chunks of at least 3/4 of ``chunk_size``, is
    preferred (the fewest windows if they split the chunks evenly, else windows of at least
    ``WINDOW_CHUNKS // 4`` chunks): padding costs a copy of the whole batch into fresh
    memory, whose page faults make it slow and erratic (measurements in ``docs/design.md``).
    Otherwise padding is kept below one dataset per chunk (a remainder chunk would compile
    the body a second time).
    """
    devices = max(1, min(devices, batch))
    per_device = -(-batch // devices)
    all_chunks = -(-per_device // chunk_size)
    if batch % devices == 0:
        totals = [total for total in range(all_chunks, int(per_device / (0.75 * chunk_size)) + 1)
                  if per_device % total == 0]
        for relaxed in (False, True):
            for total in totals:
                windows = _window_count(total, relaxed)
                if windows is not None:
                    chunk = per_device // total
                    return Layout(devices, windows, total // windows, chunk,
                                  chunk // STRAGGLER_FRACTION)
    windows = -(-all_chunks // WINDOW_CHUNKS)
    chunks = -(-all_chunks // windows)
    chunk = -(-per_device // (windows * chunks))
    return Layout(devices, windows, chunks, chunk, chunk // STRAGGLER_FRACTION)


def _unchunked(tree):
    return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def _rows(tree, offset, size: int):
    """Rows ``offset`` to ``offset + size`` of every leaf of ``tree`` (a traced offset)."""
    return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_slice_in_dim(x, offset, size), tree)


def _solve_device(spec, lay: Layout, starts, found, data, weights, mask, valid) -> Fit:
    """All datasets of one device: leading axis ``windows * chunks * chunk`` everywhere.

    The windows run one after another, each reading its datasets' data, weights and mask
    from the device's arrays in place: slicing a window out copied it, and was slower
    (``docs/design.md``).
    """
    window = lambda index: _solve_window(spec, lay, index, starts, found, data, weights,
                                         mask, valid)
    return _unchunked(jax.lax.map(window, jnp.arange(lay.windows)))


def _reduced_device(spec, lay: Layout, starts, data, weights, mask, valid) -> jax.Array:
    """``(windows * chunks * chunk, k)``: each dataset's start moved to its reduced
    problem's optimum (``_solve.reduced_optima``). The statistics are computed a chunk at
    a time; the reduced problems' Newton loop (no cost per observation) runs over all the
    device's datasets at once."""
    one = jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype),
                                 data)
    form = _solve.reduction_for(spec, one)
    inputs = jax.vmap(functools.partial(_solve.reduced_inputs_one, spec, form))
    z0, stats, blocked = _unchunked(jax.lax.map(
        lambda index: inputs(*_rows((starts, data, weights, mask, valid), index * lay.chunk,
                                    lay.chunk)),
        jnp.arange(lay.windows * lay.chunks)))
    return _solve.reduced_optima(spec, form, z0, stats, blocked)


def _solve_window(spec, lay: Layout, window, starts, found, data, weights, mask,
                  valid) -> Fit:
    """The datasets of window ``window`` (an index) of the device's arguments (leading axis
    ``windows * chunks * chunk``); the result has the window's ``chunks * chunk``."""
    step = jax.vmap(functools.partial(_solve.step_one, spec))
    finish = jax.vmap(functools.partial(_solve.finish_one, spec))
    total = lay.chunks * lay.chunk
    origin = window * total  # the window's first dataset on the device
    # Starts and flags (a few numbers per dataset) are copied out for the window; the data
    # are sliced a chunk at a time from the device's arrays, and gathered by lane.
    starts, found, valid = _rows((starts, found, valid), origin, total)
    shared = (data, weights, mask)
    chunk_of = lambda index: _rows(shared, origin + index * lay.chunk, lay.chunk)

    def over_chunks(function, local):
        """``function(*local chunk, *shared chunk)`` for every chunk, stacked: ``local`` has
        the window's leading axis."""
        return _unchunked(jax.lax.map(
            lambda index: function(*_rows(local, index * lay.chunk, lay.chunk), *chunk_of(index)),
            jnp.arange(lay.chunks)))

    start = jax.vmap(functools.partial(_solve.start_one, spec))
    loops = over_chunks(lambda starts, found, valid, *shared: start(starts, *shared, valid,
                                                                    found=found),
                        (starts, found, valid))

    def load(loops, index):
        """The loop states and data of datasets ``index`` (past the end: finished dummies)."""
        take = lambda x, at: jnp.take(x, at, axis=0, mode="clip")
        lanes = jax.tree_util.tree_map(lambda x: take(x, index), loops)
        lanes = lanes._replace(status=jnp.where(index < total, lanes.status, int(Status.CONVERGED)))
        return lanes, jax.tree_util.tree_map(lambda x: take(x, origin + index), shared)

    def round_(carry):
        # The lanes step together until at most ``quota`` still run (all stop once no fresh
        # dataset is left); the results are written back and finished lanes take the next
        # datasets in order. Every round costs O(chunk), whatever the batch size.
        loops, index, cursor = carry
        lanes, slices = load(loops, index)
        quota = jnp.where(cursor < total, lay.quota, 0)
        lanes = _loop.run_lanes(lambda lanes: step(lanes, *slices), lanes, quota)
        loops = jax.tree_util.tree_map(lambda x, y: x.at[index].set(y, mode="drop"), loops, lanes)
        finished = ~_loop.running(lanes)
        index = jnp.where(finished, cursor + jnp.cumsum(finished) - 1, index)
        return loops, jnp.minimum(index, total), cursor + jnp.sum(finished)

    def more(carry):
        loops, index, cursor = carry
        lane_running = jnp.take(_loop.running(loops), index, mode="clip") & (index < total)
        return (cursor < total) | jnp.any(lane_running)

    first = jnp.arange(lay.chunk)
    loops, _, _ = _loop.repeat(round_, (loops, first, jnp.asarray(lay.chunk)), more)
    return over_chunks(finish, (loops,))


def _certify_device(spec, lay: Layout, starts, found, data, weights, mask, valid):
    """``(fits, running)`` of the device's datasets (leading axis ``windows * chunks *
    chunk``), each started at ``found`` (else its start) and certified there with no
    iteration, a chunk at a time; ``running``: the stopping test did not stop it."""
    start = jax.vmap(functools.partial(_solve.start_one, spec))
    finish = jax.vmap(functools.partial(_solve.finish_one, spec))

    def chunk(index):
        starts_, found_, valid_, *shared = _rows((starts, found, valid, data, weights, mask),
                                                 index * lay.chunk, lay.chunk)
        loops = start(starts_, *shared, valid_, found=found_)
        return finish(loops, *shared), _loop.running(loops)

    return _unchunked(jax.lax.map(chunk, jnp.arange(lay.windows * lay.chunks)))


def _quick_device(spec, lay: Layout, starts, data, weights, mask, valid):
    """``(fits, undecided)`` of the device's datasets (leading axis ``windows * chunks *
    chunk``), a chunk at a time: each dataset's start, the small Newton of
    ``solvers/_start_newton`` from it (at most ``QUICK_MAX_ITER`` iterations, and the fit's
    own cap), and the certification of its end from the last derivatives; ``undecided``:
    the fit is not final (``_solve.certify_at_one``), or its last step still removed more
    than ``_newton.FALLING_CUT`` of its loss."""
    initial = jax.vmap(functools.partial(_solve.initial_one, spec))
    derivatives = jax.vmap(functools.partial(_solve.derivatives_one, spec))
    certify_at = jax.vmap(functools.partial(_solve.certify_at_one, spec))
    evaluations = min(QUICK_MAX_ITER, spec.max_iter) + 1  # the first is at the start

    def chunk(index):
        starts_, valid_, *shared = _rows((starts, valid, data, weights, mask),
                                         index * lay.chunk, lay.chunk)
        z0, blocked = initial(starts_, *shared, valid_)
        active = blocked == RUNNING
        end = _start_newton.descend(lambda z: derivatives(z, *shared), z0, gtol=spec.gtol,
                                    max_iter=evaluations, active=active)
        n_iter = jnp.where(active, jnp.maximum(end.count - 1, 0), 0)
        fits, decided = certify_at(end.z, (end.f, end.g, end.h), n_iter, *shared, valid_)
        # A fit whose last step removed more than half its loss is still falling relative
        # to itself (a loss falling towards 0 at a singular minimum, a near-perfect fit):
        # the trust-region Newton does not stop there either (``_newton``'s ``falling``).
        return fits, ~decided | (active & (end.cut > _newton.FALLING_CUT))

    return _unchunked(jax.lax.map(chunk, jnp.arange(lay.windows * lay.chunks)))


def _per_device(solve_device, lay: Layout, *args):
    """``solve_device(*args)`` on each local device's share of ``args`` (leading axis
    ``lay.padded`` on every leaf), the results joined along that axis."""
    if lay.devices == 1:
        return solve_device(*args)
    mesh = jax.make_mesh((lay.devices,), ("batch",), axis_types=(AxisType.Auto,),
                         devices=jax.local_devices()[:lay.devices])
    batch = PartitionSpec("batch")
    return jax.shard_map(solve_device, mesh=mesh, in_specs=batch, out_specs=batch,
                         check_vma=False)(*args)


def _solve_batch(spec: _solve.FitSpec, lay: Layout, starts, found, data, weights, mask,
                 valid) -> Fit:
    """The batched fit of ``lay.padded`` datasets (leading axis on every argument).

    ``starts``: one start per dataset (None with a data-driven start, ``spec.init_fn``);
    ``found``: ``(padded, k)`` unconstrained starts that replace them where finite (rows of
    NaN: none), e.g. ``reduced_starts``' result. Both kinds of call share one program.
    """
    return _per_device(functools.partial(_solve_device, spec, lay), lay, starts, found, data,
                       weights, mask, valid)


def _reduced_starts(spec: _solve.FitSpec, lay: Layout, starts, data, weights, mask,
                    valid) -> jax.Array:
    """``(padded, k)``: the optimum of each dataset's reduced problem, found from its start
    (the start itself where the data block a fit); the model must have a reduced form."""
    return _per_device(functools.partial(_reduced_device, spec, lay), lay, starts, data,
                       weights, mask, valid)


def _certify_batch(spec: _solve.FitSpec, lay: Layout, starts, found, data, weights, mask,
                   valid) -> tuple[Fit, jax.Array]:
    """``(fits, running)``: every dataset started at ``found`` (``(padded, k)``; NaN rows:
    its start) and certified there, and ``(padded,)`` True where it would iterate on."""
    return _per_device(functools.partial(_certify_device, spec, lay), lay, starts, found, data,
                       weights, mask, valid)


def _quick_batch(spec: _solve.FitSpec, lay: Layout, starts, data, weights, mask,
                 valid) -> tuple[Fit, jax.Array]:
    """``(fits, undecided)``: every dataset's quick pass (``_quick_device``), and
    ``(padded,)`` True where its fit is not final."""
    return _per_device(functools.partial(_quick_device, spec, lay), lay, starts, data,
                       weights, mask, valid)


solve = _xla.jit(_solve_batch, static_argnums=(0, 1))
reduced_starts = _xla.jit(_reduced_starts, static_argnums=(0, 1))
certify = _xla.jit(_certify_batch, static_argnums=(0, 1))
quick = _xla.jit(_quick_batch, static_argnums=(0, 1))


# JAX on CPU uses a host array in place, without copying it, when its memory is aligned to
# this many bytes (measured, jax 0.10.2); numpy's own large arrays are aligned to 16 only.
ZERO_COPY_ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised host array that JAX's CPU backend can use without a copy."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + ZERO_COPY_ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % ZERO_COPY_ALIGNMENT
    return raw[offset:offset + size].view(dtype).reshape(shape)


def pad(leaf, padded: int, *, copy: bool = False):
    """``leaf`` (host array or None) extended to ``padded`` rows with copies of row 0.

    An extended (or, with ``copy``, any) leaf is a fresh aligned array, which JAX then uses
    without copying it again: a padded batch costs one copy of the data, not two.
    """
    if leaf is None or (leaf.shape[0] == padded and not copy):
        return leaf
    out = aligned_empty((padded, *leaf.shape[1:]), leaf.dtype)
    out[:leaf.shape[0]] = leaf
    out[leaf.shape[0]:] = leaf[:1]
    return out
