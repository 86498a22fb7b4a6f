"""``fit_groups``: long-format data (one row per observation, a group label per row) fitted
group by group in padded batches, the results mapped back to the group labels.

**Rows.** A row is *excluded* when one of its values or covariates is missing or not finite
(NaN, +-inf); exclusions are counted per group (``n_excluded``) and the group is fitted on
its other rows. A group left with fewer rows than free parameters gets
``Status.TOO_FEW_OBSERVATIONS``. Every group of the input has exactly one result.

**Buckets.** Each group is padded (``mask`` False on the padding) to its *bucket length*:
the next power of two of its usable rows, at least ``MIN_LENGTH``. Padding is then below
2x per group (1.35x overall for sizes uniform on 10..1,000, against 1.98x when every group
is padded to the largest, and without bound for skewed sizes: one group of 10^6 rows among
groups of 10 would pad every group to 10^6), and only a handful of lengths ever compile.
Each length compiles once (``docs/design.md`` has the cost), so a bucket of few groups joins the
next longer one (``MERGE_CELLS``): a table of a few thousand groups compiles one shape.

**Chunks and blocks.** Groups are ordered by bucket length (then by label) and cut into
chunks of at most ``chunk_groups`` groups of one length; a chunk is streamed through
``fit_stream`` in equal blocks (at most ``BLOCK_CELLS`` padded observations) whose size is
fixed per length, so each length compiles one shape, and only two blocks are ever padded
in memory at once. The
rows of a block are gathered when it is needed: memory beyond the input is bounded by the
blocks and the results, not by the table.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple, TextIO

import jax
import numpy as np

from jaxmle.batch import _progress
from jaxmle.batch._stream import Block, concat_fits, fit_stream
from jaxmle.core import _clusters, _precision, _validation
from jaxmle.core._fit import Fit
from jaxmle.tabular import _frames

MIN_LENGTH = 16  # shortest padded length: tiny groups share one compiled shape
# A bucket this small (in padded observations at the next length) joins the next longer
# one: fitting 2^24 padded observations costs less than one more compilation
# (``docs/design.md``, ``benchmarks/groups.py``).
MERGE_CELLS = 2**24
# Padded observations per block: 16 MiB of float64 values, a few times the engine's
# in-cache chunk (``_batch.CHUNK_BYTES``), so blocks amortise their dispatch.
BLOCK_CELLS = 2**21
MAX_BLOCK_GROUPS = 4096
DEFAULT_CHUNK_GROUPS = 10_000


def _next_power_of_two(n: np.ndarray) -> np.ndarray:
    return np.left_shift(1, np.ceil(np.log2(np.maximum(n, 1))).astype(np.int64))


def bucket_lengths(sizes) -> np.ndarray:
    """The padded length of groups of ``sizes`` usable rows.

    Each size is rounded up to a power of two (at least ``MIN_LENGTH``); then, from the
    shortest length up, a bucket whose groups would take at most ``MERGE_CELLS`` padded
    observations at the next length present joins that bucket: fitting them longer costs
    less than compiling one more shape.

    >>> bucket_lengths([1, 16, 17, 600]).tolist()        # few groups: one shape
    [1024, 1024, 1024, 1024]
    >>> bucket_lengths([20] * 100_000 + [600]).tolist()[-2:]
    [32, 1024]
    """
    lengths = np.maximum(_next_power_of_two(np.asarray(sizes, dtype=np.int64)), MIN_LENGTH)
    present = np.unique(lengths)
    for short, longer in zip(present[:-1], present[1:]):
        joining = lengths == short
        if np.count_nonzero(joining) * longer <= MERGE_CELLS:
            lengths[joining] = longer
    return lengths


def _block_groups(length: int, groups: int) -> int:
    """Groups per block for chunks of ``groups`` groups of one bucket ``length``.

    At most ``BLOCK_CELLS`` padded observations (and ``MAX_BLOCK_GROUPS`` groups); the
    chunk is split into equal blocks, each rounded up to a number with four significant
    bits (16, 18, ..., 30, 32, 36, ...): a block wastes less than 1/8 of its slots, and
    chunks of similar sizes share a compiled shape.

    >>> _block_groups(1024, 2473), _block_groups(16, 5)
    (1280, 5)
    """
    most = max(1, min(MAX_BLOCK_GROUPS, BLOCK_CELLS // length))
    even = -(-groups // -(-groups // most))
    step = 1 << max(0, even.bit_length() - 4)
    return min(most, -(-even // step) * step)


def _float_columns(array, what: str, n_rows: int) -> np.ndarray:
    """``array`` as float64 ``(rows, columns)``; a TypeError names what was not numeric."""
    try:
        array = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} must be numeric: {error}") from error
    if array.ndim not in (1, 2):
        raise ValueError(f"{what} must be one column (n,) or several (n, m), got shape {array.shape}")
    if array.shape[0] != n_rows:
        raise ValueError(f"{what} has {array.shape[0]} rows but groups has {n_rows}")
    return array.reshape(array.shape[0], -1)


class Chunk(NamedTuple):
    """Groups fitted together: their bucket ``length``, groups per ``block``, ``members``
    (group indices)."""

    length: int
    block: int
    members: np.ndarray


@dataclasses.dataclass(frozen=True)
class GroupedRows:
    """Rows of long-format data ordered by group (an internal view; see ``fit_groups``).

    Attributes:
        values: ``(N, m)`` float64 value columns, in input row order.
        x: ``(N, p)`` float64 covariates (with the intercept column), or None.
        order: row indices sorting the rows by group (stable), or None when already sorted.
        labels: ``(G,)`` sorted distinct group labels.
        starts: ``(G + 1,)`` offsets of each group's rows in sorted order.
        kept: ``(G,)`` usable rows per group (all values and covariates finite).
        clusters: ``(N,)`` integer codes of the cluster labels (``cov="cluster"``), or None.
    """

    values: np.ndarray
    x: np.ndarray | None
    order: np.ndarray | None
    labels: np.ndarray
    starts: np.ndarray
    kept: np.ndarray
    clusters: np.ndarray | None = None

    @classmethod
    def build(cls, values, groups, *, x=None, intercept: bool = False,
              clusters=None) -> GroupedRows:
        """Checks and orders the rows; see ``fit_groups`` for the arguments."""
        groups = np.asarray(groups)
        if groups.ndim != 1:
            raise ValueError(f"groups must be one label per row (n,), got shape {groups.shape}")
        if groups.size == 0:
            raise ValueError("no rows: groups is empty")
        n_missing = int(_validation.missing_labels(groups).sum())
        if n_missing:
            raise ValueError(f"{n_missing} rows have a missing group label; drop or label them")
        values = _float_columns(values, "values", groups.size)
        if x is not None:
            x = _float_columns(x, "x", groups.size)
        if intercept:
            ones = np.ones((groups.size, 1))
            x = ones if x is None else np.concatenate([ones, x], axis=1)
        try:
            ordered = bool(np.all(groups[1:] >= groups[:-1]))
            order = None if ordered else np.argsort(groups, kind="stable")
        except TypeError as error:
            raise TypeError("group labels must be comparable with each other (all numbers or "
                            f"all strings): {error}") from error
        in_order = groups if order is None else groups[order]
        starts = np.concatenate([[0], np.flatnonzero(in_order[1:] != in_order[:-1]) + 1,
                                 [groups.size]])
        # Excluded rows are few: count them by position, never widening a flag per row.
        usable = _usable(values, x)
        excluded = np.flatnonzero(~(usable if order is None else usable[order]))
        n_groups = starts.size - 1
        excluded = np.bincount(np.searchsorted(starts, excluded, side="right") - 1,
                               minlength=n_groups)
        if clusters is not None:
            clusters = np.asarray(clusters)
            if clusters.shape != groups.shape:
                raise ValueError(f"clusters must have one label per row, shape {groups.shape}, "
                                 f"got {clusters.shape}")
            if _validation.missing_labels(clusters).any():
                raise ValueError(f"{int(_validation.missing_labels(clusters).sum())} rows have a missing cluster "
                                 "label; drop or label them")
            clusters = _clusters.codes_of(clusters)
        return cls(values, x, order, in_order[starts[:-1]], starts, np.diff(starts) - excluded,
                   clusters)

    @property
    def n_rows(self) -> np.ndarray:
        """``(G,)`` rows per group in the input, excluded rows included."""
        return np.diff(self.starts)

    def chunks(self, chunk_groups: int) -> list[Chunk]:
        """The chunks of at most ``chunk_groups`` groups, in processing order.

        Deterministic for given rows and ``chunk_groups``: a resumed job finds the same
        chunks. All chunks of one bucket length share one block size (one compiled shape).
        """
        if int(chunk_groups) < 1:
            raise ValueError(f"chunk_groups must be >= 1, got {chunk_groups}")
        lengths = bucket_lengths(self.kept)
        plan = np.argsort(lengths, kind="stable")
        edges = np.flatnonzero(np.diff(lengths[plan])) + 1
        chunks = []
        for bucket in np.split(plan, edges):
            length = int(lengths[bucket[0]])
            block = _block_groups(length, min(bucket.size, int(chunk_groups)))
            chunks += [Chunk(length, block, bucket[i:i + int(chunk_groups)])
                       for i in range(0, bucket.size, int(chunk_groups))]
        return chunks

    def block(self, members: np.ndarray, length: int) -> Block:
        """The usable rows of groups ``members``, padded to ``length``: data and mask."""
        positions = _ranges(self.starts[members], self.n_rows[members])
        rows = positions if self.order is None else self.order[positions]
        group = np.repeat(np.arange(members.size), self.n_rows[members])
        usable = _usable(self.values[rows], None if self.x is None else self.x[rows])
        rows, group = rows[usable], group[usable]
        lens = self.kept[members]
        slot = np.arange(rows.size) - np.repeat(np.cumsum(lens) - lens, lens)
        mask = np.zeros((members.size, length), bool)
        mask[group, slot] = True

        def padded(column):
            out = np.zeros((members.size, length) + column.shape[1:])
            out[group, slot] = column[rows]
            return out

        columns = tuple(padded(self.values[:, j]) for j in range(self.values.shape[1]))
        y = columns[0] if len(columns) == 1 else columns
        clusters = None
        if self.clusters is not None:
            clusters = np.zeros((members.size, length), np.int32)
            clusters[group, slot] = self.clusters[rows]
        return Block(y if self.x is None else (padded(self.x), y), mask, clusters=clusters)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + n)`` for each pair, without a Python loop."""
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())


