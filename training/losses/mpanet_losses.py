"""MPANet's mutual mean learning and the pattern diversity regulariser.

- `mutual_mean`: two modality-specific identity classifiers on the same feature. Each is trained by
  cross-entropy on its own modality's samples, and on every sample each is pulled (KL divergence)
  toward the *mean* of the two predictions, held fixed: the classifiers teach each other what an
  identity looks like in the other modality, which pulls the shared feature toward modality-invariance.
- `pattern_diversity`: the K pattern maps of one image, flattened and L2-normalised, should not
  overlap: the mean pairwise cosine between different patterns (0 when disjoint, 1 when identical).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import LOSSES


@LOSSES.register("mutual_mean")
class MutualMeanLoss(nn.Module):
    """`CE_vis(visible samples) + CE_ir(infrared samples) + Σ_m KL(mean prediction ‖ p_m)` (float32).

    Args:
        label_smoothing: ε of both cross-entropies.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: tuple[Tensor, Tensor], labels: Tensor, modality: Tensor) -> Tensor:
        visible_logits, infrared_logits = (lg.float() for lg in logits)
        loss = visible_logits.new_zeros(())
        for own_logits, mask in ((visible_logits, modality == 0), (infrared_logits, modality != 0)):
            if mask.any():
                loss = loss + F.cross_entropy(
                    own_logits[mask], labels[mask], label_smoothing=self.label_smoothing
                )
        log_probs = [F.log_softmax(lg, dim=1) for lg in (visible_logits, infrared_logits)]
        mean = torch.stack([lp.exp() for lp in log_probs]).mean(0).detach()
        return loss + sum(F.kl_div(lp, mean, reduction="batchmean") for lp in log_probs)


@LOSSES.register("pattern_diversity")
class PatternDiversityLoss(nn.Module):
    """Mean cosine similarity between the different pattern maps of each image (`[N, K, H, W]`)."""

    def forward(self, maps: Tensor) -> Tensor:
        count = maps.shape[1]
        if count < 2:
            return maps.new_zeros((), dtype=torch.float32)
        with torch.autocast(device_type=maps.device.type, enabled=False):  # float32 products
            flat = F.normalize(maps.float().flatten(2), dim=2)
            gram = flat @ flat.transpose(1, 2)
        off_diagonal = ~torch.eye(count, dtype=torch.bool, device=maps.device)
        return gram[:, off_diagonal].mean()
