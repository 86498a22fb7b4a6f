"""``jaxmle._special.log_gamma_ratio`` against independent forms: scipy's ``gammaln`` where
its own rounding is small, exact sums of ``log1p`` for whole ``x``, and an exact identity
linking the half steps; across the switch to Stirling's series and far beyond it.
``softplus`` and its derivatives against ``jnp.logaddexp``'s."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxmle._special import STIRLING_FROM, log_gamma_ratio, softplus

# Below the switch the result carries gammaln's rounding, eps * gammaln(a + x) <= ~1e-13 for
# a + x <= 400; from the switch on, no term grows with a and the rounding is of the result.
ROUNDING = 2e-13
A = np.array([0.05, 0.7, 3.0, 41.0, 99.99, STIRLING_FROM, 100.01, 350.0, 1e4, 1e7, 1e11, 1e15])


def _value(a, x):
    return float(log_gamma_ratio(jnp.float64(a), jnp.float64(x)))


@pytest.mark.parametrize("x", [0.0, 0.5, 1.0, 2.5, 17.0])
def test_against_gammaln_where_its_rounding_is_small(x):
    # Below a = 1e3, scipy's gammaln(a + x) - gammaln(a) loses at most ~eps * 7e3 absolute.
    for a in A[A < 1e3]:
        expected = special.gammaln(a + x) - special.gammaln(a) - x * np.log(a)
        np.testing.assert_allclose(_value(a, x), expected, rtol=0, atol=2e-12)


@pytest.mark.parametrize("x", [1, 2, 7, 40, 300])
def test_whole_steps_are_sums_of_log1p(x):
    # gammaln(a + x) - gammaln(a) = sum_{j<x} log(a + j): minus x log a, sum log1p(j / a),
    # exact to rounding of itself at any a (no cancellation of large terms).
    for a in A:
        expected = np.sum(np.log1p(np.arange(x) / a))
        np.testing.assert_allclose(_value(a, x), expected, rtol=1e-12, atol=ROUNDING)


def test_half_steps_add_up_to_the_whole_step():
    # f(a, 1/2) + f(a + 1/2, 1/2) = gammaln(a + 1) - gammaln(a) - log(a)/2 - log(a + 1/2)/2
    #                             = -log1p(1 / (2a)) / 2, on both sides of the switch.
    for a in np.concatenate([A, STIRLING_FROM - np.array([0.25, 0.5])]):
        total = _value(a, 0.5) + _value(a + 0.5, 0.5)
        expected = -0.5 * np.log1p(0.5 / a)
        np.testing.assert_allclose(total, expected, rtol=1e-12, atol=ROUNDING)


def test_derivatives_are_finite_on_both_branches():
    grad = jax.grad(log_gamma_ratio)
    for a in (1e-3, 5.0, STIRLING_FROM, 1e9):
        assert np.isfinite(float(grad(jnp.float64(a), jnp.float64(0.5))))
    # d/da at large a: x(x - 1)/(2a) -> -x(x - 1)/(2a^2) to leading order.
    a = 1e6
    np.testing.assert_allclose(float(grad(jnp.float64(a), jnp.float64(3.0))), -3.0 / a ** 2,
                               rtol=1e-5)


def test_softplus_and_its_derivatives_equal_logaddexp_s():
    # Values from -745 (exp underflows) to 745 (exp overflows), and the first two
    # derivatives of both forms by automatic differentiation: the same functions, so equal
    # to rounding (relative 1e-15; the second derivative underflows to 0 in both at the ends).
    x = jnp.asarray([-745.0, -50.0, -1.0, -1e-8, 0.0, 1e-8, 0.3, 2.0, 37.0, 700.0, 745.0])
    ours, theirs = softplus, lambda v: jnp.logaddexp(v, 0.0)
    for _ in range(3):  # the value, then the first and second derivatives
        np.testing.assert_allclose(jax.vmap(ours)(x), jax.vmap(theirs)(x), rtol=1e-15, atol=0)
        ours, theirs = jax.grad(ours), jax.grad(theirs)
