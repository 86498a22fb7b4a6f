"""Classic models with closed-form MLEs and Fisher standard errors, for the tests."""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.scipy import stats

import jaxmle as jm

N_OBS = 200
N_BATCH = 1000
BINOMIAL_TRIALS = 10.0


class Case(NamedTuple):
    log_density: object
    init: object
    constraints: object
    simulate: object          # rng, shape -> data
    closed_form: object       # data (n,...) -> (params dict, se dict) as numpy


def _bernoulli(p, y):
    return y * jnp.log(p["p"]) + (1.0 - y) * jnp.log1p(-p["p"])


def _binomial(p, k):
    return k * jnp.log(p["p"]) + (BINOMIAL_TRIALS - k) * jnp.log1p(-p["p"])


def _poisson(p, x):
    return stats.poisson.logpmf(x, p["rate"])


def _exponential(p, x):
    return jnp.log(p["rate"]) - p["rate"] * x


def _normal(p, x):
    return stats.norm.logpdf(x, p["mu"], p["sigma"])


def _categorical(p, onehot):
    return onehot @ jnp.log(p["probs"])


def _proportion_se(phat, count):
    return np.sqrt(phat * (1 - phat) / count)


CASES = {
    "bernoulli": Case(
        _bernoulli, {"p": 0.5}, {"p": jm.unit_interval},
        lambda rng, shape: (rng.uniform(size=shape) < 0.3).astype(float),
        lambda y: ({"p": y.mean()}, {"p": _proportion_se(y.mean(), y.size)})),
    "binomial": Case(
        _binomial, {"p": 0.5}, {"p": jm.unit_interval},
        lambda rng, shape: rng.binomial(int(BINOMIAL_TRIALS), 0.35, size=shape).astype(float),
        lambda k: ({"p": k.mean() / BINOMIAL_TRIALS},
                   {"p": _proportion_se(k.mean() / BINOMIAL_TRIALS, k.size * BINOMIAL_TRIALS)})),
    "poisson": Case(
        _poisson, {"rate": 1.0}, {"rate": jm.positive},
        lambda rng, shape: rng.poisson(4.2, size=shape).astype(float),
        lambda x: ({"rate": x.mean()}, {"rate": np.sqrt(x.mean() / x.size)})),
    "exponential": Case(
        _exponential, {"rate": 1.0}, {"rate": jm.positive},
        lambda rng, shape: rng.exponential(1 / 2.5, size=shape),
        lambda x: ({"rate": 1 / x.mean()}, {"rate": (1 / x.mean()) / np.sqrt(x.size)})),
    "normal": Case(
        _normal, {"mu": 0.0, "sigma": 1.0}, {"sigma": jm.positive},
        lambda rng, shape: rng.normal(7.2, 2.8, size=shape),
        lambda x: ({"mu": x.mean(), "sigma": x.std()},
                   {"mu": x.std() / np.sqrt(x.size), "sigma": x.std() / np.sqrt(2 * x.size)})),
    "multinomial": Case(
        _categorical, {"probs": np.full(4, 0.25)}, {"probs": jm.simplex},
        lambda rng, shape: np.eye(4)[rng.choice(4, size=shape, p=[0.1, 0.2, 0.3, 0.4])],
        lambda onehot: ({"probs": onehot.mean(0)},
                        {"probs": _proportion_se(onehot.mean(0), onehot.shape[0])})),
}


def simulate(name, batch=None, seed=0):
    shape = (N_OBS,) if batch is None else (batch, N_OBS)
    return CASES[name].simulate(np.random.default_rng(seed), shape)
