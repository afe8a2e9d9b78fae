"""Models for visible–infrared re-id: two-stream backbones, part-aware attention, heads, registries.

Public API:
    build_model(name, num_classes, **config) / build_model_from_config(config_dict, num_classes)
    ModelConfig, ModelOutput, ReIDModel, MODELS, BACKBONES, Registry
"""

from __future__ import annotations

from . import baseline, mspac  # noqa: F401  (register the models)
from .attention import PartAwareAttention, part_bounds, split_rows
from .backbones import BACKBONES, TwoStreamResNet
from .base import MODELS, ModelOutput, ReIDModel
from .baseline import Baseline
from .build import build_model, build_model_from_config
from .config import ModelConfig
from .heads import BNNeck, EmbeddingHead, GeM
from .mspac import MSPAC, PartCascade
from .registry import Registry

__all__ = [
    "BACKBONES",
    "MODELS",
    "MSPAC",
    "BNNeck",
    "Baseline",
    "EmbeddingHead",
    "GeM",
    "ModelConfig",
    "ModelOutput",
    "PartAwareAttention",
    "PartCascade",
    "ReIDModel",
    "Registry",
    "TwoStreamResNet",
    "build_model",
    "build_model_from_config",
    "part_bounds",
    "split_rows",
]
