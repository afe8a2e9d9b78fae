"""`ReIDModel`: what every registered model shares — input contract, backbone, heads, outputs.

One `forward(images, modality)` serves training and deployment. `images` are uint8 `[N, H, W, 3]` RGB
(float 0–255 is accepted too) and `modality` is an integer `[N]` tensor, 0 = visible, 1 = infrared (any
non-zero value is treated as infrared). The model converts NHWC → NCHW and applies the ImageNet mean/std
itself (buffers), so the exported graph carries its own preprocessing. Eval mode returns L2-normalised
`[N, D]` float32 embeddings only; training mode returns a `ModelOutput` for the losses.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vireid.errors import ConfigError, InputSpecError

from .attention import static_size
from .backbones import BACKBONES
from .config import ModelConfig
from .heads import EmbeddingHead
from .registry import Registry

MODELS: Registry[ReIDModel] = Registry("model")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
_MODEL_SPECIFIC = {"patterns": "mpanet"}  # config keys only some models take, and which
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelOutput(NamedTuple):
    """Training-mode output (a NamedTuple, so DDP and autocast traverse it like a tuple).

    Attributes:
        global_feat: Pooled global feature before the BN-neck, `[N, D]` (MeCen / triplet input).
        bn_feat: Global feature after the BN-neck, `[N, D]` (BatchNorm-normalised; its L2 normalisation
            is the deployed embedding).
        logits: Identity logits of the global feature, `[N, num_classes]` (`gid` loss).
        part_feats: Pooled part features before their BN-necks, one `[N, D]` per part.
        part_logits: Identity logits per part, one `[N, num_classes]` per part (`pid` loss).
        extras: Model-specific training tensors named in the model's `provides` (e.g. `mpanet`'s
            `pattern_maps` and `modality_logits`); empty for the other models.
    """

    global_feat: Tensor
    bn_feat: Tensor
    logits: Tensor
    part_feats: tuple[Tensor, ...]
    part_logits: tuple[Tensor, ...]
    extras: dict[str, Any] = {}  # noqa: RUF012 (never mutated: each forward builds a new dict)


class ReIDModel(nn.Module):
    """Two-stream backbone → model-specific refinement (`refine`) → GeM / BN-neck / classifier heads.

    Subclasses set `default_parts` and implement `refine`, which turns the backbone map into the global
    map plus the part maps that get their own identity heads in training.

    Args:
        config: Architecture (`parts` already resolved, see `build_model_from_config`).
        num_classes: Number of training identities.
    """

    default_parts: ClassVar[tuple[int, ...]] = ()
    default_config: ClassVar[dict[str, Any]] = {"specific_stages": 1, "share_convs": False}
    """What `None` config fields resolve to for this model (besides `parts`)."""
    default_losses: ClassVar[dict[str, float]] = {}
    """Weights of the model-specific losses when the config leaves them unset (`null`)."""
    provides: ClassVar[frozenset[str]] = frozenset()
    """Extra training outputs (`ModelOutput.extras` keys) the model produces for its losses."""
    maps_channels_last: ClassVar[bool] = False
    """`refine` returns `[N, H, W, C]` maps instead of `[N, C, H, W]` (see `MSPAC`)."""
    pixel_mean: Tensor  # buffers (register_buffer): ImageNet statistics, 0-255, `[1, 1, 1, 3]`
    pixel_std: Tensor

    def __init__(self, config: ModelConfig, num_classes: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.config = config
        self.num_classes = num_classes
        foreign = [
            key
            for key in _MODEL_SPECIFIC
            if getattr(config, key) is not None and key not in self.default_config
        ]
        if foreign:
            raise ConfigError(
                f"model.{foreign[0]} does not apply to model {config.name!r}; remove it (it is used by "
                f"{_MODEL_SPECIFIC[foreign[0]]})"
            )
        self.backbone = BACKBONES.build(
            config.backbone,
            last_stride=config.last_stride,
            width=config.width,
            specific_stages=config.specific_stages or 1,
            share_convs=bool(config.share_convs),
        )
        channels = self.backbone.out_channels
        self.head = EmbeddingHead(channels, num_classes, config.gem_p)
        self.part_heads = nn.ModuleList(
            EmbeddingHead(channels, num_classes, config.gem_p) for _ in range(self.num_part_features)
        )
        self.register_buffer("pixel_mean", _pixel_stat(IMAGENET_MEAN), persistent=False)
        self.register_buffer("pixel_std", _pixel_stat(IMAGENET_STD), persistent=False)

    @property
    def parts(self) -> tuple[int, ...]:
        """Resolved part counts of the cascade stages."""
        return self.config.parts if self.config.parts is not None else self.default_parts

    @property
    def num_part_features(self) -> int:
        """Number of part features with identity heads (every stripe of every stage with p > 1)."""
        return sum(p for p in self.parts if p > 1)

    @property
    def embedding_dim(self) -> int:
        """Size D of the deployed embedding (the backbone's output channels)."""
        return self.backbone.out_channels

    def refine(self, fmap: Tensor) -> tuple[Tensor, list[Tensor]] | tuple[Tensor, list[Tensor], dict]:
        """Backbone map → (global map, part maps for the `pid` heads[, extras for the losses]).

        Subclasses override. A third element, a dict of training tensors, goes into `ModelOutput.extras`.
        """
        raise NotImplementedError

    def head_extras(self, bn_feat: Tensor) -> dict[str, Any]:
        """Training tensors computed from the post-BN global feature (e.g. extra classifiers); none here."""
        return {}

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8/float 0–255 `[N, H, W, 3]` RGB → ImageNet-normalised float `[N, 3, H, W]`."""
        if images.dim() != 4 or static_size(images, 3) != 3:
            raise InputSpecError(
                f"images must be [N, H, W, 3] RGB (uint8, 0–255), got shape {tuple(images.shape)}"
            )
        # Normalised channels-last, against statistics tiled along one image row: ONNX Runtime then
        # broadcasts over W·3 contiguous values instead of 3 (the INT8 graph stays NHWC here, where
        # a [3]-wide broadcast made Sub and Div 5x slower).
        width = static_size(images, 2)
        mean, std = (stat.repeat(1, 1, width, 1) for stat in (self.pixel_mean, self.pixel_std))
        return ((images.float() - mean) / std).permute(0, 3, 1, 2)

    def forward(self, images: Tensor, modality: Tensor) -> Tensor | ModelOutput:
        """Embeddings `[N, D]` (eval) or a `ModelOutput` (training); see the module docstring."""
        if modality.dim() != 1:
            raise InputSpecError(
                f"modality must be a 1-D integer tensor [N] (0 visible, 1 infrared), got shape "
                f"{tuple(modality.shape)}"
            )
        if not torch.jit.is_tracing() and modality.shape[0] != images.shape[0]:
            raise InputSpecError(
                f"modality has {modality.shape[0]} entries for {images.shape[0]} images; give one per image"
            )
        fmap = self.backbone(self.preprocess(images), modality)
        global_map, part_maps, *rest = self.refine(fmap)
        layout = {"channels_last": self.maps_channels_last}
        if not self.training:
            return F.normalize(self.head(global_map, logits=False, **layout)[1], dim=1)
        feat, bn_feat, logits = self.head(global_map, **layout)
        parts = [head(part, **layout) for head, part in zip(self.part_heads, part_maps, strict=True)]
        extras = {**(rest[0] if rest else {}), **self.head_extras(bn_feat)}
        part_feats, part_logits = tuple(p[0] for p in parts), tuple(p[2] for p in parts)
        return ModelOutput(feat, bn_feat, logits, part_feats, part_logits, extras)

    @torch.no_grad()
    def embed(self, images: Tensor, modality: Tensor) -> Tensor:
        """L2-normalised embeddings whatever the current mode (switches to eval and back)."""
        was_training = self.training
        self.eval()
        try:
            return self(images, modality)
        finally:
            self.train(was_training)

    def example_inputs(self, batch: int = 2) -> tuple[Tensor, Tensor]:
        """Random `(images uint8 [N, H, W, 3], modality int32 [N])` at the configured input size (export)."""
        height, width = self.config.input_size
        device = self.pixel_mean.device
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, generator=generator)
        modality = (torch.arange(batch) % 2).to(torch.int32)
        return images.to(device), modality.to(device)


def model_class(name: str) -> type[ReIDModel]:
    """The model class registered under `name`, for its class attributes (defaults, parts, losses);
    raises `ConfigError` listing the options on a miss, `TypeError` for a registered factory that is
    not a `ReIDModel` subclass (models must be classes: the trainer and export read those attributes)."""
    factory = MODELS.get(name)
    if not (isinstance(factory, type) and issubclass(factory, ReIDModel)):
        raise TypeError(f"model {name!r} is registered with {factory!r}, not a ReIDModel subclass")
    return factory


def _pixel_stat(values: tuple[float, float, float]) -> Tensor:
    return (torch.tensor(values) * 255.0).view(1, 1, 1, 3)
