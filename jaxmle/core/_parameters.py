"""The map between the user's constrained parameter pytree and one flat unconstrained vector.

Solvers see a flat vector ``z`` of the free coordinates; users see a pytree shaped like
``init``. ``ParameterSpace`` is static, hashable data (tree structure, leaf shapes,
constraints) built once from ``init`` and ``constraints``; it is the only place where the
reparameterisation happens.

Ordering conventions: ``z`` concatenates each leaf's free coordinates in
``jax.tree_util`` flattening order; the constrained flat vector (the order of ``Fit.cov``)
is ``jax.flatten_util.ravel_pytree(params)``, i.e. the same leaf order, each leaf raveled.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxmle.core import _constraints


@dataclasses.dataclass(frozen=True)
class ParameterSpace:
    """Static description of a parameter pytree and its constraints.

    Attributes:
        treedef: tree structure of the parameters.
        shapes: shape of each leaf, in flattening order.
        constraints: the ``Constraint`` of each leaf.
        leaf_names: the pytree path of each leaf, e.g. ``("beta", "sigma")``.
    """

    treedef: jax.tree_util.PyTreeDef
    shapes: tuple[tuple[int, ...], ...]
    constraints: tuple[_constraints.Constraint, ...]
    leaf_names: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """A label for each entry of the constrained flat vector: ``("beta[0]", "beta[1]", "sigma")``."""
        return tuple(name if shape == () else f"{name}[{','.join(map(str, index))}]"
                     for name, shape in zip(self.leaf_names, self.shapes)
                     for index in np.ndindex(*shape))

    @property
    def free_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(c.free_shape(s) for c, s in zip(self.constraints, self.shapes))

    @property
    def n_free(self) -> int:
        """Number of free (unconstrained) coordinates: the model's parameter count k."""
        return sum(math.prod(s) for s in self.free_shapes)

    @property
    def n_flat(self) -> int:
        """Length of the constrained flat vector (a simplex of m entries counts m)."""
        return sum(math.prod(s) for s in self.shapes)

    def to_constrained(self, z: jax.Array):
        """Flat unconstrained ``z`` of shape ``(n_free,)`` -> parameter pytree."""
        leaves, start = [], 0
        for constraint, free_shape in zip(self.constraints, self.free_shapes):
            size = math.prod(free_shape)
            leaves.append(constraint.to_constrained(z[start:start + size].reshape(free_shape)))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def to_unconstrained(self, params) -> jax.Array:
        """Parameter pytree -> flat unconstrained ``z`` of shape ``(n_free,)``."""
        leaves = self.treedef.flatten_up_to(params)
        parts = [jnp.ravel(c.to_unconstrained(jnp.asarray(leaf)))
                 for c, leaf in zip(self.constraints, leaves)]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,))

    def flatten(self, params) -> jax.Array:
        """Parameter pytree -> constrained flat vector of shape ``(n_flat,)``."""
        leaves = self.treedef.flatten_up_to(params)
        return jnp.concatenate([jnp.ravel(jnp.asarray(leaf)) for leaf in leaves])

    def unflatten(self, flat: jax.Array):
        """Constrained flat vector (last axis ``n_flat``) -> pytree; leading axes are kept."""
        return unflatten_last_axis(flat, self.shapes, self.treedef)


def unflatten_last_axis(flat, shapes, treedef):
    """The last axis of ``flat`` (jax or numpy) cut into leaves of ``shapes`` and assembled
    as ``treedef``; leading axes are kept on every leaf."""
    leaves, start, batch = [], 0, tuple(flat.shape[:-1])
    for shape in shapes:
        size = math.prod(shape)
        leaves.append(flat[..., start:start + size].reshape(batch + tuple(shape)))
        start += size
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _constraint_tree(init, constraints) -> list:
    """Constraints broadcast to one ``Constraint`` per leaf of ``init`` (flattening order)."""
    n_leaves = len(jax.tree_util.tree_leaves(init))
    if constraints is None:
        return [_constraints.real] * n_leaves
    if isinstance(constraints, (_constraints.Constraint, str)):
        return [_constraints.as_constraint(constraints)] * n_leaves
    if isinstance(init, dict) and isinstance(constraints, dict):
        unknown = sorted(set(constraints) - set(init), key=str)
        if unknown:
            raise ValueError(f"constraints name parameters {unknown} that are not in init; "
                             f"init has {sorted(init, key=str)}")
        constraints = {key: constraints.get(key) for key in init}
    # One level down at a time, so a constraint may stand for a whole sub-tree of init.
    children, one_level = jax.tree_util.tree_flatten(init, is_leaf=lambda node: node is not init)
    if one_level.num_leaves == 1 and children[0] is init:
        raise ValueError(f"constraint for a parameter leaf must be a constraint, got {constraints!r}")
    try:
        child_constraints = one_level.flatten_up_to(constraints)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "constraints must be None, one constraint, or a pytree matching init "
            f"(a dict may name only some keys); init has structure "
            f"{jax.tree_util.tree_structure(init)}, constraints were {constraints!r}") from error
    return [c for child, sub in zip(children, child_constraints)
            for c in _constraint_tree(child, sub)]


def build(init, constraints) -> ParameterSpace:
    """Builds the ``ParameterSpace`` of a concrete or abstract ``init`` pytree.

    Raises:
        ValueError: if ``constraints`` does not match ``init`` or names an unknown
            constraint, or ``init`` has no leaves.
    """
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(init)
    if not paths_and_leaves:
        raise ValueError(f"init must contain at least one parameter, got {init!r}")
    per_leaf = _constraint_tree(init, constraints)
    shapes = tuple(tuple(np.shape(leaf)) for _, leaf in paths_and_leaves)
    leaf_names = tuple(jax.tree_util.keystr(path, simple=True, separator=".") or "theta"
                       for path, _ in paths_and_leaves)
    for constraint, shape, name in zip(per_leaf, shapes, leaf_names):
        if isinstance(constraint, _constraints.Simplex) and (len(shape) == 0 or shape[-1] < 2):
            raise ValueError(f"parameter {name}: a simplex needs at least "
                             f"2 entries along its last axis, got shape {shape}")
        if isinstance(constraint, _constraints.Cholesky) and (
                len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 1):
            raise ValueError(f"parameter {name}: a Cholesky factor must be a square (q, q) "
                             f"matrix, got shape {shape}")
    return ParameterSpace(treedef, shapes, tuple(per_leaf), leaf_names)


def check_in_support(space: ParameterSpace, init) -> None:
    """Raises ValueError naming the first leaf of concrete ``init`` outside its support."""
    leaves = space.treedef.flatten_up_to(init)
    for name_leaf, constraint, leaf in zip(space.leaf_names, space.constraints, leaves):
        problem = constraint.violation(np.asarray(leaf, dtype=np.float64))
        if problem:
            raise ValueError(f"init[{name_leaf}] = {np.asarray(leaf)!r} is outside the support of "
                             f"{constraint!r}: {problem}")

