"""``fit_mixed``: maximum likelihood of a model with random effects, by the Laplace
approximation of each group's marginal likelihood (``_laplace``), over thousands of groups
in one compiled call.

**Rows and groups.** ``data`` holds one row per observation and ``groups`` a label per row
(any kind: numbers, strings). A row with a missing or non-finite value in any floating leaf
of ``data`` is excluded and counted per group (``n_excluded``), as in ``fit_groups``. Groups
are the sorted distinct labels. A group keeps its random effect even when it has fewer rows
than random effects, or none left: the random effects' own density makes its inner problem
well posed (the mode shrinks towards the population), as in lme4 and statsmodels.

**Buckets.** Each group's rows are padded (with a copy of one of its rows, masked out) to a
common length: all groups to the longest when that at most doubles the padded rows, else
to the power-of-two buckets of ``fit_groups`` (``_groups.bucket_lengths``). Each bucket is
one ``vmap`` over its groups, evaluated ``chunk_size`` groups at a time (``lax.map``),
which bounds the memory of the derivative terms whatever the number of groups.

**Closed form.** ``jm.mixed.gaussian`` with ``jm.mixed.gaussian_random(q)`` takes the
exact Gaussian marginal of each group (``_gaussian``) in place of the inner Newton and the
Laplace terms; everything else is shared.

**Outer problem.** The Laplace log-likelihood is maximised over the unconstrained
parameters by jaxmle's trust-region Newton (``_newton``) under the shared loop driver
(``_loop``), with its exact gradient and Hessian (implicit differentiation through the
modes, written out in ``_laplace``): one derivative program, evaluated at one place in the
loop, which also returns each group's mode. The estimate is certified and the covariance
computed from the exact Hessian (``_information``): observed-information standard errors.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmle.core import _information, _loop, _parameters, _precision, _xla
from jaxmle.core._fit import Fit
from jaxmle.core._objective import Likelihood
from jaxmle.core._status import RUNNING, Status
from jaxmle.random_effects import _gaussian, _laplace
from jaxmle.solvers._newton import Newton
from jaxmle.tabular import _groups

DEFAULT_MAX_INNER = 50
DEFAULT_CHUNK = 2048


@dataclasses.dataclass(frozen=True)
class MixedSpec:
    """Everything static about a mixed fit: it keys the compiled-function cache."""

    group: _laplace.GroupModel
    max_iter: int
    gtol: float
    xtol: float
    chunk_size: int

    @property
    def exact(self) -> bool:
        """The linear-Gaussian group in closed form (``_gaussian``)."""
        return _gaussian.applies(self.group)


def _per_group(spec: MixedSpec, z, u0, bucket, function):
    """``function(model, z, u0, data, mask)`` of every group of one bucket ``(data, mask)``,
    in equal chunks of at most ``chunk_size`` groups (``_Grouping.buckets`` pads the groups
    to a whole number of chunks): one ``vmap`` per chunk, chunks in sequence."""
    data, mask = bucket
    one = lambda data, mask: function(spec.group, z, u0, data, mask)
    groups = mask.shape[0]
    if groups <= spec.chunk_size:
        return jax.vmap(one)(data, mask)
    count = -(-groups // spec.chunk_size)
    split = lambda leaf: leaf.reshape(count, groups // count, *leaf.shape[1:])
    out = jax.lax.map(lambda args: jax.vmap(one)(*args),
                      jax.tree_util.tree_map(split, (data, mask)))
    return jax.tree_util.tree_map(lambda leaf: leaf.reshape(groups, *leaf.shape[2:]), out)


def _chunked_groups(groups: int, chunk_size: int) -> int:
    """Groups of a bucket padded to equal chunks of at most ``chunk_size``."""
    if groups <= chunk_size:
        return groups
    count = -(-groups // chunk_size)
    return count * -(-groups // count)


def laplace_derivatives(spec: MixedSpec, z, u0, buckets):
    """The Laplace log-likelihood summed over every group of every bucket, its gradient
    ``(k,)`` and Hessian ``(k, k)`` in ``z`` (``_laplace.group_derivatives``), and each
    bucket's ``_laplace.Mode`` per group at ``z`` (a tuple over buckets)."""
    total, modes = None, []
    for bucket, valid in buckets:
        *parts, mode = _per_group(spec, z, u0, bucket, _laplace.group_derivatives)
        # Padding groups (all rows masked, see ``_Grouping.buckets``) are dropped.
        summed = tuple(jnp.sum(jnp.where(valid.reshape(valid.shape + (1,) * (part.ndim - 1)),
                                         part, 0.0), axis=0) for part in parts)
        total = summed if total is None else tuple(map(jnp.add, total, summed))
        modes.append(mode)
    return (*total, tuple(modes))


