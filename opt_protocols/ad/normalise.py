"""One form for the many ways of writing the same equations: the AST passes run before differentiation.

A model's ``step``/``loss`` (and the helpers they call) are rewritten, statement by statement and
recursively into loop and ``if`` bodies, into the small single-assignment language that
:mod:`.transform` differentiates:

1. composite ``ops`` functions (``clip``, ``safe_*``, ``power``) become primitives (same values);
2. augmented assignments become plain ones; ``a = b = e`` is split;
3. conditional expressions ``a if cond else b`` become ``if`` statements on a temporary
   (inside a condition they stay: conditions are not differentiated);
4. calls of helper functions of the model file (or of functions written against ``ops`` that it
   imports) are inlined, recursively, with their local names made unique;
5. tuple unpacking ``a, b = e1, e2`` becomes one assignment per name;
6. numeric module globals become literals (other globals are an error);

then :class:`_SSA` renames so that every scalar is assigned once per scope: a reassigned scalar
gets a fresh name, the branches of an ``if`` end with copies into one merged name, a name bound to
an array (``z = x``) is replaced by the array, an accumulator ``v = v + e`` of a loop gets a fresh
copy just before the loop, and a value set in a loop and read after it is copied out of the loop
(:data:`EXIT`: the reverse pass hands its adjoint to the loop's last iteration).

Everything outside this language raises :class:`UnsupportedStep` naming the construct and its
``file:line``.
"""
from __future__ import annotations

import ast
import builtins
import copy
import inspect
import textwrap
import types as pytypes
from collections.abc import Callable
from dataclasses import dataclass, field

#: Calls that are passive (integers, sizes) and kept as they are.
PASSIVE_CALLS = {"range", "len", "int", "float", "min", "max", "abs"}
#: Attribute set on an exit copy ``v_out = v`` (its value: the loop it copies out of).
EXIT = "_exit_of"
#: Helpers inlined into each other at most this deep (deeper: a recursive helper).
MAX_INLINE_DEPTH = 20


class UnsupportedStep(ValueError):
    """The model's step/loss uses a construct the source transformation cannot differentiate.

    ``construct`` says what, ``where`` is ``"file:line"`` in the model file (or None).
    """

    def __init__(self, construct: str, where: str | None = None):
        self.construct = construct
        self.where = where
        super().__init__(f"{where}: {construct}" if where else construct)


def where(node: ast.AST) -> str | None:
    f, line = getattr(node, "_file", None), getattr(node, "lineno", None)
    return f"{f}:{line}" if f and line else None


def located(exc: UnsupportedStep, node: ast.AST) -> UnsupportedStep:
    """``exc`` with the location of ``node`` if it has none yet."""
    return exc if exc.where else UnsupportedStep(exc.construct, where(node))


def _src(node: ast.AST) -> str:
    return ast.unparse(node)


def _at(new: ast.AST, old: ast.AST) -> ast.AST:
    """``new`` with the source location (line and file) of ``old``, recursively where missing."""
    ast.copy_location(new, old)
    for n in ast.walk(new):
        if not hasattr(n, "_file"):
            n._file = getattr(old, "_file", None)
        if "lineno" in n._attributes and not hasattr(n, "lineno"):
            ast.copy_location(n, old)
    return new


def _name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _assign(target: str, value: ast.AST, like: ast.AST) -> ast.Assign:
    return _at(ast.Assign(targets=[_name(target, True)], value=value), like)


def _ops_call(name: str, *args: ast.AST) -> ast.Call:
    return ast.Call(func=ast.Attribute(value=_name("ops"), attr=name, ctx=ast.Load()), args=list(args), keywords=[])


class _Rewrite(ast.NodeTransformer):
    """Composite ``ops`` functions as primitives with known derivatives (the same values)."""

    def __init__(self, eps: float):
        self.eps = eps

    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "ops":
            a = node.args
            if f.attr == "clip":
                return _at(_ops_call("fmin", _ops_call("fmax", a[0], a[1]), a[2]), node)
            if f.attr in ("safe_asin", "safe_acos"):
                lo, hi = ast.Constant(-1.0 + self.eps), ast.Constant(1.0 - self.eps)
                return _at(_ops_call(f.attr[5:], _ops_call("fmin", _ops_call("fmax", a[0], lo), hi)), node)
            if f.attr == "safe_sqrt":
                return _at(_ops_call("sqrt", _ops_call("fmax", a[0], ast.Constant(self.eps))), node)
            if f.attr == "power":
                return _at(ast.BinOp(left=a[0], op=ast.Pow(), right=a[1]), node)
        return node


