"""Results as pandas DataFrames: ``Fit.to_dataframe`` (one row per dataset).

pandas is an optional dependency (the ``pandas`` extra); it is imported only when a
DataFrame is asked for.
"""

from __future__ import annotations

import numpy as np

from jaxmle.core import _summary
from jaxmle.core._status import Status


def pandas():
    """The pandas module, or an ImportError that says how to install it."""
    try:
        import pandas as pd
    except ImportError as error:
        raise ImportError("DataFrames need pandas: pip install 'jaxmle[pandas]'") from error
    return pd


def fit_frame(fit, level: float):
    """One row per dataset of ``fit`` (a single fit: one row); see ``Fit.to_dataframe``."""
    pd = pandas()
    batch = len(fit) if fit.batch_shape else 1
    lower, upper = fit.conf_int(level)
    estimate, se, lower, upper = (_summary.flat_batch(tree, batch)
                                  for tree in (fit.params, fit.se, lower, upper))
    columns = {}
    for j, name in enumerate(fit.names):
        columns[name] = estimate[:, j]
        columns[f"{name}_se"] = se[:, j]
        columns[f"{name}_lower"] = lower[:, j]
        columns[f"{name}_upper"] = upper[:, j]
    scalar = lambda value: np.broadcast_to(np.asarray(value, dtype=float), (batch,))
    columns["loglik"] = scalar(fit.loglik)
    columns["aic"] = scalar(fit.aic)
    columns["bic"] = scalar(fit.bic)
    columns["n_obs"] = scalar(np.nan if fit.n_obs is None else fit.n_obs)
    columns["n_iter"] = np.broadcast_to(np.asarray(fit.n_iter, dtype=np.int64), (batch,))
    columns["converged"] = np.broadcast_to(np.asarray(fit.converged, dtype=bool), (batch,))
    columns["status"] = [Status(int(code)).name for code in np.ravel(fit.status)]
    frame = pd.DataFrame(columns)
    frame.attrs["level"] = level
    return frame
