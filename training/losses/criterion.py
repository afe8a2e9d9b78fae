"""`ReIDCriterion`: the weighted sum of the training losses applied to a `ModelOutput`.

    total = gid · CE(global logits) + pid · mean_parts CE(part logits)
          + mecen.weight · MeCen(global feature) + triplet · Triplet(global feature)

MeCen and triplet see the pooled global feature before the BN-neck (the BN-neck convention: metric
losses before, identity loss after the BN); MeCen L2-normalises it itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vireid.errors import ConfigError

from ..models.base import ModelOutput
from .registry import LOSSES

_MECEN_KEYS = ("weight", "center", "margin", "exp", "m", "clamp")


class ReIDCriterion(nn.Module):
    """Combined re-id criterion; returns `(total, components)` with unweighted, detached components.

    Args:
        num_classes: Training identities (MeCen centres).
        feat_dim: Global feature size (the model's `embedding_dim`).
        gid: Weight of the global identity loss.
        pid: Weight of the part identity loss (mean over parts; skipped when the model has no parts).
        label_smoothing: ε for both identity losses.
        mecen: `{weight, center, margin, exp, m, clamp}` (the `loss.mecen` config section); weight 0
            or `center: false` disables it.
        triplet: Weight of the batch-hard triplet loss (0 disables it).
        triplet_margin: Its margin.
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        gid: float = 1.0,
        pid: float = 1.0,
        label_smoothing: float = 0.0,
        mecen: Mapping[str, Any] | None = None,
        triplet: float = 0.0,
        triplet_margin: float = 0.3,
    ) -> None:
        super().__init__()
        mecen = dict(mecen or {})
        unknown = sorted(set(mecen) - set(_MECEN_KEYS))
        if unknown:
            raise ConfigError(f"unknown loss.mecen key(s) {unknown}; known keys: {list(_MECEN_KEYS)}")
        self.mecen_weight = float(mecen.pop("weight", 1.0))
        for name, value in (
            ("gid", gid),
            ("pid", pid),
            ("mecen.weight", self.mecen_weight),
            ("triplet", triplet),
        ):
            if value < 0:
                raise ConfigError(f"loss.{name} must be ≥ 0, got {value!r}")
        self.gid, self.pid, self.triplet_weight = float(gid), float(pid), float(triplet)
        self.identity = LOSSES.build("identity", label_smoothing=label_smoothing)
        use_mecen = self.mecen_weight > 0 and mecen.get("center", True)
        self.mecen = (
            LOSSES.build("mecen", num_classes=num_classes, feat_dim=feat_dim, **mecen) if use_mecen else None
        )
        self.triplet = LOSSES.build("triplet", margin=triplet_margin) if triplet > 0 else None

    @classmethod
    def from_config(cls, loss_config: Any, num_classes: int, feat_dim: int) -> ReIDCriterion:
        """Build from the trainer's `loss` section (a `LossConfig` dataclass or its dict)."""
        data = dataclasses.asdict(loss_config) if dataclasses.is_dataclass(loss_config) else dict(loss_config)
        return cls(num_classes, feat_dim, **data)

    def forward(self, output: ModelOutput, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its components (`gid`, `pid`, `mecen`, `triplet`, whichever are active)."""
        parts: dict[str, Tensor] = {"gid": self.identity(output.logits, targets)}
        total = self.gid * parts["gid"]
        if self.pid > 0 and output.part_logits:
            parts["pid"] = torch.stack([self.identity(lg, targets) for lg in output.part_logits]).mean()
            total = total + self.pid * parts["pid"]
        if self.mecen is not None:
            parts["mecen"] = self.mecen(output.global_feat, targets)
            total = total + self.mecen_weight * parts["mecen"]
        if self.triplet is not None:
            parts["triplet"] = self.triplet(output.global_feat, targets)
            total = total + self.triplet_weight * parts["triplet"]
        return total, {name: value.detach() for name, value in parts.items()}

    def after_step(self) -> None:
        """Keep the MeCen centres' raw vectors at unit length (the trainer calls this per step)."""
        if self.mecen is not None:
            self.mecen.renormalize()
