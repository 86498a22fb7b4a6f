"""benchmarks/closed_forms.py in a quick mode: every method and every table, so it cannot rot."""

import math

import numpy as np
import pytest

from conftest import ESTIMATE_RTOL, OPTAX_RTOL, load_example

DATASETS, OBS, SIZES = 300, 100, (30, 300, 3_000)


@pytest.mark.heavy
def test_quick_closed_form_benchmark(tmp_path, capsys):
    bench = load_example("closed_forms", folder="benchmarks")
    result = bench.main(DATASETS, OBS, models=["normal"], sizes=SIZES,
                        shrinkage_datasets=DATASETS, plot_dir=tmp_path)
    out = capsys.readouterr().out
    assert "## Cramer-Rao" in out and "## 1/sqrt(n)" in out

    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == set(bench.METHODS)
    for name, row in rows.items():
        assert row["converged"] == 1.0, name
        tolerance = OPTAX_RTOL if name.startswith("adam") else ESTIMATE_RTOL
        assert row["max_err"] < tolerance and row["max_se_err"] < max(tolerance, 1e-6), row

    for row in result["cramer_rao"]:
        # Four Monte-Carlo standard errors: a correct SE fails this with probability ~1e-4.
        assert abs(row["ratio"] - 1.0) < 4 * row["ratio_mc"], row
        assert abs(row["coverage"] - 0.95) < 4 * row["coverage_mc"], row

    # RMSE from 300 datasets has ~4% Monte-Carlo error per n; over two decades of n the
    # slope is then known to about +-0.02.
    slopes = result["shrinkage"]["normal"]["slopes"]
    np.testing.assert_allclose(slopes, -0.5, atol=0.08)
    assert (tmp_path / "shrinkage.png").stat().st_size > 10_000
    assert math.isfinite(rows["newton"]["steady"])