def _usable(values: np.ndarray, x: np.ndarray | None) -> np.ndarray:
    usable = np.isfinite(values).all(axis=1)
    return usable if x is None else usable & np.isfinite(x).all(axis=1)


@dataclasses.dataclass(frozen=True)
class GroupFits:
    """Per-group results of ``fit_groups``, aligned with ``labels`` (sorted).

    Attributes:
        labels: ``(G,)`` the distinct group labels, sorted.
        fit: a batched ``Fit`` of ``G`` datasets; ``fit[i]`` is group ``labels[i]``.
        n_rows: ``(G,)`` rows of each group in the input.
        n_excluded: ``(G,)`` rows excluded for a missing or non-finite value or covariate.
    """

    labels: np.ndarray
    fit: Fit
    n_rows: np.ndarray
    n_excluded: np.ndarray

    def __len__(self) -> int:
        return self.labels.size

    def to_dataframe(self, level: float = 0.95, *, group: str = "group"):
        """One row per group: the label (column ``group``), then ``Fit.to_dataframe``'s
        columns, then ``n_rows`` and ``n_excluded``.

        Raises:
            ImportError: pandas is not installed (``pip install 'jaxmle[pandas]'``).

        Example:
            >>> import numpy as np
            >>> import jaxmle as jm
            >>> counts = np.random.default_rng(0).poisson(4.0, size=60)
            >>> fits = jm.fit_groups(jm.models.poisson, None, counts, np.repeat([7, 9], 30))
            >>> frame = fits.to_dataframe(group="sensor")
            >>> frame["sensor"].tolist(), frame["status"].tolist(), frame["n_rows"].tolist()
            ([7, 9], ['CONVERGED', 'CONVERGED'], [30, 30])
            >>> bool(np.allclose(frame["rate"], [counts[:30].mean(), counts[30:].mean()], rtol=1e-9))
            True
        """
        frame = _frames.fit_frame(self.fit, level)
        frame.insert(0, group, self.labels)
        frame["n_rows"] = self.n_rows
        frame["n_excluded"] = self.n_excluded
        return frame


