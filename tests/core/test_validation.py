"""Bad input raises a clear error before tracing; numerical trouble becomes a status."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmle as jm
from models import CASES, simulate

NORMAL = CASES["normal"]
X = simulate("normal", seed=4)


def _fit(**overrides):
    args = dict(log_density=NORMAL.log_density, init=NORMAL.init, data=X,
                constraints=NORMAL.constraints)
    args.update(overrides)
    return jm.fit(args.pop("log_density"), args.pop("init"), args.pop("data"), **args)


@pytest.mark.parametrize("overrides, error, message", [
    ({"method": "nelder-mead"}, ValueError, r"unknown method 'nelder-mead'.*newton"),
    ({"cov": "hc3"}, ValueError, r"unknown cov 'hc3'.*observed"),
    ({"constraints": {"sigma": "postive"}}, ValueError, r"unknown constraint 'postive'"),
    ({"constraints": {"sd": jm.positive}}, ValueError, r"\['sd'\] that are not in init"),
    ({"init": {"mu": 0.0, "sigma": -1.0}}, ValueError, r"init\[sigma\].*outside the support"),
    ({"init": {"mu": np.nan, "sigma": 1.0}}, ValueError, r"init\[mu\].*finite"),
    ({"log_density": lambda p, x: jnp.stack([x, x])}, ValueError, r"got shape \(2, 200\)"),
    ({"log_density": lambda p, x: (x > 0).sum()}, TypeError, r"floating values"),
    ({"log_density": lambda p, x: (p["mu"], p["sigma"])}, TypeError, r"one array"),
    ({"log_density": lambda p, x: np.log(p["sigma"]) * x}, TypeError, r"traceable"),
    ({"log_density": lambda p, x: jnp.sum(NORMAL.log_density(p, x)), "weights": np.ones(200)},
     ValueError, r"weights needs the per-observation form"),
    ({"log_density": lambda p, x: jnp.sum(NORMAL.log_density(p, x)), "cov": "robust"},
     ValueError, r"per-observation scores"),
    ({"weights": np.ones(5)}, ValueError, r"weights must have shape \(200,\)"),
    ({"weights": -np.ones(200)}, ValueError, r"finite and >= 0"),
    ({"data": np.where(np.arange(200) == 3, np.nan, X)}, ValueError, r"data contains NaN"),
    ({"log_prior": lambda p: jnp.ones(2)}, ValueError, r"log_prior\(params\) must return a floating scalar"),
    ({"precision": "float16"}, ValueError, r"precision must be one of"),
    ({"data": X + 0j}, TypeError, r"real numeric arrays, got dtype complex128"),
    ({"init": {"probs": np.array([0.5, 0.6])}, "constraints": {"probs": jm.simplex},
      "log_density": lambda p, x: x * jnp.log(p["probs"][0])}, ValueError, r"sum to 1"),
])
def test_structural_mistakes_raise_clear_errors(overrides, error, message):
    with pytest.raises(error, match=message):
        _fit(**overrides)


def test_batch_specific_mistakes():
    Xb = simulate("normal", batch=4, seed=4)
    with pytest.raises(ValueError, match=r"mask must have shape \(4, 200\)"):
        jm.fit_batch(NORMAL.log_density, NORMAL.init, Xb, mask=np.ones((4, 3), bool),
                     constraints=NORMAL.constraints)
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        jm.fit_batch(NORMAL.log_density, NORMAL.init, Xb, mask=np.ones((4, 200)),
                     constraints=NORMAL.constraints)
    with pytest.raises(ValueError, match="same leading batch axis"):
        jm.fit_batch(lambda p, d: NORMAL.log_density(p, d[0]), NORMAL.init, (Xb, Xb[:3]),
                     constraints=NORMAL.constraints)
    with pytest.raises(ValueError, match="mask needs the per-observation form"):
        jm.fit_batch(lambda p, x: jnp.sum(NORMAL.log_density(p, x)), NORMAL.init, Xb,
                     mask=np.ones((4, 200), bool), constraints=NORMAL.constraints)
