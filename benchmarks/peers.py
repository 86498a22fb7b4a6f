"""jaxmle and its peers side by side on the PEERS.md workloads, measured in the same run.

Workloads (as in ../shared/PEERS.md; float64 throughout):

1. ``normal``: Normal(mu, sigma), 10,000 datasets x 1,000 observations, start mu = 0, sigma = 1.
2. ``gamma``: Gamma(shape, rate), 10,000 x 1,000, start (1, 1).
3. ``logistic``: logistic regression, p = 5 with intercept, 1,000 x 1,000, start 0.
4. ``single``: one Normal fit with n = 10^7.

Methods: ``jm.fit_batch`` (``jm.fit`` for ``single``) with Newton and BFGS; optimistix BFGS
(``throw=False``; rtol = atol = 1e-8 over datasets by ``lax.map``, 1e-5 by ``lax.map`` and
``vmap``: at 1e-8 a vmapped batch runs until its slowest dataset stops, see PEERS.md);
jaxopt BFGS and L-BFGS (``lax.map``, tol 1e-8, and on the batches tol 1e-10: at 1e-8 no JAX
peer reaches the matched accuracy of 1e-8, at 1e-10 jaxopt does); an optax L-BFGS
``while_loop`` (``lax.map``, gradient norm 1e-8); statsmodels
``GenericLikelihoodModel.fit(method="bfgs")`` and (logistic)
``Logit`` in a Python loop; scipy BFGS with a hand-written numpy gradient in a Python loop;
the JAX closed form (Normal: mean and biased std) or a vectorised JAX IRLS (logistic).
Python loops run over the first ``--loop-fits`` datasets and their times are extrapolated to
all datasets (marked in the table). Every JAX peer minimises the mean negative
log-likelihood in the unconstrained coordinates jaxmle uses (log of positive parameters), and
its timed function includes standard errors from ``jax.hessian`` at the solution in the
user's coordinates. jaxopt keeps its default zoom line search except on the Normal
workloads, where zoom stalls (sigma -> 1e12, no convergence in 256 steps at ~30 evaluations
each) and its hager-zhang line search is used instead. Every JAX peer runs inside
``with jax.enable_x64(True):`` (a thread-local context); the global flag is never changed.

Columns: "first" is the first call of a fresh compiled function (trace + compile + run),
"steady" the median of ``--repeats`` further calls (each a new call with results copied to
numpy); "converged" is the fraction of datasets the tool itself reports as converged;
"max rel err" is the largest ``|estimate - reference| / mean_b |reference|`` over datasets b
and parameters (the denominator is the parameter's mean magnitude, so a coefficient near
zero in one dataset does not inflate it), against the closed form (Normal) or a tight
jaxmle Newton fit (``gtol=1e-12``; Gamma, logistic: there jaxmle's own error only says
how close its default stopping rule gets). "SE err" is the same measure for the standard
errors, against sigma / sqrt(n), sigma / sqrt(2n) (Normal) or that fit's. "matched" says
whether the max rel err is within 1e-8. "/ jaxmle" is the method's steady time over jaxmle
Newton's: above 1 means jaxmle is faster. Targets are checked after each table, on steady
times of jaxmle Newton: within 25x of the JAX closed form (Normal), >= 100x faster than the
fastest statsmodels loop, >= 3x faster than the fastest JAX peer at matched accuracy from
the same start (the fastest at its 1e-8 setting, whatever its accuracy, is printed for
context), faster than scipy BFGS (single fit); a method whose max rel err exceeds 1e-3 (it
failed) is no rival. Starts: every method starts from the workload's common start, except
the rows marked "moments start" (Gamma: jaxmle Newton and jaxopt at 1e-10 from the
method-of-moments estimate, as ``jm.models.gamma`` starts).

Run:  python benchmarks/peers.py [--datasets 1.0] [--quick] [--only normal|gamma|logistic|single]
      (peers: pip install -e ".[peers]"; a peer that is not installed is reported as such).
A full run takes about 15 minutes on the project's 2-core CPU machine, ``--quick`` about 2.
"""

