"""Fixtures of the batch tests."""

import numpy as np
import pytest

from jaxmle.batch import _batch


@pytest.fixture
def full_solves(monkeypatch):
    """The full solves dispatched: one entry per solve, the ``valid`` rows it was given."""
    rows = []
    solve = _batch.solve

    def counted(spec, lay, starts, found, data, weights, mask, valid):
        rows.append(np.asarray(valid))
        return solve(spec, lay, starts, found, data, weights, mask, valid)

    monkeypatch.setattr(_batch, "solve", counted)
    return rows