def parse_function(fn: Callable, eps: float) -> ast.FunctionDef:
    """The definition of ``fn`` with absolute line numbers and its file on every node."""
    name = getattr(fn, "__name__", repr(fn))
    try:
        lines, first = inspect.getsourcelines(fn)
        file = inspect.getsourcefile(fn) or "<unknown>"
    except (OSError, TypeError):
        raise UnsupportedStep(f"{name}: its source is not available") from None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):
        raise UnsupportedStep(f"{name}: not a plain function definition", f"{file}:{first}")
    ast.increment_lineno(tree, first - 1)
    for n in ast.walk(tree):
        n._file = file
    args = fdef.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
        raise UnsupportedStep(f"{name}: only plain positional parameters", where(fdef))
    fdef = _Rewrite(eps).visit(fdef)
    ast.fix_missing_locations(fdef)
    return fdef


def _stored_names(nodes) -> set[str]:
    out = set()
    for s in nodes:
        for n in ast.walk(s):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                out.add(n.id)
    return out


@dataclass
class _Counter:
    n: int = 0

    def next(self) -> int:
        self.n += 1
        return self.n


@dataclass
class Lowered:
    """A function in the lowered language: parameter names, statements, the returned expression."""

    args: list[str]
    body: list[ast.stmt]
    ret: ast.AST
    modules: set[str] = field(default_factory=set)   # modules whose functions were inlined


