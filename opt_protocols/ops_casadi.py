"""The numerical vocabulary of model equations: CasADi implementation.

Same names and meaning as :mod:`opt_protocols.ops`; used when a model's
equations are traced into CasADi SX expressions for optimal control.
"""
from __future__ import annotations

import math

import casadi as ca

from .ops import DOMAIN_EPS

pi = math.pi


def zeros(n):
    return ca.SX.zeros(int(n), 1)


def matrix(n, m):
    return ca.SX.zeros(int(n), int(m))


sqrt = ca.sqrt
exp = ca.exp
log = ca.log
log1p = ca.log1p
expm1 = ca.expm1
asin = ca.asin
acos = ca.acos
atan = ca.atan
sin = ca.sin
cos = ca.cos
tanh = ca.tanh
erf = ca.erf
fabs = ca.fabs
fmin = ca.fmin
fmax = ca.fmax


def if_else(cond, a, b):
    return ca.if_else(cond, a, b)


def clip(x, lo, hi):
    return ca.fmin(ca.fmax(x, lo), hi)


def safe_asin(x):
    return ca.asin(clip(x, -1.0 + DOMAIN_EPS, 1.0 - DOMAIN_EPS))


def safe_acos(x):
    return ca.acos(clip(x, -1.0 + DOMAIN_EPS, 1.0 - DOMAIN_EPS))


def safe_sqrt(x):
    return ca.sqrt(ca.fmax(x, DOMAIN_EPS))


def power(x, y):
    return x ** y
