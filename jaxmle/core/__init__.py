"""The core: the model value, the objective on a flat vector, parameters and constraints,
the loop driver, one dataset's solve, the observed information, fit and fit_batch."""
