"""The numerical vocabulary of model equations: numba/NumPy implementation.

A model module imports this namespace as ``from opt_protocols import ops`` and
writes its equations with it only (plus ``+ - * / **``, indexing and ``range``).
The same source then runs twice:

* compiled by numba (``nopython``), where these functions are
  ``register_jitable`` helpers over :mod:`math` and NumPy;
* traced by CasADi, where :mod:`opt_protocols.ops_casadi` takes this module's
  place (see :mod:`opt_protocols.backends.casadi`).

Both namespaces define exactly the same names; ``tests/test_ops.py`` checks it.
Functions whose argument may leave its domain during an optimiser's trial step
come in ``safe_`` versions that clamp the argument: use them for ``asin`` and
``sqrt`` of order-parameter expressions.
"""
from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

#: Margin kept from the edge of the domain of asin/sqrt in the ``safe_`` functions.
DOMAIN_EPS = 1e-12

pi = math.pi


@register_jitable
def zeros(n):
    """A length-``n`` vector of zeros whose entries can be assigned (``out[i] = ...``)."""
    return np.zeros(n)


@register_jitable
def matrix(n, m):
    """An ``n x m`` matrix of zeros whose entries can be assigned (``a[i, j] = ...``)."""
    return np.zeros((n, m))


@register_jitable
def sqrt(x):
    return math.sqrt(x)


@register_jitable
def exp(x):
    return math.exp(x)


@register_jitable
def log(x):
    return math.log(x)


@register_jitable
def log1p(x):
    return math.log1p(x)


@register_jitable
def expm1(x):
    return math.expm1(x)


@register_jitable
def asin(x):
    return math.asin(x)


@register_jitable
def acos(x):
    return math.acos(x)


@register_jitable
def atan(x):
    return math.atan(x)


@register_jitable
def sin(x):
    return math.sin(x)


@register_jitable
def cos(x):
    return math.cos(x)


@register_jitable
def tanh(x):
    return math.tanh(x)


@register_jitable
def erf(x):
    return math.erf(x)


@register_jitable
def fabs(x):
    return abs(x)


@register_jitable
def fmin(a, b):
    return a if a < b else b


@register_jitable
def fmax(a, b):
    return a if a > b else b


@register_jitable
def if_else(cond, a, b):
    """``a`` where ``cond`` holds, else ``b`` (both are evaluated, as in CasADi)."""
    return a if cond else b


@register_jitable
def clip(x, lo, hi):
    return fmin(fmax(x, lo), hi)


@register_jitable
def safe_asin(x):
    """asin with its argument clamped to [-1 + eps, 1 - eps]."""
    return math.asin(clip(x, -1.0 + DOMAIN_EPS, 1.0 - DOMAIN_EPS))


@register_jitable
def safe_acos(x):
    """acos with its argument clamped to [-1 + eps, 1 - eps]."""
    return math.acos(clip(x, -1.0 + DOMAIN_EPS, 1.0 - DOMAIN_EPS))


@register_jitable
def safe_sqrt(x):
    """sqrt of max(x, eps): never NaN, derivative bounded."""
    return math.sqrt(fmax(x, DOMAIN_EPS))


@register_jitable
def power(x, y):
    return x ** y