import argparse
import importlib.util
import math
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.scipy import stats

import jaxmle as jm

TIGHT, LOOSE = 1e-8, 1e-5
# The peers' tolerance of 1e-8 leaves errors of 1e-8 to 3e-7 (measured): their tolerance
# that reaches matched accuracy, for the rows the targets compare with.
MATCHING = 1e-10
MATCHED = 1e-8  # largest relative error that counts as matched accuracy
MAX_STEPS = 256  # iteration cap of every JAX peer (optimistix's default max_steps)
SOLVED = 1e-3  # a method whose estimates are further off failed: it is no target rival
LOG_2PI = math.log(2 * math.pi)


class Workload(NamedTuple):
    """One benchmark problem.

    ``log_density(params, data)`` gives per-observation log-likelihood terms (JAX), ``init``
    and ``constraints`` are jaxmle's; ``positive`` marks the flat parameters the peers fit on
    the log scale. ``nll(z, data)`` and ``nll_and_grad(z, data)`` are hand-written numpy
    versions of the mean negative log-likelihood in those unconstrained coordinates ``z``,
    ordered as ``ravel_pytree(init)`` orders the parameters (dict keys sorted).
    ``data`` has a leading dataset axis when ``batched``.
    """

    name: str
    title: str
    log_density: Callable
    init: Any
    constraints: Any
    positive: np.ndarray
    nll: Callable
    nll_and_grad: Callable
    data: Any
    batched: bool


class Result(NamedTuple):
    """Host results of one call, in the user's coordinates: ``(B, k)``, ``(B,)``, ``(B, k)``."""

    estimate: np.ndarray
    converged: np.ndarray
    se: np.ndarray | None = None


class Reference(NamedTuple):
    """Estimates and standard errors ``(B, k)`` that every method is scored against."""

    estimate: np.ndarray
    se: np.ndarray


class Method(NamedTuple):
    """One thing to time.

    ``call`` is None when its package is not installed; a Python loop fits the first ``fits``
    datasets and its times are extrapolated to all of them.
    """

    group: str
    name: str
    se: str
    call: Callable[[], Result] | None
    fits: int = 0
    start: str = "common"  # "common" (the workload's init) or "moments" (data-driven)


class Row(NamedTuple):
    """One line of a table."""

    group: str
    method: str
    se: str
    first: float = math.nan
    steady: float = math.nan
    converged: float = math.nan
    error: float = math.nan
    se_error: float = math.nan
    note: str = ""
    start: str = "common"



# ---------------------------------------------------------------- workloads


def _normal_density(p, x):
    return stats.norm.logpdf(x, p["mu"], p["sigma"])


def _normal_nll(z, x):
    sigma2 = math.exp(2 * z[1])
    return z[1] + np.mean((x - z[0]) ** 2) / (2 * sigma2) + 0.5 * LOG_2PI


def _normal_nll_and_grad(z, x):
    sigma2 = math.exp(2 * z[1])
    residual = x - z[0]
    mean_square = np.mean(residual * residual)
    value = z[1] + mean_square / (2 * sigma2) + 0.5 * LOG_2PI
    return value, np.array([-np.mean(residual) / sigma2, 1 - mean_square / sigma2])


def _gamma_density(p, x):
    return stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"])


def _gamma_nll(z, x):
    from scipy.special import gammaln

    rate, shape = np.exp(z)  # z = (log rate, log shape): the sorted keys of {"shape", "rate"}
    return -(shape * z[0] - gammaln(shape) + (shape - 1) * np.mean(np.log(x)) - rate * np.mean(x))


def _gamma_nll_and_grad(z, x):
    from scipy.special import digamma, gammaln

    rate, shape = np.exp(z)
    mean_log, mean = np.mean(np.log(x)), np.mean(x)
    value = -(shape * z[0] - gammaln(shape) + (shape - 1) * mean_log - rate * mean)
    return value, np.array([rate * mean - shape, -shape * (z[0] - digamma(shape) + mean_log)])


def _gamma_moments(x):
    """Method-of-moments start: shape = mean^2 / var, rate = mean / var."""
    mean, var = jnp.mean(x), jnp.var(x)
    return {"shape": mean * mean / var, "rate": mean / var}


