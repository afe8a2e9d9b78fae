"""Test fixture: a tiny ONNX model that follows the vireid I/O contract, built with the `onnx` helper API.

`build_contract_model(path)` writes a file with inputs `images` uint8 `[N, H, W, 3]` and `modality`
int32 `[N]`, output `embeddings` float32 `[N, D]` L2-normalised, and its `ModelCard` in
`metadata_props["vireid.card"]`. The graph is a miniature of the real one: uint8 → float, mean/std
normalisation, NHWC → NCHW, average pooling to a 4×2 grid, a linear projection, a per-modality scale
and bias picked with `Gather` (so the modality really changes the output), then L2 normalisation.
`reference_embeddings` computes the same function in numpy, so tests can check that data flows
through a backend unchanged. Keyword arguments break the contract on purpose for error tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vireid.card import CARD_KEY, BatchProfile, ModelCard

GRID = (4, 2)  # pooled rows x columns
FEATURES = 3 * GRID[0] * GRID[1]


def contract_card(
    height: int = 32, width: int = 16, dim: int = 16, seed: int = 0, **changes: Any
) -> ModelCard:
    """The card of a contract model (changes are applied with `ModelCard.replace`)."""
    card = ModelCard(
        model_name="contract-fixture",
        embedding_dim=dim,
        input_height=height,
        input_width=width,
        model_config={"fixture": "contract", "seed": seed},
        opset=17,
        profile=BatchProfile(1, 4, 8),
        source_checkpoint_sha256=f"{seed:064x}",
        match_threshold=0.5,
    )
    return card.replace(**changes) if changes else card


def _weights(seed: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    projection = (rng.standard_normal((FEATURES, dim)) / np.sqrt(FEATURES)).astype(np.float32)
    scale = (1.0 + 0.5 * rng.standard_normal((2, dim))).astype(np.float32)
    bias = (0.5 * rng.standard_normal((2, dim))).astype(np.float32)
    return projection, scale, bias


def reference_embeddings(
    images: np.ndarray, modality: np.ndarray, dim: int = 16, seed: int = 0
) -> np.ndarray:
    """What the contract model computes, in numpy (float64, cast to float32 at the end)."""
    projection, scale, bias = _weights(seed, dim)
    n, height, width, _ = images.shape
    x = (images.astype(np.float64) - 127.5) / 64.0
    pooled = x.reshape(n, GRID[0], height // GRID[0], GRID[1], width // GRID[1], 3).mean(axis=(2, 4))
    features = pooled.transpose(0, 3, 1, 2).reshape(n, FEATURES)  # NCHW flatten order
    h = features @ projection * scale[modality] + bias[modality]
    return (h / np.linalg.norm(h, axis=1, keepdims=True)).astype(np.float32)


def _graph_nodes(height: int, width: int, images: str, output: str) -> list[onnx.NodeProto]:
    kernel = [height // GRID[0], width // GRID[1]]
    make = helper.make_node
    return [
        make("Cast", [images], ["t_pixels"], to=TensorProto.FLOAT),
        make("Sub", ["t_pixels", "mean"], ["t_centred"]),
        make("Mul", ["t_centred", "inv_std"], ["t_normalised"]),
        make("Transpose", ["t_normalised"], ["t_nchw"], perm=[0, 3, 1, 2]),
        make("AveragePool", ["t_nchw"], ["t_pooled"], kernel_shape=kernel, strides=kernel),
        make("Flatten", ["t_pooled"], ["t_features"], axis=1),
        make("MatMul", ["t_features", "projection"], ["t_projected"]),
        make("Gather", ["scale_table", "t_modality_index"], ["scale"], axis=0),
        make("Gather", ["bias_table", "t_modality_index"], ["bias"], axis=0),
        make("Mul", ["t_projected", "scale"], ["t_scaled"]),
        make("Add", ["t_scaled", "bias"], ["t_raw"]),
        make("LpNormalization", ["t_raw"], [output], axis=1, p=2),
    ]


def build_contract_model(
    path: str | Path,
    *,
    height: int = 32,
    width: int = 16,
    dim: int = 16,
    seed: int = 0,
    card: ModelCard | None = None,
    with_card: bool = True,
    images_name: str = "images",
    images_dtype: int = TensorProto.UINT8,
    modality_dtype: int = TensorProto.INT32,
    output_name: str = "embeddings",
    batch: str | int = "N",
) -> Path:
    """Write a contract-conforming model to `path` (and return it); keywords bend it for error tests.

    Args:
        path: where to write the `.onnx` file.
        height, width: input size (multiples of 4 and 2).
        dim: embedding size.
        seed: weights seed (the same seed gives the same function).
        card: card to embed (default `contract_card(height, width, dim, seed)`); `with_card=False` omits it.
        images_name, images_dtype, modality_dtype, output_name, batch: graph I/O as declared, for
            building files that break the contract (e.g. `images_dtype=TensorProto.FLOAT`, `batch=4`).
    """
    if height % GRID[0] or width % GRID[1]:
        raise ValueError(f"height must be a multiple of {GRID[0]} and width of {GRID[1]}")
    projection, scale, bias = _weights(seed, dim)
    initializers = [
        numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
        numpy_helper.from_array(np.array(1 / 64.0, np.float32), "inv_std"),
        numpy_helper.from_array(projection, "projection"),
        numpy_helper.from_array(scale, "scale_table"),
        numpy_helper.from_array(bias, "bias_table"),
    ]
    nodes = _graph_nodes(height, width, images_name, output_name)
    nodes.insert(0, helper.make_node("Identity", ["modality"], ["t_modality_index"]))
    graph = helper.make_graph(
        nodes,
        "vireid_contract_fixture",
        [
            helper.make_tensor_value_info(images_name, images_dtype, [batch, height, width, 3]),
            helper.make_tensor_value_info("modality", modality_dtype, [batch]),
        ],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, dim])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vireid-tests"
    )
    model.ir_version = 8
    if with_card:
        entry = model.metadata_props.add()
        entry.key = CARD_KEY
        entry.value = (card or contract_card(height, width, dim, seed)).to_json()
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path
