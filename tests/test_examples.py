"""Examples run in a small mode, so they can never rot."""

import numpy as np
import pytest

from conftest import load_example


@pytest.mark.heavy
def test_quickstart_small(capsys):
    fits = load_example("quickstart").main(datasets=64, obs=200)
    out = capsys.readouterr().out
    assert "converged           100.00%" in out
    assert fits.converged.all()
    assert len(fits) == 64


@pytest.mark.heavy
def test_mixture_multistart_and_component_comparison(tmp_path, capsys):
    from scipy import stats

    result = load_example("mixture").main(out=tmp_path)  # the example's 24 starts
    ms, one, x = result["multistart"], result["one"], result["x"]
    converged = np.asarray(ms.fits.converged)
    assert ms.best.converged
    assert ms.best.loglik == np.max(np.where(converged, ms.fits.loglik, -np.inf))
    # Single starts end in different places: the best optimum, and the manifold where the
    # two components merge into one (SINGULAR_HESSIAN), or a component collapsing onto one
    # point (log-likelihood unbounded; never CONVERGED).
    assert len(np.unique(np.round(np.asarray(ms.fits.loglik), 1))) >= 2
    assert not converged.all()
    # One component: the Normal closed form; the LR statistic from the two log-likelihoods.
    np.testing.assert_allclose(one.loglik, stats.norm.logpdf(x, x.mean(), x.std()).sum(),
                               rtol=1e-12)
    np.testing.assert_allclose(result["lr_statistic"], 2 * (ms.best.loglik - one.loglik),
                               rtol=1e-12)
    assert result["df"] == 3 and ms.best.aic < one.aic
    assert "where single starts end" in capsys.readouterr().out
    assert (tmp_path / "mixture.png").stat().st_size > 10_000


@pytest.mark.heavy  # two censored fits compiled, and a figure drawn
def test_survival_kaplan_meier_and_fitted_curves(tmp_path, capsys):
    from lifelines import KaplanMeierFitter

    result = load_example("survival").main(out=tmp_path)
    x, observed = result["x"], result["observed"]
    # The hand-written Kaplan-Meier against lifelines' at the event times.
    reference = KaplanMeierFitter().fit(x, observed).survival_function_at_times(
        result["km_times"]).to_numpy()
    np.testing.assert_allclose(result["km"], reference, rtol=1e-12)
    # Simulated from a Weibull: AIC picks it, and its curve stays near Kaplan-Meier.
    assert result["chosen"] == "weibull"
    assert result["weibull"]["km_gap"] < 0.06 < result["lognormal"]["km_gap"]
    fit = result["weibull"]["fit"]
    assert fit.converged and result["lognormal"]["fit"].converged
    assert abs(float(fit.params["shape"]) - 1.6) < 3 * float(fit.se["shape"])
    # Delta-method standard errors of S(t): positive inside, vanishing as S(t) -> 1 at t -> 0.
    se = result["weibull"]["se"]
    assert (se > 0).all() and se[0] < 0.01 < se.max()
    assert "AIC chooses the weibull model" in capsys.readouterr().out
    assert (tmp_path / "survival.png").stat().st_size > 10_000


@pytest.mark.heavy
def test_mixed_effects_shrinkage(tmp_path, capsys):
    result = load_example("mixed_effects").main(groups=60, out=tmp_path)
    fit, sizes, ratio = result["fit"], result["sizes"], result["ratio"]
    assert fit.converged and (fit.random_status == 0).all()
    # Shrinkage: conditional modes lie nearer the population line than the groups' own
    # least-squares lines, and the smallest groups are pulled the most.
    assert np.median(ratio) < 1
    assert np.median(ratio[sizes <= 6]) < np.median(ratio[sizes >= 15])
    assert "Laplace" in capsys.readouterr().out
    assert (tmp_path / "mixed_effects.png").stat().st_size > 10_000