def _logistic_density(beta, data):
    X, y = data
    eta = X @ beta
    return y * eta - jnp.logaddexp(0.0, eta)


def _logistic_nll(beta, data):
    X, y = data
    eta = X @ beta
    return np.mean(np.logaddexp(0.0, eta) - y * eta)


def _logistic_nll_and_grad(beta, data):
    X, y = data
    eta = X @ beta
    value = np.mean(np.logaddexp(0.0, eta) - y * eta)
    return value, X.T @ (1 / (1 + np.exp(-eta)) - y) / len(y)


def normal(batch: int, n: int, rng: np.random.Generator, name="normal") -> Workload:
    """Normal(7.2, 2.8^2) data; ``batch = 0`` gives one dataset of ``n`` observations."""
    shape = (batch, n) if batch else (n,)
    title = f"{batch:,} datasets x {n:,} obs" if batch else f"one dataset, n = {n:,}"
    return Workload(name, f"Normal(mu, sigma), {title}", _normal_density,
                    {"mu": 0.0, "sigma": 1.0}, {"sigma": jm.positive}, np.array([False, True]),
                    _normal_nll, _normal_nll_and_grad, rng.normal(7.2, 2.8, size=shape),
                    bool(batch))


def gamma(batch: int, n: int, rng: np.random.Generator) -> Workload:
    """Gamma(shape 2.5, rate 1.7) data."""
    return Workload("gamma", f"Gamma(shape, rate), {batch:,} datasets x {n:,} obs", _gamma_density,
                    {"shape": 1.0, "rate": 1.0}, jm.positive, np.array([True, True]),
                    _gamma_nll, _gamma_nll_and_grad, rng.gamma(2.5, 1 / 1.7, size=(batch, n)), True)


def logistic(batch: int, n: int, rng: np.random.Generator, p: int = 5) -> Workload:
    """Logistic regression with an intercept and ``p - 1`` standard-normal covariates."""
    X = np.concatenate([np.ones((batch, n, 1)), rng.normal(size=(batch, n, p - 1))], axis=2)
    eta = X @ np.array([0.5, -1.0, 0.7, 0.3, -0.2])
    y = (rng.uniform(size=(batch, n)) < 1 / (1 + np.exp(-eta))).astype(float)
    return Workload("logistic", f"logistic regression p = {p}, {batch:,} datasets x {n:,} obs",
                    _logistic_density, np.zeros(p), None, np.zeros(p, bool),
                    _logistic_nll, _logistic_nll_and_grad, (X, y), True)


def workloads(scale: float, quick: bool, only: str | None):
    """Yields the selected workloads one at a time (so only one data set is in memory)."""
    big, small, n = (200, 200, 100_000) if quick else (
        round(10_000 * scale), round(1_000 * scale), round(10_000_000 * scale))
    makers = {"normal": lambda rng: normal(big, 1_000, rng),
              "gamma": lambda rng: gamma(big, 1_000, rng),
              "logistic": lambda rng: logistic(small, 1_000, rng),
              "single": lambda rng: normal(0, n, rng, name="single")}
    for name, make in makers.items():
        if only in (None, name):
            yield make(np.random.default_rng(42))


# ---------------------------------------------------------------- helpers


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _datasets(w: Workload) -> int:
    return len(jax.tree.leaves(w.data)[0]) if w.batched else 1


def _dataset(w: Workload, b: int):
    return jax.tree.map(lambda leaf: leaf[b], w.data) if w.batched else w.data


def _n_obs(data) -> int:
    return len(jax.tree.leaves(data)[-1])


def _z(w: Workload, theta):
    """Unconstrained coordinates of flat parameters ``theta`` (numpy or JAX)."""
    xp = jnp if isinstance(theta, jax.Array) else np
    return xp.where(w.positive, xp.log(xp.where(w.positive, theta, 1.0)), theta)


def _z0(w: Workload) -> np.ndarray:
    return _z(w, np.asarray(ravel_pytree(w.init)[0], dtype=float))


