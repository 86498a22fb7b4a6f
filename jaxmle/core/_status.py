"""Why a fit stopped: the documented integer status codes.

Inside ``jit``/``vmap`` nothing raises; every numerical outcome is one of these codes, and
``Fit.converged`` is ``status == Status.CONVERGED``.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Outcome of one fit (one dataset of a batch).

    Attributes:
        CONVERGED: the stopping test passed with finite values, the observed information is
            positive definite and the exact Newton step from the estimate is negligible.
        MAX_ITER: the iteration cap was reached before the stopping test passed.
        NONFINITE: the objective or its gradient became non-finite and the method could not
            step around it (the estimate is the last finite iterate).
        STALLED: no step could improve the objective any more (line search or trust-region
            failure, no decrease beyond rounding for 50 iterations, ``_loop.PATIENCE``, or a
            nil gain over 500, ``_loop.WINDOW``) although the stopping test had not passed.
        SINGULAR_HESSIAN: the stopping test passed, but the observed information at the
            estimate is singular or not positive definite (a saddle point, or parameters not
            identified); standard errors are NaN.
        BOUNDARY: the gradient vanished, but the exact Newton step from the estimate is not
            small: the likelihood keeps rising towards the edge of the parameter space or
            infinity (p-hat -> 0 or 1, separation in logistic regression), or the fit
            stopped on a path receding towards infinity (Newton's steps keeping their
            length along one direction, e.g. Student-t degrees of freedom growing without
            end) where the loss had become flat to rounding; standard errors are NaN.
        INVALID_DATA: the data contain NaN (batch fits; a single fit raises instead).
        TOO_FEW_OBSERVATIONS: fewer (weighted) observations than free parameters.
        NONFINITE_START: the log-likelihood or its gradient is not finite at the start.
    """

    CONVERGED = 0
    MAX_ITER = 1
    NONFINITE = 2
    STALLED = 3
    SINGULAR_HESSIAN = 4
    BOUNDARY = 5
    INVALID_DATA = 6
    TOO_FEW_OBSERVATIONS = 7
    NONFINITE_START = 8


RUNNING = -1
"""Internal code of a fit still iterating; never returned to users."""
