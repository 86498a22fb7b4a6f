"""Survival data: censored and truncated likelihoods of the ready models."""
