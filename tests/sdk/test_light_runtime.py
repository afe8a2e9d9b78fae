"""`import vireid` and every runtime module must load without torch, onnx, onnxruntime or TensorRT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Not `from conftest import REPO`: pytest imports every folder's conftest.py as the module "conftest".
REPO = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "onnx", "onnxruntime", "tensorrt", "pycuda", "torchvision")

SCRIPT = r"""
import importlib, json, pkgutil, sys

class Blocker:  # records every attempt to import a heavy module, even one already loaded at start
    attempts = []
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            self.attempts.append(name)
            raise ImportError(f"{name} is blocked by the light-runtime test")
        return None

preloaded = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY})
for name in [m for m in sys.modules if m.split(".")[0] in HEAVY]:  # some images import torch at start
    del sys.modules[name]
blocker = Blocker()
sys.meta_path.insert(0, blocker)
import vireid
names = ["vireid"]
for info in pkgutil.walk_packages(vireid.__path__, "vireid."):
    if info.name.startswith(("vireid.training", "vireid.export")):
        continue
    names.append(info.name)
    importlib.import_module(info.name)
heavy = sorted(set(blocker.attempts) | {m for m in sys.modules if m.split(".")[0] in HEAVY})
print(json.dumps({"modules": names, "heavy": heavy, "preloaded": preloaded}))
"""


def test_runtime_modules_import_no_heavy_dependency() -> None:
    code = f"HEAVY = {HEAVY!r}\n" + SCRIPT
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"runtime imported heavy modules: {report['heavy']}"
    # The walk really covered the runtime, not just the package root.
    assert {"vireid.card", "vireid.errors", "vireid.cli.main"} <= set(report["modules"])
    sdk_files = [p for p in (REPO / "sdk").rglob("*.py") if p.name != "__main__.py"]
    assert len(report["modules"]) >= len(sdk_files)


def test_cli_help_runs_without_heavy_imports() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from vireid.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "statement",
    [
        "import vireid.training.models",
        "import vireid.training.losses",
        "import vireid.training.pretrained",
        "import vireid.training.trainer",
        "from vireid.cli.main import main; raise SystemExit(main(['bench', 'random:resnet_tiny']))",
    ],
)
def test_training_without_torch_names_the_extra(statement: str) -> None:
    """Without torch these raised a bare ModuleNotFoundError from deep inside (and `vireid bench` on a
    checkpoint printed a traceback); `vireid.training` itself (readers, generator) needs no torch."""
    script = "import sys\nsys.modules['torch'] = None  # as if torch were not installed\n" + statement
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "pip install 'vireid[train]'" in output, output
    if "cli" in statement:  # the command prints one line, exit 1
        assert done.returncode == 1 and "Traceback" not in output, output
    else:
        assert "MissingDependencyError" in output and "ModuleNotFoundError" not in output.splitlines()[-1]
