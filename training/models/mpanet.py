"""MPANet: joint modality and pattern alignment (Wu et al., CVPR 2021), as this project builds it.

From the abstract (decisions it leaves open are in docs/model.md):

- **Modality alleviation module** (`ModalityAlleviation`): instance normalisation removes each image's
  per-channel mean and variance, the statistics that carry most of the modality (colour vs. thermal
  contrast); a learned channel gate (from the pooled map, so per image) decides how much of the
  normalised map replaces the original: `y = g ⊙ IN(x) + (1 − g) ⊙ x`. Applied to the backbone's map.
- **Pattern alignment module** (`PatternAlignment`): a 1×1 convolution + sigmoid predicts K pattern maps
  `A_k ∈ (0, 1)^{H×W}`; each pattern's feature map is `x ⊙ A_k`, pooled by its own GeM/BN/classifier head
  (the `pid` loss, one per pattern). The deployed global map is `x ⊙ (1 + mean_k A_k)`: the patterns
  re-weight the embedding toward the nuances they found without changing its size. The pattern maps are
  returned for the diversity regulariser (`pattern_diversity` loss: patterns must not overlap).
- **Mutual mean learning**: two modality-specific identity classifiers on the post-BN global feature,
  each trained on its own modality and both pulled toward their mean prediction (`mutual_mean` loss).
- **Center cluster loss** (`center_cluster`): features to their identity centre, centres apart.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vireid.errors import ConfigError

from .base import MODELS, ReIDModel
from .config import ModelConfig

DEFAULT_PATTERNS = 4


class ModalityAlleviation(nn.Module):
    """`y = g ⊙ IN(x) + (1 − g) ⊙ x` with a per-image channel gate `g = σ(MLP(avgpool(x)))`.

    Args:
        channels: Channels of the map.
        reduction: Gate MLP reduction ratio.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.norm = nn.InstanceNorm2d(channels, affine=True)
        squeeze, excite = nn.Linear(channels, hidden), nn.Linear(hidden, channels)
        self.gate = nn.Sequential(squeeze, nn.ReLU(inplace=True), excite)
        nn.init.constant_(excite.bias, -2.0)  # start close to the identity (g ≈ 0.12)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.gate(x.mean(dim=(2, 3))))[:, :, None, None]
        return torch.relu(gate * self.norm(x) + (1 - gate) * x)  # ReLU: GeM downstream needs x ≥ 0


class PatternAlignment(nn.Module):
    """K pattern maps `A_k = σ(conv1x1(x))_k`; returns the re-weighted global map, the K pattern feature
    maps `x ⊙ A_k` (only with `features`: training) and the maps themselves `[N, K, H, W]`."""

    def __init__(self, channels: int, patterns: int) -> None:
        super().__init__()
        self.patterns = patterns
        self.predict = nn.Conv2d(channels, patterns, 1)

    def forward(self, x: Tensor, features: bool = True) -> tuple[Tensor, list[Tensor], Tensor]:
        maps = torch.sigmoid(self.predict(x))
        weighted = x * (1 + maps.mean(dim=1, keepdim=True))
        pattern_feats = [x * maps[:, k : k + 1] for k in range(self.patterns)] if features else []
        return weighted, pattern_feats, maps


@MODELS.register("mpanet")
class MPANet(ReIDModel):
    """Two-stream ResNet + modality alleviation + pattern alignment + modality classifiers (`mpanet`)."""

    default_config: ClassVar[dict[str, Any]] = {
        **ReIDModel.default_config,
        "patterns": DEFAULT_PATTERNS,
    }
    default_losses: ClassVar[dict[str, float]] = {
        "mutual_mean": 1.0,
        "center_cluster": 1.0,
        "pattern_diversity": 1.0,
    }
    provides: ClassVar[frozenset[str]] = frozenset({"pattern_maps", "modality_logits"})

    def __init__(self, config: ModelConfig, num_classes: int) -> None:
        if config.parts:
            raise ConfigError(
                f"model.parts {list(config.parts)}: mpanet has no stripes; its part features are learned "
                "patterns, set model.patterns instead and leave parts unset"
            )
        super().__init__(config, num_classes)
        channels = self.backbone.out_channels
        self.alleviation = ModalityAlleviation(channels, config.reduction)
        self.pattern = PatternAlignment(channels, self.num_part_features)
        classifiers = [nn.Linear(channels, num_classes, bias=False) for _ in range(2)]
        for classifier in classifiers:
            nn.init.normal_(classifier.weight, std=0.001)
        self.modality_classifiers = nn.ModuleList(classifiers)

    @property
    def num_part_features(self) -> int:
        """One identity head per pattern."""
        return self.config.patterns or DEFAULT_PATTERNS

    def refine(self, fmap: Tensor) -> tuple[Tensor, list[Tensor], dict[str, Tensor]]:
        """Alleviate, then re-weight by the patterns; pattern maps and features for training."""
        weighted, pattern_feats, maps = self.pattern(self.alleviation(fmap), features=self.training)
        if not self.training:
            return weighted, [], {}
        return weighted, pattern_feats, {"pattern_maps": maps}

    def head_extras(self, bn_feat: Tensor) -> dict[str, Any]:
        """Logits of the visible and the infrared classifier for every sample (mutual mean learning)."""
        return {"modality_logits": tuple(classifier(bn_feat) for classifier in self.modality_classifiers)}
