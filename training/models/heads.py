"""Pooling, BN-neck and identity classifier: turning a feature map into an embedding and logits.

GeM pooling (Radenović et al.) → BatchNorm1d "BN-neck" with a frozen zero bias (Luo et al., "Bag of
Tricks") → bias-free linear classifier. The metric losses see the pooled feature, the identity loss the
post-BN feature; the deployed embedding is the L2-normalised post-BN feature.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import spatial_mean


class GeM(nn.Module):
    """Generalised-mean pooling `(mean(clamp(x, eps)^p))^(1/p)` over H×W with a learnable p.

    p = 1 is average pooling and p → ∞ max pooling. p is clamped to ≥ 1 in the forward pass so a bad
    step can never make `1/p` blow up (below 1 its gradient is zero, so the trainer gives p no weight
    decay, which would otherwise push it there for good); computed in float32 because `x^p` overflows
    half precision.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps

    def forward(self, x: Tensor, channels_last: bool = False) -> Tensor:
        """`[N, C, H, W]` (or `[N, H, W, C]` with `channels_last`) → `[N, C]`."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            p = self.p.float().clamp(min=1.0)
            powered = x.float().clamp(min=self.eps).pow(p)
            mean = spatial_mean(powered) if channels_last else powered.mean(dim=(2, 3))
            # eps^p underflows float32 to 0 for p > 7.5: a channel dead over a whole part would then
            # give pow's infinite derivative at 0 and a NaN gradient for p
            return mean.clamp(min=torch.finfo(torch.float32).tiny).pow(1.0 / p)


class BNNeck(nn.BatchNorm1d):
    """BatchNorm1d whose bias is fixed at zero (not trained), so the classifier's hyperplanes pass
    through the origin and the normalised embedding keeps the geometry the classifier learned."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)


class EmbeddingHead(nn.Module):
    """GeM → BN-neck → bias-free classifier for one feature map (the global map or one part).

    Args:
        channels: Channels of the incoming map (= embedding size).
        num_classes: Training identities (classifier outputs).
        gem_p: Initial GeM exponent.
    """

    def __init__(self, channels: int, num_classes: int, gem_p: float = 3.0) -> None:
        super().__init__()
        self.pool = GeM(gem_p)
        self.bnneck = BNNeck(channels)
        self.classifier = nn.Linear(channels, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, fmap: Tensor, logits: bool = True, channels_last: bool = False) -> tuple[Tensor, ...]:
        """Pooled feature and post-BN feature (each `[N, C]`), plus identity logits if `logits`.

        `fmap` is `[N, C, H, W]`, or `[N, H, W, C]` with `channels_last`.

        Called as a module in both modes so exported node names carry the `/head/pool/…` scope (handy
        for keeping GeM and the BN-neck in float32 when converting to FP16).
        """
        feat = self.pool(fmap, channels_last)
        bn_feat = self.bnneck(feat)
        return (feat, bn_feat, self.classifier(bn_feat)) if logits else (feat, bn_feat)
