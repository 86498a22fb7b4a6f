"""The short paths of a batch before the full solve: the reduced start, or the quick pass.

A model affine in functions of its data (``_reduce``: Normal, Gamma, Poisson, exponential,
linear regression ...) has each dataset's log-likelihood first maximised on its sufficient
statistics (``_batch.reduced_starts``: one pass over the data, then a small Newton with no
cost per observation). At that optimum the fit on all observations usually passes its
stopping test at once, so the call runs a program with no iterations at all
(``_batch.certify``: each dataset's start, stopping test and certification). Only where a
dataset is left running there (the reduced optimum missed the stopping test on all
observations, or the reduced problem could not be fitted) does the whole batch go on to
the full solve (``_batch.solve``) from the same starts.

Any other model fitted by Newton starts with the quick pass (``_batch.quick``): each
dataset's start, the small Newton of ``solvers/_start_newton`` on all its observations (a
chunk at a time, at most ``_batch.QUICK_MAX_ITER`` iterations), and the certification of
its last iterate from the derivatives already computed there, in one program. A dataset
whose fit is CONVERGED (or whose data block any fit) is final, unless its last step removed
more than half its loss (``_newton.FALLING_CUT``: a loss still falling relative to itself,
where the trust-region Newton does not stop either; Powell's singular function passed the
gradient test at RSS 2e-15, 1e-4 from its minimiser, which Newton reaches); the others
alone are then fitted by the full solve from their starts, so their results are exactly
the full solve's (a separated logistic regression's BOUNDARY, a hard problem's Newton
path). The starts of ``jm.multistart`` and ``jm.refit`` go straight to the full solve:
which optimum a start reaches is their point, and there it is the single fit's.

These programs compile in less time than the full solve's iteration loop and straggler
compaction (measurements in ``docs/design.md``), so a first call is shorter, and they run
no slower; on the first call for a shape the certification compiles on a thread while the
reduced start compiles. A dataset's result does not depend on what the process fitted
before.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmle.batch import _batch
from jaxmle.core import _solve
from jaxmle.core._fit import Fit


class Dispatched(NamedTuple):
    """A batched fit on its way (device arrays, not waited for).

    ``fits`` is the result unless ``running`` (``(padded,)`` bool, or None) marks a dataset
    the certification left undecided; ``solve()`` then runs the full solve and returns the
    batch's result (after the quick pass: merged on the host).
    """

    fits: Fit
    running: jax.Array | None = None
    solve: Callable[[], Fit] | None = None


@functools.lru_cache(maxsize=256)
def _reducible(spec: _solve.FitSpec, data_one: tuple) -> bool:
    treedef, structs = data_one
    return _solve.reduction_for(spec, jax.tree_util.tree_unflatten(treedef, structs)) is not None


def reducible(spec: _solve.FitSpec, data) -> bool:
    """Whether the model has a reduced form at the shapes of one dataset of ``data``
    (leading batch axis); remembered per model, options and shapes."""
    leaves, treedef = jax.tree_util.tree_flatten(data)
    structs = tuple(jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype) for leaf in leaves)
    return _reducible(spec, (treedef, structs))


def quick_applies(spec: _solve.FitSpec) -> bool:
    """Whether a batch without a reduced form starts with the quick pass: its iterations
    are Newton's (the small Newton of ``solvers/_start_newton``), so Newton fits only."""
    return spec.solver.name == "newton"


_compiled_ahead: set = set()  # keys of ``_certification_ahead`` already compiled


def _certification_ahead(spec: _solve.FitSpec, lay: _batch.Layout, inputs):
    """The first time for these shapes, a started thread that compiles the certification
    while this thread compiles the reduced start (the two compilations overlap); else
    None. A failure there is left to the certification's own call to raise."""
    starts, data, weights, mask, valid = inputs
    leaves, treedef = jax.tree_util.tree_flatten(inputs)
    key = (spec, lay, treedef, tuple((leaf.shape, leaf.dtype) for leaf in leaves))
    if key in _compiled_ahead:
        return None
    _compiled_ahead.add(key)
    struct = lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
    found = jax.ShapeDtypeStruct((lay.padded, spec.space.n_free), jnp.result_type(float))
    args = jax.tree_util.tree_map(struct, (starts, found, data, weights, mask, valid))

    x64 = jax.config.jax_enable_x64  # this thread's precision (a thread-local setting)

    def compile_ahead():
        try:
            with jax.enable_x64(x64):
                _batch.certify.compile_ahead(spec, lay, *args)
        except Exception:  # noqa: BLE001 - the call itself compiles again and raises
            _compiled_ahead.discard(key)

    thread = threading.Thread(target=compile_ahead, daemon=True)
    thread.start()
    return thread


def dispatch(spec: _solve.FitSpec, lay: _batch.Layout, starts, data, weights, mask,
             valid, *, quick: bool = True) -> Dispatched:
    """The batched fit of padded device inputs (``lay.padded`` rows): by the reduced start
    and certification where the model allows, else, for Newton and where ``quick``, by the
    quick pass; the full solve where these leave a dataset undecided (module notes)."""
    if not reducible(spec, data):
        found = np.full((lay.padded, spec.space.n_free), np.nan, jnp.result_type(float))
        solve = functools.partial(_batch.solve, spec, lay, starts, found, data, weights, mask)
        if not (quick and quick_applies(spec)):
            return Dispatched(solve(valid))
        fits, undecided = _batch.quick(spec, lay, starts, data, weights, mask, valid)
        # The undecided datasets are fitted from their starts, the others are not refitted.
        return Dispatched(fits, undecided, lambda: _merged(
            undecided, fits, solve(np.asarray(valid) & np.asarray(undecided))))
    ahead = _certification_ahead(spec, lay, (starts, data, weights, mask, valid))
    found = _batch.reduced_starts(spec, lay, starts, data, weights, mask, valid)
    if ahead is not None:
        ahead.join()
    fits, running = _batch.certify(spec, lay, starts, found, data, weights, mask, valid)
    return Dispatched(fits, running, functools.partial(_batch.solve, spec, lay, starts, found,
                                                       data, weights, mask, valid))


def _merged(replaced: jax.Array, fits: Fit, others: Fit) -> Fit:
    """``others`` where ``replaced`` (``(padded,)``), ``fits`` elsewhere, on the host."""
    replaced, fits, others = jax.device_get((replaced, fits, others))
    return jax.tree_util.tree_map(
        lambda kept, other: np.where(replaced.reshape((-1,) + (1,) * (np.ndim(kept) - 1)),
                                     other, kept), fits, others)


def settle(dispatched: Dispatched) -> Fit:
    """The batch's ``Fit``: the certified one (device arrays), or, where a dataset was left
    undecided, ``solve()``'s (waits for the certification to decide)."""
    if dispatched.running is not None and np.any(np.asarray(dispatched.running)):
        return dispatched.solve()
    return dispatched.fits
