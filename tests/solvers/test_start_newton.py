"""The start minimiser (``solvers/_start_newton``): optima from far, indefinite starts; the
start itself back when its loss is not finite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmle.solvers import _start_newton

GTOL = 1e-10


def _derivatives(loss):
    return lambda z: (loss(z), jax.grad(loss)(z), jax.hessian(loss)(z))


def _minimum(loss, z0, **options):
    """The start minimiser on one problem (a single lane)."""
    z, ok = jax.jit(lambda z0: _start_newton.minima(jax.vmap(_derivatives(loss)), z0[None],
                                                    **options))(jnp.asarray(z0, float))
    return z[0], ok[0]


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
    z, ok = _minimum(_normal_loss(jnp.asarray(x)), start, gtol=GTOL, max_iter=100)
    assert bool(ok)
    # Raw (uncentred) statistics lose about (mean / sd)^2 eps of the variance.
    rtol = max(1e-9, 100 * (mean / sd) ** 2 * np.finfo(float).eps)
    np.testing.assert_allclose(z[0], x.mean(), rtol=1e-12, atol=rtol * sd)
    np.testing.assert_allclose(np.exp(z[1]), x.std(), rtol=rtol)


def test_rosenbrock_from_the_standard_start():
    loss = lambda z: 100 * (z[1] - z[0] ** 2) ** 2 + (1 - z[0]) ** 2
    z, ok = _minimum(loss, [-1.2, 1.0], gtol=GTOL, max_iter=100)
    assert bool(ok)
    np.testing.assert_allclose(z, [1.0, 1.0], rtol=1e-8)


def test_a_non_finite_start_is_returned_unchanged():
    loss = lambda z: jnp.sum(jnp.log(z) ** 2)
    z0 = jnp.asarray([-1.0, 2.0])
    z, ok = _minimum(loss, z0, gtol=GTOL, max_iter=100)
    assert not bool(ok)
    np.testing.assert_array_equal(z, z0)


def test_stops_within_its_budget_on_a_loss_without_a_minimum():
    # exp(z): every step gains, no optimum; the loop ends at max_iter with a lower loss.
    loss = lambda z: jnp.sum(jnp.exp(z))
    z, ok = _minimum(loss, jnp.zeros(2), gtol=GTOL, max_iter=30)
    assert bool(ok) and bool(jnp.all(z < -5)) and bool(jnp.all(jnp.isfinite(z)))


def test_lanes_stop_on_their_own():
    # Five problems side by side: each lane's result is the one it reaches alone (a lane
    # that stops keeps its state while the others go on), and one non-finite start among
    # them is returned unchanged without disturbing the rest.
    scales = np.array([[1.0], [10.0], [100.0], [1e3], [1e4]])
    x = jnp.asarray(np.random.default_rng(1).normal(3.0, 2.0, size=(5, 200)) * scales)
    losses = [_normal_loss(row) for row in x]
    starts = jnp.zeros((5, 2)).at[2, 1].set(jnp.inf)

    def derivatives(z):
        return jax.vmap(lambda data, z: _derivatives(_normal_loss(data))(z))(x, z)
    z, ok = jax.jit(lambda z0: _start_newton.minima(derivatives, z0, gtol=GTOL,
                                                    max_iter=100))(starts)
    np.testing.assert_array_equal(ok, [True, True, False, True, True])
    np.testing.assert_array_equal(z[2], starts[2])
    for lane in (0, 1, 3, 4):
        alone, _ = _minimum(losses[lane], starts[lane], gtol=GTOL, max_iter=100)
        # Two programs (five lanes, one lane) may round differently in the last bit.
        np.testing.assert_allclose(z[lane], alone, rtol=1e-14)
        np.testing.assert_allclose(z[lane, 0], x[lane].mean(), rtol=1e-10)
