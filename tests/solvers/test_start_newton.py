"""The start minimiser (``solvers/_start_newton``): optima from far, indefinite starts; the
start itself back when its loss is not finite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmle.solvers import _start_newton

GTOL = 1e-10


def _derivatives(loss):
    return jax.jit(lambda z: (loss(z), jax.grad(loss)(z), jax.hessian(loss)(z)))


def _normal_loss(x):
    """Negative Normal log-likelihood in ``(mu, log sigma)`` from sufficient statistics."""
    n, s1, s2 = x.size, x.sum(), (x ** 2).sum()

    def loss(z):
        mu, log_sigma = z
        return n * log_sigma + (s2 - 2 * mu * s1 + n * mu ** 2) / (2 * jnp.exp(2 * log_sigma))
    return loss


@pytest.mark.parametrize("mean, sd, start", [(7.2, 2.8, (0.0, 0.0)), (1e4, 1.0, (0.0, 0.0)),
                                             (0.0, 1e-6, (1.0, 0.0)), (-3e5, 50.0, (0.0, 5.0))])
def test_reaches_the_closed_form_optimum_from_far_starts(mean, sd, start):
    # From (0, 0) the Hessian of the first case is indefinite (a saddle-free step is needed).
    x = np.random.default_rng(0).normal(mean, sd, size=1000)
    derivatives = _derivatives(_normal_loss(jnp.asarray(x)))
    z, ok = _start_newton.minimum(derivatives, jnp.asarray(start), gtol=GTOL, max_iter=100)
    assert bool(ok)
    # Raw (uncentred) statistics lose about (mean / sd)^2 eps of the variance.
    rtol = max(1e-9, 100 * (mean / sd) ** 2 * np.finfo(float).eps)
    np.testing.assert_allclose(z[0], x.mean(), rtol=1e-12, atol=rtol * sd)
    np.testing.assert_allclose(np.exp(z[1]), x.std(), rtol=rtol)


def test_rosenbrock_from_the_standard_start():
    loss = lambda z: 100 * (z[1] - z[0] ** 2) ** 2 + (1 - z[0]) ** 2
    z, ok = _start_newton.minimum(_derivatives(loss), jnp.asarray([-1.2, 1.0]), gtol=GTOL,
                                  max_iter=100)
    assert bool(ok)
    np.testing.assert_allclose(z, [1.0, 1.0], rtol=1e-8)


def test_a_non_finite_start_is_returned_unchanged():
    loss = lambda z: jnp.sum(jnp.log(z) ** 2)
    z0 = jnp.asarray([-1.0, 2.0])
    z, ok = _start_newton.minimum(_derivatives(loss), z0, gtol=GTOL, max_iter=100)
    assert not bool(ok)
    np.testing.assert_array_equal(z, z0)


def test_stops_within_its_budget_on_a_loss_without_a_minimum():
    # exp(z): every step gains, no optimum; the loop ends at max_iter with a lower loss.
    loss = lambda z: jnp.sum(jnp.exp(z))
    z, ok = _start_newton.minimum(_derivatives(loss), jnp.zeros(2), gtol=GTOL, max_iter=30)
    assert bool(ok) and bool(jnp.all(z < -5)) and bool(jnp.all(jnp.isfinite(z)))


def test_is_traceable_under_vmap():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(5, 200))

    def one(data):
        return _start_newton.minimum(_derivatives(_normal_loss(data)), jnp.zeros(2), gtol=GTOL,
                                     max_iter=100)
    z, ok = jax.jit(jax.vmap(one))(jnp.asarray(x))
    assert bool(ok.all())
    np.testing.assert_allclose(z[:, 0], x.mean(1), rtol=1e-10)
