"""Structural checks that run before anything is traced, with messages that say what was
expected and what was received. Numerical problems are never raised here: they become
per-dataset status codes inside the compiled fit."""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxmle.core import _parameters


def as_host_tree(tree, dtype: np.dtype, what: str):
    """Pytree of numpy arrays; floating leaves cast to ``dtype``, others kept (ints, bools).

    A leaf that already is such an array is returned as it is, not copied (a batch of data
    can be most of the memory): callers must not write into the leaves.
    """
    def convert(leaf):
        try:
            array = np.asarray(leaf)
        except Exception as error:
            raise TypeError(f"{what} leaves must be arrays or numbers, got {type(leaf).__name__}") from error
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
                or array.dtype == bool):
            raise TypeError(f"{what} leaves must be real numeric arrays, got dtype {array.dtype}")
        if np.issubdtype(array.dtype, np.floating):
            return array.astype(dtype, copy=False)
        return array
    return jax.tree_util.tree_map(convert, tree)


def check_no_nan(tree, what: str) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if np.issubdtype(leaf.dtype, np.floating) and np.isnan(leaf).any():
            raise ValueError(f"{what}{jax.tree_util.keystr(path)} contains NaN "
                             f"({int(np.isnan(leaf).sum())} entries); remove those observations, "
                             "or use fit_batch with a mask")


def batch_size_of(data) -> int:
    """The common leading axis of every data leaf of a batch; raises if there is none."""
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree_util.tree_leaves(data)}
    if not sizes:
        raise ValueError("data must contain at least one array")
    if None in sizes or len(sizes) != 1:
        shapes = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(data)]
        raise ValueError("fit_batch needs every data leaf to have the same leading batch axis B "
                         f"(one slice per dataset); got leaf shapes {shapes}")
    (size,) = sizes
    if size == 0:
        raise ValueError("fit_batch got an empty batch (B = 0)")
    return size


def abstract(tree):
    """Shape/dtype skeleton of a pytree of numpy arrays, as ``jax.eval_shape`` takes it."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _signature(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(leaf.shape), np.dtype(leaf.dtype)) for leaf in leaves)


def _rebuild(signature):
    treedef, leaves = signature
    return jax.tree_util.tree_unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])


def _traced(fn, what: str, *args):
    try:
        return jax.eval_shape(fn, *args)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
            jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError) as error:
        raise TypeError(f"{what} must be traceable jax.numpy code (no numpy calls, Python "
                        f"branches or float() on parameters): {type(error).__name__}: "
                        f"{str(error).splitlines()[0]}") from error


@functools.lru_cache(maxsize=256)
def _model_shapes(log_density, log_prior, init_signature, data_signature):
    """Cached so that repeated fits with new data of one shape do not re-trace the model."""
    params, data = _rebuild(init_signature), _rebuild(data_signature)
    out = _traced(log_density, "log_density", params, data)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"log_density must return one array (scalar or per-observation terms), "
                        f"got {jax.tree_util.tree_structure(out)}")
    if not np.issubdtype(out.dtype, np.floating):
        raise TypeError(f"log_density must return floating values, got dtype {out.dtype}")
    if out.ndim > 1:
        raise ValueError("log_density must return a scalar (the total log-likelihood) or a "
                         f"1-D array of per-observation terms, got shape {out.shape}")
    if log_prior is not None:
        prior = _traced(log_prior, "log_prior", params)
        if not isinstance(prior, jax.ShapeDtypeStruct) or prior.shape != () or \
                not np.issubdtype(prior.dtype, np.floating):
            raise ValueError(f"log_prior(params) must return a floating scalar, got {prior}")
    return out.shape[0] if out.ndim == 1 else None


def model_shapes(log_density, log_prior, init_abstract, data_abstract) -> int | None:
    """Checks the model's output; returns n (per-observation form) or None (scalar form)."""
    return _model_shapes(log_density, log_prior, _signature(init_abstract), _signature(data_abstract))


def init_abstract_from(init_fn, data_abstract):
    return _traced(init_fn, "init(data)", data_abstract)


def check_observation_array(array, name: str, n: int | None, batch: int | None, dtype):
    """Validates ``weights`` or ``mask``: shape ``(n,)`` or ``(B, n)``; returns it as numpy."""
    if n is None:
        raise ValueError(f"{name} needs the per-observation form of log_density (a 1-D array of "
                         "terms), but log_density returned a scalar")
    array = np.asarray(array)
    expected = (n,) if batch is None else (batch, n)
    if array.shape != expected:
        raise ValueError(f"{name} must have shape {expected} (datasets x observations), "
                         f"got {array.shape}")
    if dtype == bool:
        if array.dtype != bool:
            raise TypeError(f"{name} must be a boolean array, got dtype {array.dtype}")
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(dtype)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return array


def host_init(init, constraints, dtype):
    """Converts a concrete ``init`` pytree, builds its space and checks the support."""
    init = jax.tree_util.tree_map(lambda leaf: leaf.astype(dtype), as_host_tree(init, dtype, "init"))
    space = _parameters.build(init, constraints)
    _parameters.check_in_support(space, init)
    return init, space


def missing_labels(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of missing labels: NaN in a float array, None or NaN in an object one."""
    if labels.dtype.kind == "f":
        return np.isnan(labels)
    if labels.dtype.kind == "O":
        return np.array([label is None or label != label for label in labels.ravel()],
                        bool).reshape(labels.shape)
    return np.zeros(labels.shape, bool)
