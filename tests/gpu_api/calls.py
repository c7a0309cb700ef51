"""Every call and attribute our GPU code uses on a package, found in our source, checked on it.

Stdlib only: it runs inside the GPU API venv (tests/support/gpu_venv.py) with the real
packages imported. The scan reads our modules' ASTs and follows types the way the code does:
a name bound to the package (``trt = import_tensorrt()``, a ``trt`` parameter, ``import
onnxruntime as ort``), classes built from it (``trt.Builder(logger)``), what their methods
return (read from the real package: pybind11 signatures, annotations, or the method's own
``return Class(...)``), attributes that hold them (``self._engine``), downcasts
(``layer.__class__ = trt.X``) and subclasses (``class Monitor(trt.IProgressMonitor)``).
Each attribute read on a typed value must exist in the package; each call must fit one of
the callee's signatures (positional count and keyword names); each attribute written must
be a writable property. A receiver whose type cannot be followed is reported too, so that
new code never escapes the check unseen.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

#: a value's type in the scan: the package module itself, or an object of the package
MODULE = "<module>"


@dataclass
class Finding:
    where: str  # file:line
    expr: str  # the source text
    problem: str = ""  # empty: checked and found

    def __str__(self) -> str:
        return f"{self.where}: {self.expr}: {self.problem or 'ok'}"


@dataclass
class Report:
    checked: list[Finding] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)
    untyped: list[Finding] = field(default_factory=list)  # package values we could not follow

    def add(self, finding: Finding) -> None:
        (self.problems if finding.problem else self.checked).append(finding)


# --- signatures of the real package ----------------------------------------------------------

_SIGNATURE = re.compile(r"^\s*(?:\d+\.\s*)?(\w+)\((.*)\)\s*(?:->\s*(.+))?$")


def _split_params(text: str) -> list[str]:
    """Top-level comma split of a pybind11 parameter list (types hold brackets and commas)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[(<{":
            depth += 1
        elif char in "])>}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


@dataclass(frozen=True)
class Signature:
    positional: tuple[str, ...]  # parameter names, in order (self excluded)
    required: int  # how many have no default
    varargs: bool
    returns: str | None  # the return type's last dotted name, as the package spells it

    def accepts(self, n_positional: int, keywords: Iterable[str]) -> bool:
        names = set(keywords)
        if n_positional > len(self.positional) and not self.varargs:
            return False
        if names & set(self.positional[:n_positional]):
            return False
        if not names <= set(self.positional) and not self.varargs:
            return False
        given = n_positional + len(names & set(self.positional[n_positional:]))
        return given >= self.required or self.varargs


def pybind_signatures(obj: Any) -> list[Signature]:
    """The overloads a pybind11 docstring states (``name(self: T, a: int = 0) -> R``)."""
    found = []
    doc = getattr(obj, "__doc__", None) or ""
    overloaded = "Overloaded function." in doc
    for line in doc.splitlines():
        if overloaded and not re.match(r"^\s*\d+\.", line):
            continue  # the generic `name(*args, **kwargs)` header of the overloads
        match = _SIGNATURE.match(line)
        if not match or match.group(1) != getattr(obj, "__name__", match.group(1)):
            continue
        params = [p for p in _split_params(match.group(2)) if p]
        if params and params[0].startswith("self"):
            params = params[1:]
        names = tuple(p.split(":")[0].split("=")[0].strip() for p in params)
        required = sum(1 for p in params if "=" not in p and not p.startswith("*"))
        varargs = any(p.startswith("*") for p in params)
        returns = match.group(3)
        tail = returns.strip().split(".")[-1] if returns else None
        found.append(Signature(names, required, varargs, tail))
    return found


def python_signature(obj: Any, owner: ModuleType) -> list[Signature]:
    """The signature of a Python function, with the class its source returns, if any."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    params = [p for p in sig.parameters.values() if p.name != "self"]
    positional = tuple(
        p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    keywords = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
    required = sum(
        1
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    varargs = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
    returns = None
    annotation = sig.return_annotation
    if isinstance(annotation, type):
        returns = annotation.__name__
    elif isinstance(annotation, str):
        returns = annotation.split(".")[-1]
    if returns is None:
        returns = _returned_class(obj, owner)
    # keyword-only names count as allowed keywords past the positional ones
    return [Signature(positional + keywords, required, varargs, returns)]


def _returned_class(obj: Any, owner: ModuleType) -> str | None:
    """``return Name(...)`` / ``return C.Name(...)`` in the function's own source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name and isinstance(_lookup(owner, name), type):
                return str(name)
    return None


def _lookup(package: ModuleType, name: str) -> Any:
    """A class or function of the package by name, in the package or its submodules."""
    if hasattr(package, name):
        return getattr(package, name)
    for module in list(vars(package).values()):
        if isinstance(module, ModuleType) and module.__name__.startswith(package.__name__):
            if hasattr(module, name):
                return getattr(module, name)
            for sub in list(vars(module).values()):
                if isinstance(sub, ModuleType) and hasattr(sub, name):
                    return getattr(sub, name)
    return None


def signatures(obj: Any, package: ModuleType) -> list[Signature]:
    return pybind_signatures(obj) or python_signature(obj, package)


# --- the scan ---------------------------------------------------------------------------------


@dataclass
class Scope:
    """What the names of one function hold (MODULE, a package class, or one of ours)."""

    types: dict[str, str] = field(default_factory=dict)
    cls: str = ""  # the class whose method this is ("" at module level)


#: value kinds besides a package class name: "type:X" is the class X itself, "ours:C" an
#: object of our class C, "[X]" a container of X
OURS = "ours:"
PLAIN = {"None", "bool", "int", "str", "float", "bytes", "list", "dict", "tuple"}


class Scanner:
    """Scans source files for uses of ``package`` bound to ``module_names``."""

    def __init__(
        self, package: ModuleType, module_names: Iterable[str], binders: Iterable[str] = ()
    ) -> None:
        self.package = package
        self.module_names = set(module_names)
        self.binders = set(binders)  # calls that return the package (import_tensorrt)
        self.report = Report()
        self.attrs: dict[str, str] = {}  # "Class.x" -> kind, learnt across the files
        self.returns: dict[str, str] = {}  # "Class.method" / "function" -> our class name
        self.subclasses: dict[str, str] = {}  # our class -> the package class it extends
        self.classes: set[str] = set()
        self.bases: dict[str, list[str]] = {}  # our class -> our classes it extends
        # what our own functions are called with: "function" / "Class.method" -> {param: kind}
        self.params: dict[str, dict[str, str]] = {}
        self.signatures: dict[str, list[str]] = {}  # the same keys -> parameter names

    def _member(self, table: dict[str, str], cls: str, name: str) -> str | None:
        """``cls.name`` in ``table``, else in our classes ``cls`` extends."""
        if f"{cls}.{name}" in table:
            return table[f"{cls}.{name}"]
        for base in self.bases.get(cls, []):
            found = self._member(table, base, name)
            if found is not None:
                return found
        return None

    def _package_class(self, kind: str | None) -> Any:
        if kind is None or kind == MODULE or kind.startswith((OURS, "[")):
            return None
        return _lookup(self.package, kind.removeprefix("type:"))

    # types of expressions
    def type_of(self, node: ast.AST, scope: Scope) -> str | None:
        if isinstance(node, ast.Name):
            return scope.types.get(node.id)
        if isinstance(node, ast.Attribute):
            if _is_self(node.value) and scope.cls:
                return scope.types.get(f"self.{node.attr}") or self._member(
                    self.attrs, scope.cls, node.attr
                )
            base = self.type_of(node.value, scope)
            if base == MODULE and isinstance(_lookup(self.package, node.attr), type):
                return f"type:{node.attr}"
            if base is not None and base.startswith(OURS):
                return self._member(self.attrs, base.removeprefix(OURS), node.attr)
            return None
        if isinstance(node, ast.Subscript):
            base = self.type_of(node.value, scope)
            if base is not None and base.startswith("["):
                return base[1:-1]
            return None
        if isinstance(node, ast.DictComp):
            inner = self.type_of(node.value, scope)
            return f"[{inner}]" if inner else None
        if isinstance(node, ast.ListComp):
            inner = self.type_of(node.elt, scope)
            return f"[{inner}]" if inner else None
        if isinstance(node, ast.Call):
            return self._call_type(node, scope)
        return None

    def _call_type(self, node: ast.Call, scope: Scope) -> str | None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in self.binders:
                return MODULE
            if func.id in self.subclasses:
                return self.subclasses[func.id]
            if func.id in self.classes:
                return OURS + func.id
            if func.id in self.returns:
                return OURS + self.returns[func.id]
            return None
        if not isinstance(func, ast.Attribute):
            return None
        if _is_self(func.value) and scope.cls:
            found = self._member(self.returns, scope.cls, func.attr)
            return OURS + found if found else None
        base = self.type_of(func.value, scope)
        if base == MODULE:
            target = _lookup(self.package, func.attr)
            return func.attr if isinstance(target, type) else self._returns(target)
        owner = self._package_class(base)
        if owner is not None:
            return self._returns(getattr(owner, func.attr, None))
        return None

    def _returns(self, callee: Any) -> str | None:
        if callee is None:
            return None
        for sig in signatures(callee, self.package):
            if sig.returns and isinstance(_lookup(self.package, sig.returns), type):
                return sig.returns
        return None

    # checks
    def check_attribute(self, node: ast.Attribute, scope: Scope, where: str, store: bool) -> None:
        base = self.type_of(node.value, scope)
        if base is None or base.startswith((OURS, "[")):
            return
        expr = ast.unparse(node)
        if base == MODULE:
            found = _lookup(self.package, node.attr) is not None
            self.report.add(Finding(where, expr, "" if found else "missing in the package"))
            return
        owner = self._package_class(base)
        if owner is None:
            self.report.add(Finding(where, expr, f"{base} is not in the package"))
            return
        if node.attr == "__class__":
            return
        if not hasattr(owner, node.attr):
            self.report.add(Finding(where, expr, f"{owner.__name__} has no {node.attr}"))
            return
        if store and getattr(inspect.getattr_static(owner, node.attr, None), "fset", None) is None:
            self.report.add(Finding(where, expr, f"{owner.__name__}.{node.attr} is not writable"))
            return
        self.report.add(Finding(where, expr))

    def _callee(self, func: ast.Attribute, scope: Scope) -> tuple[bool, Any]:
        """(the receiver is the package's, the callee)."""
        base = self.type_of(func.value, scope)
        if base == MODULE:
            callee = _lookup(self.package, func.attr)
            return True, callee.__init__ if isinstance(callee, type) else callee
        owner = self._package_class(base)
        if owner is None:
            return False, None
        return True, getattr(owner, func.attr, None)

    def check_call(self, node: ast.Call, scope: Scope, where: str) -> None:
        func = node.func
        if not isinstance(func, ast.Attribute) or any(
            isinstance(a, ast.Starred) for a in node.args
        ):
            return
        ours, callee = self._callee(func, scope)
        if not ours or callee is None:
            return  # not the package's, or the attribute check reports it
        sigs = signatures(callee, self.package)
        keywords = [k.arg for k in node.keywords if k.arg]
        expr = ast.unparse(node)
        if not sigs:
            self.report.add(Finding(where, expr, "no signature to check the call against"))
        elif not any(s.accepts(len(node.args), keywords) for s in sigs):
            stated = "; ".join(str(s.positional) for s in sigs)
            self.report.add(Finding(where, expr, f"no signature takes these arguments ({stated})"))
        else:
            self.report.add(Finding(where, f"{expr} [call]"))

    # walking
    def scan(self, path: Path, label: str) -> None:
        tree = ast.parse(path.read_text(), str(path))
        scope = Scope({name: MODULE for name in self.module_names})
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    if alias.name == self.package.__name__:
                        scope.types[alias.asname or alias.name] = MODULE
        self._body(tree.body, scope, label)

    def _body(self, body: list[ast.stmt], scope: Scope, label: str) -> None:
        for stmt in body:
            self._statement(stmt, scope, label)

    def _statement(self, stmt: ast.stmt, scope: Scope, label: str) -> None:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = Scope(dict(scope.types), scope.cls)
            key = f"{scope.cls}.{stmt.name}" if scope.cls else stmt.name
            names = [a.arg for a in stmt.args.args]
            self.signatures[key] = names[1:] if scope.cls and names[:1] == ["self"] else names
            # a parameter holds what the calls pass it (learnt in the first pass)
            inner.types.update(self.params.get(key, {}))
            for arg in stmt.args.args + stmt.args.kwonlyargs:
                if arg.arg in self.module_names:
                    inner.types[arg.arg] = MODULE
                elif isinstance(arg.annotation, ast.Name) and arg.annotation.id in self.classes:
                    inner.types[arg.arg] = OURS + arg.annotation.id
            returned = stmt.returns
            if isinstance(returned, ast.Name) and returned.id in self.classes:
                self.returns[key] = returned.id
            self._body(stmt.body, inner, label)
            return
        if isinstance(stmt, ast.ClassDef):
            self.classes.add(stmt.name)
            self.bases[stmt.name] = [
                b.id for b in stmt.bases if isinstance(b, ast.Name) and b.id in self.classes
            ]
            for base in stmt.bases:
                kind = self.type_of(base, scope)
                if kind and kind.startswith("type:"):
                    self.subclasses[stmt.name] = kind.removeprefix("type:")
                    self._check_overrides(stmt, kind.removeprefix("type:"), label)
            self._body(stmt.body, Scope(dict(scope.types), stmt.name), label)
            return
        compound = isinstance(stmt, ast.If | ast.For | ast.While | ast.With | ast.Try)
        headers: list[ast.AST] = []
        if isinstance(stmt, ast.If | ast.While):
            headers = [stmt.test]
        elif isinstance(stmt, ast.For):
            headers = [stmt.iter]
        elif isinstance(stmt, ast.With):
            headers = [item.context_expr for item in stmt.items]
        for node in headers if compound else [stmt]:
            self._check_nodes(node, scope, label, stmt.lineno)
        if compound:
            for block in _blocks(stmt):
                self._body(block, scope, label)
        else:
            self._learn(stmt, scope, label)

    def _check_nodes(self, root: ast.AST, scope: Scope, label: str, line: int) -> None:
        for node in ast.walk(root):
            where = f"{label}:{getattr(node, 'lineno', line)}"
            if isinstance(node, ast.Attribute):
                self.check_attribute(node, scope, where, isinstance(node.ctx, ast.Store))
            elif isinstance(node, ast.Call):
                self.check_call(node, scope, where)
                self._learn_arguments(node, scope)

    def _learn_arguments(self, node: ast.Call, scope: Scope) -> None:
        """Package values passed to our own functions type their parameters."""
        func = node.func
        if isinstance(func, ast.Name):
            key = func.id
        elif isinstance(func, ast.Attribute) and _is_self(func.value) and scope.cls:
            key = f"{scope.cls}.{func.attr}"
        else:
            return
        names = self.signatures.get(key)
        if names is None:
            return
        passed = list(zip(names, node.args, strict=False))
        passed += [(k.arg, k.value) for k in node.keywords if k.arg in names]
        for name, value in passed:
            kind = self.type_of(value, scope)
            if kind is not None and kind != MODULE:
                self.params.setdefault(key, {})[name] = kind

    def _check_overrides(self, cls: ast.ClassDef, base: str, label: str) -> None:
        owner = _lookup(self.package, base)
        for item in cls.body:
            if not isinstance(item, ast.FunctionDef) or item.name.startswith("__"):
                continue
            if not hasattr(owner, item.name):
                continue  # our own helper, not a callback
            args = [a.arg for a in item.args.args[1:]]
            sigs = signatures(getattr(owner, item.name), self.package)
            where = f"{label}:{item.lineno}"
            expr = f"{cls.name}.{item.name}({', '.join(args)}) overrides {base}"
            if sigs and not any(len(s.positional) == len(args) for s in sigs):
                self.report.add(Finding(where, expr, "the base method takes other arguments"))
            else:
                self.report.add(Finding(where, expr))

    def _learn(self, stmt: ast.stmt, scope: Scope, label: str) -> None:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        if value is None:
            return
        kind = self.type_of(value, scope)
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "__class__":
                # the Python API's downcast: the object now has the subclass's attributes
                name = _name_key(target.value)
                if name and kind and kind.startswith("type:"):
                    scope.types[name] = kind.removeprefix("type:")
                continue
            name = _name_key(target)
            if name is None:
                continue
            if kind is None:
                if self._untyped_result(value, scope):
                    where = f"{label}:{stmt.lineno}"
                    self.report.untyped.append(
                        Finding(where, ast.unparse(stmt), "its type is not followed")
                    )
                scope.types.pop(name, None)
                continue
            scope.types[name] = kind
            if name.startswith("self.") and scope.cls:
                self.attrs[f"{scope.cls}.{name.removeprefix('self.')}"] = kind

    def _untyped_result(self, value: ast.expr, scope: Scope) -> bool:
        """A call on the package whose result (not a plain value) the scan cannot follow."""
        if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Attribute):
            return False
        ours, callee = self._callee(value.func, scope)
        if not ours or callee is None or isinstance(callee, type):
            return False
        sigs = signatures(callee, self.package)
        return not sigs or not all(s.returns in PLAIN for s in sigs)


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _name_key(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and _is_self(node.value):
        return f"self.{node.attr}"
    return None


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    found = [
        getattr(stmt, name) for name in ("body", "orelse", "finalbody") if getattr(stmt, name, None)
    ]
    found.extend(handler.body for handler in getattr(stmt, "handlers", []))
    return found


def scan_files(
    package: ModuleType,
    files: Iterable[Path],
    root: Path,
    *,
    module_names: Iterable[str] = (),
    binders: Iterable[str] = (),
) -> Report:
    """Two passes: the first learns our classes' attributes and returns, the second checks."""
    scanner = Scanner(package, module_names, binders)
    for _ in range(2):
        scanner.report = Report()
        for path in files:
            scanner.scan(path, str(path.relative_to(root)))
    return scanner.report
