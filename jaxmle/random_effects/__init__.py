"""Random effects: per-group inner Newton and the Laplace-marginal likelihood."""
