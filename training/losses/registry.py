"""The loss registry (`LOSSES`): identity, mecen, triplet, center_alignment, hetero_triplet, center_cluster,
mutual_mean, pattern_diversity (each module registers its own)."""

from __future__ import annotations

from torch import nn

from ..models.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")
