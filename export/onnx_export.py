"""Checkpoint → ONNX: trace the eval-mode model, simplify, check, and embed the model card.

The exported function is the model's own eval forward, so normalisation (uint8 → float, ImageNet
mean/std), the NHWC → NCHW change and the per-sample stem choice by `modality` are inside the graph.
(The module is named `onnx_export` so it never shadows the `onnx` package.)
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

from vireid.card import ModelCard, Precision
from vireid.errors import ConfigError, require

from .artifact import check_contract, save_onnx, set_card, timed

DEFAULT_OPSET = 17
MIN_OPSET = 13
IO_NAMES = ("images", "modality", "embeddings")


def load_for_export(checkpoint: Any) -> tuple[Any, str | None]:
    """The model of a checkpoint in eval mode, and the checkpoint's SHA-256.

    Args:
        checkpoint: a checkpoint path (either file of the `.safetensors` + `.json` pair), a loaded
            `vireid.training.checkpoint.Checkpoint`, or an in-memory `ReIDModel` (then a SHA-256 of its
            weights: two models of one architecture must not share an embedding space fingerprint).

    Raises:
        ArtifactError: the checkpoint is missing, corrupt, or its weights do not fit its model config.
    """
    require("torch", "export", "Exporting a checkpoint to ONNX")
    from vireid.training.checkpoint import Checkpoint, load_checkpoint, load_weights
    from vireid.training.models import ReIDModel, build_model_from_config

    if isinstance(checkpoint, ReIDModel):
        return checkpoint.eval(), weights_sha256(checkpoint)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    model = build_model_from_config(ckpt.model_config, ckpt.num_classes)
    load_weights(model, ckpt)
    return model.eval(), ckpt.sha256


def weights_sha256(model: Any) -> str:
    """SHA-256 over a model's state dict (names, shapes, dtypes and values, in name order)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def card_for(model: Any, opset: int, source_sha256: str | None) -> ModelCard:
    """The FP32 ONNX artifact's card: contract, architecture, opset and source checkpoint."""
    config = model.config.to_dict()
    config.pop("pretrained", None)  # a local path used before training; meaningless once exported
    height, width = model.config.input_size
    return ModelCard(
        model_name=model.config.name,
        embedding_dim=int(model.embedding_dim),
        input_height=int(height),
        input_width=int(width),
        model_config=config,
        precision=Precision.FP32,
        opset=opset,
        source_checkpoint_sha256=source_sha256,
    )


def _newest_opset(onnx: Any) -> int:
    """The newest opset both the installed onnx and torch's TorchScript exporter (used by `_trace`) know."""
    newest = int(onnx.defs.onnx_opset_version())
    try:
        from torch.onnx import _constants  # private, hence the fallback to onnx's own limit

        return min(newest, int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET))
    except (ImportError, AttributeError):
        return newest


def _trace(model: Any, opset: int) -> bytes:
    import torch

    images, modality = model.example_inputs(2)  # one visible, one infrared: both stems traced
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer notices
        torch.onnx.export(
            model,
            (images, modality),
            # torch types `f` as a path only; the TorchScript exporter (dynamo=False) takes a file object
            buffer,  # type: ignore[arg-type]
            opset_version=opset,
            input_names=list(IO_NAMES[:2]),
            output_names=[IO_NAMES[2]],
            dynamic_axes={name: {0: "N"} for name in IO_NAMES},
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def to_onnx(
    checkpoint: Any,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    batch: str = "dynamic",
    simplify: bool = True,
) -> Path:
    """Export a checkpoint's model to an ONNX file that follows the vireid I/O contract.

    Args:
        checkpoint: checkpoint path, loaded `Checkpoint`, or in-memory `ReIDModel`.
        out: the `.onnx` file to write.
        opset: ONNX opset (default 17, the newest every supported TensorRT parses; recorded in the card).
        batch: only `"dynamic"`: the contract's batch axis is symbolic. A fixed batch belongs in the
            TensorRT profile (`to_engine(batch=(b, b, b))`), not in the portable file.
        simplify: run onnxslim (constant folding, dead-code removal) after tracing.

    Returns:
        `out`, holding the FP32 model with its `ModelCard` in `metadata_props["vireid.card"]`.

    Raises:
        ConfigError: unsupported opset or batch.
        ArtifactError: the checkpoint cannot be loaded, or the traced graph breaks the contract.
    """
    if batch != "dynamic":
        raise ConfigError(
            f"batch={batch!r}: exported ONNX files always have a dynamic batch (the I/O contract); fix a "
            "batch size in the TensorRT profile instead: to_engine(..., batch=(b, b, b))"
        )
    onnx = require("onnx", "export", "Exporting to ONNX")
    newest = _newest_opset(onnx)
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"opset must be an integer from {MIN_OPSET} to {newest} (the newest this torch and onnx "
            f"export; default {DEFAULT_OPSET}), got {opset!r}"
        )
    model, sha = load_for_export(checkpoint)
    card = card_for(model, opset, sha)
    with timed(f"ONNX export of {card.model_name}/{card.model_config.get('backbone')} (opset {opset})"):
        proto = onnx.load_model_from_string(_trace(model, opset))
    if simplify:
        proto = _simplify(proto)
    else:
        _pin_embedding_dim(proto, card.embedding_dim)
    with timed("ONNX check"):
        onnx.checker.check_model(proto, full_check=True)
    check_contract(proto, card, out)
    proto.producer_name, proto.doc_string = "vireid", f"vireid {card.model_name} embedding model"
    set_card(proto, card)
    return save_onnx(proto, out)


def _pin_embedding_dim(proto: Any, dim: int) -> None:
    """Write the static embedding width into the output's shape: the tracer names it symbolically
    (`Divembeddings_dim_1`) where the L2 normalisation divides, and only simplification resolves it."""
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if output.name == "embeddings" and len(dims) == 2 and not dims[1].dim_value:
            dims[1].dim_value = dim


def _simplify(proto: Any) -> Any:
    onnxslim = require("onnxslim", "export", "Simplifying the exported ONNX model")
    with timed("ONNX simplify (onnxslim)"):
        return onnxslim.slim(proto)
