"""vireid's typed errors."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

import vireid.errors as errors

SPECIAL = {  # errors whose constructor takes more than a message
    errors.DatasetError: ("/data/x", "OpenCV could not write this image (disk full?)", "cam1/0001/"),
    errors.MissingDependencyError: ("cv2", "onnx", "Reading video", "or install opencv"),
    errors.BrokenDependencyError: ("onnxruntime", "ImportError: numpy.core.multiarray failed to import"),
}


def _every_error() -> list[type]:
    found, todo = [], [errors.VireidError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


@pytest.mark.parametrize("cls", _every_error(), ids=lambda c: c.__name__)
def test_every_vireid_error_survives_pickling(cls: type) -> None:
    """A synth worker's DatasetError crossed the process pool as 'a worker process died, add a
    __main__ guard': errors with their own __init__ could not be unpickled."""
    error = cls(*SPECIAL.get(cls, ("g.db: locked",)))
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)


def test_require_tells_a_missing_package_from_a_broken_one(tmp_path: Path, monkeypatch) -> None:
    """An installed package that fails to import (built for another numpy) was reported as 'not
    installed', and reinstalling as told changed nothing."""
    (tmp_path / "vireid_test_broken.py").write_text("raise ImportError('_ARRAY_API not found')\n")
    (tmp_path / "vireid_test_needs.py").write_text("import vireid_test_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(errors.MissingDependencyError, match=r"pip install 'vireid\[onnx\]'"):
        errors.require("vireid_test_not_installed", "onnx", "Running an ONNX model")
    with pytest.raises(errors.BrokenDependencyError, match=r"installed but fails to import .*_ARRAY_API"):
        errors.require("vireid_test_broken", "onnx", "Running an ONNX model")
    with pytest.raises(errors.BrokenDependencyError, match="vireid_test_absent_dependency"):
        errors.require("vireid_test_needs", "onnx", "Running an ONNX model")
    assert "vireid_test_broken" not in sys.modules
