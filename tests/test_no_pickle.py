"""No pickle anywhere: unpickling a file runs code, and galleries, checkpoints and models come from users.

Parses every Python file of the product (sdk, training, export, samples, tools) and fails on an import
of pickle-like modules, `torch.load` without `weights_only=True`, and `np.load(..., allow_pickle=True)`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p for folder in ("sdk", "training", "export", "samples", "tools") for p in (REPO / folder).rglob("*.py")
)
PICKLERS = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def problems(tree: ast.AST) -> list[str]:
    """Pickle uses in one parsed module, as `line: what` strings."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: imports {n}" for n in names if n.split(".")[0] in PICKLERS]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            if owner == "torch" and not _is_true(_keyword(node, "weights_only")):
                found.append(f"{node.lineno}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and _is_true(_keyword(node, "allow_pickle")):
                found.append(f"{node.lineno}: np.load(allow_pickle=True)")
    return found


def test_the_scan_sees_the_product_and_catches_each_pattern() -> None:
    assert len(SOURCES) > 50
    bad = (
        "import pickle\nimport torch\ntorch.load('x')\nimport numpy as np\nnp.load('y', allow_pickle=True)\n"
    )
    assert [p.split(": ")[1] for p in problems(ast.parse(bad))] == [
        "imports pickle",
        "torch.load without weights_only=True",
        "np.load(allow_pickle=True)",
    ]
    assert problems(ast.parse("import torch\ntorch.load('x', weights_only=True)\n")) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_pickle_in(path: Path) -> None:
    assert problems(ast.parse(path.read_text(encoding="utf-8"))) == []
