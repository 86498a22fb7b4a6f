"""XLA compiler options for jaxmle's compiled fits (CPU only).

On CPU, XLA 0.10 hands reductions to YNNPACK library calls by default. A reduction done
that way cannot fuse the elementwise work that feeds it, so every input of every sum in a
derivative pass is first written to memory. For some ways of writing a density this is a
cliff: one vmapped (loss, gradient, Hessian) pass over 256 datasets x 1,000 observations
of the hand-written Normal ``-0.5 * ((x - mu) / sigma)**2 - log(sigma)`` took 28.9 ms with
the default and 4.0 ms with YNNPACK kept for dot products only; a Gamma density went from
10.0 to 5.9 ms, while ``jax.scipy.stats.norm.logpdf`` went from 2.6 to 3.7 ms (measured on
the project's 2-core CPU; ``benchmarks/RESULTS.md``). jaxmle therefore keeps YNNPACK for
dot products only, through a per-compilation option that never touches the user's own JAX
programs. If this XLA does not know the options, compilation proceeds with the defaults.

XLA's older CPU code emitters (``xla_cpu_use_fusion_emitters=False``) compile a fit in
half to two thirds of the time, for a few percent of steady speed. Backend compile of the
batched workloads (10,000 x 1,000 Normal and Gamma, 1,000 x 1,000 logistic regression,
2,000 x 1,000 Normal): 4.3-5.1 -> 2.9-3.0 s, 5.8-5.9 -> 4.3-4.5 s, 2.1-2.2 -> 1.2-1.5 s,
2.0-2.6 -> 1.4-1.7 s; one Normal fit of 1,000 observations 1.06-1.14 -> 0.51-0.58 s.
Steady time, both programs in one process, alternating calls, medians of two runs (5-7
calls each) for those batches, a hand-written Normal, a Gamma batch of 2,000 x 1,000 and a
Weibull batch: from 1-4% faster to 15% slower, 5% slower on average; single Normal
(10^7) and Gamma (10^6) fits within 3%. Measured on the project's 2-core CPU, 2026-12-01
(``benchmarks/RESULTS.md``). Without the YNNPACK option the same batches ran up to 3x
slower (2,000 hand-written Normal datasets 0.08 -> 0.27-0.41 s), with either emitters.
"""

from __future__ import annotations

import functools

import jax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
               "xla_cpu_use_fusion_emitters": False}


@functools.cache
def compiler_options() -> dict | None:
    """The options for jaxmle's ``jax.jit`` calls on the default backend (None: defaults)."""
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(1.0).compile()
    except (jax.errors.JaxRuntimeError, ValueError):  # an XLA without the options
        return None
    return CPU_OPTIONS


def jit(function, **options):
    """``jax.jit(function, **options)`` with jaxmle's compiler options, built on first use.

    The backend is only queried when the returned function is first called, so importing
    jaxmle initialises no device.
    """
    @functools.cache
    def compiled():
        return jax.jit(function, compiler_options=compiler_options(), **options)

    @functools.wraps(function)
    def call(*args):
        return compiled()(*args)

    return call
