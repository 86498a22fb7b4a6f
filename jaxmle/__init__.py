"""jaxmle: maximum-likelihood estimation on JAX, one dataset or thousands at once.

The public surface is this module; everything else is private. See the README and
``shared/API.md`` for the contract.
"""

from jaxmle import mixed, models
from jaxmle.core._cache import enable_compilation_cache
from jaxmle.inference._bootstrap import Bootstrap, bootstrap
from jaxmle.inference._calibration import Calibration, calibrate
from jaxmle.core._constraints import (cholesky, interval, ordered, positive, real, simplex,
                                 unit_interval)
from jaxmle.batch._distributed import gather_fits, process_shard
from jaxmle.batch._stream import Block, concat_fits, fit_stream
from jaxmle.core._engine import fit, fit_batch
from jaxmle.core._fit import Fit
from jaxmle.core._model import Model
from jaxmle.core._status import Status
from jaxmle.inference._diagnostics import Diagnosis, diagnose, refit
from jaxmle.inference._hypothesis import Comparison, compare, score_test, wald_test
from jaxmle.inference._inference import delta_method, lr_test
from jaxmle.inference._multistart import Multistart, multistart
from jaxmle.inference._profile import Profile, profile
from jaxmle.random_effects._mixed import MixedFit, fit_mixed
from jaxmle.survival._survival import censored
from jaxmle.tabular._groups import GroupFits, fit_groups

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
