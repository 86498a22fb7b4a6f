"""The size of the compiled batch programs, against checked-in bounds.

XLA's compile time grows with the program it compiles, and the first call of a fit pays it
(``benchmarks/first_call.py``). These bounds make growth of the Normal batch's programs
visible in CI: a change that adds kernels must raise them on purpose. A Normal batch runs
the reduced start and the certification (``batch/_reduced``); a model without a reduced
form runs the quick pass (measured here on the Normal model, whose derivative program is
small); the full solve serves any dataset these leave undecided. Measured with jax 0.10.2
(kernels, i.e. fusions, and HLO instructions): the full solve 222 and 6,055, the
certification 60 and 1,659, the reduced start 55 and 1,824, the quick pass 83 and 2,202.
"""

import jax
import numpy as np
import pytest

import jaxmle as jm
from jaxmle.batch import _batch
from jaxmle.core import _engine, _xla

# About 10% above the measured sizes: room for XLA's version-to-version noise, not for a
# new copy of a derivative pass (about 20 kernels and 600 instructions).
BOUNDS = {  # program: (kernels, HLO instructions)
    "solve": (245, 6_700),
    "certify": (66, 1_850),
    "reduced_starts": (61, 2_010),
    "quick": (92, 2_420),
}


def _compiled_program(name: str, batch=512, n=100) -> str:
    normal = jm.models.normal
    spec, init, data, weights, mask = _engine._prepare(
        normal.log_density, {"mu": 0.0, "sigma": 1.0}, np.ones((batch, n)), method="newton",
        constraints=normal.constraints, log_prior=None, cov="observed", weights=None,
        mask=None, max_iter=None, gtol=None, precision="float64", batched=True)
    starts = jax.tree_util.tree_map(lambda leaf: np.broadcast_to(leaf, (batch,)), init)
    found = np.full((batch, spec.space.n_free), np.nan)
    valid = np.ones(batch, bool)
    function, args = {
        "solve": (_batch._solve_batch, (starts, found, data, weights, mask, valid)),
        "certify": (_batch._certify_batch, (starts, found, data, weights, mask, valid)),
        "reduced_starts": (_batch._reduced_starts, (starts, data, weights, mask, valid)),
        "quick": (_batch._quick_batch, (starts, data, weights, mask, valid)),
    }[name]
    program = jax.jit(function, static_argnums=(0, 1), compiler_options=_xla.compiler_options())
    return program.trace(spec, _batch.layout(batch, 64, 1), *args).lower().compile().as_text()


@pytest.mark.parametrize("name", list(BOUNDS))
def test_normal_batch_programs_stay_within_their_bounds(name):
    text = _compiled_program(name)
    kernels = text.count(" fusion(")
    instructions = sum(" = " in line for line in text.splitlines())
    max_kernels, max_instructions = BOUNDS[name]
    assert kernels <= max_kernels, f"{name}: {kernels} kernels"
    assert instructions <= max_instructions, f"{name}: {instructions} HLO instructions"
