"""The Python examples in the READMEs and docs/ hold to the code: each block compiles, imports what
exists, uses `vireid.X` names that exist, and calls what it imports with arguments its signature
takes (keyword names and the number of positional arguments). Calls on objects the example made
itself (`embedder.embed(...)`) are not followed: that needs the example to run, which the samples'
tests do."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "samples" / "README.md", *(ROOT / "docs").glob("*.md")])
BLOCK = re.compile(r"^(```|~~~)python[^\n]*\n(.*?)^\1", re.S | re.M)
MISSING = object()


def _imported(tree: ast.AST) -> tuple[dict[str, Any], list[str]]:
    """Names the block binds by importing vireid modules, and the imports that fail."""
    names: dict[str, Any] = {}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "vireid":
                    try:
                        module = importlib.import_module(alias.name)
                    except ImportError as exc:
                        problems.append(f"import {alias.name}: {exc}")
                        continue
                    names[alias.asname or alias.name.split(".")[0]] = (
                        module if alias.asname else importlib.import_module("vireid")
                    )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vireid":
            try:
                module = importlib.import_module(node.module or "")
            except ImportError as exc:
                problems.append(f"from {node.module} import ...: {exc}")
                continue
            for alias in node.names:
                value = getattr(module, alias.name, MISSING)
                if value is MISSING:
                    try:
                        value = importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        problems.append(f"from {node.module} import {alias.name}: no such name")
                        continue
                names[alias.asname or alias.name] = value
    return names, problems


def _resolve(node: ast.AST, names: dict[str, Any]) -> Any:
    """The object an expression like `vireid.streams.Pipeline` names, MISSING if it names nothing
    there, None when it is not made of imported names."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, names)
        if owner is MISSING:
            return MISSING
        if inspect.isclass(owner):  # `Modality.INFRARED`, `Frame.of`, `ModelCard.from_json`
            return getattr(owner, node.attr, MISSING)
        if owner is None or not inspect.ismodule(owner):
            return None
        value = getattr(owner, node.attr, MISSING)
        if value is MISSING:
            try:
                return importlib.import_module(f"{owner.__name__}.{node.attr}")
            except ImportError:
                return MISSING
        return value
    return None


def _call_problem(call: ast.Call, target: Any, takes_self: bool = False) -> str | None:
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None  # *args / **kwargs: the numbers are not known here
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None  # a builtin without a signature
    try:
        signature.bind(
            *[None] * (len(call.args) + takes_self), **{k.arg: None for k in call.keywords if k.arg}
        )
    except TypeError as exc:
        if "missing" in str(exc):  # a required argument left out is the call's business, not drift
            try:
                signature.bind_partial(
                    *[None] * (len(call.args) + takes_self), **{k.arg: None for k in call.keywords}
                )
            except TypeError as partial:
                return str(partial)
            return None
        return str(exc)
    return None


def _instances(tree: ast.AST, names: dict[str, Any]) -> dict[str, type]:
    """Variables the block binds to an instance of an imported class: `x = Class(...)` or
    `with Class(...) as x` (a vireid context manager returns itself)."""
    out = {}
    for node in ast.walk(tree):
        pairs: list[tuple[ast.AST, ast.AST | None]] = []
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            pairs = [(node.value, node.targets[0])]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            pairs = [(item.context_expr, item.optional_vars) for item in node.items]
        for value, target in pairs:
            if isinstance(value, ast.Call) and isinstance(target, ast.Name):
                made = _resolve(value.func, names)
                if inspect.isclass(made):
                    out[target.id] = made
    return out


def _method(call: ast.Call, instances: dict[str, type]) -> tuple[Any, bool] | None:
    """(the method `x.name(...)` calls on a known instance, whether it takes self), MISSING if the
    class has no such attribute, None when the call is not of that form."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
        return None
    cls = instances.get(func.value.id)
    if cls is None:
        return None
    raw = inspect.getattr_static(cls, func.attr, MISSING)
    if raw is MISSING:
        return MISSING, False
    if isinstance(raw, (staticmethod, classmethod)) or not inspect.isfunction(raw):
        return getattr(cls, func.attr), False
    return raw, True


def problems_in(source: str) -> list[str]:
    """What in one Python block does not hold to the code (empty: nothing)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"does not compile: {exc}"]
    names, problems = _imported(tree)
    instances = _instances(tree, names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _resolve(node, names) is MISSING:
            problems.append(f"{ast.unparse(node)}: no such name")
        if not isinstance(node, ast.Call):
            continue
        target, takes_self = _resolve(node.func, names), False
        method = _method(node, instances)
        if method is not None:
            target, takes_self = method
            if target is MISSING:
                name = instances[node.func.value.id].__name__  # type: ignore[attr-defined]
                problems.append(f"{ast.unparse(node.func)}(...): {name} has no such method")
                continue
        if target is not None and target is not MISSING and callable(target):
            problem = _call_problem(node, target, takes_self)
            if problem:
                problems.append(f"{ast.unparse(node.func)}(...): {problem}")
    return sorted(set(problems))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_hold_to_the_code(page: Path) -> None:
    problems = []
    for number, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8")), 1):
        problems += [f"block {number}: {p}" for p in problems_in(match.group(2))]
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_checker_catches_what_it_is_for() -> None:
    """Each kind of drift is reported; calls it cannot judge are left alone."""
    assert problems_in("import vireid\nvireid.NoSuchThing('m.onnx')")
    assert problems_in("from vireid import NoSuchThing")
    assert problems_in("from vireid.no_such_module import x")
    assert problems_in("from vireid import Modality\nm = Modality.THERMALX")  # a class attribute
    assert problems_in("import vireid\nvireid.ModelCard.from_jsn('{}')")
    assert not problems_in("from vireid import Modality\nm = Modality.INFRARED")
    assert problems_in("import vireid\nvireid.Gallery('g.db', tiemout=3)")  # a keyword it lacks
    assert problems_in("from vireid import Gallery\nGallery('g.db', 'space', 256, 'x', 'y', 'z', 'w')")
    assert problems_in("for x in range(3)\n    pass")
    assert not problems_in(
        "import vireid\nwith vireid.Embedder('m.onnx', device='cpu') as e:\n    e.embed(x)"
    )
    assert not problems_in("from vireid import Embedder\nEmbedder(**options)")
    made = "import vireid\nwith vireid.Gallery('g.db') as g:\n    g.{}\n"
    assert problems_in(made.format("enrol('alice', v)"))  # a method the class lacks
    assert problems_in(made.format("search(q, kk=5)"))  # a keyword the method lacks
    assert not problems_in(made.format("search(q, k=5)"))
