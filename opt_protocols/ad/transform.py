"""Reverse-mode source transformation of a model's ``step`` and ``loss`` (one source of the equations).

The function is first rewritten into a single-assignment language (:mod:`.normalise`: helpers
inlined, tuple unpacking, re-assignments, aliases, conditional expressions); its AST is then
differentiated statement by statement. Loops are kept as loops (reversed, with the loop body's
local values recomputed in each reversed iteration; accumulations ``v = v + e`` are transposed
without a tape; a value set in a loop and read after it hands its adjoint to the last reversed
iteration), and the generated Python is compiled by numba like the model itself
(:mod:`opt_protocols.ad.kernel`). The accepted language: docs/adjoint.md, section 2.
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .normalise import EXIT, PASSIVE_CALLS, UnsupportedStep, _accumulation_of, _is_array_call, located, normalise

#: d f(a)/da for the unary functions of the ``ops`` vocabulary (a: source of the argument).
_UNARY_DERIV = {
    "sqrt": lambda a: f"0.5 / ops.sqrt({a})",
    "exp": lambda a: f"ops.exp({a})",
    "log": lambda a: f"1.0 / ({a})",
    "log1p": lambda a: f"1.0 / (1.0 + ({a}))",
    "expm1": lambda a: f"ops.exp({a})",
    "asin": lambda a: f"1.0 / ops.sqrt(1.0 - ({a}) * ({a}))",
    "acos": lambda a: f"-1.0 / ops.sqrt(1.0 - ({a}) * ({a}))",
    "atan": lambda a: f"1.0 / (1.0 + ({a}) * ({a}))",
    "sin": lambda a: f"ops.cos({a})",
    "cos": lambda a: f"-ops.sin({a})",
    "tanh": lambda a: f"(1.0 - ops.tanh({a}) * ops.tanh({a}))",
    "erf": lambda a: f"(1.1283791670955126 * ops.exp(-({a}) * ({a})))",
    "fabs": lambda a: f"(1.0 if ({a}) > 0.0 else (-1.0 if ({a}) < 0.0 else 0.0))",
}


def _src(node: ast.AST) -> str:
    return ast.unparse(node)


def _is_simple(expr: str) -> bool:
    return expr.replace("_", "a").isalnum() or _is_number(expr)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


@dataclass
class _Scope:
    defined: set = field(default_factory=set)
    parent: _Scope | None = None
    loop: ast.For | None = None

    def owner(self, name):
        s = self
        while s is not None:
            if name in s.defined:
                return s
            s = s.parent
        return None

    def inside(self, other: _Scope) -> bool:
        s = self
        while s is not None:
            if s is other:
                return True
            s = s.parent
        return False


class _Transformer:
    """Reverse mode for the single-assignment language produced by :func:`.normalise.normalise`.

    Statements: scalar assignments (each name assigned once per scope; the branches of an ``if``
    may both assign it), accumulations ``v = v + e`` / ``v = v - e`` into a value of an enclosing
    scope (v not read elsewhere in the accumulating loop), exit copies of values set in a loop,
    ``for i in range(a[, b])`` loops, ``if`` statements (the condition is re-evaluated, not
    differentiated), element writes ``out[i] = e`` and ``out[i] += e`` into one output array
    created with ``ops.zeros``/``ops.matrix`` and returned, or a returned scalar expression.
    Expressions: + - * / **, unary -, the ``ops`` functions, indexing of the inputs, passive
    calls (``range``, ``len``, ...). Everything else raises :class:`UnsupportedStep`.
    """

    def __init__(self, fn: Callable, active_args: Sequence[int], eps: float):
        low = normalise(fn, eps)
        self.fn = fn
        self.modules = low.modules
        self.args = low.args
        self.active_arrays = {self.args[i] for i in active_args}
        self.body = low.body
        self.out_array: str | None = None
        self.ret_expr: ast.AST | None = None
        self.arrays: set[str] = set()
        self.finalised: set[str] = set()
        self.scope_of: dict[int, _Scope] = {}
        self.acc_of_loop: dict[int, set] = {}
        self.top = _Scope()
        self._check_block(self.body, self.top, [])
        ret = low.ret
        if isinstance(ret, ast.Name) and ret.id in self.arrays:
            self.out_array = ret.id
        else:
            self.ret_expr = ret
            self._check_reads(ret, self.top, [])
        self.active: set[str] = set()
        self._activity()
        self.tmp = 0

    # ---- checks ------------------------------------------------------------------------------
    @staticmethod
    def _accumulation(s) -> tuple[str, ast.AST, int] | None:
        """(v, e, sign) if ``s`` is ``v = v + e`` or ``v = v - e`` with e free of v."""
        if getattr(s, EXIT, None) is not None or _accumulation_of(s) is None:
            return None
        e = s.value
        return s.targets[0].id, e.right, (1 if isinstance(e.op, ast.Add) else -1)

    def _names_read(self, node):
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}

    def _check_reads(self, node, scope, loops):
        for n in ast.walk(node):
            if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id in self.arrays:
                raise UnsupportedStep(f"reading an array made by ops.zeros/ops.matrix: {_src(n)!r} (only the inputs "
                                      "can be read; the output array is written)")
            if isinstance(n, ast.Call):
                f = n.func
                ok = (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "ops"
                      and (f.attr in _UNARY_DERIV or f.attr in ("fmin", "fmax", "if_else", "zeros", "matrix")))
                ok = ok or (isinstance(f, ast.Name) and f.id in PASSIVE_CALLS)
                if not ok:
                    raise UnsupportedStep(f"call {_src(n)!r}: only ops functions can be differentiated")
        for name in self._names_read(node):
            for loop in loops:
                if name in self.acc_of_loop[id(loop)]:
                    raise UnsupportedStep(f"{name!r} is read inside the loop that accumulates it (a value carried "
                                          "from one iteration to the next)")

    def _collect_acc(self, loop: ast.For, scope: _Scope) -> set:
        """Names accumulated in ``loop`` (recursively) that are defined outside it."""
        acc = set()
        local = set()
        for s in ast.walk(loop):
            if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name):
                a = self._accumulation(s)
                if a is None:
                    local.add(s.targets[0].id)
        for s in ast.walk(loop):
            a = self._accumulation(s) if isinstance(s, ast.Assign) else None
            if a is not None and a[0] not in local:
                acc.add(a[0])
        return acc

    def _check_block(self, stmts, scope: _Scope, loops: list):
        for s in stmts:
            try:
                self._check_stmt(s, scope, loops)
            except UnsupportedStep as exc:
                raise located(exc, s) from None

    def _check_stmt(self, s, scope: _Scope, loops: list):
        if isinstance(s, ast.Assign):
            tgt = s.targets[0]
            acc = self._accumulation(s)
            self._check_reads(s.value if acc is None else acc[1], scope, loops)
            if isinstance(tgt, ast.Name):
                if acc is not None:
                    if scope.owner(acc[0]) is None:
                        raise UnsupportedStep(f"{acc[0]!r} accumulated before it is defined")
                    if acc[0] in self.finalised:
                        raise UnsupportedStep(f"{acc[0]!r} is updated after it was read")
                else:
                    if scope.owner(tgt.id) is not None or tgt.id in self.args:
                        raise UnsupportedStep(f"{tgt.id!r} is assigned twice (not of the form v = v + e)")
                    scope.defined.add(tgt.id)
                    if _is_array_call(s.value):
                        self.arrays.add(tgt.id)
                for name in self._names_read(s.value):
                    if acc is None or name != acc[0]:
                        self.finalised.add(name)
            elif isinstance(tgt, ast.Subscript) and isinstance(tgt.value, ast.Name) and tgt.value.id in self.arrays:
                self._check_reads(tgt.slice, scope, loops)
                for name in self._names_read(s.value):
                    self.finalised.add(name)
            else:
                raise UnsupportedStep(f"assignment target {_src(tgt)!r}")
        elif isinstance(s, ast.AugAssign):
            tgt = s.target
            if not (isinstance(tgt, ast.Subscript) and isinstance(tgt.value, ast.Name) and tgt.value.id in self.arrays):
                raise UnsupportedStep(f"augmented assignment to {_src(tgt)!r}")
            self._check_reads(tgt.slice, scope, loops)
            self._check_reads(s.value, scope, loops)
            self.finalised |= self._names_read(s.value)
        elif isinstance(s, ast.For):
            it = s.iter
            if not (isinstance(s.target, ast.Name) and isinstance(it, ast.Call)
                    and isinstance(it.func, ast.Name) and it.func.id == "range" and 1 <= len(it.args) <= 2):
                raise UnsupportedStep(f"loop {_src(s.target)} in {_src(it)}: only range(a) or range(a, b)")
            self._check_reads(it, scope, loops)
            self.acc_of_loop[id(s)] = self._collect_acc(s, scope)
            inner = _Scope(defined={s.target.id}, parent=scope, loop=s)
            self.scope_of[id(s)] = inner
            self._check_block(s.body, inner, loops + [s])
        elif isinstance(s, ast.If):
            self._check_reads(s.test, scope, loops)
            before = set(scope.defined)
            self._check_block(s.body, scope, loops)
            after_body = scope.defined
            scope.defined = set(before)
            self._check_block(s.orelse, scope, loops)
            scope.defined = after_body | scope.defined
        else:
            raise UnsupportedStep(f"statement {_src(s).splitlines()[0]!r}")

    # ---- activity ----------------------------------------------------------------------------
    def _expr_active(self, node) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in self.active:
                return True
            if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id in self.active_arrays:
                return True
        return False

    def _activity(self):
        assigns = [s for s in ast.walk(ast.Module(body=self.body, type_ignores=[]))
                   if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name)]
        changed = True
        while changed:
            changed = False
            for s in assigns:
                v = s.targets[0].id
                if v not in self.active and self._expr_active(s.value):
                    self.active.add(v)
                    changed = True

    def _active(self, node) -> bool:
        if isinstance(node, ast.Compare) or isinstance(node, ast.BoolOp):
            return False
        return self._expr_active(node)

    # ---- code generation ---------------------------------------------------------------------
    def _new_tmp(self) -> str:
        self.tmp += 1
        return f"_t{self.tmp}"

    def _prop(self, node, bar: str, out: list, ind: str):
        """Lines adding bar * d(node)/d(leaf) to the adjoint of every active leaf of ``node``."""
        if not self._active(node):
            return
        if isinstance(node, ast.Name):
            out.append(f"{ind}{node.id}__b += {bar}")
            return
        if isinstance(node, ast.Subscript):
            out.append(f"{ind}{node.value.id}__b[{_src(node.slice)}] += {bar}")
            return
        if not _is_simple(bar):
            t = self._new_tmp()
            out.append(f"{ind}{t} = {bar}")
            bar = t
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                self._prop(node.operand, f"-{bar}", out, ind)
            elif isinstance(node.op, ast.UAdd):
                self._prop(node.operand, bar, out, ind)
            else:
                raise UnsupportedStep(f"operator in {_src(node)!r}")
            return
        if isinstance(node, ast.BinOp):
            L, R = node.left, node.right
            ls, rs = _src(L), _src(R)
            if isinstance(node.op, ast.Add):
                self._prop(L, bar, out, ind)
                self._prop(R, bar, out, ind)
            elif isinstance(node.op, ast.Sub):
                self._prop(L, bar, out, ind)
                self._prop(R, f"-{bar}", out, ind)
            elif isinstance(node.op, ast.Mult):
                self._prop(L, f"{bar} * ({rs})", out, ind)
                self._prop(R, f"{bar} * ({ls})", out, ind)
            elif isinstance(node.op, ast.Div):
                self._prop(L, f"{bar} / ({rs})", out, ind)
                self._prop(R, f"-{bar} * ({ls}) / (({rs}) * ({rs}))", out, ind)
            elif isinstance(node.op, ast.Pow):
                if isinstance(R, ast.Constant) and R.value == 2:
                    self._prop(L, f"{bar} * 2.0 * ({ls})", out, ind)
                else:
                    self._prop(L, f"{bar} * ({rs}) * ({ls}) ** (({rs}) - 1.0)", out, ind)
                    self._prop(R, f"{bar} * ({ls}) ** ({rs}) * ops.log({ls})", out, ind)
            else:
                raise UnsupportedStep(f"operator in {_src(node)!r}")
            return
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.value.id == "ops":
                a = node.args
                if f.attr in _UNARY_DERIV:
                    self._prop(a[0], f"{bar} * {_UNARY_DERIV[f.attr](_src(a[0]))}", out, ind)
                    return
                if f.attr in ("fmin", "fmax"):   # CasADi's convention: ties share the derivative
                    x, y = _src(a[0]), _src(a[1])
                    cmp = "<=" if f.attr == "fmin" else ">="
                    wx = f"(1.0 if ({x}) {cmp} ({y}) else 0.0)"
                    wy = f"(1.0 if ({y}) {cmp} ({x}) else 0.0)"
                    t = self._new_tmp()
                    out.append(f"{ind}{t} = {wx} + {wy}")
                    self._prop(a[0], f"{bar} * {wx} / {t}", out, ind)
                    self._prop(a[1], f"{bar} * {wy} / {t}", out, ind)
                    return
                if f.attr == "if_else":
                    c = _src(a[0])
                    self._prop(a[1], f"({bar} if ({c}) else 0.0)", out, ind)
                    self._prop(a[2], f"(0.0 if ({c}) else {bar})", out, ind)
                    return
            raise UnsupportedStep(f"cannot differentiate {_src(node)!r}")
        raise UnsupportedStep(f"cannot differentiate {_src(node)!r}")

    def _replay(self, stmts, root: _Scope, scope: _Scope, ind: str, out: list):
        """Primal statements recomputing the values owned by ``root`` (no output writes)."""
        for s in stmts:
            if isinstance(s, ast.Assign):
                tgt = s.targets[0]
                if isinstance(tgt, ast.Subscript) or (isinstance(tgt, ast.Name) and tgt.id in self.arrays):
                    continue
                acc = self._accumulation(s)
                if acc is not None and not (scope.owner(acc[0]) or self.top).inside(root):
                    continue
                out.append(ind + _src(s))
            elif isinstance(s, ast.For):
                inner = self.scope_of[id(s)]
                if not (self._acc_outside(s, root) or getattr(s, "_exits", None)):
                    continue
                out.append(f"{ind}for {_src(s.target)} in {_src(s.iter)}:")
                n0 = len(out)
                self._replay(s.body, root, inner, ind + "    ", out)
                if len(out) == n0:
                    out.append(ind + "    pass")
            elif isinstance(s, ast.If):
                out.append(f"{ind}if {_src(s.test)}:")
                n0 = len(out)
                self._replay(s.body, root, scope, ind + "    ", out)
                if len(out) == n0:
                    out.append(ind + "    pass")
                if s.orelse:
                    out.append(f"{ind}else:")
                    n0 = len(out)
                    self._replay(s.orelse, root, scope, ind + "    ", out)
                    if len(out) == n0:
                        out.append(ind + "    pass")

    def _acc_outside(self, loop: ast.For, root: _Scope) -> bool:
        """Whether ``loop`` accumulates into a variable defined outside it and inside ``root``."""
        names = self.acc_of_loop[id(loop)]
        inner = self.scope_of[id(loop)]
        for n in names:
            owner = inner.parent.owner(n) if inner.parent is not None else None
            if owner is not None and owner.inside(root):
                return True
        return False

    def _locals(self, stmts, scope: _Scope) -> list[str]:
        """Active scalar variables defined in ``scope`` by ``stmts`` (not in nested loops)."""
        names = []
        for s in stmts:
            if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name):
                v = s.targets[0].id
                if self._accumulation(s) is None and v in self.active and v not in names:
                    names.append(v)
            elif isinstance(s, ast.If):
                for v in self._locals(s.body, scope) + self._locals(s.orelse, scope):
                    if v not in names:
                        names.append(v)
        return names

    def _reverse(self, stmts, scope: _Scope, ind: str, out: list):
        for s in reversed(stmts):
            try:
                self._reverse_stmt(s, scope, ind, out)
            except UnsupportedStep as exc:
                raise located(exc, s) from None

    def _reverse_stmt(self, s, scope: _Scope, ind: str, out: list):
        if isinstance(s, ast.AugAssign):          # out[i] += e: the element's adjoint flows into e
            if self._active(s.value):
                bar = f"{s.target.value.id}__b[{_src(s.target.slice)}]"
                self._prop(s.value, bar if isinstance(s.op, ast.Add) else f"-{bar}", out, ind)
        elif isinstance(s, ast.Assign):
            tgt = s.targets[0]
            if isinstance(tgt, ast.Name) and tgt.id in self.arrays or getattr(s, EXIT, None) is not None:
                return                            # an exit copy's adjoint enters its loop's last iteration
            if isinstance(tgt, ast.Subscript):
                if not self._active(s.value):
                    return
                t = self._new_tmp()
                idx = _src(tgt.slice)
                out.append(f"{ind}{t} = {tgt.value.id}__b[{idx}]")
                out.append(f"{ind}{tgt.value.id}__b[{idx}] = 0.0")
                self._prop(s.value, t, out, ind)
                return
            v = tgt.id
            if v not in self.active:
                return
            acc = self._accumulation(s)
            t = self._new_tmp()
            out.append(f"{ind}{t} = {v}__b")
            if acc is not None:
                self._prop(acc[1], t if acc[2] > 0 else f"-{t}", out, ind)
            else:
                out.append(f"{ind}{v}__b = 0.0")
                self._prop(s.value, t, out, ind)
        elif isinstance(s, ast.For):
            inner = self.scope_of[id(s)]
            args = s.iter.args
            if len(args) == 1:
                start, stop = "0", _src(args[0])
            else:
                start, stop = _src(args[0]), _src(args[1])
            k = _src(s.target)
            out.append(f"{ind}for {k} in range(({stop}) - 1, ({start}) - 1, -1):")
            n0 = len(out)
            self._replay(s.body, inner, inner, ind + "    ", out)
            exits = getattr(s, "_exits", {})
            for v in self._locals(s.body, inner):
                if v in exits and exits[v] in self.active:   # the value leaves the loop in its last iteration
                    out.append(f"{ind}    {v}__b = {exits[v]}__b if {k} == ({stop}) - 1 else 0.0")
                else:
                    out.append(f"{ind}    {v}__b = 0.0")
            self._reverse(s.body, inner, ind + "    ", out)
            if len(out) == n0:
                out.append(ind + "    pass")
        elif isinstance(s, ast.If):
            out.append(f"{ind}if {_src(s.test)}:")
            n0 = len(out)
            self._reverse(s.body, scope, ind + "    ", out)
            if len(out) == n0:
                out.append(ind + "    pass")
            if s.orelse:
                out.append(f"{ind}else:")
                n0 = len(out)
                self._reverse(s.orelse, scope, ind + "    ", out)
                if len(out) == n0:
                    out.append(ind + "    pass")

    def generate(self, name: str) -> str:
        """Source of ``name(*inputs, bar, *adjoint_arrays)`` adding the VJP into the adjoint arrays."""
        a = self.args
        act = [x for x in a if x in self.active_arrays]
        lines = [f"def {name}({', '.join(a)}, _bar, {', '.join(v + '__b' for v in act)}):"]
        ind = "    "
        self._replay(self.body, self.top, self.top, ind, lines)
        for v in self._locals(self.body, self.top):
            lines.append(f"{ind}{v}__b = 0.0")
        if self.out_array is not None:
            lines.append(f"{ind}{self.out_array}__b = _bar")     # bar is used up (overwritten)
        else:
            self._prop(self.ret_expr, "_bar", lines, ind)
        self._reverse(self.body, self.top, ind, lines)
        lines.append(f"{ind}return 0")
        return "\n".join(lines) + "\n"


@dataclass
class Derived:
    """A derived VJP: its source, the module globals it reads, the modules whose code it inlines."""

    source: str
    globals: set[str]
    modules: set[str]


def derive_vjp(fn: Callable, active_args: Sequence[int], name: str) -> Derived:
    """Reverse-mode source transformation of a model function.

    ``fn`` is the model's ``step(x, u, c, dims)`` (active arguments 0, 1) or ``loss(x, c, dims)``
    (active argument 0). Returns the source of ``name(<fn's arguments>, bar, <adjoints of the
    active arguments>)``, which ADDS bar^T d fn/d(active arguments) into the adjoint arrays
    (``bar`` is an array for a step, a float for a loss; an array ``bar`` is overwritten: the
    caller passes a copy if it needs it again). Raises :class:`UnsupportedStep` (naming
    the construct and its file:line) for constructs outside the accepted language.
    """
    from ..ops import DOMAIN_EPS
    tr = _Transformer(fn, active_args, DOMAIN_EPS)
    code = tr.generate(name)
    tree = ast.parse(code)
    stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    stored |= {a.arg for a in tree.body[0].args.args}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - stored
    return Derived(code, used, tr.modules)