class _Lower:
    """Passes 2-6 of the module docstring over one function (helpers recursively)."""

    def __init__(self, fn: Callable, eps: float, counter: _Counter, depth: int = 0):
        if depth > MAX_INLINE_DEPTH:
            raise UnsupportedStep(f"helper {fn.__name__!r} inlined more than {MAX_INLINE_DEPTH} levels deep "
                                  "(recursive helpers are not supported)")
        self.fn = fn
        self.eps = eps
        self.counter = counter
        self.depth = depth
        self.fdef = parse_function(fn, eps)
        self.g = fn.__globals__
        self.args = [a.arg for a in self.fdef.args.args]
        self.locals = set(self.args) | _stored_names(self.fdef.body)
        self.modules = {fn.__module__}

    def lower(self) -> Lowered:
        body = [s for s in self.fdef.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        if not body or not isinstance(body[-1], ast.Return) or body[-1].value is None:
            raise UnsupportedStep(f"{self.fn.__name__}: must end with a return statement", where(self.fdef))
        for s in body[:-1]:
            for n in ast.walk(s):
                if isinstance(n, ast.Return):
                    raise UnsupportedStep("return before the end of the function", where(n))
        out = self.block(body[:-1])
        ret, pre = self.expr(body[-1].value)
        return Lowered(self.args, out + pre, ret, self.modules)

    # ---- statements ----------------------------------------------------------------------------
    def block(self, stmts) -> list[ast.stmt]:
        out = []
        for s in stmts:
            try:
                out.extend(self.stmt(s))
            except UnsupportedStep as exc:
                raise located(exc, s) from None
        return out

    def stmt(self, s) -> list[ast.stmt]:
        if isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)):
            return []
        if isinstance(s, ast.AugAssign):
            if isinstance(s.target, ast.Name):
                value = ast.BinOp(left=_name(s.target.id), op=s.op, right=s.value)
                return self.stmt(_at(ast.Assign(targets=[_name(s.target.id, True)], value=value), s))
            if not isinstance(s.op, (ast.Add, ast.Sub)):
                raise UnsupportedStep(f"augmented assignment {_src(s)!r} to an array element: only += and -=")
            tgt, pre1 = self.expr(s.target.slice)
            val, pre2 = self.expr(s.value)
            new = copy.copy(s)
            new.target = _at(ast.Subscript(value=s.target.value, slice=tgt, ctx=ast.Store()), s.target)
            new.value = val
            return pre1 + pre2 + [new]
        if isinstance(s, ast.Assign):
            if len(s.targets) > 1:          # a = b = e: b = e, then a = b
                last = s.targets[-1]
                first = self.stmt(_at(ast.Assign(targets=[last], value=s.value), s))
                rest = []
                for t in s.targets[:-1]:
                    rest += self.stmt(_at(ast.Assign(targets=[t], value=copy.deepcopy(_load(last))), s))
                return first + rest
            tgt = s.targets[0]
            value, pre = self.expr(s.value)
            if isinstance(tgt, (ast.Tuple, ast.List)):
                return pre + self._unpack(tgt, value, s)
            if isinstance(tgt, ast.Subscript):
                sl, pre2 = self.expr(tgt.slice)
                tgt = _at(ast.Subscript(value=tgt.value, slice=sl, ctx=ast.Store()), tgt)
                pre += pre2
            elif not isinstance(tgt, ast.Name):
                raise UnsupportedStep(f"assignment target {_src(tgt)!r}")
            return pre + [_at(ast.Assign(targets=[tgt], value=value), s)]
        if isinstance(s, ast.For):
            if s.orelse:
                raise UnsupportedStep("for ... else")
            if not isinstance(s.target, ast.Name):
                raise UnsupportedStep(f"loop target {_src(s.target)!r}: one name")
            it, pre = self.expr(s.iter, test=True)
            new = copy.copy(s)
            new.iter = it
            new.body = self.block(s.body)
            return pre + [new]
        if isinstance(s, ast.If):
            test, pre = self.expr(s.test, test=True)
            new = copy.copy(s)
            new.test = test
            new.body = self.block(s.body)
            new.orelse = self.block(s.orelse)
            return pre + [new]
        kind = type(s).__name__
        raise UnsupportedStep(f"statement {_src(s).splitlines()[0]!r} ({kind})")

    def _unpack(self, tgt, value, s) -> list[ast.stmt]:
        if not isinstance(value, (ast.Tuple, ast.List)) or len(value.elts) != len(tgt.elts):
            raise UnsupportedStep(f"tuple unpacking {_src(s)!r}: the value must be a tuple of {len(tgt.elts)} "
                                  "expressions")
        if not all(isinstance(t, ast.Name) for t in tgt.elts):
            raise UnsupportedStep(f"tuple unpacking {_src(s)!r}: only names as targets")
        targets = [t.id for t in tgt.elts]
        read = {n.id for e in value.elts for n in ast.walk(e) if isinstance(n, ast.Name)}
        if read & set(targets):             # a, b = b, a: evaluate all values first
            temps = [f"_u{self.counter.next()}" for _ in targets]
            return ([_assign(t, e, s) for t, e in zip(temps, value.elts)]
                    + [_assign(n, _name(t), s) for n, t in zip(targets, temps)])
        return [_assign(n, e, s) for n, e in zip(targets, value.elts)]

    # ---- expressions ---------------------------------------------------------------------------
    def expr(self, node, test: bool = False) -> tuple[ast.AST, list[ast.stmt]]:
        """(the rewritten expression, statements to run before it)."""
        pre: list[ast.stmt] = []
        return self._expr(node, test, pre), pre

    def _expr(self, node, test, pre):
        if isinstance(node, ast.IfExp) and not test:
            t = f"_c{self.counter.next()}"
            stmt = _at(ast.If(test=node.test, body=[_assign(t, node.body, node)],
                              orelse=[_assign(t, node.orelse, node)]), node)
            pre.extend(self.stmt(stmt))
            return _at(_name(t), node)
        if isinstance(node, (ast.Compare, ast.BoolOp)):
            test = True
        if isinstance(node, ast.Call):
            return self._call(node, test, pre)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            return self._global(node)
        if isinstance(node, ast.Slice):
            raise UnsupportedStep("array slices: index one element at a time")
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.SetComp, ast.NamedExpr,
                             ast.Await, ast.Yield, ast.Starred)):
            raise UnsupportedStep(f"expression {_src(node)!r} ({type(node).__name__})")
        new = copy.copy(node)
        for fname, value in ast.iter_fields(node):
            if isinstance(value, list):
                setattr(new, fname, [self._expr(v, test, pre) if isinstance(v, ast.AST) else v for v in value])
            elif isinstance(value, ast.expr):
                setattr(new, fname, self._expr(value, test, pre))
        return new

    def _global(self, node: ast.Name):
        n = node.id
        if n in self.locals or n in ("ops", "math", "np"):
            return node
        if n not in self.g:
            if hasattr(builtins, n):
                return node
            raise UnsupportedStep(f"name {n!r} is not defined")
        v = self.g[n]
        if isinstance(v, bool):
            return _at(ast.Constant(v), node)
        if isinstance(v, (int, float)) or type(v).__module__ == "numpy" and hasattr(v, "item") and v.shape == ():
            return _at(ast.Constant(v.item() if hasattr(v, "item") else v), node)
        raise UnsupportedStep(f"module global {n!r} ({type(v).__name__}): only numbers can be read from the "
                              "module; pass arrays through the constants c")

    def _call(self, node: ast.Call, test, pre):
        f = node.func
        args = [self._expr(a, test, pre) for a in node.args]
        kws = [ast.keyword(arg=k.arg, value=self._expr(k.value, test, pre)) for k in node.keywords]
        if any(k.arg is None for k in kws) or any(isinstance(a, ast.Starred) for a in node.args):
            raise UnsupportedStep(f"call {_src(node)!r}: *args and **kwargs are not supported")
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "ops":
            return _at(ast.Call(func=f, args=args, keywords=kws), node)
        if isinstance(f, ast.Name) and f.id not in self.locals:
            target = self.g.get(f.id, getattr(builtins, f.id, None))
            if f.id in PASSIVE_CALLS and target is getattr(builtins, f.id):
                return _at(ast.Call(func=f, args=args, keywords=kws), node)
            if isinstance(target, pytypes.FunctionType):
                return self._inline(node, target, args, kws, pre)
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id not in self.locals \
                and isinstance(self.g.get(f.value.id), pytypes.ModuleType):
            target = getattr(self.g[f.value.id], f.attr, None)
            if isinstance(target, pytypes.FunctionType):
                return self._inline(node, target, args, kws, pre)
        raise UnsupportedStep(f"call {_src(node)!r}: only ops functions, helper functions of the model file and "
                              f"{', '.join(sorted(PASSIVE_CALLS))} can be used")

    def _inline(self, node, fn, args, kws, pre):
        """Inline a helper: bind its parameters, append its renamed body to ``pre``, return its value."""
        try:
            low = _Lower(fn, self.eps, self.counter, self.depth + 1).lower()
        except UnsupportedStep as exc:
            raise UnsupportedStep(f"in helper {fn.__name__!r} (called at {where(node)}): {exc.construct}",
                                  exc.where) from None
        self.modules |= low.modules
        params = low.args
        if len(args) > len(params):
            raise UnsupportedStep(f"call {_src(node)!r}: {fn.__name__} takes {len(params)} arguments")
        bound = dict(zip(params, args))
        for k in kws:
            if k.arg not in params or k.arg in bound:
                raise UnsupportedStep(f"call {_src(node)!r}: unexpected or repeated argument {k.arg!r}")
            bound[k.arg] = k.value
        defaults = fn.__defaults__ or ()
        for p, d in zip(params[len(params) - len(defaults):], defaults):
            if p not in bound:
                if not isinstance(d, (int, float, bool)):
                    raise UnsupportedStep(f"call {_src(node)!r}: default {p}={d!r} is not a number")
                bound[p] = ast.Constant(d)
        missing = [p for p in params if p not in bound]
        if missing:
            raise UnsupportedStep(f"call {_src(node)!r}: missing argument {missing[0]!r}")
        prefix = f"_{fn.__name__}{self.counter.next()}_"
        local = set(params) | _stored_names(low.body)
        ren = _Renamer({n: prefix + n for n in local})
        pre.extend(_assign(prefix + p, bound[p], node) for p in params)
        pre.extend(ren.visit(copy.deepcopy(s)) for s in low.body)
        return _at(ren.visit(copy.deepcopy(low.ret)), node)


