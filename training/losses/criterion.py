"""`ReIDCriterion`: the weighted sum of the training losses applied to a `ModelOutput`.

    total = gid · CE(global logits) + pid · mean_parts CE(part logits)
          + mecen.weight · MeCen(global feature) + triplet · Triplet(global feature)
          + center_alignment · CA(global feature)  + hetero_triplet · mean_parts HcTri(part feature)
          + center_cluster · CC(global feature)    + mutual_mean · MML(modality logits)
          + pattern_diversity · PD(pattern maps)

MeCen, triplet and the centre losses see the pooled global feature before the BN-neck (the BN-neck
convention: metric losses before, identity loss after the BN); MeCen and the centre losses normalise it
themselves, the triplet loss measures it unnormalised (as in "Bag of Tricks"). The last five
terms are the other seed models' losses (`psmg`, `mpanet`); those that need modality labels get them
from the trainer, and those that need model outputs only some models have (`ModelOutput.extras`) are
refused at build time for models without them (`vireid.training.factory.build_criterion`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vireid.errors import ConfigError

from ..models.base import ModelOutput
from .mecen import MeCenLoss
from .registry import LOSSES

_MECEN_KEYS = ("weight", "center", "margin", "exp", "m", "clamp")
_NEEDS_MODALITY = ("center_alignment", "hetero_triplet", "mutual_mean")

#: The other seed models' losses, each with what it needs from the model (None: any model).
MODEL_LOSSES: dict[str, str | None] = {
    "center_alignment": None,
    "hetero_triplet": "part_features",
    "center_cluster": None,
    "mutual_mean": "modality_logits",
    "pattern_diversity": "pattern_maps",
}


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
        center_alignment, hetero_triplet, center_cluster, mutual_mean, pattern_diversity: Weights of the
            other seed models' losses (0 or None disables each; see `vireid.training.losses.centres`).
        hetero_margin: Margin of the hetero-center triplet loss.
        center_margin: ρ of the center cluster loss.
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
        center_alignment: float | None = 0.0,
        hetero_triplet: float | None = 0.0,
        hetero_margin: float = 0.3,
        center_cluster: float | None = 0.0,
        center_margin: float = 0.5,
        mutual_mean: float | None = 0.0,
        pattern_diversity: float | None = 0.0,
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
        self.mecen = MeCenLoss(num_classes=num_classes, feat_dim=feat_dim, **mecen) if use_mecen else None
        self.triplet = LOSSES.build("triplet", margin=triplet_margin) if triplet > 0 else None
        weights = {
            "center_alignment": center_alignment,
            "hetero_triplet": hetero_triplet,
            "center_cluster": center_cluster,
            "mutual_mean": mutual_mean,
            "pattern_diversity": pattern_diversity,
        }
        options = {
            "hetero_triplet": {"margin": hetero_margin},
            "center_cluster": {"margin": center_margin},
            "mutual_mean": {"label_smoothing": label_smoothing},
        }
        self.extra_weights: dict[str, float] = {}
        self.extra = nn.ModuleDict()
        for name, weight in weights.items():
            weight = float(weight or 0.0)
            if weight < 0:
                raise ConfigError(f"loss.{name} must be ≥ 0, got {weight!r}")
            if weight > 0:
                self.extra_weights[name] = weight
                self.extra[name] = LOSSES.build(name, **options.get(name, {}))

    @classmethod
    def from_config(cls, loss_config: Any, num_classes: int, feat_dim: int) -> ReIDCriterion:
        """Build from the trainer's `loss` section (a `LossConfig` dataclass or its dict)."""
        is_instance = dataclasses.is_dataclass(loss_config) and not isinstance(loss_config, type)
        data = dataclasses.asdict(loss_config) if is_instance else dict(loss_config)
        return cls(num_classes, feat_dim, **data)

    def forward(
        self, output: ModelOutput, targets: Tensor, modality: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its components (`gid`, `pid`, `mecen`, `triplet`, …, whichever are active).

        `modality` (0 visible, 1 infrared, per sample) is required by `center_alignment`,
        `hetero_triplet` and `mutual_mean`.
        """
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
        for name, weight in self.extra_weights.items():
            parts[name] = self._extra_loss(name, output, targets, modality)
            total = total + weight * parts[name]
        return total, {name: value.detach() for name, value in parts.items()}

    def _extra_loss(self, name: str, output: ModelOutput, targets: Tensor, modality: Tensor | None) -> Tensor:
        loss = self.extra[name]
        if name in _NEEDS_MODALITY and modality is None:
            raise ValueError(
                f"loss.{name} needs the batch's modality labels: call criterion(output, y, modality)"
            )
        if name == "center_alignment":
            return loss(output.global_feat, targets, modality)
        if name == "hetero_triplet":
            return torch.stack([loss(part, targets, modality) for part in output.part_feats]).mean()
        if name == "center_cluster":
            return loss(output.global_feat, targets)
        if name == "mutual_mean":
            return loss(output.extras["modality_logits"], targets, modality)
        return loss(output.extras["pattern_maps"])

    def after_step(self) -> None:
        """Keep the MeCen centres' raw vectors at unit length (the trainer calls this per step)."""
        if self.mecen is not None:
            self.mecen.renormalize()
