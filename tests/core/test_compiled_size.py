"""The size of the compiled batch program, against checked-in bounds.

XLA's compile time grows with the program it compiles, and the first call of a fit pays it
(``benchmarks/first_call.py``). These bounds make growth of the Normal batch program visible
in CI: a change that adds kernels must raise them on purpose. Measured with jax 0.10.2: 233
kernels (fusions) and 6,120-6,150 HLO instructions in ``_batch.solve``'s program.
"""

import jax
import numpy as np

import jaxmle as jm
from jaxmle.batch import _batch
from jaxmle.core import _engine, _xla

# About 10% above the measured size: room for XLA's version-to-version noise, not for a
# new copy of a derivative pass (about 20 kernels and 600 instructions).
MAX_KERNELS = 255
MAX_INSTRUCTIONS = 6_700


def _compiled_program(batch=512, n=100) -> str:
    normal = jm.models.normal
    spec, init, data, weights, mask = _engine._prepare(
        normal.log_density, {"mu": 0.0, "sigma": 1.0}, np.ones((batch, n)), method="newton",
        constraints=normal.constraints, log_prior=None, cov="observed", weights=None,
        mask=None, max_iter=None, gtol=None, precision="float64", batched=True)
    starts = jax.tree_util.tree_map(lambda leaf: np.broadcast_to(leaf, (batch,)), init)
    program = jax.jit(_batch._solve_batch, static_argnums=(0, 1),
                      compiler_options=_xla.compiler_options())
    found = np.full((batch, spec.space.n_free), np.nan)
    return program.trace(spec, _batch.layout(batch, 64, 1), starts, found, data, weights, mask,
                         np.ones(batch, bool)).lower().compile().as_text()


def test_normal_batch_program_stays_within_its_bounds():
    text = _compiled_program()
    kernels = text.count(" fusion(")
    instructions = sum(" = " in line for line in text.splitlines())
    assert kernels <= MAX_KERNELS, f"{kernels} kernels"
    assert instructions <= MAX_INSTRUCTIONS, f"{instructions} HLO instructions"
