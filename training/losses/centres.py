"""Batch-centre losses of the other seed models, all on L2-normalised features, computed in float32.

Each identity's centre is the mean of its normalised features in the batch (the P×K sampler puts K
visible and K infrared images of every identity in each batch), optionally per modality.

- `center_alignment` (PSMG): `mean_i ‖x_i − c_{y_i}‖² + mean_y ‖c_y^vis − c_y^ir‖²`: features to their
  identity centre, and each identity's visible and infrared centres together.
- `hetero_triplet` (PSMG, Liu et al.'s hetero-center triplet): the anchors are the per-modality
  centres; the positive is the same identity's centre in the other modality, the negative the nearest
  centre of another identity (either modality): `mean max(0, m + d(c_y^a, c_y^b) − min d(c_y^a, c_z))`.
  Centres instead of samples relax the triplet's constraint on every single image.
- `center_cluster` (MPANet): `mean_i ‖x_i − c_{y_i}‖² + mean_{y≠z} max(0, ρ − ‖c_y − c_z‖)²`: compact
  identities, centres at least ρ apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vireid.errors import ConfigError

from .registry import LOSSES
from .triplet import pairwise_distance


def identity_centres(feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Mean feature of every identity in the batch `[U, D]` and each sample's row in it `[N]`."""
    ids, inverse = torch.unique(labels, return_inverse=True)
    sums = feats.new_zeros(len(ids), feats.shape[1]).index_add_(0, inverse, feats)
    counts = torch.bincount(inverse, minlength=len(ids)).clamp(min=1).to(feats.dtype)
    return sums / counts[:, None], inverse


def modality_centres(feats: Tensor, labels: Tensor, modality: Tensor) -> tuple[Tensor, Tensor]:
    """Per-identity visible and infrared centres `[U', 2, D]` of the identities seen in both modalities."""
    ids, inverse = torch.unique(labels, return_inverse=True)
    slot = inverse * 2 + (modality != 0).long()
    sums = feats.new_zeros(len(ids) * 2, feats.shape[1]).index_add_(0, slot, feats)
    counts = torch.bincount(slot, minlength=len(ids) * 2).to(feats.dtype)
    centres = (sums / counts.clamp(min=1)[:, None]).view(len(ids), 2, -1)
    both = (counts.view(len(ids), 2) > 0).all(dim=1)
    return centres[both], ids[both]


def _unit(feats: Tensor) -> Tensor:
    return F.normalize(feats.float(), dim=1)


def float32(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a loss's forward with autocast off: centres and distances of nearby features need float32."""

    @functools.wraps(forward)
    def wrapper(self: nn.Module, feats: Tensor, *args: Tensor) -> Tensor:
        with torch.autocast(device_type=feats.device.type, enabled=False):
            return forward(self, feats.float(), *args)

    return wrapper


def _pull(feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    centres, inverse = identity_centres(feats, labels)
    return (feats - centres[inverse]).pow(2).sum(1).mean(), centres


def _check_margin(name: str, margin: float) -> None:
    if not margin > 0:
        raise ConfigError(f"loss.{name} must be > 0, got {margin!r}")


@LOSSES.register("center_alignment")
class CenterAlignmentLoss(nn.Module):
    """PSMG's center alignment: pull features to identity centres and align the modality centres."""

    @float32
    def forward(self, feats: Tensor, labels: Tensor, modality: Tensor) -> Tensor:
        unit = _unit(feats)
        pull, _ = _pull(unit, labels)
        pairs, _ = modality_centres(unit, labels, modality)
        align = (pairs[:, 0] - pairs[:, 1]).pow(2).sum(1).mean() if len(pairs) else unit.new_zeros(())
        return pull + align


@LOSSES.register("hetero_triplet")
class HeteroCenterTripletLoss(nn.Module):
    """Hetero-center triplet loss over per-modality identity centres (see the module docstring).

    Args:
        margin: Required gap between the nearest other-identity centre and the cross-modality centre.
    """

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        _check_margin("hetero_margin", margin)
        self.margin = float(margin)

    @float32
    def forward(self, feats: Tensor, labels: Tensor, modality: Tensor) -> Tensor:
        pairs, _ = modality_centres(_unit(feats), labels, modality)
        if len(pairs) < 2:  # needs another identity for a negative
            return feats.new_zeros((), dtype=torch.float32)
        count = len(pairs)
        centres = pairs.transpose(0, 1).reshape(2 * count, -1)  # visible centres, then infrared
        dist = pairwise_distance(centres)
        rows = torch.arange(2 * count, device=feats.device)
        owner = rows % count
        positive = dist[rows, (rows + count) % (2 * count)]  # the same identity, other modality
        negative = dist.masked_fill(owner[:, None] == owner[None, :], float("inf")).min(dim=1).values
        return F.relu(self.margin + positive - negative).mean()


@LOSSES.register("center_cluster")
class CenterClusterLoss(nn.Module):
    """MPANet's center cluster loss: compact identities whose centres stay `margin` apart.

    Args:
        margin: ρ, the smallest distance wanted between two identities' centres (unit features: 0–2).
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        _check_margin("center_margin", margin)
        self.margin = float(margin)

    @float32
    def forward(self, feats: Tensor, labels: Tensor) -> Tensor:
        pull, centres = _pull(_unit(feats), labels)
        count = len(centres)
        if count < 2:
            return pull
        dist = pairwise_distance(centres)
        off_diagonal = ~torch.eye(count, dtype=torch.bool, device=feats.device)
        push = F.relu(self.margin - dist[off_diagonal]).pow(2).mean()
        return pull + push
