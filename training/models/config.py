"""`ModelConfig`: the typed, JSON-round-trippable description a model is rebuilt from.

Checkpoints store `config.to_dict()`; the exporter and evaluators call
`build_model_from_config(config_dict, num_classes)` to get the same network back.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vireid.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a re-id model.

    Attributes:
        name: Model registry name (`mspac`, `baseline`, `psmg`, `mpanet`).
        backbone: Backbone registry name (`resnet50`, `resnet34`, `resnet18`, `resnet_tiny`).
        parts: Part counts of the cascade stages, finest first, e.g. (6, 3, 1). `None` takes the
            model's default: (6, 3, 1) for `mspac`, () for `baseline` (no part heads), (4, 2) for
            `psmg`; `mpanet` refuses it (its part features are patterns, `patterns`).
        last_stride: Stride of layer4 (1 or 2).
        width: Backbone base width (stem / layer1 channels); `None` = the backbone's standard width.
        input_size: (H, W) the model is trained and exported at.
        pretrained: Local torchvision-layout ImageNet state dict (.pth/.pt/.safetensors), or None.
        gem_p: Initial GeM exponent.
        reduction: Channel-attention MLP reduction ratio r.
        gate: Part-aware attention residual gate: "mask" (`x_o + x''`, default) or "feature" (the
            literal `x_o + x_o ⊗ x''`, quadratic in the trunk); see docs/model.md.
        specific_stages: Leading backbone stages that are modality-specific, counting the stem (1 = stem
            only … 4); `None` takes the model's default (2 for `psmg`, else 1).
        share_convs: The modality-specific stages share convolution weights, keeping BatchNorm per
            modality; `None` takes the model's default (true for `psmg`, else false).
        patterns: Learned pattern maps of `mpanet`'s pattern alignment module (`None`: 4; others: unused).
    """

    name: str = "mspac"
    backbone: str = "resnet50"
    parts: tuple[int, ...] | None = None
    last_stride: int = 1
    width: int | None = None
    input_size: tuple[int, int] = (288, 144)
    pretrained: str | None = None
    gem_p: float = 3.0
    reduction: int = 16
    gate: str = "mask"
    specific_stages: int | None = None
    share_convs: bool | None = None
    patterns: int | None = None

    def __post_init__(self) -> None:
        _check_parts(self.parts)
        if self.last_stride not in (1, 2):
            raise ConfigError(f"model.last_stride must be 1 or 2, got {self.last_stride!r}")
        if self.width is not None and (not isinstance(self.width, int) or self.width < 1):
            raise ConfigError(f"model.width must be a positive integer or null, got {self.width!r}")
        if len(self.input_size) != 2 or any(not isinstance(v, int) or v < 32 for v in self.input_size):
            raise ConfigError(f"model.input_size must be [H, W] integers ≥ 32, got {list(self.input_size)}")
        if not self.gem_p >= 1.0:
            raise ConfigError(f"model.gem_p must be ≥ 1 (1 = average pooling), got {self.gem_p!r}")
        if not isinstance(self.reduction, int) or self.reduction < 1:
            raise ConfigError(f"model.reduction must be a positive integer, got {self.reduction!r}")
        stages = self.specific_stages
        if stages is not None and (
            isinstance(stages, bool) or not isinstance(stages, int) or stages not in (1, 2, 3, 4)
        ):
            raise ConfigError(
                f"model.specific_stages must be 1 (stem only), 2, 3 or 4, got {self.specific_stages!r}"
            )
        if self.share_convs is not None and not isinstance(self.share_convs, bool):
            raise ConfigError(f"model.share_convs must be true, false or null, got {self.share_convs!r}")
        if self.patterns is not None and (
            not isinstance(self.patterns, int) or isinstance(self.patterns, bool) or self.patterns < 1
        ):
            raise ConfigError(f"model.patterns must be a positive integer or null, got {self.patterns!r}")
        if self.gate not in ("mask", "feature"):
            raise ConfigError(f"model.gate must be 'mask' or 'feature', got {self.gate!r}")
        height = self.feature_size()[0]
        if self.parts and max(self.parts) > height:
            raise ConfigError(
                f"model.parts {list(self.parts)}: the {self.input_size[0]}-pixel-high input gives a "
                f"{height}-row feature map, too few rows for {max(self.parts)} parts; use fewer parts, "
                "a taller input_size" + (" or last_stride 1" if self.last_stride != 1 else "")
            )

    def feature_size(self) -> tuple[int, int]:
        """(H, W) of the backbone's output map for `input_size` (output stride 16 or 32)."""
        halvings = 4 + (self.last_stride == 2)
        return tuple(_halve(v, halvings) for v in self.input_size)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: ModelConfig | Mapping[str, Any]) -> ModelConfig:
        """Build from a (JSON/YAML) mapping (a `ModelConfig` is returned as is); unknown keys raise
        `ConfigError` listing the known ones."""
        if isinstance(data, ModelConfig):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"model config must be a mapping, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown model config key(s) {unknown}; known keys: {known}")
        values = dict(data)
        for key in ("parts", "input_size"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if isinstance(values.get("gem_p"), int):
            values["gem_p"] = float(values["gem_p"])
        return cls(**values)


def _halve(size: int, times: int) -> int:
    for _ in range(times):
        size = math.ceil(size / 2)
    return size


def _check_parts(parts: tuple[int, ...] | None) -> None:
    if parts is None:
        return
    if not isinstance(parts, tuple) or any(not isinstance(p, int) or isinstance(p, bool) for p in parts):
        raise ConfigError(f"model.parts must be a list of integers, e.g. [6, 3, 1], got {parts!r}")
    if any(p < 1 for p in parts) or any(a <= b for a, b in itertools.pairwise(parts)):
        raise ConfigError(
            f"model.parts must be positive and strictly decreasing (finest stage first), got {list(parts)}; "
            "e.g. [6, 3, 1], [3, 1] or [6]"
        )
