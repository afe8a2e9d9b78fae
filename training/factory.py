"""Building what a training run needs from its `TrainConfig`: the model, the criterion, the input size,
and the fingerprint of the data a checkpoint was trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .data.imageset import ImageSet
from .losses.criterion import ReIDCriterion
from .models.base import ReIDModel
from .models.build import build_model_from_config
from .models.config import ModelConfig


def build_model(model_config: Mapping[str, Any], num_classes: int) -> ReIDModel:
    """The configured model, with the local pretrained backbone loaded when `model.pretrained` is set."""
    return build_model_from_config(model_config, num_classes, with_pretrained=True)


def build_criterion(config: TrainConfig, num_classes: int, model: ReIDModel) -> ReIDCriterion:
    """The weighted training losses of `config.loss`, sized for the model's embedding."""
    return ReIDCriterion.from_config(config.loss, num_classes, model.embedding_dim)


def input_size_of(model_config: Mapping[str, Any]) -> tuple[int, int]:
    """(H, W) the model is trained and evaluated at."""
    height, width = ModelConfig.from_dict(model_config).input_size
    return int(height), int(width)


def data_fingerprint(dataset: str, root: str | Path, images: ImageSet) -> dict[str, Any]:
    """What a checkpoint records about its training data: kind, counts and a content-list hash.

    The hash covers the sorted relative paths, sizes and labels of the training images, so two folders
    with the same files give the same fingerprint wherever they live; pixels are not read (cheap).
    """
    root = Path(root)
    digest = hashlib.sha256()
    rows = sorted(
        (str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else str(p), int(pid), int(cam))
        for p, pid, cam in zip(images.paths, images.pids, images.camids, strict=True)
    )
    for rel, pid, cam in rows:
        size = (root / rel).stat().st_size if (root / rel).is_file() else -1
        digest.update(f"{rel}\t{pid}\t{cam}\t{size}\n".encode())
    return {
        "dataset": dataset,
        "root": str(root.resolve()),
        "images": len(images),
        "identities": len(np.unique(images.pids)),
        "visible": int(np.sum(images.modalities == 0)),
        "infrared": int(np.sum(images.modalities == 1)),
        "sha256": digest.hexdigest(),
    }
