"""Training losses and their registry: identity (CE), MeCen, batch-hard triplet, combined criterion.

Public API:
    LOSSES.build(name, **kwargs)  names: identity, mecen, triplet
    ReIDCriterion(num_classes, feat_dim, gid, pid, label_smoothing, mecen, triplet, triplet_margin)
    ReIDCriterion.from_config(loss_config, num_classes, feat_dim)
"""

from __future__ import annotations

from .criterion import ReIDCriterion
from .identity import IdentityLoss
from .mecen import MeCenLoss
from .registry import LOSSES
from .triplet import TripletLoss, pairwise_distance

__all__ = ["LOSSES", "IdentityLoss", "MeCenLoss", "ReIDCriterion", "TripletLoss", "pairwise_distance"]
