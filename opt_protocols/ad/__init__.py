"""Exact adjoint gradients of discrete-map models by reverse-mode source transformation.

:mod:`.transform` derives the vector-Jacobian products of a model's ``step`` and ``loss`` from
their source; :mod:`.kernel` compiles them with forward/backward drivers and evaluates objectives
and gradients (:class:`~.kernel.MapAdjoint`).
"""
from .kernel import STORE_ALL_BYTES, Kernel, MapAdjoint, check_kernel, get_kernel
from .transform import UnsupportedStep, derive_vjp

__all__ = ["STORE_ALL_BYTES", "Kernel", "MapAdjoint", "UnsupportedStep", "check_kernel", "derive_vjp", "get_kernel"]
