"""When a batch starts from its reduced problems' optima: compilation in two tiers.

For a model affine in functions of its data (``_reduce``: Normal, Gamma, Poisson, linear
regression ...) the reduced start (``_batch.reduced_starts``) fits each dataset's
log-likelihood on sufficient statistics, and the fit on all observations starts at that
optimum: it then usually stops at its first stopping test, saving most passes over the
data. The start is a program of its own, so compiling it is a cost only the calls that
use it pay:

* a batch of at least ``_batch.REDUCE_MIN_ELEMENTS`` data elements uses it from its first
  call (it pays back its compilation within that call);
* a smaller batch's first call runs without it, and every later call with the same model,
  options and shapes with it (the start program is compiled at the second call; the fit's
  own program is the same for both tiers). A one-shot script pays for nothing it does not
  use; a process that fits a shape again (a stream of batches, repeated analyses) gets the
  faster path. ``docs/design.md`` has the measurements.

Both tiers apply the same stopping test and certification to the fit on all observations,
so their estimates agree to the stopping tolerance (not to the last bit), and ``n_iter``,
which counts iterations on all observations, is lower with the reduced start. Where a
result must not depend on what the process fitted before (``fit_groups``: a resumed
table writes the bytes of an uninterrupted one), ``first_calls`` treats every call as a
shape's first.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np

from jaxmle.batch import _batch
from jaxmle.core import _solve

# Shapes remembered (least recently used dropped first): enough for any one workflow, and
# bounded in a long-lived process that fits many distinct shapes.
REMEMBERED = 256

# key -> whether the model has a reduced form at that key's shapes (None: not asked yet)
_called: OrderedDict = OrderedDict()
_local = threading.local()  # ``pinned``: inside ``first_calls`` in this thread


@contextlib.contextmanager
def first_calls():
    """Within this context (this thread), every batch runs as its shape's first call and
    is not remembered: its result does not depend on earlier calls."""
    outer = getattr(_local, "pinned", False)
    _local.pinned = True
    try:
        yield
    finally:
        _local.pinned = outer


def _key(spec: _solve.FitSpec, lay: _batch.Layout, arrays) -> tuple:
    leaves, structure = jax.tree_util.tree_flatten(arrays)
    return spec, lay, structure, tuple((leaf.shape, leaf.dtype) for leaf in leaves)


def _reducible(spec: _solve.FitSpec, data) -> bool:
    one = jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype),
                                 data)
    return _solve.reduction_for(spec, one) is not None


def _uses_reduced_start(key, spec: _solve.FitSpec, data) -> bool:
    """Whether the call of ``key`` starts from the reduced optima (module notes); a call
    outside ``first_calls`` is remembered."""
    pinned = getattr(_local, "pinned", False)
    first = pinned or key not in _called
    if not pinned:
        _called[key] = _called.get(key)
        _called.move_to_end(key)
        if len(_called) > REMEMBERED:
            _called.popitem(last=False)
    large = sum(leaf.size for leaf in jax.tree_util.tree_leaves(data)) >= _batch.REDUCE_MIN_ELEMENTS
    if first and not large:
        return False
    reducible = _called.get(key)
    if reducible is None:
        reducible = _reducible(spec, data)
        if not pinned:
            _called[key] = reducible
    return reducible


def found_starts(spec: _solve.FitSpec, lay: _batch.Layout, starts, data, weights, mask,
                 valid) -> jax.Array:
    """The ``found`` argument of ``_batch.solve`` for these padded inputs: the reduced
    problems' optima where this call uses them (module notes), else rows of NaN.
    Dispatched, not waited for."""
    if _uses_reduced_start(_key(spec, lay, (starts, data, weights, mask)), spec, data):
        return _batch.reduced_starts(spec, lay, starts, data, weights, mask, valid)
    return np.full((lay.padded, spec.space.n_free), np.nan, jnp.result_type(float))
