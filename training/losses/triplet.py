"""Batch-hard triplet loss (Hermans et al., 2017), for comparison with MeCen."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vireid.errors import ConfigError

from .registry import LOSSES


def pairwise_distance(x: Tensor) -> Tensor:
    """Euclidean distances `[N, N]` between rows, with a floor so the gradient at 0 stays finite.

    Always float32, also under autocast: the expansion `‖a‖² + ‖b‖² − 2ab` cancels catastrophically in
    half precision for nearby rows (exactly the pairs the metric losses care about).
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        squared = x.pow(2).sum(1)
        d2 = squared[:, None] + squared[None, :] - 2.0 * x @ x.t()
        return d2.clamp(min=1e-12).sqrt()


@LOSSES.register("triplet")
class TripletLoss(nn.Module):
    """`mean_a max(0, max_p d(a, p) − min_n d(a, n) + margin)` over anchors that have a negative.

    Positives include the anchor itself (distance 0), so an identity seen once contributes only its
    hardest negative. A batch with a single identity has no valid anchor and gives 0.

    Args:
        margin: Required gap between the hardest negative and the hardest positive.
        normalize: L2-normalise features first (distances then lie in [0, 2]).
    """

    def __init__(self, margin: float = 0.3, normalize: bool = False) -> None:
        super().__init__()
        if margin < 0:
            raise ConfigError(f"loss.triplet_margin must be ≥ 0, got {margin!r}")
        self.margin = float(margin)
        self.normalize = normalize

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        """Loss of `[N, D]` features with `[N]` labels."""
        x = features.float()
        if self.normalize:
            x = F.normalize(x, dim=1)
        dist = pairwise_distance(x)
        same = targets[:, None] == targets[None, :]
        hardest_positive = dist.masked_fill(~same, 0.0).amax(1)
        hardest_negative = dist.masked_fill(same, torch.inf).amin(1)
        valid = ~same.all(1)
        if not bool(valid.any()):
            return x.sum() * 0.0
        return F.relu(hardest_positive - hardest_negative + self.margin)[valid].mean()
