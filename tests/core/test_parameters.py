"""Constraints and the parameter space: round trips, Jacobians, pytrees of every kind."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmle as jm
from jaxmle.core import _parameters
from models import CASES, simulate

CONSTRAINTS = [jm.real, jm.positive, jm.unit_interval, jm.interval(-2.0, 3.0)]


@pytest.mark.parametrize("constraint", CONSTRAINTS, ids=repr)
def test_transform_round_trip_and_jacobian(constraint):
    z = jnp.linspace(-4.0, 4.0, 9)
    theta = constraint.to_constrained(z)
    np.testing.assert_allclose(constraint.to_unconstrained(theta), z, rtol=1e-12, atol=1e-12)
    assert constraint.violation(np.asarray(theta)) is None
    jac = jax.jacfwd(constraint.to_constrained)(z)
    numeric = (constraint.to_constrained(z + 1e-6) - constraint.to_constrained(z - 1e-6)) / 2e-6
    np.testing.assert_allclose(jnp.diag(jac), numeric, rtol=1e-7)


def test_simplex_round_trip_along_last_axis():
    theta = jnp.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    z = jm.simplex.to_unconstrained(theta)
    assert z.shape == (2, 2)
    np.testing.assert_allclose(jm.simplex.to_constrained(z), theta, rtol=1e-14)


def test_ordered_round_trip_jacobian_and_violations():
    theta = jnp.array([[-1.0, 0.5, 4.0], [2.0, 2.1, 2.2]])
    z = jm.ordered.to_unconstrained(theta)
    np.testing.assert_allclose(jm.ordered.to_constrained(z), theta, rtol=1e-14)
    jac = jax.jacfwd(jm.ordered.to_constrained)(z[0])
    # theta_j = z_0 + sum_{1 <= i <= j} exp(z_i): lower-triangular Jacobian.
    expected = np.tril(np.ones((3, 3))) * np.concatenate([[1.0], np.exp(z[0, 1:])])
    np.testing.assert_allclose(jac, expected, rtol=1e-14)
    assert jm.ordered.violation(np.array([0.0, 0.0, 1.0])) == (
        "values must be strictly increasing along the last axis")


def test_constraints_are_compared_by_value():
    assert jm.interval(0, 1) == jm.interval(0.0, 1.0) == jm.unit_interval
    assert hash(jm.interval(-1, 1)) == hash(jm.interval(-1.0, 1.0))
    with pytest.raises(ValueError, match="finite lo < hi"):
        jm.interval(1.0, 1.0)


class NormalParams(NamedTuple):
    mu: float
    sigma: float


def _by_position(p, x):
    return CASES["normal"].log_density({"mu": p[0], "sigma": p[1]}, x)


INITS = {
    "dict": ({"mu": 0.0, "sigma": 1.0}, {"sigma": jm.positive}, lambda p: (p["mu"], p["sigma"])),
    "tuple": ((0.0, 1.0), (jm.real, jm.positive), lambda p: p),
    "namedtuple": (NormalParams(0.0, 1.0), NormalParams(None, jm.positive), lambda p: (p.mu, p.sigma)),
    "nested": ({"loc": {"mu": 0.0}, "scale": (1.0,)}, {"scale": jm.positive},
               lambda p: (p["loc"]["mu"], p["scale"][0])),
}


@pytest.mark.parametrize("kind", list(INITS))
def test_pytree_inits_of_every_kind(kind):
    init, constraints, unpack = INITS[kind]
    x = simulate("normal", seed=3)
    fit = jm.fit(lambda p, x: _by_position(unpack(p), x), init, x, constraints=constraints)
    assert fit.converged
    assert jax.tree_util.tree_structure(fit.params) == jax.tree_util.tree_structure(init)
    mu, sigma = unpack(fit.params)
    np.testing.assert_allclose([mu, sigma], [x.mean(), x.std()], rtol=1e-9)


def test_array_and_scalar_inits():
    x = simulate("normal", seed=3)
    fit = jm.fit(lambda p, x: _by_position((p[0], jnp.exp(p[1])), x), jnp.array([0.0, 0.0]), x)
    np.testing.assert_allclose(fit.params, [x.mean(), np.log(x.std())], rtol=1e-9)
    fit = jm.fit(lambda rate, x: jnp.log(rate) - rate * x, 1.0, simulate("exponential"),
                 constraints=jm.positive)
    assert fit.params.shape == () and fit.converged


def test_callable_init_is_data_dependent():
    x = simulate("normal", seed=3)
    start = lambda x: {"mu": jnp.median(x), "sigma": jnp.std(x)}
    fit = jm.fit(CASES["normal"].log_density, start, x, constraints={"sigma": jm.positive})
    assert fit.converged
    assert int(fit.n_iter) <= 3


def test_parameter_names_follow_pytree_paths():
    space = _parameters.build({"beta": np.zeros(2), "sigma": 1.0}, {"sigma": jm.positive})
    assert space.names == ("beta[0]", "beta[1]", "sigma")
    assert space.n_free == 3
