"""Hard nonlinear problems from public collections: the default Newton reaches the known
minimum, judged as ``benchmarks/hard_problems.py`` judges every solver, from starts where
the previous Newton failed (that script runs the whole collections beside the peers)."""

import numpy as np
import pytest

import jaxmle as jm
from conftest import load_example
from jaxmle.core import _retry

HARD = load_example("hard_problems", "benchmarks")


def _case(name, start):
    (case,) = [c for c in HARD.cases(names={name}) if c.start == start]
    return case


def _solved_by_default_fit(name, start, variant):
    """The outcome of ``jm.fit``'s defaults on the start, asserted CONVERGED and solved."""
    case = _case(name, start)
    outcome = HARD.run_jaxmle(case, variant, "newton", repeat=False)
    assert outcome.label == "CONVERGED", outcome
    assert HARD.solved(case, outcome, case.f_min), outcome
    return outcome


# (problem, start, variant), each failed by the previous Newton (MAX_ITER at its cap of
# 100; Lanczos1 with sigma free also left sigma 2,000x too large there) and solved by a
# peer from the same start; each needs more than 100 iterations.
CASES = [
    ("Lanczos1", "start 1", "gauss"),  # RSS 1.4e-25: sigma falls from 0.1 to 8e-14; a
    # small program, compiled unoptimised: a noise step at the minimum once made it BOUNDARY
    ("Lanczos3", "start 2", "gauss"),  # sum of three exponentials
    ("MGH10", "start 2", "gauss"),     # Meyer's exp(b2 / (x + b3))
    ("Bennett5", "start 1", "gauss"),
    ("Nelson", "start 1", "gauss"),
    ("Penalty II", "1x", "gauss"),
    ("Osborne 1", "10x", "gauss"),
    ("Rosenbrock", "100x", "ls"),
    ("Osborne 1", "100x", "ls"),       # was STALLED after 89 iterations (NIST MGH17 alike)
    ("Osborne 1", "100x", "gauss"),    # crawls along the merged-exponential valley: ~1,200
    ("Meyer", "10x", "ls"),            # ~1,600 iterations; both were MAX_ITER at a cap of 1,000
]


@pytest.mark.parametrize("name, start, variant", CASES)
def test_hard_starts_reach_the_known_minimum(name, start, variant, newton_path_only):
    outcome = _solved_by_default_fit(name, start, variant)
    assert outcome.iterations > 100  # the default budget goes by progress


def test_a_local_optimum_is_not_reported_as_the_certified_one():
    # The judge itself: the two-exponential point where Lanczos3's fits used to end
    # (SINGULAR_HESSIAN, RSS 4.3e-6 against 1.6e-8) is not solved.
    case = _case("Lanczos3", "start 1")
    merged = np.array([-0.2227, 1.8734, 2.0683, 4.6402, 0.6672, 1.8734])
    assert not HARD.solved(case, HARD.Outcome(merged, None, True, "", 0, 0, 0.0), case.f_min)
    assert HARD.solved(case, HARD.Outcome(case.x_min, None, True, "", 0, 0, 0.0), case.f_min)


# (problem, start, variant, status): starts where the previous Newton reported CONVERGED
# short of the minimum, its driver's gradient test (absolute for a loss below 1) passing
# while the loss still fell by a large factor per iteration. Powell's minimiser 0 has a
# Hessian of rank 2 of 4 (Newton converges linearly there): the minimum is reached and
# certification reports the singular Hessian, not a converged estimate with standard
# errors.
SHORT = [
    ("Powell singular", "1x", "ls", "SINGULAR_HESSIAN"),     # was RSS 3e-15, x 1e-4 off
    ("Powell singular", "100x", "ls", "SINGULAR_HESSIAN"),
    ("Extended Powell singular", "10x", "ls", "SINGULAR_HESSIAN"),
    ("Lanczos1", "start 1", "ls", "CONVERGED"),  # was RSS 1e-18 against 1.4e-25
    ("Lanczos2", "start 2", "ls", "CONVERGED"),  # was RSS at f_min, parameters off
    ("Lanczos2", "start 1", "ls", "CONVERGED"),  # stopped by the decrement test there
    ("Lanczos3", "start 1", "ls", "CONVERGED"),  # was 3e-6 off the certified parameters
]


