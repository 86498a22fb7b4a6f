"""How jaxmle compiles its fits: XLA CPU options, and stages compiled side by side.

On CPU, XLA 0.10 hands reductions to YNNPACK library calls by default. A reduction done
that way cannot fuse the elementwise work that feeds it, so every input of every sum in a
derivative pass is first written to memory: for some ways of writing a density (a
hand-written Normal) a derivative pass ran several times slower. jaxmle keeps YNNPACK for
dot products only, and uses XLA's older CPU code emitters, which compile a fit in about
half the time for a few percent of steady speed (``benchmarks/RESULTS.md`` has the
measurements). Both are per-compilation options that never touch the user's own JAX
programs; an XLA that does not know them compiles with its defaults.

XLA compiles one program on one core, in a time that grows with the program. A batched
fit is therefore split into stages (start, iterations, certification: ``Pipeline``) whose
programs compile side by side on worker threads, and Python's garbage collector pauses
while JAX traces (tracing allocates many short-lived objects).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import gc
import os
import weakref
from collections.abc import Callable

import jax
import numpy as np

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
               "xla_cpu_use_fusion_emitters": False}


# False once this XLA has rejected CPU_OPTIONS (an older jaxlib): then the defaults.
_options_accepted = True


def compiler_options() -> dict | None:
    """The options for jaxmle's ``jax.jit`` calls on the default backend (None: defaults)."""
    if jax.default_backend() != "cpu" or not _options_accepted:
        return None
    return CPU_OPTIONS


def _unknown_options(error: Exception) -> bool:
    """Whether ``error`` is XLA rejecting CPU_OPTIONS; then later programs go without."""
    global _options_accepted
    if _options_accepted and "compile option" in str(error):
        _options_accepted = False
        return True
    return False


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while JAX traces: tracing allocates many
    short-lived objects, and the collections they trigger took about a third of the
    tracing time of a fit."""
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
    @functools.cache
    def compiled(with_options: bool):
        return jax.jit(function, compiler_options=compiler_options() if with_options else None,
                       **options)

    @functools.wraps(function)
    def call(*args):
        with _collector_paused():
            try:
                return compiled(_options_accepted)(*args)
            except jax.errors.JaxRuntimeError as error:
                if not _unknown_options(error):
                    raise
                return compiled(False)(*args)

    return call


# XLA compiles on the calling thread and releases Python's lock meanwhile, so programs
# lowered one after another compile side by side on these workers.
_COMPILERS = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                                   thread_name_prefix="jaxmle-compile")


def _signature(tree) -> tuple:
    """What a compiled program is specialised on in dynamic arguments: their tree
    structure and each leaf's shape, dtype and weak type (a Python scalar)."""
    leaves, structure = jax.tree_util.tree_flatten(tree)
    return structure, tuple((np.shape(leaf), np.result_type(leaf).str,
                             isinstance(leaf, (bool, int, float, complex))) for leaf in leaves)


_PIPELINES: weakref.WeakSet = weakref.WeakSet()


def clear_compiled() -> None:
    """Releases every compiled fit program (as ``jax.clear_caches`` does for ``jax.jit``)."""
    for pipeline in _PIPELINES:
        pipeline._compiled.clear()


class Pipeline:
    """Traceable stages run one after another as separately compiled programs.

    Called as ``pipeline(*static, carried, *shared)``: stage 0 gets ``(*static, carried,
    *shared)`` and each later stage ``(*static, previous stage's output, *shared)``; the
    last stage's output is returned. ``static`` arguments are hashable and key the
    compiled programs together with the shapes of the others. ``shared`` arguments are
    placed on the devices once and read by every stage.

    Why stages: XLA compiles one program on one core, and its compile time grows with the
    program. The first call traces the stages one after another (the output of one is the
    input of the next, so only its shapes are needed) and compiles each on a worker thread
    while the next is traced: on a multi-core CPU the stages compile side by side.
    """

    # Compiled programs kept per pipeline: the most recently used shapes and options.
    KEEP = 32

    def __init__(self, *stages: Callable, static: int):
        self._stages = stages
        self._static = static
        self._compiled: collections.OrderedDict = collections.OrderedDict()
        _PIPELINES.add(self)

    def lowered(self, *args):
        """Yields each stage's ``jax.stages.Lowered`` for ``pipeline(*args)``, one after
        another (a stage's inputs are the shapes of the previous stage's outputs)."""
        static, carried, shared = self._split(args)
        options = compiler_options()
        with _collector_paused():
            for stage in self._stages:
                jitted = jax.jit(stage, static_argnums=tuple(range(self._static)),
                                 compiler_options=options)
                traced = jitted.trace(*static, carried, *shared)
                yield traced.lower()
                carried = traced.out_info

    def _compile(self, args: tuple) -> list:
        # Each stage compiles on a worker while the next one is traced.
        futures = [_COMPILERS.submit(lowered.compile) for lowered in self.lowered(*args)]
        try:
            return [future.result() for future in futures]
        except jax.errors.JaxRuntimeError as error:
            if not _unknown_options(error):
                raise
            return self._compile(args)

    def _split(self, args: tuple):
        return args[:self._static], args[self._static], args[self._static + 1:]

    def __call__(self, *args):
        static, carried, shared = self._split(args)
        if jax.config.jax_disable_jit:  # run op by op, as jax.jit would
            for stage in self._stages:
                carried = stage(*static, carried, *shared)
            return carried
        key = (static, _signature(carried), _signature(shared))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(args)
            while len(self._compiled) > self.KEEP:
                self._compiled.popitem(last=False)
        self._compiled.move_to_end(key)
        placements = compiled[0].input_shardings[0][1:]
        shared = tuple(jax.device_put(arg, placement) for arg, placement in zip(shared, placements))
        for stage in compiled:
            carried = stage(carried, *shared)
        return carried
