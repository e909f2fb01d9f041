"""Exact adjoint gradients of discrete-map models by reverse-mode source transformation.

:mod:`.normalise` rewrites a model's ``step``/``loss`` into a single-assignment language,
:mod:`.transform` derives their vector-Jacobian products, :mod:`.kernel` compiles them with the
forward/backward drivers, checks them against CasADi's reverse mode (falling back to it) and
evaluates objectives and gradients (:class:`~.kernel.MapAdjoint`). See docs/adjoint.md.
"""
from .kernel import CHECK_RTOL, STORE_ALL_BYTES, AdjointKernelWarning, Kernel, MapAdjoint, check_kernel, get_kernel
from .normalise import UnsupportedStep
from .transform import derive_vjp

__all__ = ["CHECK_RTOL", "STORE_ALL_BYTES", "AdjointKernelWarning", "Kernel", "MapAdjoint", "UnsupportedStep",
           "check_kernel", "derive_vjp", "get_kernel"]