def exact_derivatives(spec: MixedSpec, buckets):
    """``z -> `` the closed-form counterpart of ``laplace_derivatives`` (``_gaussian``):
    every group's cross products, computed here once, enter one vectorised evaluation; the
    modes are split back into the buckets."""
    cross, count = (jnp.concatenate(parts) for parts in zip(
        *(jax.vmap(_gaussian.statistics)(*bucket) for bucket, _ in buckets)))
    ends = np.cumsum([mask.shape[0] for (_, mask), _ in buckets])[:-1]

    def derivatives(z):
        f, g, h, mode = _gaussian.derivatives(spec.group, z, cross, count)
        in_buckets = (jnp.split(leaf, ends) for leaf in mode)
        return f, g, h, tuple(_laplace.Mode(*parts) for parts in zip(*in_buckets))
    return derivatives


def solve_mixed(spec: MixedSpec, init, u0, buckets, blocked):
    """The outer Newton fit from ``init`` (user's coordinates) and each group's mode at
    the estimate (traceable): ``(params, assessment, n_iter, modes)``.

    The derivative program is evaluated at one place in the compiled loop
    (``_loop.run_with_aux``), and each group's mode at the estimate is the one found by
    the evaluation there, not solved again. The maps between the user's coordinates and
    ``z`` run here too: outside, each would be eager operations compiled one by one on a
    first call."""
    space = spec.group.space
    z0 = space.to_unconstrained(init)
    derivatives = (exact_derivatives(spec, buckets) if spec.exact
                   else functools.partial(laplace_derivatives, spec, u0=u0, buckets=buckets))

    def loss_derivatives(z):
        f, g, h, modes = derivatives(z)
        return -f, -g, -h, modes

    solver = Newton()
    modes0 = tuple(_laplace.Mode.placeholder(mask.shape[0], u0.shape[0], z0.dtype)
                   for (_, mask), _ in buckets)
    loop, modes = _loop.run_with_aux(solver, loss_derivatives, z0, modes0,
                                     max_iter=spec.max_iter, gtol=spec.gtol, blocked=blocked)
    z = loop.solver_state.z
    stub = Likelihood(None, lambda v: jnp.zeros((), v.dtype), None, None, None, None)
    assessed = _information.assess(solver.derivatives(None, loop.solver_state), stub,
                                   space, z, loop.status, cov_kind="observed", xtol=spec.xtol)
    return space.to_constrained(z), assessed, loop.n_iter, modes


@functools.cache
def _solve_compiled():
    """``solve_mixed`` compiled with jaxmle's CPU options (``_xla``): they compile this
    program in less than half the time of XLA's defaults."""
    return _xla.jit(solve_mixed, static_argnums=0)


