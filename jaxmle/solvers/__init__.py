"""The solvers: pure init/step pairs over NamedTuple state (Newton, BFGS, optax)."""