def _load(t: ast.AST) -> ast.AST:
    t = copy.deepcopy(t)
    for n in ast.walk(t):
        if hasattr(n, "ctx"):
            n.ctx = ast.Load()
    return t


class _Renamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]):
        self.mapping = mapping

    def visit_Name(self, node):
        if node.id in self.mapping:
            node.id = self.mapping[node.id]
        return node


# =============================================================================================
# Single assignment
# =============================================================================================

@dataclass
class _Var:
    name: str                     # the name in the generated code (a version, or the array an alias names)
    scope: int                    # id of the loop that defines it (0: the function body)
    array: bool = False


@dataclass
class _Exit:
    """A value set in ``loop`` and not yet copied out of it: ``inner`` is its version inside the loop
    (a name, or the _Exit of a deeper loop); ``fallback`` its version before the loop (or None)."""

    inner: str | _Exit
    loop: ast.For
    scope: int                    # the scope enclosing the loop
    fallback: str | None
    made: str | None = None


@dataclass
class _Loop:
    node: ast.For
    scope: int
    read: set[str] = field(default_factory=set)


def _accumulation_of(s) -> str | None:
    """``v`` if ``s`` is ``v = v + e`` or ``v = v - e`` with e free of v."""
    if not (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)):
        return None
    v, e = s.targets[0].id, s.value
    if isinstance(e, ast.BinOp) and isinstance(e.op, (ast.Add, ast.Sub)) \
            and isinstance(e.left, ast.Name) and e.left.id == v \
            and not any(isinstance(n, ast.Name) and n.id == v for n in ast.walk(e.right)):
        return v
    return None


