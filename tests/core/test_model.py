"""jm.Model: a value that fits remember, contradictions refused, tools that take the fit;
and the one batch protocol (len, [i], iteration) of every result type."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import jaxmle as jm

N = 60
B = 3


def _normal(params, x):
    return stats.norm.logpdf(x, params["mu"], params["sigma"])


def _prior(params):
    return stats.norm.logpdf(params["mu"], 0.0, 0.05)


START = {"mu": 1.0, "sigma": 1.0}
NORMAL = jm.Model(_normal, constraints={"sigma": jm.positive})


def test_models_are_values_that_share_compiled_fits():
    again = jm.Model(_normal, constraints={"sigma": jm.positive})
    assert again == NORMAL and hash(again) == hash(NORMAL) and again is not NORMAL
    assert jm.Model(_normal) != NORMAL
    assert jm.Model(_normal, constraints={"sigma": jm.positive}, log_prior=_prior) != NORMAL
    assert jm.models.categorical(3) is jm.models.categorical(3)
    assert jm.models.gaussian_mixture(2) == jm.models.gaussian_mixture(2)

    traces = []

    def counted(params, x):
        traces.append(1)
        return _normal(params, x)

    x = np.random.default_rng(0).normal(2.0, 1.5, size=N)
    first = jm.fit(jm.Model(counted, constraints={"sigma": jm.positive}), START, x)
    traced = len(traces)
    second = jm.fit(jm.Model(counted, constraints={"sigma": jm.positive}), START, x + 1.0)
    assert len(traces) == traced  # an equal Model reuses the compiled fit
    np.testing.assert_allclose(second.params["mu"], first.params["mu"] + 1.0, rtol=1e-12)


def test_a_fit_remembers_its_model_whether_given_or_built():
    x = np.random.default_rng(1).normal(2.0, 1.5, size=N)
    assert jm.fit(NORMAL, START, x).model is NORMAL
    built = jm.fit(_normal, START, x, constraints={"sigma": jm.positive}, log_prior=_prior)
    assert built.model == jm.Model(_normal, constraints={"sigma": jm.positive}, log_prior=_prior)
    batch = jm.fit_batch(NORMAL, START, np.stack([x, x + 1.0]))
    assert batch.model is NORMAL and batch[1].model is NORMAL
    assert jm.fit(jm.models.poisson, None, np.arange(5.0)).model is jm.models.poisson
    assert jm.multistart(NORMAL, START, x, starts=2).best.model is NORMAL


def test_a_keyword_that_contradicts_the_model_is_an_error():
    x = np.random.default_rng(2).normal(size=N)
    with pytest.raises(ValueError, match="constraints= contradicts the Model"):
        jm.fit(NORMAL, START, x, constraints={"sigma": jm.interval(0.0, 10.0)})
    with pytest.raises(ValueError, match="log_prior= contradicts the Model"):
        jm.fit_batch(NORMAL, START, x[None], log_prior=_prior)
    with pytest.raises(ValueError, match="constraints= contradicts the Model"):
        jm.fit(jm.models.bernoulli, None, np.ones(4), constraints={"p": jm.real})
    # Repeating what the Model says is not a contradiction.
    assert jm.fit(NORMAL, START, x, constraints={"sigma": jm.positive}).converged
    with pytest.raises(TypeError, match="jm.Model or a function"):
        jm.fit("normal", START, x)
    with pytest.raises(TypeError, match="log_prior must be a function"):
        jm.Model(_normal, log_prior=0.5)


@pytest.mark.heavy
def test_tools_work_on_the_objective_the_fit_maximised():
    # A tight prior pulls mu far from the sample mean: on the likelihood alone, the MAP
    # estimate is no maximum, so a profile of the wrong objective finds a better point.
    x = np.random.default_rng(3).normal(2.0, 1.0, size=N)
    posterior = jm.Model(_normal, constraints={"sigma": jm.positive}, log_prior=_prior)
    fit = jm.fit(posterior, START, x)
    assert fit.converged and abs(fit.params["mu"]) < 0.5
    prof = jm.profile(fit, x, parameters="mu")
    assert not prof.better and prof.lower["mu"] < fit.params["mu"] < prof.upper["mu"]
    assert jm.profile(jm.fit(_normal, START, x, constraints={"sigma": jm.positive}),
                      x, parameters="mu").upper["mu"] > 1.5
    report = jm.diagnose(fit, x)
    assert report.eigenvalues[0] > 0
    # Every bootstrap replicate is refitted under the fit's constraints and prior.
    boot = jm.bootstrap(fit, x, replicates=20)
    assert boot.fits.model == posterior and int(boot.n_failed) == 0
    assert np.all(np.abs(boot.replicates["mu"]) < 0.5) and np.all(boot.replicates["sigma"] > 0)


def test_tools_refuse_a_fit_without_its_model_and_refit_needs_a_start():
    x = np.random.default_rng(4).normal(size=(2, N))
    fits = jm.fit_batch(NORMAL, START, x)
    with pytest.raises(ValueError, match="does not know its model"):
        jm.profile(dataclasses.replace(fits, model=None), x)
    with pytest.raises(TypeError, match="fit must be a jm.Fit"):
        jm.diagnose(fits.params, x)
    with pytest.raises(TypeError, match="refit needs init="):
        jm.refit(fits, x, which=np.array([True, False]))
    again = jm.refit(fits, x, init=START, which=np.array([True, False]))
    np.testing.assert_allclose(again.loglik, fits.loglik, rtol=1e-12)


def _batched_results():
    rng = np.random.default_rng(5)
    x = rng.exponential(0.5, size=(B, N))
    exponential = jm.models.exponential
    fits = jm.fit_batch(exponential, None, x)
    gamma = jm.fit_batch(jm.models.gamma, None, x)
    return {
        "Fit": fits,
        "Profile": jm.profile(fits, x),
        "Bootstrap": jm.bootstrap(fits, x, replicates=10),
        "Diagnosis": jm.diagnose(fits, x),
        "Multistart": jm.multistart(exponential, None, x, starts=2, batched=True),
        "Calibration": jm.calibrate(exponential, exponential.simulate,
                                    {"rate": np.array([1.0, 2.0, 3.0])}, n=20,
                                    replicates=10, batched=True),
        "Comparison": jm.compare({"exponential": fits, "gamma": gamma}),
    }


@pytest.fixture(scope="module")
def batched_results():
    return _batched_results()


@pytest.mark.parametrize("kind", ["Fit", "Profile", "Bootstrap", "Diagnosis", "Multistart",
                                  "Calibration", "Comparison"])
def test_every_batched_result_answers_len_and_index_with_its_own_type(batched_results, kind):
    result = batched_results[kind]
    assert type(result).__name__ == kind and len(result) == B
    items = list(result)
    assert len(items) == B
    for i, item in enumerate(items):
        assert type(item) is type(result) and item.batch_shape == ()
        for got, whole in zip(jax.tree_util.tree_leaves(item), jax.tree_util.tree_leaves(result)):
            np.testing.assert_array_equal(got, np.asarray(whole)[i])
    assert len(result[1:]) == B - 1
    with pytest.raises(TypeError, match=f"a single {kind}"):
        len(items[0])
    with pytest.raises(TypeError, match=f"a single {kind}"):
        items[0][0]


def test_a_single_dataset_result_equals_its_batch_entry():
    x = np.random.default_rng(6).exponential(0.5, size=(B, N))
    fits = jm.fit_batch(jm.models.exponential, None, x)
    single = jm.fit(jm.models.exponential, None, x[2])
    assert jm.profile(fits, x)[2].upper["rate"] == pytest.approx(
        float(jm.profile(single, x[2]).upper["rate"]), rel=1e-9)
    assert jnp.shape(jm.bootstrap(single, x[2], replicates=10).se["rate"]) == ()
