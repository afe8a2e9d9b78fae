"""Type-check vireid as Python imports it: sdk/ as `vireid`, training/ as `vireid.training`, export/ as
`vireid.export`.

    .venv/bin/python tools/typecheck.py [MYPY OPTIONS]      (what `make test` runs)

The editable install maps the three folders onto one package through an import hook that mypy cannot
follow, so `mypy sdk training export` checks each folder under its own name and types every
`vireid.*` import across them as Any: a wrong call from training/ into the runtime would pass. This
script builds `.typecheck/vireid/` (git-ignored), a tree of links laid out like the installed package,
runs mypy on it with the settings of pyproject.toml, and prints the findings with the repository's
paths. Exit status: mypy's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".typecheck"
SUBPACKAGES = {"training": ROOT / "training", "export": ROOT / "export"}


def link_tree() -> Path:
    """`.typecheck/vireid/`: a link to every entry of sdk/, and to training/ and export/ inside it."""
    package = TREE / "vireid"
    package.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in (ROOT / "sdk").iterdir() if entry.name != "__pycache__"}
    clash = sorted(set(wanted) & set(SUBPACKAGES))
    if clash:
        raise SystemExit(f"sdk/ holds {clash}, which would hide the subpackage(s) of the same name")
    wanted.update(SUBPACKAGES)
    for link in package.iterdir():
        if link.name not in wanted or not link.is_symlink() or link.resolve() != wanted[link.name].resolve():
            link.unlink()
    for name, target in wanted.items():
        link = package / name
        if not link.is_symlink():
            link.symlink_to(target)
    return package


def repository_path(line: str) -> str:
    """A mypy output line with `vireid/...` paths turned back into sdk/, training/, export/ paths."""
    for name in SUBPACKAGES:
        line = line.replace(f"vireid{os.sep}{name}{os.sep}", f"{name}{os.sep}")
    return line.replace(f"vireid{os.sep}", f"sdk{os.sep}")


def main(argv: list[str]) -> int:
    link_tree()
    command = [
        sys.executable, "-m", "mypy",
        "--config-file", str(ROOT / "pyproject.toml"),
        "--cache-dir", str(ROOT / ".mypy_cache"),
        *argv, "vireid",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=TREE, capture_output=True, text=True, check=False)
    for stream, text in ((sys.stdout, run.stdout), (sys.stderr, run.stderr)):
        for line in text.splitlines():
            print(repository_path(line), file=stream)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
