"""Building what a training run needs from its `TrainConfig`: the model, the criterion, the input size,
the training images, and the fingerprint of the data a checkpoint was trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vireid.errors import ConfigError

from .config import TrainConfig
from .data.imageset import ImageSet
from .losses.criterion import MODEL_LOSSES, ReIDCriterion
from .models.base import MODELS, ReIDModel, model_class
from .models.build import build_model_from_config
from .models.config import ModelConfig


def build_model(model_config: Mapping[str, Any], num_classes: int, with_pretrained: bool = True) -> ReIDModel:
    """The configured model, with the local pretrained backbone loaded when `model.pretrained` is set
    (and `with_pretrained`: a resumed run takes every weight from its checkpoint instead)."""
    return build_model_from_config(model_config, num_classes, with_pretrained=with_pretrained)


def check_training_config(config: TrainConfig, with_pretrained: bool = True) -> None:
    """Fail now on a config whose model or losses cannot be built, or whose weights file is missing.

    The model and its losses are built on PyTorch's meta device (no memory, no weights, no random
    numbers drawn), so the check costs about 0.05 s and runs before a trainer lists and decodes its
    images.

    Raises:
        ConfigError: the model or a loss does not build (the message names the key and the options).
        ArtifactError: `model.pretrained` names no file.
    """
    import torch

    with torch.device("meta"):
        model = build_model_from_config(config.model, 2, with_pretrained=False)
        build_criterion(config, 2, model)
    pretrained = ModelConfig.from_dict(config.model).pretrained
    if pretrained and with_pretrained:
        from .pretrained import check_pretrained_file

        check_pretrained_file(pretrained)


def build_criterion(config: TrainConfig, num_classes: int, model: ReIDModel) -> ReIDCriterion:
    """The weighted training losses of `config.loss`, sized for the model's embedding.

    Model-specific loss weights left null take the model's defaults (`ReIDModel.default_losses`); a
    loss that needs an output the model does not produce raises `ConfigError` naming the models that do.
    """
    loss = dataclasses.asdict(config.loss)
    for name, needs in MODEL_LOSSES.items():
        if loss[name] is None:
            loss[name] = type(model).default_losses.get(name, 0.0)
        if loss[name] and needs is not None and not _produces(model, needs):
            raise ConfigError(
                f"loss.{name} needs {needs.replace('_', ' ')}, which model {model.config.name!r} does not "
                f"produce (models that do: {', '.join(_models_producing(needs))}); set loss.{name} to 0"
            )
    return ReIDCriterion.from_config(loss, num_classes, model.embedding_dim)


def _produces(model: ReIDModel, output: str) -> bool:
    if output == "part_features":
        return model.num_part_features > 0
    return output in type(model).provides


def _models_producing(output: str) -> list[str]:
    if output == "part_features":
        return ["mspac", "psmg", "mpanet", "baseline with parts"]
    return [name for name in MODELS.names() if output in model_class(name).provides]


def input_size_of(model_config: Mapping[str, Any]) -> tuple[int, int]:
    """(H, W) the model is trained and evaluated at."""
    height, width = ModelConfig.from_dict(model_config).input_size
    return int(height), int(width)


def training_images(config: TrainConfig, root: str | Path) -> ImageSet:
    """The images `config` trains on in the dataset folder `root` (its split, trial and val setting)."""
    from .data.regdb import RegDB
    from .data.sysu import SysuMM01

    if config.data.dataset == "sysu":
        return SysuMM01(root).train_set(with_val=config.data.val_split != "val")
    return RegDB(root).train_set(config.data.regdb_trial)


def training_fingerprint(config: TrainConfig, root: str | Path) -> dict[str, Any]:
    """`data_fingerprint` of what `config` would train on in `root`: compare it with a checkpoint's
    `data` to tell whether the checkpoint was trained on this folder's current content."""
    return data_fingerprint(config.data.dataset, root, training_images(config, root))


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
