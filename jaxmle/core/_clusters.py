"""Cluster labels for ``cov="cluster"``: encoded on the host, carried with the data.

The cluster-robust covariance (Liang & Zeger 1986; Cameron & Miller 2015, "A
Practitioner's Guide to Cluster-Robust Inference", section 2.3; Stata's ``vce(cluster)``
for ML estimators) is ``G / (G - 1) A^-1 (sum_g s_g s_g') A^-1`` with ``A`` the observed
information and ``s_g`` the summed (weighted) per-observation scores of cluster ``g``. It is
computed in the compiled fit (``_information``) by a segment sum over integer codes.

Labels of any kind (numbers, strings, objects) are encoded here to codes ``0 .. G-1`` per
dataset, and the codes travel as a second part of the data: the compiled fit sees the data
``(data, codes)``, and the log-density and a data-driven start are wrapped in
``IgnoringCodes``, which hands them the user's data only. Codes are per-observation
leaves, so masks, weights, padding and the subsampled start treat them as any data column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from jaxmle.core import _validation


@dataclasses.dataclass(frozen=True)
class IgnoringCodes:
    """A function of data ``(data, codes)`` (its last argument): the user's
    ``log_density(params, data)`` or start ``init(data)`` of ``data`` alone (compared by
    value, so repeated clustered fits share a compiled program)."""

    function: Callable

    def __call__(self, *args):
        return self.function(*args[:-1], args[-1][0])


def codes_of(labels: np.ndarray) -> np.ndarray:
    """Codes ``0 .. G-1`` of one dataset's labels, in order of the sorted labels (or of
    first appearance when the labels cannot be sorted, e.g. mixed objects)."""
    try:
        return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    except TypeError:
        seen: dict = {}
        return np.array([seen.setdefault(label, len(seen)) for label in labels], np.int32)


def encode(clusters, n: int | None, batch: int | None, mask) -> np.ndarray:
    """Integer codes ``(n,)`` (or ``(B, n)``) of the cluster labels, checked.

    Raises:
        ValueError: the log-density is not per-observation, labels of the wrong shape or
            missing, or a dataset with fewer than 2 clusters among its active rows
            (``G - 1 = 0``: the covariance is undefined).
    """
    if n is None:
        raise ValueError('cov="cluster" needs per-observation scores: log_density must return '
                         "a 1-D array of per-observation terms, but it returned a scalar")
    labels = np.asarray(clusters)
    if labels.dtype.kind not in "biufUSO":
        labels = labels.astype(object)
    expected = (n,) if batch is None else (batch, n)
    if labels.shape != expected:
        raise ValueError(f"clusters must have one label per observation, shape {expected}"
                         f"{' (datasets x observations)' if batch is not None else ''}, "
                         f"got {labels.shape}")
    rows = labels.reshape(-1, n)
    active = np.ones(rows.shape, bool) if mask is None else np.asarray(mask).reshape(-1, n)
    missing = _validation.missing_labels(rows.ravel()).reshape(rows.shape) & active
    if missing.any():
        raise ValueError(f"clusters has {int(missing.sum())} missing labels (None or NaN) on "
                         "observations that are fitted; give them a label or mask them")
    codes = np.stack([codes_of(row) for row in rows])
    counts = np.array([np.unique(row[keep]).size for row, keep in zip(codes, active)])
    if (counts < 2).any():
        where = "" if batch is None else f" (datasets {np.flatnonzero(counts < 2)[:10].tolist()})"
        raise ValueError(f'cov="cluster" needs at least 2 clusters, got {counts.min()}{where}: '
                         "with one cluster the correction G / (G - 1) is undefined (and the "
                         "summed score is zero at the estimate)")
    return codes.reshape(expected)
