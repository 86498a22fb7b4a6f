"""jaxmle: maximum-likelihood estimation on JAX, one dataset or thousands at once.

The public surface is this module; everything else is private. See the README and
``shared/API.md`` for the contract.
"""

from jaxmle._constraints import interval, positive, real, simplex, unit_interval
from jaxmle._distributed import gather_fits, process_shard
from jaxmle._engine import fit, fit_batch
from jaxmle._fit import Fit
from jaxmle._inference import delta_method, lr_test
from jaxmle._status import Status

__all__ = ["fit", "fit_batch", "Fit", "Status", "real", "positive", "unit_interval",
           "interval", "simplex", "lr_test", "delta_method", "process_shard",
           "gather_fits"]
__version__ = "0.1.0"