@dataclasses.dataclass(frozen=True)
class MixedFit(Fit):
    """Result of ``jm.fit_mixed``: a ``Fit`` of the fixed parameters plus the random effects.

    The ``Fit`` fields describe the parameters (``params``, ``se``, ``cov`` from the exact
    Hessian of the Laplace log-likelihood, ``loglik`` the Laplace log-likelihood, ``status``
    of the outer fit; ``method`` "newton (Laplace)", or "newton (exact marginal)" for the
    linear-Gaussian pieces fitted in closed form (``_gaussian``); ``n_obs`` counts the rows
    used; ``model`` is None: the tools that refit a ``Fit``'s model do not apply).

    Attributes:
        labels: ``(G,)`` the distinct group labels, sorted.
        random: conditional modes ``u_g*`` at the estimate, a pytree shaped like ``random``
            with a leading axis ``G`` (aligned with ``labels``).
        random_se: conditional standard deviations ``sqrt diag (-H_g)^-1``, same layout.
        random_status: ``(G,)`` int32 ``Status`` of each group's inner problem at the
            estimate (CONVERGED; SINGULAR_HESSIAN when ``-H_g`` is not positive definite;
            MAX_ITER, STALLED or NONFINITE_START otherwise).
        n_rows: ``(G,)`` rows of each group in the input.
        n_excluded: ``(G,)`` rows excluded for a missing or non-finite value.
    """

    labels: np.ndarray | None = None
    random: object = None
    random_se: object = None
    random_status: np.ndarray | None = None
    n_rows: np.ndarray | None = None
    n_excluded: np.ndarray | None = None

    @property
    def failed_groups(self) -> np.ndarray:
        """Labels of the groups whose inner problem did not converge at the estimate."""
        return self.labels[np.asarray(self.random_status) != Status.CONVERGED]

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value:.6g}" for name, value in
                           zip(self.names, np.concatenate([np.ravel(leaf) for leaf in
                                                           jax.tree_util.tree_leaves(self.params)])))
        return (f"MixedFit({values}, loglik={float(self.loglik):.6g}, groups={self.labels.size}, "
                f"status={Status(int(self.status)).name})")

    def summary(self, level: float = 0.95) -> str:
        """The ``Fit`` table (Laplace log-likelihood), then the groups and their inner status."""
        text = super().summary(level).replace("Maximum-likelihood fit",
                                              "Mixed-model fit, Laplace approximation", 1)
        failed = self.failed_groups
        lines = [text, f"groups {self.labels.size}   rows excluded {int(np.sum(self.n_excluded))}"
                 f"   inner problems not converged {failed.size}"]
        if failed.size:
            shown = ", ".join(map(str, failed[:10])) + (" ..." if failed.size > 10 else "")
            lines.append(f"groups whose conditional mode failed: {shown}")
        return "\n".join(lines)


jax.tree_util.register_dataclass(
    MixedFit,
    data_fields=["params", "se", "cov", "loglik", "status", "n_iter", "grad_norm", "n_obs",
                 "labels", "random", "random_se", "random_status", "n_rows", "n_excluded"],
    meta_fields=["n_params", "names", "method", "cov_kind", "model"])


# ----- host side: rows, groups, buckets -------------------------------------------------------

def _rows(data, n_rows_hint=None):
    """Data leaves as numpy arrays with a common leading axis; returns ``(data, n)``."""
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data must contain at least one array")
    arrays = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        array = np.asarray(leaf)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(f"data{jax.tree_util.keystr(path)} must be numeric, got dtype "
                            f"{array.dtype}")
        if array.ndim == 0:
            raise ValueError(f"data{jax.tree_util.keystr(path)} must have one row per "
                             "observation (a leading axis), got a scalar")
        arrays.append(array)
    sizes = {array.shape[0] for array in arrays}
    if len(sizes) != 1:
        shapes = [array.shape for array in arrays]
        raise ValueError(f"every data leaf must have one row per observation; got shapes {shapes}")
    treedef = jax.tree_util.tree_structure(data)
    return jax.tree_util.tree_unflatten(treedef, arrays), sizes.pop()


def _usable(data) -> np.ndarray:
    """Rows whose floating values are all finite."""
    ok = None
    for leaf in jax.tree_util.tree_leaves(data):
        if np.issubdtype(leaf.dtype, np.floating):
            finite = np.isfinite(leaf.reshape(leaf.shape[0], -1)).all(axis=1)
            ok = finite if ok is None else ok & finite
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    return np.ones(n, bool) if ok is None else ok


