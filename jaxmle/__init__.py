"""jaxmle: maximum-likelihood estimation on JAX, one dataset or thousands at once.

The public surface is this module; everything else is private. See the README and
``shared/API.md`` for the contract.
"""

from jaxmle import mixed, models
from jaxmle._bootstrap import Bootstrap, bootstrap
from jaxmle._cache import enable_compilation_cache
from jaxmle._calibration import Calibration, calibrate
from jaxmle._constraints import (cholesky, interval, ordered, positive, real, simplex,
                                 unit_interval)
from jaxmle._diagnostics import Diagnosis, diagnose, refit
from jaxmle._distributed import gather_fits, process_shard
from jaxmle._engine import fit, fit_batch
from jaxmle._fit import Fit
from jaxmle._groups import GroupFits, fit_groups
from jaxmle._hypothesis import Comparison, compare, score_test, wald_test
from jaxmle._inference import delta_method, lr_test
from jaxmle._mixed import MixedFit, fit_mixed
from jaxmle._model import Model
from jaxmle._multistart import Multistart, multistart
from jaxmle._profile import Profile, profile
from jaxmle._status import Status
from jaxmle._survival import censored
from jaxmle._stream import Block, concat_fits, fit_stream

__all__ = [
           "Block",
           "Bootstrap",
           "Calibration",
           "Comparison",
           "Diagnosis",
           "Fit",
           "MixedFit",
           "GroupFits",
           "Model",
           "Multistart",
           "Profile",
           "Status",
           "bootstrap",
           "calibrate",
           "censored",
           "cholesky",
           "compare",
           "concat_fits",
           "delta_method",
           "diagnose",
           "enable_compilation_cache",
           "fit",
           "fit_batch",
           "fit_groups",
           "fit_mixed",
           "fit_stream",
           "gather_fits",
           "interval",
           "lr_test",
           "mixed",
           "models",
           "multistart",
           "ordered",
           "positive",
           "process_shard",
           "profile",
           "real",
           "refit",
           "score_test",
           "simplex",
           "unit_interval",
           "wald_test",
]
__version__ = "0.1.0"
