"""Marginal exponential centre (MeCen) loss from MSPAC, with the ablation's switches.

    L = exp(½ · mean_i max(‖x_i − c_{y_i}‖² − m, 0)) − 1,   ‖c_k‖ = 1,   x_i L2-normalised

The class centres are shared by both modalities, which is what pulls the visible and infrared images of
one person to the same point. Switches reproduce the paper's ablation as one class:
`center` only → ½·mean ‖x − c‖² (plain centre loss); `+margin` → ½·mean max(‖x − c‖² − m, 0);
`+exp` → the full MeCen above.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vireid.errors import ConfigError

from .registry import LOSSES

log = logging.getLogger(__name__)


@LOSSES.register("mecen")
class MeCenLoss(nn.Module):
    """MeCen with learnable unit-norm class centres.

    Centres are parametrised as `normalize(raw)` (exactly unit norm in every forward pass, whatever the
    optimiser does) and `renormalize()`, called after each optimiser step, resets the raw vectors to
    unit length so weight decay cannot shrink them and inflate their effective learning rate.

    The batch **mean** (not the sum) sits in the exponent, so the loss does not grow with the batch size.
    The exponent is clamped at `clamp`; beyond it the loss continues along its tangent, staying finite
    while keeping a gradient. Clamp events are counted in the `clamp_hits` buffer and logged.

    Args:
        num_classes: Number of training identities (one centre each).
        feat_dim: Feature size D.
        m: Margin on the squared distance (easy examples within `m` are not pulled further).
        center: Enable the loss at all (False → always 0, the `gid`-only ablation row).
        margin: Subtract the margin `m` (False → plain squared distance).
        exp: Apply `exp(·) − 1` (False → the linear, margin-only or centre-only term).
        clamp: Largest exponent used as is.
        normalize: L2-normalise the features before the distance (the project's decision).
    """

    clamp_hits: Tensor  # buffer (register_buffer): the number of clamped exponents

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        m: float = 0.1,
        center: bool = True,
        margin: bool = True,
        exp: bool = True,
        clamp: float = 10.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if m < 0 or clamp <= 0:
            raise ConfigError(f"loss.mecen: m must be ≥ 0 and clamp > 0, got m={m!r}, clamp={clamp!r}")
        self.m, self.clamp = float(m), float(clamp)
        self.center, self.margin, self.exp, self.normalize = center, margin, exp, normalize
        self.centers = nn.Parameter(F.normalize(torch.randn(num_classes, feat_dim), dim=1))
        self.register_buffer("clamp_hits", torch.zeros((), dtype=torch.long))

    def unit_centers(self) -> Tensor:
        """The centres as used by the loss, `[K, D]` with unit rows."""
        return F.normalize(self.centers, dim=1)

    def exponent(self, features: Tensor, targets: Tensor) -> Tensor:
        """`½ · mean_i max(‖x_i − c_{y_i}‖² − m, 0)` (without `− m` when `margin` is off)."""
        x = features.float()
        if self.normalize:
            x = F.normalize(x, dim=1)
        squared = (x - self.unit_centers()[targets]).pow(2).sum(1)
        if self.margin:
            squared = F.relu(squared - self.m)
        return 0.5 * squared.mean()

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        """Loss of `[N, D]` features with `[N]` labels (a scalar)."""
        if not self.center:
            return features.float().sum() * 0.0
        s = self.exponent(features, targets)
        if not self.exp:
            return s
        if bool(s.detach() > self.clamp):
            self._note_clamp(float(s.detach()))
            limit = s.new_tensor(self.clamp)
            return torch.expm1(limit) + torch.exp(limit) * (s - limit)
        return torch.expm1(s)

    def _note_clamp(self, value: float) -> None:
        self.clamp_hits += 1
        hits = int(self.clamp_hits)
        if hits & (hits - 1) == 0:  # 1, 2, 4, 8, … so a long run does not flood the log
            log.warning(
                "MeCen exponent %.3g exceeded the clamp %.3g (%d times so far)", value, self.clamp, hits
            )

    @torch.no_grad()
    def renormalize(self) -> None:
        """Reset the raw centre vectors to unit length (call after each optimiser step)."""
        self.centers.copy_(F.normalize(self.centers, dim=1))
