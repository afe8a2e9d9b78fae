"""The wheel users install holds what the code reads at run time (the editable dev install hides gaps)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_copy(target: Path) -> Path:
    """The repository's tracked files only (a build in place would leave `build/` in the checkout)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_the_wheel_ships_the_configs_the_licence_and_no_tests(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout to know the tracked files")
    source, out = _tracked_copy(tmp_path / "src"), tmp_path / "dist"
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
    ]
    done = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("vireid-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    configs = {
        n.rsplit("/", 1)[1] for n in names if n.startswith("vireid/training/configs/") and n.endswith(".yaml")
    }
    assert configs == {p.name for p in (REPO / "configs").glob("*.yaml")}  # `vireid train --config demo_cpu`
    assert "vireid/py.typed" in names and any(n.endswith("licenses/LICENSE") for n in names)
    assert {"vireid/cli/main.py", "vireid/training/trainer.py", "vireid/export/chain.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "samples/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "vireid = vireid.cli.main:main" in archive.read(entry_points).decode()


def test_type_checkers_see_every_lazily_exported_name_of_vireid_export() -> None:
    """`vireid.export` serves its names through `__getattr__` (cheap import); without the
    `TYPE_CHECKING` imports a user's type checker would see every one of them as `Any`."""
    import ast

    import vireid.export as export

    tree = ast.parse((REPO / "export" / "__init__.py").read_text(encoding="utf-8"))
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen = {
        alias.name: node.module
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == export._EXPORTS  # the same names, from the same submodules
    assert sorted(export.__all__) == sorted(export._EXPORTS)


def test_every_public_signature_of_the_runtime_resolves_its_type_hints() -> None:
    """Tools that read annotations at run time (typeguard, pydantic, IDEs' introspection) call
    `typing.get_type_hints`, which fails on a name imported only under `TYPE_CHECKING`."""
    import inspect
    import typing

    import vireid
    import vireid.gallery
    import vireid.streams

    checked, failures = 0, []
    for module in (vireid, vireid.gallery, vireid.streams):
        for name in module.__all__:
            obj = getattr(module, name)
            members = [obj]
            if inspect.isclass(obj):
                members += [
                    m for n, m in vars(obj).items() if inspect.isfunction(m) and not n.startswith("_")
                ]
            for member in filter(callable, members):
                try:
                    typing.get_type_hints(member)
                    checked += 1
                except Exception as exc:  # collected, reported together
                    failures.append(f"{module.__name__}.{name}: {member!r}: {type(exc).__name__}: {exc}")
    assert not failures and checked > 100, failures
