"""Test set-up: float64 and strict dtype promotion, shared data and model definitions.

Shapes are kept few (one n per model family, one batch size) so compiled fits are shared.
"""

import importlib.util
import pathlib
import sys

import jax

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


ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(name: str, folder: str = "examples"):
    """The module of ``<folder>/<name>.py`` (examples and benchmarks are scripts, not
    packages)."""
    sys.path.insert(0, str(EXAMPLES))  # for the examples' shared ``_plots``
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module
