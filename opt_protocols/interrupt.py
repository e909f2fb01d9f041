"""Ctrl-C that stops the work, also inside CasADi solvers.

CasADi checks for a pending Python signal while IPOPT runs (``PyErr_CheckSignals`` in its
callbacks), turns the ``KeyboardInterrupt`` into a C++ exception, stops IPOPT with
``NonIpopt_Exception_Thrown`` and clears the Python exception: the interrupt is swallowed, and a
caller that only looks at the return status would take it for a failed attempt and carry on.

:func:`guard` installs (in the main thread) a SIGINT handler that records the interrupt before
raising ``KeyboardInterrupt`` as usual; :func:`check` re-raises it after any call that may have
swallowed it. The solve pipeline runs every method inside :func:`guard` and the methods call
:func:`check` after each solver call, so one Ctrl-C stops a solve within a solver iteration and
nothing is labelled as failed or optimal.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = {"depth": 0, "hit": False}


def _handler(signum, frame):
    _state["hit"] = True
    raise KeyboardInterrupt


@contextmanager
def guard() -> Iterator[None]:
    """Record every Ctrl-C while the block runs (nested use is allowed); see the module docstring."""
    main = threading.current_thread() is threading.main_thread()
    installed = False
    old = None
    if main and _state["depth"] == 0:
        current = signal.getsignal(signal.SIGINT)
        if current is signal.default_int_handler:   # leave custom and ignored handlers alone
            old = signal.signal(signal.SIGINT, _handler)
            installed = True
        _state["hit"] = False
    _state["depth"] += 1
    try:
        yield
        check()
    finally:
        _state["depth"] -= 1
        if installed:
            signal.signal(signal.SIGINT, old)
        if _state["depth"] == 0:
            _state["hit"] = False


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C arrived inside :func:`guard` (even if it was swallowed)."""
    if _state["hit"]:
        raise KeyboardInterrupt


def interrupted() -> bool:
    return bool(_state["hit"])


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised because of, a KeyboardInterrupt (numba turns a Ctrl-C that
    arrives inside one of its Python callbacks into a SystemError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
