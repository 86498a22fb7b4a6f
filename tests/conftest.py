"""Test set-up: float64 and strict dtype promotion, shared data and model definitions.

Shapes are kept few (one n per model family, one batch size) so compiled fits are shared.
"""

import gc
import importlib.util
import os
import pathlib
import sys

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Agreement with closed forms: the stopping rule (relative gradient <= 1e-10) leaves
# estimates within ~1e-9 relative; 1e-8 is the contract's target.
ESTIMATE_RTOL = 1e-8
# Standard errors come from the exact Hessian at the estimate; an estimate off by 1e-9
# moves them by about as much, far inside 1e-6.
SE_RTOL = 1e-6
# optax gradient methods converge linearly; they are run with OPTAX_GTOL and checked to
# OPTAX_RTOL (stated looser tolerance of the contract).
OPTAX_GTOL = 1e-8
OPTAX_RTOL = 1e-6


# XLA's CPU backend maps memory for every compiled program, and the suite compiles
# thousands: measured, 2,000-15,000 maps per test module, 32,000 after the first five.
# Past the kernel's vm.max_map_count (65,530 by default) LLVM "cannot allocate memory" and
# XLA crashes the process (a segfault in CI, 72% through the suite). Dropping JAX's
# compiled programs between test modules once MAP_BUDGET maps are used (back to ~7,000
# when measured) keeps the sharing of compiled fits within and across modules, and the
# suite far below the limit.
MAP_BUDGET = 30_000


def _memory_maps() -> int:
    try:
        with open(f"/proc/{os.getpid()}/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit to watch
        return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    if _memory_maps() > MAP_BUDGET:
        jax.clear_caches()
        gc.collect()


ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(name: str, folder: str = "examples"):
    """The module of ``<folder>/<name>.py`` (examples and benchmarks are scripts, not
    packages)."""
    sys.path.insert(0, str(EXAMPLES))  # for the examples' shared ``_plots``
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@pytest.fixture
def newton_path_only(monkeypatch):
    """Newton's own path: no second fit after a failure (``core/_retry``), so that a test
    of one of Newton's rules fails when the rule does."""
    from jaxmle.core import _retry
    monkeypatch.setattr(_retry, "applies", lambda spec: False)


@pytest.fixture
def full_solve_only(monkeypatch):
    """Batches without a reduced form go straight to the full solve (no quick pass,
    ``batch/_reduced``): a test of the full solve's path (its compaction, its Newton)."""
    from jaxmle.batch import _reduced
    monkeypatch.setattr(_reduced, "quick_applies", lambda spec: False)


@pytest.fixture
def full_solves(monkeypatch):
    """The batches' full solves dispatched: one entry per solve, the ``valid`` rows it was
    given (``batch/_reduced``)."""
    from jaxmle.batch import _batch
    rows = []
    solve = _batch.solve

    def counted(spec, lay, starts, found, data, weights, mask, valid):
        rows.append(np.asarray(valid))
        return solve(spec, lay, starts, found, data, weights, mask, valid)

    monkeypatch.setattr(_batch, "solve", counted)
    return rows


@pytest.fixture
def compiles_logged():
    """JAX logs each compilation (``Compiling jit(...)``, level WARNING) while the test runs."""
    jax.config.update("jax_log_compiles", True)
    yield
    jax.config.update("jax_log_compiles", False)