def fit_chunk(rows: GroupedRows, chunk: Chunk, fitter: Callable,
              bar: _progress.Progress | _progress.Callback) -> GroupFits:
    """Fits the groups of ``chunk``, block by block.

    ``fitter(blocks, block_size=...)`` is ``fit_stream`` with the model and options bound.
    """
    length, size, members = chunk
    blocks = (rows.block(members[i:i + size], length) for i in range(0, members.size, size))
    fits = []
    for fit in fitter(blocks, block_size=size):
        fits.append(fit)
        bar.update(len(fit))
    n_rows = rows.n_rows[members]
    return GroupFits(rows.labels[members], concat_fits(fits), n_rows, n_rows - rows.kept[members])


def _in_label_order(parts: list[tuple[np.ndarray, GroupFits]]) -> GroupFits:
    order = np.argsort(np.concatenate([members for members, _ in parts]))
    take = lambda *leaves: np.concatenate(leaves)[order]
    fits = [part for _, part in parts]
    return GroupFits(take(*(f.labels for f in fits)),
                     jax.tree_util.tree_map(take, *(f.fit for f in fits)),
                     take(*(f.n_rows for f in fits)), take(*(f.n_excluded for f in fits)))


@_precision.public
def fit_groups(log_density: Callable, init, values, groups, *, x=None, intercept: bool = False,
               method="newton", constraints=None, log_prior: Callable | None = None,
               cov: str = "observed", max_iter: int | None = None, gtol: float | None = None,
               precision: str = "float64", chunk_groups: int = DEFAULT_CHUNK_GROUPS,
               progress: _progress.ProgressArg = False,
               progress_stream: TextIO | None = None, clusters=None) -> GroupFits:
    """Fits every group of long-format data: one row per observation, a label per row.

    The rows of each group form one dataset. Groups are padded to bucket lengths (powers
    of two, so padding stays below 2x and few shapes compile) with a ``mask``, and fitted
    in chunks through ``fit_stream``; see the module docstring. Each group's result equals
    ``fit_batch`` on that group's rows (to rounding: the padded length differs).

    Args:
        log_density: as in ``fit_batch``; it sees one group's data: ``y`` (one value
            column, ``(n,)``), a tuple of columns (several value columns, e.g.
            ``(successes, trials)`` for ``jm.models.binomial``), or ``(X, y)`` when ``x``
            is given (``X`` of shape ``(n, p)``, as the regression models take).
        init: as in ``fit_batch`` (None with a ready model: its data-driven start).
        values: ``(N,)`` or ``(N, m)`` numeric values (numpy, or pandas Series/DataFrame).
        groups: ``(N,)`` group labels (numbers or strings; none missing).
        x: optional ``(N,)`` or ``(N, p)`` numeric covariates.
        intercept: put a column of ones in front of ``x``.
        method, constraints, log_prior, cov, max_iter, gtol, precision: as in ``fit_batch``.
        chunk_groups: at most this many groups are gathered and fitted at a time.
        progress: True writes a progress line (groups done / total, rate) to
            ``progress_stream`` (stderr by default); a callable ``progress(done, total)``
            is called instead after each block of groups (e.g. to drive a tqdm bar).
        clusters: with ``cov="cluster"``, ``(N,)`` cluster labels of any kind (one per row;
            clusters nest within or cross the groups; each group needs 2 clusters).

    Returns:
        ``GroupFits``: ``labels`` (sorted), a batched ``fit`` aligned with them, ``n_rows``
        and ``n_excluded`` per group; ``to_dataframe()`` gives one row per group.

    Raises:
        ValueError, TypeError: rows that do not line up, missing group labels, non-numeric
            values, or a structural problem of the model (as ``fit_batch``).

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> rng = np.random.default_rng(0)
        >>> groups = np.repeat(["a", "b", "c"], [20, 30, 25])
        >>> y = rng.normal(np.repeat([1.0, 2.0, 3.0], [20, 30, 25]), 1.0)
        >>> y[3] = np.nan                                   # excluded and counted
        >>> fits = jm.fit_groups(jm.models.normal, None, y, groups)
        >>> fits.labels.tolist(), fits.n_excluded.tolist(), bool(fits.fit.converged.all())
        (['a', 'b', 'c'], [1, 0, 0], True)
        >>> bool(np.isclose(fits.fit.params["mu"][1], y[20:50].mean(), rtol=1e-9))
        True
    """
    rows = GroupedRows.build(values, groups, x=x, intercept=intercept, clusters=clusters)
    fitter = functools.partial(fit_stream, log_density, init, method=method,
                               constraints=constraints, log_prior=log_prior, cov=cov,
                               max_iter=max_iter, gtol=gtol, precision=precision)
    bar = _progress.reporter(progress, int(rows.labels.size), stream=progress_stream, noun="groups")
    parts = [(chunk.members, fit_chunk(rows, chunk, fitter, bar))
             for chunk in rows.chunks(chunk_groups)]
    bar.close()
    return _in_label_order(parts)

