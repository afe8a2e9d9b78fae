"""PSMG: parameter sharing and multi-granularity feature learning (Complex & Intelligent Systems 2024).

As this project builds it from the abstract (decisions the abstract leaves open are in docs/model.md):

- **Parameter sharing**: the two-stream backbone keeps the stem *and layer1* modality-specific by default
  (`specific_stages: 2`), but the two branches share their convolution weights (`share_convs: true`):
  one set of filters for both modalities, BatchNorm statistics per modality. layer2–layer4 are shared
  outright. Both knobs are config keys, so the split point is configurable.
- **Multi-granularity branch**: the global map (coarse) plus horizontal stripes at each configured
  granularity (`parts`, default (4, 2): fine and medium). Each granularity has its own 1×1 conv + BN +
  ReLU embedding layer before its stripes are pooled, so part features are not just slices of the
  global one. Every stripe gets a GeM/BN/classifier head (the `pid` loss) and feeds the hetero-center
  triplet loss; the deployed embedding is the global feature (same size as every other model's).
- **Losses** (defaults when the config leaves them null): center alignment on the global feature and
  hetero-center triplet on the part features, on top of the shared identity losses.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from .attention import split_rows
from .base import MODELS, ReIDModel
from .config import ModelConfig


class GranularityEmbedding(nn.Sequential):
    """1×1 convolution + BN + ReLU on the whole map before it is cut into one granularity's stripes."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())


@MODELS.register("psmg")
class PSMG(ReIDModel):
    """Conv-sharing two-stream ResNet + multi-granularity (global + stripes) heads (registry name `psmg`)."""

    default_parts: ClassVar[tuple[int, ...]] = (4, 2)
    default_config: ClassVar[dict[str, Any]] = {"specific_stages": 2, "share_convs": True}
    default_losses: ClassVar[dict[str, float]] = {"center_alignment": 1.0, "hetero_triplet": 1.0}

    def __init__(self, config: ModelConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        channels = self.backbone.out_channels
        self.granularities = tuple(p for p in self.parts if p > 1)
        self.embeddings = nn.ModuleList(GranularityEmbedding(channels) for _ in self.granularities)

    def refine(self, fmap: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Global map unchanged; in training, every granularity's embedded map cut into its stripes."""
        if not self.training:
            return fmap, []
        stripes = [
            stripe
            for count, embed in zip(self.granularities, self.embeddings, strict=True)
            for stripe in split_rows(embed(fmap), count)
        ]
        return fmap, stripes