def _lengths(kept: np.ndarray) -> np.ndarray:
    """Padded length of each group (module notes: one length when padding at most doubles
    the rows, else the buckets of ``fit_groups``)."""
    longest = max(int(kept.max()), 1)
    if kept.size * longest <= 2 * max(int(kept.sum()), 1):
        return np.full(kept.shape, longest)
    return _groups.bucket_lengths(kept)


class _Grouping:
    """Rows ordered by group: labels, counts and the padded buckets."""

    def __init__(self, data, groups, dtype):
        self.data, n = _rows(data)
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must be one label per row, shape ({n},), got {groups.shape}")
        usable = _usable(self.data)
        if not usable.any():
            raise ValueError("every row has a missing or non-finite value; nothing to fit")
        # The grouping machinery of fit_groups: one value column, NaN on excluded rows.
        flag = np.where(usable, 0.0, np.nan)
        rows = _groups.GroupedRows.build(flag, groups)
        order = np.arange(n) if rows.order is None else rows.order
        self.labels, self.kept, self.n_rows = rows.labels, rows.kept, rows.n_rows
        in_order = usable[order]
        self.used_rows = order[in_order]                     # usable rows, in group order
        group_of_row = np.repeat(np.arange(self.labels.size), self.n_rows)[in_order]
        self.slot = np.arange(self.used_rows.size) - np.repeat(np.cumsum(self.kept) - self.kept,
                                                               self.kept)
        self.group_of_row = group_of_row
        first = np.cumsum(self.kept) - self.kept
        fallback = self.used_rows[0]
        self.filler = np.where(self.kept > 0, self.used_rows[np.minimum(first, self.used_rows.size - 1)],
                               fallback)
        self.dtype = dtype

    def buckets(self, chunk_size: int):
        """``[(members, ((data, mask), valid))]``: the groups of each length, their padded
        rows, and ``valid`` False on groups added (copies of the last, rows masked) to make
        equal chunks of at most ``chunk_size`` groups."""
        lengths = _lengths(self.kept)
        out = []
        for length in np.unique(lengths):
            members = np.flatnonzero(lengths == length)
            real = members.size
            members = np.concatenate([members, np.full(
                _chunked_groups(real, chunk_size) - real, members[-1])])
            where = np.full(self.labels.size, -1)
            where[members[:real]] = np.arange(real)
            index = np.repeat(self.filler[members][:, None], int(length), axis=1)
            take = where[self.group_of_row] >= 0
            index[where[self.group_of_row[take]], self.slot[take]] = self.used_rows[take]
            mask = np.arange(int(length))[None, :] < self.kept[members][:, None]
            valid = np.arange(members.size) < real
            mask[~valid] = False

            def gather(leaf):
                taken = leaf[index]
                return taken.astype(self.dtype) if np.issubdtype(leaf.dtype, np.floating) else taken

            out.append((members[:real], ((jax.tree_util.tree_map(gather, self.data), mask),
                                         valid)))
        return out


# ----- validation before tracing --------------------------------------------------------------

def _check_model(log_density, log_random, params_abstract, random_abstract, data_one, length):
    def traced(fn, what, *args):
        try:
            return jax.eval_shape(fn, *args)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                jax.errors.TracerBoolConversionError,
                jax.errors.TracerIntegerConversionError) as error:
            raise TypeError(f"{what} must be traceable jax.numpy code (no numpy calls, Python "
                            f"branches or float() on parameters): {type(error).__name__}: "
                            f"{str(error).splitlines()[0]}") from error

    terms = traced(log_density, "log_density(params, u, data)", params_abstract, random_abstract,
                   data_one)
    if not isinstance(terms, jax.ShapeDtypeStruct) or terms.shape != (length,) or \
            not np.issubdtype(terms.dtype, np.floating):
        raise ValueError("log_density(params, u, data) must return the per-observation terms of "
                         f"one group, floating of shape ({length},) for a group of {length} "
                         f"rows; got {terms}")
    prior = traced(log_random, "log_random(params, u)", params_abstract, random_abstract)
    if not isinstance(prior, jax.ShapeDtypeStruct) or prior.shape != () or \
            not np.issubdtype(prior.dtype, np.floating):
        raise ValueError("log_random(params, u) must return the random effects' log-density, "
                         f"a floating scalar; got {prior}")


