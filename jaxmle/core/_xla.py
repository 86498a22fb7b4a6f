"""How jaxmle compiles its fits: XLA CPU options, tracing without garbage collection.

On CPU, XLA 0.10 hands reductions to YNNPACK library calls by default. A reduction done
that way cannot fuse the elementwise work that feeds it, so every input of every sum in a
derivative pass is first written to memory: for some ways of writing a density (a
hand-written Normal) a derivative pass ran several times slower. jaxmle keeps YNNPACK for
dot products only, and uses XLA's older CPU code emitters, which compile a fit in about
half the time for a few percent of steady speed (``docs/design.md`` has the
measurements). Both are per-compilation options that never touch the user's own JAX
programs; an XLA that does not know them compiles with its defaults.

LLVM optimises jaxmle's programs at level 1 of 3 (``xla_backend_optimization_level``):
the level-3 passes took 13-20% of a batch fit's compilation and bought no steady speed
(the derivative passes are simple loops, vectorised at level 1 too). A small program (its
array arguments hold at most ``SMALL_ELEMENTS`` numbers: one fit of a few thousand
observations, a command-line table) compiles unoptimised (level 0): its run takes a
millisecond either way, and about a third of its compilation goes. Larger programs do not:
there the unoptimised loops run several times slower. ``docs/design.md`` has the
measurements.

Python's garbage collector pauses while JAX traces a fit: tracing allocates many
short-lived objects, and the collections they trigger took about a third of the tracing.
"""

from __future__ import annotations

import contextlib
import functools
import gc

import jax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
               "xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}


# Programs whose array arguments hold at most this many numbers compile unoptimised.
SMALL_ELEMENTS = 2 ** 14
SMALL_OPTIONS = {"xla_backend_optimization_level": 0}

# False once this XLA has rejected CPU_OPTIONS (an older jaxlib): then the defaults.
_options_accepted = True


def compiler_options(small: bool = False) -> dict | None:
    """The options for jaxmle's ``jax.jit`` calls on the default backend (None: defaults);
    ``small``: a program with at most ``SMALL_ELEMENTS`` numbers in its arguments."""
    if jax.default_backend() != "cpu" or not _options_accepted:
        return None
    return {**CPU_OPTIONS, **SMALL_OPTIONS} if small else CPU_OPTIONS


def _small(args) -> bool:
    """Whether the arrays among ``args`` hold at most ``SMALL_ELEMENTS`` numbers."""
    numbers = sum(getattr(leaf, "size", 1) for leaf in jax.tree_util.tree_leaves(args))
    return numbers <= SMALL_ELEMENTS


def _unknown_options(error: Exception) -> bool:
    """Whether ``error`` is XLA rejecting CPU_OPTIONS; then later programs go without."""
    global _options_accepted
    if _options_accepted and "compile option" in str(error):
        _options_accepted = False
        return True
    return False


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while JAX traces (module notes)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def jit(function, **options):
    """``jax.jit(function, **options)`` with jaxmle's compiler options, built on first use.

    The backend is only queried when the returned function is first called, so importing
    jaxmle initialises no device.
    """
    static = options.get("static_argnums", ())
    static = {static} if isinstance(static, int) else set(static)

    @functools.cache
    def compiled(with_options: bool, small: bool):
        return jax.jit(function, **options,
                       compiler_options=compiler_options(small) if with_options else None)

    @functools.wraps(function)
    def call(*args):
        small = _small([arg for i, arg in enumerate(args) if i not in static])
        with _collector_paused():
            try:
                return compiled(_options_accepted, small)(*args)
            except jax.errors.JaxRuntimeError as error:
                if not _unknown_options(error):
                    raise
                return compiled(False, small)(*args)

    def compile_ahead(*args):
        """Compiles for ``args`` (arrays or ``jax.ShapeDtypeStruct``) without running:
        a later call with such arguments finds its program compiled."""
        small = _small([arg for i, arg in enumerate(args) if i not in static])
        try:
            compiled(_options_accepted, small).trace(*args).lower().compile()
        except jax.errors.JaxRuntimeError as error:
            if not _unknown_options(error):
                raise
            compiled(False, small).trace(*args).lower().compile()

    call.compile_ahead = compile_ahead
    return call