def _is_array_call(v) -> bool:
    return (isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and isinstance(v.func.value, ast.Name)
            and v.func.value.id == "ops" and v.func.attr in ("zeros", "matrix"))


class _SSA:
    """Renaming into single assignment per scope (see the module docstring)."""

    def __init__(self, low: Lowered):
        self.env: dict[str, _Var] = {a: _Var(a, 0, array=True) for a in low.args}
        self.exits: dict[str, _Exit] = {}
        self.originals = set(low.args) | _stored_names(low.body)
        self.taken = set(self.originals)
        self.used = set(low.args)
        self.loops: list[_Loop] = []
        self.slots: dict[int, list[ast.stmt]] = {}
        self.body = self.block(low.body, 0)
        self.ret = self.read(low.ret)
        self.body = _splice(self.body, self.slots)

    def fresh(self, n: str) -> str:
        k = 2
        while f"{n}__{k}" in self.taken:
            k += 1
        self.taken.add(f"{n}__{k}")
        self.used.add(f"{n}__{k}")
        return f"{n}__{k}"

    def version(self, n: str) -> str:
        """The name of a new definition of ``n``: ``n`` itself the first time, else a fresh one."""
        if n in self.used:
            return self.fresh(n)
        self.used.add(n)
        return n

    # ---- reads -------------------------------------------------------------------------------------
    def lookup(self, n: str, node) -> _Var | None:
        if n in self.env:
            return self.env[n]
        if n in self.exits:
            e = self.exits.pop(n)
            v = _Var(self._materialise(e, node), e.scope)
            self.env[n] = v
            return v
        return None

    def _materialise(self, e: _Exit, node) -> str:
        if e.made is None:
            inner = e.inner if isinstance(e.inner, str) else self._materialise(e.inner, node)
            out = self.fresh(inner.split("__")[0])
            copy_ = _assign(out, _name(inner), e.loop)
            setattr(copy_, EXIT, e.loop)
            e.loop._exits = {**getattr(e.loop, "_exits", {}), inner: out}
            if e.fallback is None:
                stmts = [copy_]
            else:   # a loop that may run zero times leaves the value from before it
                a = e.loop.iter.args
                start, stop = (ast.Constant(0), a[0]) if len(a) == 1 else (a[0], a[1])
                test = ast.Compare(left=copy.deepcopy(stop), ops=[ast.Gt()], comparators=[copy.deepcopy(start)])
                stmts = [_at(ast.If(test=test, body=[copy_], orelse=[_assign(out, _name(e.fallback), e.loop)]),
                             e.loop)]
            self.slots.setdefault(id(e.loop), []).extend(stmts)
            e.made = out
        return e.made

    def read(self, node):
        """``node`` with every name replaced by its current version (arrays for aliases)."""
        node = copy.deepcopy(node)
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                for lp in self.loops:
                    lp.read.add(n.id)
                v = self.lookup(n.id, node)
                if v is not None:
                    n.id = v.name
                elif n.id in self.originals:
                    raise UnsupportedStep(f"{n.id!r} may be read before it is assigned")
        return node

    # ---- statements ----------------------------------------------------------------------------------
    def block(self, stmts, scope: int) -> list:
        out = []
        for s in stmts:
            try:
                out.extend(self.stmt(s, scope))
            except UnsupportedStep as exc:
                raise located(exc, s) from None
        return out

    def stmt(self, s, scope: int) -> list:
        if isinstance(s, ast.Assign):
            tgt = s.targets[0]
            if isinstance(tgt, ast.Subscript):
                return [self._element(s, tgt)]
            return self._assign(s, tgt.id, scope)
        if isinstance(s, ast.AugAssign):      # array element += e
            return [self._element(s, s.target)]
        if isinstance(s, ast.For):
            return self._for(s, scope)
        if isinstance(s, ast.If):
            return self._if(s, scope)
        raise UnsupportedStep(f"statement {_src(s).splitlines()[0]!r}")

    def _element(self, s, tgt):
        arr = tgt.value
        if not isinstance(arr, ast.Name):
            raise UnsupportedStep(f"assignment target {_src(tgt)!r}")
        v = self.lookup(arr.id, s)
        if v is None or not v.array:
            raise UnsupportedStep(f"element assignment to {arr.id!r}, which is not an array made by ops.zeros/matrix")
        new = copy.copy(s)
        t = _at(ast.Subscript(value=_name(v.name), slice=self.read(tgt.slice), ctx=ast.Store()), tgt)
        if isinstance(s, ast.Assign):
            new.targets = [t]
        else:
            new.target = t
        new.value = self.read(s.value)
        return new

    def _assign(self, s, n: str, scope: int) -> list:
        value = s.value
        if isinstance(value, ast.Name):
            src = self.lookup(value.id, s)
            if src is not None and src.array:         # z = x: z names the array x
                self._bind(n, _Var(src.name, scope, array=True))
                return []
        acc = _accumulation_of(s) == n
        value = self.read(value)
        old = self.env.get(n)
        if old is not None and old.array and not _is_array_call(s.value):
            raise UnsupportedStep(f"{n!r} names an array and is assigned a scalar")
        if old is not None and old.scope != scope and not _is_array_call(s.value):
            if acc:                                   # accumulation into a value of an enclosing scope
                return [_at(ast.Assign(targets=[_name(old.name, True)], value=value), s)]
            inner = [lp for lp in self.loops if self._deeper(lp.scope, old.scope)]
            if any(n in lp.read for lp in inner):
                raise UnsupportedStep(f"{n!r} is reassigned in a loop after being read there (a value carried "
                                      "from one iteration to the next): only accumulations v = v + e are "
                                      "supported in loops")
        version = self.version(n)
        self._bind(n, _Var(version, scope, array=_is_array_call(s.value)))
        return [_at(ast.Assign(targets=[_name(version, True)], value=value), s)]

    def _deeper(self, loop_scope: int, than: int) -> bool:
        """Whether the loop of ``loop_scope`` lies inside the scope ``than``."""
        ids = [0] + [lp.scope for lp in self.loops]
        return than in ids and ids.index(loop_scope) > ids.index(than)

    def _bind(self, n: str, v: _Var):
        self.env[n] = v
        self.exits.pop(n, None)

    def _for(self, s: ast.For, scope: int) -> list:
        it = self.read(s.iter)
        a = it.args if isinstance(it, ast.Call) else []
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and 1 <= len(a) <= 2 and not it.keywords):
            raise UnsupportedStep(f"loop over {_src(s.iter)!r}: only range(a) or range(a, b)")
        pre = []
        for n in sorted(_accumulated(s.body)):        # a fresh copy for each accumulator of the loop
            v = self.env.get(n)
            if v is not None and v.scope == scope and not v.array:
                c = self.fresh(n)
                pre.append(_assign(c, _name(v.name), s))
                self.env[n] = _Var(c, scope)
        loop_id = id(s)
        new = copy.copy(s)
        new.iter = it
        t = s.target.id
        tv = self.version(t)
        before = dict(self.env)
        before_exits = dict(self.exits)
        self.env[t] = _Var(tv, loop_id)
        self.exits.pop(t, None)
        new.target = _at(_name(tv, True), s.target)
        self.loops.append(_Loop(new, loop_id))
        new.body = self.block(s.body, loop_id)
        self.loops.pop()
        # values of the loop's scope (and values not yet copied out of deeper loops) leave with it
        out_exits = {}
        for n, v in self.env.items():
            if v.scope == loop_id and not v.array:
                fb = before.get(n)
                out_exits[n] = _Exit(v.name, new, scope, fb.name if fb is not None and not fb.array else None)
        for n, e in self.exits.items():
            if n not in before_exits or before_exits[n] is not e:
                if n not in out_exits and n not in self.env:
                    fb = before.get(n)
                    out_exits[n] = _Exit(e, new, scope, fb.name if fb is not None and not fb.array else None)
        self.env = {n: v for n, v in self.env.items() if v.scope != loop_id and n not in out_exits}
        self.exits = {n: e for n, e in self.exits.items()
                      if before_exits.get(n) is e and n not in out_exits}
        self.exits.update(out_exits)
        return pre + [new, _Slot(id(new))]

    def _if(self, s: ast.If, scope: int) -> list:
        new = copy.copy(s)
        new.test = self.read(s.test)
        e0, x0 = dict(self.env), dict(self.exits)
        new.body = self.block(s.body, scope)
        e1, x1 = self.env, self.exits
        self.env, self.exits = dict(e0), dict(x0)
        new.orelse = self.block(s.orelse, scope)
        e2, x2 = self.env, self.exits
        merged = {}
        for n in sorted(set(e1) | set(e2)):
            v1, v2 = e1.get(n), e2.get(n)
            if v1 == v2 and v1 is not None:
                merged[n] = v1
                continue
            if n not in e0 and (v1 is None or v2 is None):    # defined in one branch only
                merged[n] = v1 or v2
                continue
            made = x0[n].made if n in x0 else None      # a value copied out of an earlier loop in one branch
            if made is not None and {v1.name if v1 else None, v2.name if v2 else None} <= {made, None}:
                merged[n] = v1 or v2
                continue
            if (v1 is not None and v1.array) or (v2 is not None and v2.array):
                if v1 is not None and v2 is not None and v1.name == v2.name:
                    merged[n] = v1
                    continue
                raise UnsupportedStep(f"{n!r} names different arrays in the two branches of an if")
            if v1 is not None and v1.scope != scope and v2 is not None and v2.scope != scope:
                merged[n] = v1
                continue
            m = self.fresh(n)
            if v1 is not None:
                new.body.append(_assign(m, _name(v1.name), s))
            if v2 is not None:
                new.orelse.append(_assign(m, _name(v2.name), s))
            merged[n] = _Var(m, scope)
        self.env = merged
        self.exits = {**x1, **x2}
        return [new]


def _accumulated(stmts) -> set[str]:
    out = set()
    for s in stmts:
        for n in ast.walk(s):
            v = _accumulation_of(n)
            if v is not None:
                out.add(v)
    return out


class _Slot(ast.stmt):
    """Where the exit copies of a loop go (replaced when the renaming is done)."""

    _fields = ()

    def __init__(self, loop_id: int):
        super().__init__()
        self.loop_id = loop_id


def _splice(stmts, slots: dict[int, list]) -> list:
    out = []
    for s in stmts:
        if isinstance(s, _Slot):
            out.extend(_splice(slots.get(s.loop_id, []), slots))
            continue
        if isinstance(s, ast.For):
            s.body = _splice(s.body, slots)
        elif isinstance(s, ast.If):
            s.body = _splice(s.body, slots)
            s.orelse = _splice(s.orelse, slots)
        out.append(s)
    return out


def normalise(fn: Callable, eps: float) -> Lowered:
    """``fn`` lowered (passes 1-6) and renamed into single assignment (see the module docstring)."""
    low = _Lower(fn, eps, _Counter()).lower()
    ssa = _SSA(low)
    return Lowered(low.args, ssa.body, ssa.ret, low.modules)
