"""Identity (classification) loss: cross-entropy with optional label smoothing (`gid`, `pid`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vireid.errors import ConfigError

from .registry import LOSSES


@LOSSES.register("identity")
class IdentityLoss(nn.Module):
    """Cross-entropy over training identities, computed in float32.

    Args:
        label_smoothing: ε in [0, 1): the target puts 1 − ε on the identity and spreads ε uniformly
            (Szegedy et al.); 0 is plain cross-entropy.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean loss of `[N, K]` logits against `[N]` integer labels."""
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
