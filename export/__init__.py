"""vireid.export: checkpoint → ONNX → FP16 ONNX → TensorRT engine → Triton, each step verified.

Public API (each step a small function; the `vireid export` command chains them):

    to_onnx(checkpoint, out, opset=17)            FP32 ONNX with the model card (needs torch)
    to_fp16(onnx, out=None)                        FP16 compute, float32 I/O, fragile parts in FP32
    to_int8(onnx, out=None, *, data, options=None) static QDQ INT8, calibrated on both modalities
    to_engine(onnx, out=None, batch=(1, 8, 32))    TensorRT engine + <engine>.json card (needs tensorrt)
    trtexec_command(onnx, out, ...)                the same build as a trtexec command line
    attach_card(engine, onnx, batch=...)           card for an engine built elsewhere (trtexec)
    to_triton(artifact, repo_dir, name, ...)       Triton model repository entry
    verify(reference, candidate, inputs=None)      ParityReport, truthy within thresholds
    calibrate_threshold(embed, data_root, size)    match threshold for a false-match rate
    export_chain(checkpoint, steps, out_dir)       what `vireid export` runs

Submodules are imported on first use, so `import vireid.export` is cheap and building an engine from
an ONNX file does not need torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each on first use
    from .calibrate import Calibration, calibrate_threshold
    from .chain import ChainOptions, ChainResult, export_chain
    from .fp16 import to_fp16
    from .int8 import to_int8
    from .onnx_export import to_onnx
    from .parity import ParityReport, Thresholds, synthetic_gallery, verify
    from .tensorrt import attach_card, to_engine, trtexec_command
    from .triton import TritonModel, to_triton

_EXPORTS = {
    "to_onnx": "onnx_export",
    "to_fp16": "fp16",
    "to_int8": "int8",
    "to_engine": "tensorrt",
    "trtexec_command": "tensorrt",
    "attach_card": "tensorrt",
    "to_triton": "triton",
    "TritonModel": "triton",
    "verify": "parity",
    "ParityReport": "parity",
    "Thresholds": "parity",
    "synthetic_gallery": "parity",
    "calibrate_threshold": "calibrate",
    "Calibration": "calibrate",
    "export_chain": "chain",
    "ChainResult": "chain",
    "ChainOptions": "chain",
}

__all__ = [
    "Calibration",
    "ChainOptions",
    "ChainResult",
    "ParityReport",
    "Thresholds",
    "TritonModel",
    "attach_card",
    "calibrate_threshold",
    "export_chain",
    "synthetic_gallery",
    "to_engine",
    "to_fp16",
    "to_int8",
    "to_onnx",
    "to_triton",
    "trtexec_command",
    "verify",
]  # the keys of _EXPORTS (a test checks)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vireid.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
