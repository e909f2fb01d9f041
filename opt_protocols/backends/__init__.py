"""Numerical backends that run a model's one-source equations: numba and CasADi."""
