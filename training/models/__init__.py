"""Models for visible–infrared re-id: two-stream backbones, part-aware attention, heads, registries.

Registered models: `baseline`, `mspac`, `psmg`, `mpanet` (docs/model.md).

Public API:
    build_model(name, num_classes, **config) / build_model_from_config(config_dict, num_classes)
    ModelConfig, ModelOutput, ReIDModel, MODELS, BACKBONES, Registry
"""

from __future__ import annotations

from .. import _needs_torch  # noqa: F401  (first: names the extra when torch is missing)
from . import baseline, mpanet, mspac, psmg  # noqa: F401  (register the models)
from .attention import PartAwareAttention, part_bounds, split_rows
from .backbones import BACKBONES, TwoStreamResNet
from .base import MODELS, ModelOutput, ReIDModel
from .baseline import Baseline
from .build import build_model, build_model_from_config
from .config import ModelConfig
from .heads import BNNeck, EmbeddingHead, GeM
from .mpanet import ModalityAlleviation, MPANet, PatternAlignment
from .mspac import MSPAC, PartCascade
from .psmg import PSMG
from .registry import Registry

__all__ = [
    "BACKBONES",
    "MODELS",
    "MSPAC",
    "PSMG",
    "BNNeck",
    "Baseline",
    "EmbeddingHead",
    "GeM",
    "MPANet",
    "ModalityAlleviation",
    "ModelConfig",
    "ModelOutput",
    "PartAwareAttention",
    "PartCascade",
    "PatternAlignment",
    "ReIDModel",
    "Registry",
    "TwoStreamResNet",
    "build_model",
    "build_model_from_config",
    "part_bounds",
    "split_rows",
]