@pytest.mark.parametrize("name, start, variant, status", SHORT)
def test_a_loss_still_falling_fast_is_not_reported_converged(name, start, variant, status,
                                                              newton_path_only):
    case = _case(name, start)
    outcome = HARD.run_jaxmle(case, variant, "newton", repeat=False)
    assert outcome.label == status, outcome
    assert HARD.solved(case, outcome, case.f_min), outcome


def test_the_first_step_must_earn_a_good_ratio(newton_path_only):
    # NIST Eckerle4 from its first start: a long first step lowered the loss a little by
    # moving the Gaussian peak off the data, onto a plateau with zero gradient
    # (SINGULAR_HESSIAN after one step); MINPACK solves it from there.
    _solved_by_default_fit("Eckerle4", "start 1", "ls")


@pytest.mark.parametrize("name, start, variant, status, most", [
    # Gaussian from 100x: a point with a singular Hessian at RSS 0.28 (the minimum is
    # 1.1e-8) was reported CONVERGED when the decrement test was absolute.
    ("Gaussian", "100x", "ls", "SINGULAR_HESSIAN", 1000),
    # Bard from 10x runs off to its infimum at infinity (RSS 17.4286, Moré, Garbow &
    # Hillstrom 1981); failed extrapolations used to shrink the radius there, and the fit
    # crawled for 750 iterations to a singular Hessian.
    ("Bard", "10x", "gauss", "BOUNDARY", 100),
])
def test_a_newton_path_that_misses_the_minimum_says_why(name, start, variant, status, most,
                                                        newton_path_only):
    # Without the second fit, which then solves both (below).
    case = _case(name, start)
    outcome = HARD.run_jaxmle(case, variant, "newton", repeat=False)
    assert not HARD.solved(case, outcome, case.f_min)
    assert outcome.label == status, outcome
    assert outcome.iterations <= most


# (problem, start, variant): Newton's path ends without a certified optimum (BOUNDARY,
# SINGULAR_HESSIAN, MAX_ITER at the default cap) where a peer solves the start; the second
# fit (BFGS from the start, then Newton from BFGS's end, ``core/_retry``) reaches it.
RETRIED = [
    ("Beale", "10x", "ls"),        # Newton's path enters a valley towards infinity
    ("Beale", "100x", "ls"),
    ("Bard", "10x", "gauss"),
    ("Gaussian", "100x", "ls"),
    ("Biggs EXP6", "1x", "ls"),    # Newton crawls along an indefinite valley to its cap
]


@pytest.mark.parametrize("name, start, variant", RETRIED)
def test_a_second_fit_reaches_the_minimum_newton_missed(name, start, variant):
    _solved_by_default_fit(name, start, variant)


def test_a_batch_gives_a_dataset_at_its_cap_a_single_fit_s_budget(monkeypatch):
    # In a batch a crawling dataset holds its chunk's lanes, so the batch's chunks step with
    # a cap of 1,000; a dataset that reaches it is fitted again from its start with a single
    # fit's cap, in lanes of its own. Meyer from 10x its start needs ~1,630 iterations, from
    # 1x ~200 (the start rides in the data, a data-driven init).
    case = _case("Meyer", "1x")
    density = HARD._log_density(case, "ls")
    data = np.stack([np.concatenate([scale * case.x0, np.zeros(case.m)]) for scale in (1, 10)])
    init = lambda d: {"x": d[:3]}
    log_density = lambda p, d: density(p, d[3:])
    fits = jm.fit_batch(log_density, init, data)
    single = jm.fit(log_density, init, data[1])
    assert np.all(fits.status == jm.Status.CONVERGED) and fits.n_iter[1] > 1000
    for row in range(2):
        outcome = HARD.Outcome(fits.params["x"][row], None, True, "", 0, 0, 0.0)
        assert HARD.solved(case, outcome, case.f_min)
    np.testing.assert_allclose(fits.params["x"][1], single.params["x"], rtol=1e-7)
    monkeypatch.setattr(_retry, "full_budget",
                        lambda fits, *args, **kwargs: (fits, np.zeros(len(fits), bool)))
    capped = jm.fit_batch(log_density, init, data)
    assert capped.status[1] == jm.Status.MAX_ITER and capped.n_iter[1] == 1000
    np.testing.assert_array_equal(capped.params["x"][0], fits.params["x"][0])
    assert capped.n_iter[0] == fits.n_iter[0]