def _theta(w: Workload, z):
    """Flat parameters in the user's coordinates from unconstrained ``z`` (numpy or JAX)."""
    xp = jnp if isinstance(z, jax.Array) else np
    return xp.where(w.positive, xp.exp(z), z)


def _flat(params, batch: int) -> np.ndarray:
    return np.concatenate([np.asarray(leaf).reshape(batch, -1) for leaf in jax.tree.leaves(params)],
                          axis=1)


def max_relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Largest ``|estimate - reference|`` over the mean magnitude of each parameter."""
    scale = np.mean(np.abs(reference), axis=0)
    return float(np.max(np.abs(estimate - reference[:len(estimate)]) / scale))


def measure(method: Method, datasets: int, repeats: int) -> tuple[Row, Result | None]:
    """Times the first call of ``method`` and the median of ``repeats`` further calls.

    Args:
        method: what to time; a Python loop over ``method.fits`` datasets is extrapolated.
        datasets: datasets in the workload.
        repeats: steady calls.

    Returns:
        The row (errors still unscored) and the first call's result (None if not installed).
    """
    if method.call is None:
        return Row(method.group, method.name, method.se, note="not installed",
                   start=method.start), None
    start = time.perf_counter()
    result = method.call()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        method.call()
        times.append(time.perf_counter() - start)
    factor = datasets / method.fits if method.fits else 1.0
    note = f"extrapolated from {method.fits:,} fits" if factor != 1 else ""
    return Row(method.group, method.name, method.se, first * factor,
               statistics.median(times) * factor, float(np.mean(result.converged)),
               note=note, start=method.start), result


def score(row: Row, result: Result | None, reference: Reference) -> Row:
    """Fills in the errors of estimates and standard errors against ``reference``."""
    if result is None:
        return row
    se_error = math.nan if result.se is None else max_relative_error(result.se, reference.se)
    return row._replace(error=max_relative_error(result.estimate, reference.estimate),
                        se_error=se_error)


# ---------------------------------------------------------------- jaxmle


def jaxmle_call(w: Workload, method: str, init=None, **options) -> Callable[[], Result]:
    """``jm.fit_batch`` (``jm.fit`` for one dataset) with results on the host."""
    fit = jm.fit_batch if w.batched else jm.fit

    def call():
        result = fit(w.log_density, w.init if init is None else init, w.data,
                     constraints=w.constraints, method=method, **options)
        batch = _datasets(w)
        return Result(_flat(result.params, batch), np.atleast_1d(result.converged),
                      _flat(result.se, batch))
    return call


def reference(w: Workload) -> Reference:
    """Closed form for the Normal; otherwise a jaxmle Newton fit at ``gtol=1e-12``."""
    if w.log_density is _normal_density:
        x = w.data.reshape(_datasets(w), -1)
        sigma, n = x.std(axis=1), x.shape[1]
        return Reference(np.column_stack([x.mean(axis=1), sigma]),
                         np.column_stack([sigma / math.sqrt(n), sigma / math.sqrt(2 * n)]))
    tight = jaxmle_call(w, "newton", gtol=1e-12)()
    return Reference(tight.estimate, tight.se)


# ---------------------------------------------------------------- JAX peers
# A solver is ``solve(objective, z0, data) -> (z, converged)`` for one dataset, minimising the
# mean negative log-likelihood ``objective(z, data)`` in unconstrained coordinates.


def jax_peer_call(w: Workload, solve: Callable, over: str,
                  start: Callable | None = None) -> Callable[[], Result]:
    """A fresh jitted peer fit with Hessian standard errors, results copied to numpy.

    Args:
        w: the workload.
        solve: ``solve(objective, z0, data) -> (z, converged)`` for one dataset.
        over: ``"map"`` (``jax.lax.map``) or ``"vmap"`` over datasets; ``""`` for one dataset.
        start: optional ``start(data) -> params`` (as jaxmle's callable ``init``); the
            common start ``w.init`` otherwise.

    Returns:
        A function of no arguments that fits every dataset of ``w``.
    """
    _, unravel = ravel_pytree(w.init)
    z0 = _z0(w)

    def objective(z, data):
        return -jnp.mean(w.log_density(unravel(_theta(w, z)), data))

    def one(data):
        z_start = jnp.asarray(z0) if start is None else _z(w, ravel_pytree(start(data))[0])
        z, converged = solve(objective, z_start, data)
        theta = _theta(w, z)
        information = jax.hessian(lambda t: -jnp.sum(w.log_density(unravel(t), data)))(theta)
        return theta, jnp.sqrt(jnp.diag(jnp.linalg.inv(information))), converged

    over_datasets = {"map": lambda data: jax.lax.map(one, data), "vmap": jax.vmap(one),
                     "": one}[over]
    compiled = jax.jit(over_datasets)

    def call():
        theta, se, converged = jax.device_get(compiled(w.data))
        batch = _datasets(w)
        return Result(theta.reshape(batch, -1), np.atleast_1d(converged), se.reshape(batch, -1))
    return call


def optimistix_bfgs(tol: float) -> Callable:
    """optimistix BFGS at rtol = atol = ``tol``; converged = ``sol.result`` is successful."""
    import optimistix as optx

    def solve(objective, z0, data):
        sol = optx.minimise(objective, optx.BFGS(rtol=tol, atol=tol), z0, args=data,
                            max_steps=MAX_STEPS, throw=False)
        return sol.value, sol.result == optx.RESULTS.successful
    return solve


def jaxopt_solver(name: str, linesearch: str, tol: float = TIGHT) -> Callable:
    """jaxopt ``BFGS``/``LBFGS``; converged = its own stopping test, gradient norm ``<= tol``."""
    import jaxopt

    def solve(objective, z0, data):
        solver = getattr(jaxopt, name)(fun=objective, tol=tol, maxiter=MAX_STEPS,
                                       linesearch=linesearch)
        z, state = solver.run(z0, data)
        return z, state.error <= tol
    return solve


def optax_lbfgs(objective, z0, data):
    """optax L-BFGS (zoom line search) in the ``while_loop`` of optax's documentation."""
    def fun(z):
        return objective(z, data)

    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        z, state = carry
        value, grad = value_and_grad(z, state=state)
        updates, state = optimizer.update(grad, state, z, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(z, updates), state

    def gradient_norm(state):
        return optax.tree_utils.tree_norm(optax.tree_utils.tree_get(state, "grad"))

    def running(carry):
        count = optax.tree_utils.tree_get(carry[1], "count")
        return (count == 0) | ((count < MAX_STEPS) & (gradient_norm(carry[1]) >= TIGHT))

    z, state = jax.lax.while_loop(running, step, (z0, optimizer.init(z0)))
    return z, gradient_norm(state) < TIGHT


def closed_form_normal(w: Workload) -> Callable[[], Result]:
    """Normal MLE in closed form: mean and biased standard deviation, jitted."""
    compiled = jax.jit(lambda x: jnp.stack([x.mean(axis=-1), x.std(axis=-1)], axis=-1))

    def call():
        estimate = np.asarray(compiled(w.data)).reshape(_datasets(w), -1)
        return Result(estimate, np.ones(len(estimate), bool))
    return call


def irls_logistic(w: Workload, tol: float = 1e-10, max_iter: int = 50) -> Callable[[], Result]:
    """Vectorised IRLS (Newton's method) for all logistic datasets at once, exact SEs."""
    def information_and_score(beta, X, y):
        p = jax.nn.sigmoid(jnp.einsum("bnk,bk->bn", X, beta))
        return (jnp.einsum("bnk,bn,bnl->bkl", X, p * (1 - p), X),
                jnp.einsum("bnk,bn->bk", X, y - p))

    def fit(data):
        X, y = data

        def step(carry):
            beta, _, iteration = carry
            information, score_ = information_and_score(beta, X, y)
            delta = jnp.linalg.solve(information, score_[..., None])[..., 0]
            return beta + delta, jnp.max(jnp.abs(delta), axis=1), iteration + 1

        start = (jnp.zeros(X.shape[::2]), jnp.full(X.shape[0], jnp.inf), 0)
        beta, change, _ = jax.lax.while_loop(
            lambda carry: (jnp.max(carry[1]) > tol) & (carry[2] < max_iter), step, start)
        covariance = jnp.linalg.inv(information_and_score(beta, X, y)[0])
        return beta, jnp.sqrt(jnp.diagonal(covariance, axis1=1, axis2=2)), change <= tol

    compiled = jax.jit(fit)

    def call():
        beta, se, converged = jax.device_get(compiled(w.data))
        return Result(beta, converged, se)
    return call


# ---------------------------------------------------------------- Python loops


def scipy_bfgs_loop(w: Workload, fits: int) -> Callable[[], Result]:
    """scipy BFGS with the numpy gradient, one fit per dataset; SEs from ``hess_inv``."""
    from scipy.optimize import minimize

    def call():
        estimates, converged, ses = [], [], []
        for b in range(fits):
            data = _dataset(w, b)
            res = minimize(w.nll_and_grad, _z0(w), args=(data,), jac=True, method="BFGS",
                           options={"gtol": TIGHT})
            theta = _theta(w, res.x)
            se_z = np.sqrt(np.diag(res.hess_inv) / _n_obs(data))  # objective is a mean
            estimates.append(theta)
            converged.append(res.success)
            ses.append(se_z * np.where(w.positive, theta, 1.0))  # delta method
        return Result(np.array(estimates), np.array(converged), np.array(ses))
    return call


def statsmodels_generic_loop(w: Workload, fits: int) -> Callable[[], Result]:
    """statsmodels ``GenericLikelihoodModel.fit(method="bfgs")``: numerical score and Hessian."""
    from statsmodels.base.model import GenericLikelihoodModel

    def call():
        estimates, converged, ses = [], [], []
        for b in range(fits):
            data = _dataset(w, b)
            n_obs = _n_obs(data)
            model = GenericLikelihoodModel(
                jax.tree.leaves(data)[-1],
                loglike=lambda z, data=data, n_obs=n_obs: -n_obs * w.nll(z, data))
            res = model.fit(start_params=_z0(w), method="bfgs", disp=0)
            theta = _theta(w, res.params)
            estimates.append(theta)
            converged.append(res.mle_retvals["converged"])
            ses.append(res.bse * np.where(w.positive, theta, 1.0))  # delta method
        return Result(np.array(estimates), np.array(converged), np.array(ses))
    return call


def statsmodels_logit_loop(w: Workload, fits: int) -> Callable[[], Result]:
    """statsmodels ``Logit`` (Newton, exact derivatives), one fit per dataset."""
    import statsmodels.api as sm

    def call():
        estimates, converged, ses = [], [], []
        for b in range(fits):
            X, y = _dataset(w, b)
            res = sm.Logit(y, X).fit(disp=0)
            estimates.append(res.params)
            converged.append(res.mle_retvals["converged"])
            ses.append(res.bse)
        return Result(np.array(estimates), np.array(converged), np.array(ses))
    return call


# ---------------------------------------------------------------- the run


def peers(w: Workload, fits: int) -> list[Method]:
    """Every peer method for ``w`` (``call`` None where the package is missing)."""
    optimistix, jaxopt = _installed("optimistix"), _installed("jaxopt")
    statsmodels, scipy = _installed("statsmodels"), _installed("scipy")
    overs = ("map", "vmap") if w.batched else ("",)
    # No vmap at 1e-8: some datasets never pass optimistix's test there, and a vmapped batch
    # runs every dataset until the slowest stops (MAX_STEPS), which costs minutes per call.
    methods = [Method(f"jax {tol:g}", f"optimistix BFGS {tol:g} {over}".strip(), "jax.hessian",
                      jax_peer_call(w, optimistix_bfgs(tol), over) if optimistix else None)
               for tol, over in [(TIGHT, overs[0]), *((LOOSE, over) for over in overs)]]
    # jaxopt's default zoom line search stalls from the Normal start (sigma -> 1e12 within
    # MAX_STEPS, at ~30 evaluations per step); its hager-zhang search converges there.
    linesearch = "hager-zhang" if w.log_density is _normal_density else "zoom"
    methods += [Method(f"jax {TIGHT:g}", f"jaxopt {name} {linesearch} {overs[0]}".strip(),
                       "jax.hessian",
                       jax_peer_call(w, jaxopt_solver(name, linesearch), overs[0])
                       if jaxopt else None)
                for name in ("BFGS", "LBFGS")]
    methods.append(Method(f"jax {TIGHT:g}", f"optax L-BFGS {overs[0]}".strip(), "jax.hessian",
                          jax_peer_call(w, optax_lbfgs, overs[0])))
    if w.batched:
        # jaxopt at the tolerance that reaches matched accuracy (the targets' rivals), also
        # from the data-driven start where jaxmle has a row with it.
        starts = [("common", None)] + ([("moments", _gamma_moments)] if w.name == "gamma" else [])
        methods += [Method(f"jax {MATCHING:g}",
                           f"jaxopt {name} {linesearch} {MATCHING:g} {overs[0]}"
                           + (f", {label} start" if label != "common" else ""), "jax.hessian",
                           jax_peer_call(w, jaxopt_solver(name, linesearch, MATCHING), overs[0],
                                         start) if jaxopt else None, start=label)
                    for label, start in starts for name in ("BFGS", "LBFGS")]
    if w.batched:
        methods.append(Method("statsmodels", "statsmodels GenericLikelihood bfgs",
                              "numerical Hessian",
                              statsmodels_generic_loop(w, fits) if statsmodels else None, fits))
    if w.name == "logistic":
        methods.append(Method("statsmodels", "statsmodels Logit", "exact Hessian",
                              statsmodels_logit_loop(w, fits) if statsmodels else None, fits))
    methods.append(Method("scipy", "scipy BFGS + numpy gradient", "BFGS hess_inv",
                          scipy_bfgs_loop(w, fits) if scipy else None, fits if w.batched else 0))
    if w.log_density is _normal_density:
        methods.append(Method("closed form", "JAX closed form", "none", closed_form_normal(w)))
    if w.name == "logistic":
        methods.append(Method("closed form", "JAX vectorised IRLS", "exact (X'WX)^-1",
                              irls_logistic(w)))
    return methods


def run(w: Workload, loop_fits: int, repeats: int) -> list[Row]:
    """Measures jaxmle first (so no reference fit warms its caches), then the peers."""
    datasets = _datasets(w)
    fits = min(loop_fits, datasets)
    methods = [Method("jaxmle", f"jaxmle {name}", "observed information", jaxmle_call(w, name))
               for name in ("newton", "bfgs")]
    if w.name == "gamma":
        # What a ready model's data-driven start buys (performance issue: "data-driven
        # starts"), compared with peers given the same start.
        methods.append(Method("jaxmle", "jaxmle newton, moments start", "observed information",
                              jaxmle_call(w, "newton", init=_gamma_moments), start="moments"))
    measured = [measure(method, datasets, repeats) for method in methods]
    truth = reference(w)
    measured += [measure(method, datasets, repeats) for method in peers(w, fits)]
    return [score(row, result, truth) for row, result in measured]


def _number(value: float, width: int, spec: str) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:{width}{spec}}"


def print_table(w: Workload, rows: list[Row]) -> None:
    """The workload's table; "/ jaxmle" is steady time over jaxmle Newton's steady time."""
    base = rows[0].steady
    print(f"\n== {w.name}: {w.title} ==")
    print(f"{'method':46} {'first s':>8} {'steady s':>9} {'/ jaxmle':>9} {'converged':>9} "
          f"{'max rel err':>11} {'matched':>7} {'SE err':>8}  {'SEs':22} note")
    for row in rows:
        matched = "" if math.isnan(row.steady) else ("yes" if row.error <= MATCHED else "NO")
        print(f"{row.method:46} {_number(row.first, 8, '.3f')} {_number(row.steady, 9, '.3f')} "
              f"{_number(row.steady / base, 9, '.2f')} {_number(row.converged, 9, '.4f')} "
              f"{_number(row.error, 11, '.1e')} {matched:>7} {_number(row.se_error, 8, '.1e')}  "
              f"{row.se:22} {row.note}".rstrip(), flush=True)


def _fastest(rows: list[Row], group: str, start: str = "common",
             within: float = SOLVED) -> Row | None:
    """The fastest measured row of ``group`` (a prefix), run from ``start``, whose estimates
    are within ``within`` of the reference."""
    candidates = [row for row in rows if row.group.startswith(group) and row.start == start
                  and row.error <= within]
    return min(candidates, key=lambda row: row.steady, default=None)


def _check(base: Row, peer: Row | None, needed: float, what: str) -> None:
    """Prints whether ``peer``'s steady time over ``base``'s reaches ``needed``."""
    if peer is None:
        print(f"target: {what}: no peer measured (not installed, failed or not matched)")
        return
    speedup = peer.steady / base.steady
    verdict = "target met" if speedup >= needed else "not met"
    if needed < 1:
        claim = f"{base.method} / {peer.method} = {1 / speedup:.3g} (target <= {1 / needed:g})"
    else:
        claim = f"{peer.method} / {base.method} = {speedup:.3g} (target >= {needed:g})"
    print(f"target: {what}: steady {claim} -> {verdict}")


def print_targets(w: Workload, rows: list[Row]) -> None:
    """Checks jaxmle Newton's steady times against the targets that apply to ``w``.

    The JAX-peer target compares with the fastest JAX peer at matched accuracy (max rel err
    <= ``MATCHED``) from the same start; the fastest peer at its 1e-8 setting, whatever its
    accuracy, is printed for context.
    """
    base = rows[0]
    if w.name == "normal":
        _check(base, _fastest(rows, "closed form"), 1 / 25, "closed form")
    if w.batched:
        _check(base, _fastest(rows, "statsmodels"), 100, "statsmodels loop")
    else:
        _check(base, _fastest(rows, "scipy"), 1, "scipy loop")
    for jaxmle_row in (row for row in rows if row.group == "jaxmle" and row.method.endswith(
            ("newton", "newton, moments start"))):
        start = jaxmle_row.start
        _check(jaxmle_row, _fastest(rows, "jax ", start, MATCHED), 3,
               f"JAX peer at matched accuracy, {start} start")
        if start == "common":
            _check(jaxmle_row, _fastest(rows, f"jax {TIGHT:g}", start), 3,
                   f"(context) JAX peer at tol {TIGHT:g}, any accuracy, {start} start")


def main() -> None:
    """Parses the options, then measures and prints one workload after another."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=float, default=1.0,
                        help="scale factor on every workload's size (datasets; n of 'single')")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 datasets, n = 10^5, 20 loop fits")
    parser.add_argument("--only", choices=("normal", "gamma", "logistic", "single"))
    parser.add_argument("--loop-fits", type=int, default=100,
                        help="datasets fitted by the Python loops (times extrapolated)")
    parser.add_argument("--repeats", type=int, default=3, help="steady calls per method")
    parser.add_argument("--write-results", action="store_true",
                        help="write the printed tables into benchmarks/RESULTS.md")
    args = parser.parse_args()
    loop_fits = min(args.loop_fits, 20) if args.quick else args.loop_fits
    import _report

    name = "peers" if args.only is None else f"peers_{args.only}"
    command = "python benchmarks/peers.py" + (f" --only {args.only}" if args.only else "")
    with _report.results_section(name, f"Side by side with the peers: `{command}`", "optimistix",
                                 "jaxopt", "optax", "scipy", "statsmodels",
                                 write=args.write_results, fenced=True):
        print(f"jaxmle newton = jm.fit_batch default; float64; steady = median of {args.repeats} "
              f"calls; 'matched' = max rel err <= {MATCHED:g}")
        with jax.enable_x64(True):
            jax.jit(jnp.sin)(1.0)  # JAX's one-off start-up, so that it is not in the first timing
            for w in workloads(args.datasets, args.quick, args.only):
                rows = run(w, loop_fits, args.repeats)
                print_table(w, rows)
                print_targets(w, rows)


if __name__ == "__main__":
    main()
