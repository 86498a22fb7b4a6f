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
programs. If this XLA does not know the option, compilation proceeds with the defaults.

Quick compilation (``quick=True``, for fits of one small dataset, where compiling is most of
the time): XLA's older CPU code emitters (``xla_cpu_use_fusion_emitters=False``) compile a
Newton fit in about half the time (Normal, 1,000 observations: backend compile 1.06-1.14 ->
0.51-0.58 s, whole first call 1.5-1.6 -> 0.9-1.1 s) and run such a fit as fast (1,000 and
100,000 observations, ``norm.logpdf`` and a hand-written density: within 0.6 ms / 1 ms). In
batches the derivative passes of some densities run slower with them (hand-written Normal,
256 x 1,000: 0.71 -> 0.99 ms; 2,000 Normal datasets: 0.086-0.090 -> 0.108-0.141 s), so
batches keep the default emitters. Measured on the project's 2-core CPU.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
QUICK_CPU_OPTIONS = {**CPU_OPTIONS, "xla_cpu_use_fusion_emitters": False}
# A single dataset below this many bytes is fitted in milliseconds once compiled: a first
# call is then mostly compilation, and the quick options pay.
QUICK_COMPILE_BYTES = 8 * 2**20


def quick_for(tree) -> bool:
    """Whether a compiled fit of the arrays in ``tree`` should use the quick options."""
    return sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves(tree)) < QUICK_COMPILE_BYTES


@functools.cache
def compiler_options(quick: bool = False) -> dict | None:
    """The options for jaxmle's ``jax.jit`` calls on the default backend (None: defaults)."""
    if jax.default_backend() != "cpu":
        return None
    options = QUICK_CPU_OPTIONS if quick else CPU_OPTIONS
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(1.0).compile()
    except (jax.errors.JaxRuntimeError, ValueError):  # an XLA without the options
        return compiler_options() if quick else None
    return options


def jit(function, *, quick: bool = False, **options):
    """``jax.jit(function, **options)`` with jaxmle's compiler options, built on first use.

    ``quick``: compile with the quick options (see the module notes). The backend is only
    queried when the returned function is first called, so importing jaxmle initialises no
    device.
    """
    @functools.cache
    def compiled():
        return jax.jit(function, compiler_options=compiler_options(quick), **options)

    @functools.wraps(function)
    def call(*args):
        return compiled()(*args)

    return call
