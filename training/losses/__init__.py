"""Training losses and their registry: identity (CE), MeCen, batch-hard triplet, combined criterion.

Public API:
    LOSSES.build(name, **kwargs)  names: identity, mecen, triplet, center_alignment, hetero_triplet,
                                  center_cluster, mutual_mean, pattern_diversity
    ReIDCriterion(num_classes, feat_dim, gid, pid, label_smoothing, mecen, triplet, triplet_margin,
                  center_alignment, hetero_triplet, hetero_margin, center_cluster, center_margin,
                  mutual_mean, pattern_diversity)
    ReIDCriterion.from_config(loss_config, num_classes, feat_dim)
"""

from __future__ import annotations

from .. import _needs_torch  # noqa: F401  (first: names the extra when torch is missing)
from .centres import CenterAlignmentLoss, CenterClusterLoss, HeteroCenterTripletLoss
from .criterion import MODEL_LOSSES, ReIDCriterion
from .identity import IdentityLoss
from .mecen import MeCenLoss
from .mpanet_losses import MutualMeanLoss, PatternDiversityLoss
from .registry import LOSSES
from .triplet import TripletLoss, pairwise_distance

__all__ = [
    "LOSSES",
    "MODEL_LOSSES",
    "CenterAlignmentLoss",
    "CenterClusterLoss",
    "HeteroCenterTripletLoss",
    "IdentityLoss",
    "MeCenLoss",
    "MutualMeanLoss",
    "PatternDiversityLoss",
    "ReIDCriterion",
    "TripletLoss",
    "pairwise_distance",
]
