"""Inference after a fit: tests, profile likelihood, bootstrap, diagnostics,
calibration by simulation, multistart."""
