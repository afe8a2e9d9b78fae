"""Building models by registry name or from a stored `ModelConfig` dict."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .base import ReIDModel, model_class
from .config import ModelConfig


def build_model_from_config(
    config: ModelConfig | Mapping[str, Any], num_classes: int, with_pretrained: bool = False
) -> ReIDModel:
    """Rebuild a model from its config (a `ModelConfig` or the dict a checkpoint stores).

    Args:
        config: Model config; `None` fields (`parts`, `specific_stages`, …) resolve to the model's defaults.
        num_classes: Training identities (sizes the classifiers, so a checkpoint's weights fit).
        with_pretrained: Load `config.pretrained` into the backbone. Off by default because this path
            usually precedes loading a checkpoint, whose weights replace the ImageNet ones anyway.

    Returns:
        The model in training mode; `model.config` is the resolved config.
    """
    config = ModelConfig.from_dict(config)
    model_cls = model_class(config.name)
    defaults = {"parts": tuple(getattr(model_cls, "default_parts", ())), **model_cls.default_config}
    unset = {key: value for key, value in defaults.items() if getattr(config, key) is None}
    if unset:
        config = dataclasses.replace(config, **unset)
    model = model_cls(config, num_classes)
    if with_pretrained and config.pretrained:
        from ..pretrained import load_pretrained

        load_pretrained(model, config.pretrained)
    return model


def build_model(name: str, num_classes: int, with_pretrained: bool = True, **config: Any) -> ReIDModel:
    """Build a registered model by name, e.g. `build_model("mspac", 395, backbone="resnet50")`.

    Keyword arguments are `ModelConfig` fields; `pretrained` weights are loaded when given (set
    `with_pretrained=False` to skip). Unknown names or keys raise `ConfigError` listing the options.
    """
    return build_model_from_config({**config, "name": name}, num_classes, with_pretrained=with_pretrained)