def _random_layout(random, dtype):
    leaves, treedef = jax.tree_util.tree_flatten(random)
    if not leaves:
        raise ValueError(f"random must hold at least one random effect, got {random!r}")
    arrays = [np.asarray(leaf, dtype=dtype) for leaf in leaves]
    if not all(np.all(np.isfinite(array)) for array in arrays):
        raise ValueError("random (the start of the random effects) must be finite")
    layout = _laplace.RandomLayout(treedef, tuple(array.shape for array in arrays))
    return layout, np.concatenate([array.ravel() for array in arrays]), \
        jax.tree_util.tree_unflatten(treedef, arrays)


@_precision.public
def fit_mixed(log_density: Callable, log_random: Callable, init, data, groups, *, random,
              constraints=None, max_iter: int = 200, gtol: float | None = None,
              max_inner: int = DEFAULT_MAX_INNER, chunk_size: int = DEFAULT_CHUNK,
              precision: str = "float64") -> MixedFit:
    """Maximum likelihood with random effects, integrated out by the Laplace approximation.

    The model: group ``g``'s rows ``y_g`` given its random effects ``u_g`` have
    per-observation log-densities ``log_density(params, u_g, data_gi)``; the ``u_g`` are
    independent with log-density ``log_random(params, u_g)``. The log-likelihood
    ``sum_g log int p(y_g | u) p(u) du`` is approximated per group at the conditional mode
    ``u_g*`` (exact for linear-Gaussian models; Tierney & Kadane 1986, TMB):
    ``sum_g [f_g(u_g*) - 1/2 log det(-H_g) + q/2 log 2 pi]``, and maximised over the
    parameters by Newton's method with exact derivatives (implicit differentiation through
    the modes; see ``jaxmle.random_effects._laplace`` and ``jaxmle.random_effects._mixed``).
    With ``jm.mixed.gaussian`` and ``jm.mixed.gaussian_random(q)`` the marginal is Gaussian
    and is evaluated in closed form, without inner Newton (``_gaussian``): the same
    likelihood, a smaller compiled program.

    Args:
        log_density: ``log_density(params, u, data) -> (n_g,)``: the per-observation terms of
            one group's rows ``data`` (every leaf with a leading axis ``n_g``) given its
            random effects ``u`` (a pytree shaped like ``random``).
        log_random: ``log_random(params, u) -> scalar``: the random effects' log-density
            (``jm.mixed.gaussian_random(q)`` for ``N(0, L L')``).
        init: starting values of the parameters, a pytree (user's coordinates).
        data: a pytree of arrays with one row per observation (leading axis ``n``).
        groups: ``(n,)`` group labels of any kind (numbers, strings; none missing).
        random: the random effects of one group as a pytree of arrays (e.g.
            ``jnp.zeros(2)``); also the start of every group's inner Newton.
        constraints: as in ``jm.fit`` (``jm.positive``, ``jm.cholesky`` ...).
        max_iter: outer Newton iteration cap.
        gtol: outer stopping tolerance on the relative gradient (default 1e-10 in float64,
            1e-5 in float32; ``jaxmle.core._loop``).
        max_inner: iteration cap of each group's inner Newton.
        chunk_size: groups vectorised together; bounds the memory of the derivative terms.
        precision: ``"float64"`` (default) or ``"float32"``.

    Returns:
        ``MixedFit``: the ``Fit`` fields for the parameters, plus ``labels``, ``random``
        (conditional modes, leading axis ``G``), ``random_se``, ``random_status``,
        ``n_rows`` and ``n_excluded``. Numerical failures are statuses: a group whose
        ``-H_g`` is singular has ``random_status`` SINGULAR_HESSIAN, the Laplace
        log-likelihood is then undefined and the outer fit reports it (e.g.
        NONFINITE_START at the start).

    Raises:
        ValueError, TypeError: rows that do not line up, missing labels, a ``log_density``
            that does not return ``(n_g,)`` terms or a ``log_random`` that does not return a
            scalar (checked with ``jax.eval_shape`` before anything is compiled), and the
            structural errors of ``jm.fit`` (constraints, support of ``init``).

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(30), 8)
        >>> x = rng.normal(size=g.size)
        >>> X, Z = np.column_stack([np.ones_like(x), x]), np.ones((g.size, 1))
        >>> y = 1.0 + 0.5 * x + rng.normal(0, 0.7, 30)[g] + rng.normal(0, 0.3, g.size)
        >>> fit = jm.fit_mixed(jm.mixed.gaussian, jm.mixed.gaussian_random(1),
        ...                    {"beta": np.zeros(2), "sigma": 1.0, "L": np.eye(1)},
        ...                    (X, Z, y), g, random=np.zeros(1),
        ...                    constraints={"sigma": jm.positive, "L": jm.cholesky})
        >>> bool(fit.converged), fit.random.shape, bool(abs(fit.params["beta"][1] - 0.5) < 0.1)
        (True, (30, 1), True)
    """
    dtype = np.dtype(precision)
    if int(max_iter) < 0 or int(max_inner) < 1 or int(chunk_size) < 1:
        raise ValueError(f"need max_iter >= 0, max_inner >= 1 and chunk_size >= 1; got "
                         f"{max_iter}, {max_inner}, {chunk_size}")
    gtol = {"float64": 1e-10, "float32": 1e-5}[precision] if gtol is None else float(gtol)
    if not gtol > 0:
        raise ValueError(f"gtol must be > 0, got {gtol}")
    init_values = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf, dtype=dtype), init)
    space = _parameters.build(init_values, constraints)
    _parameters.check_in_support(space, init_values)
    layout, u0, random_tree = _random_layout(random, dtype)
    grouping = _Grouping(data, groups, dtype)
    buckets = grouping.buckets(int(chunk_size))
    abstract = lambda tree: jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), tree)
    (data_first, mask_first), _ = buckets[0][1]
    data_one = jax.tree_util.tree_map(lambda leaf: leaf[0], data_first)
    _check_model(log_density, log_random, abstract(init_values), abstract(random_tree),
                 abstract(data_one), mask_first.shape[1])

    model = _laplace.GroupModel(log_density, log_random, space, layout, int(max_inner))
    spec = MixedSpec(model, int(max_iter), gtol, 1e-4, int(chunk_size))
    n_obs = float(grouping.kept.sum())
    blocked = np.int32(RUNNING if n_obs >= space.n_free else Status.TOO_FEW_OBSERVATIONS)
    params, assessed, n_iter, modes = jax.device_get(_solve_compiled()(
        spec, init_values, u0, tuple(bucket for _, bucket in buckets), blocked))

    order = np.argsort(np.concatenate([members for members, _ in buckets]))
    in_labels = lambda part: np.concatenate(part)[order]
    sizes = [members.size for members, _ in buckets]
    u, sd, status, _ = (in_labels([mode[i][:size] for mode, size in zip(modes, sizes)])
                        for i in range(4))
    return MixedFit(
        params=params, se=space.unflatten(np.sqrt(np.diag(assessed.cov))),
        cov=assessed.cov, loglik=assessed.loglik, status=assessed.status, n_iter=n_iter,
        grad_norm=assessed.grad_norm, n_obs=np.asarray(n_obs, dtype), n_params=space.n_free,
        names=space.names, cov_kind="observed", model=None,
        method="newton (exact marginal)" if spec.exact else "newton (Laplace)",
        labels=grouping.labels, random=layout.unflatten(u),
        random_se=layout.unflatten(sd), random_status=status,
        n_rows=grouping.n_rows, n_excluded=grouping.n_rows - grouping.kept)
